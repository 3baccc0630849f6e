"""Runner glue: Amaranth component -> Verilog -> cocotb run on Icarus or Verilator.

    res = run_stream(component, "recip_k46", {"i_d": [3, 7]}, {"o_q": 2}, stall=0.3, seed=1)
    res.outputs["o_q"]   # unpacked payloads in output order
    res.cycles           # clock cycles from reset release to the last output transfer

Vectors go to the testbench (sim.tb_stream) through a JSON file; results come back the same
way. Waveforms only with SPVIT_WAVES=1 (settings.WAVES). Builds live under SPVIT_BUILD/sim/.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import sys
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path

from cocotb_tools.runner import get_results, get_runner

from base import settings
from base.errors import SimulationError
from base.outputs import CacheLock
from rtl_gen.tools.verilog import to_verilog, write_text, write_verilog  # noqa: F401 (re-exported)

from .payload import pack, unpack

SIMULATORS = ("icarus", "verilator")
# Amaranth output idioms Verilator warns about under -Wall: unused bits of wide intermediates,
# width extension/truncation of constants, generated case statements without default, comb
# feedback through struct members (UNOPTFLAT), registers declared with their reset value and
# assigned in processes (PROCASSINIT), one file per top module name (DECLFILENAME). None
# affects behaviour; tests/rtl_gen/test_lint.py checks nothing else is reported.
LINT_WAIVERS = ["-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-UNUSEDSIGNAL", "-Wno-CASEINCOMPLETE",
                "-Wno-UNOPTFLAT", "-Wno-PROCASSINIT", "-Wno-DECLFILENAME"]
VERILATOR_WAIVERS = ["-Wno-fatal"] + LINT_WAIVERS
# Verilator normally starts every register and memory without an initial value at zero; these
# make them random (seeded at run time, random_init_plusargs), where Icarus would show X: a
# result that changes with the seed depends on storage nothing wrote.
RANDOM_INIT_BUILD = ["--x-initial", "unique", "--x-assign", "unique"]


_write_text = write_text


_INIT_TRIGGER = re.compile(r"reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+ ) = 0;")


def icarus_compatible(text: str) -> str:
    """Yosys triggers every `always @*` block at time 0 through a `reg trigger = 0` that Icarus
    11 initialises without an event, leaving blocks whose inputs never change at X. For Icarus
    runs only, the trigger gets an explicit X -> 0 change after time-0 setup (`initial #0`)."""
    return _INIT_TRIGGER.sub(lambda mo: f"reg {mo.group(1)};\n  initial #0 {mo.group(1)} = 1'b0;", text)


def stream_shape(component, port: str):
    try:
        return component.signature.members[port].signature.members["payload"].shape
    except KeyError:
        raise ValueError(f"{type(component).__name__} has no stream port {port!r}; ports: "
                         f"{', '.join(component.signature.members)}") from None


@dataclass
class SimResult:
    outputs: dict
    cycles: int
    first_in: int | None
    last_out: int | None
    sim: str
    wall_s: float = 0.0          # wall time of the clocked part of the run (simulator + testbench)
    consumed: dict | None = None  # input port -> beats the design took
    extra: dict | None = None     # output port -> beats past the wanted ones (run_stream's drain)


def run_stream(component, name: str, inputs: dict, outputs: dict, *, static: dict | None = None,
               stall: float = 0.25, seed: int = 0, sim: str | None = None, timeout: int = 2_000_000,
               tag: str = "run", deps: dict | None = None, drain: int = 0,
               port_stall: dict | None = None) -> SimResult:
    """Simulate `component` (top module `name`) with the generic stream testbench.

    inputs: port -> list of payload values; outputs: port -> number of payloads to collect;
    static: plain input port -> value held from reset on; port_stall: port -> stall probability
    replacing `stall` on that port; deps: Verilog module name -> component
    for Verilog modules the top instantiates without containing them; drain: cycles to keep taking
    outputs after the wanted ones (SimResult.extra counts what still came out)."""
    spec = {
        "inputs": {k: [pack(stream_shape(component, k), v) for v in vals] for k, vals in inputs.items()},
        "outputs": {k: int(n) for k, n in outputs.items()},
        "static": dict(static or {}), "stall": stall, "port_stall": dict(port_stall or {}), "seed": seed,
        "timeout": timeout, "drain": drain,
    }
    res = run_bench(component, name, "sim.tb_stream", spec, seed=seed, sim=sim, tag=tag, deps=deps)
    got = {k: [unpack(stream_shape(component, k), v) for v in vals] for k, vals in res["outputs"].items()}
    return SimResult(got, res["cycles"], res["first_in"], res["last_out"], res["sim"], res.get("wall_s", 0.0),
                     res.get("consumed"), res.get("extra"))


def run_bench(component, name: str, test_module: str, spec: dict, *, seed: int = 0, sim: str | None = None,
              tag: str = "run", deps: dict | None = None, x_seed: int | None = None) -> dict:
    """Build `component` (top module `name`) and run the cocotb tests of `test_module` on it.

    `spec` reaches the bench as a JSON file (path in SPVIT_TB_VECTORS); the bench writes its
    results as JSON to SPVIT_TB_RESULTS, returned here with "sim" added. `x_seed` (Verilator, a
    positive seed): every register and memory without an initial value starts random instead
    of zero (RANDOM_INIT_BUILD and random_init_plusargs); Icarus tracks such values as X
    instead. A build that fails, a simulator that crashes, a failed cocotb test or a missing
    result file raise SimulationError naming the log."""
    sim = sim or settings.SIM
    if sim not in SIMULATORS:
        raise ValueError(f"unknown simulator {sim!r}; use one of {SIMULATORS}")
    random_init = x_seed is not None and sim == "verilator"
    texts = {name: to_verilog(component, name)}
    texts.update({k: to_verilog(c, k) for k, c in (deps or {}).items()})
    # one build directory per design text, so that designs sharing a name keep their builds
    opt = ""
    if sim == "verilator":
        opt = settings.VERILATOR_OPT + " public-depth-1" + (" x-unique" if random_init else "")
    h = hashlib.sha256((opt + "".join(texts[k] for k in sorted(texts))).encode()).hexdigest()[:10]
    root = settings.BUILD.resolve() / "sim" / sim / f"{name}-{h}"
    if sim == "icarus":
        texts = {k: icarus_compatible(t) for k, t in texts.items()}
    run_dir = root / tag
    # Processes sharing SPVIT_BUILD (pytest -n, a regress pool) take turns: one run per run
    # directory at a time, one build per design (Icarus rebuilds on every run, so its run holds the
    # build lock too).
    with CacheLock(run_dir, "run"):
        vec, out = run_dir / "vectors.json", run_dir / "results.json"
        vec.write_text(json.dumps(spec))
        out.unlink(missing_ok=True)
        _venv_tools_on_path()
        args = VERILATOR_WAIVERS + (RANDOM_INIT_BUILD if random_init else []) if sim == "verilator" else []
        log = io.StringIO()
        env_make = os.environ.get("MAKEFLAGS")
        if sim == "verilator":      # a command-line style override of verilated.mk's OPT_FAST (-Os)
            os.environ["MAKEFLAGS"] = f"OPT_FAST={settings.VERILATOR_OPT} " + (env_make or "")
        step, step_log = "build", root / "build.log"
        build_lock = CacheLock(root)
        try:
            runner = get_runner(sim)                # (checks that the simulator is on PATH)
            if sim == "verilator":
                _public_ports_only(runner)
            with redirect_stdout(log), build_lock:
                sources = [_write_text(root / f"{k}{'.icarus' if sim == 'icarus' else ''}.v", t)
                           for k, t in texts.items()]
                runner.build(sources=sources, hdl_toplevel=name, build_dir=root / "build", build_args=args,
                             timescale=("1ns", "1ps"), waves=settings.WAVES, always=sim == "icarus",
                             log_file=step_log)
                if sim == "verilator":
                    build_lock.release()            # the model stays as built; runs may overlap
                step, step_log = "simulation", run_dir / "sim.log"
                xml = runner.test(test_module=test_module, hdl_toplevel=name, build_dir=root / "build",
                                  test_dir=run_dir, waves=settings.WAVES, seed=seed,
                                  plusargs=random_init_plusargs(x_seed) if random_init else [],
                                  extra_env={"SPVIT_TB_VECTORS": str(vec), "SPVIT_TB_RESULTS": str(out)},
                                  log_file=step_log)
        except (SystemExit, RuntimeError) as e:     # a missing tool; a command that failed or crashed
            raise _failure(sim, step, name, e, step_log) from None
        finally:
            if env_make is None:
                os.environ.pop("MAKEFLAGS", None)
            else:
                os.environ["MAKEFLAGS"] = env_make
        try:
            n, failed = get_results(xml)
        except RuntimeError as e:                   # the simulator ended without its results file
            raise _failure(sim, "simulation", name, e, step_log) from None
        if failed or not out.exists():
            why = "its cocotb test failed" if failed else "the bench wrote no results"
            raise _failure(sim, "simulation", name, why, step_log)
        return {**json.loads(out.read_text()), "sim": sim}


def random_init_plusargs(x_seed: int) -> list[str]:
    """Run-time arguments of a RANDOM_INIT_BUILD model: random initial values from `x_seed`
    (Verilator takes seed 0 as "pick one", so seeds start at 1)."""
    if not isinstance(x_seed, int) or x_seed < 1:
        raise ValueError(f"x_seed must be a positive integer (got {x_seed!r})")
    return ["+verilator+rand+reset+2", f"+verilator+seed+{x_seed}"]


def _failure(sim: str, step: str, name: str, why, log: Path) -> SimulationError:
    return SimulationError(f"{sim} {step} of {name} failed ({why}{_reason(log)}); log: {log}")


_EXCEPTION_LINE = re.compile(r"^\s*[A-Za-z_][\w.]*(Error|Exception)\b.*$")


def _reason(log: Path) -> str:
    """'; <the last exception line of the log>' (the bench's or the simulator's), or ''."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    found = [ln.strip() for ln in lines if _EXCEPTION_LINE.match(ln)]
    return f": {found[-1][:300]}" if found else ""


