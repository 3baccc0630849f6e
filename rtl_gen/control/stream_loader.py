"""Stream loader: walks the descriptors in program order and routes each operation's items of the
merged DDR stream (golden/stream.py) to where they go:

    MATMUL     [activation table ->] weight ring, one m-tile item per slot (runs ahead of compute)
    LAYERNORM  parameters -> the LayerNorm unit's i_param stream       (when compute runs the op)
    DECIDE     [activation table]                                      (when compute runs the op)
    LOAD       token-tile words -> the LOAD unit                       (when compute runs the op)

Items start on stream-beat boundaries and are padded to whole beats; a gearbox per word width
cuts beats into words and the padding words are dropped. Weights are fetched as far ahead as the
ring's two slots allow; every other item waits until the compute side has started its operation
(the tables and LayerNorm parameters have one copy). The top resets the loader to stop it. If an
item needs more beats than the stream
holds, the loader stops with `error` at that descriptor; the controller reports STREAM_SHORT when
compute reaches it (the interpreter's order).
"""
from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden import isa
from golden.hw import HardwareConfig
from golden.stream import BIAS_WORDS, ENTRY_BYTES

from .decode import desc_view, op_code
from ..primitives.gearbox import Gearbox
from ..buffers.ports import lanes
from ..buffers.act_table import table_write
from ..buffers.weight_ring import fill_port

K_ENTRY, K_WEIGHT, K_TILE = range(3)      # word kinds: 64-bit entries, weight words, token-tile words


def prog_read(hw: HardwareConfig) -> wiring.Signature:
    return wiring.Signature({"addr": Out(range(hw.desc_max)), "en": Out(1), "data": In(isa.DESC_BITS)})


def ln_param_layout() -> data.StructLayout:
    return data.StructLayout({"gamma": signed(16), "beta": signed(48)})


