"""Simulated clock cycles per second of the DMA stream reader (rtl_gen/host/dma.py) reading from
cocotbext-axi AxiRam models (one per port, no pauses, o_stream always ready), under Icarus and
Verilator, P = 1 and 4 ports of 128 bits, side by side in one run; and cycles per wide beat.

Method: one cocotb run per (simulator, P) builds the DMA, then (1) clocks the idle design for
`--idle` cycles with a single Timer (no Python per cycle: the simulator alone), (2) runs
`--repeat` stream jobs of `--beats` wide beats each; a job is timed from the clock edge that
accepts the command to the rd_done pulse (cocotb awaits only that edge: the only Python per
cycle is AxiRam's). cycles/beat = job cycles / beats (1.0 = one wide beat per cycle; the
difference is the start latency). Time is the simulator process's CPU time around the job
(process_time: the simulator and every cocotb coroutine; insensitive to other processes on a
shared machine), with wall time beside it; the median of `--repeat` jobs is shown with the
range. Verilator's build time is excluded (a warm-up run builds it).

    python benchmarks/dma_speed.py [--beats 16384] [--repeat 3] [--ports 1 4]
"""
from __future__ import annotations

import argparse
import os
import time

from golden.hw import HardwareConfig
from rtl_gen.host.dma import Dma
from sim.runner import run_cocotb

W = 128


def run(sim: str, P: int, beats: int, repeat: int, idle: int, tag: str) -> dict:
    length = beats * P * W // 8
    mem = 1 << max(20, (length - 1).bit_length())
    spec = {"ports": P, "bits": W, "mem_size": mem, "mem_seed": 1, "pause": 0.0, "seed": 1,
            "jobs": [{"idle": idle}] + [{"bench": {"addr": 0, "length": length, "fetch": 0}}] * repeat}
    t0 = time.perf_counter()
    res = run_cocotb(Dma(HardwareConfig(axi_ports=P, axi_bits=W)), f"bench_dma_p{P}", "sim.tb_dma", spec, sim=sim,
                     tag=tag)
    res["total_s"] = time.perf_counter() - t0
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--beats", type=int, default=16384, help="wide beats per timed stream job")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--idle", type=int, default=200_000, help="cycles of the idle-clock baseline")
    ap.add_argument("--ports", type=int, nargs="+", default=[1, 4])
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    print(f"{'simulator':10s} {'P':>2s} {'beats':>7s} {'cycles':>8s} {'cyc/beat':>9s} {'cpu s':>6s} {'wall s':>7s} "
          f"{'cycles/cpu-s':>13s} {'(min..max)':>15s} {'cycles/wall-s':>14s} {'idle cycles/cpu-s':>18s}")
    for sim in ("icarus", "verilator"):
        for P in args.ports:
            if sim == "verilator":
                run(sim, P, 64, 1, 1000, "warm")                # builds the model; not timed
            res = run(sim, P, args.beats, args.repeat, args.idle, "timed")
            idle, jobs = res["jobs"][0], res["jobs"][1:]
            assert all(j["cycles"] == jobs[0]["cycles"] for j in jobs), [j["cycles"] for j in jobs]
            rates = sorted(j["cycles"] / j["cpu_s"] for j in jobs)
            j = sorted(jobs, key=lambda j: j["cycles"] / j["cpu_s"])[len(jobs) // 2]       # the median run
            print(f"{sim:10s} {P:2d} {args.beats:7d} {j['cycles']:8d} {j['cycles'] / args.beats:9.4f} "
                  f"{j['cpu_s']:6.2f} "
                  f"{j['wall_s']:7.2f} {j['cycles'] / j['cpu_s']:13.0f} {rates[0]:7.0f}..{rates[-1]:<7.0f} "
                  f"{j['cycles'] / j['wall_s']:14.0f} {idle['cycles'] / idle['cpu_s']:18.0f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
