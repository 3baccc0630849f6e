"""`spvit regress`: the draw is deterministic and only yields configurations the hardware and
the compiler accept, with selectors, caps (0, binding, keep-all) and several array shapes; a
failing configuration is written as a TOML that reruns it alone; two small configurations run
on one Verilator build bit-exact, and one of them again from its TOML."""
from __future__ import annotations

import dataclasses

import pytest

from base.cluster import Executor
from sim import regress
from sim.regress import Case, draw, groups, load_repro, repro_text
from spvit.cli import main
from tests.cluster import tasks


def test_draw_is_deterministic_and_fits():
    cases = draw(12, 5, per_hw=3, images=2)
    assert cases == draw(12, 5, per_hw=3, images=2)
    assert [c.index for c in cases] == list(range(12)) and len(groups(cases)) == 4
    assert draw(6, 5, per_hw=3, images=2) == cases[:6]          # a prefix of a longer draw
    for c in cases:
        assert not c.hw.misfits(c.model), c
        assert not regress.compile_refusal(c)
    assert all(len({c.hw for c in g}) == 1 for g in groups(cases))


def test_draw_covers_the_space():
    cases = draw(60, 0, per_hw=3, images=1, check=False)        # shapes only (no compile check)
    m = [c.model for c in cases]
    assert {c.hw.mac_rows for c in cases} == {4, 8, 16} and {c.hw.mac_cols for c in cases} == {8, 16}
    assert {c.hw.axi_ports for c in cases} == {1, 2, 4} and {c.hw.axi_bits for c in cases} == {64, 128, 256}
    assert any(x.stages == 0 for x in m) and any(x.stages >= 2 for x in m)
    assert {x.package_mode for x in m if x.stages and x.selector == "spvit"} == {"norm", "sum", "mean"}
    assert {x.selector for x in m} == {"none", "spvit", "dynamicvit", "evit", "evovit"}
    caps = [k for x in m for k in x.keep_cap]
    assert 0 in caps and any(k >= x.num_patches for x in m for k in x.keep_cap)
    assert len({x.num_heads for x in m}) >= 3 and len({x.depth for x in m}) >= 4
    assert len({x.num_tokens for x in m}) >= 5 and len({x.in_chans for x in m}) == 3


def test_images_include_int16_corners():
    c = draw(1, 3, images=4)[0]
    xs = regress.images_for(c, regress.qmodel(c))
    assert len(xs) == 4 and xs[1].min() == -32768 and xs[1].max() == 32767
    assert all(x.shape == (c.model.in_chans, c.model.img_size, c.model.img_size) for x in xs)


def test_repro_round_trip(tmp_path):
    c = draw(4, 2, x_seeds=2)[3]
    assert len(c.x_seeds) == 2 and min(c.x_seeds) >= 1
    p = tmp_path / "c.toml"
    p.write_text(repro_text(c, origin="test"))
    assert load_repro(p) == c


def test_failing_configuration_is_written_out(tmp_path, capsys):
    cases = draw(3, 1, images=1)
    results, _ = regress.run_regression(cases, Executor("inline", progress=False), tmp_path, "test run",
                                        runner=tasks.failing_group)
    out = capsys.readouterr().out
    assert [r.ok for r in results] == [True, False, True]
    f = tmp_path / "regress-fail-1.toml"
    assert f.is_file() and load_repro(f) == cases[1]
    assert "# result: 2 of 100 elements differ" in f.read_text() and "image 0 logits" in f.read_text()
    assert "FAIL" in out and "first mismatch: image 0 logits at (3,): RTL 5 != golden 7" in out
    assert not (tmp_path / "regress-fail-0.toml").exists()


@pytest.mark.parametrize("text, msg", [("[regress\n", "is not valid TOML"),
                                       ("[regress]\nindex = 0\n", "lacks section(s) ['hardware', 'model']"),
                                       ("[regress]\n[model]\nembed_dim = 3\nnum_heads = 2\n[hardware]\n",
                                        "heads must divide embed_dim")])
def test_bad_repro_exits_2(tmp_path, capsys, text, msg):
    p = tmp_path / "r.toml"
    p.write_text(text)
    assert main(["regress", "--repro", str(p)]) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err


def test_repro_that_does_not_fit(tmp_path, capsys):
    c = draw(1, 0)[0]
    c = dataclasses.replace(c, hw=dataclasses.replace(c.hw, n_max=2))
    p = tmp_path / "r.toml"
    p.write_text(repro_text(c))
    assert main(["regress", "--repro", str(p)]) == 2
    assert "does not fit the hardware" in capsys.readouterr().err


SMALL = ["--configs", "2", "--per-hw", "2", "--images", "2", "--seed", "3", "--workers", "1", "--no-progress",
         "--x-seeds", "2"]


def test_two_configurations_on_the_rtl(tmp_path, capsys, measured):
    """One small hardware (one Verilator build with random initial values), two models, two
    images each (one a corner image) under two seeds of random initial values, bit-exact; then
    the first again from its TOML (seeds included), on the cached build."""
    cases = draw(2, 3, per_hw=2, images=2, x_seeds=2)
    assert len(groups(cases)) == 1
    assert main(["regress", *SMALL, "--out", str(tmp_path), "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "result: BIT-EXACT" in out and " 0 mismatches, 0 errors" in out and "x 2 seeds of random initial" in out
    import json
    js = json.loads((tmp_path / "r.json").read_text())
    s = js["summary"]
    assert s["configurations"] == 2 and s["mismatches"] == 0 and s["elements_compared"] > 1000 and s["x_seeds"] == 2
    assert [len(r["cycles"]) for r in js["results"]] == [4, 4]          # 2 images x 2 seeds
    p = tmp_path / "c0.toml"
    p.write_text(repro_text(cases[0]))
    assert main(["regress", "--repro", str(p), "--workers", "1", "--no-progress"]) == 0
    assert "result: BIT-EXACT" in capsys.readouterr().out
    measured(f"spvit regress {' '.join(SMALL)}: 2 configurations BIT-EXACT, {s['elements_compared']:,} elements, "
             f"{s['cycles']:,} cycles, wall {s['wall_s']:.0f} s (one Verilator build)")


def test_case_is_hashable_and_grouped_by_hardware():
    c = draw(2, 0, per_hw=1)
    assert isinstance(c[0], Case) and len(groups(c)) == 2


def test_hang_timeout_follows_the_cycle_model(monkeypatch):
    """A run counts as hung after 8x the modeled cycles of the slowest image (+100k), or after
    HANG_DEFAULT cycles when the cycle model cannot time the program."""
    import rtl_gen.tools.cycles
    from golden.compiler import compile_model
    c = draw(1, 3, images=2)[0]
    q = regress.qmodel(c)
    img = compile_model(q, c.hw, checkpoints=True)
    xs = regress.images_for(c, q)
    worst = max(rtl_gen.tools.cycles.program_cycles(img, rtl_gen.tools.cycles.trace(img, x)).total for x in xs)
    assert regress.hang_timeout(img, xs) == regress.HANG_FACTOR * worst + regress.HANG_SLACK

    def boom(*a, **k):
        raise IndexError("no candidates")
    monkeypatch.setattr(rtl_gen.tools.cycles, "program_cycles", boom)
    assert regress.hang_timeout(img, xs) == regress.HANG_DEFAULT
