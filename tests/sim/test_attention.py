"""Attention engine against golden (QAttention + first residual of QBlock) on mini shapes:
calibrated weights, runtime N (several jobs: N not a multiple of the tiles, N < mac_cols,
a single token, N = n_max), dominant scores, saturating residuals, stalls on every stream;
head_dim 16 (softmax-bound schedule) and head_dim 32 (MAC-bound: each softmax runs entirely
under the P.V and score tiles of its neighbours)."""
from dataclasses import replace

import numpy as np
import pytest

from golden.arith import add_sat
from golden.config import PRESETS
from sim.models import block_input, calibrated
from rtl_gen.attention import AttentionEngine, AttnFormats, weight_stream
from rtl_gen.config import HW_PRESETS
from rtl_gen.mlp import tiles_of, untile
from sim.check import assert_exact
from sim.runner import run_stream
from spvit import settings


def attn_golden(blk, x):
    return add_sat(x, blk.in_frac, blk.attn(blk.norm1(x)), blk.attn.proj.out_frac, blk.mid_frac)


def run_attention(blk, hw, jobs, name, stall=0.2, seed=0, sim=None):
    """jobs: list of token arrays [N, D]; one cocotb run per job count (n is a static port, so
    all jobs of one run share N)."""
    d = blk.attn.q.w.shape[-1]
    n = len(jobs[0])
    assert all(len(x) == n for x in jobs)
    beats, words = [], []
    for x in jobs:
        beats += tiles_of(x, hw.mac_rows)
        words += weight_stream(blk, hw.mac_cols)
    per = -(-n // hw.mac_rows) * d
    res = run_stream(AttentionEngine(AttnFormats.from_block(blk), hw), name, {"i_x": beats, "i_w": words},
                     {"o_y": per * len(jobs)}, static={"n": n}, stall=stall, seed=seed,
                     sim=sim or settings.SIM_ENGINE, tag=f"n{n}")
    return [untile(res.outputs["o_y"][i * per:(i + 1) * per], n, d, hw.mac_rows) for i in range(len(jobs))], res


def test_attention_engine_mini(mini_model):
    q, imgs = mini_model
    blk = q.blocks[1]
    x = block_input(q, imgs, 1)
    rng = np.random.default_rng(3)
    hw = HW_PRESETS["mini"]
    x2 = x[:13].copy()
    x2[5] = 32767                                   # a saturating token (dominant scores, residual clips)
    x2[6] = -32768
    x68 = np.concatenate([x, rng.integers(-3000, 3000, (3, x.shape[1]))])     # N = n_max: buffers full
    for n, jobs in ((13, [x[:13], x2]), (5, [x[20:25]]), (1, [x[:1]]), (hw.n_max, [x68])):
        outs, res = run_attention(blk, hw, jobs, "attention_mini", seed=n)
        for i, (xi, y) in enumerate(zip(jobs, outs)):
            assert_exact(y, attn_golden(blk, xi), f"attention N={n} job {i}")


@pytest.fixture(scope="module")
def mini_h2_model():
    """The mini model with 2 heads (head_dim 32, scale_mult not a power of two)."""
    return calibrated(replace(PRESETS["mini"], num_heads=2))


def test_attention_engine_mini_head_dim_32(mini_h2_model):
    """Two jobs back to back at N = 65 (17 token tiles, the last holding one token; the
    probability banks alternate over 34 items) and N = 6 (one key tile: P.V waits for the
    softmax of its own item)."""
    q, imgs = mini_h2_model
    blk = q.blocks[1]
    assert blk.attn.heads == 2
    x = block_input(q, imgs, 1)
    x2 = x.copy()
    x2[7] = 32767                                   # dominant scores in every row, residual clips
    hw = HW_PRESETS["mini"]
    for n, jobs in ((65, [x, x2]), (6, [x[40:46]])):
        outs, res = run_attention(blk, hw, jobs, "attention_mini_h2", seed=n + 1)
        for i, (xi, y) in enumerate(zip(jobs, outs)):
            assert_exact(y, attn_golden(blk, xi), f"attention head_dim 32 N={n} job {i}")
