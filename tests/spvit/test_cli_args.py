"""Every numeric option is range-checked when the command line is parsed (exit 2 with argparse's
message, before any work); seeds select data and never size it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from spvit.cli import main

ROOT = Path(__file__).resolve().parents[2]

RUN = ["run", "--package", "p"]


@pytest.mark.parametrize("argv,msg", [
    (["check", "--images", "0"], "argument --images: must be an integer in 1..512 (got 0)"),
    (["check", "--calib", "100000"], "argument --calib: must be an integer in 1..512 (got 100000)"),
    (["check", "--seed", "-1"], "argument --seed: must be an integer in 0..4294967295 (got -1)"),
    (["compare", "--checkpoint", "c", "--package", "p", "--data", "digits", "--sqnr-images", "-3"],
     "argument --sqnr-images: must be an integer in 0.. (got -3)"),
    (["compare", "--checkpoint", "c", "--package", "p", "--data", "digits", "--batch", "0"],
     "argument --batch: must be an integer in 1..1024 (got 0)"),
    (["compare", "--checkpoint", "c", "--package", "p", "--data", "digits", "--limit", "ten"],
     "argument --limit: must be an integer in 1.. (got 'ten')"),
    (["quantize", "--checkpoint", "c", "--config", "mini", "--calib", "digits", "--out", "o", "--calib-limit",
      "100000"], "argument --calib-limit: must be an integer in 1..2048 (got 100000)"),
    (["quantize", "--checkpoint", "c", "--config", "mini", "--calib", "digits", "--out", ""],
     "argument --out: must be a path (got an empty string)"),
    (RUN + ["--seed", "-1"], "argument --seed: must be an integer in 0..4294967295 (got -1)"),
    (RUN + ["--pause", "2"], "argument --pause: must be a number in [0, 1) (got 2)"),
    (RUN + ["--pause", "1"], "argument --pause: must be a number in [0, 1) (got 1)"),
    (RUN + ["--pause", "nan"], "argument --pause: must be a number in [0, 1) (got nan)"),
    (RUN + ["--images", "0"], "argument --images: must be an integer in 1..4096 (got 0)"),
    (RUN + ["--sim", "ghdl"], "argument --sim: invalid choice: 'ghdl'"),
    (["demo", "--images", "65"], "argument --images: must be an integer in 1..64 (got 65)"),
    (["demo", "--out", " "], "argument --out: must be a path (got an empty string)"),
    (["generate", "--out", ""], "argument --out: must be a path (got an empty string)"),
    (["compile", "--package", "p", "--out", ""], "argument --out: must be a path (got an empty string)"),
    (["report", "--config", "mini", "--keep", "abc"], "argument --keep: takes comma-separated fractions"),
    (["report", "--config", "mini", "--keep=-0.5,0.3"], "argument --keep: rates must lie in [0, 1] (got -0.5,0.3)"),
    (["report", "--config", "mini", "--keep", "0.5,nan"], "argument --keep: rates must lie in [0, 1] (got 0.5,nan)"),
    (["info", "--keep", "0.5,inf"], "argument --keep: rates must lie in [0, 1]"),
    (["info", "--config", "mini", "--keep", "0.3,0.5"], "argument --keep: rates are cumulative and must not increase"),
])
def test_out_of_range_at_parse_time(argv, msg, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err, err


@pytest.mark.parametrize("argv,msg", [
    (["report", "--config", "deit-small", "--keep", "0.5"],
     "--keep given, but model deit-small has no token selectors"),
    (["info", "--config", "deit-small", "--keep", "0.5"], "--keep given, but model deit-small has no token selectors"),
    (["report", "--config", "mini", "--keep", "0.5,0.5,0.5"],
     "--keep needs 1 or 2 rates, one per selector stage of mini (got 3)"),
    (["info", "--config", "mini", "--keep", "0.5"], "--keep needs 2 rates, one per selector stage (got 1)"),
    (["report", "--config", "mini,zcu"], "unknown hardware 'zcu'"),
    (["report", "--config", "spvit-deit-tiny,mini"], "hardware mini cannot run spvit-deit-tiny"),
    (["generate", "--hw", "nope.toml", "--out", "never-written"], "hardware file 'nope.toml' does not exist"),
    (["run", "--hw", "mini"], "--package is required"),
])
def test_ranges_that_need_the_config(argv, msg, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert f"spvit: error: {msg}" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_scheme_without_hardware_is_refused_first(capsys, tmp_path, monkeypatch):
    """A scheme the RTL would not run (every scheme runs now: Evo-ViT's flag turned off here) is
    refused by `spvit report` before any shape, naming the schemes that run."""
    from golden.selectors.evovit import EvoViT
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(EvoViT, "hardware", False)
    assert main(["report", "--config", "mini-evovit,mini"]) == 2
    assert ("spvit: error: the accelerator runs unpruned, SPViT, DynamicViT and EViT models; token selection "
            "'evovit' (model mini-evovit) has no hardware yet") in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_run_seed_selects_and_does_not_size_the_data(monkeypatch):
    """`spvit run --seed N` picks the random images, it never sizes the data (the old `simulate
    --seed 100000` built 100,001 images, 21 GB for DeiT, before simulating)."""
    import argparse
    from types import SimpleNamespace

    import golden.random_model
    import quant.calibrate
    from golden.config import PRESETS
    from spvit.commands.sim import input_images
    calls = []
    real = golden.random_model.random_images
    monkeypatch.setattr(golden.random_model, "random_images",
                        lambda cfg, n, seed=0: calls.append((n, seed)) or real(cfg, n, seed=seed))
    monkeypatch.setattr(quant.calibrate, "quantize_images", lambda x, q: x.numpy())
    q = SimpleNamespace(cfg=PRESETS["deit-tiny"])
    seen = [input_images(argparse.Namespace(data=None, seed=s), q, 2)[0] for s in (100000, 7, 100000)]
    assert calls == [(2, 100000), (2, 7), (2, 100000)]
    assert (seen[0] == seen[2]).all() and not (seen[0] == seen[1]).all()   # the seed selects, reproducibly


@pytest.mark.parametrize("env,msg", [
    ({"SPVIT_THREADS": "two"},
     "SPVIT_THREADS must be a non-negative integer (0: the CPU count), got 'two'; fix or unset it"),
    ({"SPVIT_MATMUL": "fp32"}, "SPVIT_MATMUL must be one of auto, int8, float64 (got 'fp32'); fix or unset it"),
])
def test_bad_environment_setting_is_a_usage_error(env, msg, tmp_path):
    """base.settings reads the environment once, at import, without failing; `spvit` checks it
    first: a bad SPVIT_* value is exit 2 with one line naming it, before any work."""
    r = subprocess.run([sys.executable, "-m", "spvit.cli", "info", "--config", "mini"], cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": str(ROOT), **env}, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout)
    assert r.stderr == f"spvit: error: {msg}\n", r.stderr
