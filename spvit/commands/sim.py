"""Subcommands that simulate or model the accelerator: `spvit run` (images on the RTL, bit-exact
against the package's golden model, sim.accel.verify), `spvit report` (cycles, latency, DSP efficiency, resources) and
`spvit demo` (the whole flow on the committed digits model). `spvit sweep` and `spvit regress`
are in commands/cluster.py."""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from pathlib import Path

from base import ROOT
from base.errors import UsageError
from base.outputs import output_dir
from golden.compiler import Image
from golden.config import load_config
from golden.hw import HW_PRESETS, load_hw
from golden.selectors import SCHEMES
from quant import DEMO_CHECKPOINT
from quant.package import compile_package
from rtl_gen.board.files import write_board
from rtl_gen.board.zynqmp import board
from rtl_gen.tools.cycles import program_cycles, trace
from sim import accel
from sim.report import print_report

from ..cli_types import SEED_MAX, data_source, float_in, int_in, path, spec
from .quant import cmd_compare, cmd_quantize

HW_HELP = f"hardware preset ({', '.join(HW_PRESETS)}) or a TOML file with a [hardware] table"


DEMO_KIND = "spvit-demo"                 # manifest "format" of a `spvit demo` output directory


def check_rtl_scheme(model) -> None:
    """Refuse a model whose token selection the generated RTL does not run yet (before any shape)."""
    if not model.scheme.hardware:
        runs = [s.title if s.name != "none" else "unpruned" for s in SCHEMES.values() if s.hardware]
        listed = ", ".join(runs[:-1]) + " and " + runs[-1]
        raise UsageError(f"the accelerator runs {listed} models; token selection {model.selector!r} "
                         f"(model {model.name}) has no hardware yet: give one of those (`spvit compile` "
                         f"builds its image for the golden interpreter)")


def resolve(spec: str):
    """'MODEL[,HW]' -> (golden Config, HardwareConfig that fits the model). A model TOML's
    [hardware] table applies as written on top of HW, else of the table's `preset`, else of the
    default hardware of the model's preset (golden.hw.load_hw)."""
    model_spec, _, hw_name = spec.partition(",")
    cfg = load_config(model_spec)
    check_rtl_scheme(cfg.model)
    hw = load_hw(hw_name or None, cfg.model, cfg.hardware, cfg.preset)
    hw.check(cfg.model)
    return cfg, hw


def keep_fractions(text: str) -> tuple[float, ...]:
    """--keep of `spvit report`: the fraction of its scored tokens each selector stage keeps
    (not cumulative), comma-separated, each in [0, 1]."""
    try:
        rates = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"takes comma-separated fractions such as 0.7,0.7,0.7 (got {text!r})") from None
    if not all(math.isfinite(r) and 0 <= r <= 1 for r in rates):
        raise argparse.ArgumentTypeError(f"rates must lie in [0, 1] (got {text})")
    return rates


# ---------------------------------------------------------------- run
def input_images(args, q, n: int):
    """n int16 images in the model's input format: from --data, or the digits test split for
    1-channel 32x32 models, else smooth random images (seeded)."""
    from quant.calibrate import quantize_images
    cfg = q.cfg
    src = args.data
    if src is None and cfg.in_chans == 1 and cfg.img_size == 32:
        src = "digits:test"
    if src is None:
        from golden.random_model import random_images
        return quantize_images(random_images(cfg, n, seed=args.seed), q), f"random images (seed {args.seed})"
    from quant.data import load_data
    data = load_data(src, cfg, default_split="test").take(n)
    x, _ = data.tensors()
    return quantize_images(x, q), data.name


def image_of_package(image: str, package: str) -> Image:
    """The image directory `image`, which must have been compiled from `package`."""
    img = Image.load(image)
    blob = Path(package) / "weights.bin"
    if img.manifest.get("source", {}).get("package_sha256") != hashlib.sha256(blob.read_bytes()).hexdigest():
        raise UsageError(f"image {image!r} was not compiled from package {package!r}; compile it "
                         f"again (spvit compile --package {package} --out {image} --force)")
    return img


def cmd_run(args) -> int:
    if not args.package:
        raise UsageError("--package is required (the quantised package; with --image, the package the image was "
                         "compiled from, for the input format and data)")
    q, img = compile_package(args.package, args.hw, args.checkpoints, check_model=check_rtl_scheme)
    if args.image:
        img = image_of_package(args.image, args.package)
    x, source = input_images(args, q, args.images)
    return run_and_compare(q, img, x, source, args.sim, args.pause, args.seed, args.checkpoints)


