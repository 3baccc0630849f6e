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

from ..primitives.arith import product_latency, rshift_round, split_product
from ..primitives.recip import Reciprocal
from .state import M_BITS

NUM_BITS = 36
DEN_BITS = 20
PRODUCT_LATENCY = product_latency(NUM_BITS, WEIGHT_RECIP_BITS + 1)   # num x recip (split_product)


def nd_layout() -> data.StructLayout:
    return data.StructLayout({"num": signed(NUM_BITS), "den": unsigned(DEN_BITS)})


class KeepProb(wiring.Component):
    """i: {num, den >= 1}; o: m (signed(M_BITS)). Per unit one reciprocal in flight; the final
    product and rounding take 2 + PRODUCT_LATENCY register stages."""

    def __init__(self, units: int = 4):
        if units < 1:
            raise ValueError(f"KeepProb needs at least one reciprocal unit (got {units})")
        self.units = units
        super().__init__({"i": In(stream.Signature(nd_layout())), "o": Out(stream.Signature(signed(M_BITS)))})

    def elaborate(self, platform):
        m = Module()
        U, k = self.units, WEIGHT_RECIP_BITS
        recips = [Reciprocal(DEN_BITS, k) for _ in range(U)]
        for u, r in enumerate(recips):
            m.submodules[f"recip{u}"] = r
        nums = [Signal(signed(NUM_BITS), name=f"num{u}") for u in range(U)]   # num beside each unit's den
        next_in = Signal(range(U))             # the unit that takes the next input
        next_out = Signal(range(U))            # the unit whose result leaves next

        # dispatch round robin
        in_ready = Signal()
        for u, r in enumerate(recips):
            m.d.comb += [r.i_d.payload.eq(self.i.payload.den), r.i_d.valid.eq(self.i.valid & (next_in == u))]
            with m.If(next_in == u):
                m.d.comb += in_ready.eq(r.i_d.ready)
        m.d.comb += self.i.ready.eq(in_ready)
        with m.If(self.i.valid & in_ready):
            for u in range(U):
                with m.If(next_in == u):
                    m.d.sync += nums[u].eq(self.i.payload.num)
            m.d.sync += next_in.eq(Mux(next_in == U - 1, 0, next_in + 1))

        # collect in order: select (num, q) of unit next_out, register, multiply and round
        out_valid, out_num, out_q = Signal(), Signal(signed(NUM_BITS)), Signal(k + 1)
        for u, r in enumerate(recips):
            with m.If(next_out == u):
                m.d.comb += [out_valid.eq(r.o_q.valid), out_num.eq(nums[u]), out_q.eq(r.o_q.payload)]
        advance = Signal()
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)
        prod_valid, prod_num, prod_q = Signal(), Signal(signed(NUM_BITS)), Signal(k + 1)
        for u, r in enumerate(recips):
            m.d.comb += r.o_q.ready.eq(advance & (next_out == u))
        # the product through split_product (PRODUCT_LATENCY stages), then the rounding: a stall-
        # together pipeline moving when the output is free or taken
        prod = split_product(m, prod_num, prod_q, name="keep_x", en=advance)
        valid = [prod_valid] + [Signal(name=f"prod_valid{s}") for s in range(PRODUCT_LATENCY)]
        with m.If(advance):
            m.d.sync += [prod_valid.eq(out_valid), prod_num.eq(out_num), prod_q.eq(out_q), self.o.valid.eq(valid[-1]),
                         self.o.payload.eq(rshift_round(prod, k)[:M_BITS])]
            m.d.sync += [valid[s + 1].eq(valid[s]) for s in range(PRODUCT_LATENCY)]
            with m.If(out_valid):
                m.d.sync += next_out.eq(Mux(next_out == U - 1, 0, next_out + 1))
        return m
