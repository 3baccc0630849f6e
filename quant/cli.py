"""Subcommands of the quantiser: `spvit quantize`, `spvit compare`, `spvit export-onnx`,
`spvit check`, `spvit demo`."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from golden.config import load_config
from spvit.errors import UsageError

def _one_thread():
    """The models here are small: torch's thread pool only adds contention (measured ~50x
    slower calibration with 2 threads on a busy 2-core machine). OMP_NUM_THREADS overrides."""
    import os

    import torch
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)


ROOT = Path(__file__).resolve().parents[1]
DEMO_CHECKPOINT = ROOT / "examples" / "mini_digits.safetensors"


def cmd_check(args) -> int:
    """Golden integer model vs float twin on a random (timm-initialised, selector-balanced) model."""
    from golden.random_model import random_images, random_model

    from .calibrate import calibrate
    from .selfcheck import compare, print_report
    _one_thread()
    cfg = load_config(args.config)
    imgs = random_images(cfg.model, args.calib + args.images, seed=args.seed)
    model = random_model(cfg.model, seed=args.seed, balance_with=imgs[:args.calib])
    t = time.time()
    q = calibrate(model, imgs[:args.calib], cfg.fixed_point)
    print(f"{cfg.model.name}: random weights (seed {args.seed}), calibrated on {args.calib} images "
          f"in {time.time() - t:.1f} s, compared on {args.images}")
    print_report(compare(model, q, imgs[args.calib:]))
    return 0


def _positive(name, v):
    if v is not None and v <= 0:
        raise UsageError(f"{name} must be a positive integer (got {v})")


def cmd_quantize(args) -> int:
    from .calibrate import PERCENTILE, calibrate
    from .data import load_data
    from .loaders import file_sha256, load_float_model
    from .package import write_package
    _positive("--calib-limit", args.calib_limit)
    _one_thread()
    cfg = load_config(args.config)
    out = Path(args.out)
    if out.exists() and not args.force:
        raise UsageError(f"output {str(out)!r} already exists; remove it or pass --force")
    t0 = time.time()
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
    man = write_package(q, out, cfg.fixed_point, cal, src, force=args.force)
    print(f"wrote {out}: {len(man['tensors'])} tensors, {man['blob']['size']:,} bytes, method {args.method}, "
          f"calibrated on {len(images)} images of {data.name} ({time.time() - t0:.1f} s)")
    return 0


def cmd_compare(args) -> int:
    from .compare import compare_dataset, format_table, write_json, write_plot
    from .loaders import file_sha256
    _positive("--limit", args.limit)
    _positive("--batch", args.batch)
    _one_thread()
    for opt, suf in (("json", ".json"), ("plot", ".png")):
        p = getattr(args, opt)
        if p and not p.lower().endswith(suf):
            raise UsageError(f"--{opt} must name a {suf} file (got {p!r})")
    from spvit.cluster import Executor

    from .shard import Sources, compare_sharded, load
    ex = Executor.from_args(args, default_workers=1)
    src = Sources(args.checkpoint, args.package, args.config, args.data, args.limit)
    model, q, man, data = load(src)
    cfg = model.cfg
    made_from = man.get("source", {}).get("checkpoint_sha256")
    if made_from and made_from != file_sha256(args.checkpoint):
        print(f"warning: package {args.package} was made from a different checkpoint file "
              f"({man['source'].get('checkpoint')}); comparing anyway", file=sys.stderr)
    print(f"checkpoint {args.checkpoint}, package {args.package} ({man['calibration'].get('method')}), "
          f"data {data.name}" + ("" if ex.mode == "inline" else f", sharded over {ex.describe}"), flush=True)
    if ex.mode == "inline":
        r = compare_dataset(model, q, data, None, args.batch, args.sqnr_images, progress=not args.no_progress)
    else:
        r = compare_sharded(src, cfg, len(data), args.batch, args.sqnr_images, ex)
    print(format_table(r))
    if args.json:
        write_json(r, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        write_plot(r, args.plot)
        print(f"wrote {args.plot}")
    return 0


def cmd_export_onnx(args) -> int:
    from .loaders import load_float_model
    from .onnx_export import export_onnx
    cfg = load_config(args.config).model
    model = load_float_model(args.checkpoint, cfg)
    export_onnx(model, args.out)
    print(f"wrote {args.out} (batch 1, selector decisions computed in the graph)")
    return 0


def cmd_demo(args) -> int:
    """Quantise the committed digits model, compare on the held-out split, print the table."""
    if not DEMO_CHECKPOINT.is_file():
        raise UsageError(f"{DEMO_CHECKPOINT} is missing; create it with "
                         f"`python examples/train_tiny.py --out {DEMO_CHECKPOINT}`")
    out = Path(args.out)
    import os
    shown = os.path.relpath(DEMO_CHECKPOINT) if Path.cwd() == ROOT else str(DEMO_CHECKPOINT)
    common = ["--checkpoint", shown]
    print(f"$ spvit quantize {' '.join(common)} --config mini --calib digits:train --out {out / 'mini_digits.pkg'} --force")
    rc = cmd_quantize(_ns(checkpoint=str(DEMO_CHECKPOINT), config="mini", calib="digits:train", calib_limit=256,
                          method="maxabs", out=str(out / "mini_digits.pkg"), force=True))
    print(f"$ spvit compare {' '.join(common)} --package {out / 'mini_digits.pkg'} --data digits:test "
          f"--json {out / 'compare.json'} --plot {out / 'compare.png'}")
    return rc or cmd_compare(_ns(checkpoint=str(DEMO_CHECKPOINT), package=str(out / "mini_digits.pkg"),
                                 data="digits:test", limit=None, json=str(out / "compare.json"),
                                 plot=str(out / "compare.png"), config=None, batch=16, sqnr_images=64,
                                 no_progress=not sys.stderr.isatty()))


def _ns(**kw):
    import argparse
    return argparse.Namespace(**kw)


def register(sub) -> None:
    from .calibrate import METHODS
    p = sub.add_parser("check", help="golden integer model vs float twin on random weights")
    p.add_argument("--config", default="mini", help="preset name or TOML file (default mini)")
    p.add_argument("--images", type=int, default=8, help="images to compare on")
    p.add_argument("--calib", type=int, default=8, help="calibration images")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("quantize", help="quantise a checkpoint into a weight package (manifest + blob)")
    p.add_argument("--checkpoint", required=True, help=".pth/.pt (state_dict or {'model': ...}), .safetensors or .onnx")
    p.add_argument("--config", required=True, help="preset name or TOML file ([fixed_point] frac_overrides pins formats)")
    p.add_argument("--calib", required=True, help="calibration data: an image folder (one subfolder per class) "
                   "or digits[:train|:test|:all] (default split train)")
    p.add_argument("--calib-limit", type=int, default=256,
                   help="calibration images, spread evenly over the data (default 256)")
    p.add_argument("--method", choices=METHODS, default="maxabs", help="format choice (default maxabs)")
    p.add_argument("--out", required=True, help="package directory to write")
    p.add_argument("--force", action="store_true", help="replace an existing package")
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("compare", help="accuracy of the int16 golden model vs the float model on labelled data")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--package", required=True, help="package directory from spvit quantize")
    p.add_argument("--data", required=True, help="image folder or digits[:test|:train|:all] (default split test)")
    p.add_argument("--config", help="model config (default: the package's; must match it)")
    p.add_argument("--limit", type=int, help="compare on N images spread evenly over the data")
    p.add_argument("--json", help="write the full results as JSON")
    p.add_argument("--plot", help="write a PNG of per-layer SQNR and kept tokens per stage")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--sqnr-images", type=int, default=64, help="images used for per-layer SQNR (default 64)")
    from spvit.cluster import add_arguments
    add_arguments(p, default_workers="1: this process")     # also --no-progress
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("export-onnx", help="export the float twin (selector decisions in the graph) to ONNX")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--config", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_export_onnx)

    p = sub.add_parser("demo", help="quantise the committed digits model and compare int16 with float")
    p.add_argument("--out", default="build/demo", help="where the package, JSON and plot go (default build/demo)")
    p.set_defaults(func=cmd_demo)
