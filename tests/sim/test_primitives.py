"""Primitives against golden: reciprocal, integer square root, exp, PWL (GELU, sigmoid).
Random inputs plus corner cases, random valid/ready stalls, exact comparison."""
import numpy as np
import pytest

from golden.arith import isqrt, isqrt_bitwise, recip
from golden.compare import assert_exact
from rtl_gen.primitives.fifo import RamFifo
from rtl_gen.primitives.isqrt import Isqrt
from rtl_gen.primitives.recip import Reciprocal
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



@pytest.mark.parametrize("spare", [False, True])
def test_ram_fifo_order_under_backpressure(spare):
    """RamFifo (and its spare-register output): every word out once, in order, under 40% stalls
    on both sides, nothing extra after the last; the spare variant holds a refused word."""
    words = [int(w) for w in np.random.default_rng(7).integers(0, 1 << 40, 300, dtype=np.int64)]
    words[:4] = [0, (1 << 40) - 1, 1 << 39, 1]                       # corner words first
    res = run_stream(RamFifo(40, 4, spare=spare), f"ram_fifo_{int(spare)}", {"i": words}, {"o": len(words)},
                     static={"flush": 0}, stall=0.4, seed=11, drain=30, tag=f"spare{int(spare)}")
    assert_exact(np.array(res.outputs["o"], dtype=np.int64), np.array(words, dtype=np.int64), "RamFifo words")
    assert res.consumed == {"i": len(words)} and res.extra == {"o": 0}, (res.consumed, res.extra)
