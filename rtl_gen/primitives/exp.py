"""exp unit with a runtime score format: E = e^x for x <= 0 as unsigned Q15 (golden.kernels.exp_neg
with `frac` an input, not a generation parameter), `lanes` values per beat, in three steps:

  1. t = sat18(round(x * LOG2E_Q14 / 2^(frac + 2)))   (frac + 2 < 0 shifts left)
     q = t >> 12, r = t & 0xFFF
  2. m = round(EXP_HI[r >> 6] * EXP_LO[r & 63] / 2^15);  sh = min(-q, 17)
  3. E = round(m / 2^sh)

Saturating t to 18 bits changes nothing: t <= 0, and any t < -2^16 has q <= -17, so E = 0 both
ways (m < 2^16 is shifted right by 17). Stage 1 is one runtime right shift (requant_uvar: the
rounding adder works on the shifted, saturated value) of v = x log2(e) << 2 by s = frac + 4
clamped to [0, 33]: frac + 2 = -1 or -2 are exact left shifts (s = 1: (4 v + 1) >> 1 = 2 v),
larger left shifts give t <= -94548 for every x <= -1 (E = 0) as s = 0 does, and right shifts
of 32 or more round every |v| < 2^31 to 0 as s = 33 does. The constant product x * 23637 is a
shift-add tree (seven signed power-of-two terms, no DSP); the mantissa product is one 16 x 16
DSP per lane. Yosys, zcu102 target: about 550 LUTs per lane.

Timing (docs/rtl.md, "Timing budget"): LATENCY = 13 register stages: the inputs; x log2(e) (a
balanced shift-add tree, one adder a stage: 3); step 1's shifter in three (requant_uvar's cuts); the table lookups; the
mantissa product; its rounding; step 3's shifter in three.
"""
from __future__ import annotations

from amaranth.hdl import Array, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.kernels import EXP_FRAC, EXP_HI, EXP_LO, EXP_MAX_SHIFT, LOG2E_Q14

from .arith import PIPE_REQUANT, pipe_stage, pipe_sum, requant_uvar, rshift_round, tree_latency
from .pipe import stall_pipeline

X_BITS = 17          # the softmax difference s - max
FRAC_BITS = 8        # the descriptor's s_frac field
T_BITS = 18          # saturated base-2 exponent in Q12 (see the module docstring)
PRE_SHIFT = 2        # left shifts beyond 2 give what 2 gives (see the module docstring)
SHIFT_MAX = 31 + PRE_SHIFT   # |x log2(e)| < 2^31: any right shift >= 32 gives t = 0


def csd(k: int) -> list[tuple[int, int]]:
    """Canonical signed-digit form of k > 0: [(sign, shift)] with k = sum sign 2^shift."""
    out, i = [], 0
    while k:
        if k & 1:
            d = 2 - (k & 3)           # +1 if k = 1 mod 4, -1 if k = 3 mod 4
            out.append((d, i))
            k -= d
        k >>= 1
        i += 1
    return out


def const_mul(m, v, k: int, name: str, en=None) -> Value:
    """v * k for a constant k > 0 as a balanced tree of shifted copies of v (adders, no
    multiplier): registered, one adder a stage (const_mul_latency(k) stages, under `en`)."""
    v = Value.cast(v)
    return pipe_sum(m, [(v << sh) if sign > 0 else -(v << sh) for sign, sh in csd(k)], name, en)


def const_mul_latency(k: int) -> int:
    return tree_latency(len(csd(k)))


LATENCY = 4 + const_mul_latency(LOG2E_Q14) + 2 * PIPE_REQUANT + 2


def exp_shift(m: Module, frac) -> Signal:
    """The right shift of x log2(e) << PRE_SHIFT that gives t: frac + 2 + PRE_SHIFT, clamped to
    [0, SHIFT_MAX] (one per unit, shared by the lanes; see the module docstring)."""
    s = Signal(signed(FRAC_BITS + 2))
    out = Signal(range(SHIFT_MAX + 1), name="exp_shift")
    m.d.comb += [s.eq(frac + (14 - EXP_FRAC + PRE_SHIFT)), out.eq(Mux(s < 0, 0, Mux(s > SHIFT_MAX, SHIFT_MAX, s)))]
    return out


def exp_mantissa(m: Module, r, name: str, stage=None) -> Value:
    """2^(r / 4096) in Q15 from the two 64-entry tables (looked up into signals first, then one
    multiply: arithmetic on the Array lookups would be copied into every element). `stage`
    (arith.pipe_stage): registers after the lookups and after the product."""
    cut = stage or (lambda values: values)
    hi = Signal(16, name=f"{name}_hi")
    lo = Signal(16, name=f"{name}_lo")
    m.d.comb += [hi.eq(Array(Const(v, 16) for v in EXP_HI)[r[6:12]]),
                 lo.eq(Array(Const(v, 16) for v in EXP_LO)[r[0:6]])]
    hi, lo = cut([hi, lo])
    (product,) = cut([hi * lo])
    return rshift_round(product, 15)


def in_layout(lanes: int) -> data.StructLayout:
    return data.StructLayout({"x": data.ArrayLayout(signed(X_BITS), lanes), "frac": signed(FRAC_BITS)})


class ExpNegVar(wiring.Component):
    """i_x {x: lanes x signed(17) (x <= 0), frac: signed(8)} -> o_e: lanes x unsigned(16) Q15.
    A stall-together pipeline of LATENCY stages (o_e.ready = 1 makes it a fixed delay)."""

    def __init__(self, lanes: int = 1):
        self.lanes = lanes
        super().__init__({
            "i_x": In(stream.Signature(in_layout(lanes))),
            "o_e": Out(stream.Signature(data.ArrayLayout(unsigned(16), lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        en, _ = stall_pipeline(m, self.i_x, self.o_e, LATENCY)
        # replicated registers: the runtime shift and its copies drive every lane's shifter
        cut = pipe_stage(m, en, "exp_c", attrs={"max_fanout": 16})
        xs = [self.i_x.payload.x[l] for l in range(self.lanes)]
        *xs, shift = cut(xs + [exp_shift(m, self.i_x.payload.frac)])                    # the inputs
        vs = [const_mul(m, x, LOG2E_Q14, f"xl{l}", en) for l, x in enumerate(xs)]
        for _ in range(const_mul_latency(LOG2E_Q14)):                                  # beside the tree
            (shift,) = cut([shift])
        for l in range(self.lanes):
            t = requant_uvar(m, vs[l] << PRE_SHIFT, shift, T_BITS, name=f"t{l}", stage=cut)
            q = Signal(signed(T_BITS - EXP_FRAC), name=f"q{l}")
            r = Signal(EXP_FRAC, name=f"r{l}")
            mant = Signal(17, name=f"mant{l}")
            sh = Signal(range(EXP_MAX_SHIFT + 1), name=f"sh{l}")
            sh_c = Signal.like(sh, name=f"sh_c{l}")
            m.d.comb += sh_c.eq(Mux(q <= -EXP_MAX_SHIFT, EXP_MAX_SHIFT, -q))
            mant_c = exp_mantissa(m, r, f"m{l}", cut)
            (sh_d,) = cut(cut([sh_c]))                      # alongside the lookups and the product
            e = requant_uvar(m, mant, sh, 17, name=f"e{l}", stage=cut)
            with m.If(en):
                m.d.sync += [q.eq(t >> EXP_FRAC), r.eq(t[:EXP_FRAC]), mant.eq(mant_c), sh.eq(sh_d),
                             self.o_e.payload[l].eq(e)]
        return m
