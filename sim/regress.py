"""`spvit regress`: randomised regression of the whole accelerator against the golden model.

`--configs N --seed S` draws N (model, hardware) configurations: hardware first (small MAC
arrays, buffers, AXI ports and widths, selector stages), then `--per-hw` models that fit each
(embed dims, heads, depths, token grids, channels, MLP ratios, classes, selector positions,
package modes and caps, including cap 0 and caps that keep every token). Each model gets
random weights calibrated on random images (quant.calibrate.calibrated_random), goes the way
of a user's model through `spvit run`: written as a weight package (quant.package), compiled from the
package for a hardware TOML with every block's output stored (quant.package.compile_package,
--checkpoints), and runs `--images` images on the generated top (sim.accel.run_accel: the
Accelerator of rtl_gen/top.py under sim/tb_accel.py on Verilator, random pauses on every AXI
channel) compared by == with the golden model (logits, kept counts, keep masks) and with the
interpreter (also KEPT registers, every block's tokens, bytes read and written): sim.accel.verify. One task per
hardware configuration, so each hardware is built once; tasks run through base.cluster
(local pool or Ray).

`--x-seeds K` builds Verilator with random initial values (sim.runner.RANDOM_INIT_BUILD) and
runs each configuration's images once per seed (K seeds drawn from the case's seed): every
register and memory without an initial value starts random, so a result that depends on
storage nothing wrote differs from the interpreter (the whole result region is compared byte
for byte) or between seeds.

A configuration that mismatches, errs or hangs is written to `--out` as a TOML that reproduces
it alone: `spvit regress --repro FILE`. The draw depends only on (S, N, per-hw): the same
arguments give the same configurations, weights, images and pauses.
"""
from __future__ import annotations

import dataclasses
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from base import settings
from base.errors import ConfigError, UsageError
from base.outputs import output_file
from golden.arith import quantize
from golden.compare import FIRST, Comparison
from golden.compiler import compile_model
from golden.config import PACKAGE_MODES, ModelConfig, build, config_dict, model_from_dict, read_toml
from golden.hw import HardwareConfig
from quant.package import compile_package, write_package_files
from rtl_gen.tools import cycles as cycle_model

from . import accel

CORNER_EVERY = 2        # every second image of a configuration is a corner image (see images())
HANG_FACTOR = 8         # a run is hung after this many times its modeled cycles (+ HANG_SLACK)
HANG_SLACK = 100_000
HANG_DEFAULT = 4_000_000    # when the cycle model cannot time an image (the drawn models take < 0.5 M)


@dataclass(frozen=True)
class Case:
    index: int
    seed: int                # weights, calibration and random images, AXI pauses
    model: ModelConfig
    hw: HardwareConfig
    images: int
    pause: float
    x_seeds: tuple = ()      # Verilator seeds of random initial values: the images run once per seed

    def describe(self) -> str:
        m = self.model
        at = ','.join(map(str, m.selector_blocks))
        if m.selector in OTHER_SCHEMES:
            sel = f"{m.selector} @{at} rate {','.join(f'{r:g}' for r in m.keep_rate)}"
            if m.selector == "evit":
                sel += f" fuse {int(m.scheme.fuse(m))}"
            elif m.selector == "evovit":
                sel += f" momentum {m.scheme.momentum(m):g}"
        else:
            sel = (f"sel {m.package_mode} @{at}"
                   + (f" cap {','.join(map(str, m.keep_cap))}" if m.keep_cap else "")) if m.stages else "no sel"
        return (f"d{m.embed_dim} h{m.num_heads} L{m.depth} N{m.num_tokens} c{m.in_chans} p{m.patch_size} "
                f"r{m.mlp_ratio:g} k{m.num_classes} {sel}")


@dataclass
class CaseResult:
    index: int
    hw: str
    what: str
    compared: int = 0
    bad: int = 0
    first: list = field(default_factory=list)
    cycles: list = field(default_factory=list)
    error: str = ""
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.bad == 0 and not self.error


