"""Settings read from the environment, in one place.

SPVIT_SIM      simulator for cocotb runs of primitives: icarus | verilator (default icarus)
SPVIT_SIM_ENGINE  simulator for engine and block runs (default verilator: ~30x faster there)
SPVIT_WAVES    1 to write waveforms (default off)
SPVIT_BUILD    build directory for generated Verilog and simulator builds (default build/)
SPVIT_SLOW     1 to run the slow (DeiT-shaped) tests (default off; CI sets what it needs)
SPVIT_THREADS  worker threads of the golden model's batch split and processes of
               `spvit generate` (default: the CPU count)
SPVIT_VERILATOR_OPT  g++ optimisation of Verilator's model code (default -O1: a DeiT-T block
               compiles in ~4 min instead of ~11 min with Verilator's -Os, see docs/rtl.md)
RAY_ADDRESS    the Ray cluster that `--ray` (without an address) joins; unset: a local Ray
               (docs/cluster.md)
"""
from __future__ import annotations

import os
from pathlib import Path

SIM = os.environ.get("SPVIT_SIM", "icarus")
SIM_ENGINE = os.environ.get("SPVIT_SIM_ENGINE", "verilator")
WAVES = os.environ.get("SPVIT_WAVES", "0") == "1"
BUILD = Path(os.environ.get("SPVIT_BUILD", "build"))
SLOW = os.environ.get("SPVIT_SLOW", "0") == "1"
THREADS = int(os.environ.get("SPVIT_THREADS", "0")) or (os.cpu_count() or 1)
VERILATOR_OPT = os.environ.get("SPVIT_VERILATOR_OPT", "-O1")
RAY_ADDRESS = os.environ.get("RAY_ADDRESS", "")
