"""Yosys resources of the whole accelerator (`spvit report --synth`).

The top is synthesised part by part: every unit of rtl_gen/top.py (the same components, the same
hardware configuration) as its own top with `synth_xilinx -family xcup -flatten`
(rtl_gen/synth.py), and the counts summed. DSP48E2 and block RAM counts add up exactly (no
optimisation crosses a unit boundary that could share a DSP or a RAM); LUT and FF sums miss the
little glue logic of the top (port multiplexers) and cross-unit constant propagation: they are
estimates, as Yosys's LUT/FF counts are anyway. Results are cached per part and Verilog text
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
    from sim.runner import to_verilog

    from .synth import synthesize
    top = f"{name}_{hw.name}".replace("-", "_")
    text = to_verilog(factory(), top)
    h = hashlib.sha256(text.encode()).hexdigest()[:12]
    work = settings.BUILD.resolve() / "synth" / hw.name
    work.mkdir(parents=True, exist_ok=True)
    cache = work / f"{top}-{h}.json"
    if cache.exists():
        return PartResult(**json.loads(cache.read_text()))
    v = work / f"{top}.v"
    v.write_text(text)
    r = synthesize(v, top, work)
    res = PartResult(name, r.dsp, r.bram36, r.lut, r.ff, r.latches, r.tool)
    cache.write_text(json.dumps(res.__dict__))
    return res


def synthesize_top(hw: HardwareConfig, verbose: bool = True) -> dict:
    total = dict(dsp=0, bram36=0.0, lut=0, ff=0, latches=0)
    rows = []
    for name, factory in parts(hw).items():
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
