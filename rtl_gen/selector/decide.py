"""DECIDE: the SPViT decision of one selector stage (golden/interp.py Machine.op_decide).

For each scored token i (tokens 1..ns, ns = rows - 1 - n_pkg), with d_h = z0_h - z1_h (z at
z_c0 + 2h, 2h + 1; w at w_c0 + h):

    score = sum_h w_h d_h,  keep = score >= 0  (then the optional cap, rtl_gen/selector/capsearch.py)
    m     = rshift_round(num recip(den, 36), 36), num = sum_h w_h d_sig(d_h), den = max(sum_h w_h, 1)

Schedule (decide_cycles gives the exact stall-free count):
  SCORE  per token tile t (tiles holding tokens 1..ns) and head h: the three words z0, z1, w of
         (t, h) are read (one token read port) into a `next` register set while the R lanes of
         the previous group shift through ONE datapath, a lane per cycle: d, w d, the runtime PWL
         (rtl_gen/primitives/pwl.py, table read port), w d_sig(d); per-lane sums in a small RAM. The
         last head writes score, (num, den) and the first keep bit of each token.
  M      (num, den) of tokens 1..ns through KeepProb (a pool of `recips` reciprocal units);
  CAP    in parallel with M if cap_en and more than cap tokens are kept: CapSearch.
Mode 1 (top-k, DynamicViT, EViT, Evo-ViT) ranks the score buffer's rows instead
(rtl_gen/selector/topk.py): keep bits and the rank order, kept = k, no keep probabilities.
The selection state (rtl_gen/selector/state.py) lives here: PACKAGE, COMPACT and a STORE of the
selection read it through `mask` and `m`; `info` has valid / ns / kept; `kept_stb` pulses with
`stage` when the decision is complete (the top latches KEPT[stage]).
"""
from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden import isa
from golden.hw import HardwareConfig

from ..buffers import ports
from ..buffers.scores import score_read
from ..control.decode import desc_view
from ..primitives.arith import bit_length
from ..primitives.pwl import DEEP_LATENCY as PWL_LATENCY, PwlEval, geometry_layout, geometry_of, table_read
from ..primitives.ram import Ram
from .capsearch import CapSearch
from .keepprob import DEN_BITS, NUM_BITS, KeepProb
from .state import SelState, info_layout, m_read, mask_read, order_read
from .topk import TopK

SCORE_BITS = 38          # |sum_h w_h d_h| < 31 x 2^15 x 2^16 < 2^36
W_SUM_BITS = 21          # sum_h w_h
SUM_STAGE = 2 + PWL_LATENCY   # the lane datapath's stage that adds into the per-lane sums
GROUP_READ = 3 + ports.READ_LATENCY - 1   # a group's first read -> its last word arrives


def record_layout(hw: HardwareConfig) -> data.StructLayout:
    return data.StructLayout({"valid": 1, "token": range(hw.tiles * hw.mac_rows), "score": signed(SCORE_BITS),
                              "num": signed(NUM_BITS), "w_sum": signed(W_SUM_BITS)})


