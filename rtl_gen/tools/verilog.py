"""Amaranth component -> Verilog text (deterministic), with the block RAM modules appended when
the design instantiates them (rtl_gen/primitives/ram.py)."""
from __future__ import annotations

import os
from pathlib import Path

from amaranth.back import verilog

from ..primitives.ram import with_ram_module


def to_verilog(component, name: str) -> str:
    """Verilog text of `component` with top module `name`."""
    return with_ram_module(verilog.convert(component, name=name, emit_src=False))


def write_text(path: Path, text: str) -> Path:
    """Write `text` to `path` through a temporary file, leaving it untouched if unchanged."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return path


def write_verilog(component, name: str, out_dir: Path) -> Path:
    """Write <out_dir>/<name>.v."""
    return write_text(out_dir / f"{name}.v", to_verilog(component, name))
