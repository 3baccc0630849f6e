"""Yosys resource estimate (rtl_gen/tools/synthesis.py: synth_xilinx -family xcup) of the
accelerator's LayerNorm and softmax units at a hardware preset or TOML (default zcu102,
R = 32 lanes):

    .venv/bin/python benchmarks/unit_resources.py [hw] [ln_unit | softmax_unit ...]

Prints DSP48E2, BRAM36, LUT and FF counts per unit and DSP per lane. Minutes per unit on the
zcu102 preset (Debian's yosys)."""
from __future__ import annotations

import sys
import time

from base import settings
from golden.hw import load_hw
from rtl_gen.array.softmax import SoftmaxUnit
from rtl_gen.norm.layernorm import LayerNormUnit
from rtl_gen.tools.synthesis import synthesize
from rtl_gen.tools.verilog import write_verilog

UNITS = {"ln_unit": LayerNormUnit, "softmax_unit": SoftmaxUnit}


def main(argv: list[str]) -> None:
    hw = load_hw(argv[0] if argv else "zcu102")
    names = argv[1:] or list(UNITS)
    work = settings.BUILD.resolve() / "synth" / f"units_{hw.name}"
    for name in names:
        t0 = time.perf_counter()
        top = f"{name}_{hw.name}"
        v = write_verilog(UNITS[name](hw), top, work)
        r = synthesize(v, top, work)
        print(f"{name:13s} {hw.name}: DSP48E2 {r.dsp:5d} ({r.dsp / hw.mac_rows:.1f} per lane)  BRAM36 {r.bram36:6.1f}  "
              f"{r.lut_text()}  FF {r.ff:7,d}  LUTRAM {r.lutram}  latches {r.latches}  "
              f"({time.perf_counter() - t0:.0f} s, {r.tool})", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
