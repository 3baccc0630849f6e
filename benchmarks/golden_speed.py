"""Images per second of the bit-exact golden DeiT-T forward and of the float32 twin, measured
side by side in one run (same images, same machine state). Last line:
`golden/float32 speed ratio: X` (target X >= 0.5).

    .venv/bin/python benchmarks/golden_speed.py [--config deit-tiny] [--batch 16] [--repeats 3]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from golden.config import load_config  # noqa: E402
from golden.random_model import random_images, random_model  # noqa: E402
from quant.calibrate import calibrate, quantize_images  # noqa: E402


def best_rate(fn, n_images: int, repeats: int) -> float:
    fn()  # warm-up (tables, caches, allocator)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n_images / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="deit-tiny")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    cfg = load_config(a.config).model
    imgs = random_images(cfg, a.batch + 4, seed=0)
    model = random_model(cfg, seed=0, balance_with=imgs[:4] if cfg.stages else None)
    q = calibrate(model, imgs[:4])
    x = imgs[4:]
    xq = quantize_images(x, q)
    print(f"{cfg.name}: batch {a.batch}, torch threads {torch.get_num_threads()}, best of {a.repeats}")
    with torch.no_grad():
        golden = best_rate(lambda: q(xq), a.batch, a.repeats)
        fl = best_rate(lambda: model(x), a.batch, a.repeats)
    print(f"golden int16 (bit-exact): {golden:8.2f} images/s")
    print(f"float32 twin:             {fl:8.2f} images/s")
    print(f"golden/float32 speed ratio: {golden / fl:.3f}")


if __name__ == "__main__":
    main()
