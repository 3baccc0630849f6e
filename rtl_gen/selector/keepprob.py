"""Keep probability of scored tokens: m = rshift_round(num * recip(den, 36), 36)
(golden/interp.py Machine.op_decide, docs/arithmetic.md "Selector arithmetic"), through a pool
of `units` reciprocal units (rtl_gen/primitives/recip.py, 37 cycles each) used round robin; results leave
in input order.

Widths: num = sum_h w_h d_sig(d_h) (< 2^35 for H <= 31 heads of int16 products), den =
max(1, sum_h w_h) (< 2^20), recip(den, 36) <= 2^36 (37 bits). m is the low M_BITS bits of the
exact result; it lies in [-2^15, 2^15] whenever every w_h >= 0 (head weights are sigmoid
outputs), so it is exact there.
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.layers import WEIGHT_RECIP_BITS

from ..primitives.arith import rshift_round
from ..primitives.recip import Reciprocal
from .state import M_BITS

NUM_BITS = 36
DEN_BITS = 20


def nd_layout() -> data.StructLayout:
    return data.StructLayout({"num": signed(NUM_BITS), "den": unsigned(DEN_BITS)})


class KeepProb(wiring.Component):
    """i: {num, den >= 1}; o: m (signed(M_BITS)). Per unit one reciprocal in flight; the final
    product and rounding take two register stages."""

    def __init__(self, units: int = 4):
        if units < 1:
            raise ValueError(f"KeepProb needs at least one reciprocal unit (got {units})")
        self.units = units
        super().__init__({"i": In(stream.Signature(nd_layout())), "o": Out(stream.Signature(signed(M_BITS)))})

    def elaborate(self, platform):
        m = Module()
        U, k = self.units, WEIGHT_RECIP_BITS
        rcp = [Reciprocal(DEN_BITS, k) for _ in range(U)]
        for u, r in enumerate(rcp):
            m.submodules[f"rcp{u}"] = r
        nums = [Signal(signed(NUM_BITS), name=f"num{u}") for u in range(U)]
        ii = Signal(range(U))
        oi = Signal(range(U))

        # dispatch round robin
        rdy = Signal()
        for u, r in enumerate(rcp):
            m.d.comb += [r.i_d.payload.eq(self.i.payload.den), r.i_d.valid.eq(self.i.valid & (ii == u))]
            with m.If(ii == u):
                m.d.comb += rdy.eq(r.i_d.ready)
        m.d.comb += self.i.ready.eq(rdy)
        with m.If(self.i.valid & rdy):
            for u in range(U):
                with m.If(ii == u):
                    m.d.sync += nums[u].eq(self.i.payload.num)
            m.d.sync += ii.eq(Mux(ii == U - 1, 0, ii + 1))

        # collect in order: select (num, q) of unit oi, register, multiply and round
        v_sel, n_sel, q_sel = Signal(), Signal(signed(NUM_BITS)), Signal(k + 1)
        for u, r in enumerate(rcp):
            with m.If(oi == u):
                m.d.comb += [v_sel.eq(r.o_q.valid), n_sel.eq(nums[u]), q_sel.eq(r.o_q.payload)]
        en = Signal()
        m.d.comb += en.eq(~self.o.valid | self.o.ready)
        v1, n1, q1 = Signal(), Signal(signed(NUM_BITS)), Signal(k + 1)
        for u, r in enumerate(rcp):
            m.d.comb += r.o_q.ready.eq(en & (oi == u))
        with m.If(en):
            m.d.sync += [v1.eq(v_sel), n1.eq(n_sel), q1.eq(q_sel), self.o.valid.eq(v1),
                         self.o.payload.eq(rshift_round(n1 * q1, k)[:M_BITS])]
            with m.If(v_sel):
                m.d.sync += oi.eq(Mux(oi == U - 1, 0, oi + 1))
        return m
