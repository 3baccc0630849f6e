"""Whole-accelerator runs: a compiled image (golden.compiler.Image) on the generated top
(rtl_gen/top.py) in cocotb (sim/tb_accel.py), compared by == with the package's golden model
and with the interpreter of the image.

    runs = run_accel(img, [x0, x1], pause=0.1)      # one simulation, several images
    report = compare_runs(img, [x0, x1], runs)      # vs the interpreter: logits, kept counts, masks, checkpoints
    v = verify(q, img, [x0, x1], runs)              # vs the golden model too; v.exact, v.locate()

Bit-exact means equal to the golden model (golden.network.QModel) of the package the image was
compiled from: an image whose bytes were edited (and its hash recomputed) runs "correctly" on
the RTL, equal to its own interpreter, and is still wrong. The interpreter stays as the locator:
RTL != interpreter is a hardware bug; RTL == interpreter != golden model is a compiler bug or an
image that does not match its package.

Unwritten storage must not reach a result: on Icarus (4-state) the bench stops at the first
output that is X or Z where it counts (`watched_outputs`), and the run reports it as
`undefined`; on Verilator `x_seed` starts every register and memory without an initial value
random instead of zero. Either way the whole result region is compared byte for byte with the
interpreter's, padding included.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from amaranth.lib import wiring

from base import settings
from golden import isa
from golden.compare import Comparison
from golden.interp import Machine, Results, read_results
from rtl_gen.host.axi import CHANNELS
from rtl_gen.host.regmap import regmap
from rtl_gen.top import Accelerator, module_name

from .runner import run_bench

BASE = 0x40000               # a non-zero program base: every address is relative to it


@dataclass
class AccelRun:
    hung: bool
    error: str
    error_index: int
    cycles: int
    kept_regs: list
    results: object           # golden.interp.Results read from the RTL's DDR
    reads: dict
    writes_outside: int
    wall_s: float
    ops: list = field(default_factory=list)     # [descriptor index, start cycle, end cycle] (ops=True)
    result_bytes: bytes = b""                   # the whole result region as the RTL left it
    undefined: str = ""                         # the undefined output that stopped the simulation


def watched_outputs(top) -> list[list]:
    """[output port, the VALID that qualifies it or None] for every output of `top`: an AXI
    payload counts while its channel's VALID is high; VALID, READY and other outputs always."""
    out = []
    for path, member in top.signature.members.flatten():
        if not member.is_port or member.flow != wiring.Out:
            continue
        *bus, name = [str(p) for p in path]
        channel = next((c for c in CHANNELS if name.startswith(c)), None) if bus else None
        qualified = channel is not None and name not in (f"{channel}valid", f"{channel}ready")
        port = "__".join([*bus, name])
        out.append([port, "__".join([*bus, f"{channel}valid"]) if qualified else None])
    return out


def _mem_size(n: int) -> int:
    return 1 << max(20, (n - 1).bit_length())


def run_accel(img, inputs, *, pause: float = 0.1, seed: int = 0, sim: str | None = None, pokes=None,
              poison=None, timeout: int = 20_000_000, tag: str | None = None, top=None,
              ops: bool = False, x_seed: int | None = None) -> list[AccelRun]:
    """Run every input image (int16 [in_chans, H, W]) on the RTL, one after the other in one
    simulation. `pokes`: per run, (offset, bytes) written over the image first (error tests);
    `poison`: per run, (lo, hi) offset ranges whose accesses the DDR model answers with SLVERR;
    `x_seed`: Verilator starts registers and memories random (sim.runner.run_bench). Runs after
    one that hung or met an undefined output are missing from the list."""
    hw = img.hw
    name = module_name(hw)
    work = settings.BUILD.resolve() / "sim" / "images"
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"{img.manifest['sha256'][:16]}.bin"
    if not path.exists():
        tmp = Path(tempfile.mkstemp(dir=work)[1])
        tmp.write_bytes(img.data)
        tmp.replace(path)
    rm = regmap(hw)
    regs = {r.name: r.offset for r in rm}
    reg = img.regions
    runs = []
    for k, x in enumerate(inputs):
        writes = [] if x is None else [[off, b.hex()] for off, b in img.input_runs(x)]
        poke = [[off, bytes(b).hex()] for off, b in (pokes[k] if pokes else [])]
        runs.append({"writes": writes, "pokes": poke, "timeout": timeout, "ops": ops,
                     "poison": [list(r) for r in (poison[k] if poison else [])]})
    spec = {"image": str(path), "base": BASE, "mem_size": _mem_size(BASE + len(img.data)), "regs": regs,
            "stages": img.manifest["stages"], "ports": hw.axi_ports, "pause": pause, "seed": seed,
            "regions": {"header": [0, isa.HEADER_BYTES], "program": [reg["program"][0], sum(reg["program"])],
                        "stream": [reg["stream"][0], sum(reg["stream"])]},
            "results": [reg["results"][0], sum(reg["results"])], "runs": runs}
    top = top or Accelerator(hw)
    sim = sim or settings.SIM_ENGINE
    if sim == "icarus":
        spec["watch"] = watched_outputs(top)
    res = run_bench(top, name, "sim.tb_accel", spec, seed=seed, sim=sim, x_seed=x_seed,
                    tag=tag or f"img{img.manifest['sha256'][:8]}_n{len(inputs)}_p{int(pause * 100)}_s{seed}"
                    + (f"_x{x_seed}" if x_seed is not None else ""))
    return [_run_of(img, r) for r in res["runs"]]


