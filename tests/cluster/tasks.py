"""Module-level task functions for the executor tests (workers import them by name)."""
from __future__ import annotations

import os
import time
from pathlib import Path

from base.errors import UsageError


def square(x):
    """(x, x^2, pid) after a delay that makes later tasks finish first."""
    k, delay = x
    time.sleep(delay)
    return k, k * k


def die_once(arg):
    """Kills its own worker process the first time it runs (a marker file remembers it)."""
    marker, k = arg
    m = Path(marker)
    if not m.exists():
        m.write_text("died")
        os._exit(17)
    return k * 10


def always_die(_):
    os._exit(9)


def bad_input(k):
    if k == 2:
        raise UsageError(f"task {k}: bad input, fix it")
    return k


# ------------------------------------------------------------------ sweep: a stand-in cost model
class FakeEstimate:
    """The attributes of sim.report.PerfEstimate, from a formula the tests can check."""

    def __init__(self, cycles, latency_ms, dsp, bram36, fits, why):
        self.cycles, self.latency_ms, self.dsp, self.bram36 = cycles, latency_ms, dsp, bram36
        self.fits, self.why = fits, why


def fake_estimate(model, hw, keep=None):
    cycles = 50_000_000 // hw.macs + 1000 * hw.n_max // hw.axi_ports
    if keep:
        cycles = int(cycles * keep[0])
    dsp = hw.macs + 10 * hw.mac_rows
    bram = hw.n_max * hw.d_max / 4096 + hw.axi_ports * 2.5
    why = [f"DSP48E2 {dsp} > 2520 of the XCZU9EG"] if dsp > 2520 else []
    return FakeEstimate(cycles, cycles / (hw.clock_mhz * 1e3), dsp, bram, not why, why)


# ------------------------------------------------------------------ regress: a group that mismatches
def failing_group(cases):
    from sim.regress import CaseResult
    out = []
    for c in cases:
        r = CaseResult(c.index, c.hw.name, c.describe(), compared=100, cycles=[1234])
        if c.index == 1:
            r.bad, r.first = 2, ["image 0 logits at (3,): RTL 5 != golden 7",
                                 "image 0 logits at (4,): RTL 1 != golden 0"]
        out.append(r)
    return out
