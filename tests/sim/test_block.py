"""Whole DeiT block (attention -> MLP wrapper) against golden QBlock: mini shapes in CI's
fast set, DeiT-T shapes at N = 197 on Verilator (slow)."""
import pytest

from rtl_gen.block import BlockEngine, block_weight_stream
from rtl_gen.config import HW_PRESETS
from rtl_gen.mlp import tiles_of, untile
from sim.check import assert_exact
from sim.runner import run_stream
from spvit import settings

from sim.models import block_input, calibrated


def run_block(blk, hw, x, name, stall=0.2, seed=0, sim=None):
    d = x.shape[1]
    n = len(x)
    res = run_stream(BlockEngine.from_block(blk, hw), name,
                     {"i_x": tiles_of(x, hw.mac_rows), "i_w": block_weight_stream(blk, hw.mac_cols)},
                     {"o_y": -(-n // hw.mac_rows) * d}, static={"n": n}, stall=stall, seed=seed,
                     sim=sim or settings.SIM_ENGINE, tag=f"n{n}_s{int(stall * 100)}")
    return untile(res.outputs["o_y"], n, d, hw.mac_rows), res


def test_block_mini(mini_model):
    q, imgs = mini_model
    blk = q.blocks[3]
    x = block_input(q, imgs, 3)                     # the full 65-token sequence
    y, res = run_block(blk, HW_PRESETS["mini"], x, "block_mini", stall=0.2, seed=4)
    assert_exact(y, blk(x), "block N=65")


@pytest.mark.slow
@pytest.mark.skipif(not settings.SLOW, reason="DeiT-T block on Verilator takes ~12 min on 2 shared cores; SPVIT_SLOW=1")
def test_block_deit_tiny_n197():
    """DeiT-T shapes (D 192, 3 heads, hidden 768), N = 197, calibrated random weights, 8x16 MACs.
    Measured: bit-exact, 877,726 cycles, ~7 min Verilator build + 296 s simulation."""
    q, imgs = calibrated("deit-tiny", 0, 2)
    blk = q.blocks[5]
    x = block_input(q, imgs, 5)
    assert x.shape == (197, 192)
    y, res = run_block(blk, HW_PRESETS["small"], x, "block_deit_tiny", stall=0.05, seed=7, sim="verilator")
    assert_exact(y, blk(x), "DeiT-T block N=197")
