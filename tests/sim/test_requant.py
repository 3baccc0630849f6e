"""Requantiser (rtl_gen/primitives/arith.py) against golden.arith.requant, exhaustive over int16 inputs."""
import numpy as np
import pytest

from golden.arith import requant
from golden.compare import assert_exact
from rtl_gen.primitives.arith import Requantiser
from sim.runner import run_stream

LANES = 32


@pytest.mark.parametrize("in_bits,shift", [(16, 0), (16, 1), (16, 7), (16, 15), (16, -3), (17, 16)])
def test_requant_exhaustive(in_bits, shift):
    """Every input of the in_bits range (65536 or 131072 values) through the RTL requantiser."""
    xs = np.arange(-(1 << (in_bits - 1)), 1 << (in_bits - 1), dtype=np.int64)
    beats = xs.reshape(-1, LANES)
    dut = Requantiser(in_bits, shift, LANES)
    res = run_stream(dut, f"requant_{in_bits}_{shift if shift >= 0 else f'm{-shift}'}",
                     {"i_acc": beats.tolist()}, {"o_y": len(beats)}, stall=0.1, seed=shift & 0xFF)
    got = np.array(res.outputs["o_y"]).ravel()
    want = requant(xs, shift)
    assert_exact(got, want, f"requant(shift={shift})")
    assert want.min() >= -32768 and want.max() <= 32767


def test_requant_wide_corners():
    """48-bit accumulators: saturation at both ends, most-negative value, ties either side."""
    rng = np.random.default_rng(5)
    shift = 12
    edge = [-(1 << 47), (1 << 47) - 1, 0, -1, 1, 2048, -2048, 2047, -2049, 6144, -6144,
            (32767 << 12) + 2047, (32767 << 12) + 2048, (-32768 << 12) - 2048, (-32768 << 12) - 2049]
    xs = np.array(edge + list(rng.integers(-(1 << 47), 1 << 47, 2000 - len(edge))) +
                  list(rng.integers(-(1 << 28), 1 << 28, 2000)), dtype=np.int64)
    xs = xs[: len(xs) // 8 * 8]
    dut = Requantiser(48, shift, 8)
    res = run_stream(dut, "requant_48_12", {"i_acc": xs.reshape(-1, 8).tolist()}, {"o_y": len(xs) // 8},
                     stall=0.3, seed=3)
    assert_exact(np.array(res.outputs["o_y"]).ravel(), requant(xs, shift), "requant48")


def test_checker_reports_mismatches():
    """The exact checker fails on an RTL result that is off: shift 3 hardware vs shift 2 golden."""
    xs = np.arange(-256, 256, dtype=np.int64)
    res = run_stream(Requantiser(16, 3, LANES), "requant_16_3", {"i_acc": xs.reshape(-1, LANES).tolist()},
                     {"o_y": len(xs) // LANES}, stall=0.0)
    with pytest.raises(AssertionError, match=r"of 512 elements differ from golden; first mismatches"):
        assert_exact(np.array(res.outputs["o_y"]).ravel(), requant(xs, 2), "requant")


@pytest.mark.parametrize("fa,fb,fo,saturates", [(15, 17, 15, True), (15, 20, 15, True), (12, 12, 14, True),
                                                (18, 15, 11, False)])
def test_add_sat(fa, fb, fo, saturates):
    """Residual add: all a in int16 against 32 b values (incl. both ends), plus random pairs."""
    from golden.arith import add_sat
    from rtl_gen.primitives.arith import AddSat
    rng = np.random.default_rng(fa * 31 + fb)
    a = np.arange(-32768, 32768, dtype=np.int64)
    b = np.resize(np.concatenate([[-32768, 32767, 0, -1, 1], rng.integers(-32768, 32768, 27)]), a.size)
    rng.shuffle(b)
    a = np.concatenate([a, rng.integers(-32768, 32768, 4096)])
    b = np.concatenate([b, rng.integers(-32768, 32768, 4096)])
    pairs = [[{"a": int(x), "b": int(y)} for x, y in zip(a[i:i + LANES], b[i:i + LANES])]
             for i in range(0, a.size, LANES)]
    res = run_stream(AddSat(fa, fb, fo, LANES), f"add_sat_{fa}_{fb}_{fo}", {"i_ab": pairs}, {"o_y": len(pairs)},
                     stall=0.1, seed=fo)
    want = add_sat(a, fa, b, fb, fo)
    assert_exact(np.array(res.outputs["o_y"]).ravel(), want, "add_sat")
    assert (want.min() == -32768 and want.max() == 32767) == saturates