# ------------------------------------------------------------------ the draw
def draw_hw(rng: np.random.Generator, g: int) -> HardwareConfig:
    """Small hardware that keeps one Verilator build at a few minutes; one in five arrays has 16
    rows, the AXI side ranges over 1, 2 or 4 ports of 64, 128 or 256 bits, and one in three
    designs shares each LayerNorm post lane between 2 token rows (as zcu102 does)."""
    R = int(rng.choice([4, 8, 16], p=[0.4, 0.4, 0.2]))
    C = int(rng.choice([c for c in (8, 16) if c % R == 0]))
    d_max = int(rng.choice([d for d in (32, 48, 64) if d % C == 0]))
    hidden_max = int(rng.choice([2, 3, 4])) * d_max
    return HardwareConfig(name=f"rg{g}", mac_rows=R, mac_cols=C, n_max=int(rng.choice([40, 56, 72, 100])), d_max=d_max,
                          hidden_max=hidden_max, axi_ports=int(rng.choice([1, 2, 4], p=[0.4, 0.4, 0.2])),
                          axi_bits=int(rng.choice([64, 128, 256], p=[0.4, 0.4, 0.2])),
                          desc_max=512, pwl_max=2048, stages_max=int(rng.choice([2, 3])),
                          ln_post_share=int(rng.choice([1, 2], p=[2 / 3, 1 / 3])))


