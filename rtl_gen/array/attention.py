"""ATTENTION sequencer: per head h, O_h = requant(softmax(requant_mul(Q_h K_h^T)) V_h), on the
MAC array with the softmax unit and two probability banks.

Items i = (query tile t, head h), t outer, L = T H items.
    SCORE(i)  for each key tile u: K = head_dim beats, A = Q[t, h dh + j], B = K[u, h dh + j];
              the drained columns of keys < N go through the epilogue (scale, s_shift) to the
              softmax unit, whose probabilities fill bank i % 2 (key by key)
    PV(i)     for each channel group pc of the head: K = N beats, A = P[bank, n], B = V[n, pc];
              the drained columns (requant by o_shift) are written to O[t, h dh + pc C + c]
Issued as S0 S1 PV0 S2 PV1 ... S(L-1) PV(L-2) PV(L-1): the softmax of item i works while the
array runs PV(i-1) and S(i+1). PV(i) waits until bank i % 2 holds item i's probabilities.
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.hw import HardwareConfig

from ..control.decode import desc_view
from .fetch import A_PROB, A_TOK, B_KEY, B_VALUE, KIND_PV, KIND_SCORE, prob_read, req_layout
from ..buffers.ports import lanes, tiles_of
from ..primitives.ram import Ram


class AttentionSeq(wiring.Component):
    def __init__(self, hw: HardwareConfig, softmax):
        self.hw, self.softmax = hw, softmax
        R = hw.mac_rows
        super().__init__({
            "start": In(1), "desc": In(512), "rows": In(range(hw.n_max + 1)),
            "req": Out(stream.Signature(req_layout(hw))),
            "i_s": In(stream.Signature(data.StructLayout({"s": lanes(R), "last": 1}))),
            "pr": In(prob_read(hw)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        hw, R = self.hw, self.hw.mac_rows
        d = desc_view("ATTENTION", self.desc)
        m.submodules.softmax = sm = self.softmax
        m.submodules.pbank = pb = Ram(16, 2 * hw.n_max, R)
        if "frac" in sm.signature.members:
            m.d.comb += sm.frac.eq(d.s_frac)
        m.d.comb += [sm.i_s.valid.eq(self.i_s.valid), sm.i_s.payload.eq(self.i_s.payload),
                     self.i_s.ready.eq(sm.i_s.ready)]
        # softmax output -> probability bank pwb; PV reads bank prb
        pwb, prb = Signal(), Signal()
        p_full = Signal(2)
        pj = Signal(range(hw.n_max + 1))
        p_set, p_clr = Signal(), Signal()
        take_p = sm.o_p.valid & sm.o_p.ready
        m.d.comb += [sm.o_p.ready.eq(~p_full.bit_select(pwb, 1)), pb.waddr.eq(Mux(pwb, hw.n_max, 0) + pj),
                     pb.wdata.eq(sm.o_p.payload.p), pb.wen.eq(Mux(take_p, -1, 0)),
                     pb.raddr.eq(Mux(self.pr.bank, hw.n_max, 0) + self.pr.key), pb.ren.eq(self.pr.en),
                     self.pr.data.eq(pb.rdata)]
        with m.If(take_p):
            m.d.sync += pj.eq(pj + 1)
            with m.If(sm.o_p.payload.last):
                m.d.comb += p_set.eq(1)
                m.d.sync += [pj.eq(0), pwb.eq(~pwb)]
        with m.If(self.start):
            m.d.sync += [pwb.eq(0), pj.eq(0)]
        for b in range(2):
            with m.If(self.start):
                m.d.sync += p_full[b].eq(0)
            with m.Elif(p_set & (pwb == b)):
                m.d.sync += p_full[b].eq(1)
            with m.Elif(p_clr & (prb == b)):
                m.d.sync += p_full[b].eq(0)
        self._issue(m, d, p_full, prb, p_clr)
        return m

    def _issue(self, m, d, p_full, prb, p_clr):
        hw, R, C = self.hw, self.hw.mac_rows, self.hw.mac_cols
        cb = (C - 1).bit_length()
        N = Signal(range(hw.n_max + 1))
        T, U = Signal(range(hw.tiles + 1)), Signal(range(hw.key_tiles + 1))
        th, hh = Signal(range(hw.tiles)), Signal(range(32))          # query tile and head of the score
        pth, phh = Signal(range(hw.tiles)), Signal(range(32))        # ... of the P.V
        u, j = Signal(range(hw.key_tiles)), Signal(range(hw.d_max))
        pc, pn = Signal(range(hw.d_max // C + 1)), Signal(range(hw.n_max))
        s_first, s_all = Signal(), Signal()
        q = self.req.payload
        # fields ATTENTION does not use get a (harmless) live driver: a constant there would be a
        # process without inputs in the Verilog, which Icarus never runs (the bits stay X)
        m.d.comb += [q.w_addr.eq(j), q.info.release.eq(s_first & ~s_first)]
        hoff, phoff = Signal(range(hw.d_max + 1)), Signal(range(hw.d_max + 1))
        m.d.comb += [hoff.eq(hh * d.head_dim), phoff.eq(phh * d.head_dim)]
        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [N.eq(self.rows), T.eq(tiles_of(self.rows, R)), U.eq(tiles_of(self.rows, C)),
                                 th.eq(0), hh.eq(0), pth.eq(0), phh.eq(0), u.eq(0), j.eq(0), pc.eq(0), pn.eq(0),
                                 s_first.eq(1), s_all.eq(0), prb.eq(0)]
                    m.next = "SCORE"
            with m.State("SCORE"):
                m.d.comb += [self.req.valid.eq(1), q.a_src.eq(A_TOK), q.a_buf.eq(d.q_buf), q.a_tile.eq(th),
                             q.a_ch.eq(hoff + j), q.b_src.eq(B_KEY), q.k_tile.eq(u), q.k_ch.eq(hoff + j),
                             q.first.eq(j == 0), q.last.eq(j == d.head_dim - 1),
                             q.info.kind.eq(KIND_SCORE), q.info.tile.eq(th), q.info.key0.eq(u << cb)]
                with m.If(self.req.ready):
                    m.d.sync += j.eq(j + 1)
                    with m.If(j == d.head_dim - 1):
                        m.d.sync += [j.eq(0), u.eq(u + 1)]
                        with m.If(u == U - 1):
                            last_item = (hh == d.heads - 1) & (th == T - 1)
                            m.d.sync += [u.eq(0), hh.eq(hh + 1), s_first.eq(0)]
                            with m.If(hh == d.heads - 1):
                                m.d.sync += [hh.eq(0), th.eq(th + 1)]
                            with m.If(last_item):
                                m.d.sync += s_all.eq(1)
                            with m.If(~s_first | last_item):
                                m.next = "PV"
            with m.State("PV"):
                m.d.comb += [self.req.valid.eq(p_full.bit_select(prb, 1)), q.a_src.eq(A_PROB), q.p_bank.eq(prb),
                             q.p_key.eq(pn), q.b_src.eq(B_VALUE), q.v_token.eq(pn), q.v_grp.eq((phoff >> cb) + pc),
                             q.first.eq(pn == 0), q.last.eq(pn == N - 1),
                             q.info.kind.eq(KIND_PV), q.info.tile.eq(pth), q.info.ch0.eq(phoff + (pc << cb)),
                             q.info.cols.eq(C)]
                with m.If(self.req.valid & self.req.ready):
                    m.d.sync += pn.eq(pn + 1)
                    with m.If(pn == N - 1):
                        m.d.sync += [pn.eq(0), pc.eq(pc + 1)]
                        with m.If(pc == (d.head_dim >> cb) - 1):
                            pv_last = (phh == d.heads - 1) & (pth == T - 1)
                            m.d.comb += p_clr.eq(1)
                            m.d.sync += [pc.eq(0), prb.eq(~prb), phh.eq(phh + 1)]
                            with m.If(phh == d.heads - 1):
                                m.d.sync += [phh.eq(0), pth.eq(pth + 1)]
                            with m.If(pv_last):
                                m.next = "IDLE"
                            with m.Elif(~s_all):
                                m.next = "SCORE"
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
