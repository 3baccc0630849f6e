"""Whole-accelerator runs: a compiled image (golden.compiler.Image) on the generated top
(rtl_gen/top.py) in cocotb (sim/tb_accel.py), compared with the interpreter by ==.

    runs = run_accel(img, [x0, x1], pause=0.1)      # one simulation, several images
    report = compare_runs(img, [x0, x1], runs)      # mismatches in logits, kept counts, masks, checkpoints
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from base import settings
from golden import isa
from golden.compare import Comparison
from golden.interp import Machine, read_results
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


def _mem_size(n: int) -> int:
    return 1 << max(20, (n - 1).bit_length())


def run_accel(img, inputs, *, pause: float = 0.1, seed: int = 0, sim: str | None = None, pokes=None,
              poison=None, timeout: int = 20_000_000, tag: str | None = None, top=None,
              ops: bool = False) -> list[AccelRun]:
    """Run every input image (int16 [in_chans, H, W]) on the RTL, one after the other in one
    simulation. `pokes`: per run, (offset, bytes) written over the image first (error tests);
    `poison`: per run, (lo, hi) offset ranges whose accesses the DDR model answers with SLVERR."""
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
    res = run_bench(top or Accelerator(hw), name, "sim.tb_accel", spec, seed=seed, sim=sim or settings.SIM_ENGINE,
                    tag=tag or f"img{img.manifest['sha256'][:8]}_n{len(inputs)}_p{int(pause * 100)}_s{seed}")
    out = []
    lo = reg["results"][0]
    for r in res["runs"]:
        ddr = bytearray(len(img.data))
        ddr[lo:lo + len(bytes.fromhex(r["results"]))] = bytes.fromhex(r["results"])
        results = read_results(img.manifest, ddr) if r["error_code"] == 0 and not r["hung"] else None
        out.append(AccelRun(r["hung"], isa.ERRORS.get(r["error_code"], ("?",))[0],
                            r["error_index"] - (1 << 32) if r["error_index"] >> 31 else r["error_index"],
                            r["cycles"], r["kept"], results, r["reads"], r["writes_outside"], r["wall_s"],
                            r.get("ops", [])))
    return out


def expected(img, x, pokes=()):
    """The interpreter's results and error (None) for one input (with `pokes` applied)."""
    ddr = img.with_input(x)
    for off, b in pokes:
        ddr[off:off + len(b)] = b
    m = Machine(img.hw, ddr)
    try:
        m.run()
    except isa.ProgramError as e:
        return None, e
    return read_results(img.manifest, m.ddr), None


def compare_runs(img, inputs, runs, pokes=None) -> Comparison:
    """RTL vs interpreter by == on every logit, kept count, mask bit and checkpoint element;
    also the access accounting: header, program and stream read exactly once, nothing written
    outside the result region."""
    c = Comparison()
    for k, (x, r) in enumerate(zip(inputs, runs)):
        want, err = expected(img, x, pokes[k] if pokes else ())
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
        c.add(f"image {k} logits", g.logits, want.logits)
        c.add(f"image {k} kept", g.kept, want.kept)
        c.add(f"image {k} KEPT registers", r.kept_regs, want.kept)
        for s, (a, b) in enumerate(zip(g.masks, want.masks)):
            c.add(f"image {k} mask {s}", a, b)
        for b_ix in want.checkpoints:
            c.add(f"image {k} block {b_ix}", g.checkpoints.get(b_ix, np.zeros((0,))), want.checkpoints[b_ix])
        hdr = isa.decode_header(img.data[:isa.HEADER_BYTES])
        c.add(f"image {k} bytes read (header, program, stream)",
              [r.reads["header"], r.reads["program"], r.reads["stream"]],
              [isa.HEADER_BYTES, hdr["n_desc"] * isa.DESC_BYTES, hdr["stream_len"]])
        c.add(f"image {k} bytes written outside the result region", [r.writes_outside], [0])
    return c
