"""Runtime-table PWL (rtl_gen/primitives/pwl.py) against golden.kernels.PWL.evaluate by ==: every
17-bit input of the selector's d sigmoid, and segment edges, clamps and random inputs of other
geometries (few segments, a GELU that extends its last segment, 16-bit inputs); the table
comes through a RAM the bench loads; random stalls; the shallow (3-stage) and the deep (10-stage)
pipeline."""
import numpy as np
import pytest

from base import settings
from golden.compare import assert_exact
from golden.hw import HardwareConfig
from golden.kernels import make_pwl
from sim.pwl_bench import PwlBench
from sim.runner import run_stream

HW = HardwareConfig(name="pwl-rt", mac_rows=4, mac_cols=8, n_max=40, d_max=64, hidden_max=64)


def _inputs(p, bits, rng, n):
    lo_in, hi_in = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    hi = p.lo + (p.n_seg << p.seg_shift)
    edges = [p.lo + (k << p.seg_shift) + o for k in rng.integers(0, p.n_seg, 60) for o in (-1, 0, 1)]
    xs = [lo_in, lo_in + 1, hi_in, hi_in - 1, 0, -1, 1, p.lo - 1, p.lo, hi - 1, hi, hi + 1] + edges + \
        [int(v) for v in rng.integers(lo_in, hi_in + 1, n)]
    return [min(max(v, lo_in), hi_in) for v in xs]


@pytest.mark.parametrize("name,f_in,f_out,bits,exhaustive", [
    ("sigmoid", 15, 15, 17, True), ("sigmoid", 14, 15, 17, False), ("sigmoid", 6, 15, 17, False),
    ("gelu", 9, 12, 17, False), ("gelu", 11, 10, 16, False)])
@pytest.mark.parametrize("deep", [False, True])
def test_pwl_runtime_table(name, f_in, f_out, bits, exhaustive, deep):
    p = make_pwl(name, f_in, f_out, bits)
    rng = np.random.default_rng(f_in * 13 + bits)
    xs = list(range(-(1 << (bits - 1)), 1 << (bits - 1))) if exhaustive else _inputs(p, bits, rng, 3000)
    cmds = [{"table": 1, "addr": a, "base": int(b), "slope": int(s), "x": 0}
            for a, (b, s) in enumerate(zip(p.base, p.slope))]
    cmds += [{"table": 0, "addr": 0, "base": 0, "slope": 0, "x": int(x)} for x in xs]
    static = {"lo": p.lo & ((1 << 18) - 1), "shift": p.seg_shift, "n_seg": p.n_seg, "extend": int(p.extend),
              "frac": p.in_frac}
    res = run_stream(PwlBench(HW, bits, deep), f"pwl_rt_{bits}{'_deep' if deep else ''}", {"i_cmd": cmds},
                     {"o_y": len(xs)}, static=static, stall=0.1 if exhaustive else 0.3, seed=f_in,
                     sim=settings.SIM_ENGINE, tag=f"{name}{f_in}", drain=20)
    want = p.evaluate(np.array(xs))
    assert_exact(np.array(res.outputs["o_y"]), want, f"{name} in_frac {f_in}")
    assert res.consumed["i_cmd"] == len(cmds) and res.extra == {"o_y": 0}
    assert want.min() < want.max()
