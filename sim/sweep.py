"""`spvit sweep --config MODEL --grid GRID.toml`: every hardware configuration of a grid,
evaluated with the accelerator's model-level estimate (sim.report.estimate: the cycle model
on a program compiled for the model, DDR traffic, estimated DSP48E2 and BRAM36) and, with
--synth, Yosys resources of the generated top (rtl_gen.tools.synthesis.synthesize_top: every unit
synthesised on its own, cached per unit in $SPVIT_BUILD/synth/<hw>/). Writes sweep.csv,
sweep.json and pareto.png (modeled latency against DSP48E2 and BRAM36) into --out; marks the
configurations that do not fit the XCZU9EG or the model and says why.

--synth is for small grids or a cluster: one zcu102-sized configuration takes Yosys more than
an hour on a 2-core machine (the units are synthesised one after the other); configurations
whose units are identical share the cache.

A grid file (configs/sweep-zcu102.toml is an example):

    [base]                    # optional: a hardware preset and/or fields held fixed
    preset = "zcu102"
    clock_mhz = 300
    [grid]                    # fields of golden.hw.HardwareConfig, each a list of values
    mac_rows = [16, 32]
    mac_cols = [32, 64, 128]
    [sweep]                   # optional
    keep = [0.7, 0.7, 0.7]    # share of its scored tokens each selector stage keeps (estimate's `keep`)

Points are the Cartesian product in the order the [grid] keys are written (the last key varies
fastest); results are merged by that index, so the outputs do not depend on the executor.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from base.errors import ConfigError, UsageError
from golden.config import ModelConfig, read_toml
from golden.hw import HW_PRESETS, ZCU102_BRAM36, ZCU102_DSP, HardwareConfig
from rtl_gen.tools import synthesis

from . import report

MAX_POINTS = 100_000
HW_FIELDS = {f.name: f for f in dataclasses.fields(HardwareConfig)}
NUMBER_FIELDS = {"clock_mhz", "ddr_gbps"}


# ------------------------------------------------------------------ the grid
@dataclass(frozen=True)
class Grid:
    base: dict                 # fields held fixed (after the preset)
    axes: dict                 # field -> tuple of values, in file order
    keep: tuple | None = None

    @property
    def size(self) -> int:
        return math.prod(len(v) for v in self.axes.values())

    def points(self) -> list[dict]:
        keys = list(self.axes)
        return [dict(zip(keys, combo)) for combo in itertools.product(*self.axes.values())]


def _field_value(name: str, v, where: str):
    if name == "name":
        if not isinstance(v, str):
            raise UsageError(f"{where}: name must be a string (got {v!r})")
        return v
    ok = isinstance(v, (int, float)) if name in NUMBER_FIELDS else isinstance(v, int)
    if isinstance(v, bool) or not ok:
        kind = "a number" if name in NUMBER_FIELDS else "an integer"
        raise UsageError(f"{where}: {name} must be {kind} (got {v!r}); fix the grid file")
    return v


def load_grid(path: str | Path) -> Grid:
    p = Path(path)
    data = read_toml(p, str(path), "grid file", "give a TOML file with a [grid] table (configs/sweep-zcu102.toml "
                     "is an example)")
    unknown = set(data) - {"base", "grid", "sweep"}
    if unknown:
        raise UsageError(f"grid file {str(p)!r}: unknown section(s) {sorted(unknown)}; valid: base, grid, sweep")
    grid = data.get("grid")
    if not isinstance(grid, dict) or not grid:
        raise UsageError(f"grid file {str(p)!r} has no [grid] table; add one with HardwareConfig fields as lists, "
                         f"e.g. [grid] mac_rows = [16, 32]")
    base = dict(data.get("base", {}))
    preset = base.pop("preset", None)
    if preset is not None:
        if preset not in HW_PRESETS:
            raise UsageError(f"grid file {str(p)!r}: unknown hardware preset {preset!r} in [base]; "
                             f"use one of {', '.join(HW_PRESETS)}")
        base = {**dataclasses.asdict(HW_PRESETS[preset]), **base}
    valid = sorted(HW_FIELDS)
    for where, table in (("[base]", base), ("[grid]", grid)):
        bad = set(table) - set(HW_FIELDS)
        if bad:
            raise UsageError(f"grid file {str(p)!r}: unknown field(s) {sorted(bad)} in {where}; valid fields: {valid}")
    base = {k: _field_value(k, v, f"grid file {str(p)!r} [base]") for k, v in base.items()}
    axes = {}
    for k, vals in grid.items():
        if not isinstance(vals, list) or not vals:
            raise UsageError(f"grid file {str(p)!r}: [grid] {k} must be a non-empty list of values "
                             f"(got {vals!r}); write e.g. {k} = [{base.get(k, 16)!r}]")
        axes[k] = tuple(_field_value(k, v, f"grid file {str(p)!r} [grid] {k}") for v in vals)
    keep = data.get("sweep", {}).get("keep")
    if keep is not None:
        if not isinstance(keep, list) or not keep or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in keep):
            raise UsageError(f"grid file {str(p)!r}: [sweep] keep must be a list of fractions in [0, 1] "
                             f"(got {keep!r}); e.g. keep = [0.7, 0.7, 0.7]")
        keep = tuple(float(v) for v in keep)
    g = Grid(base, axes, keep)
    if g.size > MAX_POINTS:
        raise UsageError(f"grid file {str(p)!r} has {g.size:,} points, more than {MAX_POINTS:,}; use fewer values")
    return g


# ------------------------------------------------------------------ evaluation
def estimate(model: ModelConfig, hw: HardwareConfig, keep=None):
    """The accelerator's model-level estimate (sim.report.estimate: the cycle model on a program
    compiled for the model's shapes, DDR traffic, estimated DSP48E2 and BRAM36, fit); the sweep
    only calls it."""
    return report.estimate(model, hw, keep=keep)


@dataclass
class Row:
    index: int
    point: dict
    hardware: dict = field(default_factory=dict)
    cycles: int | None = None
    latency_ms: float | None = None
    dsp: int | None = None
    bram36: float | None = None
    fits: bool = False
    why: list = field(default_factory=list)
    synth: dict | None = None
    pareto: bool = False

    def resources(self) -> tuple:
        """(DSP48E2, BRAM36) the Pareto front uses: Yosys' when synthesised, else the model's."""
        if self.synth and "dsp48e2" in self.synth:
            return self.synth["dsp48e2"], self.synth["bram36"]
        return self.dsp, self.bram36


def _hw_for(base: dict, point: dict, index: int) -> HardwareConfig:
    fields = {**base, **point}
    fields.setdefault("name", f"sweep{index}")
    return HardwareConfig(**fields)


def evaluate(task) -> list[Row]:
    """One task: (model, base, [(index, point)], keep, estimator, synth)."""
    model, base, points, keep, estimator, synth = task
    rows = []
    for index, point in points:
        row = Row(index, point)
        try:
            hw = _hw_for(base, point, index)
        except (ConfigError, TypeError) as e:
            row.why = [f"invalid hardware configuration: {e}"]
            rows.append(row)
            continue
        row.hardware = hw.as_dict()
        why = list(hw.misfits(model))
        try:
            est = estimator(model, hw, keep=keep)
        except (ConfigError, ValueError) as e:
            why.append(f"the cost model refuses it: {e}")
        else:
            row.dsp, row.bram36 = int(est.dsp), float(est.bram36)
            if not why:                      # a model that does not fit has no run to time
                row.cycles, row.latency_ms = int(est.cycles), float(est.latency_ms)
            why += [w for w in est.why if w not in why]
            if est.fits is False and not why:
                why.append("the cost model says it does not fit")
        if synth and not why:
            row.synth = synthesize_hw(hw)
            for k, cap in (("dsp48e2", ZCU102_DSP), ("bram36", ZCU102_BRAM36)):
                v = row.synth.get(k)
                if v is not None and v > cap:
                    why.append(f"Yosys: {k} {v:g} > {cap} of the XCZU9EG")
        row.why, row.fits = why, not why
        rows.append(row)
    return rows


def synthesize_hw(hw: HardwareConfig) -> dict:
    """Yosys resources of the generated top for `hw` (rtl_gen.tools.synthesis.synthesize_top, unit by
    unit, cached), or {'error': ...}. The parts are named after the configuration's ident, so
    grid points that differ only in clock_mhz or ddr_gbps (the same RTL) and later sweeps reuse
    the cache in $SPVIT_BUILD/synth/sweep-<ident>/."""
    t = time.time()
    try:
        r = synthesis.synthesize_top(dataclasses.replace(hw, name=f"sweep-{hw.ident():08x}"), verbose=False)
    except RuntimeError as e:
        return {"error": str(e)}
    tot = r["total"]
    return {"dsp48e2": tot["dsp"], "bram36": tot["bram36"], "lut": tot["lut"], "lut_mem": tot["lut_mem"],
            "ff": tot["ff"], "latches": tot["latches"], "tool": "yosys synth_xilinx -family xcup, per unit",
            "seconds": round(time.time() - t, 1)}


def pareto(rows: list[Row]) -> None:
    """Mark the fitting rows that no other fitting row beats or equals in latency, DSP48E2 and
    BRAM36 at once (ties: the lower index stays)."""
    fit = [r for r in rows if r.fits and r.latency_ms is not None]
    keys = {r.index: (r.latency_ms, *r.resources()) for r in fit}
    for r in fit:
        a = keys[r.index]
        r.pareto = not any(all(x <= y for x, y in zip(keys[o.index], a))
                           and (keys[o.index] != a or o.index < r.index) for o in fit if o is not r)


def _same_rtl(base: dict, pts: list) -> list[list]:
    """With --synth: points grouped by the RTL they generate (HardwareConfig.ident), one task per
    group, so no two workers synthesise the same parts at once."""
    out: dict = {}
    for index, point in pts:
        try:
            key = _hw_for(base, point, index).ident()
        except (ConfigError, TypeError):
            key = ("invalid", index)
        out.setdefault(key, []).append((index, point))
    return list(out.values())


def run_sweep(model: ModelConfig, grid: Grid, ex, estimator=estimate, synth: bool = False) -> list[Row]:
    pts = list(enumerate(grid.points()))
    if synth:
        chunks = _same_rtl(grid.base, pts)
    else:
        per = max(1, -(-len(pts) // (2 * ex.parallelism)))
        chunks = [pts[i:i + per] for i in range(0, len(pts), per)]
    parts = ex.map(evaluate, [(model, grid.base, c, grid.keep, estimator, synth) for c in chunks],
                   desc="hardware configs")
    rows = sorted((r for p in parts for r in p), key=lambda r: r.index)
    pareto(rows)
    return rows


# ------------------------------------------------------------------ outputs
CSV_FIELDS = ("index", "fits", "pareto", "cycles", "latency_ms", "dsp48e2", "bram36")
SYNTH_FIELDS = ("dsp48e2", "bram36", "lut", "lut_mem", "ff", "latches", "tool", "seconds", "error")


def csv_text(rows: list[Row], axes: list[str]) -> str:
    hw_keys = list(HW_FIELDS)
    synth = any(r.synth for r in rows)
    f = io.StringIO()
    w = csv.writer(f, lineterminator="\n")
    w.writerow(list(CSV_FIELDS) + [f"hw.{k}" for k in hw_keys] + ([f"yosys.{k}" for k in SYNTH_FIELDS] if synth else [])
               + ["why"])
    for r in rows:
        hw = r.hardware or {**r.point}
        w.writerow([r.index, int(r.fits), int(r.pareto), r.cycles, r.latency_ms, r.dsp, r.bram36]
                   + [hw.get(k, "") for k in hw_keys]
                   + ([(r.synth or {}).get(k, "") for k in SYNTH_FIELDS] if synth else []) + ["; ".join(r.why)])
    return f.getvalue()


def json_doc(rows: list[Row], model: ModelConfig, grid: Grid, meta: dict) -> dict:
    return {"model": dataclasses.asdict(model), "grid": {"base": grid.base, "axes": grid.axes, "keep": grid.keep},
            "limits": {"dsp48e2": ZCU102_DSP, "bram36": ZCU102_BRAM36, "device": "XCZU9EG"}, **meta,
            "points": [dataclasses.asdict(r) for r in rows],
            "pareto": [r.index for r in rows if r.pareto]}


def plot(rows: list[Row], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    have = [r for r in rows if r.latency_ms is not None]
    groups = (([r for r in have if not r.fits], dict(marker="x", color="0.6", ls=""), "does not fit"),
              ([r for r in have if r.fits and not r.pareto], dict(marker="o", color="tab:blue", ls="", ms=4), "fits"),
              ([r for r in have if r.pareto], dict(marker="*", color="tab:red", ls="", ms=11),
               "Pareto (latency, DSP, BRAM)"))
    for ax, k, cap, label in ((axes[0], 0, ZCU102_DSP, "DSP48E2"), (axes[1], 1, ZCU102_BRAM36, "BRAM36")):
        for group, style, lab in groups:
            if group:
                ax.plot([r.resources()[k] for r in group], [r.latency_ms for r in group], label=lab, **style)
        for x, y, text in _labels([(r.resources()[k], r.latency_ms, r.index) for r in have if r.pareto], cap):
            ax.annotate(text, (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
        ax.axvline(cap, color="k", ls="--", lw=1)
        ax.text(cap, ax.get_ylim()[1] if have else 1, f" XCZU9EG {cap}", fontsize=8, va="top")
        ax.set_xlabel(label + (" (Yosys)" if any(r.synth for r in rows) else " (modeled)"))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("modeled latency (ms)")
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def _labels(points: list, xmax: float) -> list:
    """Pareto points within ~3% of the axes' spans of each other share one label ("1,3")."""
    if not points:
        return []
    ys = [p[1] for p in points]
    dx, dy = 0.03 * max(xmax, max(p[0] for p in points)), 0.03 * max(max(ys) - min(ys), 1e-9)
    groups: list = []
    for x, y, i in sorted(points):
        g = next((g for g in groups if abs(g[0][0] - x) <= dx and abs(g[0][1] - y) <= dy), None)
        (g.append((x, y, i)) if g else groups.append([(x, y, i)]))
    return [(g[0][0], g[0][1], ",".join(str(i) for _, _, i in sorted(g, key=lambda p: p[2]))) for g in groups]


