"""`spvit sweep` (a grid of hardware configurations: cycle model, resources, Pareto plot;
sim/sweep.py) and `spvit regress` (random models and hardware on the RTL against the
interpreter; sim/regress.py), both on base.cluster's executor (docs/cluster.md)."""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from base import settings
from base.cluster import Executor
from base.errors import UsageError
from base.outputs import output_dir, output_file
from golden.config import load_config
from sim.regress import draw, groups, load_repro, run_regression, summary
from sim.sweep import SWEEP_KIND, estimate, load_grid, run_sweep, table, write_outputs

from ..cli_types import executor_arguments, int_in, path, positive_int, seed, spec, suffix
from .sim import check_rtl_scheme, keep_fractions


def cmd_sweep(args, estimator=None) -> int:
    model = load_config(args.config).model
    check_rtl_scheme(model)
    grid = load_grid(args.grid)
    keep = args.keep or grid.keep
    if keep and not model.stages:
        raise UsageError(f"keep rates given (--keep or [sweep] keep), but model {model.name} has no token selectors; "
                         f"drop them or use a model with selectors")
    if keep and len(keep) not in (1, model.stages):
        raise UsageError(f"keep needs 1 or {model.stages} rates, one per selector stage of {model.name} "
                         f"(got {len(keep)}: {','.join(f'{k:g}' for k in keep)})")
    grid = dataclasses.replace(grid, keep=keep)
    ex = Executor.from_args(args)
    est = estimator or estimate
    inputs = [p for p in (args.grid, args.config) if Path(p).exists()]
    with output_dir(args.out, SWEEP_KIND, "a sweep directory", force=args.force, inputs=inputs) as tmp:
        t0 = time.time()
        print(f"sweep of {model.name} over {grid.size} hardware configurations "
              f"({' x '.join(f'{k} {len(v)}' for k, v in grid.axes.items())})"
              f"{', keep ' + ','.join(f'{k:g}' for k in keep) if keep else ''}{', with Yosys' if args.synth else ''}, "
              f"on {ex.describe}", flush=True)
        rows = run_sweep(model, grid, ex, est, args.synth)
        wall = time.time() - t0
        meta = {"resources_from": "yosys" if args.synth else "model", "wall_s": round(wall, 2), "executor": ex.describe}
        files = write_outputs(tmp, rows, model, grid, meta)
    axes = list(grid.axes)
    fit = [r for r in rows if r.fits]
    print(f"{len(rows)} configurations, {len(fit)} fit the XCZU9EG and {model.name}, "
          f"{sum(r.pareto for r in rows)} on the Pareto front (latency, DSP48E2, BRAM36); {wall:.1f} s")
    print("Pareto set:")
    print(table(rows, axes, lambda r: r.pareto))
    misfit = [r for r in rows if not r.fits]
    if misfit:
        print(f"{len(misfit)} configurations do not fit (first {min(len(misfit), 10)}; all in sweep.csv):")
        print("\n".join(table(misfit[:10], axes).splitlines()[1:]))
    for f in files:
        print(f"wrote {Path(args.out) / f}")
    return 0


def register_sweep(sub) -> None:
    p = sub.add_parser("sweep", help="evaluate a grid of hardware configurations (cycle model, resources, "
                       "Pareto plot)")
    p.add_argument("--config", required=True, type=spec, help="model preset or TOML file")
    p.add_argument("--grid", required=True, type=path,
                   help="TOML grid of HardwareConfig fields (configs/sweep-zcu102.toml)")
    p.add_argument("--keep", type=keep_fractions, help="share of its scored tokens each selector stage keeps, in "
                   "[0, 1], as in spvit report, e.g. 0.7,0.7,0.7 (overrides [sweep] keep; default 0.7 each)")
    p.add_argument("--synth", action="store_true", help="also synthesise every fitting configuration with Yosys, unit "
                   "by unit (rtl_gen/tools/synthesis.py, cached in SPVIT_BUILD/synth/); slow: over an hour per "
                   "zcu102-sized configuration on 2 cores, so for small grids or a Ray cluster")
    p.add_argument("--out", required=True, type=path, help="output directory for sweep.csv, sweep.json, pareto.png")
    p.add_argument("--force", action="store_true", help="replace an earlier sweep directory (never anything else)")
    executor_arguments(p)
    p.set_defaults(func=cmd_sweep)


