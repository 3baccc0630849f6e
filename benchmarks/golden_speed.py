"""Images per second of the bit-exact golden DeiT-T forward and of the float32 twin, measured
side by side in one run (same images, same machine state), and which exact matmul engine the
golden model used (golden/arith.py ENGINES; `--matmul` or SPVIT_MATMUL forces one). Last line:
`golden/float32 speed ratio: X` (target X >= 0.5).

    .venv/bin/python benchmarks/golden_speed.py [--config deit-tiny] [--batch 16] [--repeats 3]
                                                [--matmul auto|int8|float64]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from golden.arith import ENGINES, engine_report, use_engine  # noqa: E402
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
    ap.add_argument("--matmul", choices=("auto",) + ENGINES, help="force an engine (default: SPVIT_MATMUL, auto)")
    a = ap.parse_args()
    if a.matmul:
        use_engine(a.matmul).__enter__()
    cfg = load_config(a.config).model
    imgs = random_images(cfg, a.batch + 4, seed=0)
    model = random_model(cfg, seed=0, balance_with=imgs[:4] if cfg.stages else None)
    q = calibrate(model, imgs[:4])
    x = imgs[4:]
    xq = quantize_images(x, q)
    cores = os.cpu_count() or 1
    print(f"{cfg.name}: batch {a.batch}, best of {a.repeats}, {cores} CPUs")
    rows = []
    for threads in (1, cores):     # one core each, then every core each (the last line)
        torch.set_num_threads(threads)
        with torch.no_grad():
            golden = best_rate(lambda: q(xq, threads=threads), a.batch, a.repeats)
            fl = best_rate(lambda: model(x), a.batch, a.repeats)
        rows.append((threads, golden, fl))
        print(f"{threads} thread(s): golden int16 (bit-exact) {golden:7.2f} images/s, "
              f"float32 twin {fl:7.2f} images/s, ratio {golden / fl:.3f}")
        print(f"  matmul engine: {engine_report()}")
    print(f"golden/float32 speed ratio: {rows[-1][1] / rows[-1][2]:.3f}")


if __name__ == "__main__":
    main()
