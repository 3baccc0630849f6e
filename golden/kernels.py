"""Integer kernels built from `arith`: exp, softmax, piecewise-linear GELU and sigmoid,
LayerNorm. Each is written as the hardware computes it; the width of every intermediate is
stated beside it and in docs/arithmetic.md. Floats appear only in the table builders, which run
once per configuration (deterministically) and produce integer constants.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

from .arith import as_int, bit_length, isqrt, recip, requant, rshift_round, sat

# ------------------------------------------------------------------ exp and softmax
EXP_FRAC = 12                      # fraction bits of the base-2 exponent t = x * log2(e)
LOG2E_Q14 = round(math.log2(math.e) * (1 << 14))        # 23637, 15-bit unsigned
EXP_HI = tuple(round(2 ** (i / 64) * (1 << 15)) for i in range(64))          # 2^(i/64), Q15
EXP_LO = tuple(round(2 ** (j / 4096) * (1 << 15)) for j in range(64))        # 2^(j/4096), Q15
_EXP_HI = np.array(EXP_HI, dtype=np.int64)
_EXP_LO = np.array(EXP_LO, dtype=np.int64)
EXP_MAX_SHIFT = 17                 # 2^q with q <= -17 gives 0 after rounding a 16-bit mantissa
SOFTMAX_RECIP_BITS = 46            # R = floor(2^46 / S), S in [2^15, 2^27]
PROB_FRAC = 15                     # probabilities are int16 Q15 (1.0 saturates to 32767)
CLS_ATTN_FRAC = 23                 # the CLS row's probabilities as EViT / Evo-ViT rank by them (cls_attention)


def exp_neg(x, frac: int) -> np.ndarray:
    """e^x for x <= 0 given with `frac` fraction bits (at most 17-bit signed), as unsigned Q15
    in [0, 32768].

    t  = round(x * LOG2E_Q14 / 2^(frac + 14 - 12))   base-2 exponent, Q12, <= 0  (32-bit product)
    q  = t >> 12 (floor),  r = t & 0xFFF              integer and fraction parts
    m  = round(EXP_HI[r >> 6] * EXP_LO[r & 63] / 2^15)  2^(r/4096) in Q15, [32768, 65535]
    E  = round(m / 2^-q), 0 once -q >= 17
    """
    x = as_int(x)
    t = rshift_round(x * LOG2E_Q14, frac + 14 - EXP_FRAC)
    q = t >> EXP_FRAC
    r = t & ((1 << EXP_FRAC) - 1)
    m = rshift_round(_EXP_HI[r >> 6] * _EXP_LO[r & 63], 15)
    return rshift_round(m, np.minimum(-q, EXP_MAX_SHIFT))


@lru_cache(maxsize=None)
def exp_table(frac: int) -> np.ndarray:
    """exp_neg over every possible difference 0, -1, ..., -65535 (index = -x). A cache of
    `exp_neg`, bit-identical by construction; the RTL computes exp_neg itself."""
    return exp_neg(-np.arange(1 << 16, dtype=np.int64), frac).astype(np.int32)


def softmax_product(s, frac: int, axis: int = -1) -> np.ndarray:
    """E_i * R of a row softmax of int16 scores (frac `frac`): the probabilities with 46
    fraction bits, before any rounding (`softmax` and `cls_attention` round them).

    max -> E_i = exp_neg(s_i - max) (17-bit difference) -> S = sum E_i (<= 2^27 for N <= 4096)
    -> one reciprocal per row R = floor(2^46 / S) (S >= 2^15 since the max term is 1.0, so
    R <= 2^31) -> E_i R <= 2^46 (E_i <= S)."""
    s = as_int(s)
    e = exp_table(frac)[s.max(axis=axis, keepdims=True) - s]          # = exp_neg(s - max)
    return e * recip(e.sum(axis=axis, keepdims=True, dtype=np.int64), SOFTMAX_RECIP_BITS)


def softmax(s, frac: int, axis: int = -1) -> np.ndarray:
    """Row softmax of int16 scores (frac `frac`) -> int16 Q15 probabilities
    p_i = sat16(round(E_i * R / 2^31)) (`softmax_product`)."""
    p = softmax_product(s, frac, axis)
    p += 1 << (SOFTMAX_RECIP_BITS - PROB_FRAC - 1)
    p >>= SOFTMAX_RECIP_BITS - PROB_FRAC
    return np.minimum(p, (1 << 15) - 1, out=p)                        # p >= 0: saturate above


def cls_attention(s, frac: int) -> np.ndarray:
    """The CLS row's probabilities as EViT and Evo-ViT rank by them: the same softmax rounded
    to CLS_ATTN_FRAC = 23 fraction bits, p_i = round(E_i * R / 2^23) <= 2^23 (unsigned, never
    saturates). `s`: the CLS row of int16 scores [..., N] (the softmax's row 0). Eight bits
    finer than the Q15 probabilities of P V: at N ~ 200 tokens a Q15 CLS attention of ~160
    LSB ties and rounds the ranking away (docs/arithmetic.md, "CLS attention scores")."""
    p = softmax_product(s, frac)
    p += 1 << (SOFTMAX_RECIP_BITS - CLS_ATTN_FRAC - 1)
    p >>= SOFTMAX_RECIP_BITS - CLS_ATTN_FRAC
    return p


# ------------------------------------------------------------------ piecewise-linear units
PWL_GUARD = 6  # extra fraction bits carried in the tables before the final rounding


def gelu_f(x: float) -> float:
    return 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0)))


def sigmoid_f(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


# name -> (function, domain half-width, max |f''|, right tail extends the last segment)
PWL_FUNCS = {
    "gelu": (gelu_f, 8, 2 / math.sqrt(2 * math.pi), True),
    "sigmoid": (sigmoid_f, 16, 0.0963, False),
}


@dataclass(frozen=True, eq=False)
class PWL:
    """y = f(x) by linear interpolation between table points spaced 2^seg_shift input LSBs.

    xc  = clamp(x, lo, hi - 1)              (right clamp skipped when `extend`)
    k   = min((xc - lo) >> seg_shift, n_seg - 1);  d = xc - lo - (k << seg_shift)   (d >= 0)
    acc = base[k] * 2^in_frac + slope[k] * d     (base, slope carry out_frac + 6 fraction bits)
    y   = sat16(round(acc / 2^(in_frac + 6)))
    """
    name: str
    in_frac: int
    out_frac: int
    in_bits: int
    lo: int
    seg_shift: int
    n_seg: int
    extend: bool
    base: np.ndarray
    slope: np.ndarray

    @cached_property
    def table(self) -> np.ndarray | None:
        """`evaluate` over every 16-bit input, stored so that `table[x]` (negative x indexing
        from the end) is the value at x: a bit-identical cache for speed."""
        if self.in_bits != 16:
            return None
        return self.evaluate(np.arange(1 << 16, dtype=np.int64) - ((np.arange(1 << 16) >> 15) << 16))

    def __call__(self, x) -> np.ndarray:
        t = self.table
        if t is None:
            return self.evaluate(x)
        return t[x]

    def evaluate(self, x) -> np.ndarray:
        x = as_int(x)
        hi = self.lo + (self.n_seg << self.seg_shift)
        xc = np.maximum(x, self.lo) if self.extend else np.clip(x, self.lo, hi - 1)
        k = np.minimum((xc - self.lo) >> self.seg_shift, self.n_seg - 1)
        d = xc - self.lo - (k << self.seg_shift)
        acc = (self.base[k] << self.in_frac) + self.slope[k] * d
        return sat(rshift_round(acc, self.in_frac + PWL_GUARD))


@lru_cache(maxsize=None)
def make_pwl(name: str, in_frac: int, out_frac: int, in_bits: int = 16) -> PWL:
    """Build the tables of `name` deterministically from the formats. The segment width h is
    the largest power of two with h^2/8 * max|f''| <= 1/4 output LSB."""
    f, half, d2, extend = PWL_FUNCS[name]
    if in_frac < 0:
        raise ValueError(f"{name} input needs a non-negative fraction width (got {in_frac})")
    seg_bits = math.ceil(0.5 * math.log2(d2 * 2 ** out_frac / 2)) if d2 * 2 ** out_frac > 2 else 0
    seg_bits = min(max(seg_bits, 0), in_frac)
    seg_shift = in_frac - seg_bits
    reach = 1 << (in_bits - 1)                       # representable input magnitude in LSBs
    lo = max(-half << in_frac, -reach)
    hi = min(half << in_frac, reach)
    lo = (lo >> seg_shift) << seg_shift
    n_seg = max(1, -(-(hi - lo) >> seg_shift))
    xs = [(lo + (k << seg_shift)) / 2 ** in_frac for k in range(n_seg + 1)]
    ys = [f(v) for v in xs]
    scale = 2.0 ** (out_frac + PWL_GUARD)
    base = np.array([round(y * scale) for y in ys[:-1]], dtype=np.int64)
    h = 2.0 ** (seg_shift - in_frac)                 # segment width in real units
    slope = np.array([round((ys[k + 1] - ys[k]) / h * scale) for k in range(n_seg)], dtype=np.int64)
    return PWL(name, in_frac, out_frac, in_bits, lo, seg_shift, n_seg, extend, base, slope)


def gelu(x, in_frac: int, out_frac: int) -> np.ndarray:
    return make_pwl("gelu", in_frac, out_frac)(x)


def sigmoid(x, in_frac: int, out_frac: int = 15, in_bits: int = 16) -> np.ndarray:
    return make_pwl("sigmoid", in_frac, out_frac, in_bits)(x)


# ------------------------------------------------------------------ LayerNorm
LN_Z_FRAC = 16     # fraction bits of the normalised value z (|z| <= sqrt(C) <= 64: 23 bits)
LN_SQRT_BITS = 62  # the variance is normalised by an even shift into [2^60, 2^62)
LN_RECIP_BITS = 62


def ln_eps_const(eps: float, channels: int, in_frac: int) -> int:
    """eps in the units of V = C*sum(x^2) - (sum x)^2 (= C^2 var, frac 2*in_frac); >= 1 so that
    a constant token never divides by zero."""
    return max(1, round(eps * channels * channels * 4.0 ** in_frac))


def layernorm(x, in_frac: int, gamma, g_frac: int, beta_acc, eps_q: int, out_frac: int) -> np.ndarray:
    """LayerNorm over the last axis (C <= 4096 channels), one square root and one reciprocal
    per token, no per-element divide.

    S1 = sum x                   |S1| <= C 2^15            (28 bits)
    S2 = sum x^2                 S2 <= C 2^30              (43 bits)
    V  = C S2 - S1^2 + eps_q     0 < V < 2^55              (= C^2 (var + eps), frac 2 in_frac)
    k  = (62 - bitlen(V)) // 2   V << 2k in [2^60, 2^62)
    r  = isqrt(V << 2k)          exact floor, in [2^30, 2^31)
    R  = floor(2^62 / r)         in (2^31, 2^32]
    z  = round((C x - S1) R / 2^(46 - k))        frac 16, |C x - S1| <= 2^28, product < 2^60
    y  = sat16(round((gamma z + beta_acc) / 2^(16 + g_frac - out_frac)))     (< 2^38)
    """
    x = as_int(x)
    c = x.shape[-1]
    s1 = x.sum(-1, keepdims=True)
    s2 = (x * x).sum(-1, keepdims=True)
    v = c * s2 - s1 * s1 + eps_q
    k = (LN_SQRT_BITS - bit_length(v)) // 2
    r = isqrt(v << (2 * k))
    big_r = recip(r, LN_RECIP_BITS)
    z = rshift_round((c * x - s1) * big_r, LN_RECIP_BITS - LN_Z_FRAC - k)
    return requant(as_int(gamma) * z + as_int(beta_acc), LN_Z_FRAC + g_frac - out_frac)
