"""Subcommands of the quantiser: `spvit check`, `spvit demo`."""
from __future__ import annotations

import time

from golden.config import load_config


def cmd_check(args) -> int:
    """Golden integer model vs float twin on a random (timm-initialised, selector-balanced) model."""
    from golden.random_model import random_images, random_model

    from .calibrate import calibrate
    from .selfcheck import compare, print_report
    cfg = load_config(args.config)
    imgs = random_images(cfg.model, args.calib + args.images, seed=args.seed)
    model = random_model(cfg.model, seed=args.seed, balance_with=imgs[:args.calib])
    t = time.time()
    q = calibrate(model, imgs[:args.calib], cfg.fixed_point)
    print(f"{cfg.model.name}: random weights (seed {args.seed}), calibrated on {args.calib} images "
          f"in {time.time() - t:.1f} s, compared on {args.images}")
    print_report(compare(model, q, imgs[args.calib:]))
    return 0


def cmd_demo(args) -> int:
    args.config, args.calib, args.images, args.seed = "mini", 16, 32, 0
    return cmd_check(args)


def register(sub) -> None:
    p = sub.add_parser("check", help="golden integer model vs float twin on random weights")
    p.add_argument("--config", default="mini", help="preset name or TOML file (default mini)")
    p.add_argument("--images", type=int, default=8, help="images to compare on")
    p.add_argument("--calib", type=int, default=8, help="calibration images")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("demo", help="the quick-start demo on the built-in mini model")
    p.set_defaults(func=cmd_demo)
