"""`spvit report` and the model-level estimate used by benchmarks/latency.py and `spvit sweep`:
the cycle model (rtl_gen/tools/cycles.py) on a program compiled for the model, with the token counts of
an assumed keep rate per selector stage, plus DDR traffic, latency, DSP efficiency and an
estimate of the FPGA resources (or Yosys synthesis with --synth).

    e = estimate(PRESETS["spvit-deit-small"], HW_PRESETS["zcu102"], keep=(0.7, 0.7, 0.7))
    e.latency_ms, e.cycles, e.dsp, e.bram36, e.fits, e.why
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from base.errors import UsageError
from golden import isa
from golden.compiler import compile_model
from golden.hw import ZCU102_BRAM36, ZCU102_DSP, DoesNotFit, HardwareConfig
from golden.interp import Selection
from rtl_gen.tools import synthesis, timing as timing_report
from rtl_gen.tools.cycles import ProgramPerf, Step, program_cycles

PAPER_MS = {"deit-tiny": 5.60, "deit-small": 13.23}       # SPViT paper, 16-bit ZCU102 accelerator (spvit.txt Table 4)
# DSP48E2 of the units besides the MAC array, per token lane (mac_rows) and fixed, from Yosys
# synth_xilinx (`spvit report --synth`; zcu102 and mini agree: 2,409 = 2,048 + 32 x 10.5 + 25 and
# 237 = 128 + 8 x 10.5 + 25). Array unit: epilogue and softmax 6 per lane + 3; LayerNorm 4 per
# lane; PACKAGE one two-DSP weight product per 4 lanes + 6, GMEAN 2, DECIDE 8; STORE 4,
# controller 1, loader 1. The report prints these sums as estimates; `--synth` measures.
DSP_PER_LANE = {"array unit": 6, "layernorm": 4, "package": 0.5}
DSP_FIXED = {"array unit": 3, "selector units": 16, "controller, loader, STORE": 6}


@dataclass
class PerfEstimate:
    model: str
    hw: HardwareConfig
    keep: tuple
    perf: ProgramPerf
    dsp: int
    bram36: float
    why: list = field(default_factory=list)

    @property
    def cycles(self) -> int:
        return self.perf.total

    @property
    def latency_ms(self) -> float:
        return self.perf.latency_ms

    @property
    def fits(self) -> bool:
        return not self.why


def dsp_estimate(hw: HardwareConfig) -> int:
    return hw.macs + int(hw.mac_rows * sum(DSP_PER_LANE.values())) + sum(DSP_FIXED.values())


def bram_estimate(hw: HardwareConfig) -> float:
    """BRAM36 of the memories (rtl_gen/primitives/ram.py instances), by capacity and width: each RAM
    takes the fewest block RAMs of one aspect ratio (RAMB36 32K x 1 .. 512 x 72, RAMB18 half of
    one at 16K x 1 .. 512 x 36), or LUT RAM when shallow."""
    R, C, T = hw.mac_rows, hw.mac_cols, hw.tiles

    def ram(width, depth):
        if depth <= 64:
            return 0.0                     # LUT RAM
        modes = [(36, 32768, 1), (36, 16384, 2), (36, 8192, 4), (36, 4096, 9), (36, 2048, 18), (36, 1024, 36),
                 (36, 512, 72), (18, 16384, 1), (18, 8192, 2), (18, 4096, 4), (18, 2048, 9), (18, 1024, 18),
                 (18, 512, 36)]
        return min((kbits / 36) * -(-width // w) * -(-depth // d) for kbits, d, w in modes)
    b = sum(ram(16 * R, T * hw.buffer_width(bf)) for bf in isa.TOKEN_BUFFERS)
    b += ram(16 * C, hw.key_tiles * hw.d_max) + C * ram(16, T * R * hw.d_max // C)     # KB, VB
    b += ram(16 * C, 2 * hw.k_max)                                  # weight ring
    b += -(-R // 2) * ram(59, hw.pwl_max)                           # activation table copies
    b += ram(512, hw.desc_max) + ram(16 * R, 2 * hw.n_max)         # program, probability banks
    b += 2 * ram(16 * R, 2 * hw.n_max) + 2 * ram(16 * R, hw.d_max)  # softmax ring, LayerNorm tile banks
    b += hw.axi_ports * 4                                           # DMA FIFOs
    return float(b)


def synthetic_steps(img, keep) -> list[Step]:
    """The steps of an image whose selector stage s keeps the fraction keep[s] of the tokens it
    scores (spread evenly over the sequence; a top-k keeps its k), without running the interpreter."""
    d0 = img.regions["program"][0]
    n = isa.decode_header(img.data[:isa.HEADER_BYTES])["n_tokens"]
    steps, sel = [], None
    for i in range(img.manifest["descriptors"]):
        d = isa.decode(img.data[d0 + i * isa.DESC_BYTES:][:isa.DESC_BYTES])
        if d.op.name == "END":
            break
        rows = d.rows_of(n)
        scores = None
        if d.op.name == "DECIDE":
            ns = rows - 1 - d["n_pkg"]
            kept = d["k"] if d["mode"] == isa.DECIDE_TOPK else int(round(keep[min(d["stage"], len(keep) - 1)] * ns))
            mask = np.zeros(ns, dtype=bool)
            if kept:
                mask[np.linspace(0, ns - 1, kept).round().astype(int)] = True
            sel = Selection(rows, d["n_pkg"], mask, np.full(ns, 1 << 14), d["mode"])
            scores = np.where(mask, 1, -1)
        steps.append(Step(i, d, rows, sel, scores))
        if d.op.name == "COMPACT":
            n = 2 + int(sel.keep.sum()) + d["n_pkg"] - d["no_pkg"]
    return steps


@functools.lru_cache(maxsize=16)
def _program(cfg, hw: HardwareConfig):
    """A program for the model's shapes (random weights, calibrated: realistic table sizes)."""
    from quant.calibrate import calibrated_random  # loads torch: only when needed
    q, _ = calibrated_random(cfg, 0, 2)
    return compile_model(q, hw)


