"""Subcommand of the RTL generator: `spvit generate` (Verilog of one accelerator per hardware
configuration, its register map and a manifest). Compiling, running and reporting are in
commands/quant.py (`spvit compile`) and commands/sim.py (`spvit run`, `spvit report`, `spvit demo`)."""
from __future__ import annotations

import json
import time
from pathlib import Path

from base.outputs import output_dir
from golden.hw import HW_PRESETS, HardwareConfig, load_hw
from rtl_gen.host.regmap import write_regmap
from rtl_gen.tools import verilog
from rtl_gen.top import Accelerator, module_name

from ..cli_types import path, spec

HW_HELP = f"hardware preset ({', '.join(HW_PRESETS)}) or a TOML file with a [hardware] table"


# ---------------------------------------------------------------- generate
def generate(hw: HardwareConfig, out: Path, force: bool = False, inputs=()) -> dict:
    """Verilog of the top, the register map (JSON, C header, Markdown) and a manifest."""
    top = module_name(hw)
    t0 = time.perf_counter()
    with output_dir(out, "spvit-rtl", "an RTL directory", force=force, inputs=inputs) as tmp:
        files = [verilog.write_verilog(Accelerator(hw), top, tmp).name] + [p.name for p in write_regmap(hw, tmp)]
        manifest = {
            "format": "spvit-rtl", "generator": "spvit-accel", "top": top, "hardware": hw.as_dict(),
            "hw_ident": hw.ident(), "files": sorted(files), "clock": "clk (rising edge)",
            "reset": "rst (synchronous, active high)",
            "ports": {"s_axil": "AXI4-Lite slave, 32-bit data, 12-bit address (spvit_regs.md)",
                      **{f"m_axi{p}": f"AXI4 master, {hw.axi_bits}-bit data, 64-bit address, "
                         + ("read and write" if p == 0 else "read only") for p in range(hw.axi_ports)},
                      "irq": "level, IRQ_ENABLE & IRQ_STATUS", "dbg_op": "running descriptor + 1 (simulation only)"},
            "docs": "docs/accelerator.md",
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    manifest["seconds"] = time.perf_counter() - t0
    return manifest


def cmd_generate(args) -> int:
    hw = load_hw(args.hw)
    man = generate(hw, Path(args.out), args.force, inputs=[args.hw] if Path(args.hw).is_file() else [])
    print(f"wrote {args.out}: {man['top']}.v ({hw.mac_rows}x{hw.mac_cols} MAC array, {hw.axi_ports} AXI ports of "
          f"{hw.axi_bits} bits, n_max {hw.n_max}, d_max {hw.d_max}, hidden_max {hw.hidden_max}; ident "
          f"{hw.ident():#010x}), spvit_regs.json/.h/.md, manifest.json in {man['seconds']:.0f} s")
    return 0


def register(sub) -> None:
    p = sub.add_parser("generate", help="Verilog of the accelerator for one hardware configuration, register map")
    p.add_argument("--hw", default="zcu102", type=spec, help=HW_HELP + " (default zcu102)")
    p.add_argument("--out", required=True, type=path, help="output directory")
    p.add_argument("--force", action="store_true", help="replace an earlier `spvit generate` output")
    p.set_defaults(func=cmd_generate)
