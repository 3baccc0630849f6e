"""Primitives against golden: reciprocal, integer square root, exp, PWL (GELU, sigmoid).
Random inputs plus corner cases, random valid/ready stalls, exact comparison."""
import numpy as np
import pytest

from golden.arith import isqrt, isqrt_bitwise, recip
from golden.kernels import exp_neg, make_pwl
from rtl_gen.exp import ExpNeg
from rtl_gen.isqrt import Isqrt
from rtl_gen.pwl import PwlUnit
from rtl_gen.recip import Reciprocal
from sim.check import assert_exact
from sim.runner import run_stream


def _run1(dut, name, port_in, port_out, xs, seed=0, stall=0.3):
    res = run_stream(dut, name, {port_in: [int(v) for v in xs]}, {port_out: len(xs)}, stall=stall, seed=seed)
    return np.array(res.outputs[port_out], dtype=object), res


@pytest.mark.parametrize("d_bits,k", [(28, 46), (31, 62), (20, 30)])
def test_reciprocal(d_bits, k):
    rng = np.random.default_rng(k)
    top = (1 << d_bits) - 1
    corners = [1, 2, 3, 5, 7, top, top - 1, 1 << (d_bits - 1), (1 << (d_bits - 1)) + 1, (1 << (d_bits - 1)) - 1]
    xs = corners + [int(v) for v in rng.integers(1, top + 1, 150)] + [int(v) for v in rng.integers(1, 1 << 12, 40)]
    got, res = _run1(Reciprocal(d_bits, k), f"recip_{d_bits}_{k}", "i_d", "o_q", xs, seed=k)
    want = [(1 << k) // v for v in xs]          # golden recip, Python ints for k >= 63 safety
    assert_exact(got.astype(np.int64), np.asarray(recip(np.array(xs), k)), f"recip k={k}")
    assert list(got) == want
    assert res.cycles >= len(xs) * (k + 1)       # one quotient bit per cycle


def test_isqrt():
    rng = np.random.default_rng(1)
    sq = [v * v for v in (0, 1, 2, 3, 1 << 30, (1 << 31) - 1)]
    corners = sq + [s - 1 for s in sq if s] + [s + 1 for s in sq] + [(1 << 62) - 1, 1 << 60, (1 << 60) - 1]
    xs = corners + [int(v) for v in rng.integers(1 << 60, 1 << 62, 120, dtype=np.int64)] + \
        [int(v) for v in rng.integers(0, 1 << 20, 40)]
    got, _ = _run1(Isqrt(62), "isqrt_62", "i_n", "o_root", xs, seed=2)
    assert_exact(got.astype(np.int64), isqrt(np.array(xs, dtype=np.int64)), "isqrt")
    assert [isqrt_bitwise(v) for v in xs[:20]] == list(got[:20])


@pytest.mark.parametrize("frac", [8, 11, 13, -1])
def test_exp_neg(frac):
    rng = np.random.default_rng(frac + 100)
    lo = -(1 << 16)
    # 0, -1 LSB, most negative, and the inputs around where 2^q underflows (q = -17)
    edge = int(-17 * 2 ** frac / 1.4426950408889634)
    corners = [0, -1, -2, lo, lo + 1, edge, edge - 1, edge + 1, edge - 2 ** max(frac, 0), -(1 << 15)]
    xs = corners + [int(v) for v in rng.integers(lo, 1, 1500)] + [int(v) for v in rng.integers(-64, 1, 200)]
    xs = [max(v, lo) for v in xs]
    got, _ = _run1(ExpNeg(frac), f"exp_neg_f{frac}".replace("-", "m"), "i_x", "o_e", xs, seed=frac & 7)
    assert_exact(got.astype(np.int64), exp_neg(np.array(xs), frac), f"exp_neg frac={frac}")


@pytest.mark.parametrize("name,in_frac,out_frac,in_bits", [
    ("gelu", 10, 11, 16), ("gelu", 12, 12, 16), ("gelu", 7, 9, 16), ("sigmoid", 10, 15, 16), ("sigmoid", 12, 15, 17)])
def test_pwl(name, in_frac, out_frac, in_bits):
    pwl = make_pwl(name, in_frac, out_frac, in_bits)
    rng = np.random.default_rng(in_frac * 7 + out_frac)
    lo_in, hi_in = -(1 << (in_bits - 1)), (1 << (in_bits - 1)) - 1
    hi = pwl.lo + (pwl.n_seg << pwl.seg_shift)
    seg = [pwl.lo + (k << pwl.seg_shift) + o for k in rng.integers(0, pwl.n_seg, 30) for o in (-1, 0, 1)]
    corners = [lo_in, lo_in + 1, hi_in, hi_in - 1, 0, -1, 1, pwl.lo, pwl.lo - 1, hi - 1, hi, hi + 1] + seg
    xs = [min(max(v, lo_in), hi_in) for v in corners] + [int(v) for v in rng.integers(lo_in, hi_in + 1, 1200)] + \
        [int(v) for v in rng.integers(-(4 << in_frac), 4 << in_frac, 600)]
    xs = [min(max(v, lo_in), hi_in) for v in xs]
    got, _ = _run1(PwlUnit(pwl), f"pwl_{name}_{in_frac}_{out_frac}_{in_bits}", "i_x", "o_y", xs, seed=in_frac)
    want = pwl.evaluate(np.array(xs))
    assert_exact(got.astype(np.int64), want, f"{name} PWL")
    assert want.min() < want.max()                # not a constant table