def estimate(cfg, hw: HardwareConfig, keep=None, ddr: bool = True) -> PerfEstimate:
    """Modeled run of one image of model `cfg` on `hw` at `keep` per selector stage (default
    0.7), the DDR at hw.ddr_gbps when `ddr`."""
    why = hw.misfits(cfg)
    dsp, bram = dsp_estimate(hw), bram_estimate(hw)
    if dsp > ZCU102_DSP:
        why.append(f"estimated DSP48E2 {dsp} > {ZCU102_DSP} of the XCZU9EG")
    if bram > ZCU102_BRAM36:
        why.append(f"estimated BRAM36 {bram:g} > {ZCU102_BRAM36} of the XCZU9EG")
    keep = tuple(keep or (0.7,) * max(cfg.stages, 1))
    img = None
    if not hw.misfits(cfg):
        try:
            img = _program(cfg, hw)
        except DoesNotFit as e:                 # the program, not the shapes, is too large (desc_max)
            why.append(str(e))
    if img is None:
        return PerfEstimate(cfg.name, hw, keep, ProgramPerf(hw, [], 0, 0, 0), dsp, bram, why)
    bpc = hw.ddr_gbps * 1e9 / (hw.clock_mhz * 1e6) if ddr else None
    perf = program_cycles(img, synthetic_steps(img, keep), bpc)
    return PerfEstimate(cfg.name, hw, keep, perf, dsp, bram, why)


