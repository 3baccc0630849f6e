"""Subcommands of the accelerator: `spvit generate` (Verilog of one top per hardware
configuration), `spvit compile` (a quantised package -> a DDR image), `spvit run` (images on
the RTL, bit-exact against the interpreter), `spvit report` (cycles, latency, resources)."""
from __future__ import annotations

import json
import time
import tomllib
from dataclasses import fields, replace
from pathlib import Path

from golden.config import ConfigError, load_config
from golden.hw import DEFAULT_HW, HW_PRESETS, HardwareConfig
from spvit.cli_types import SEED_MAX, float_in, int_in
from spvit.errors import UsageError

from spvit.outputs import output_dir

PAPER_MS = {"deit-tiny": 5.60, "deit-small": 13.23}       # SPViT paper, 16-bit ZCU102 accelerator
FF_LUT_CAVEAT = ("Yosys synth_xilinx -family xcup: DSP48E2 and BRAM counts are meaningful; LUT and FF counts are "
                 "Yosys/ABC estimates, not Vivado results; timing is not checked (no Vivado here)")


# ---------------------------------------------------------------- hardware and model specs
def load_hw(spec: str | None, model=None) -> HardwareConfig:
    """A hardware preset name or a TOML file with a [hardware] table (fields of HardwareConfig,
    optional `preset` as the base); None: the model's default preset (zcu102 unless mini)."""
    if spec is None:
        return HW_PRESETS[DEFAULT_HW.get(getattr(model, "name", ""), "zcu102")]
    if spec in HW_PRESETS:
        return HW_PRESETS[spec]
    path = Path(spec)
    if path.suffix != ".toml":
        raise ConfigError(f"unknown hardware {spec!r}: give a preset ({', '.join(HW_PRESETS)}) or a .toml file "
                          f"with a [hardware] table")
    if not path.is_file():
        raise ConfigError(f"hardware file {spec!r} does not exist")
    try:
        table = tomllib.loads(path.read_text()).get("hardware")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"hardware file {spec!r} is not valid TOML: {e}") from None
    if not isinstance(table, dict):
        raise ConfigError(f"hardware file {spec!r} has no [hardware] table; add one with fields of HardwareConfig "
                          f"({', '.join(f.name for f in fields(HardwareConfig))})")
    table = dict(table)
    base = table.pop("preset", "zcu102")
    if base not in HW_PRESETS:
        raise ConfigError(f"unknown hardware preset {base!r} in {spec!r}; use one of {', '.join(HW_PRESETS)}")
    names = {f.name for f in fields(HardwareConfig)}
    unknown = sorted(set(table) - names)
    if unknown:
        raise ConfigError(f"unknown field(s) {unknown} in [hardware] of {spec!r}; valid fields: {sorted(names)}")
    for k, v in table.items():
        want = type(getattr(HW_PRESETS[base], k))
        if want is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, want) or isinstance(v, bool):
            raise ConfigError(f"[hardware] {k} must be a {want.__name__} (got {v!r})")
        table[k] = v
    return replace(HW_PRESETS[base], name=table.pop("name", path.stem), **table)


def resolve(spec: str):
    """'MODEL[,HW]' -> (golden Config, HardwareConfig that fits the model)."""
    model_spec, _, hw_name = spec.partition(",")
    cfg = load_config(model_spec)
    hw = load_hw(hw_name or None, cfg.model)
    hw.check(cfg.model)
    return cfg, hw


# ---------------------------------------------------------------- generate
def generate(hw: HardwareConfig, out: Path, force: bool = False) -> dict:
    """Verilog of the top, the register map (JSON, C header, Markdown) and a manifest."""
    from sim.runner import to_verilog

    from .regmap import c_header, markdown, regmap_json
    from .top import Accelerator
    top = f"spvit_accel_{hw.name}".replace("-", "_")
    t0 = time.perf_counter()
    with output_dir(out, "spvit-rtl", "an RTL directory", force=force) as tmp:
        text = to_verilog(Accelerator(hw), top)
        files = {f"{top}.v": text, "spvit_regs.json": regmap_json(hw), "spvit_regs.h": c_header(hw),
                 "spvit_regs.md": markdown(hw)}
        for name, t in files.items():
            (tmp / name).write_text(t)
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
    man = generate(hw, Path(args.out), args.force)
    print(f"wrote {args.out}: {man['top']}.v ({hw.mac_rows}x{hw.mac_cols} MAC array, {hw.axi_ports} AXI ports of "
          f"{hw.axi_bits} bits, n_max {hw.n_max}, d_max {hw.d_max}, hidden_max {hw.hidden_max}; ident "
          f"{hw.ident():#010x}), spvit_regs.json/.h/.md, manifest.json in {man['seconds']:.0f} s")
    return 0