def draw_model(rng: np.random.Generator, hw: HardwareConfig, i: int) -> ModelConfig:
    """A model that fits `hw` (HardwareConfig.misfits is empty); raises ValueError when the
    drawn combination does not (the caller draws again)."""
    C = hw.mac_cols
    dh = int(rng.choice([d for d in (C, 2 * C) if d <= hw.d_max]))
    heads = int(rng.integers(1, hw.d_max // dh + 1))
    d = heads * dh
    ratio = float(rng.choice([r for r in (1, 1.5, 2, 3, 4) if r * d <= hw.hidden_max and (r * d) % C == 0]))
    patch = int(rng.choice([2, 4]))
    chans = int(rng.choice([c for c in (1, 2, 3) if c * patch * patch <= hw.hidden_max]))
    depth = int(rng.integers(1, 6))
    stages = int(rng.integers(1, min(hw.stages_max, depth - 1) + 1)) if depth > 1 and rng.random() < 0.75 else 0
    grid_max = math.isqrt(hw.n_max - 1 - stages)
    grid = int(rng.integers(max(1, 2 * grid_max // 3), grid_max + 1))
    if stages and grid * grid < 2:
        stages = 0
    blocks = tuple(sorted(int(b) for b in rng.choice(np.arange(1, depth), stages, replace=False))) if stages else ()
    mode = str(rng.choice(PACKAGE_MODES))
    cap: tuple = ()
    if stages and rng.random() < 0.5:
        p = grid * grid
        cap = tuple(int(rng.choice([0, 1, int(rng.integers(0, p + 1)), p, p + 3])) for _ in range(stages))
    m = ModelConfig(name=f"rg{i}", img_size=grid * patch, patch_size=patch, in_chans=chans, embed_dim=d, depth=depth,
                    num_heads=heads, mlp_ratio=ratio, num_classes=int(rng.integers(2, min(hw.hidden_max, 20) + 1)),
                    selector="spvit" if stages else "none", selector_blocks=blocks, package_mode=mode, keep_cap=cap)
    bad = hw.misfits(m)
    if bad:
        raise ValueError("; ".join(bad))
    return m


OTHER_SCHEMES = ("dynamicvit", "evit", "evovit")


def other_scheme(m: ModelConfig, hw: HardwareConfig, rng: np.random.Generator) -> ModelConfig:
    """A third of the models with selectors become DynamicViT, EViT or Evo-ViT models (the other
    schemes the RTL runs, golden Scheme.hardware) at the same positions, with keep rates down to
    a single kept token and up to 1 (k = N - 1: the top-k prunes nothing but reorders; EViT adds
    no fused token); EViT with or without its fused token (with two stages a fused token is a
    candidate of the next); Evo-ViT with momentum 0, 0.5 or 1 and half the time its stages back to
    back. The SPViT draw is unchanged otherwise (its own generator)."""
    if not m.stages or rng.random() >= 1 / 3:
        return m
    rate = float(rng.choice([1.0, 0.9, 0.7, 0.5, 0.3]))
    scheme = str(rng.choice(OTHER_SCHEMES))
    extra, blocks = {}, m.selector_blocks
    if scheme == "evit":
        extra = {"fuse_token": bool(rng.random() < 0.8)}
    elif scheme == "evovit":
        extra = {"score_momentum": float(rng.choice([0.0, 0.5, 1.0]))}
        b0 = max(blocks[0], 1)
        blocks = (b0, b0 + 1) if rng.random() < 0.5 else tuple(sorted({max(b, 1) for b in blocks}))
    try:
        d = dataclasses.replace(m, selector=scheme, keep_cap=(), package_mode="norm", keep_rate=(rate,),
                                selector_blocks=blocks, **extra)
        d.scheme.check(d)
    except (ConfigError, ValueError):
        return m
    return m if hw.misfits(d) else d


def compile_refusal(case: "Case") -> str:
    """Why the compiler refuses the case's calibrated model on its hardware ('' if it compiles):
    a drawn shape can pass HardwareConfig.misfits and still be refused for its calibrated
    formats (e.g. a GELU table wider than the hardware table)."""
    try:
        compile_model(qmodel(case), case.hw)
    except ValueError as e:
        return str(e)
    return ""


def draw(n: int, seed: int, per_hw: int = 3, images: int = 6, refused: list | None = None,
         check: bool = True, x_seeds: int = 0) -> list["Case"]:
    """n cases; case i runs on hardware i // per_hw. Deterministic in (n, seed, per_hw). Models
    the compiler refuses are drawn again and listed in `refused` as (index, model, reason)
    (check=False skips that calibration and compilation: shapes only). `x_seeds`: each case
    gets that many seeds of random initial values (x_seeds_of)."""
    cases = []
    for g in range(-(-n // per_hw)):
        hw = draw_hw(np.random.default_rng([seed, 0, g]), g)
        for i in range(g * per_hw, min(n, (g + 1) * per_hw)):
            rng = np.random.default_rng([seed, 1, i])
            for _ in range(100):
                try:
                    m = draw_model(rng, hw, i)
                except (ValueError, ConfigError):
                    continue
                m = other_scheme(m, hw, np.random.default_rng([seed, 3, i]))
                case = Case(i, int(rng.integers(2 ** 31)), m, hw, images, float(rng.choice([0.0, 0.1, 0.3])))
                case = dataclasses.replace(case, x_seeds=x_seeds_of(case.seed, x_seeds))
                why = compile_refusal(case) if check else ""
                if not why:
                    break
                if refused is not None:
                    refused.append((i, m, why))
            else:                                    # pragma: no cover - the ranges above always fit
                raise RuntimeError(f"no model fits hardware {hw}")
            cases.append(case)
    return cases


def x_seeds_of(seed: int, n: int) -> tuple:
    """n positive seeds of random initial values for a case with `seed` (Verilator: 0 = pick one)."""
    return tuple(1 + int(v) for v in np.random.default_rng([seed, 2]).integers(2 ** 31 - 2, size=n))


def groups(cases: list[Case]) -> list[list[Case]]:
    """Cases grouped by hardware (one Verilator build each), in order of first appearance."""
    out: dict = {}
    for c in cases:
        out.setdefault(c.hw, []).append(c)
    return list(out.values())


# ------------------------------------------------------------------ one case
def images_for(case: Case, q) -> list:
    """int16 images: random smooth images (the model's input format) and, every CORNER_EVERY-th,
    a corner image of int16 extremes (-32768, 32767, 0, -1) that saturates the embedding."""
    from golden.random_model import random_images  # loads torch: only when needed
    rnd = quantize(random_images(case.model, case.images, case.seed + 1).numpy(), q.img_frac)
    rng = np.random.default_rng(case.seed)
    out = []
    for k in range(case.images):
        if k % CORNER_EVERY == 1:
            out.append(rng.choice(np.array([-32768, 32767, 0, -1], dtype=np.int64), size=rnd[k].shape))
        else:
            out.append(rnd[k])
    return out


def qmodel(case: Case):
    """The case's calibrated integer model. Calibration runs without caps (a cap of 0 would
    leave the later selectors without calibration data); the caps are then set on the integer
    selectors, as a user's package with caps gets them."""
    from quant.calibrate import calibrated_random  # loads torch: only when needed
    m = case.model
    q, _ = calibrated_random(dataclasses.replace(m, keep_cap=()), case.seed, 4)
    if not m.keep_cap:
        return q
    sels = {b: dataclasses.replace(s, cap=m.cap(j)) for j, (b, s) in enumerate(sorted(q.selectors.items()))}
    return dataclasses.replace(q, cfg=m, selectors=sels)


def hw_toml(hw: HardwareConfig) -> str:
    """A hardware file (`spvit compile --hw FILE`) for exactly `hw`."""
    return toml_text({"hardware": hw.as_dict()})


def package_and_compile(q, hw: HardwareConfig, where: Path):
    """`spvit quantize` + `spvit compile --checkpoints` for a calibrated model: the package and
    a hardware TOML written into `where`, then (QModel, Image) from quant.package.compile_package,
    which loads and checks the package as `spvit run` does."""
    pkg = where / "model.pkg"
    pkg.mkdir()
    write_package_files(q, pkg, calibration={"method": "maxabs", "data": "random images", "images": 4},
                        source={"regress": q.cfg.name})
    (where / "hw.toml").write_text(hw_toml(hw))
    return compile_package(str(pkg), str(where / "hw.toml"), checkpoints=True)


def hang_timeout(img, xs) -> int:
    """Cycles after which a run counts as hung: HANG_FACTOR x the cycle model's count for the
    slowest image (the model is within 3% of the RTL without pauses; pauses of 0.3 on every AXI
    channel cost far less than 8x), so a hang ends in seconds instead of run_accel's 20 M cycles."""
    try:
        worst = max(cycle_model.program_cycles(img, cycle_model.trace(img, x)).total for x in xs)
    except Exception:                     # noqa: BLE001 - e.g. a stage with no candidate token (see docs/cluster.md)
        return HANG_DEFAULT
    return HANG_FACTOR * worst + HANG_SLACK


def run_case(case: Case) -> CaseResult:
    t0 = time.time()
    r = CaseResult(case.index, case.hw.name, case.describe())
    try:
        tmp_root = settings.BUILD.resolve() / "regress" / "tmp"
        tmp_root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=tmp_root) as d:
            q, img = package_and_compile(qmodel(case), case.hw, Path(d))
        xs = images_for(case, q)
        c = Comparison()
        for x_seed in case.x_seeds or (None,):        # None: zero initial values
            runs = accel.run_accel(img, xs, pause=case.pause, seed=case.seed % 1000, x_seed=x_seed,
                                   tag=f"rg{case.index}_s{case.seed}", timeout=hang_timeout(img, xs))
            one = accel.verify(q, img, xs, runs)
            c.compared += one.compared
            c.bad += one.bad
            c.first += [f"{f} (x seed {x_seed})" if x_seed else f for f in one.first][:FIRST - len(c.first)]
            r.cycles += [int(x.cycles) for x in runs]
        r.compared, r.bad, r.first = c.compared, c.bad, list(c.first)
    except Exception as e:                # noqa: BLE001 - recorded, written out as a repro
        r.error = f"{type(e).__name__}: {e}".strip()[:2000]
    r.wall_s = time.time() - t0
    return r


def run_group(cases: list[Case]) -> list[CaseResult]:
    """One task: the cases of one hardware configuration (the first builds the simulator)."""
    import torch
    torch.set_num_threads(1)
    return [run_case(c) for c in cases]


# ------------------------------------------------------------------ repro files
def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} to TOML")


def toml_text(doc: dict, prefix: str = "") -> str:
    """Tables of scalars and lists (nested dicts as sub-tables); None values are left out."""
    lines = []
    for name, table in doc.items():
        lines.append(f"[{prefix}{name}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in table.items() if v is not None and not isinstance(v, dict)]
        subs = {k: v for k, v in table.items() if isinstance(v, dict)}
        if subs:
            lines.append(toml_text(subs, f"{prefix}{name}.").rstrip("\n"))
        lines.append("")
    return "\n".join(lines)


def repro_text(case: Case, result: CaseResult | None = None, origin: str = "") -> str:
    lines = ["# spvit regress: a configuration to rerun alone with `spvit regress --repro THIS_FILE`",
             *([f"# from: {origin}"] if origin else [])]
    if result is not None:
        status = result.error or f"{result.bad} of {result.compared} elements differ"
        lines += [f"# result: {status}"] + [f"#   {f}" for f in result.first[:8]]
    reg = {k: getattr(case, k) for k in ("index", "seed", "images", "pause")}
    reg["x_seeds"] = list(case.x_seeds)
    return "\n".join(lines) + "\n" + toml_text({"regress": reg, "model": config_dict(case.model),
                                                "hardware": case.hw.as_dict()})


def load_repro(path: str | Path) -> Case:
    p = Path(path)
    data = read_toml(p, str(path), "--repro file", "give a TOML written by spvit regress")
    missing = {"regress", "model", "hardware"} - set(data)
    if missing:
        raise UsageError(f"--repro {str(p)!r} lacks section(s) {sorted(missing)}; give a file written by spvit regress")
    try:
        model = model_from_dict(data["model"])
        hw = build(HardwareConfig, data["hardware"], "hardware")
        reg = data["regress"]
        case = Case(int(reg["index"]), int(reg["seed"]), model, hw, int(reg["images"]), float(reg["pause"]),
                    tuple(int(v) for v in reg.get("x_seeds", [])))
        if any(v < 1 for v in case.x_seeds):
            raise ValueError(f"x_seeds must be positive (got {list(case.x_seeds)})")
    except (TypeError, KeyError, ValueError) as e:            # ConfigError is a ValueError
        raise UsageError(f"--repro {str(p)!r}: {e}; give a file written by spvit regress") from None
    bad = hw.misfits(model)
    if bad:
        raise UsageError(f"--repro {str(p)!r}: the model does not fit the hardware ({'; '.join(bad)})")
    return case


# ------------------------------------------------------------------ report
def format_result(r: CaseResult, case: Case) -> list[str]:
    h = case.hw
    cyc = f"{min(r.cycles):,}..{max(r.cycles):,}" if r.cycles else "-"
    head = (f"{r.index:4d} {h.name:>5s} {h.mac_rows}x{h.mac_cols:<3d} P{h.axi_ports}x{h.axi_bits:<4d}"
            f"n{h.n_max:<3d} {r.what:52s} {case.images:3d} {r.compared:10,d} {r.bad:6d} {cyc:>17s} {r.wall_s:6.0f}")
    out = [head + ("" if r.ok else "  FAIL")]
    if r.error:
        out.append(f"       error: {r.error.splitlines()[0][:200]}")
    out += [f"       first mismatch: {f}" for f in r.first[:4]]
    return out


HEADER = (f"{'cfg':>4s} {'hw':>5s} {'array':7s} {'AXI':9s}{'n_max':5s} {'model':52s} {'img':>3s} {'compared':>10s} "
          f"{'bad':>6s} {'cycles/image':>17s} {'wall s':>6s}")


def run_regression(cases: list[Case], ex, out_dir: Path, origin: str, runner=None) -> tuple[list[CaseResult], float]:
    """Run the groups through `ex` (runner: run_group, or a stand-in in tests), print the table
    in configuration order and write a repro TOML per failing configuration."""
    t0 = time.time()
    gs = groups(cases)

    def progress(i, part):
        print(f"[{time.time() - t0:6.0f} s] hardware {gs[i][0].hw.name}: {len(part)} configuration(s), "
              f"{sum(r.compared for r in part):,} elements, {sum(r.bad for r in part)} mismatches, "
              f"{sum(not r.ok for r in part)} failed", file=sys.stderr, flush=True)
    parts = ex.map(runner or run_group, gs, desc="hardware configs", on_result=progress)
    results = sorted((r for part in parts for r in part), key=lambda r: r.index)
    wall = time.time() - t0
    by_index = {c.index: c for c in cases}
    print(HEADER)
    for r in results:
        print("\n".join(format_result(r, by_index[r.index])))
    failed = [r for r in results if not r.ok]
    if failed:
        for r in failed:
            p = out_dir / f"regress-fail-{r.index}.toml"
            with output_file(p, "a repro TOML", force=True) as tmp:     # replaces an earlier run's
                tmp.write_text(repro_text(by_index[r.index], r, origin))
            print(f"wrote {p} (rerun alone: spvit regress --repro {p})")
    return results, wall


def summary(results: list[CaseResult], cases: list[Case], wall: float, ex) -> dict:
    return {"configurations": len(results), "hardware_builds": len({c.hw for c in cases}),
            "images": sum(c.images for c in cases), "x_seeds": max((len(c.x_seeds) for c in cases), default=0),
            "elements_compared": sum(r.compared for r in results),
            "mismatches": sum(r.bad for r in results), "errors": sum(1 for r in results if r.error),
            "failed": [r.index for r in results if not r.ok], "cycles": sum(sum(r.cycles) for r in results),
            "wall_s": round(wall, 1), "executor": ex.describe}
