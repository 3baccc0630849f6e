"""Subcommands that take the accelerator to a ZCU102: `spvit board` (a board directory: Verilog,
wrapper, Vivado scripts, constraints, register map, C example, README), `spvit board-inputs` (an
input set: quantised images and the golden model's results, for a board without torch) and
`spvit board-run` (an input set on the board through PYNQ; the same as `python -m driver`)."""
from __future__ import annotations

import json
import time
from pathlib import Path

from base.errors import UsageError
from base.outputs import dir_kind, output_dir
from driver.inputs import INPUTS_FORMAT, write_inputs
from driver.run import add_arguments, run_command
from golden.hw import load_hw
from quant.package import load_package
from rtl_gen.board.files import write_board
from rtl_gen.board.zynqmp import PART, board, hp_port
from rtl_gen.top import module_name

from ..cli_types import SEED_MAX, data_source, float_in, int_in, path, spec
from .rtl import HW_HELP
from .sim import image_of_package, input_images


def _reuse_verilog(rtl: Path, board) -> str:
    """The core's Verilog from an earlier `spvit generate` or `spvit board` output of the same hardware."""
    kind = dir_kind(rtl)
    if kind not in ("spvit-rtl", "spvit-board"):
        raise UsageError(f"--rtl {str(rtl)!r} is not an output of spvit generate or spvit board; "
                         f"drop --rtl or give one")
    man = json.loads((rtl / "manifest.json").read_text())
    hw = board.hw
    same = {k: v for k, v in man.get("hardware", {}).items() if k != "clock_mhz"} == \
        {k: v for k, v in hw.as_dict().items() if k != "clock_mhz"}
    verilog = rtl / f"{module_name(hw)}.v"
    if not same or not verilog.is_file():
        other = man.get("hardware", {}).get("name")
        raise UsageError(f"--rtl {str(rtl)!r} holds the Verilog of other hardware ({other!r}, "
                         f"ident {man.get('hw_ident', 0):#010x}), not of {hw.name} (ident {hw.ident():#010x}); "
                         f"drop --rtl or regenerate it with spvit generate --hw {hw.name}")
    return verilog.read_text()


def cmd_board(args) -> int:
    b = board(load_hw(args.hw), args.part, args.clock_mhz)
    hw = b.hw
    inputs = [i for i in (args.hw, args.rtl) if i and Path(i).exists()]
    t0 = time.perf_counter()
    core = _reuse_verilog(Path(args.rtl), b) if args.rtl else None
    man = write_board(b, Path(args.out), core=core, force=args.force, inputs=inputs)
    seconds = time.perf_counter() - t0
    ports = ", ".join(f"m_axi{p} -> {hp_port(p)['pin']}" for p in range(hw.axi_ports))
    print(f"wrote {args.out}: {man['top']}.v around {man['core']}.v ({hw.mac_rows}x{hw.mac_cols} MACs; {ports}; "
          f"s_axil at {man['csr_base']:#x} via M_AXI_HPM0_FPD; pl_clk0 {man['clock_mhz']:g} MHz) on {man['part']}, "
          f"build.tcl, package_ip.tcl, constraints.xdc, spvit_regs.json/.h/.md, driver.c, README.md in {seconds:.0f} s")
    print(f"next: cd {args.out} && vivado -mode batch -source build.tcl   (Vivado {man['vivado']}; README.md)")
    return 0


def cmd_board_inputs(args) -> int:
    img = image_of_package(args.image, args.package)
    q, _ = load_package(args.package)
    x, source = input_images(args, q, args.images)
    logits, kept, masks = q(x, return_masks=True)
    with output_dir(args.out, INPUTS_FORMAT, "an input set (spvit board-inputs)", force=args.force,
                    inputs=[args.package, args.image]) as tmp:
        files = write_inputs(tmp, img, x, logits, kept, masks, source)
    print(f"wrote {args.out}: {len(x)} image(s) of {source} for {q.cfg.name} on {img.hw.name} with the golden model's "
          f"logits, kept counts and keep masks ({', '.join(files[:3])}{', ...' if len(files) > 3 else ''})")
    return 0


def register(sub) -> None:
    p = sub.add_parser("board", help="a ZCU102 board directory: Verilog, wrapper, Vivado build and IP scripts, "
                       "constraints, register map, C example, README")
    p.add_argument("--hw", default="zcu102", type=spec, help=HW_HELP + " (default zcu102)")
    p.add_argument("--out", required=True, type=path, help="output directory")
    p.add_argument("--part", default=PART, help=f"Zynq UltraScale+ part (default {PART}, the ZCU102's; the ZCU102 "
                   f"board preset applies only to it)")
    p.add_argument("--clock-mhz", type=float_in(10, 500), help="pl_clk0 and the XDC clock in MHz (default: the "
                   "hardware's clock_mhz)")
    p.add_argument("--rtl", type=path, help="reuse the Verilog of an earlier spvit generate / spvit board output of "
                   "the same hardware (skips the generation: seconds instead of about a minute for zcu102)")
    p.add_argument("--force", action="store_true", help="replace an earlier board directory (never another kind)")
    p.set_defaults(func=cmd_board)

    p = sub.add_parser("board-inputs", help="an input set for the board: quantised images and the golden model's "
                       "results (run it with spvit board-run / python -m driver)")
    p.add_argument("--package", required=True, type=path, help="the package the image was compiled from")
    p.add_argument("--image", required=True, type=path, help="image directory (spvit compile) for the board's hardware")
    p.add_argument("--images", type=int_in(1, 4096), default=8, help="images (default 8)")
    p.add_argument("--data", type=data_source,
                   help="image folder or digits[:test]; default digits:test for 32x32 one-channel models, "
                        "else random images")
    p.add_argument("--seed", type=int_in(0, SEED_MAX), default=0, help="seed of random images")
    p.add_argument("--out", required=True, type=path, help="output directory")
    p.add_argument("--force", action="store_true", help="replace an earlier input set (never another kind)")
    p.set_defaults(func=cmd_board_inputs)

    p = sub.add_parser("board-run", help="run an input set on the ZCU102 (PYNQ) and check it bit for bit against "
                       "the golden model (on the board: python -m driver, same arguments)")
    add_arguments(p)
    p.set_defaults(func=run_command)