def run_and_compare(q, img, x, source: str, sim: str, pause: float, seed: int, checkpoints: bool) -> int:
    """Run the images on the RTL, compare with the package's golden model `q` (and, to locate a
    mismatch, with the interpreter of the image: sim.accel.verify); print the result; 0 if
    bit-exact."""
    hw = img.hw
    print(f"{q.cfg.name} on hardware {hw.name} ({hw.mac_rows}x{hw.mac_cols} MACs, {hw.axi_ports} x {hw.axi_bits}-bit "
          f"AXI), {len(x)} image(s) of {source}, {sim}, pauses {pause:g} on every AXI channel", flush=True)
    runs = accel.run_accel(img, list(x), pause=pause, seed=seed, sim=sim)
    v = accel.verify(q, img, list(x), runs)
    g, p = v.golden, v.program
    print(f"result: {'BIT-EXACT' if v.exact else 'MISMATCH'}: {g.bad} of {g.compared:,} elements differ from the "
          f"package's golden model (logits, kept counts, keep masks), {p.bad} of {p.compared:,} from the image's "
          f"program (the same, KEPT registers{', every block' if checkpoints else ''}; DDR reads and writes)")
    if not v.exact:
        print(f"  {v.locate()}")
    for f in v.first:
        print("  ", f)
    for k, r in enumerate(runs):
        if r.error != "OK" or r.hung:
            print(f"  image {k}: {'hung' if r.hung else f'error {r.error} at descriptor {r.error_index}'}")
            continue
        model = program_cycles(img, trace(img, x[k])).total
        print(f"  image {k}: {r.cycles:,} cycles with pauses {pause:g} ({r.cycles / (hw.clock_mhz * 1e3):.3f} ms at "
              f"{hw.clock_mhz:g} MHz; the cycle model, which assumes no pauses, gives {model:,}, "
              f"{100 * (model / r.cycles - 1):+.1f}%), kept {r.kept_regs}, simulated in {r.wall_s:.0f} s")
    return 0 if v.exact else 1


# ---------------------------------------------------------------- report
def cmd_report(args) -> int:
    cfg, hw = resolve(args.config)
    keep = args.keep
    m = cfg.model
    if keep and not m.stages:
        raise UsageError(f"--keep given, but model {m.name} has no token selectors (selector = {m.selector!r}); "
                         f"drop --keep or use a model with selectors")
    if keep and len(keep) not in (1, m.stages):
        raise UsageError(f"--keep needs 1 or {m.stages} rates, one per selector stage of {m.name} (got {len(keep)})")
    print_report(m, hw, keep, synth=args.synth, timing=args.timing)
    return 0


