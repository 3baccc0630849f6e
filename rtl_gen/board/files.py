"""The files of a board directory, as texts (the command writes them; tests read them):

    files = board_files(board, verilog)     # name -> text; verilog: the core's Verilog (rtl_gen.tools.verilog)
    man = board_manifest(board, files)      # manifest.json's content

Everything derives from the Board (hardware configuration, part, clock), the wrapper's interfaces
and the register table; nothing depends on time or paths, so the same inputs give the same bytes.
"""
from __future__ import annotations

from pathlib import Path

from ..host.regmap import c_header, markdown, regmap, regmap_json
from ..top import module_name
from .readme import readme
from .vivado import build_tcl, constraints_xdc, package_ip_tcl
from .wrapper import interfaces, wrapper_name, wrapper_verilog
from .zynqmp import CELL, CSR_BASE, HP_ADDR_BITS, PS_IRQ, PS_IRQ_SPI, VIVADO_VERSIONS, Board

BOARD_FORMAT = "spvit-board"      # manifest "format" (driver.board reads it)
DRIVER_C = Path(__file__).parent / "c" / "driver.c"


def board_files(board: Board, verilog: str) -> dict[str, str]:
    hw = board.hw
    return {
        f"{module_name(hw)}.v": verilog,
        f"{wrapper_name(board)}.v": wrapper_verilog(board),
        "build.tcl": build_tcl(board),
        "package_ip.tcl": package_ip_tcl(board),
        "constraints.xdc": constraints_xdc(board),
        "spvit_regs.json": regmap_json(hw),
        "spvit_regs.h": c_header(hw),
        "spvit_regs.md": markdown(hw),
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