def _run_of(img, r: dict) -> AccelRun:
    if "undefined" in r:
        u = r["undefined"]
        where = f" (descriptor {u['descriptor']})" if u["descriptor"] is not None else ""
        return AccelRun(False, "", 0, 0, [], None, {}, 0, 0.0,
                        undefined=f"{u['output']} = {u['value']} at cycle {u['cycle']:,}{where}")
    lo = img.regions["results"][0]
    raw = bytes.fromhex(r["results"])
    ddr = bytearray(len(img.data))
    ddr[lo:lo + len(raw)] = raw
    results = read_results(img.manifest, ddr) if r["error_code"] == 0 and not r["hung"] else None
    return AccelRun(r["hung"], isa.ERRORS.get(r["error_code"], ("?",))[0],
                    r["error_index"] - (1 << 32) if r["error_index"] >> 31 else r["error_index"],
                    r["cycles"], r["kept"], results, r["reads"], r["writes_outside"], r["wall_s"],
                    r.get("ops", []), raw)


def expected(img, x, pokes=()):
    """The interpreter's results, error (None) and DDR for one input (with `pokes` applied)."""
    ddr = img.with_input(x)
    for off, b in pokes:
        ddr[off:off + len(b)] = b
    m = Machine(img.hw, ddr)
    try:
        m.run()
    except isa.ProgramError as e:
        return None, e, m.ddr
    return read_results(img.manifest, m.ddr), None, m.ddr


def compare_runs(img, inputs, runs, pokes=None, wants=None) -> Comparison:
    """RTL vs interpreter by == on every logit, kept count, mask bit and checkpoint element, and
    on every byte of the result region (padding of partial tiles and beats included); also the
    access accounting: header, program and stream read exactly once, nothing written outside
    the result region. An image without a run (the simulation stopped before it) fails.
    `wants`: the interpreter's `expected` per input, if known."""
    c = Comparison(want_name="interpreter")
    for k, (x, r) in enumerate(zip(inputs, runs)):
        want, err, want_ddr = wants[k] if wants else expected(img, x, pokes[k] if pokes else ())
        if r.undefined:
            c.fail(f"image {k}", f"undefined value (X) on an output: {r.undefined}")
            continue
        if r.hung:
            c.fail(f"image {k}", "hung (no interrupt before the timeout)")
            continue
        if err is not None or r.error != "OK":
            got_e = (r.error, r.error_index)
            want_e = ("OK", 0) if err is None else (err.name, err.index)
            c.add(f"image {k} error", [isa.ERROR_CODES.get(got_e[0], -1), got_e[1]],
                  [isa.ERROR_CODES[want_e[0]], want_e[1]])
            continue
        g = r.results
        _compare_outputs(c, f"image {k}", g, want)
        c.add(f"image {k} KEPT registers", r.kept_regs, want.kept)
        for b_ix in want.checkpoints:
            c.add(f"image {k} block {b_ix}", g.checkpoints.get(b_ix, np.zeros((0,))), want.checkpoints[b_ix])
        hdr = isa.decode_header(img.data[:isa.HEADER_BYTES])
        c.add(f"image {k} bytes read (header, program, stream)",
              [r.reads["header"], r.reads["program"], r.reads["stream"]],
              [isa.HEADER_BYTES, hdr["n_desc"] * isa.DESC_BYTES, hdr["stream_len"]])
        c.add(f"image {k} bytes written outside the result region", [r.writes_outside], [0])
        lo, n = img.regions["results"]
        c.add(f"image {k} result region bytes", np.frombuffer(r.result_bytes, np.uint8),
              np.frombuffer(bytes(want_ddr[lo:lo + n]), np.uint8))
    for k in range(len(runs), len(inputs)):
        c.fail(f"image {k}", f"not run: the simulation stopped at image {len(runs) - 1}")
    return c


