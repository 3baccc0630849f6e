"""Softmax unit (golden.kernels.softmax), `lanes` rows in parallel, one column per beat.

Per group of `lanes` rows of length n <= n_max (n beats in, n beats out), per lane:
  max over the row while it is stored                              (n cycles)
  E_j = exp_neg(s_j - max), S = sum E_j  (rtl_gen.exp, pipelined)   (n + 3 cycles)
  R = floor(2^46 / S)                    (rtl_gen.recip)           (47 cycles)
  p_j = min(round(E_j R / 2^31), 32767)                            (n cycles)
Ports: i_s {s[lanes], last} (last on the row's final column), o_p {p[lanes], last}.
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.kernels import PROB_FRAC, SOFTMAX_RECIP_BITS

from .arith import WORD
from .exp import ExpNeg
from .layernorm import lanes_layout
from .recip import Reciprocal

SUM_BITS = 28          # S <= 4096 * 2^15 = 2^27


class SoftmaxUnit(wiring.Component):
    def __init__(self, frac: int, lanes: int, n_max: int):
        if not 1 <= n_max <= 4096:
            raise ValueError(f"softmax rows must hold 1..4096 scores (n_max = {n_max})")
        self.frac, self.lanes, self.n_max = frac, lanes, n_max
        super().__init__({
            "i_s": In(stream.Signature(lanes_layout(lanes, "s"))),
            "o_p": Out(stream.Signature(lanes_layout(lanes, "p"))),
        })

    def elaborate(self, platform):
        m = Module()
        L, N = self.lanes, self.n_max
        m.submodules.sbuf = sbuf = memory.Memory(shape=data.ArrayLayout(signed(WORD), L), depth=N, init=[])
        m.submodules.ebuf = ebuf = memory.Memory(shape=data.ArrayLayout(unsigned(WORD), L), depth=N, init=[])
        sw, sr = sbuf.write_port(), sbuf.read_port(domain="comb")
        ew, er = ebuf.write_port(), ebuf.read_port(domain="comb")
        exps = [ExpNeg(self.frac) for _ in range(L)]
        recips = [Reciprocal(SUM_BITS, SOFTMAX_RECIP_BITS) for _ in range(L)]
        for l in range(L):
            m.submodules[f"exp{l}"], m.submodules[f"recip{l}"] = exps[l], recips[l]

        cnt = Signal(range(N + 1))            # row length
        j = Signal(range(N + 1))              # load / read / output index
        jw = Signal(range(N + 1))             # E write index
        mx = [Signal(signed(WORD), name=f"max_{l}") for l in range(L)]
        ssum = [Signal(unsigned(SUM_BITS), name=f"sum_{l}") for l in range(L)]
        rr = [Signal(unsigned(SOFTMAX_RECIP_BITS + 1), name=f"r_{l}") for l in range(L)]
        s_in = self.i_s.payload.s
        shift = SOFTMAX_RECIP_BITS - PROB_FRAC

        m.d.comb += [sw.addr.eq(j), sw.data.eq(s_in), sr.addr.eq(j), ew.addr.eq(jw), er.addr.eq(j)]
        for l in range(L):
            m.d.comb += [exps[l].i_x.payload.eq(sr.data[l] - mx[l]), ew.data[l].eq(exps[l].o_e.payload),
                         recips[l].i_d.payload.eq(ssum[l])]
            p = (er.data[l] * rr[l] + (1 << (shift - 1))) >> shift            # < 2^46 before the shift
            m.d.comb += self.o_p.payload.p[l].eq(Mux(p > (1 << 15) - 1, (1 << 15) - 1, p))
        m.d.comb += self.o_p.payload.last.eq(j == cnt - 1)

        with m.FSM():
            with m.State("LOAD"):
                m.d.comb += [self.i_s.ready.eq(1), sw.en.eq(self.i_s.valid.replicate(L))]
                with m.If(self.i_s.valid):
                    for l in range(L):
                        with m.If((j == 0) | (s_in[l] > mx[l])):
                            m.d.sync += mx[l].eq(s_in[l])
                    m.d.sync += j.eq(j + 1)
                    with m.If(self.i_s.payload.last | (j == N - 1)):
                        m.d.sync += [cnt.eq(j + 1), j.eq(0), jw.eq(0)] + [s.eq(0) for s in ssum]
                        m.next = "EXP"
            with m.State("EXP"):            # exp units never stall here (o_e.ready = 1)
                m.d.comb += [e.i_x.valid.eq(j < cnt) for e in exps]
                m.d.comb += [e.o_e.ready.eq(1) for e in exps]
                with m.If(exps[0].i_x.valid & exps[0].i_x.ready):
                    m.d.sync += j.eq(j + 1)
                with m.If(exps[0].o_e.valid):
                    m.d.comb += ew.en.eq(-1)
                    m.d.sync += [ssum[l].eq(ssum[l] + exps[l].o_e.payload) for l in range(L)]
                    m.d.sync += jw.eq(jw + 1)
                    with m.If(jw == cnt - 1):
                        m.next = "RECIP"
            with m.State("RECIP"):
                m.d.comb += [q.i_d.valid.eq(1) for q in recips]
                m.next = "RECIP_WAIT"
            with m.State("RECIP_WAIT"):
                m.d.comb += [q.o_q.ready.eq(1) for q in recips]
                with m.If(recips[0].o_q.valid):
                    m.d.sync += [rr[l].eq(recips[l].o_q.payload) for l in range(L)]
                    m.d.sync += j.eq(0)
                    m.next = "OUT"
            with m.State("OUT"):
                m.d.comb += self.o_p.valid.eq(1)
                with m.If(self.o_p.ready):
                    m.d.sync += j.eq(j + 1)
                    with m.If(j == cnt - 1):
                        m.d.sync += j.eq(0)
                        m.next = "LOAD"
        return m
