"""Subcommands of the quantiser: `spvit quantize`, `spvit compare`, `spvit export-onnx`,
`spvit check`, `spvit compile` (package -> DDR image). `spvit demo` is in commands/sim.py.
Modules that import torch are imported inside the commands, so `spvit --help` stays fast."""
from __future__ import annotations

import sys
import time
from contextlib import ExitStack
from pathlib import Path

from base.cluster import Executor
from base.errors import UsageError
from base.outputs import output_dir, output_file
from golden.config import load_config
from golden.hw import HW_PRESETS
from quant import CALIBRATION_METHODS, single_thread
from quant.package import FORMAT, compile_package, write_package_files
from quant.show import KIND as SHOW_KIND, write_pictures

from ..cli_types import data_source, executor_arguments, int_in, nonneg_int, path, positive_int, seed, spec, suffix

CHECK_MAX = 512        # spvit check makes its images in memory
CALIB_MAX = 2048       # calibration images are held in memory (DeiT: 0.6 MB each)
SHOW_DEFAULT = 8       # spvit compare --show: pictures of the first 8 compared images unless told


def cmd_check(args) -> int:
    """Golden integer model vs float twin on a random (timm-initialised, selector-balanced) model."""
    from golden.random_model import random_images, random_model
    from quant.calibrate import calibrate
    from quant.selfcheck import compare, print_report
    single_thread()
    cfg = load_config(args.config)
    imgs = random_images(cfg.model, args.calib + args.images, seed=args.seed)
    model = random_model(cfg.model, seed=args.seed, balance_with=imgs[:args.calib])
    t = time.time()
    q = calibrate(model, imgs[:args.calib], cfg.fixed_point)
    print(f"{cfg.model.name}: random weights (seed {args.seed}), calibrated on {args.calib} images "
          f"in {time.time() - t:.1f} s, compared on {args.images}")
    print_report(compare(model, q, imgs[args.calib:]))
    return 0


def _inputs(args, *names) -> list:
    """Paths among the arguments that are files or folders the command reads."""
    return [getattr(args, n) for n in names if getattr(args, n, None) and Path(getattr(args, n)).exists()]


def _shown(args, path) -> str:
    """How a path is printed (spvit demo writes into a temporary directory first)."""
    path = str(path)
    for tmp, final in getattr(args, "shown", {}).items():
        path = path.replace(tmp, final)
    return path


def cmd_quantize(args) -> int:
    from quant.calibrate import PERCENTILE, calibrate
    from quant.data import load_data
    from quant.loaders import checked_path, file_sha256, load_float_model
    single_thread()
    cfg = load_config(args.config)
    checked_path(args.checkpoint)                 # a wrong checkpoint path is named before the output
    t0 = time.time()
    with output_dir(args.out, FORMAT, "a weight package", force=args.force,
                    inputs=_inputs(args, "checkpoint", "calib", "config")) as tmp:
        model = load_float_model(args.checkpoint, cfg.model)
        data = load_data(args.calib, cfg.model, default_split="train").take(args.calib_limit)
        images, _ = data.tensors()
        try:
            q = calibrate(model, images, cfg.fixed_point, args.method)
        except ValueError as e:
            raise UsageError(f"calibration failed: {e}") from None
        cal = {"method": args.method, "data": data.name, "images": len(images),
               **({"percentile": PERCENTILE} if args.method == "percentile" else {})}
        src = {"checkpoint": str(args.checkpoint), "checkpoint_sha256": file_sha256(args.checkpoint),
               "config": args.config}
        man = write_package_files(q, tmp, cfg.fixed_point, cal, src)
    print(f"wrote {_shown(args, args.out)}: {len(man['tensors'])} tensors, {man['blob']['size']:,} bytes, "
          f"method {args.method}, calibrated on {len(images)} images of {data.name} ({time.time() - t0:.1f} s)")
    return 0


