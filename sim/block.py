"""Block-wrapper bench (tests/sim/test_block.py and `spvit simulate --target block`): one job
through rtl_gen.block.BlockEngine, with or without the selector behind the MLP, compared with
golden QBlock (and QSelector) by ==."""
from __future__ import annotations

import numpy as np

from rtl_gen.block import BlockEngine, block_weight_stream
from rtl_gen.mlp import tiles_of, untile
from spvit import settings

from .runner import run_stream
from .selector import compare as compare_selector
from .selector import static_inputs


def block_design(blk, hw, name, sel=None):
    """(wrapper, deps) as `spvit generate` writes them: the wrapper instantiates the engines,
    each its own Verilog module <name>_<kind>."""
    kinds = ("attention", "mlp") + (("selector",) if sel is not None else ())
    eng = BlockEngine.from_block(blk, hw, sel, instances={k: f"{name}_{k}" for k in kinds})
    return eng, {f"{name}_{k}": e for k, e in eng.engines().items()}


def run_block(blk, hw, x, name, sel=None, n_pkg=0, stall=0.2, seed=0, sim=None, tag=None):
    """x: int16 tokens [N, D] entering the block. Without `sel` returns (y [N, D], SimResult);
    with a golden QSelector `sel` returns (outs, SimResult), outs as sim.selector.run_selector's
    for the one job (the selector sees the RTL block's output)."""
    n, d = x.shape
    R = hw.mac_rows
    eng, deps = block_design(blk, hw, name, sel)
    words = block_weight_stream(blk, hw.mac_cols, sel)
    static = {"n": n}
    tag = tag or f"n{n}_s{int(stall * 100)}_seed{seed}"
    if sel is None:
        res = run_stream(eng, name, {"i_x": tiles_of(x, R), "i_w": words}, {"o_y": -(-n // R) * d},
                         static=static, stall=stall, seed=seed, sim=sim or settings.SIM_ENGINE, tag=tag, deps=deps)
        return untile(res.outputs["o_y"], n, d, R), res
    static.update(static_inputs(sel, n, n_pkg))
    keep = sel(blk(x), n_pkg)[1].keep
    ns, n_tok = n - 1 - n_pkg, n_pkg + 2 + int(keep.sum())
    res = run_stream(eng, name, {"i_x": tiles_of(x, R), "i_w": words},
                     {"o_y": -(-n_tok // R) * d, "o_sel": ns, "o_kept": 1},
                     static=static, stall=stall, seed=seed, sim=sim or settings.SIM_ENGINE, tag=tag,
                     timeout=4_000_000, deps=deps)
    beats = res.outputs["o_sel"]
    out = (untile(res.outputs["o_y"], n_tok, d, R), np.array([b["keep"] for b in beats]),
           np.array([b["score"] for b in beats]), np.array([b["m"] for b in beats]), res.outputs["o_kept"][0],
           [b["last"] for b in beats])
    return out, res


def compare(blk, sel, x, n_pkg, out):
    """(mismatching elements, compared elements, first mismatches) of a block + selector job:
    every selector output against golden QSelector applied to golden QBlock's output."""
    return compare_selector(sel, [blk(x)], n_pkg, [out])
