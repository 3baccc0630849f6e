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
The selection state (rtl_gen/selector/state.py) lives here: PACKAGE, COMPACT and a STORE of the
selection read it through `mask` and `m`; `info` has valid / ns / kept; `kept_stb` pulses with
`stage` when the decision is complete (the top latches KEPT[stage]).
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden.hw import HardwareConfig

from ..buffers import ports
from ..primitives.arith import bit_length
from .capsearch import CapSearch
from ..control.decode import desc_view
from .keepprob import DEN_BITS, NUM_BITS, KeepProb
from ..primitives.pwl import LATENCY as PWL_LATENCY
from ..primitives.pwl import PwlEval, geometry_layout, geometry_of, table_read
from ..primitives.ram import Ram
from .state import SelState, info_layout, m_read, mask_read

SCORE_BITS = 38          # |sum_h w_h d_h| < 31 x 2^15 x 2^16 < 2^36
DSUM_BITS = 21           # sum_h w_h


def record_layout(hw: HardwareConfig) -> data.StructLayout:
    return data.StructLayout({"valid": 1, "token": range(hw.tiles * hw.mac_rows), "score": signed(SCORE_BITS),
                              "num": signed(NUM_BITS), "den": DEN_BITS})


class Scorer(wiring.Component):
    """The SCORE phase: reads z0, z1, w words per (tile, head), runs the lanes serially, and
    emits one record (token, score, num, den) per lane of the last head (no back-pressure)."""

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
        hw, R = self.hw, self.hw.mac_rows
        lanes = ports.lanes(R)
        running = Signal()
        # ---- reader: three words per group into the `next` set
        rt, rh = Signal(range(hw.tiles + 1)), Signal(5)
        rq, ract = Signal(2), Signal()
        lat = Signal(2)
        lat_v = Signal()
        nz0, nz1, nw = Signal(lanes), Signal(lanes), Signal(lanes)
        nfull, ntile, nhead = Signal(), Signal(range(hw.tiles)), Signal(5)
        # ---- lanes
        cz0, cz1, cw = Signal(lanes), Signal(lanes), Signal(lanes)
        lbusy, lane, ctile, chead = Signal(), Signal(range(R)), Signal(range(hw.tiles)), Signal(5)
        xfer = Signal()
        m.d.comb += xfer.eq(nfull & (~lbusy | (lane == R - 1)))
        more = rt < self.tiles
        can_start = Signal()
        m.d.comb += can_start.eq(running & ~ract & ~lat_v & more & (~nfull | xfer))
        issue = can_start | ract
        q = Mux(ract, rq, 0)
        m.d.comb += [self.rd.en.eq(issue), self.rd.tile.eq(rt),
                     self.rd.buf.eq(Mux(q == 2, self.w_buf, self.z_buf)),
                     self.rd.ch.eq(Mux(q == 2, self.w_c0 + rh, self.z_c0 + (rh << 1) + q))]
        m.d.sync += [lat_v.eq(issue), lat.eq(q)]
        with m.If(can_start):
            m.d.sync += [ract.eq(1), rq.eq(1), ntile.eq(rt), nhead.eq(rh)]
        with m.If(ract):
            m.d.sync += rq.eq(rq + 1)
            with m.If(rq == 2):
                m.d.sync += [ract.eq(0), rh.eq(rh + 1)]
                with m.If(rh == self.heads - 1):
                    m.d.sync += [rh.eq(0), rt.eq(rt + 1)]
        with m.If(lat_v):
            with m.Switch(lat):
                with m.Case(0):
                    m.d.sync += nz0.eq(self.rd.data)
                with m.Case(1):
                    m.d.sync += nz1.eq(self.rd.data)
                with m.Case(2):
                    m.d.sync += [nw.eq(self.rd.data), nfull.eq(1)]
        with m.If(xfer):
            m.d.sync += [cz0.eq(nz0), cz1.eq(nz1), cw.eq(nw), lbusy.eq(1), lane.eq(0), ctile.eq(ntile),
                         chead.eq(nhead), nfull.eq(0)]
        with m.Elif(lbusy):
            m.d.sync += [x.eq(x.as_value() >> 16) for x in (cz0, cz1, cw)]
            m.d.sync += lane.eq(lane + 1)
            with m.If(lane == R - 1):
                m.d.sync += lbusy.eq(0)

        # ---- lane datapath: L0 (lane cycle) .. L4 (accumulate), record at L5
        m.submodules.pwl = pwl = PwlEval(hw, 17)
        wiring.connect(m, wiring.flipped(self.table), pwl.table)
        m.d.comb += pwl.geo.eq(self.geo)
        d0 = Signal(signed(17))
        m.d.comb += [d0.eq(cz0[0] - cz1[0]), pwl.x.eq(d0)]
        tag = data.StructLayout({"v": 1, "r": range(R), "t": range(hw.tiles), "h": 5})
        tags = [Signal(tag, name=f"tag{k}") for k in range(5)]
        m.d.comb += [tags[0].v.eq(lbusy), tags[0].r.eq(lane), tags[0].t.eq(ctile), tags[0].h.eq(chead)]
        for k in range(1, 5):
            m.d.sync += tags[k].eq(tags[k - 1])
        ws = [Signal(signed(16), name=f"w{k}") for k in range(5)]
        p1 = [Signal(signed(33), name=f"p1_{k}") for k in range(5)]
        m.d.comb += ws[0].eq(cw[0])
        m.d.sync += [ws[1].eq(ws[0]), p1[1].eq(ws[0] * d0)]
        for k in range(2, 5):
            m.d.sync += [ws[k].eq(ws[k - 1]), p1[k].eq(p1[k - 1])]
        assert PWL_LATENCY == 3
        p2 = Signal(signed(32))
        m.d.sync += p2.eq(ws[3] * pwl.y)

        acc_l = data.StructLayout({"score": signed(SCORE_BITS), "num": signed(NUM_BITS), "dsum": signed(DSUM_BITS)})
        m.submodules.acc = acc = Ram(acc_l.size, R, is_signed=False)
        old = data.View(acc_l, acc.rdata)
        t4 = tags[4]
        first = t4.h == 0
        new = Signal(acc_l)
        m.d.comb += [acc.raddr.eq(tags[3].r), acc.ren.eq(tags[3].v),
                     new.score.eq(Mux(first, 0, old.score) + p1[4]), new.num.eq(Mux(first, 0, old.num) + p2),
                     new.dsum.eq(Mux(first, 0, old.dsum) + ws[4]),
                     acc.waddr.eq(t4.r), acc.wdata.eq(new), acc.wen.eq(t4.v)]
        rec = self.rec
        m.d.sync += [rec.valid.eq(t4.v & (t4.h == self.heads - 1)), rec.token.eq(t4.t * R + t4.r),
                     rec.score.eq(new.score), rec.num.eq(new.num),
                     rec.den.eq(Mux(new.dsum < 1, 1, new.dsum))]

        busy = Signal()
        m.d.comb += busy.eq(more | ract | lat_v | nfull | lbusy | Cat(t.v for t in tags[1:]).any() | rec.valid)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [running.eq(1), rt.eq(0), rh.eq(0)]
                    m.next = "RUN"
            with m.State("RUN"):
                with m.If(~busy):
                    m.d.sync += running.eq(0)
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
        return m