def cmd_compare(args) -> int:
    from quant.compare import compare_dataset, format_table, write_json, write_plot
    from quant.loaders import checked_path, file_sha256
    from quant.shard import Sources, compare_sharded, load
    single_thread()
    checked_path(args.checkpoint)
    if args.show_images is not None and not args.show:
        raise UsageError("--show-images sets how many pictures --show draws: add --show DIR (a directory for the "
                         "PNGs) or drop --show-images")
    for option, p in (("--json", args.json), ("--plot", args.plot)):
        if args.show and p and Path(args.show).resolve() in Path(p).resolve().parents:
            raise UsageError(f"{option} {p!r} lies inside --show {args.show!r}, which holds only the pictures: "
                             f"choose another path for one of them")
    inputs = _inputs(args, "checkpoint", "package", "data", "config")
    ex = Executor.from_args(args, default_workers=1)     # --ray problems end here, before any work
    with ExitStack() as outs:      # every output is checked (and claimed) before the work
        js = outs.enter_context(output_file(args.json, "a JSON report", force=args.force, inputs=inputs,
                                            option="--json")) if args.json else None
        png = outs.enter_context(output_file(args.plot, "a PNG plot", force=args.force, inputs=inputs,
                                             option="--plot")) if args.plot else None
        pics = outs.enter_context(output_dir(args.show, SHOW_KIND, "a picture directory (spvit compare --show)",
                                             force=args.force, inputs=inputs, option="--show")) if args.show else None
        src = Sources(args.checkpoint, args.package, args.config, args.data, args.limit)
        model, q, man, data = load(src)
        shown = _show_count(args, len(data), data.name) if pics else 0
        made_from = man.get("source", {}).get("checkpoint_sha256")
        if made_from and made_from != file_sha256(args.checkpoint):
            print(f"warning: package {args.package} was made from a different checkpoint file "
                  f"({man['source'].get('checkpoint')}); comparing anyway", file=sys.stderr)
        print(f"checkpoint {args.checkpoint}, package {args.package} ({man.get('calibration', {}).get('method')}), "
              f"data {data.name}" + ("" if ex.mode == "inline" else f", sharded over {ex.describe}"), flush=True)
        if ex.mode == "inline":
            r = compare_dataset(model, q, data, None, args.batch, args.sqnr_images, progress=not args.no_progress)
        else:
            r = compare_sharded(src, model.cfg, data, args.batch, args.sqnr_images, ex)
        if js:
            write_json(r, js)
        if png:
            write_plot(r, png)
        if pics:
            write_pictures(r, data, model.cfg, shown, pics)
    print(format_table(r))
    for p in (args.json, args.plot):
        if p:
            print(f"wrote {_shown(args, p)}")
    if args.show:
        what = ("the input only: the model has no token selection (plain DeiT), nothing is pruned"
                if not model.cfg.stages else "the input and the patches each stage keeps, float and int16")
        print(f"wrote {_shown(args, args.show)}: {shown} picture(s), {what}")
    return 0


def _show_count(args, compared: int, name: str) -> int:
    """How many pictures --show draws: --show-images, at most the images compared."""
    if args.show_images is None:
        return min(SHOW_DEFAULT, compared)
    if args.show_images > compared:
        raise UsageError(f"--show-images {args.show_images} asks for more pictures than the {compared} images "
                         f"compared ({name}): lower it" + (" or raise --limit" if args.limit else ""))
    return args.show_images


def cmd_export_onnx(args) -> int:
    from quant.loaders import checked_path, load_float_model
    from quant.onnx_export import export_onnx
    cfg = load_config(args.config).model
    checked_path(args.checkpoint)
    with output_file(args.out, "an ONNX file", force=args.force, inputs=_inputs(args, "checkpoint", "config")) as tmp:
        model = load_float_model(args.checkpoint, cfg)
        export_onnx(model, tmp)
    print(f"wrote {args.out} (batch 1, selector decisions computed in the graph)")
    return 0


# ---------------------------------------------------------------- compile (package -> DDR image)
def cmd_compile(args) -> int:
    _, img = compile_package(args.package, args.hw, args.checkpoints)
    img.save(args.out, args.force, inputs=_inputs(args, "package", "hw"))
    m = img.manifest
    print(f"wrote {args.out}: {m['descriptors']} descriptors, {img.stream_len:,} stream bytes, image {m['size']:,} "
          f"bytes for hardware {img.hw.name} (ident {img.hw.ident():#010x}); program listing in {args.out}/program.txt")
    return 0


