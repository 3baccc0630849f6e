"""Kernel accuracy bounds (golden vs float, over the input ranges calibration produces) and the
bit-identity of the speed caches."""
import math

import numpy as np
import pytest

from golden.arith import INT16_MAX, INT16_MIN, quantize
from golden.kernels import (
    CLS_ATTN_FRAC,
    PROB_FRAC,
    PWL_FUNCS,
    SOFTMAX_RECIP_BITS,
    cls_attention,
    exp_neg,
    exp_table,
    layernorm,
    ln_eps_const,
    make_pwl,
    softmax,
)

ALL16 = np.arange(INT16_MIN, INT16_MAX + 1, dtype=np.int64)


def f_of(name, x):
    f = PWL_FUNCS[name][0]
    return np.array([f(v) for v in x])


@pytest.mark.parametrize("in_frac", [6, 8, 10, 12, 13, 15])
@pytest.mark.parametrize("out_frac", [8, 10, 12, 14, 15])
def test_gelu_within_2_lsb(in_frac, out_frac, measured):
    y = make_pwl("gelu", in_frac, out_frac).evaluate(ALL16)
    ref = np.clip(f_of("gelu", ALL16 / 2.0 ** in_frac) * 2.0 ** out_frac, INT16_MIN, INT16_MAX)
    err = np.abs(y - ref).max()
    measured(f"gelu in {in_frac} out {out_frac}: max error {err:.3f} LSB")
    assert err <= 2.0


@pytest.mark.parametrize("in_frac", [6, 8, 10, 12, 14])
@pytest.mark.parametrize("in_bits", [16, 17])
def test_sigmoid_within_1_lsb(in_frac, in_bits, measured):
    x = np.arange(-(1 << (in_bits - 1)), 1 << (in_bits - 1), dtype=np.int64)
    y = make_pwl("sigmoid", in_frac, 15, in_bits).evaluate(x)
    ref = np.clip(f_of("sigmoid", x / 2.0 ** in_frac) * 2.0 ** 15, 0, INT16_MAX)
    err = np.abs(y - ref).max()
    measured(f"sigmoid in {in_frac} ({in_bits}-bit): max error {err:.3f} LSB")
    assert err <= 1.0


@pytest.mark.parametrize("name,in_frac,out_frac", [("gelu", 10, 12), ("gelu", 14, 15), ("sigmoid", 11, 15)])
def test_pwl_table_cache_is_bit_identical(name, in_frac, out_frac):
    p = make_pwl(name, in_frac, out_frac)
    assert np.array_equal(p(ALL16), p.evaluate(ALL16))


def test_pwl_tables_are_deterministic():
    a = make_pwl.__wrapped__("gelu", 11, 13)
    b = make_pwl.__wrapped__("gelu", 11, 13)
    assert np.array_equal(a.base, b.base) and np.array_equal(a.slope, b.slope)


@pytest.mark.parametrize("frac", [6, 10, 12, 16])
def test_exp_table_is_exp_neg(frac):
    d = -np.arange(1 << 16, dtype=np.int64)
    assert np.array_equal(exp_table(frac), exp_neg(d, frac))


def test_exp_neg_bound(measured):
    x = -np.arange(1 << 16, dtype=np.int64)
    for frac in (8, 12):
        err = np.abs(exp_neg(x, frac) - np.exp(x / 2.0 ** frac) * 2 ** 15).max()
        measured(f"exp frac {frac}: max error {err:.2f} LSB of Q15")
        assert err <= 4.0
    assert exp_neg(0, 10) == 1 << 15 and exp_neg(-65535, 0) == 0


