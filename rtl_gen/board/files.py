"""The files of a board directory, as texts (the command writes them; tests read them):

    files = board_files(board, core)        # name -> text; core: the core's Verilog (rtl_gen.tools.verilog)
    man = board_manifest(board, files)      # manifest.json's content
    write_board(board, "build/board")       # the directory, written safely (base/outputs.py)

Everything derives from the Board (hardware configuration, part, clock), the wrapper's interfaces
and the register table; nothing depends on time or paths, so the same inputs give the same bytes.
"""
from __future__ import annotations

import json
from pathlib import Path

from base.outputs import output_dir

from ..host.regmap import regmap, regmap_files
from ..tools import verilog
from ..top import Accelerator, module_name
from .readme import readme
from .vivado import build_tcl, constraints_xdc, package_ip_tcl
from .wrapper import interfaces, wrapper_name, wrapper_verilog
from .zynqmp import CELL, CSR_BASE, HP_ADDR_BITS, PS_IRQ, PS_IRQ_SPI, VIVADO_VERSIONS, Board

BOARD_FORMAT = "spvit-board"      # manifest "format" (driver.board reads it)
DRIVER_C = Path(__file__).parent / "c" / "driver.c"


def board_files(board: Board, core: str) -> dict[str, str]:
    hw = board.hw
    return {
        f"{module_name(hw)}.v": core,
        f"{wrapper_name(board)}.v": wrapper_verilog(board),
        "build.tcl": build_tcl(board),
        "package_ip.tcl": package_ip_tcl(board),
        "constraints.xdc": constraints_xdc(board),
        **regmap_files(hw),
        "driver.c": DRIVER_C.read_text(),
        "README.md": readme(board),
    }


def board_manifest(board: Board, files) -> dict:
    hw = board.hw
    return {
        "format": BOARD_FORMAT, "generator": "spvit-accel", "hardware": hw.as_dict(), "hw_ident": hw.ident(),
        "part": board.part, "board_part_pattern": board.board_pattern, "clock_mhz": hw.clock_mhz,
        "clock_hz": board.clock_hz, "core": module_name(hw), "top": wrapper_name(board), "cell": CELL,
        "csr_base": CSR_BASE, "csr_range": regmap(hw).size, "address_bits": HP_ADDR_BITS,
        "interrupt": {"pin": PS_IRQ, "gic_spi": PS_IRQ_SPI},
        "interfaces": {i.name: {"vlnv": i.vlnv, "params": dict(i.params), "ports": [p.name for p in i.ports]}
                       for i in interfaces(board)},
        "vivado": VIVADO_VERSIONS, "files": sorted(files), "docs": "docs/board.md",
    }


def write_board(board: Board, out, *, core: str | None = None, force: bool = False, inputs=()) -> dict:
    """Write the board directory `out` (refused if it exists without `force`; replaced only if it is
    a board directory) and return its manifest. `core`: the core's Verilog if already generated."""
    with output_dir(out, BOARD_FORMAT, "a board directory (spvit board)", force=force, inputs=inputs) as tmp:
        if core is None:
            core = verilog.to_verilog(Accelerator(board.hw), module_name(board.hw))
        files = board_files(board, core)
        for name, text in files.items():
            (tmp / name).write_text(text)
        man = board_manifest(board, files)
        (tmp / "manifest.json").write_text(json.dumps(man, indent=1, sort_keys=True) + "\n")
    return man
