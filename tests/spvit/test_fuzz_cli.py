"""Fuzzing the command line (hypothesis): random argument vectors, random TOML configs and
random manifest edits must end in exit 0 or 2 (or reach a long job, see below), never in a
traceback, never leave output behind after an error, never change an input.

Long jobs are not started: calibration on more than 16 images, comparisons on more than 8,
Verilog conversion (`generate`, `board`), RTL simulation (`run`, `demo`), the report's calibrated program
(also `sweep`'s and `regress`'s models) and synthesis, ONNX export, image generation beyond
~2 MB, and starting a local process pool or Ray (base/cluster.py) raise `LongJob` at their entry point
instead, which counts as "accepted" (every check of the arguments ran before
it), and the outputs opened so far must be cleaned up as after any error. Examples are
derandomised (reproducible in CI); SPVIT_FUZZ_EXAMPLES raises their number.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import string
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from base.outputs import OLD_TAG, TMP_TAG
from spvit.cli import main

N = int(os.environ.get("SPVIT_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=N or 40, deadline=None, derandomize=not N, database=None,
                suppress_health_check=list(HealthCheck))


class LongJob(BaseException):
    """Raised instead of starting a long job (not an Exception: nothing may swallow it)."""


BAD_FILES = ("sparse.pth", "crc.pth", "legacy.pth", "forged-key.pth", "good.pth", "hw_desc.toml", "hw_name.toml",
             "cols32.toml", "hd32.toml", "base768.toml", "mnist.toml")


@pytest.fixture(scope="module")
def world(tmp_path_factory, ckpt, package, bad_inputs):
    """Inputs the commands may read: a checkpoint, a package, an image folder, TOML files, and
    the bad inputs of issue 15 (tests/spvit/conftest.py: damaged and unusual checkpoints, a FIFO,
    a directory named like a checkpoint, hardware that does not fit, a 28x28 image folder)."""
    from PIL import Image
    root = tmp_path_factory.mktemp("fuzz-inputs")
    shutil.copy(ckpt, root / "m.safetensors")
    shutil.copytree(package, root / "m.pkg")
    for f in BAD_FILES:
        shutil.copy(bad_inputs / f, root / f)
    shutil.copytree(bad_inputs / "mnist", root / "mnist")
    os.mkfifo(root / "fifo.pth")                          # never opened: reading it would block
    (root / "dir.pth").mkdir()
    for c in ("a", "b"):
        (root / "imgs" / c).mkdir(parents=True)
        for i in range(2):
            Image.new("L", (30 + 7 * i, 28), 40 * i + (c == "b") * 100).save(root / "imgs" / c / f"{i}.png")
    (root / "good.toml").write_text(GOOD_TOML)
    (root / "hw.toml").write_text('[hardware]\npreset = "mini"\nclock_mhz = 250\n')
    (root / "grid.toml").write_text('[base]\npreset = "mini"\n[grid]\nmac_cols = [16, 32]\n'
                                    '[sweep]\nkeep = [0.5, 0.5]\n')
    from sim.regress import draw, repro_text
    (root / "repro.toml").write_text(repro_text(draw(1, 0, check=False)[0]))
    (root / "bad.toml").write_text("[model\n")
    (root / "bin.toml").write_bytes(bytes(range(256)))
    assert main(["compile", "--package", str(root / "m.pkg"), "--hw", "mini", "--out", str(root / "m.img")]) == 0
    return root


GOOD_TOML = '''preset = "mini"
[model]
depth = 6
selector_blocks = [2, 4]
package_mode = "norm"
keep_cap = [40, 20]
[preprocess]
mean = [0.5]
std = [0.5]
[fixed_point]
headroom_bits = 1
frac_overrides = { "blocks.0.h" = 10 }
[hardware]
clock_mhz = 200
'''


def _hashes(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _listing(root: Path) -> set:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@contextlib.contextmanager
def _guards():
    """Entry points of long jobs raise LongJob above a small size."""
    import base.cluster
    import golden.random_model
    import quant.calibrate
    import quant.compare
    import quant.onnx_export
    import quant.selfcheck
    import rtl_gen.tools.synthesis
    import rtl_gen.tools.verilog
    import sim.accel
    from base import settings as spvit_settings
    saved = [(golden.random_model, "random_images"), (quant.calibrate, "calibrate"),
             (quant.compare, "compare_dataset"), (quant.selfcheck, "compare"), (quant.onnx_export, "export_onnx"),
             (rtl_gen.tools.verilog, "to_verilog"), (sim.accel, "run_accel"),
             (rtl_gen.tools.synthesis, "synthesize_top"), (quant.calibrate, "calibrated_random"),
             (base.cluster, "_local_map"), (base.cluster, "connect_ray")]
    orig = {(m, n): getattr(m, n) for m, n in saved}

    def limit(mod, name, too_big):
        real = orig[(mod, name)]

        def f(*a, **k):
            if too_big(*a, **k):
                raise LongJob(name)
            return real(*a, **k)
        setattr(mod, name, f)
    limit(golden.random_model, "random_images", lambda cfg, n, seed=0: n * cfg.in_chans * cfg.img_size ** 2 > 500_000)
    limit(quant.calibrate, "calibrate", lambda model, images, *a, **k: len(images) > 16)
    limit(quant.compare, "compare_dataset", lambda model, q, data, *a, **k: len(data) > 8)
    limit(quant.selfcheck, "compare", lambda model, q, images: len(images) > 8)
    limit(quant.onnx_export, "export_onnx", lambda *a, **k: True)
    limit(rtl_gen.tools.verilog, "to_verilog", lambda *a, **k: True)          # generate: inside its output
    limit(sim.accel, "run_accel", lambda *a, **k: True)                 # run, demo: RTL simulation
    limit(rtl_gen.tools.synthesis, "synthesize_top", lambda *a, **k: True)    # report --synth
    limit(quant.calibrate, "calibrated_random", lambda *a, **k: True)   # report: the modeled program
    limit(base.cluster, "_local_map", lambda *a, **k: True)            # --workers N: a process pool
    limit(base.cluster, "connect_ray", lambda *a, **k: True)           # --ray: starting or joining Ray
    env, waves = dict(os.environ), spvit_settings.WAVES
    try:
        yield
    finally:
        for (m, n), f in orig.items():
            setattr(m, n, f)
        os.environ.clear()
        os.environ.update(env)
        spvit_settings.WAVES = waves


def run(argv: list, world: Path, work: Path) -> str:
    """Run one command in-process; check the outcome; return what it printed on stderr."""
    before_in, before_work = _hashes(world), _listing(work)
    err, out = io.StringIO(), io.StringIO()
    outcome = None
    with _guards(), contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            outcome = main(argv)
        except LongJob:
            outcome = "long job"
    text = err.getvalue()
    if os.environ.get("SPVIT_FUZZ_LOG"):                  # for reports: argv, outcome, first message line
        with open(os.environ["SPVIT_FUZZ_LOG"], "a") as f:
            line = next((t for t in text.splitlines() if "error" in t), text.strip().splitlines()[-1:] or [""])
            f.write(json.dumps([argv, outcome, line if isinstance(line, str) else line[0]]) + "\n")
    assert outcome in (0, 2, "long job"), (argv, outcome, text)
    assert "Traceback" not in text and "Exception ignored" not in text, (argv, text)
    assert "\x1b" not in text, (argv, "a terminal escape reached the user", text)
    assert sum(re.match(r"spvit( [\w-]+)?: error:", line) is not None for line in text.splitlines()) <= 1, (argv, text)
    if outcome == 2:
        assert text.strip(), (argv, "exit 2 without a message")
    left = [p for p in work.rglob("*") if TMP_TAG in p.name or OLD_TAG in p.name]
    assert not left, (argv, left)
    if outcome != 0:
        assert _listing(work) == before_work, (argv, outcome, _listing(work) ^ before_work, text)
    assert _hashes(world) == before_in, (argv, "an input changed")
    return text


# ------------------------------------------------------------------ random argument vectors
COMMANDS = {
    "info": ["--config", "--keep"],
    "check": ["--config", "--images", "--calib", "--seed"],
    "quantize": ["--checkpoint", "--config", "--calib", "--calib-limit", "--method", "--out", "--force"],
    "compare": ["--checkpoint", "--package", "--data", "--config", "--limit", "--json", "--plot", "--batch",
                "--sqnr-images", "--no-progress", "--force", "--workers", "--ray", "--retries", "--show",
                "--show-images"],
    "export-onnx": ["--checkpoint", "--config", "--out", "--force"],
    "demo": ["--out", "--images", "--force"],
    "generate": ["--hw", "--out", "--force"],
    "compile": ["--package", "--hw", "--out", "--checkpoints", "--force"],
    "run": ["--package", "--image", "--hw", "--images", "--data", "--sim", "--pause", "--seed", "--checkpoints"],
    "report": ["--config", "--keep", "--synth"],
    "sweep": ["--config", "--grid", "--keep", "--synth", "--out", "--force", "--workers", "--ray", "--retries",
              "--no-progress"],
    "regress": ["--configs", "--seed", "--per-hw", "--images", "--repro", "--out", "--json", "--force", "--workers",
                "--ray", "--retries", "--no-progress"],
    "board": ["--hw", "--out", "--part", "--clock-mhz", "--rtl", "--force"],
    "board-inputs": ["--package", "--image", "--images", "--data", "--seed", "--out", "--force"],
    "board-run": ["--board", "--image", "--inputs", "--timeout", "--poll-ms", "--no-download"],
}
FLAGS = {"--force", "--no-progress", "--checkpoints", "--synth", "--no-download"}
NUMBERS = ["-5", "-1", "0", "1", "2", "3", "5", "8", "64", "65", "100000", str(2 ** 40), "0.5", "-0.5", "1.5",
           "nan", "inf", "1e309", "abc", "", " ", "0x10", "1_000"]


def _values(world: Path, work: Path) -> dict:
    paths = [str(world / "m.safetensors"), str(world / "m.pkg"), str(world / "imgs"), str(world / "good.toml"),
             str(world / "nope.pth"), str(world / "m.pkg" / "manifest.json"), str(world), "/", "/sys/x",
             str(work / "out"), str(work / "sub" / "deeper" / "out.pkg"), str(work / "full"), str(work / "r.json"),
             str(work / "full" / "keep.txt"), str(work / "r.png"), "",
             # issue 15
             *(str(world / f) for f in ("sparse.pth", "crc.pth", "legacy.pth", "forged-key.pth", "good.pth",
                                       "fifo.pth", "dir.pth", "mnist")),
             "/dev/zero", "/dev/null", "/proc/self", str(world / "m.pkg" / "x.onnx"), str(world / "m.img" / "x.json"),
             str(work / "notes.md"), str(work / "o.onnx")]
    configs = ["mini", "mini,mini", "mini,small", "mini,zcu", "deit-tiny", "deit-small,zcu102", "spvit-deit-tiny",
               "nope", "", str(world / "good.toml"), str(world / "bad.toml"), str(world / "bin.toml"), str(world),
               str(world / "good.toml") + ",mini", str(world / "missing.toml"),
               # issue 15
               "mini," + str(world / "hw_desc.toml"), "mini," + str(world / "hw_name.toml"),
               "mini," + str(world / "cols32.toml"), str(world / "hd32.toml") + ",zcu102",
               str(world / "base768.toml") + ",zcu102", str(world / "mnist.toml"), str(world / "fifo.pth"), "/dev/zero"]
    hws = ["mini", "small", "zcu102", "zcu", "", str(world / "hw.toml"), str(world / "good.toml"),
           str(world / "bad.toml"), str(world / "bin.toml"), str(world / "missing.toml"), str(world),
           *(str(world / f) for f in ("hw_desc.toml", "hw_name.toml", "cols32.toml"))]
    return {
        "--config": configs, "--hw": hws, "--image": [str(world / "m.img"), *paths],
        "--checkpoint": paths, "--package": paths, "--out": paths, "--json": paths, "--show": paths,
        "--plot": paths, "--calib": ["digits", "digits:train", "digits:", "digits:val", *paths],
        "--data": ["digits", "digits:test", "digits:all", "digits:", *paths],
        "--keep": ["0.7,0.5", "0.7,0.5,0.3", "0.5", "a,b", "0.3,0.6", "1,0", "nan", "", "-0.5,0.2", "-0.1,0.5", "-1"],
        "--method": ["maxabs", "percentile", "mse", "kl"], "--sim": ["icarus", "verilator", "ghdl"],
        "--grid": [str(world / "grid.toml"), str(world / "good.toml"), str(world / "bad.toml"), *paths],
        "--repro": [str(world / "repro.toml"), str(world / "good.toml"), str(world / "bin.toml"), *paths],
        "--ray": ["127.0.0.1:9", "nonsense", "ray://127.0.0.1:10001", "auto", "--no-progress"],
        "--part": ["xczu9eg-ffvb1156-2-e", "xczu7ev-ffvc1156-2-e", "xc7z020clg400-1", "xczu9eg {x}", ""],
        "--rtl": paths, "--board": paths, "--inputs": paths,
    }


@st.composite
def argv_strategy(draw, values):
    cmd = draw(st.sampled_from(sorted(COMMANDS) + ["bogus", "--help", "-h"]))
    opts = COMMANDS.get(cmd, [])
    argv = [cmd]
    for _ in range(draw(st.integers(0, 7))):
        opt = draw(st.sampled_from(opts + ["--bogus", "-x"])) if opts else "--bogus"
        argv.append(opt)
        if opt in FLAGS:
            continue
        pool = values.get(opt, NUMBERS)
        if draw(st.integers(0, 9)) == 0:
            argv.append(draw(st.text(string.printable, max_size=8)))
        elif draw(st.booleans()) or opt not in values:
            argv.append(draw(st.sampled_from(pool if opt in values else NUMBERS)))
        else:
            argv.append(draw(st.sampled_from(NUMBERS)))
    return argv


def _work() -> Path:
    work = Path(tempfile.mkdtemp(prefix="spvit-fuzz-"))
    (work / "full").mkdir()
    (work / "full" / "keep.txt").write_text("mine")
    return work


def issue_15(world: Path) -> list:
    """The command lines of issue 15 (a traceback, a silently wrong result or lost data before),
    run as examples of every fuzz run on top of the random ones."""
    w, q = str(world), ["quantize", "--config", "mini", "--calib", "digits", "--calib-limit", "2", "--out", "/WORK/o",
                        "--checkpoint"]
    onnx = ["export-onnx", "--checkpoint", f"{w}/good.pth", "--config", "mini", "--force", "--out"]
    return [["report", "--config", f"mini,{w}/hw_desc.toml"],
            ["generate", "--hw", f"{w}/hw_name.toml", "--out", "/WORK/r"],
            ["compile", "--package", f"{w}/m.pkg", "--hw", f"{w}/hw_desc.toml", "--out", "/WORK/i"],
            q + [f"{w}/sparse.pth"], q + [f"{w}/crc.pth"], q + [f"{w}/legacy.pth"], q + [f"{w}/forged-key.pth"],
            q + [f"{w}/fifo.pth"], q + [f"{w}/dir.pth"], q + ["/dev/zero"], onnx + [f"{w}/m.pkg/manifest.json"],
            onnx + ["/WORK/notes.md"], onnx + [f"{w}/m.pkg/x.onnx"], ["info", "--config", ""],
            ["quantize", "--checkpoint", f"{w}/good.pth", "--config", "mini", "--calib", "", "--out", "/WORK/o"],
            ["quantize", "--checkpoint", f"{w}/good.pth", "--config", "mini", "--calib", "/proc/self",
             "--out", "/WORK/o"],
            ["report", "--config", "mini", "--keep", "-0.1,0.5"], ["report", "--config", f"{w}/hd32.toml,zcu102"],
            ["compile", "--package", f"{w}/m.pkg", "--hw", f"{w}/cols32.toml", "--out", "/WORK/i"],
            ["quantize", "--checkpoint", f"{w}/good.pth", "--config", f"{w}/mnist.toml", "--calib", f"{w}/mnist",
             "--calib-limit", "3", "--out", "/WORK/o"],
            ["compare", "--checkpoint", f"{w}/good.pth", "--package", f"{w}/m.pkg", "--data", "digits", "--limit", "2",
             "--json", "/dev/null", "--force"]]


def test_random_argv(world):
    values = _values(world, Path("/WORK"))

    def check(argv):
        work = _work()
        try:
            run([a.replace("/WORK", str(work)) for a in argv], world, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    check = given(argv_strategy(values))(check)
    for argv in issue_15(world):
        check = example(argv)(check)
    FUZZ(check)()


# ------------------------------------------------------------------ random TOML configs
SCALARS = st.one_of(st.integers(-3, 300), st.sampled_from([0, 1, 2, 4, 64, 65, 2 ** 40, -2 ** 40]),
                    st.floats(allow_nan=True, allow_infinity=True, width=32), st.booleans(),
                    st.text(string.ascii_letters + "-,. ", max_size=6))
TOML_VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=4), st.dictionaries(st.sampled_from(["a", "blocks.0.h"]),
                                                                                  SCALARS, max_size=2))


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if v != v else ("inf" if v == float("inf") else "-inf" if v == -float("inf") else repr(v))
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"


def _toml(doc: dict) -> str:
    lines = [f"{k} = {_toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for k, v in doc.items():
        if isinstance(v, dict):
            lines.append(f"[{k}]")
            lines += [f"{json.dumps(f)} = {_toml_value(x)}" for f, x in v.items()]
    return "\n".join(lines) + "\n"


FIELDS = {"model": ["name", "img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads", "mlp_ratio",
                    "num_classes", "selector", "selector_blocks", "package_mode", "keep_cap", "keep_rate",
                    "fuse_token", "score_momentum", "heads"],
          "preprocess": ["mean", "std", "interpolation", "crop_pct", "crop_mode", "pad", "fill"],
          "fixed_point": ["word_bits", "acc_bits", "rounding", "frac_min", "frac_max", "headroom_bits",
                          "frac_overrides"],
          "hardware": ["preset", "name", "mac_rows", "mac_cols", "n_max", "d_max", "hidden_max", "axi_ports",
                       "axi_bits", "clock_mhz", "ddr_gbps", "dsp_budget", "token_buffer"]}


@st.composite
def toml_strategy(draw):
    import tomllib
    doc = tomllib.loads(GOOD_TOML)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.integers(0, 9))
        sec = draw(st.sampled_from(sorted(FIELDS) + ["preset", "extra"]))
        if kind == 0:
            doc.pop(sec, None)
        elif kind == 1 or sec in ("preset", "extra") or not isinstance(doc.get(sec), dict):
            doc[sec] = draw(TOML_VALUES | st.sampled_from(["mini", "deit-tiny", "spvit-deit-small", "zcu102"]))
        else:
            doc[sec][draw(st.sampled_from(FIELDS[sec]))] = draw(TOML_VALUES)
    text = _toml(doc)
    if draw(st.integers(0, 9)) == 0:                       # damage the text itself
        i = draw(st.integers(0, len(text)))
        text = text[:i] + draw(st.sampled_from(["\x00", "[", "=", "\"", "\xff", ""])) + text[i:]
    return text


def test_random_toml(world):
    @FUZZ
    @given(toml_strategy(), st.sampled_from(["info", "report", "quantize", "generate", "check"]))
    def check(text, cmd):
        work = _work()
        try:
            cfg = work / "c.toml"
            cfg.write_bytes(text.encode("utf-8", "surrogateescape"))
            argv = {"info": ["info", "--config", str(cfg)],
                    "report": ["report", "--config", str(cfg)],
                    "check": ["check", "--config", str(cfg), "--images", "2", "--calib", "2"],
                    "generate": ["generate", "--hw", str(cfg), "--out", str(work / "rtl")],   # as a hardware file
                    "quantize": ["quantize", "--checkpoint", str(world / "m.safetensors"), "--config", str(cfg),
                                 "--calib", "digits", "--calib-limit", "2", "--out", str(work / "p.pkg")]}[cmd]
            run(argv, world, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    check()


# ------------------------------------------------------------------ random manifest edits
JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 40, 2 ** 40),
                        st.sampled_from([0, 1, -1, 3, 16, 17, 64]), st.floats(allow_nan=False, width=32),
                        st.text(max_size=5), st.lists(st.integers(-3, 70), max_size=3), st.just({}), st.just([]))


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:3]):
            yield from _paths(v, prefix + (i,))


@st.composite
def manifest_strategy(draw, manifest):
    m = json.loads(json.dumps(manifest))
    paths = [p for p in _paths(m) if p and p[0] != "tensors" or len(p) <= 3]
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths))
        parent = m
        try:
            for k in path[:-1]:
                parent = parent[k]
            old = parent[path[-1]]
        except (KeyError, IndexError, TypeError):
            continue
        kind = draw(st.integers(0, 3))
        if kind == 0 and isinstance(parent, dict):
            del parent[path[-1]]
        elif kind == 1 and isinstance(old, int) and not isinstance(old, bool):
            parent[path[-1]] = old + draw(st.sampled_from([-1, 1, 2, -8, 1000]))
        else:
            parent[path[-1]] = draw(JSON_VALUES)
    if draw(st.integers(0, 19)) == 0:
        m = draw(JSON_VALUES)
    return m


def test_random_manifest_edits(world):
    manifest = json.loads((world / "m.pkg" / "manifest.json").read_text())

    @FUZZ
    @given(manifest_strategy(manifest))
    def check(m):
        work = _work()
        try:
            pkg = work / "p.pkg"
            shutil.copytree(world / "m.pkg", pkg)
            (pkg / "manifest.json").write_text(json.dumps(m))
            run(["compare", "--checkpoint", str(world / "m.safetensors"), "--package", str(pkg), "--data", "digits",
                 "--limit", "2", "--sqnr-images", "1", "--no-progress", "--json", str(work / "r.json")], world, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    check()
