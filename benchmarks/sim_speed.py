"""Simulated clock cycles per second of the DeiT block wrapper (attention -> MLP) under Icarus and
Verilator, side by side in one run (mini shapes; no stalls). Build times are printed apart.

    python benchmarks/sim_speed.py [--tokens N] [--config mini]
"""
from __future__ import annotations

import argparse
import time

from rtl_gen.block import BlockEngine, block_weight_stream
from rtl_gen.cli import resolve
from rtl_gen.mlp import tiles_of
from sim.models import block_input, calibrated
from sim.runner import run_stream


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="mini")
    ap.add_argument("--tokens", type=int, default=8, help="runtime N (Icarus is slow: keep it small)")
    args = ap.parse_args()
    cfg, hw = resolve(args.config)
    q, imgs = calibrated(cfg.model, 0, 2)
    blk = q.blocks[0]
    x = block_input(q, imgs, 0)[: args.tokens]
    n = len(x)
    rows = []
    for sim in ("icarus", "verilator"):
        def run(tag):
            t0 = time.perf_counter()
            r = run_stream(BlockEngine.from_block(blk, hw), f"bench_block_{cfg.model.name}", {"i_x": tiles_of(x, hw.mac_rows),
                           "i_w": block_weight_stream(blk, hw.mac_cols)},
                           {"o_y": -(-n // hw.mac_rows) * cfg.model.embed_dim}, static={"n": n}, stall=0.0, sim=sim, tag=tag)
            return r, time.perf_counter() - t0
        first = 0.0
        if sim == "verilator":             # build once (C++ compile), then time a cached run
            _, first = run("warm")
        r, dt = run("timed")               # Icarus compiles in about a second: included
        rows.append((sim, r, dt, first - dt if first else 0.0))
    print(f"block engine {cfg.model.name}, hardware {hw.name} ({hw.mac_rows}x{hw.mac_cols}), N={n}")
    print(f"{'simulator':10s} {'cycles':>9s} {'clocked s':>10s} {'cycles/s':>10s} {'run s':>8s} {'build s':>8s}")
    for sim, r, dt, build in rows:
        print(f"{sim:10s} {r.cycles:9d} {r.wall_s:10.1f} {r.cycles / r.wall_s:10.0f} {dt:8.1f} {max(build, 0):8.1f}")
    ic, vl = (r.cycles / r.wall_s for _, r, _, _ in rows)
    print(f"verilator / icarus cycles per second: {vl / ic:.1f}x  (cocotb testbench included; 'run s' adds "
          f"process start-up and Python set-up)")


if __name__ == "__main__":
    main()