class Scorer(wiring.Component):
    """The SCORE phase: reads z0, z1, w words per (tile, head), runs the lanes serially, and
    emits one record (token, score, num, w_sum) per lane of the last head (no back-pressure)."""

    def __init__(self, hw: HardwareConfig):
        self.hw = hw
        super().__init__({
            "start": In(1), "done": Out(1),
            "tiles": In(range(hw.tiles + 1)), "heads": In(5),
            "z_buf": In(2), "z_c0": In(12), "w_buf": In(2), "w_c0": In(12), "geo": In(geometry_layout()),
            "rd": Out(ports.tok_read(hw)), "table": Out(table_read(hw)), "rec": Out(record_layout(hw)),
        })

    def elaborate(self, platform):
        m = Module()
        running = Signal()                     # from start until the last record has left
        reader, group = self._read_groups(m, running)
        lane = self._shift_lanes(m, group)
        datapath_busy = self._score_lanes(m, lane)
        busy = Signal()
        m.d.comb += busy.eq(reader.busy | lane.busy | datapath_busy)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [running.eq(1), reader.tile.eq(0), reader.head.eq(0)]
                    m.next = "RUN"
            with m.State("RUN"):
                with m.If(~busy):
                    m.d.sync += running.eq(0)
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
        return m

    def _read_groups(self, m, running):
        """The reader: the three words z0, z1, w of each (tile, head) group through the token
        read port (one read a cycle, data READ_LATENCY cycles later) into the `next` register set,
        which holds them until the lanes take them (`take`); a group begins when the last one's
        words have all arrived. Returns (reader: tile, head and busy;
        the next set); the caller starts the reader at (tile 0, head 0)."""
        hw = self.hw
        lanes = ports.lanes(hw.mac_rows)
        read_tile, read_head = Signal(range(hw.tiles + 1)), Signal(5)
        reading = Signal()                     # words 1 and 2 of the group still to read
        read_word = Signal(2)                  # 0: z0, 1: z1, 2: w
        group = SimpleNamespace(
            z0=Signal(lanes, name="next_z0"), z1=Signal(lanes, name="next_z1"), w=Signal(lanes, name="next_w"),
            tile=Signal(range(hw.tiles), name="next_tile"), head=Signal(5, name="next_head"),
            full=Signal(name="next_full"), take=Signal(name="next_take", attrs={"max_fanout": 16}))
        tiles_left = read_tile < self.tiles
        begin_group = Signal()
        issue = begin_group | reading
        word = Mux(reading, read_word, 0)
        in_flight = ports.delay_chain(m, Cat(issue, word), ports.READ_LATENCY, "word_in_flight")
        word_arrives, arriving_word = in_flight[-1][0], in_flight[-1][1:]
        words_in_flight = Cat(w[0] for w in in_flight).any()
        m.d.comb += begin_group.eq(running & ~reading & ~words_in_flight & tiles_left & (~group.full | group.take))
        # the three words' channels of head read_head in registers, computed with the head
        # (the address is a select, not an adder into the read port)
        head_next = Signal(5)
        z0_ch, z1_ch, w_ch = (Signal(12, name=n) for n in ("z0_ch", "z1_ch", "w_ch"))
        m.d.sync += [read_head.eq(head_next), z0_ch.eq(self.z_c0 + (head_next << 1)),    # one adder each
                     z1_ch.eq(self.z_c0 + Cat(Const(1, 1), head_next)), w_ch.eq(self.w_c0 + head_next)]
        m.d.comb += [self.rd.en.eq(issue), self.rd.tile.eq(read_tile),
                     self.rd.buf.eq(Mux(word == 2, self.w_buf, self.z_buf)),
                     self.rd.ch.eq(Mux(word == 2, w_ch, Mux(word == 1, z1_ch, z0_ch)))]
        group.completes = ports.delayed(m, issue & (word == 2), ports.READ_LATENCY, "next_completes",
                                        attrs={"max_fanout": 16})      # its last word arrives
        m.d.comb += head_next.eq(read_head)
        with m.If(begin_group):
            m.d.sync += [reading.eq(1), read_word.eq(1), group.tile.eq(read_tile), group.head.eq(read_head)]
        with m.If(reading):
            m.d.sync += read_word.eq(read_word + 1)
            with m.If(read_word == 2):
                m.d.sync += reading.eq(0)
                m.d.comb += head_next.eq(read_head + 1)
                with m.If(read_head == self.heads - 1):
                    m.d.comb += head_next.eq(0)
                    m.d.sync += read_tile.eq(read_tile + 1)
        with m.If(~running):                   # head 0 (and its channels) before the start
            m.d.comb += head_next.eq(0)
        with m.If(word_arrives):
            with m.Switch(arriving_word):
                with m.Case(0):
                    m.d.sync += group.z0.eq(self.rd.data)
                with m.Case(1):
                    m.d.sync += group.z1.eq(self.rd.data)
        with m.If(group.completes):
            m.d.sync += [group.w.eq(self.rd.data), group.full.eq(1)]
        busy = tiles_left | reading | words_in_flight | group.full
        reader = SimpleNamespace(tile=read_tile, head=read_head, busy=busy)
        return reader, group

    def _shift_lanes(self, m, group):
        """The group in the datapath: its words in lane registers that shift down one lane per
        cycle, so lane 0 holds the z0, z1, w of the current token (`index`); the next group is
        taken in the cycle of the last lane."""
        hw, R = self.hw, self.hw.mac_rows
        lanes = ports.lanes(R)
        lane = SimpleNamespace(
            z0=Signal(lanes, name="lane_z0"), z1=Signal(lanes, name="lane_z1"), w=Signal(lanes, name="lane_w"),
            busy=Signal(name="lanes_busy"), index=Signal(range(R), name="lane"),
            tile=Signal(range(hw.tiles), name="lane_tile"), head=Signal(5, name="lane_head"))
        # take = full & (~busy | index == R - 1), registered from the next values of those (it
        # selects every lane register's input: the fanout starts at a replicated register)
        full_next = (group.full & ~group.take) | group.completes
        busy_next = group.take | (lane.busy & (lane.index != R - 1))
        index_next = Signal.like(lane.index, name="lane_next")
        m.d.comb += index_next.eq(Mux(group.take, 0, Mux(lane.busy, lane.index + 1, lane.index)))
        m.d.sync += group.take.eq(full_next & (~busy_next | (index_next == R - 1)))
        with m.If(group.take):
            m.d.sync += [lane.z0.eq(group.z0), lane.z1.eq(group.z1), lane.w.eq(group.w), lane.busy.eq(1),
                         lane.index.eq(0), lane.tile.eq(group.tile), lane.head.eq(group.head), group.full.eq(0)]
        with m.Else():      # the words shift also when idle (nothing reads them): one select per bit
            m.d.sync += [x.eq(x.as_value() >> 16) for x in (lane.z0, lane.z1, lane.w)]
        with m.If(~group.take & lane.busy):
            m.d.sync += lane.index.eq(lane.index + 1)
            with m.If(lane.index == R - 1):
                m.d.sync += lane.busy.eq(0)
        return lane

    def _score_lanes(self, m, lane):
        """The lane datapath, one lane a cycle: stage 1 d = z0 - z1, into the (deep) PWL; 2 w d;
        SUM = 2 + PWL latency: w d_sig(d); the lane's sums are read in stage SUM - 1 and written
        back in SUM, the record of the last head leaves in SUM + 1. One adder, compare or
        product per stage (docs/rtl.md, Timing budget). `in_stage[k]`: the lane (tile, head) in
        stage k. Returns busy."""
        hw, R = self.hw, self.hw.mac_rows
        m.submodules.pwl = pwl = PwlEval(hw, 17, deep=True)
        wiring.connect(m, wiring.flipped(self.table), pwl.table)
        m.d.comb += pwl.geo.eq(self.geo)
        d = Signal(signed(17))
        m.d.sync += d.eq(lane.z0[0] - lane.z1[0])
        m.d.comb += pwl.x.eq(d)
        stage = data.StructLayout({"valid": 1, "lane": range(R), "tile": range(hw.tiles), "head": 5})
        in_stage = [Signal(stage, name=f"in_stage{k}") for k in range(SUM_STAGE + 1)]
        m.d.comb += [in_stage[0].valid.eq(lane.busy), in_stage[0].lane.eq(lane.index),
                     in_stage[0].tile.eq(lane.tile), in_stage[0].head.eq(lane.head)]
        for k in range(1, SUM_STAGE + 1):
            m.d.sync += in_stage[k].eq(in_stage[k - 1])
        w = [Signal(signed(16), name=f"w_stage{k}") for k in range(SUM_STAGE + 1)]
        wd = [Signal(signed(33), name=f"wd_stage{k}") for k in range(SUM_STAGE + 1)]
        m.d.comb += w[0].eq(lane.w[0])
        m.d.sync += [w[1].eq(w[0]), w[2].eq(w[1]), wd[2].eq(w[1] * d)]
        for k in range(3, SUM_STAGE + 1):
            m.d.sync += [w[k].eq(w[k - 1]), wd[k].eq(wd[k - 1])]
        w_dsig = Signal(signed(32))
        m.d.sync += w_dsig.eq(w[SUM_STAGE - 1] * pwl.y)
        self._accumulate(m, in_stage[SUM_STAGE - 1], in_stage[SUM_STAGE], wd[SUM_STAGE], w_dsig, w[SUM_STAGE])
        return Cat(s.valid for s in in_stage[1:]).any() | self.rec.valid

    def _accumulate(self, m, reading, writing, wd, w_dsig, w):
        """Per lane the sums over heads (score += w d, num += w d_sig(d), w_sum += w) in a RAM of
        R entries: read with the lane in stage 3 (`reading`), written back in stage 4
        (`writing`; head 0 starts from 0); with the last head the record leaves."""
        R = self.hw.mac_rows
        sums = data.StructLayout({"score": signed(SCORE_BITS), "num": signed(NUM_BITS), "w_sum": signed(W_SUM_BITS)})
        m.submodules.sums = ram = Ram(sums.size, R, is_signed=False)
        old = data.View(sums, ram.rdata)
        first = writing.head == 0
        new = Signal(sums)
        m.d.comb += [ram.raddr.eq(reading.lane), ram.ren.eq(reading.valid),
                     new.score.eq(Mux(first, 0, old.score) + wd), new.num.eq(Mux(first, 0, old.num) + w_dsig),
                     new.w_sum.eq(Mux(first, 0, old.w_sum) + w),
                     ram.waddr.eq(writing.lane), ram.wdata.eq(new), ram.wen.eq(writing.valid)]
        rec = self.rec
        m.d.sync += [rec.valid.eq(writing.valid & (writing.head == self.heads - 1)),
                     rec.token.eq(writing.tile * R + writing.lane), rec.score.eq(new.score), rec.num.eq(new.num),
                     rec.w_sum.eq(new.w_sum)]                     # (clamped to den >= 1 when taken)


