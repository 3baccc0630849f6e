"""`spvit sweep`: every grid point evaluated (with a stand-in cost model injected, and with the
real sim.report.estimate), merged by grid index whatever the executor, Pareto set checked
against a brute-force one, configurations that do not fit marked with the reason, --synth's
Yosys numbers (rtl_gen.tools.synthesis.synthesize_top, stubbed here) used for fit and Pareto, and bad
grid files refused with exit 2."""
from __future__ import annotations

import argparse
import csv
import json

import pytest

from golden.config import PRESETS
from sim.sweep import load_grid
from spvit.cli import main
from spvit.commands.cluster import cmd_sweep
from tests.cluster import tasks

GRID = """
[base]
preset = "zcu102"
[grid]
mac_rows = [8, 16, 32]
mac_cols = [16, 32, 64, 128]
axi_ports = [2, 4]
[sweep]
keep = [0.7, 0.7, 0.7]
"""


def _args(tmp_path, grid_text=GRID, **kw):
    grid = tmp_path / "grid.toml"
    grid.write_text(grid_text)
    base = dict(config="spvit-deit-small", grid=str(grid), keep=None, synth=False, out=str(tmp_path / "out"),
                ray=None, workers=1, retries=2, no_progress=True, force=False)
    return argparse.Namespace(**{**base, **kw})


def _rows(out):
    with open(out / "sweep.csv") as f:
        return list(csv.DictReader(f))


def test_sweep_with_a_stand_in_model(tmp_path, capsys):
    args = _args(tmp_path)
    assert cmd_sweep(args, estimator=tasks.fake_estimate) == 0
    printed = capsys.readouterr().out
    out = tmp_path / "out"
    rows = _rows(out)
    assert len(rows) == 24 and [int(r["index"]) for r in rows] == list(range(24))
    doc = json.loads((out / "sweep.json").read_text())
    assert (out / "pareto.png").stat().st_size > 10_000
    m = PRESETS["spvit-deit-small"]
    for r in rows:
        R, C, P = int(r["hw.mac_rows"] or 0), int(r["hw.mac_cols"] or 0), int(r["hw.axi_ports"] or 0)
        why = r["why"]
        if R == 32 and C == 16:           # mac_rows must divide mac_cols: not a valid HardwareConfig
            assert r["fits"] == "0" and "invalid hardware configuration: mac_rows must divide mac_cols" in why
            continue
        est = tasks.fake_estimate(m, type("H", (), dict(macs=R * C, mac_rows=R, n_max=200, d_max=384, axi_ports=P,
                                                        clock_mhz=300.0))(), keep=(0.7, 0.7, 0.7))
        assert int(r["dsp48e2"]) == est.dsp
        if C == 128:                      # the model does not fit: no run to time
            assert "head_dim 64 is not a multiple of mac_cols 128" in why and r["cycles"] == ""
        else:
            assert int(r["cycles"]) == est.cycles
        if est.dsp > 2520:
            assert f"DSP48E2 {est.dsp} > 2520 of the XCZU9EG" in why
        assert (r["fits"] == "1") == (C != 128 and est.dsp <= 2520)
    # Pareto: fitting points no other fitting point matches or beats in all of latency, DSP, BRAM
    fit = [(int(r["index"]), float(r["latency_ms"]), int(r["dsp48e2"]), float(r["bram36"]))
           for r in rows if r["fits"] == "1"]
    front = sorted(i for i, *a in fit if not any(all(x <= y for x, y in zip(b, a)) and (b != a or j < i)
                                                  for j, *b in fit if j != i))
    assert doc["pareto"] == front and front
    assert [int(r["index"]) for r in rows if r["pareto"] == "1"] == front
    assert "Pareto set:" in printed and "does not fit" in printed


def test_sweep_results_do_not_depend_on_the_executor(tmp_path, request):
    def run(name, **kw):
        (tmp_path / name).mkdir()
        assert cmd_sweep(_args(tmp_path / name, **kw), estimator=tasks.fake_estimate) == 0
        return (tmp_path / name / "out" / "sweep.csv").read_text()
    one = run("inline")
    assert run("pool", workers=2) == one
    request.getfixturevalue("ray_session")
    assert run("ray", ray="local", workers=None) == one


