"""Softmax unit against golden.kernels.softmax: rows of several lengths, one dominant score,
ties, most-negative rows, single-element rows, stalls."""
import numpy as np
import pytest

from golden.kernels import softmax
from rtl_gen.softmax import SoftmaxUnit
from sim.check import assert_exact
from sim.runner import run_stream


def _groups(rng, lanes):
    """Groups of `lanes` rows sharing a length (as the rows of one attention tile do)."""
    out = []
    for n in (1, 7, 40, 3):
        g = rng.integers(-32768, 32768, (lanes, n)) >> rng.integers(0, 14, (lanes, 1))
        out.append(g)
    n = 9
    corner = np.array([[32767] + [-32768] * (n - 1),       # one dominant score
                       [5] * n,                            # all tied
                       [-32768] * n,                       # most negative
                       [32767] * n,
                       list(range(-4, 5)),
                       [0, 0, 0, 0, 100, 100, -100, 0, 0]])
    for i in range(0, len(corner), lanes):
        g = corner[i:i + lanes]
        if len(g) < lanes:
            g = np.concatenate([g, rng.integers(-300, 300, (lanes - len(g), n))])
        out.append(g)
    return out


@pytest.mark.parametrize("frac,lanes", [(17, 2), (10, 3), (6, 1)])
def test_softmax_unit(frac, lanes):
    rng = np.random.default_rng(frac)
    groups = _groups(rng, lanes)
    beats, want = [], []
    for g in groups:
        n = g.shape[1]
        beats += [{"s": g[:, j].tolist(), "last": int(j == n - 1)} for j in range(n)]
        want.append(softmax(g, frac).T)
    want = np.concatenate(want)
    res = run_stream(SoftmaxUnit(frac, lanes, 64), f"softmax_f{frac}_l{lanes}", {"i_s": beats}, {"o_p": len(want)},
                     stall=0.25, seed=frac)
    got = np.array([b["p"] for b in res.outputs["o_p"]])
    assert_exact(got, want, f"softmax frac={frac}")
    assert [b["last"] for b in res.outputs["o_p"]] == [b["last"] for b in beats]
    assert want.max() == 32767                           # a single row element saturates 1.0
    if frac <= 10:
        assert want.min() == 0                           # the dominant score drives the rest to 0
