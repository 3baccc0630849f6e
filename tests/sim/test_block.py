"""Whole DeiT block (attention -> MLP wrapper, optionally -> selector) against golden QBlock and
QSelector: mini shapes with random stalls, DeiT-T shapes at N = 197 on Verilator."""
import numpy as np
import pytest

from rtl_gen.block import Gearbox, split_words
from rtl_gen.config import HW_PRESETS
from sim.block import compare, run_block
from sim.check import assert_exact
from sim.models import block_input, calibrated, selector_input
from sim.runner import run_stream
from spvit import settings


def test_block_mini(mini_model):
    q, imgs = mini_model
    blk = q.blocks[3]
    x = block_input(q, imgs, 3)                     # the full 65-token sequence
    y, res = run_block(blk, HW_PRESETS["mini"], x, "block_mini", stall=0.2, seed=4)
    assert_exact(y, blk(x), "block N=65")


def _block_selector(q, imgs, b, img=0):
    """(block before selector b, selector b, tokens entering that block, earlier packages)."""
    x, n_pkg = selector_input(q, imgs, b - 1, img=img)
    return q.blocks[b - 1], q.selectors[b], x, n_pkg


def _assert_selector_exact(blk, sel, x, n_pkg, out, what):
    bad, total, first = compare(blk, sel, x, n_pkg, out)
    assert bad == 0, f"{what}: {bad} of {total} elements differ; first: {first}"


@pytest.mark.parametrize("b,img,cap", [(2, 0, None), (4, 1, 9)])
def test_block_selector_mini(mini_model, b, img, cap):
    """Block b-1 + the selector before block b: stage 0 (no earlier package) and stage 1 (one
    package token already in the sequence, a top-k cap that binds), 20% stalls everywhere."""
    from dataclasses import replace
    q, imgs = mini_model
    blk, sel, x, n_pkg = _block_selector(q, imgs, b, img)
    if cap is not None:
        sel = replace(sel, cap=cap)
    out, res = run_block(blk, HW_PRESETS["mini"], x, f"block_sel_mini_b{b}", sel=sel, n_pkg=n_pkg,
                         stall=0.2, seed=b, sim="verilator")
    keep = sel(blk(x), n_pkg)[1].keep
    assert 0 < keep.sum() < len(keep), "the case should keep some tokens and drop others"
    _assert_selector_exact(blk, sel, x, n_pkg, out, f"block {b - 1} + selector, N={len(x)}")


def test_gearbox_exact():
    """int16[4] beats -> int16[8] words, with stalls on both sides, including -32768 / 32767."""
    rng = np.random.default_rng(0)
    words = rng.integers(-32768, 32768, (40, 8)).tolist() + [[-32768] * 8, [32767] * 8]
    res = run_stream(Gearbox(4, 2), "gearbox_4x2", {"i_w": split_words(words, 4)}, {"o_w": len(words)},
                     stall=0.3, seed=2, sim="icarus")
    assert_exact(np.array(res.outputs["o_w"]), np.array(words), "gearbox words")


def _deit_tiny():
    return calibrated("spvit-deit-tiny", 0, 2)


@pytest.mark.slow
@pytest.mark.skipif(not settings.SLOW, reason="second DeiT-T block run; SPVIT_SLOW=1")
def test_block_deit_tiny_n197():
    """DeiT-T shapes (D 192, 3 heads, hidden 768), N = 197, no selector, zcu102 array."""
    q, imgs = _deit_tiny()
    blk = q.blocks[5]
    x = block_input(q, imgs, 5)
    assert x.shape == (197, 192)
    y, res = run_block(blk, HW_PRESETS["zcu102"], x, "block_deit_tiny", stall=0.05, seed=7, sim="verilator")
    assert_exact(y, blk(x), "DeiT-T block N=197")


def test_block_selector_deit_tiny_n197(measured):
    """DeiT-T shapes at N = 197 on the zcu102 array (16 x 32): block 2 followed by the selector
    before block 3 (stage 0), Verilator, 5% stalls. Every kept token, the CLS and the package
    token (a weighted sum over the dropped ones) come out of the RTL block, so this checks the
    block too."""
    q, imgs = _deit_tiny()
    blk, sel, x, n_pkg = _block_selector(q, imgs, 3)
    assert x.shape == (197, 192) and n_pkg == 0
    out, res = run_block(blk, HW_PRESETS["zcu102"], x, "block_sel_deit_tiny", sel=sel, n_pkg=n_pkg,
                         stall=0.05, seed=7, sim="verilator")
    _assert_selector_exact(blk, sel, x, n_pkg, out, "DeiT-T block 2 + selector, N=197")
    measured(f"DeiT-T block + selector N=197 (zcu102, Verilator): bit-exact, {res.cycles:,} cycles, "
             f"{int(out[1].sum())} of {len(out[1])} tokens kept")