run_cocotb = run_bench          # the name the DMA benches use


def _venv_tools_on_path() -> None:
    """tools/install.sh puts the `verilator` wrapper (and cocotb's tools) in the venv's bin/;
    put that first on PATH so `.venv/bin/spvit simulate` works without activating the venv."""
    bindir = str(Path(sys.executable).parent)
    if (Path(bindir) / "verilator").exists() and not os.environ.get("PATH", "").startswith(bindir):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


def _public_ports_only(runner) -> None:
    """cocotb builds Verilator models with --public-flat-rw (every signal visible to VPI), which
    keeps Verilator from optimising signals away; the stream testbench only touches top-level
    ports, so --public-depth 1 suffices (DeiT-T block: ~2.7x faster simulation). Wraps the
    runner's (private) build-command method; a cocotb without it keeps its default."""
    orig = getattr(runner, "_build_command", None)
    if orig is None:
        return

    def build_command():
        cmds = orig()
        for c in cmds:
            if isinstance(c, list) and "--public-flat-rw" in c:
                i = c.index("--public-flat-rw")
                c[i:i + 1] = ["--public-depth", "1"]
        return cmds
    runner._build_command = build_command


def digest(*parts) -> str:
    """Short stable hash of a configuration (names builds and manifests)."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:12]