def _beats(words, word_bits: int, stream_bits: int):
    """ceil(words * word_bits / stream_bits) for power-of-two widths."""
    if word_bits >= stream_bits:
        return words << (word_bits // stream_bits).bit_length() - 1
    r = stream_bits // word_bits
    return (words + r - 1) >> (r.bit_length() - 1)


class StreamLoader(wiring.Component):
    def __init__(self, hw: HardwareConfig):
        self.hw = hw
        R = hw.mac_rows
        super().__init__({
            "start": In(1), "total": In(32),
            "prog": Out(prog_read(hw)),
            "ci": In(range(hw.desc_max + 1)), "ci_run": In(1), "n": In(range(hw.n_max + 1)),
            "i_stream": In(stream.Signature(hw.stream_bits)),
            "fill": Out(fill_port(hw)),
            "table": Out(table_write(hw)),
            "o_ln": Out(stream.Signature(ln_param_layout())),
            "o_load": Out(stream.Signature(lanes(R))),
            "li": Out(range(hw.desc_max + 1)), "table_ok": Out(1), "at_end": Out(1),
            "consumed": Out(32), "error": Out(1), "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        hw, R, C, SB = self.hw, self.hw.mac_rows, self.hw.mac_cols, self.hw.stream_bits
        gbs = {K_ENTRY: Gearbox(SB, 8 * ENTRY_BYTES), K_WEIGHT: Gearbox(SB, 16 * C), K_TILE: Gearbox(SB, 16 * R)}
        for k, g in gbs.items():
            m.submodules[f"gb{k}"] = g
        raw = Signal(isa.DESC_BITS)
        mm, ln, dc, ld = (desc_view(n, raw) for n in ("MATMUL", "LAYERNORM", "DECIDE", "LOAD"))
        kind = Signal(2)
        target = Signal(2)               # 0 table, 1 LayerNorm, 2 weights, 3 LOAD data
        bl, wl = Signal(32), Signal(32)  # beats to feed, words to deliver
        widx = Signal(range(max(hw.k_max + BIAS_WORDS, hw.pwl_max) + 1))
        mt, mts = Signal(range(hw.k_max + 2)), Signal(range(hw.k_max + 2))
        m.d.comb += self.busy.eq(1)
        self._route(m, gbs, kind, target, bl, wl, widx)
        feeding = (bl != 0) | (wl != 0) | ~gbs[K_ENTRY].empty | ~gbs[K_WEIGHT].empty | ~gbs[K_TILE].empty
        sync_ok = (self.ci == self.li) & self.ci_run
        rb = (R - 1).bit_length()
        cb = (C - 1).bit_length()

        def item(k, tgt, words, bits):
            beats = _beats(words, bits, SB)
            return [kind.eq(k), target.eq(tgt), wl.eq(words), widx.eq(0), bl.eq(beats)], beats

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.busy.eq(0)
                with m.If(self.start):
                    m.d.sync += [self.li.eq(0), self.consumed.eq(0), self.error.eq(0), self.at_end.eq(0),
                                 self.table_ok.eq(0)]
                    m.next = "READ"
            with m.State("READ"):
                m.d.comb += [self.prog.addr.eq(self.li), self.prog.en.eq(1)]
                m.next = "DECODE"
            with m.State("DECODE"):
                m.d.sync += raw.eq(self.prog.data)
                m.next = "DISPATCH"
            with m.State("DISPATCH"):
                op = raw[:5]
                with m.If(op == op_code("MATMUL")):
                    m.d.sync += [mt.eq(0), mts.eq((mm.m + C - 1) >> cb)]
                    m.next = "MM_TABLE"
                with m.Elif(op == op_code("LAYERNORM")):
                    m.next = "LN"
                with m.Elif(op == op_code("DECIDE")):
                    m.next = "DC_TABLE"
                with m.Elif(op == op_code("LOAD")):
                    m.next = "LD"
                with m.Elif(op == op_code("END")):
                    m.d.sync += self.at_end.eq(1)
                    m.next = "END"
                with m.Else():
                    m.next = "NEXT"
            # the sync items: wait for compute to run this descriptor, check the stream, feed
            for st, tgt, cond, words, k, bits, nxt in (
                    ("MM_TABLE", 0, mm.act == isa.ACT_LOAD, mm.pwl_nseg, K_ENTRY, 64, "MM_W"),
                    ("DC_TABLE", 0, dc.act == isa.ACT_LOAD, dc.pwl_nseg, K_ENTRY, 64, "NEXT"),
                    ("LN", 1, Const(1), ln.d, K_ENTRY, 64, "NEXT")):
                with m.State(st):
                    with m.If(~cond):
                        m.next = nxt
                    with m.Elif(sync_ok):
                        sets, beats = item(k, tgt, words, bits)
                        with m.If(self.consumed + beats > self.total):
                            m.next = "ERROR"
                        with m.Else():
                            m.d.sync += sets + [self.consumed.eq(self.consumed + beats)]
                            m.next = st + "_FEED"
                with m.State(st + "_FEED"):
                    with m.If(~feeding):
                        m.d.sync += self.table_ok.eq(tgt == 0)
                        m.next = nxt
            with m.State("LD"):
                with m.If(sync_ok):
                    rows = Mux(ld.rows_n, self.n, ld.rows)
                    tiles = ((ld.r0 + rows - 1) >> rb) - (ld.r0 >> rb) + 1
                    words = Signal(32)
                    m.d.comb += words.eq(tiles * ld.w)
                    sets, beats = item(K_TILE, 3, words, 16 * R)
                    with m.If(self.consumed + beats > self.total):
                        m.next = "ERROR"
                    with m.Else():
                        m.d.sync += sets + [self.consumed.eq(self.consumed + beats)]
                        m.next = "LD_FEED"
            with m.State("LD_FEED"):
                with m.If(~feeding):
                    m.next = "NEXT"
            with m.State("MM_W"):                        # one m-tile per ring slot, as far ahead as it allows
                with m.If(mt == mts):
                    m.next = "NEXT"
                with m.Elif(self.fill.free):
                    sets, beats = item(K_WEIGHT, 2, mm.k + BIAS_WORDS, 16 * C)
                    with m.If(self.consumed + beats > self.total):
                        m.next = "ERROR"
                    with m.Else():
                        m.d.sync += sets + [self.consumed.eq(self.consumed + beats), mt.eq(mt + 1)]
                        m.next = "MM_W_FEED"
            with m.State("MM_W_FEED"):
                with m.If(~feeding):
                    m.next = "MM_W"
            with m.State("NEXT"):
                m.d.sync += [self.li.eq(self.li + 1), self.table_ok.eq(0)]
                m.next = "READ"
            with m.State("END"):
                m.d.comb += self.busy.eq(0)
            with m.State("ERROR"):
                m.d.comb += self.busy.eq(0)
                m.d.sync += self.error.eq(1)
        return m

    def _route(self, m, gbs, kind, target, bl, wl, widx):
        """Beats -> the kind's gearbox while `bl` > 0; words -> the target while `wl` > 0, then drop."""
        i = self.i_stream
        for k, g in gbs.items():
            sel = kind == k
            m.d.comb += [g.i.valid.eq(i.valid & sel & (bl != 0)), g.i.payload.eq(i.payload),
                         g.flush.eq(sel & (bl == 0) & (wl == 0))]
        cur_ready = Mux(kind == K_ENTRY, gbs[K_ENTRY].i.ready, Mux(kind == K_WEIGHT, gbs[K_WEIGHT].i.ready,
                                                                   gbs[K_TILE].i.ready))
        m.d.comb += i.ready.eq((bl != 0) & cur_ready)
        with m.If(i.valid & i.ready):
            m.d.sync += bl.eq(bl - 1)
        e, w, t = gbs[K_ENTRY].o, gbs[K_WEIGHT].o, gbs[K_TILE].o
        live = wl != 0
        # entries: table or LayerNorm parameters
        ent = data.View(data.StructLayout({"base": signed(32), "slope": signed(32)}), e.payload)
        m.d.comb += [self.table.addr.eq(widx), self.table.data.base.eq(ent.base), self.table.data.slope.eq(ent.slope),
                     self.o_ln.payload.eq(e.payload)]
        m.d.comb += [self.table.en.eq(e.valid & live & (target == 0)),
                     self.o_ln.valid.eq(e.valid & live & (target == 1)),
                     e.ready.eq(~live | (target == 0) | self.o_ln.ready)]
        m.d.comb += [self.fill.addr.eq(widx), self.fill.data.eq(w.payload), self.fill.en.eq(w.valid & live),
                     self.fill.commit.eq(w.valid & (wl == 1)), w.ready.eq(1)]
        m.d.comb += [self.o_load.payload.eq(t.payload), self.o_load.valid.eq(t.valid & live),
                     t.ready.eq(~live | self.o_load.ready)]
        took = Mux(kind == K_ENTRY, e.valid & e.ready, Mux(kind == K_WEIGHT, w.valid & w.ready, t.valid & t.ready))
        with m.If(took & live):
            m.d.sync += [wl.eq(wl - 1), widx.eq(widx + 1)]
