"""exp unit: E = e^x for x <= 0 as unsigned Q15 (golden.kernels.exp_neg), three pipeline stages:

  1. t = round(x * LOG2E_Q14 / 2^(frac + 2));  q = t >> 12, r = t & 0xFFF
  2. m = round(EXP_HI[r >> 6] * EXP_LO[r & 63] / 2^15);  sh = min(-q, 17)
  3. E = round(m / 2^sh)
"""
from __future__ import annotations

from amaranth.hdl import Array, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from golden.kernels import EXP_FRAC, EXP_HI, EXP_LO, EXP_MAX_SHIFT, LOG2E_Q14

from .arith import rshift_round, rshift_round_var
from .pipe import stall_pipeline

X_BITS = 17


def exp_stage1(x, frac: int):
    """(q, r) of the base-2 exponent t = x log2(e) in Q12 (x signed, frac fraction bits)."""
    t = rshift_round(x * LOG2E_Q14, frac + 14 - EXP_FRAC)
    return t >> EXP_FRAC, t[:EXP_FRAC]


def exp_mantissa(m, r):
    """2^(r / 4096) in Q15 from the two 64-entry tables: two table reads into signals, then one
    multiply. (Multiplying the Array lookups directly would make Amaranth expand all 64 x 64
    constant products behind a 4096-way mux.)"""
    hi = Signal(16, name="exp_hi")
    lo = Signal(16, name="exp_lo")
    m.d.comb += [hi.eq(Array(Const(v, 16) for v in EXP_HI)[r[6:12]]), lo.eq(Array(Const(v, 16) for v in EXP_LO)[r[0:6]])]
    return rshift_round(hi * lo, 15)


class ExpNeg(wiring.Component):
    """i_x: signed(17), x <= 0 with `frac` fraction bits; o_e: unsigned(16), e^x in Q15."""

    def __init__(self, frac: int):
        self.frac = frac
        super().__init__({
            "i_x": In(stream.Signature(signed(X_BITS))),
            "o_e": Out(stream.Signature(unsigned(16))),
        })

    def elaborate(self, platform):
        m = Module()
        en, _ = stall_pipeline(m, self.i_x, self.o_e, 3)
        q = Signal(signed(40))
        r = Signal(EXP_FRAC)
        mant = Signal(17)
        sh = Signal(range(EXP_MAX_SHIFT + 1))
        q_c, r_c = exp_stage1(self.i_x.payload, self.frac)
        with m.If(en):
            m.d.sync += [q.eq(q_c), r.eq(r_c)]
            m.d.sync += [mant.eq(exp_mantissa(m, r)), sh.eq(Mux(q <= -EXP_MAX_SHIFT, EXP_MAX_SHIFT, -q))]
            m.d.sync += self.o_e.payload.eq(rshift_round_var(mant, sh))
        return m