# ---------------------------------------------------------------- compile
def compile_package(package: str, hw_spec: str | None, checkpoints: bool = False):
    from golden.compiler import compile_model
    from quant.package import load_package
    q, man = load_package(package)
    hw = load_hw(hw_spec, q.cfg)
    bad = hw.misfits(q.cfg)
    if bad:
        raise UsageError(f"package {package!r} ({q.cfg.name}) does not fit hardware {hw.name}: " + "; ".join(bad)
                         + "; compile for a larger hardware configuration (--hw zcu102 or a TOML with larger limits)")
    try:
        img = compile_model(q, hw, checkpoints=checkpoints,
                            source={"package": str(package), "package_sha256": man["blob"]["sha256"]})
    except ValueError as e:
        raise UsageError(f"cannot compile {package!r} for {hw.name}: {e}") from None
    return q, img


def write_image(img, out: Path, force: bool, inputs=()) -> None:
    from golden.compiler import listing
    with output_dir(out, "spvit-ddr-image", "an image directory", force=force, inputs=inputs) as tmp:
        (tmp / "image.bin").write_bytes(img.data)
        (tmp / "manifest.json").write_text(json.dumps(img.manifest, indent=1, sort_keys=True) + "\n")
        (tmp / "program.txt").write_text(listing(img) + "\n")


def read_image(path: str):
    """An image directory written by `spvit compile` -> golden.compiler.Image."""
    from golden.compiler import Image
    from golden.config import ModelConfig
    p = Path(path)
    try:
        man = json.loads((p / "manifest.json").read_text())
        data = (p / "image.bin").read_bytes()
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{path!r} is not an image written by `spvit compile` ({e}); compile one with "
                         f"spvit compile --package PKG --out {path}") from None
    import hashlib
    if man.get("format") != "spvit-ddr-image" or hashlib.sha256(data).hexdigest() != man.get("sha256"):
        raise UsageError(f"image {path!r} is corrupt or of another format (sha256 or format differ from its manifest); "
                         f"compile it again")
    hw = HardwareConfig(**man["hardware"])
    cfg = ModelConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in man["model"].items()})
    regions = {k: (v["offset"], v["bytes"]) for k, v in man["regions"].items()}
    labels = [(i, line[17:]) for i, line in enumerate((p / "program.txt").read_text().splitlines())] \
        if (p / "program.txt").exists() else []
    return Image(hw, cfg, data, regions, labels, man)


def cmd_compile(args) -> int:
    _, img = compile_package(args.package, args.hw, args.checkpoints)
    write_image(img, Path(args.out), args.force, inputs=[args.package])
    m = img.manifest
    print(f"wrote {args.out}: {m['descriptors']} descriptors, {img.stream_len:,} stream bytes, image {m['size']:,} "
          f"bytes for hardware {img.hw.name} (ident {img.hw.ident():#010x}); program listing in {args.out}/program.txt")
    return 0


# ---------------------------------------------------------------- run
def _images(args, q, n: int):
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


