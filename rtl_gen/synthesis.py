"""Yosys resources of the whole accelerator (`spvit report --synth`).

The top is synthesised part by part: every unit of rtl_gen/top.py (the same components, the same
hardware configuration) as its own top with `synth_xilinx -family xcup -flatten`
(rtl_gen/synth.py), then the top itself with every unit a black box (its port routing and
wiring), and the counts summed: every cell of the top is counted once. DSP48E2 and block RAM
counts add up exactly (no optimisation crosses a unit boundary that could share a DSP or a RAM);
LUT and FF sums miss cross-unit constant propagation, so they are upper-bound estimates, as
Yosys's LUT/FF counts are anyway. One monolithic run of the zcu102 top would take hours and
tens of GB; the parts run one at a time. Results are cached per part and Verilog text
(build/synth/<hw>/), so a second report is instant and a changed unit is redone alone.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from golden.hw import ZCU102_BRAM36, ZCU102_DSP, ZCU102_FF, ZCU102_LUT, HardwareConfig
from spvit import settings


def parts(hw: HardwareConfig) -> dict:
    """name -> component factory: the units the top instantiates (rtl_gen/top.py)."""
    from .top import components
    return components(hw)


GLUE = "top"                # the part that is the top's own logic, its units black boxes


@dataclass
class PartResult:
    name: str
    dsp: int
    bram36: float
    lut: int | None
    ff: int
    latches: int
    tool: str


def synthesize_part(hw: HardwareConfig, name: str, factory) -> PartResult:
    """One unit as its own top, or (name GLUE) the whole top with every unit a black box: the
    logic of the top itself (port routing, interrupt, reset wiring)."""
    from .synth import synthesize
    from .verilog import to_verilog
    top = f"{name}_{hw.name}".replace("-", "_")
    text = to_verilog(factory(), top)
    prep = ""
    if name == GLUE:
        prep = "blackbox " + " ".join(f"{top}.{unit}" for unit in parts(hw))
    h = hashlib.sha256((prep + text).encode()).hexdigest()[:12]
    work = settings.BUILD.resolve() / "synth" / hw.name
    work.mkdir(parents=True, exist_ok=True)
    cache = work / f"{top}-{h}.json"
    if cache.exists():
        return PartResult(**json.loads(cache.read_text()))
    v = work / f"{top}.v"
    v.write_text(text)
    r = synthesize(v, top, work, prep)
    res = PartResult(name, r.dsp, r.bram36, r.lut, r.ff, r.latches, r.tool)
    cache.write_text(json.dumps(res.__dict__))
    return res


def synthesize_top(hw: HardwareConfig, verbose: bool = True) -> dict:
    total = dict(dsp=0, bram36=0.0, lut=0, ff=0, latches=0)
    rows = []
    from .top import Accelerator
    for name, factory in [*parts(hw).items(), (GLUE, lambda: Accelerator(hw))]:
        r = synthesize_part(hw, name, factory)
        rows.append(r)
        for k in total:
            total[k] += getattr(r, k) or 0
        if verbose:
            print(f"  {name:10s} DSP48E2 {r.dsp:5d}  BRAM36 {r.bram36:6.1f}  LUT {r.lut or 0:8,d}  FF {r.ff:8,d}  "
                  f"latches {r.latches}", flush=True)
    fits = total["dsp"] <= ZCU102_DSP and total["bram36"] <= ZCU102_BRAM36 and total["lut"] <= ZCU102_LUT
    if verbose:
        print(f"  {'total':10s} DSP48E2 {total['dsp']:5d} ({100 * total['dsp'] / ZCU102_DSP:.1f}% of {ZCU102_DSP})  "
              f"BRAM36 {total['bram36']:6.1f} ({100 * total['bram36'] / ZCU102_BRAM36:.1f}% of {ZCU102_BRAM36})  "
              f"LUT {total['lut']:,d} ({100 * total['lut'] / ZCU102_LUT:.1f}%)  FF {total['ff']:,d} "
              f"({100 * total['ff'] / ZCU102_FF:.1f}%)  latches {total['latches']} - "
              f"{'fits' if fits and not total['latches'] else 'DOES NOT FIT'} the XCZU9EG")
        print("  Yosys synth_xilinx -family xcup per unit (DSP48E2 and BRAM exact sums; LUT/FF estimates, not Vivado; "
              "timing not checked)")
    return {"parts": [r.__dict__ for r in rows], "total": total, "fits": fits}
