"""Softmax unit (rtl_gen/array/softmax.py) against golden.kernels.softmax by ==: random rows,
a dominant score, ties, all -32768 / all 32767, n = 1, 2, n_max, frac -2 .. 14 changing between
items, back-to-back items of different n, random stalls; the stall-free cycle count against
softmax_cycles; exp with a runtime format over every 17-bit difference; the sum reciprocal."""
import numpy as np
import pytest

from base import settings
from golden.arith import recip
from golden.compare import assert_exact
from golden.hw import SMALL_HW, HardwareConfig
from golden.kernels import SOFTMAX_RECIP_BITS, exp_neg
from rtl_gen.array.softmax import SUM_MIN_BITS, softmax_cycles
from rtl_gen.primitives.exp import ExpNegVar
from rtl_gen.primitives.recip import Reciprocal
from sim.runner import run_stream
from sim.softmax_bench import run_softmax

HW = HardwareConfig(name="t", mac_rows=4, mac_cols=8, n_max=40, d_max=64, hidden_max=64, axi_ports=1)


def _rows(rng, R, n):
    return rng.integers(-32768, 32768, (R, n)) >> rng.integers(0, 15, (R, 1))


def _corner_items(rng, R, n_max):
    rows = [[32767] + [-32768] * 8, [5] * 9, [-32768] * 9, [32767] * 9, list(range(-4, 5)),
            [0, 0, 0, 0, 100, 100, -100, 0, 0], [-32768] * 8 + [32767], [32767, 32767] + [0] * 7]
    out = []
    for i in range(0, len(rows), R):
        g = np.array(rows[i:i + R])
        out.append(np.concatenate([g, rng.integers(-300, 300, (R - len(g), 9))]) if len(g) < R else g)
    out.append(np.full((R, n_max), -32768))                       # n_max, all most-negative
    out.append(np.where(np.arange(n_max) == n_max - 1, 32767, -32768) * np.ones((R, 1), dtype=np.int64))
    out += [np.resize([32767, -32768, 0, 1], (R, 1)), np.full((R, 2), 7)]                   # n = 1, ties at n = 2
    return out


def _scaled(rng, R, n, frac):
    """Scores of a calibrated format: a few units of spread in real terms."""
    return np.clip(np.round(rng.normal(0, 2.0, (R, n)) * 2.0 ** frac), -32768, 32767).astype(np.int64)


def _items(rng, hw):
    R = hw.mac_rows
    items = [(_rows(rng, R, n), int(rng.integers(-2, 15))) for n in (7, hw.n_max, 1, 2, 13, 3, hw.n_max - 1, 1, 2)]
    items += [(_scaled(rng, R, n, f), f) for n, f in ((hw.n_max, 10), (9, -2), (hw.n_max, 14), (5, 0), (23, 6))]
    items += [(g, int(rng.integers(-2, 15))) for g in _corner_items(rng, R, hw.n_max)]
    return items


def test_softmax_unit_exact():
    rng = np.random.default_rng(21)
    items = _items(rng, HW)
    got, want, got_last, want_last, _ = run_softmax(HW, items, "softmax_unit_t", stall=0.3, seed=2)
    assert_exact(got, want, "softmax unit")
    assert got_last == want_last
    assert want.max() == 32767 and want.min() == 0 and len(np.unique(want)) > 300
    assert {f for _, f in items} >= {-2, 14}


def test_softmax_cycles_model():
    """Stall-free: first score beat -> last probability beat equals softmax_cycles, for equal
    and mixed lengths; back-to-back items of n keys cost n + 33 cycles each."""
    rng = np.random.default_rng(22)
    for tag, ns in (("equal", [HW.n_max] * 6), ("mixed", [1, 2, 40, 3, 17, 1, 1, 40, 9]), ("short", [2] * 8)):
        items = [(_rows(rng, HW.mac_rows, n), int(rng.integers(-2, 15))) for n in ns]
        got, want, _, _, res = run_softmax(HW, items, "softmax_unit_t", stall=0.0, seed=3)
        assert_exact(got, want, f"softmax unit ({tag}, stall-free)")
        rtl = res.last_out - res.first_in + 1
        mdl = softmax_cycles(ns, len(ns), HW)
        assert abs(rtl - mdl) <= 0.01 * rtl, f"{tag}: RTL {rtl} cycles, softmax_cycles {mdl}"
    assert softmax_cycles(40, 11, HW) - softmax_cycles(40, 10, HW) == 40 + 33


@pytest.mark.skipif(not settings.SLOW, reason="SPVIT_SLOW=1: the small preset (R = 16, n_max = 200)")
def test_softmax_unit_small_preset():
    hw = SMALL_HW
    rng = np.random.default_rng(23)
    items = [(_rows(rng, hw.mac_rows, n), f) for n, f in ((197, 9), (197, 10), (50, 12), (200, 8), (1, 4))]
    got, want, gl, wl, _ = run_softmax(hw, items, "softmax_unit_small", stall=0.2, seed=4)
    assert_exact(got, want, "softmax unit (small preset)")
    assert gl == wl
    got, want, _, _, res = run_softmax(hw, items[:3], "softmax_unit_small", stall=0.0, seed=5)
    assert_exact(got, want, "softmax unit (small preset, stall-free)")
    rtl, mdl = res.last_out - res.first_in + 1, softmax_cycles([197, 197, 50], 3, hw)
    assert abs(rtl - mdl) <= 0.01 * rtl, f"RTL {rtl} cycles, softmax_cycles {mdl}"


LANES = 16


def test_exp_neg_var_exhaustive():
    """Every difference 0 .. -65536 at the formats -2, 0, 6, 10, 14 (and -8, 20: left shifts and
    long right shifts), the format changing beat by beat."""
    fracs = [-2, 0, 6, 10, 14, -8, 20]
    xs = -np.arange((1 << 16) + 1, dtype=np.int64)
    xs = np.concatenate([xs, np.zeros(-len(xs) % LANES, dtype=np.int64)])
    beats, want = [], []
    for i, f in enumerate(fracs):
        for b in xs.reshape(-1, LANES):
            beats.append({"x": [int(v) for v in b], "frac": f})
        want.append(exp_neg(xs, f))
    order = np.random.default_rng(1).permutation(len(beats))            # interleave the formats
    beats = [beats[i] for i in order]
    want = np.concatenate(want).reshape(-1, LANES)[order]
    res = run_stream(ExpNegVar(LANES), "exp_neg_var", {"i_x": beats}, {"o_e": len(beats)}, stall=0.1, seed=3)
    assert_exact(np.array(res.outputs["o_e"]), want, "exp_neg (runtime frac)")
    assert want.max() == 32768 and want.min() == 0


def test_softmax_reciprocal():
    """floor(2^46 / S) for S in [2^15, n_max 2^15] in 32 steps, against golden recip."""
    bits = (HW.n_max << 15).bit_length()
    rng = np.random.default_rng(24)
    lo, hi = 1 << 15, HW.n_max << 15
    xs = [lo, lo + 1, hi, hi - 1, 3 << 15, (1 << 16) - 1, 1 << 16] + [int(v) for v in rng.integers(lo, hi + 1, 200)]
    dut = Reciprocal(bits, SOFTMAX_RECIP_BITS, SUM_MIN_BITS)
    res = run_stream(dut, "recip_norm_46", {"i_d": xs}, {"o_q": len(xs)}, stall=0.3, seed=2)
    assert_exact(np.array(res.outputs["o_q"], dtype=np.int64), recip(np.array(xs), SOFTMAX_RECIP_BITS), "recip 2^46")
    assert res.outputs["o_q"][0] == 1 << 31