def cmd_run(args) -> int:
    from sim.accel import compare_runs, run_accel

    from .perf import program_cycles, trace
    if args.image:
        img = read_image(args.image)
        if args.checkpoints:
            raise UsageError("--checkpoints needs --package (the image was compiled without or with them already)")
        q = None
        if not args.package:
            raise UsageError("--image needs the --package it was compiled from (for the input format and data)")
    if args.package:
        q, img2 = compile_package(args.package, args.hw, args.checkpoints)
        img = img if args.image else img2
    if not args.package and not args.image:
        raise UsageError("give --package PKG (a quantised package; spvit compile runs on the way) or --image IMG")
    x, source = _images(args, q, args.images)
    hw = img.hw
    print(f"{q.cfg.name} on hardware {hw.name} ({hw.mac_rows}x{hw.mac_cols} MACs, {hw.axi_ports} x {hw.axi_bits}-bit "
          f"AXI), {len(x)} image(s) of {source}, {args.sim}, pauses {args.pause:g} on every AXI channel", flush=True)
    runs = run_accel(img, list(x), pause=args.pause, seed=args.seed, sim=args.sim)
    c = compare_runs(img, list(x), runs)
    print(f"result: {'BIT-EXACT' if c.bad == 0 else 'MISMATCH'}: {c.bad} of {c.compared:,} elements differ "
          f"(logits, kept counts, keep masks{', every block' if args.checkpoints else ''}; DDR reads and writes)")
    for f in c.first:
        print("  ", *f)
    for k, r in enumerate(runs):
        model = program_cycles(img, trace(img, x[k])).total if not r.error != "OK" else 0
        err = "" if r.error == "OK" else f"  error {r.error} at descriptor {r.error_index}"
        print(f"  image {k}: {r.cycles:,} cycles (cycle model {model:,}, {100 * (model / r.cycles - 1):+.1f}%; "
              f"{r.cycles / (hw.clock_mhz * 1e3):.3f} ms at {hw.clock_mhz:g} MHz), kept {r.kept_regs}{err}, "
              f"sim {r.wall_s:.0f} s")
    return 1 if c.bad else 0


# ---------------------------------------------------------------- report
def cmd_report(args) -> int:
    from .report import print_report
    cfg, hw = resolve(args.config)
    keep = None
    if args.keep:
        try:
            keep = tuple(float(v) for v in args.keep.split(","))
        except ValueError:
            raise UsageError(f"--keep takes comma-separated fractions such as 0.7,0.49,0.343 (got {args.keep!r})") from None
    print_report(cfg.model, hw, keep, synth=args.synth)
    return 0


def register(sub) -> None:
    hw_help = f"hardware preset ({', '.join(HW_PRESETS)}) or a TOML file with a [hardware] table"
    p = sub.add_parser("generate", help="Verilog of the accelerator for one hardware configuration, register map")
    p.add_argument("--hw", default="zcu102", help=hw_help + " (default zcu102)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--force", action="store_true", help="replace an earlier `spvit generate` output")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("compile", help="compile a quantised package into a DDR image for the accelerator")
    p.add_argument("--package", required=True, help="package directory from spvit quantize")
    p.add_argument("--hw", help=hw_help + " (default: zcu102, or mini for the mini model)")
    p.add_argument("--out", required=True, help="image directory to write (image.bin, manifest.json, program.txt)")
    p.add_argument("--checkpoints", action="store_true", help="also store every block's tokens (for `spvit run`)")
    p.add_argument("--force", action="store_true", help="replace an earlier `spvit compile` output")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("run", help="run images on the accelerator's RTL (cocotb), bit-exact against golden")
    p.add_argument("--package", help="package directory (compiled on the way)")
    p.add_argument("--image", help="an image directory from spvit compile (with --package for the data)")
    p.add_argument("--hw", help=hw_help)
    p.add_argument("--images", type=int_in(1, 4096), default=2, help="images to run (default 2)")
    p.add_argument("--data", help="image folder or digits[:test]; default digits:test for 32x32 one-channel "
                   "models, else random images")
    p.add_argument("--sim", default="verilator", choices=("verilator", "icarus"))
    p.add_argument("--pause", type=float_in(0, 1, hi_open=True), default=0.1,
                   help="probability of a pause per cycle on every AXI channel, in [0, 1) (default 0.1)")
    p.add_argument("--seed", type=int_in(0, SEED_MAX), default=0)
    p.add_argument("--checkpoints", action="store_true", help="dump and compare every block's tokens")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="cycles per operation and block, latency, DSP efficiency; --synth resources")
    p.add_argument("--config", required=True, help=f"MODEL[,HW]: model preset or TOML, optional {hw_help}")
    p.add_argument("--keep", help="keep rate of each selector stage (fractions of the patch tokens entering the "
                   "stage; default 0.7 each)")
    p.add_argument("--synth", action="store_true", help="synthesise the accelerator with Yosys (slow for zcu102)")
    p.set_defaults(func=cmd_report)