def ref_softmax(s, frac):
    f = s / 2.0 ** frac
    e = np.exp(f - f.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("frac", [6, 8, 10, 12, 14])
@pytest.mark.parametrize("n", [2, 17, 65, 197, 256])
def test_softmax_bounds(frac, n, measured):
    """Rows up to 256 long (DeiT has 197 tokens): each output rounds by at most 1/2 LSB of Q15,
    so N <= 256 keeps the row sum within 2^-8 even when every element rounds the same way."""
    rng = np.random.default_rng(frac * 1000 + n)
    reach = 2.0 ** (15 - frac)                     # calibration puts max |s| within the range
    rows = [quantize(rng.normal(0, reach * r, (64, n)), frac) for r in (1 / 40, 1 / 10, 1 / 4.5)]
    dom = np.zeros((4, n), dtype=np.int64)
    dom[:, 0] = INT16_MAX                          # one dominant score per row
    edge = np.full((2, n), INT16_MIN)              # most-negative everywhere / saturated spread
    edge[1, ::2] = INT16_MAX
    s = np.concatenate(rows + [dom, edge])
    p = softmax(s, frac) / 2.0 ** 15
    ref = ref_softmax(s, frac)
    perr = np.abs(p - ref).max()
    serr = np.abs(p.sum(-1) - 1).max()
    measured(f"softmax frac {frac} n {n}: max |p - p_ref| {perr * 1024:.3f} x 2^-10, "
             f"max |sum - 1| {serr * 256:.3f} x 2^-8")
    assert perr <= 2.0 ** -10 and serr <= 2.0 ** -8


def test_cls_attention_exact_and_finer_than_q15(measured):
    """cls_attention rounds the softmax's own E R products to 23 fraction bits (Python integers
    as the reference, exp_neg itself for E); its error against the exact softmax is far below
    the Q15 probabilities' at N = 197, where a Q15 CLS attention (~166 LSB) ties often."""
    rng = np.random.default_rng(5)
    frac = 11
    s = np.concatenate([quantize(rng.normal(0, 2.0, (40, 197)), frac),
                        np.full((1, 197), INT16_MIN), np.where(np.arange(197) == 3, INT16_MAX, INT16_MIN)[None]])
    got = cls_attention(s, frac)
    for row, out in zip(s, got):
        e = [int(v) for v in exp_neg(row - row.max(), frac)]
        r = (1 << SOFTMAX_RECIP_BITS) // sum(e)
        want = [(v * r + (1 << (SOFTMAX_RECIP_BITS - CLS_ATTN_FRAC - 1))) >> (SOFTMAX_RECIP_BITS - CLS_ATTN_FRAC)
                for v in e]
        assert out.tolist() == want
    assert got.max() <= 1 << CLS_ATTN_FRAC and got[-1, 3] == 1 << CLS_ATTN_FRAC     # a certain token: 1.0
    ref = ref_softmax(s[:40], frac)
    err23 = np.abs(got[:40] / 2.0 ** CLS_ATTN_FRAC - ref).mean()
    err15 = np.abs(softmax(s[:40], frac) / 2.0 ** PROB_FRAC - ref).mean()
    def distinct(p):
        return np.mean([len(np.unique(r[r > 0])) / max((r > 0).sum(), 1) for r in p])
    measured(f"CLS attention N = 197: mean |error| Q23 {err23:.2e} vs Q15 {err15:.2e}; distinct nonzero values "
             f"{100 * distinct(got[:40]):.0f}% vs {100 * distinct(softmax(s[:40], frac)):.0f}%")
    assert err23 < err15 / 3 and distinct(got[:40]) > distinct(softmax(s[:40], frac))


def ref_layernorm(x, fx, gamma, beta, eps):
    xf = x / 2.0 ** fx
    m = xf.mean(-1, keepdims=True)
    v = xf.var(-1, keepdims=True)
    return (xf - m) / np.sqrt(v + eps) * gamma + beta


def ln_case(c, fx, fo, scale, seed, eps=1e-6, mean=0.3):
    rng = np.random.default_rng(seed)
    x = quantize(rng.normal(mean, scale, (256, c)), fx)
    gf = 14
    gq = quantize(rng.normal(1, 0.3, c), gf)
    bq = quantize(rng.normal(0, 0.3, c), 16 + gf, bits=47)
    y = layernorm(x, fx, gq, gf, bq, ln_eps_const(eps, c, fx), fo)
    ref = ref_layernorm(x, fx, gq / 2.0 ** gf, bq / 2.0 ** (16 + gf), eps)
    return x, y / 2.0 ** fo, ref


@pytest.mark.parametrize("c", [16, 64, 192, 384])
@pytest.mark.parametrize("scale", [0.05, 0.5, 4.0])
def test_layernorm_relative_error(c, scale, measured):
    fx = max(0, min(15, 15 - math.ceil(math.log2(6 * scale + 0.3))))
    fo = 11
    x, y, ref = ln_case(c, fx, fo, scale, c)
    var_lsb = (x / 1.0).var(-1)
    ok = var_lsb >= 2 ** 8                       # "not tiny": std >= 16 LSB of the input
    rel = np.abs(y - ref).max(-1) / np.abs(ref).max(-1)
    worst = rel[ok].max()
    measured(f"layernorm C={c} scale {scale}: max relative error {worst * 1024:.3f} x 2^-10 (output LSB 2^-{fo})")
    assert ok.mean() > 0.9 and worst <= 2.0 ** -10


def test_layernorm_constant_and_extreme_tokens():
    c, fx, fo, gf = 64, 10, 12, 14
    rng = np.random.default_rng(0)
    gq = quantize(rng.normal(1, 0.3, c), gf)
    bq = quantize(rng.normal(0, 0.3, c), 16 + gf, bits=47)
    beta_out = np.clip((bq + (1 << (16 + gf - fo - 1))) >> (16 + gf - fo), INT16_MIN, INT16_MAX)
    for v in (0, 1234, INT16_MIN, INT16_MAX):
        y = layernorm(np.full((2, c), v), fx, gq, gf, bq, ln_eps_const(1e-6, c, fx), fo)
        assert np.array_equal(y[0], beta_out), v          # constant token -> beta exactly
    x = np.where(np.arange(c) % 2 == 0, INT16_MAX, INT16_MIN)[None]
    y = layernorm(x, fx, gq, gf, bq, ln_eps_const(1e-6, c, fx), fo) / 2.0 ** fo
    ref = ref_layernorm(x, fx, gq / 2.0 ** gf, bq / 2.0 ** (16 + gf), 1e-6)
    assert np.abs(y - ref).max() <= 2.0 ** -fo


def test_layernorm_tiny_variance_uses_exact_sqrt():
    """Variances of a few LSB (where a fixed Newton iteration count goes wrong) stay accurate."""
    c, fx, fo = 64, 12, 12
    x = np.zeros((3, c), dtype=np.int64)
    x[0, 0] = 1
    x[1, :2] = [3, -3]
    x[2, ::2] = 2
    gq = np.full(c, 1 << 14)
    bq = np.zeros(c, dtype=np.int64)
    y = layernorm(x, fx, gq, 14, bq, ln_eps_const(1e-6, c, fx), fo) / 2.0 ** fo
    ref = ref_layernorm(x, fx, 1.0, 0.0, 1e-6)
    assert np.abs(y - ref).max() <= 1.5 * 2.0 ** -fo


def test_pwl_table_negative_indexing_covers_every_input():
    p = make_pwl("gelu", 12, 12)
    assert len(p.table) == 1 << 16
    for x in (INT16_MIN, -1, 0, 1, INT16_MAX):
        assert p(np.array([x]))[0] == p.evaluate(np.array([x]))[0]
