"""Amaranth component -> Verilog text (deterministic), with the block RAM modules appended when
the design instantiates them (rtl_gen/primitives/ram.py)."""
from __future__ import annotations

from pathlib import Path

from amaranth.back import verilog

from base.outputs import replace_text

from ..primitives.ram import with_ram_module


def to_verilog(component, name: str) -> str:
    """Verilog text of `component` with top module `name`."""
    return with_ram_module(verilog.convert(component, name=name, emit_src=False))


def write_text(path: Path, text: str) -> Path:
    """Write `text` to `path` through a temporary file, leaving it untouched if unchanged."""
    if not path.exists() or path.read_text() != text:
        replace_text(path, text)
    return path


def write_verilog(component, name: str, out_dir: Path) -> Path:
    """Write <out_dir>/<name>.v."""
    return write_text(out_dir / f"{name}.v", to_verilog(component, name))
