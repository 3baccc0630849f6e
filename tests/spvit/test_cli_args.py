"""Every numeric option is range-checked when the command line is parsed (exit 2 with argparse's
message, before any work); seeds select data and never size it."""
from __future__ import annotations

import pytest

from spvit.cli import main

SIM = ["simulate", "--config", "mini", "--target", "mlp"]


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
    (SIM + ["--seed", "-1"], "argument --seed: must be an integer in 0..4294967295 (got -1)"),
    (SIM + ["--stall", "2"], "argument --stall: must be a number in [0, 1) (got 2)"),
    (SIM + ["--stall", "1"], "argument --stall: must be a number in [0, 1) (got 1)"),
    (SIM + ["--stall", "nan"], "argument --stall: must be a number in [0, 1) (got nan)"),
    (SIM + ["--tokens", "0"], "argument --tokens: must be an integer in 1.. (got 0)"),
    (SIM + ["--block", "-1"], "argument --block: must be an integer in 0.. (got -1)"),
    (["report", "--config", "mini", "--keep", "abc"], "argument --keep: takes comma-separated fractions"),
    (["report", "--config", "mini", "--keep=-0.5,0.3"], "argument --keep: rates must lie in [0, 1] (got -0.5,0.3)"),
    (["report", "--config", "mini", "--keep", "0.3,0.5"], "argument --keep: rates are cumulative and must not increase"),
    (["info", "--keep", "0.5,inf"], "argument --keep: rates must lie in [0, 1]"),
    (["generate", "--config", "mini", "--out", "x", "--block", "-2"], "argument --block: must be an integer in 0.."),
])
def test_out_of_range_at_parse_time(argv, msg, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err, err


@pytest.mark.parametrize("argv,msg", [
    (["report", "--config", "deit-small", "--keep", "0.5"], "--keep given, but model deit-small has no token selectors"),
    (["info", "--config", "deit-small", "--keep", "0.5"], "--keep given, but model deit-small has no token selectors"),
    (["report", "--config", "mini", "--keep", "0.5"], "--keep needs 2 rates, one per selector stage (got 1)"),
    (["generate", "--config", "mini", "--out", "never-written", "--block", "6"], "--block must lie in 0..5 for mini (got 6)"),
    (SIM + ["--block", "9"], "--block must lie in 0..5 for mini (got 9)"),
    (SIM + ["--tokens", "66"], "--tokens must lie in 1..65 (got 66)"),
])
def test_ranges_that_need_the_config(argv, msg, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert f"spvit: error: {msg}" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


class _Stop(Exception):
    pass


def test_seed_selects_and_does_not_size_the_data(monkeypatch):
    """`--seed 100000` used to build 100,001 images (21 GB for DeiT) before simulating."""
    import sim.models
    import sim.runner
    sizes = []
    real = sim.models.calibrated

    def calibrated(preset="mini", seed=0, n_img=8):
        sizes.append(n_img)
        return real(preset, seed, min(n_img, 2))

    def run_stream(comp, name, inputs, *a, **k):
        raise _Stop(inputs["i_x"])
    monkeypatch.setattr(sim.models, "calibrated", calibrated)
    monkeypatch.setattr(sim.runner, "run_stream", run_stream)
    seen = []
    for seed in ("100000", "7", "100000"):
        with pytest.raises(_Stop) as e:
            main(SIM + ["--tokens", "5", "--seed", seed])
        seen.append(str(e.value))
    assert sizes and max(sizes) <= 2, sizes
    assert seen[0] == seen[2] != seen[1]              # the seed selects the image, reproducibly