def _compare_outputs(c: Comparison, what: str, got: Results, want: Results) -> None:
    """What a run delivers: logits, kept count per stage, keep mask per stage (bit per candidate)."""
    c.add(f"{what} logits", got.logits, want.logits)
    c.add(f"{what} kept", got.kept, want.kept)
    if len(got.masks) != len(want.masks):
        c.fail(f"{what} masks", f"{len(got.masks)} stages vs {len(want.masks)}")
    for s, (a, b) in enumerate(zip(got.masks, want.masks)):
        c.add(f"{what} mask {s}", a, b)


def golden_results(q, inputs) -> list[Results]:
    """The golden model's outputs for each input image (int16 [in_chans, H, W]), in the form the
    hardware stores them (keep masks as one bit per candidate of the stage)."""
    logits, kept, rec, masks = q(np.stack([np.asarray(x) for x in inputs]), threads=settings.THREADS,
                                 return_record=True, return_masks=True)
    out = []
    for i in range(len(inputs)):
        bits = []
        for s in range(q.cfg.stages):
            m = np.zeros(len(rec.cand_ids[i][s]), dtype=bool)
            m[masks[i][s]] = True
            bits.append(m)
        out.append(Results(logits[i], kept[i], bits, {}))
    return out


@dataclass
class Verdict:
    """A run checked three ways (module docstring): `golden` RTL vs the golden model (what
    bit-exact means: logits, kept counts, keep masks), `program` RTL vs the interpreter (also
    every block with --checkpoints, the KEPT registers, error codes and the DDR accounting),
    `compiled` the interpreter vs the golden model (which of the two a mismatch comes from)."""
    golden: Comparison
    program: Comparison
    compiled: Comparison

    @property
    def exact(self) -> bool:
        return self.golden.bad == 0 and self.program.bad == 0

    @property
    def compared(self) -> int:
        return self.golden.compared + self.program.compared

    @property
    def bad(self) -> int:
        return self.golden.bad + self.program.bad

    @property
    def first(self) -> list:
        return self.golden.first[:4] + self.program.first[:8 - min(4, len(self.golden.first))]

    def locate(self) -> str:
        """Where a mismatch comes from ('' when bit-exact)."""
        if self.exact:
            return ""
        if self.program.bad and not self.compiled.bad:
            return ("the RTL differs from the program it ran, which computes the golden model: a hardware (RTL) "
                    "bug; rerun with --checkpoints to see the first block that differs")
        if not self.program.bad:
            return ("the RTL ran the image's program faithfully (RTL == interpreter), but that program does not "
                    "compute the package's golden model (interpreter != golden): the image does not match the "
                    "package (edited, or compiled by another version: compile it again) or the compiler has a bug")
        return ("the RTL differs from the program it ran, and the program from the golden model: compile the image "
                "again from the package; if the RTL still differs, it is a hardware (RTL) bug")


def verify(q, img, inputs, runs) -> Verdict:
    """Check RTL runs of `img` (compiled from the package whose golden model is `q`) on the
    input images: see Verdict."""
    interpreted = [expected(img, x) for x in inputs]
    golden = Comparison(want_name="golden model")
    program = compare_runs(img, inputs, runs, wants=interpreted)
    compiled = Comparison(got_name="interpreter", want_name="golden model")
    for k, (want, (interp, err, _), r) in enumerate(zip(golden_results(q, inputs), interpreted, runs)):
        if r.results is None:
            golden.fail(f"image {k}", "no results: " + ("hung" if r.hung else f"error {r.error}"))
        else:
            _compare_outputs(golden, f"image {k}", r.results, want)
        if interp is None:
            compiled.fail(f"image {k}", f"the interpreter stops with error {err.name}")
        else:
            _compare_outputs(compiled, f"image {k}", interp, want)
    return Verdict(golden, program, compiled)
