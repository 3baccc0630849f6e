"""The cycle model (rtl_gen/perf.py) that `spvit report` uses for whole models against RTL-measured
cycles (no stalls): within 5% on every engine run here."""
import pytest

from golden.arith import add_sat
from golden.config import PRESETS
from rtl_gen import attention, mlp
from rtl_gen.attention import AttentionEngine, AttnFormats
from rtl_gen.block import BlockEngine, block_weight_stream
from rtl_gen.config import HW_PRESETS
from rtl_gen.mlp import MlpEngine, MlpFormats, tiles_of
from rtl_gen.perf import attention_cycles, block_cycles, mlp_cycles
from sim.models import block_input
from sim.runner import run_stream
from spvit import settings

HW = HW_PRESETS["mini"]
CFG = PRESETS["mini"]


def _run(comp, name, x, words, n, static=None):
    res = run_stream(comp, name, {"i_x": tiles_of(x, HW.mac_rows), "i_w": words},
                     {"o_y": -(-n // HW.mac_rows) * CFG.embed_dim}, static=static, stall=0.0,
                     sim=settings.SIM_ENGINE, tag=f"perf_n{n}")
    return res.cycles


@pytest.mark.parametrize("n", [3, 13, 65])
def test_engine_cycles_match_model(mini_model, n):
    q, imgs = mini_model
    blk = q.blocks[1]
    x = block_input(q, imgs, 1)[:n]
    a = _run(AttentionEngine(AttnFormats.from_block(blk), HW), "attention_mini", x,
             attention.weight_stream(blk, HW.mac_cols), n, {"n": n})
    m = _run(MlpEngine(MlpFormats.from_block(blk), HW), "mlp_mini", x, mlp.weight_stream(blk, HW.mac_cols), n)
    for what, rtl, model in (("attention", a, attention_cycles(64, 4, n, HW)), ("mlp", m, mlp_cycles(64, 256, n, HW))):
        assert abs(model / rtl - 1) <= 0.05, f"{what} N={n}: model {model} vs RTL {rtl} cycles"


def test_block_cycles_match_model(mini_model):
    q, imgs = mini_model
    blk = q.blocks[3]
    x = block_input(q, imgs, 3)
    n = len(x)
    rtl = _run(BlockEngine.from_block(blk, HW), "block_mini", x, block_weight_stream(blk, HW.mac_cols), n, {"n": n})
    model = block_cycles(CFG, n, HW)
    assert abs(model / rtl - 1) <= 0.05, f"block N={n}: model {model} vs RTL {rtl} cycles"