def _fmt(v, spec):
    return format(v, spec) if v is not None else "-".rjust(int(spec.split(".")[0].rstrip(",d")))


def table(rows: list[Row], axes: list[str], only=None) -> str:
    rows = [r for r in rows if only is None or only(r)]
    head = (f"{'#':>5s} " + "".join(f"{a:>11s}" for a in axes)
            + f" {'latency ms':>10s} {'cycles':>12s} {'DSP48E2':>8s} {'BRAM36':>8s}")
    lines = [head]
    for r in rows:
        dsp, bram = r.resources()
        lines.append(f"{r.index:5d} " + "".join(f"{r.point[a]!s:>11s}" for a in axes)
                     + f" {_fmt(r.latency_ms, '10.3f')} {_fmt(r.cycles, '12,d')} {_fmt(dsp, '8d')} {_fmt(bram, '8.1f')}"
                     + ("" if r.fits else "  does not fit: " + "; ".join(r.why)))
    return "\n".join(lines)


SWEEP_KIND = "spvit-sweep"


def write_outputs(out: Path, rows, model, grid, meta) -> list[str]:
    """sweep.csv, sweep.json, pareto.png and manifest.json into the directory `out`."""
    axes = list(grid.axes)
    (out / "sweep.csv").write_text(csv_text(rows, axes))
    (out / "sweep.json").write_text(json.dumps(json_doc(rows, model, grid, meta), indent=1) + "\n")
    plot(rows, out / "pareto.png", f"{model.name}: {len(rows)} hardware configurations, "
                                   f"{sum(r.fits for r in rows)} fit the XCZU9EG")
    files = ["sweep.csv", "sweep.json", "pareto.png"]
    (out / "manifest.json").write_text(json.dumps({"format": SWEEP_KIND, "files": files}, indent=1) + "\n")
    return files
