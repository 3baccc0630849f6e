"""LayerNorm unit against golden.kernels.layernorm: lanes in parallel, two jobs with different
parameters, constant tokens (variance 0: V = eps_q), extreme tokens, stalls."""
import numpy as np
import pytest

from golden.kernels import layernorm
from rtl_gen.layernorm import LayerNormUnit
from sim.check import assert_exact
from sim.runner import run_stream


def _corner_tokens(d, rng):
    toks = [np.full(d, 1234), np.zeros(d, dtype=np.int64), np.full(d, -32768), np.full(d, 32767),
            np.resize([-32768, 32767], d), np.where(np.arange(d) == 3, 32767, -5),
            np.resize([0, 1], d)]
    return np.array(toks)


@pytest.mark.parametrize("lanes", [1, 4])
def test_layernorm_unit(mini_model, lanes):
    q, _ = mini_model
    ln = q.blocks[1].norm2
    d = ln.gamma.shape[-1]
    rng = np.random.default_rng(lanes)
    jobs = []
    for jid in range(2):
        if jid == 0:      # the calibrated parameters
            gamma, beta = ln.gamma.astype(np.int64), ln.beta.astype(np.int64)
        else:             # random affine parameters over the full ranges
            gamma = rng.integers(-32768, 32768, d)
            gamma[:2] = [-32768, 32767]
            beta = rng.integers(-(1 << 40), 1 << 40, d)
        n = 11 if jid == 0 else 6
        x = rng.integers(-32768, 32768, (n, d)) >> rng.integers(0, 15, (n, 1))
        if jid == 0:
            x = np.concatenate([_corner_tokens(d, rng), x])
        jobs.append((gamma, beta, x))

    params, xs, want = [], [], []
    for gamma, beta, x in jobs:
        params += [{"gamma": int(g), "beta": int(b)} for g, b in zip(gamma, beta)]
        tiles = -(-len(x) // lanes)
        xp = np.zeros((tiles * lanes, d), dtype=np.int64)
        xp[: len(x)] = x
        for t in range(tiles):
            for j in range(d):
                xs.append({"x": xp[t * lanes:(t + 1) * lanes, j].tolist(), "last": int(t == tiles - 1 and j == d - 1)})
        y = layernorm(xp, ln.in_frac, gamma, ln.g_frac, beta, ln.eps_q, ln.out_frac)
        want.append(y.reshape(tiles, lanes, d).transpose(0, 2, 1).reshape(-1, lanes))
    want = np.concatenate(want)
    dut = LayerNormUnit(d, lanes, ln.g_frac, ln.eps_q, ln.out_frac)
    res = run_stream(dut, f"layernorm_{d}x{lanes}", {"i_param": params, "i_x": xs}, {"o_y": len(want)},
                     stall=0.25, seed=lanes)
    got = np.array([b["y"] for b in res.outputs["o_y"]])
    assert_exact(got, want, "LayerNorm")
    assert sum(b["last"] for b in res.outputs["o_y"]) == 2
    assert len(np.unique(want)) > 50