def cmd_regress(args) -> int:
    out_dir = Path(args.out) if args.out else settings.BUILD / "regress"
    ex = Executor.from_args(args)                 # --ray problems end here, before any work
    with ExitStack() as stack:                    # so does a bad --json (checked and claimed)
        js = stack.enter_context(output_file(args.json, "a JSON report", force=args.force, option="--json",
                                             inputs=[args.repro] if args.repro else [])) if args.json else None
        if args.repro:
            cases = [load_repro(args.repro)]
            origin = f"--repro {args.repro}"
        else:
            refused: list = []
            cases = draw(args.configs, args.seed, args.per_hw, args.images, refused, x_seeds=args.x_seeds)
            for i, m, why in refused:
                print(f"note: configuration {i}: the compiler refused a drawn model ({why}); drawn again",
                      file=sys.stderr)
            origin = (f"spvit regress --configs {args.configs} --seed {args.seed} --per-hw {args.per_hw} "
                      f"--images {args.images}" + (f" --x-seeds {args.x_seeds}" if args.x_seeds else ""))
        rc = _regress(cases, ex, out_dir, origin, js)
    if args.json:
        print(f"wrote {args.json}")
    return rc


def _regress(cases, ex, out_dir: Path, origin: str, js: Path | None) -> int:
    print(f"{origin}: {len(cases)} configuration(s) on {len(groups(cases))} hardware configuration(s), "
          f"{sum(c.images for c in cases)} images, run on {ex.describe}", flush=True)
    results, wall = run_regression(cases, ex, out_dir, origin)
    s = summary(results, cases, wall, ex)
    seeds = f" x {s['x_seeds']} seeds of random initial values" if s["x_seeds"] else ""
    print(f"total: {s['configurations']} configurations ({s['hardware_builds']} hardware builds), "
          f"{s['images']} images{seeds}, {s['elements_compared']:,} elements compared, "
          f"{s['mismatches']} mismatches, {s['errors']} errors, {s['cycles']:,} cycles simulated; "
          f"wall {wall:.0f} s on {ex.describe}")
    print("result: " + ("BIT-EXACT" if not s["failed"] else f"FAILED configurations {s['failed']}"))
    if js is not None:
        js.write_text(json.dumps({"summary": s, "origin": origin, "results": [dataclasses.asdict(r) for r in results]},
                                 indent=1) + "\n")
    return 1 if s["failed"] else 0


def register_regress(sub) -> None:
    p = sub.add_parser("regress",
                       help="randomised regression: random models and hardware on the RTL vs the interpreter")
    p.add_argument("--configs", type=int_in(1, 100_000), default=4, help="configurations to draw (default 4)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the draw (default 0)")
    p.add_argument("--per-hw", type=positive_int, default=3,
                   help="models per hardware configuration, i.e. per Verilator build (default 3)")
    p.add_argument("--images", type=int_in(1, 1000), default=6,
                   help="images per configuration (default 6; every second one a corner image of int16 extremes)")
    p.add_argument("--x-seeds", type=int_in(0, 64), default=0, help="run every configuration's images once per seed "
                   "of random initial values of every register and memory (Verilator --x-initial unique; default 0: "
                   "they start at zero): a result that depends on storage nothing wrote then differs")
    p.add_argument("--repro", type=path, help="rerun one configuration from a TOML written by a failing regression")
    p.add_argument("--out", type=path, help="directory for the TOMLs of failing configurations "
                   "(default SPVIT_BUILD/regress)")
    p.add_argument("--json", type=suffix(".json"), help="write per-configuration results and the totals as JSON")
    p.add_argument("--force", action="store_true", help="replace an existing --json file")
    executor_arguments(p)
    p.set_defaults(func=cmd_regress)


def register(sub) -> None:
    register_sweep(sub)
    register_regress(sub)
