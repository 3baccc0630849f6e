"""Resources of the selector units (rtl_gen/selector/: gmean, decide, package, compact, store as
`selstore`) for one hardware preset or TOML (default zcu102), each synthesised on its own with
Yosys synth_xilinx -family xcup (rtl_gen/tools/synthesis.py; Debian yosys + yosys-abc give LUT
counts), plus the stall-free cycles of the units at DeiT-S shapes (rtl_gen/tools/cycles.py, a
kept half and a binding cap).

    python benchmarks/select_units_resources.py [--hw zcu102] [--only decide,package]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from base import settings
from golden.hw import load_hw
from rtl_gen.buffers.scores import ScoreBuffer
from rtl_gen.selector.compact import Compact
from rtl_gen.selector.compaction import Compaction
from rtl_gen.selector.decide import Decide
from rtl_gen.selector.gather import Gather
from rtl_gen.selector.gmean import GMean
from rtl_gen.selector.package import Package
from rtl_gen.selector.store import SelStore
from rtl_gen.selector.topk import TopK
from rtl_gen.tools import cycles as cycle_model
from rtl_gen.tools.synthesis import synthesize
from rtl_gen.tools.verilog import write_verilog


def units(hw):
    return {"gmean": lambda: GMean(hw), "decide": lambda: Decide(hw), "package": lambda: Package(hw),
            "compact": lambda: Compact(hw), "selstore": lambda: SelStore(hw), "topk": lambda: TopK(hw),
            "gather": lambda: Gather(hw), "compaction": lambda: Compaction(hw), "scores": lambda: ScoreBuffer(hw)}


def cycles(hw) -> list[str]:
    rng = np.random.default_rng(0)
    n, heads, d, dh = 197, 6, 384, 64
    ns = n - 1
    scores = rng.integers(-(1 << 30), 1 << 30, ns)
    keep = scores >= 0
    m = rng.integers(0, 32768, ns)
    gmean = heads * cycle_model.gmean_cycles(n, dh // 2, hw)
    decide = cycle_model.decide_cycles(n, heads, 0, hw, scores)
    decide_capped = cycle_model.decide_cycles(n, heads, 0, hw, scores, True, 60)
    package = cycle_model.package_cycles(n, 0, d, 0, keep, m, hw)
    compact = cycle_model.compact_cycles(n, 0, d, keep, hw)
    topk = cycle_model.topk_cycles(n, hw)
    gather = cycle_model.gather_cycles(n, {"n_pkg": 0, "rest": 0, "no_pkg": 1, "d": d}, int(0.7 * ns), hw)
    out = [f"GMEAN   (N {n}, w {dh // 2}) x {heads} heads: {gmean:7,d} cycles",
           f"DECIDE  (N {n}, {heads} heads):              {decide:7,d} cycles",
           f"DECIDE  with a cap of 60 (binds):         {decide_capped:7,d} cycles",
           f"PACKAGE (norm, d {d}):                    {package:7,d} cycles",
           f"COMPACT (d {d}):                          {compact:7,d} cycles",
           f"DECIDE  top-k (N {n}):                    {topk:7,d} cycles",
           f"COMPACT rank order (keep 0.7, d {d}):     {gather:7,d} cycles"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hw", default="zcu102")
    ap.add_argument("--only", default="", help="comma-separated unit names")
    args = ap.parse_args()
    hw = load_hw(args.hw)
    work = settings.BUILD.resolve() / "synth" / f"select_units_{hw.name}"
    names = [u for u in units(hw) if not args.only or u in args.only.split(",")]
    print(f"hardware {hw.name}: R = {hw.mac_rows}, n_max {hw.n_max}, d_max {hw.d_max}, axi_bits {hw.axi_bits}")
    for name in names:
        t0 = time.time()
        v = write_verilog(units(hw)[name](), f"spvit_{name}", work)
        r = synthesize(v, f"spvit_{name}", work)
        print(f"{name:9s} DSP48E2 {r.dsp:4d}  BRAM36 {r.bram36:5.1f}  {r.lut_text()}  FF {r.ff:7,d}  "
              f"LUTRAM cells {r.lutram:5d}  ({r.tool}, {time.time() - t0:.0f} s)", flush=True)
    print("\n".join(cycles(hw)))


if __name__ == "__main__":
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    main()