def print_report(cfg, hw: HardwareConfig, keep=None, synth: bool = False, timing: bool = False) -> None:
    e = estimate(cfg, hw, keep)
    p = e.perf
    if not p.ops:
        raise UsageError(f"{cfg.name} does not run on hardware {hw.name}: " + "; ".join(e.why))
    bpc = min(hw.stream_bytes, hw.ddr_gbps * 1e9 / (hw.clock_mhz * 1e6))
    print(f"hardware {hw.name}: {hw.mac_rows}x{hw.mac_cols} MAC array ({hw.macs} DSP48E2), {hw.axi_ports} AXI ports "
          f"x {hw.axi_bits} bits, {hw.clock_mhz:g} MHz; DDR assumed {hw.ddr_gbps:g} GB/s = {bpc:.1f} B/cycle "
          f"(ZCU102 PS DDR4-2400 x64: 19.2 GB/s peak, 80% sustained)")
    if cfg.scheme.adaptive or not cfg.stages:
        print(f"model {cfg.name}: keep {','.join(f'{k:g}' for k in e.keep)} per selector stage")
    else:                                       # a fixed count per stage (keep_rate), as the program's top-k
        print(f"model {cfg.name}: keep_rate {','.join(f'{k:g}' for k in cfg.keep_rate)} (fixed counts; --keep "
              f"does not apply)")
    agg: dict = {}
    for o in p.ops:
        a = agg.setdefault(o.op, [0, 0, 0, {}])
        a[0] += o.cycles
        a[1] += o.macs
        a[2] += 1
        a[3][o.bound] = a[3].get(o.bound, 0) + o.cycles
    print("\ncycles per operation (cycle model; one image)")
    print(f"  {'operation':10s} {'count':>5s} {'cycles':>11s} {'share':>6s} {'MACs':>14s} {'MAC util':>8s}  bound by")
    for op, (c, macs, k, bounds) in sorted(agg.items(), key=lambda kv: -kv[1][0]):
        util = f"{macs / (hw.macs * c):8.3f}" if macs else f"{'':8s}"
        why = ", ".join(f"{b} {100 * v / c:.0f}%" for b, v in sorted(bounds.items(), key=lambda kv: -kv[1]))
        print(f"  {op:10s} {k:5d} {c:11,d} {100 * c / p.total:5.1f}% {macs:14,d} {util}  {why}")
    print("\ncycles per block (the selector before a block counted with it)")
    labels = p.labels
    blocks: dict = {}
    for o in p.ops:
        lab = labels.get(o.index, "")
        key = ("block " + lab.split("block ")[1].split()[0].rstrip(")")) if "block" in lab else \
            ("embedding" if o.index < 6 else "head")
        b = blocks.setdefault(key, [0, 0, o.rows])
        b[0] += o.cycles
        b[1] += o.macs
    for k, (c, macs, n) in blocks.items():
        print(f"  {k:10s} tokens {n:4d}  {c:10,d} cycles  {c / (hw.clock_mhz * 1e3):7.3f} ms  MAC util "
              f"{macs / (hw.macs * c):.3f}")
    bound = {}
    for o in p.ops:
        bound[o.bound] = bound.get(o.bound, 0) + o.cycles
    by_cycles = sorted(bound.items(), key=lambda kv: -kv[1])
    print("\nbound by: " + ", ".join(f"{k} {100 * v / p.total:.0f}%" for k, v in by_cycles))
    print(f"DDR: {p.stream_bytes / 1e6:.2f} MB read per image ({p.stream_bytes / p.total:.1f} B/cycle on average); "
          f"MATMULs waited {p.weight_wait:,} cycles ({100 * p.weight_wait / p.total:.1f}%) for weights")
    print(f"total: {p.total:,} cycles = {p.latency_ms:.3f} ms at {hw.clock_mhz:g} MHz; {p.macs / 1e9:.3f} GMAC; "
          f"MAC-array utilisation {p.mac_utilisation:.3f}; board DSP efficiency (useful MACs / (2,520 x cycles)) "
          f"{p.board_efficiency():.3f}")
    print(f"\nresources (estimate): DSP48E2 {e.dsp} of {ZCU102_DSP}, BRAM36 {e.bram36:g} of {ZCU102_BRAM36}"
          + ("" if e.fits else " - DOES NOT FIT: " + "; ".join(e.why)))
    if synth:
        synthesis.synthesize_top(hw, verbose=True)
    if timing:
        print("\ntiming (Yosys synth_xilinx per unit; rtl_gen/tools/timing.py)")
        timing_report.timing_top(hw, verbose=True)
