"""Golden int16 model against the float twin for every token-selection scheme on random DeiT-T
shaped models (`spvit check`'s models: timm-initialised, selectors balanced), per seed and image
count: the logits SQNR, how many images had a decision flip (a token kept by one model and not by
the other, at the first stage where their kept sets differ), and the logits SQNR of the images
without one. With `--flips`, each flip of a top-k scheme (DynamicViT, EViT, Evo-ViT): its stage,
the float score gap of the swapped pair, the integer model's error on that difference, the
median gap between neighbouring float scores around the keep boundary and the rms error of the
integer scores (all in the float twin's score units). docs/arithmetic.md, "EViT and Evo-ViT:
decision flips", quotes its output.

    .venv/bin/python benchmarks/scheme_fidelity.py [--presets spvit-deit-tiny,...] [--seeds 0,1,2,3,4]
                                                   [--images 8,16] [--calib 8] [--flips]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from golden.config import load_config  # noqa: E402
from golden.random_model import random_images, random_model  # noqa: E402
from quant.calibrate import CALIBRATION_METHODS, calibrate  # noqa: E402
from quant.selfcheck import logits_and_flips, pooled_sqnr  # noqa: E402

PRESETS = ("spvit-deit-tiny", "dynamicvit-deit-tiny", "evit-deit-tiny", "evovit-deit-tiny")


def measure(preset: str, seed: int, images: int, calib: int, method: str = "maxabs", headroom: int | None = None):
    """One `spvit check --config preset --seed seed --images images --calib calib` model:
    logits of both models and the decision flips (quant.selfcheck.Fidelity). `method`,
    `headroom`: another calibration (quant.calibrate; FixedPointConfig.headroom_bits)."""
    cfg = load_config(preset)
    fp = cfg.fixed_point if headroom is None else dataclasses.replace(cfg.fixed_point, headroom_bits=headroom)
    imgs = random_images(cfg.model, calib + images, seed=seed)
    model = random_model(cfg.model, seed=seed, balance_with=imgs[:calib])
    q = calibrate(model, imgs[:calib], fp, method)
    return logits_and_flips(model, q, imgs[calib:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--images", default="8,16", help="image counts, one run each (as spvit check --images)")
    ap.add_argument("--calib", type=int, default=8)
    ap.add_argument("--method", choices=CALIBRATION_METHODS, default="maxabs", help="calibration (default maxabs)")
    ap.add_argument("--headroom-bits", type=int, default=None, help="activation headroom (default: the preset's)")
    ap.add_argument("--flips", action="store_true", help="print every flip of a top-k scheme")
    args = ap.parse_args()
    torch.set_num_threads(1)
    counts = [int(n) for n in args.images.split(",")]
    for preset in args.presets.split(","):
        print(f"{preset} (calibration: {args.method}, {args.calib} images"
              + ("" if args.headroom_bits is None else f", headroom {args.headroom_bits} bits") + ")")
        print("  seed  images  logits SQNR  images with a flip  SQNR without flips  time")
        runs = []
        for seed in (int(s) for s in args.seeds.split(",")):
            for n in counts:
                t = time.time()
                r = measure(preset, seed, n, args.calib, args.method, args.headroom_bits)
                runs.append(r)
                print(f"  {seed:4d}  {n:6d}  {r.logits_sqnr:8.1f} dB  {len(r.flips):9d} of {n:<4d}  "
                      f"{r.flip_free_sqnr:12.1f} dB  {time.time() - t:5.1f} s")
                for f in r.flips if args.flips else ():
                    print("        " + f.describe())
        n_img = sum(len(r.logits_float) for r in runs)
        n_flip = sum(len(r.flips) for r in runs)
        pooled = pooled_sqnr(runs)
        print(f"  {preset}: worst run {min(r.logits_sqnr for r in runs):.1f} dB, all {n_img} images pooled "
              f"{pooled:.1f} dB; images with a flip {n_flip} ({100 * n_flip / n_img:.1f}%); "
              f"runs >= 40 dB: {sum(r.logits_sqnr >= 40 for r in runs)} of {len(runs)}")


if __name__ == "__main__":
    main()
