"""The cycle model (rtl_gen/perf.py) that `spvit report` uses for whole models against RTL-measured
cycles (no stalls): within 5% on every engine run here."""
from dataclasses import replace

import numpy as np
import pytest

from golden.config import PRESETS
from rtl_gen import attention, mlp
from rtl_gen.attention import AttentionEngine, AttnFormats
from rtl_gen.block import BlockEngine, block_weight_stream
from rtl_gen.config import HW_PRESETS
from rtl_gen.mlp import MlpEngine, MlpFormats, tiles_of
from rtl_gen.perf import attention_cycles, block_cycles, mlp_cycles, selector_cycles
from rtl_gen.selector import SelectorEngine, SelFormats
from sim.models import block_input, calibrated, selector_input
from sim.runner import run_stream
from sim.selector import run_selector
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


def test_attention_cycles_mac_bound(measured):
    """head_dim 32 (2 heads) at N = 65: the MAC array, not the softmax, paces the interleaved
    score / P.V schedule, as on the zcu102 array with DeiT-S and DeiT-T shapes."""
    q, imgs = calibrated(replace(CFG, num_heads=2))
    blk = q.blocks[1]
    x = block_input(q, imgs, 1)
    n = len(x)
    rtl = _run(AttentionEngine(AttnFormats.from_block(blk), HW), "attention_mini_h2", x,
               attention.weight_stream(blk, HW.mac_cols), n, {"n": n})
    model = attention_cycles(64, 2, n, HW)
    measured(f"attention head_dim 32 N={n}: RTL {rtl} cycles, model {model} ({100 * (model / rtl - 1):+.2f}%)")
    assert abs(model / rtl - 1) <= 0.05, f"attention head_dim 32 N={n}: model {model} vs RTL {rtl} cycles"


def test_block_cycles_match_model(mini_model):
    q, imgs = mini_model
    blk = q.blocks[3]
    x = block_input(q, imgs, 3)
    n = len(x)
    rtl = _run(BlockEngine.from_block(blk, HW), "block_mini", x, block_weight_stream(blk, HW.mac_cols), n, {"n": n})
    model = block_cycles(CFG, n, HW)
    assert abs(model / rtl - 1) <= 0.05, f"block N={n}: model {model} vs RTL {rtl} cycles"


@pytest.mark.parametrize("case", ["n9", "n23_cap", "n20_stage1_sum", "n16_q2"])
def test_selector_cycles_match_model(mini_model, case, measured):
    """Selector engine, exactly: N = 9 (stage 0, norm), N = 23 with a binding top-k cap, N = 20
    at the second selector (one earlier package token, sum mode), all with mini's defaults (4
    output lanes, LayerNorm in 2 passes per tile: the LayerNorm paces the in_fc phase); N = 16
    with 2 output lanes and a one-pass LayerNorm (in_fc paces it, as on zcu102 at DeiT shapes)."""
    q, imgs = mini_model
    if case == "n20_stage1_sum":
        x, n_pkg = selector_input(q, imgs, 4)
        x, sel = np.concatenate([x[:20 - n_pkg], x[len(x) - n_pkg:]]), replace(q.selectors[4], package_mode="sum")
    else:
        x, n_pkg, sel = block_input(q, imgs, 2)[:int(case[1:3])], 0, q.selectors[2]
    n = len(x)
    k0 = int((sel(x, n_pkg)[1].score >= 0).sum())
    if case == "n23_cap":
        sel = replace(sel, cap=k0 - 3)
    kept = int(sel(x, n_pkg)[1].keep.sum())
    q2 = case.endswith("q2")
    eng = SelectorEngine(SelFormats.from_selector(sel), HW, lanes_out=2, lanes_ln=4) if q2 else None
    _, res = run_selector(sel, [x], n_pkg, hw=HW, stall=0.0, tag=f"perf_{case}", engine=eng,
                          name="selector_mini_q2" if q2 else "selector_mini")
    model = selector_cycles(CFG, n, n_pkg, kept, HW, sel.package_mode, k0 if sel.cap is not None else None,
                            lanes_out=2 if q2 else None, lanes_ln=4 if q2 else None)
    measured(f"selector {case}: N={n} n_pkg={n_pkg} kept={kept}: RTL {res.cycles} cycles, model {model} "
             f"({100 * (model / res.cycles - 1):+.2f}%)")
    assert model == res.cycles, f"selector {case}: model {model} vs RTL {res.cycles} cycles"
