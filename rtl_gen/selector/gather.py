"""Row gathering: COMPACT in rank order and COPY (golden/interp.py Machine.op_compact, order 1,
after a top-k DECIDE; Machine.op_copy). COMPACT writes o_buf rows

    [CLS, the kept candidates by rank (with `rest`: every candidate by rank), earlier packages
     (rows 1 + ns .. rows - 1), the new package (unless no_pkg)]

for channels 0..d-1; with `scores` the score buffer's rows 0..n_rows-1 are permuted alike
(Evo-ViT's re-rank keeps each token's running score with it). COPY writes rows o_r0 + r,
channels o_c0.. of o_buf with requant(row i_r0 + r, channels i_c0.. of i_buf, shift) (Evo-ViT's
placeholders converted to the current format, in place). The rank order is a permutation, not a
filter, so the position-order unit's lane packing (rtl_gen/selector/compact.py) does not apply:
each output row is gathered from its source row, one channel word a cycle (read the source
tile, write its lane into the output tile's lane). Per output row: the source (the order RAM of
rtl_gen/selector/state.py for ranked rows), then the channel words, pipelined into the next
row. The package token follows as in the position order. SB is permuted through a staging RAM
(each output row's score is read with its first word, SB itself written tile by tile at the
end: a row's source may lie below it).

A word's read returns ports.READ_LATENCY cycles after it is issued (SB's score and PACKAGE's word,
one-cycle memories, are asked that much later less one, so all three arrive together). Its way
into its write, one step a stage (WRITE_LAT stages after the read returns): the
lane select (a balanced mux tree from a replicated register) into a register, the requantiser
in PIPE_REQUANT + 1 stages (COMPACT's words pass it with shift 0, which is exact), the write
from registers. done waits for the last write.

Cycles from `start` to `done`: n_rows (d + 2) + 2 + SIZE_CYCLES, plus d for a package and T
(the tiles of n_rows) for the scores, at least DONE_AFTER_ISSUE after the last word is issued
(rtl_gen/tools/cycles.py gather_cycles); SIZE_CYCLES: the row counts are registered one adder
at a time after start.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden.hw import HardwareConfig
from golden.isa import SCORE_BITS

from ..buffers import ports
from ..buffers.scores import score_read, score_write
from ..control.decode import Opcode, desc_view
from ..primitives.arith import PIPE_REQUANT, WORD, pipe_stage, requant_sv, requant_sv_shift
from ..primitives.ram import Ram
from .package import pkg_read
from .state import order_read

SIZE_CYCLES = 3          # start -> ROW: desc and rows held, then ns, ranked, n_rows registered in turn
WRITE_LAT = 2 + PIPE_REQUANT   # read data -> write: lane select, requantiser stages, write registers
DONE_AFTER_ISSUE = ports.READ_LATENCY + WRITE_LAT   # the last word issued -> done, at the earliest


class Gather(wiring.Component):
    def __init__(self, hw: HardwareConfig):
        self.hw = hw
        n = range(hw.n_max + 2)
        super().__init__({**ports.control(hw), "kept": In(range(hw.n_max + 1)),
                          "rd": Out(ports.tok_read(hw)), "wr": Out(ports.tok_write(hw)),
                          "order": Out(order_read(hw)), "pkg": Out(pkg_read(hw)), "n_out": Out(n),
                          "sr": Out(score_read(hw)), "sw": Out(score_write(hw))})

    def elaborate(self, platform):
        m = Module()
        hw, R = self.hw, self.hw.mac_rows
        bits = ports.lane_bits(R)
        desc, cp = desc_view("COMPACT", self.desc), desc_view("COPY", self.desc)
        copy = desc.op == Opcode.COPY
        scores = ~copy & desc.scores
        # the sizes, registered one step at a time from desc and rows (SIZE waits for them)
        n = range(hw.n_max + 2)
        ns, ranked, n_rows, past = (Signal(n, name=k) for k in ("ns", "ranked", "n_rows", "past_ranked"))
        last_ch, last_tile = Signal(range(hw.d_max + 1)), Signal(range(hw.tiles + 1))
        m.d.sync += [ns.eq(self.rows - 1 - desc.n_pkg), ranked.eq(Mux(desc.rest, ns, self.kept)),
                     n_rows.eq(Mux(copy, self.rows, ranked + desc.n_pkg + 1)),   # rows before the new package
                     past.eq(ns - ranked), last_ch.eq(Mux(copy, cp.w, desc.d) - 1),
                     last_tile.eq((n_rows - 1) >> bits),
                     self.n_out.eq(2 + self.kept + desc.n_pkg - desc.no_pkg)]
        # the channels read and written (COPY: from i_c0, to o_c0), counted in registers
        rd_ch, wr_ch = Signal(range(hw.d_max), name="rd_ch"), Signal(range(hw.d_max), name="wr_ch")
        row = Signal(range(hw.n_max + 2))
        src, dst = Signal(range(hw.tiles * R)), Signal(range(hw.n_max + 2))
        ch = Signal(range(hw.d_max + 1))
        tag = data.StructLayout({"valid": 1, "ch": range(hw.d_max), "src_lane": range(R), "row": range(hw.n_max + 2),
                                 "pkg": 1, "score": 1})
        issued = Signal(tag)
        # a word's tag travels beside its read; SB's and PACKAGE's one-cycle memories are asked
        # `lag` cycles after the token buffer, so the three words arrive together
        lag = ports.READ_LATENCY - 1
        in_flight = ports.delay_chain(m, issued, ports.READ_LATENCY, "in_flight", attrs={"max_fanout": 64})
        arriving = in_flight[-1]                                  # selects R lanes of two words
        score_en, pkg_en = Signal(name="score_en"), Signal(name="pkg_en")
        pkg_ch = Signal(range(hw.d_max), name="pkg_ch")
        m.d.comb += [self.sr.en.eq(ports.delayed(m, score_en, lag, "score_en_late")),
                     self.sr.tile.eq(ports.delayed(m, src >> bits, lag, "score_tile_late")),
                     self.pkg.en.eq(ports.delayed(m, pkg_en, lag, "pkg_en_late")),
                     self.pkg.ch.eq(ports.delayed(m, pkg_ch, lag, "pkg_ch_late"))]
        scores_in_flight = Cat(t.valid & t.score for t in in_flight).any()
        m.submodules.staged = staged = Ram(SCORE_BITS, hw.tiles, R)     # the permuted scores
        copy_tile, copy_valid = Signal(range(hw.tiles + 1)), Signal()
        # copy_tile == last_tile from a counter of its own (copy_tile is the staging RAM's read
        # address, fanned out to its R x 48 bits)
        copy_left, copy_last = Signal(range(hw.tiles + 1), name="copy_left"), Signal(name="copy_last")
        staging = Signal(R, name="staging")                        # a staged score's lane write this cycle
        staging_any = Signal(name="staging_any")                   # (and whether there is one: no R-bit OR)
        m.d.sync += copy_valid.eq(0)
        # the read address from registers in every state (only the enables follow the state)
        m.d.comb += [self.rd.buf.eq(Mux(copy, cp.i_buf, desc.x_buf)), self.rd.tile.eq(src >> bits),
                     self.rd.ch.eq(rd_ch)]
        writing = Signal(name="writing")                          # a word is on its way to its write
        # the order RAM's address: row - 1, a register kept beside row (not an adder after it)
        rank = Signal.like(self.order.rank, name="order_rank")
        m.d.comb += self.order.rank.eq(rank)
        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [row.eq(0), rank.eq(-1)]
                    m.next = "SIZE0"
            for k in range(SIZE_CYCLES):                            # ns, ranked, n_rows in turn
                with m.State(f"SIZE{k}"):
                    m.next = f"SIZE{k + 1}" if k + 1 < SIZE_CYCLES else "ROW"
            with m.State("ROW"):                                    # the source of output row `row`
                m.d.comb += self.order.en.eq(1)
                with m.If(row == n_rows):
                    m.d.sync += [ch.eq(0), copy_tile.eq(0), copy_left.eq(last_tile), copy_last.eq(last_tile == 0)]
                    m.next = "DRAIN"
                    with m.If(~copy & ~desc.no_pkg):
                        m.next = "PKG"
                    with m.Elif(scores):
                        m.next = "SCORES"
                with m.Else():
                    m.next = "SOURCE"
            with m.State("SOURCE"):
                source = Mux(row == 0, 0, Mux(row <= ranked, self.order.token, past + row))
                m.d.sync += [src.eq(Mux(copy, cp.i_r0 + row, source)), dst.eq(Mux(copy, cp.o_r0 + row, row)),
                             ch.eq(0), rd_ch.eq(Mux(copy, cp.i_c0, 0)), wr_ch.eq(Mux(copy, cp.o_c0, 0))]
                m.next = "CH"
            with m.State("CH"):                                     # one channel word a cycle
                m.d.comb += [self.rd.en.eq(1), score_en.eq(ch == 0),
                             issued.valid.eq(1), issued.ch.eq(wr_ch), issued.row.eq(dst),
                             issued.src_lane.eq(src[:bits] if bits else 0), issued.score.eq(scores & (ch == 0))]
                m.d.sync += [ch.eq(ch + 1), rd_ch.eq(rd_ch + 1), wr_ch.eq(wr_ch + 1)]
                with m.If(ch == last_ch):
                    m.d.sync += [row.eq(row + 1), rank.eq(row)]
                    m.next = "ROW"
            with m.State("PKG"):                                    # the new package token, row n_rows
                m.d.comb += [pkg_en.eq(1), pkg_ch.eq(ch), issued.valid.eq(1), issued.ch.eq(ch),
                             issued.row.eq(row), issued.pkg.eq(1)]
                m.d.sync += ch.eq(ch + 1)
                with m.If(ch == last_ch):                           # (not COPY: d - 1)
                    m.next = "DRAIN"
                    with m.If(scores):
                        m.next = "SCORES"
            with m.State("SCORES"):                                 # staged scores -> SB, a tile a cycle
                with m.If(~staging_any & ~scores_in_flight):        # the last staged write is in
                    m.d.sync += [copy_tile.eq(copy_tile + 1), copy_valid.eq(1), copy_left.eq(copy_left - 1),
                                 copy_last.eq(copy_left == 1)]
                    with m.If(copy_last):
                        m.next = "DRAIN"
            with m.State("DRAIN"):                                  # until the last word is written
                with m.If(~writing):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
        fsm.state.attrs["max_fanout"] = 16           # decoded by the enables of the counters and the read
        m.d.comb += writing.eq(self._write(m, copy, cp, desc, arriving, bits) | Cat(t.valid for t in in_flight).any())
        # scores: the source row's, staged at the output row; then SB tile by tile (rows < n_rows)
        # (the lane select of SB's word registered before the staging write: a 48-bit R:1 mux)
        score = ports.lane_select(self.sr.data, arriving.src_lane, SCORE_BITS, R)
        lane_of_row = Const(1, R) << arriving.row[:bits] if bits else 1
        staged_score = Signal(signed(SCORE_BITS), name="staged_score", attrs={"max_fanout": 64})
        staged_tile = Signal(range(hw.tiles), name="staged_tile")
        m.d.sync += [staged_score.eq(score), staged_tile.eq(arriving.row >> bits),
                     staging.eq(Mux(arriving.valid & arriving.score, lane_of_row, 0)),
                     staging_any.eq(arriving.valid & arriving.score)]
        # the staged scores are read in every cycle (no enable fanning out to R x 48 bits of the read
        # register): a write to SB takes the word read in the cycle copy_tile advanced, when no
        # staged write was under way (read-old: the cycles with a staged write are not taken)
        m.d.comb += [staged.waddr.eq(staged_tile), staged.wdata.eq(staged_score.replicate(R)), staged.wen.eq(staging),
                     staged.raddr.eq(copy_tile), staged.ren.eq(1)]
        written = Signal(range(hw.tiles))
        m.d.sync += written.eq(copy_tile)
        m.d.comb += [self.sw.tile.eq(written), self.sw.data.eq(staged.rdata),
                     self.sw.en.eq(Mux(copy_valid, ports.rows_mask(m, n_rows, written, hw, "scores_rows"), 0))]
        return m

    def _write(self, m, copy, cp, desc, arriving, bits):
        """The arriving word's lane (or the package word) into its output row, WRITE_LAT stages:
        the selected word registered, requant(word, shift) with COPY's shift (0 for COMPACT:
        exact) in PIPE_REQUANT + 1 stages, the write from registers. Returns whether a word is on
        its way (the stages before the write hold one)."""
        R = self.hw.mac_rows
        clamped = requant_sv_shift(m, cp.shift, WORD, name="copy_rq")        # then COMPACT's 0 picked
        rq_shift, shift = Signal.like(clamped, name="rq_shift"), Signal.like(clamped, name="copy_shift")
        m.d.sync += [rq_shift.eq(clamped), shift.eq(Mux(copy, rq_shift, WORD))]   # shift 0: exact
        layout = arriving.shape()
        picked, word = Signal(layout, name="picked"), Signal(WORD, name="picked_word")
        m.d.sync += [picked.eq(arriving), word.eq(Mux(arriving.pkg, self.pkg.data,
                                                       ports.lane_select(self.rd.data, arriving.src_lane, WORD, R)))]
        tags = [picked]
        cut = pipe_stage(m, name="copy_rq_p")

        def stage(values):                                   # the tag moves with the requantiser's values
            tag = Signal(layout, name=f"copy_rq_tag{len(tags)}")
            m.d.sync += tag.eq(tags[-1])
            tags.append(tag)
            return cut(values)
        result = requant_sv(m, word.as_signed(), None, name="copy_rq", stage=stage, shift=shift)
        w_tag, w_word = Signal(layout, name="write_tag"), Signal(WORD, name="write_word")
        w_en = Signal(R, name="write_en")
        m.d.sync += [w_tag.eq(tags[-1]), w_word.eq(result),
                     w_en.eq(Mux(tags[-1].valid, Const(1, R) << tags[-1].row[:bits] if bits else 1, 0))]
        assert len(tags) == WRITE_LAT - 1
        m.d.comb += [self.wr.buf.eq(Mux(copy, cp.o_buf, desc.o_buf)), self.wr.tile.eq(w_tag.row >> bits),
                     self.wr.ch.eq(w_tag.ch), self.wr.data.eq(w_word.replicate(R)), self.wr.en.eq(w_en)]
        return arriving.valid | Cat(t.valid for t in tags).any()