def cmd_demo(args) -> int:
    """The whole flow on the committed digits model: quantise, compare int16 with float on the
    held-out split, compile for the mini hardware, run held-out digits on the generated RTL
    bit-exact against the golden model, print the modeled latency. Everything is written into a
    temporary directory next to --out (a directory of kind spvit-demo, base/outputs.py) and
    renamed at the end: an interrupted demo leaves nothing, and --force replaces only an earlier
    demo output."""
    if not DEMO_CHECKPOINT.is_file():
        raise UsageError(f"{DEMO_CHECKPOINT} is missing; create it with "
                         f"`python examples/train_tiny.py --out {DEMO_CHECKPOINT}`")
    out = Path(args.out)
    shown = str(DEMO_CHECKPOINT.relative_to(ROOT)) if Path.cwd() == ROOT else str(DEMO_CHECKPOINT)
    pkg, img_dir = out / "mini_digits.pkg", out / "mini_digits.img"
    files = ["mini_digits.pkg", "compare.json", "compare.png", "mini_digits.img", "board"]
    with output_dir(out, DEMO_KIND, "a demo output directory (spvit demo)", force=args.force,
                    inputs=[DEMO_CHECKPOINT]) as tmp:
        names = {"shown": {str(tmp): str(out)}}
        print(f"$ spvit quantize --checkpoint {shown} --config mini --calib digits:train --out {pkg}", flush=True)
        cmd_quantize(argparse.Namespace(checkpoint=str(DEMO_CHECKPOINT), config="mini", calib="digits:train",
                                        calib_limit=256, method="maxabs", out=str(tmp / pkg.name), force=False,
                                        **names))
        print(f"$ spvit compare --checkpoint {shown} --package {pkg} --data digits:test --json {out / 'compare.json'} "
              f"--plot {out / 'compare.png'}", flush=True)
        cmd_compare(argparse.Namespace(checkpoint=str(DEMO_CHECKPOINT), package=str(tmp / pkg.name),
                                       data="digits:test", limit=None, json=str(tmp / "compare.json"),
                                       plot=str(tmp / "compare.png"), config=None, batch=16, sqnr_images=64,
                                       no_progress=not sys.stderr.isatty(), show=None, show_images=None,
                                       force=False, **names))
        print(f"$ spvit compile --package {pkg} --hw mini --out {img_dir}", flush=True)
        q, img = compile_package(str(tmp / pkg.name), "mini")
        img.manifest.setdefault("source", {})["package"] = str(pkg)      # where it will be, not the temp path
        img.save(tmp / img_dir.name, inputs=[str(tmp / pkg.name)])
        print(f"wrote {img_dir}: {img.manifest['descriptors']} descriptors, {img.stream_len:,} stream bytes")
        print(f"$ spvit run --package {pkg} --hw mini --images {args.images}   (Verilator; the first run builds the "
              f"model, about 2 min)", flush=True)
        x, source = input_images(argparse.Namespace(data="digits:test", seed=0), q, args.images)
        rc = run_and_compare(q, img, x, source, "verilator", 0.1, 0, False)
        print(f"$ spvit board --hw mini --out {out / 'board'}   (Vivado project, IP, driver for a ZCU102)", flush=True)
        write_board(board(img.hw), tmp / "board")
        (tmp / "manifest.json").write_text(json.dumps({"format": DEMO_KIND, "files": files}, indent=1) + "\n")
    p = program_cycles(img, trace(img, x[0]))
    hw = img.hw
    print(f"wrote {out}: {', '.join(files)}")
    print(f"modeled latency of {q.cfg.name} on {hw.name} ({hw.mac_rows}x{hw.mac_cols} MACs) at {hw.clock_mhz:g} MHz: "
          f"{p.latency_ms:.3f} ms per image ({p.total:,} cycles, MAC-array utilisation {p.mac_utilisation:.2f}); "
          f"DeiT-S/T on zcu102: python benchmarks/latency.py")
    return rc


def register(sub) -> None:
    p = sub.add_parser("demo", help="the whole flow on the committed digits model: quantise, compare, compile, "
                       "run on the RTL bit-exact, modeled latency")
    p.add_argument("--out", default="build/demo", type=path,
                   help="where the package, image, JSON and plot go (default build/demo)")
    p.add_argument("--images", type=int_in(1, 64), default=2, help="held-out digits to run on the RTL (default 2)")
    p.add_argument("--force", action="store_true", help="replace an earlier demo output directory (never another kind)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("run", help="run images on the accelerator's RTL (cocotb), bit-exact against golden")
    p.add_argument("--package", type=path, help="package directory (compiled on the way)")
    p.add_argument("--image", type=path, help="an image directory from spvit compile (with --package for the data)")
    p.add_argument("--hw", type=spec, help=HW_HELP)
    p.add_argument("--images", type=int_in(1, 4096), default=2, help="images to run (default 2)")
    p.add_argument("--data", type=data_source,
                   help="image folder or digits[:test]; default digits:test for 32x32 one-channel "
                   "models, else random images")
    p.add_argument("--sim", default="verilator", choices=("verilator", "icarus"))
    p.add_argument("--pause", type=float_in(0, 1, hi_open=True), default=0.1,
                   help="probability of a pause per cycle on every AXI channel, in [0, 1) (default 0.1)")
    p.add_argument("--seed", type=int_in(0, SEED_MAX), default=0)
    p.add_argument("--checkpoints", action="store_true", help="dump and compare every block's tokens")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="cycles per operation and block, latency, DSP efficiency; --synth resources, "
                       "--timing logic depth and clock")
    p.add_argument("--config", required=True, type=spec, help=f"MODEL[,HW]: model preset or TOML, optional {HW_HELP}")
    p.add_argument("--keep", type=keep_fractions, help="keep rate of each selector stage (fractions of the tokens "
                   "a stage scores, in [0, 1]; one value for every stage or one per stage; default 0.7 each)")
    p.add_argument("--synth", action="store_true", help="synthesise the accelerator with Yosys (slow for zcu102)")
    p.add_argument("--timing", action="store_true", help="the deepest register-to-register path of every unit after "
                   "Yosys synthesis, its delay by the UltraScale+ -2 model of docs/rtl.md and the clock it supports "
                   "(the same Yosys runs and cache as --synth)")
    p.set_defaults(func=cmd_report)