@pytest.mark.parametrize("text, msg", [
    ("[grid\nmac_rows = [8]", "is not valid TOML"),
    ("[base]\npreset = \"zcu102\"\n", "has no [grid] table"),
    ("[grid]\nmac_rowz = [8]", "unknown field(s) ['mac_rowz'] in [grid]"),
    ("[grid]\nmac_rows = 8", "[grid] mac_rows must be a non-empty list of values"),
    ("[grid]\nmac_rows = []", "[grid] mac_rows must be a non-empty list of values"),
    ("[grid]\nmac_rows = [\"8\"]", "mac_rows must be an integer (got '8')"),
    ("[grid]\nclock_mhz = [true]", "clock_mhz must be a number"),
    ("[base]\npreset = \"zcu999\"\n[grid]\nmac_rows = [8]", "unknown hardware preset 'zcu999'"),
    ("[grid]\nmac_rows = [8]\n[sweep]\nkeep = [1.5]", "[sweep] keep must be a list of fractions in [0, 1]"),
    ("[gird]\nmac_rows = [8]", "unknown section(s) ['gird']"),
])
def test_bad_grid_files_exit_2(tmp_path, capsys, text, msg):
    grid = tmp_path / "g.toml"
    grid.write_text(text)
    assert main(["sweep", "--config", "mini", "--grid", str(grid), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_missing_grid_file_and_bad_keep(tmp_path, capsys, monkeypatch):
    assert main(["sweep", "--config", "mini", "--grid", str(tmp_path / "none.toml"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    grid = tmp_path / "g.toml"
    grid.write_text("[grid]\nmac_rows = [8]")
    args = ["sweep", "--config", "mini", "--grid", str(grid), "--keep", "0.7,x", "--out", str(tmp_path / "o")]
    assert main(args) == 2
    assert "argument --keep: takes comma-separated fractions" in capsys.readouterr().err
    assert main(["sweep", "--config", "mini", "--grid", str(grid), "--keep", "0.7,0.7,0.7", "--out",
                 str(tmp_path / "o")]) == 2
    assert "keep needs 1 or 2 rates, one per selector stage of mini (got 3" in capsys.readouterr().err
    assert main(["sweep", "--config", "deit-tiny", "--grid", str(grid), "--keep", "0.7", "--out",
                 str(tmp_path / "o")]) == 2
    assert "has no token selectors" in capsys.readouterr().err
    from golden.selectors.evovit import EvoViT
    monkeypatch.setattr(EvoViT, "hardware", False)           # every scheme runs now: one turned off
    assert main(["sweep", "--config", "evovit-deit-small", "--grid", str(grid), "--out", str(tmp_path / "o")]) == 2
    assert "token selection 'evovit' (model evovit-deit-small) has no hardware yet" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_example_grid_loads():
    g = load_grid("configs/sweep-zcu102.toml")
    assert g.size == 36 and g.keep == (0.7, 0.7, 0.7) and g.base["mac_rows"] == 32


def test_sweep_with_the_real_cost_model(tmp_path, capsys):
    """The CLI's own estimator (sim.report.estimate) on two configurations of the mini
    model: one fits, one does not (head_dim 16 is not a multiple of mac_cols 32)."""
    from golden.hw import HW_PRESETS
    from sim.report import estimate
    grid = tmp_path / "g.toml"
    grid.write_text("[base]\npreset = \"mini\"\n[grid]\nmac_cols = [16, 32]\nd_max = [64]\nhidden_max = [256]\n")
    assert main(["sweep", "--config", "mini", "--grid", str(grid), "--out", str(tmp_path / "o"), "--workers", "1",
                 "--keep", "0.5,0.5"]) == 0
    rows = _rows(tmp_path / "o")
    assert [r["fits"] for r in rows] == ["1", "0"]
    e = estimate(PRESETS["mini"], HW_PRESETS["mini"], keep=(0.5, 0.5))
    assert int(rows[0]["cycles"]) == e.cycles and int(rows[0]["dsp48e2"]) == e.dsp and rows[0]["pareto"] == "1"
    assert "head_dim 16 is not a multiple of mac_cols 32" in rows[1]["why"]


def test_output_directory_is_checked_before_the_work(tmp_path, capsys):
    """An existing directory of something else is never replaced; an earlier sweep only with --force."""
    args = _args(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    assert main(["sweep", "--config", "spvit-deit-small", "--grid", args.grid, "--out", args.out, "--force"]) == 2
    assert "is not a sweep directory" in capsys.readouterr().err
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"
    (tmp_path / "out" / "notes.txt").unlink()
    assert cmd_sweep(args, estimator=tasks.fake_estimate) == 0
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["format"] == "spvit-sweep"
    assert main(["sweep", "--config", "spvit-deit-small", "--grid", args.grid, "--out", args.out]) == 2
    assert "pass --force to replace it" in capsys.readouterr().err
    assert cmd_sweep(_args(tmp_path, force=True), estimator=tasks.fake_estimate) == 0


def test_synth_uses_the_per_unit_synthesis(tmp_path, capsys, monkeypatch):
    """--synth: rtl_gen.tools.synthesis.synthesize_top (stubbed: real runs take minutes to hours) once
    per distinct RTL (points differing only in clock_mhz share it), its totals replace the
    modeled DSP48E2/BRAM36 in the table, CSV and Pareto set, and Yosys counts above the device
    mark a configuration as not fitting."""
    import rtl_gen.tools.synthesis
    calls = []

    def fake_top(hw, verbose=True):
        calls.append(hw.name)
        dsp = 3000 if hw.mac_rows == 32 else hw.macs + 7
        return {"parts": [], "total": dict(dsp=dsp, bram36=11.5, lut=1000, lut_mem=64, ff=2000, latches=0),
                "fits": dsp <= 2520}
    monkeypatch.setattr(rtl_gen.tools.synthesis, "synthesize_top", fake_top)
    grid = "[base]\npreset = \"zcu102\"\n[grid]\nmac_rows = [16, 32]\nclock_mhz = [250.0, 300.0]\n"
    assert cmd_sweep(_args(tmp_path, grid, synth=True), estimator=tasks.fake_estimate) == 0
    rows = _rows(tmp_path / "out")
    assert len(calls) == 4 and len(set(calls)) == 2 and all(c.startswith("sweep-") for c in calls)
    assert [r["yosys.dsp48e2"] for r in rows] == ["1031", "1031", "3000", "3000"]
    assert [r["fits"] for r in rows] == ["1", "1", "0", "0"]
    assert "Yosys: dsp48e2 3000 > 2520 of the XCZU9EG" in rows[2]["why"]
    assert [r["pareto"] for r in rows] == ["0", "1", "0", "0"]          # same resources, 300 MHz is faster
    assert "yosys" in json.loads((tmp_path / "out" / "sweep.json").read_text())["resources_from"]