class Decide(wiring.Component):
    def __init__(self, hw: HardwareConfig, recips: int = 4, cap_bits: int = 3):
        self.hw, self.recips, self.cap_bits = hw, recips, cap_bits
        super().__init__({
            **ports.control(hw),
            "rd": Out(ports.tok_read(hw)), "table": Out(table_read(hw)),
            "mask": In(mask_read(hw)), "m": In(m_read(hw)), "order": In(order_read(hw)), "sb": Out(score_read(hw)),
            "info": Out(info_layout(hw)), "consume": In(1),
            "kept_stb": Out(1), "kept": Out(range(hw.n_max + 1)), "stage": Out(3),
        })

    def elaborate(self, platform):
        m = Module()
        hw, R = self.hw, self.hw.mac_rows
        desc = desc_view("DECIDE", self.desc)
        # registered (rows and desc are stable from before start; ns is first used the cycle
        # after): no path from the controller's rows through the reader into the buffers
        ns = Signal(range(hw.n_max + 1))
        m.d.sync += ns.eq(self.rows - 1 - desc.n_pkg)

        m.submodules.state = state = SelState(hw)
        for name in ("mask", "m", "order"):
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(state, name))
        m.d.comb += [self.info.eq(state.info), state.consume.eq(self.consume)]

        m.submodules.scorer = scorer = Scorer(hw)
        wiring.connect(m, wiring.flipped(self.rd), scorer.rd)
        wiring.connect(m, wiring.flipped(self.table), scorer.table)
        m.d.comb += [scorer.tiles.eq((ns >> ports.lane_bits(R)) + 1), scorer.heads.eq(desc.heads),
                     scorer.z_buf.eq(desc.z_buf), scorer.z_c0.eq(desc.z_c0),
                     scorer.w_buf.eq(desc.w_buf), scorer.w_c0.eq(desc.w_c0)]
        m.d.comb += [getattr(scorer.geo, k).eq(f) for k, f in geometry_of(desc).items()]

        m.submodules.score_ram = score_ram = Ram(SCORE_BITS, hw.tiles * R)
        m.submodules.num_den_ram = num_den_ram = Ram(NUM_BITS + DEN_BITS, hw.tiles * R, is_signed=False)
        m.submodules.keep_prob = keep_prob = KeepProb(self.recips)
        m.submodules.cap_search = cap_search = CapSearch(hw, SCORE_BITS, self.cap_bits)

        m.submodules.topk = topk = TopK(hw)
        wiring.connect(m, wiring.flipped(self.sb), topk.sb)
        wiring.connect(m, topk.write_order, state.write_order)
        m.d.comb += [topk.rows.eq(self.rows), topk.k.eq(desc.k)]
        is_topk = desc.mode == isa.DECIDE_TOPK
        kept_by_sign, max_score = self._take_records(m, scorer.rec, ns, state.write_keep, score_ram, num_den_ram,
                                                     cap_search, topk.write_keep)
        feed = self._keep_probabilities(m, ns, num_den_ram, keep_prob, state.write_m)
        cap_binds = Signal()                   # more than cap tokens kept: the cap search decides
        top = Signal.like(cap_search.top)      # registered: final from the cycle after the last record
        m.d.sync += top.eq(bit_length(m, max_score[:SCORE_BITS - 1]))      # max_score >= 0: it starts at 0
        m.d.comb += [cap_search.ns.eq(ns), cap_search.cap.eq(desc.cap), cap_search.top.eq(top),
                     score_ram.raddr.eq(cap_search.rd.token), score_ram.ren.eq(cap_search.rd.en),
                     cap_search.rd.data.eq(score_ram.rdata)]
        m_done, cap_done = Signal(), Signal()
        cap_start = Signal(name="cap_start")   # the cap search starts a cycle after SCORE, from a register
        m.d.sync += cap_start.eq(0)
        m.d.comb += cap_search.start.eq(cap_start)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [kept_by_sign.eq(0), max_score.eq(0),
                                 self.stage.eq(desc.stage)]
                    with m.If(is_topk):
                        m.d.comb += topk.start.eq(1)
                        m.next = "TOPK"
                    with m.Else():
                        m.d.comb += scorer.start.eq(1)
                        m.next = "SCORE"
            with m.State("TOPK"):
                with m.If(topk.done):
                    m.d.comb += [state.set.eq(1), self.kept_stb.eq(1), self.done.eq(1)]
                    m.next = "IDLE"
            with m.State("SCORE"):
                with m.If(scorer.done):
                    m.d.sync += [feed.active.eq(ns != 0), feed.read_token.eq(1), feed.m_token.eq(1),
                                 feed.pending.eq(0), m_done.eq(ns == 0),
                                 cap_binds.eq(desc.cap_en & (kept_by_sign > desc.cap))]
                    m.d.sync += cap_done.eq(~(desc.cap_en & (kept_by_sign > desc.cap)))
                    m.d.sync += cap_start.eq(desc.cap_en & (kept_by_sign > desc.cap))
                    m.next = "FINISH"
            with m.State("FINISH"):
                with m.If(keep_prob.o.valid & (feed.m_token == ns)):
                    m.d.sync += [m_done.eq(1), feed.active.eq(0)]
                with m.If(cap_search.done):
                    m.d.sync += cap_done.eq(1)
                with m.If(m_done & cap_done):
                    m.d.comb += [state.set.eq(1), self.kept_stb.eq(1), self.done.eq(1)]
                    m.next = "IDLE"
        info = state.set_info
        m.d.comb += [info.rows.eq(self.rows), info.n_pkg.eq(desc.n_pkg), info.ns.eq(ns),
                     info.kept.eq(Mux(is_topk, desc.k, Mux(cap_binds, desc.cap, kept_by_sign))),
                     self.kept.eq(info.kept)]
        return m

    def _take_records(self, m, rec, ns, write_keep, score_ram, num_den_ram, cap_search, topk_keep):
        """The SCORE phase's records: score and (num, den) into their RAMs, the first keep bit
        (score >= 0) of every scored token into the selection state (later overwritten by the
        cap search's; a top-k's from its ranking), the count of those kept and the largest score.
        Returns (kept, max score)."""
        hw, R = self.hw, self.hw.mac_rows
        bits = ports.lane_bits(R)
        scored = (rec.token >= 1) & (rec.token <= ns)
        keep = scored & (rec.score >= 0)
        kept_by_sign = Signal(range(hw.n_max + 1))
        max_score = Signal(signed(SCORE_BITS))
        den = Signal(DEN_BITS, name="rec_den")
        m.d.comb += [den.eq(Mux(rec.w_sum < 1, 1, rec.w_sum)),
                     score_ram.waddr.eq(rec.token), score_ram.wdata.eq(rec.score), score_ram.wen.eq(rec.valid),
                     num_den_ram.waddr.eq(rec.token), num_den_ram.wdata.eq(Cat(rec.num, den)),
                     num_den_ram.wen.eq(rec.valid)]
        with m.If(rec.valid & scored):
            m.d.sync += kept_by_sign.eq(kept_by_sign + keep)
            with m.If(rec.score > max_score):
                m.d.sync += max_score.eq(rec.score)
        with m.If(rec.valid):
            m.d.comb += [write_keep.tile.eq(rec.token >> bits), write_keep.data.eq(Mux(keep, -1, 0)),
                         write_keep.en.eq(Const(1, R) << rec.token[:bits] if bits else 1)]
        with m.Elif(cap_search.wr.en):
            cap = cap_search.wr
            m.d.comb += [write_keep.tile.eq(cap.token >> bits), write_keep.data.eq(Mux(cap.data, -1, 0)),
                         write_keep.en.eq(Const(1, R) << cap.token[:bits] if bits else 1)]
        with m.Elif(topk_keep.en.any()):
            m.d.comb += [write_keep.tile.eq(topk_keep.tile), write_keep.data.eq(topk_keep.data),
                         write_keep.en.eq(topk_keep.en)]
        return kept_by_sign, max_score

    def _keep_probabilities(self, m, ns, num_den_ram, keep_prob, write_m):
        """The M phase: (num, den) of tokens 1..ns from their RAM through KeepProb into m of the
        selection state (nothing when ns = 0: a stage after one that kept no token has no
        candidates). Returns the feeder's registers (the FSM starts and stops it)."""
        n = range(self.hw.tiles * self.hw.mac_rows + 1)
        feed = SimpleNamespace(active=Signal(name="feeding"), read_token=Signal(n, name="feed_token"),
                               pending=Signal(name="feed_pending"), m_token=Signal(n, name="m_token"))
        take = keep_prob.i.valid & keep_prob.i.ready
        num_den = num_den_ram.rdata
        m.d.comb += [keep_prob.i.valid.eq(feed.pending), keep_prob.i.payload.num.eq(num_den[:NUM_BITS]),
                     keep_prob.i.payload.den.eq(num_den[NUM_BITS:]), num_den_ram.raddr.eq(feed.read_token)]
        with m.If(feed.active & (~feed.pending | take)):
            m.d.comb += num_den_ram.ren.eq(feed.read_token <= ns)
            m.d.sync += feed.pending.eq(feed.read_token <= ns)
            with m.If(feed.read_token <= ns):
                m.d.sync += feed.read_token.eq(feed.read_token + 1)
        m.d.comb += [keep_prob.o.ready.eq(1), write_m.token.eq(feed.m_token), write_m.data.eq(keep_prob.o.payload),
                     write_m.en.eq(keep_prob.o.valid)]
        with m.If(keep_prob.o.valid):
            m.d.sync += feed.m_token.eq(feed.m_token + 1)
        return feed