class Decide(wiring.Component):
    def __init__(self, hw: HardwareConfig, recips: int = 4, cap_bits: int = 3):
        self.hw, self.recips, self.cap_bits = hw, recips, cap_bits
        super().__init__({
            **ports.control(hw),
            "rd": Out(ports.tok_read(hw)), "table": Out(table_read(hw)),
            "mask": In(mask_read(hw)), "m": In(m_read(hw)), "info": Out(info_layout(hw)), "consume": In(1),
            "kept_stb": Out(1), "kept": Out(range(hw.n_max + 1)), "stage": Out(3),
        })

    def elaborate(self, platform):
        m = Module()
        hw, R = self.hw, self.hw.mac_rows
        lr = R.bit_length() - 1
        v = desc_view("DECIDE", self.desc)
        ns = Signal(range(hw.n_max + 1))
        m.d.comb += ns.eq(self.rows - 1 - v.n_pkg)

        m.submodules.state = st = SelState(hw)
        for name in ("mask", "m"):
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(st, name))
        m.d.comb += [self.info.eq(st.info), st.consume.eq(self.consume)]

        m.submodules.scorer = sc = Scorer(hw)
        wiring.connect(m, wiring.flipped(self.rd), sc.rd)
        wiring.connect(m, wiring.flipped(self.table), sc.table)
        m.d.comb += [sc.tiles.eq((ns >> lr) + 1), sc.heads.eq(v.heads), sc.z_buf.eq(v.z_buf), sc.z_c0.eq(v.z_c0),
                     sc.w_buf.eq(v.w_buf), sc.w_c0.eq(v.w_c0)]
        m.d.comb += [getattr(sc.geo, k).eq(f) for k, f in geometry_of(v).items()]

        m.submodules.score = smem = Ram(SCORE_BITS, hw.tiles * R)
        m.submodules.nd = ndmem = Ram(NUM_BITS + DEN_BITS, hw.tiles * R, is_signed=False)
        m.submodules.kp = kp = KeepProb(self.recips)
        m.submodules.cap = cs = CapSearch(hw, SCORE_BITS, self.cap_bits)

        # ---- records of the SCORE phase: score, (num, den), first keep bit
        rec = sc.rec
        scored = (rec.token >= 1) & (rec.token <= ns)
        keep0 = scored & (rec.score >= 0)
        kept0 = Signal(range(hw.n_max + 1))
        maxs = Signal(signed(SCORE_BITS))
        m.d.comb += [smem.waddr.eq(rec.token), smem.wdata.eq(rec.score), smem.wen.eq(rec.valid),
                     ndmem.waddr.eq(rec.token), ndmem.wdata.eq(Cat(rec.num, rec.den)), ndmem.wen.eq(rec.valid)]
        with m.If(rec.valid & scored):
            m.d.sync += kept0.eq(kept0 + keep0)
            with m.If(rec.score > maxs):
                m.d.sync += maxs.eq(rec.score)
        kw = st.kw
        with m.If(rec.valid):
            m.d.comb += [kw.tile.eq(rec.token >> lr), kw.data.eq(Mux(keep0, -1, 0)),
                         kw.en.eq(Const(1, R) << rec.token[:lr] if lr else 1)]
        with m.Elif(cs.wr.en):
            m.d.comb += [kw.tile.eq(cs.wr.token >> lr), kw.data.eq(Mux(cs.wr.data, -1, 0)),
                         kw.en.eq(Const(1, R) << cs.wr.token[:lr] if lr else 1)]

        # ---- M phase: (num, den) of tokens 1..ns -> KeepProb -> m (nothing when ns = 0: a stage
        # after one that kept no token has no candidates)
        jd, jc = Signal(range(hw.tiles * R + 1)), Signal(range(hw.tiles * R + 1))
        pend, feeding = Signal(), Signal()
        take = kp.i.valid & kp.i.ready
        nd = ndmem.rdata
        m.d.comb += [kp.i.valid.eq(pend), kp.i.payload.num.eq(nd[:NUM_BITS]),
                     kp.i.payload.den.eq(nd[NUM_BITS:]), ndmem.raddr.eq(jd)]
        with m.If(feeding & (~pend | take)):
            m.d.comb += ndmem.ren.eq(jd <= ns)
            m.d.sync += pend.eq(jd <= ns)
            with m.If(jd <= ns):
                m.d.sync += jd.eq(jd + 1)
        m.d.comb += [kp.o.ready.eq(1), st.mw.token.eq(jc), st.mw.data.eq(kp.o.payload), st.mw.en.eq(kp.o.valid)]
        with m.If(kp.o.valid):
            m.d.sync += jc.eq(jc + 1)

        # ---- CAP phase
        bind = Signal()
        m.d.comb += [cs.ns.eq(ns), cs.cap.eq(v.cap), cs.top.eq(bit_length(m, Mux(maxs < 0, 0, maxs)[:SCORE_BITS - 1])),
                     smem.raddr.eq(cs.rd.token), smem.ren.eq(cs.rd.en), cs.rd.data.eq(smem.rdata)]
        m_done, c_done = Signal(), Signal()

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.comb += sc.start.eq(1)
                    m.d.sync += [kept0.eq(0), maxs.eq(-1 << (SCORE_BITS - 1)), self.stage.eq(v.stage)]
                    m.next = "SCORE"
            with m.State("SCORE"):
                with m.If(sc.done):
                    m.d.sync += [feeding.eq(ns != 0), jd.eq(1), jc.eq(1), pend.eq(0), m_done.eq(ns == 0),
                                 bind.eq(v.cap_en & (kept0 > v.cap))]
                    m.d.sync += c_done.eq(~(v.cap_en & (kept0 > v.cap)))
                    m.d.comb += cs.start.eq(v.cap_en & (kept0 > v.cap))
                    m.next = "FINISH"
            with m.State("FINISH"):
                with m.If(kp.o.valid & (jc == ns)):
                    m.d.sync += [m_done.eq(1), feeding.eq(0)]
                with m.If(cs.done):
                    m.d.sync += c_done.eq(1)
                with m.If(m_done & c_done):
                    m.d.comb += [st.set.eq(1), self.kept_stb.eq(1), self.done.eq(1)]
                    m.next = "IDLE"
        si = st.set_info
        m.d.comb += [si.rows.eq(self.rows), si.n_pkg.eq(v.n_pkg), si.ns.eq(ns), si.kept.eq(Mux(bind, v.cap, kept0)),
                     self.kept.eq(si.kept)]
        return m
