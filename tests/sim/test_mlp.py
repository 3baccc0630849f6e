"""MLP engine against golden (QBlock second half) on mini shapes: realistic calibrated weights,
several runtime token counts, saturating residuals, stalls on every stream."""
import numpy as np

from golden.arith import add_sat, quantize
from rtl_gen.config import HW_PRESETS
from rtl_gen.mlp import MlpEngine, MlpFormats, tiles_of, untile, weight_stream
from sim.check import assert_exact
from sim.runner import run_stream
from spvit import settings


def mlp_golden(blk, x):
    return add_sat(x, blk.mid_frac, blk.mlp(blk.norm2(x)), blk.mlp.fc2.out_frac, blk.out_frac)


def run_mlp(blk, hw, xs, name, stall=0.2, seed=0, sim=None):
    eng = MlpEngine(MlpFormats.from_block(blk), hw)
    d = blk.mlp.fc1.w.shape[-1]
    beats, words = [], []
    for x in xs:
        beats += tiles_of(x, hw.mac_rows)
        words += weight_stream(blk, hw.mac_cols)
    total = sum(-(-len(x) // hw.mac_rows) * d for x in xs)
    res = run_stream(eng, name, {"i_x": beats, "i_w": words}, {"o_y": total}, stall=stall, seed=seed,
                     sim=sim or settings.SIM_ENGINE)
    outs, pos = [], 0
    for x in xs:
        nb = -(-len(x) // hw.mac_rows) * d
        outs.append(untile(res.outputs["o_y"][pos:pos + nb], len(x), d, hw.mac_rows))
        pos += nb
    return outs, res


def test_mlp_engine_mini(mini_model):
    q, imgs = mini_model
    blk = q.blocks[2]
    rng = np.random.default_rng(0)
    x_real = mid_stream(q, imgs, 2)                                   # 65 real tokens
    x_corner = rng.integers(-2000, 2000, (6, x_real.shape[1]))
    x_corner[0] = 32767                                               # residual saturates high
    x_corner[1] = -32768                                              # ... and low
    x_corner[2] = 77                                                  # constant token
    x_full = np.concatenate([x_real, rng.integers(-3000, 3000, (3, x_real.shape[1]))])   # N = n_max = 68
    xs = [x_real[:13], x_corner, x_full]                              # three jobs, N = 13, 6 and 68
    outs, res = run_mlp(blk, HW_PRESETS["mini"], xs, "mlp_mini", stall=0.2, seed=1)
    for i, (x, y) in enumerate(zip(xs, outs)):
        assert_exact(y, mlp_golden(blk, x), f"MLP job {i}")
    want = mlp_golden(blk, x_corner)
    assert want[0].max() == 32767 and want[1].min() == -32768


def mid_stream(q, imgs, i):
    """x1 of block i (the MLP's input) for image 0, from the golden model."""
    x = q.embed(quantize(imgs[:1].numpy(), q.img_frac))
    for j in range(i):
        if j in q.selectors:
            break
        x = q.blocks[j](x)
    blk = q.blocks[i]
    return add_sat(x, blk.in_frac, blk.attn(blk.norm1(x)), blk.attn.proj.out_frac, blk.mid_frac)[0]
