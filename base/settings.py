"""Settings read from the environment, in one place.

SPVIT_SIM      simulator for cocotb runs of primitives: icarus | verilator (default icarus)
SPVIT_SIM_ENGINE  simulator for engine and block runs (default verilator: ~30x faster there)
SPVIT_WAVES    1 to write waveforms (default off)
SPVIT_BUILD    build directory for generated Verilog and simulator builds (default build/)
SPVIT_SLOW     1 to run the slow (DeiT-shaped) tests (default off; CI sets what it needs)
SPVIT_THREADS  worker threads of the golden model's batch split (default: the CPU count)
SPVIT_MATMUL   exact engine of the golden model's products with constant weights: auto (default:
               time each engine once per shape class at first use, keep the fastest), int8
               (torch._int_mm, fast with VNNI-class instructions) or float64 (BLAS)
SPVIT_VERILATOR_OPT  g++ optimisation of Verilator's model code (default -O1: a DeiT-T block
               compiles in ~4 min instead of ~11 min with Verilator's -Os, see docs/rtl.md)
OMP_NUM_THREADS  torch's thread count; unset: the small-model commands use one thread (quant.single_thread)
RAY_ADDRESS    the Ray cluster that `--ray` (without an address) joins; unset: a local Ray
               (docs/cluster.md)

Importing this module never fails: a bad value is recorded in PROBLEMS and its setting keeps the
default; `check()` raises the UsageError that names every bad value (`spvit` calls it first, so
a bad SPVIT_* value is exit status 2 before any work).
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import UsageError

PROBLEMS: list[str] = []         # one message per bad value, for check()


def _choice(var: str, default: str, options: tuple) -> str:
    v = os.environ.get(var, default)
    if v not in options:
        PROBLEMS.append(f"{var} must be one of {', '.join(options)} (got {v!r}); fix or unset it")
        return default
    return v


def _count(var: str) -> int:
    v = os.environ.get(var, "0").strip() or "0"
    if not v.isdigit():
        PROBLEMS.append(f"{var} must be a non-negative integer (0: the CPU count), got {v!r}; fix or unset it")
        v = "0"
    return int(v) or (os.cpu_count() or 1)


SIM = os.environ.get("SPVIT_SIM", "icarus")
SIM_ENGINE = os.environ.get("SPVIT_SIM_ENGINE", "verilator")
WAVES = os.environ.get("SPVIT_WAVES", "0") == "1"
BUILD = Path(os.environ.get("SPVIT_BUILD", "build"))
SLOW = os.environ.get("SPVIT_SLOW", "0") == "1"
THREADS = _count("SPVIT_THREADS")
VERILATOR_OPT = os.environ.get("SPVIT_VERILATOR_OPT", "-O1")
MATMUL = _choice("SPVIT_MATMUL", "auto", ("auto", "int8", "float64"))
RAY_ADDRESS = os.environ.get("RAY_ADDRESS", "")
OMP_NUM_THREADS = os.environ.get("OMP_NUM_THREADS")


def check() -> None:
    """Raise a UsageError naming every bad value read above (none: return)."""
    if PROBLEMS:
        raise UsageError("; ".join(PROBLEMS))
