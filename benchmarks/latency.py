"""Modeled latency of SPViT, DynamicViT, EViT and Evo-ViT DeiT-S and DeiT-T on the zcu102 accelerator, next to
the unpruned models and the SPViT paper's ZCU102 accelerator (spvit.txt Table 4). The cycle model
(rtl_gen/tools/cycles.py, checked against whole-model RTL runs by tests/sim/test_accel.py,
test_cycle_model_matches_rtl) runs the compiled program at keep 0.7 per selector stage (DeiT-S
tokens 197/139/99/71; DynamicViT keeps int(196 x 0.7^s) after blocks 3, 6, 9 as its paper: tokens
197/138/97/68; EViT keeps ceil(0.7 x) inside blocks 3, 6, 9 plus its fused token: 197/140/100/72;
Evo-ViT's slow path is int(196 x 0.5) = 98 tokens from blocks 4 and 8, its paper's setting; the
top-k schemes keep their presets' counts, --keep sets SPViT's; a scheme is listed when the RTL
runs it, golden Scheme.hardware), with
the patch embedding, the selectors, the head and the DDR traffic at the assumed bandwidth (the
same GB/s at every clock: fewer bytes per cycle at a higher clock).

Each line also gives the *tile floor*: the time of the MAC array's padded tiles alone (a partial
token tile costs a whole one), which bounds what any schedule on this array shape can reach.

Clocks: the one the last `spvit report --config ...,HW --timing` of this hardware supports by the
delay model of docs/rtl.md ("Timing budget"; rtl_gen/tools/timing.py last_summary), and the
configured clock (300 MHz for zcu102) when different. Without a timing report of the hardware
(the zcu102 one takes about 2 hours of CPU) the supported clock is unknown: the script says so
and reports at the configured clock. `--clock-mhz F` reports at F instead.

    .venv/bin/python benchmarks/latency.py [--hw zcu102] [--keep 0.7] [--ddr-gbps 15.4] [--clock-mhz F]

The last two lines read `deit-small spvit latency: X ms (paper 13.23 ms)` and
`deit-tiny spvit latency: Y ms (paper 5.60 ms)`, at the supported clock.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from golden.config import PRESETS  # noqa: E402
from golden.hw import load_hw  # noqa: E402
from golden.selectors import SCHEMES  # noqa: E402
from rtl_gen.tools.timing import last_summary  # noqa: E402
from sim.report import PAPER_MS, estimate  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hw", default="zcu102")
    ap.add_argument("--keep", type=float, default=0.7, help="keep rate of every selector stage (default 0.7)")
    ap.add_argument("--ddr-gbps", type=float, help="DDR bandwidth (default: the hardware config's, 15.4 GB/s)")
    ap.add_argument("--clock-mhz", type=float,
                    help="report at this clock (default: the one the timing report supports)")
    args = ap.parse_args()
    hw = load_hw(args.hw)
    if args.ddr_gbps:
        hw = dataclasses.replace(hw, ddr_gbps=args.ddr_gbps)
    summary = last_summary(hw)
    if args.clock_mhz:
        supported, why = args.clock_mhz, "given by --clock-mhz"
    elif summary:
        supported, why = summary["fmax_mhz"], (f"supported by the last timing report of {hw.name} (docs/rtl.md, Timing "
                                               f"budget; rerun it after RTL changes)")
    else:
        supported, why = hw.clock_mhz, (f"NOT confirmed: no timing report of {hw.name} yet (spvit report --config "
                                        f"spvit-deit-small,{hw.name} --timing)")
    print(f"hardware {hw.name}: {hw.mac_rows}x{hw.mac_cols} MACs, {hw.axi_ports} x {hw.axi_bits}-bit AXI, "
          f"DDR {hw.ddr_gbps:g} GB/s; estimated DSP48E2 of the design: see spvit report")
    print(f"clock {supported:g} MHz: {why}")
    clocks = [supported] + ([hw.clock_mhz] if hw.clock_mhz != supported else [])
    lines = []
    for name in ("deit-small", "deit-tiny"):
        for mhz in clocks:
            at = dataclasses.replace(hw, clock_mhz=mhz)
            schemes = [f"{s}-{name}" for s in ("dynamicvit", "evit", "evovit") if SCHEMES[s].hardware]
            for variant in (name, "spvit-" + name, *schemes):
                cfg = PRESETS[variant]
                e = estimate(cfg, at, (args.keep,) * cfg.stages if cfg.stages else None)
                p = e.perf
                tokens = sorted({o.rows for o in p.ops if o.op == "ATTENTION"}, reverse=True)
                print(f"  {variant:22s} {mhz:5.0f} MHz tokens {'/'.join(map(str, tokens)):16s} {p.total:10,d} cycles  "
                      f"{e.latency_ms:6.3f} ms  tile floor {p.tile_floor / (mhz * 1e3):6.3f} ms  "
                      f"{p.macs / 1e9:5.2f} GMAC  MAC-array util {p.mac_utilisation:.3f}  "
                      f"board DSP efficiency {p.board_efficiency():.3f}  DDR {p.stream_bytes / 1e6:5.1f} MB")
                if mhz == supported and variant.startswith("spvit-"):
                    lines.append(f"{name} spvit latency: {e.latency_ms:.2f} ms (paper {PAPER_MS[name]:.2f} ms)")
    print(f"tile floor: the cycles of the padded MAC-array tiles alone ({hw.mac_rows}-token x {hw.mac_cols}-channel "
          f"tiles, k beats each), nothing else; no schedule on this array shape is faster (rtl_gen/tools/cycles.py "
          f"ProgramPerf.tile_floor)")
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