def register(sub) -> None:
    p = sub.add_parser("check", help="golden integer model vs float twin on random weights")
    p.add_argument("--config", default="mini", type=spec, help="preset name or TOML file (default mini)")
    p.add_argument("--images", type=int_in(1, CHECK_MAX), default=8, help=f"images to compare on (1..{CHECK_MAX})")
    p.add_argument("--calib", type=int_in(1, CHECK_MAX), default=8, help=f"calibration images (1..{CHECK_MAX})")
    p.add_argument("--seed", type=seed, default=0)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("quantize", help="quantise a checkpoint into a weight package (manifest + blob)")
    p.add_argument("--checkpoint", required=True, type=path,
                   help=".pth/.pt (state_dict or {'model': ...}), .safetensors or .onnx")
    p.add_argument("--config", required=True, type=spec,
                   help="preset name or TOML file ([fixed_point] frac_overrides pins formats)")
    p.add_argument("--calib", required=True, type=data_source,
                   help="calibration data: an image folder (one subfolder per class) "
                        "or digits[:train|:test|:all] (default split train)")
    p.add_argument("--calib-limit", type=int_in(1, CALIB_MAX), default=256,
                   help=f"calibration images, spread evenly over the data (default 256, at most {CALIB_MAX}: "
                        f"they are held in memory)")
    p.add_argument("--method", choices=CALIBRATION_METHODS, default="maxabs", help="format choice (default maxabs)")
    p.add_argument("--out", required=True, type=path, help="package directory to write")
    p.add_argument("--force", action="store_true", help="replace an existing package (never another kind of directory)")
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("compare", help="accuracy of the int16 golden model vs the float model on labelled data")
    p.add_argument("--checkpoint", required=True, type=path)
    p.add_argument("--package", required=True, type=path, help="package directory from spvit quantize")
    p.add_argument("--data", required=True, type=data_source,
                   help="image folder or digits[:test|:train|:all] (default split test)")
    p.add_argument("--config", type=spec, help="model config (default: the package's; must match it)")
    p.add_argument("--limit", type=positive_int, help="compare on N images spread evenly over the data")
    p.add_argument("--json", type=suffix(".json"), help="write the full results as JSON")
    p.add_argument("--plot", type=suffix(".png"), help="write a PNG of per-layer SQNR and kept tokens per stage")
    p.add_argument("--batch", type=int_in(1, 1024), default=16, help="images per golden forward (1..1024)")
    p.add_argument("--sqnr-images", type=nonneg_int, default=64,
                   help="images used for per-layer SQNR (default 64; 0: skip it)")
    p.add_argument("--show", type=path, metavar="DIR",
                   help="write a directory of PNGs, one per image: the input and the patches each selection stage "
                        "keeps, float and int16 side by side (docs/quantization.md)")
    p.add_argument("--show-images", type=positive_int, metavar="N",
                   help=f"pictures --show draws: the first N images compared (default {SHOW_DEFAULT}, or all if fewer)")
    p.add_argument("--force", action="store_true", help="replace existing --json / --plot files and --show directory")
    executor_arguments(p, default_workers="1: this process")     # --ray, --workers, --retries, --no-progress
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("export-onnx", help="export the float twin (selector decisions in the graph) to ONNX")
    p.add_argument("--checkpoint", required=True, type=path)
    p.add_argument("--config", required=True, type=spec)
    p.add_argument("--out", required=True, type=suffix(".onnx"), help="ONNX file to write (.onnx)")
    p.add_argument("--force", action="store_true", help="replace an existing file (never the checkpoint)")
    p.set_defaults(func=cmd_export_onnx)

    p = sub.add_parser("compile", help="compile a quantised package into a DDR image for the accelerator")
    p.add_argument("--package", required=True, type=path, help="package directory from spvit quantize")
    p.add_argument("--hw", type=spec,
                   help=f"hardware preset ({', '.join(HW_PRESETS)}) or a TOML file with a [hardware] table "
                        "(default: zcu102, or mini for the mini model)")
    p.add_argument("--out", required=True, type=path,
                   help="image directory to write (image.bin, manifest.json, program.txt)")
    p.add_argument("--checkpoints", action="store_true", help="also store every block's tokens (for `spvit run`)")
    p.add_argument("--force", action="store_true", help="replace an earlier `spvit compile` output")
    p.set_defaults(func=cmd_compile)

