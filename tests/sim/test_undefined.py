"""No output depends on storage that nothing wrote. Shapes that leave lanes unused (embed_dim
below d_max, a token count that is no multiple of mac_rows, selectors that drop tokens into a
package token) run on Icarus, which carries never-written memory as X: the bench stops at the
first X on an output (sim/tb_accel.py), so bit-exact here also means that no X reached one.
The same checks catch a program that stores a region nothing wrote: Icarus names the output
and the descriptor; Verilator with random initial values (x_seed) stores bytes that differ
from the interpreter's zeros. A failing simulator is a SimulationError naming its log, and
`spvit` exits 2 with it."""
from __future__ import annotations

import pytest

from base.errors import SimulationError
from golden import isa
from golden.arith import quantize
from golden.compiler import compile_model
from golden.config import ModelConfig
from golden.hw import HardwareConfig
from quant.calibrate import calibrated_random
from sim.accel import compare_runs, run_accel

# small enough for Icarus: a 4 x 8 array, 32 channels, 20 tokens
HW = HardwareConfig(name="xtiny", mac_rows=4, mac_cols=8, n_max=20, d_max=32, hidden_max=64, axi_ports=1,
                    axi_bits=64, desc_max=128, pwl_max=1024, stages_max=2)


def unused_lanes_model(heads: int, mode: str = "norm"):
    """embed_dim 24 of d_max 32, 5 tokens in tiles of 4, selectors before blocks 1 and 2."""
    cfg = ModelConfig(name=f"unused-lanes-h{heads}", img_size=8, patch_size=4, in_chans=1, embed_dim=24, depth=3,
                      num_heads=heads, mlp_ratio=2, num_classes=10, selector="spvit", selector_blocks=(1, 2),
                      package_mode=mode)
    assert not HW.misfits(cfg) and cfg.embed_dim < HW.d_max and cfg.num_tokens % HW.mac_rows
    q, imgs = calibrated_random(cfg, 0, 3)
    return q, list(quantize(imgs.numpy(), q.img_frac)[:2])


@pytest.mark.parametrize("heads, mode", [(3, "norm"), (1, "sum")])
def test_icarus_runs_unused_lanes_bit_exact(heads, mode, measured):
    q, x = unused_lanes_model(heads, mode)
    img = compile_model(q, HW, checkpoints=True)
    runs = run_accel(img, x, pause=0.2, seed=1, sim="icarus")
    c = compare_runs(img, x, runs)
    c.check(f"{q.cfg.name} on Icarus")
    dropped = sum(int((~m).sum()) for r in runs for m in r.results.masks)
    assert dropped, "no selector dropped a token: the package path did not run"
    measured(f"Icarus, embed_dim 24 of 32, {heads} head(s), package {mode}, 5 tokens in tiles of 4, {dropped} tokens "
             f"dropped: BIT-EXACT and no X on any output, {c.compared:,} elements (result region bytes included); "
             f"sim {sum(r.wall_s for r in runs):.0f} s")


def _store_unwritten_channels(img):
    """A poke that makes the first STORE of a block's tokens store channels 8..31 of its buffer:
    24..31 were never written (the interpreter has zeros there)."""
    d0 = img.regions["program"][0]
    for i in range(img.manifest["descriptors"]):
        d = isa.decode(img.data[d0 + i * isa.DESC_BYTES:][:isa.DESC_BYTES])
        if d.op.name == "STORE" and d["mode"] == isa.STORE_TILES:
            f = {k: v for k, v in d.items() if k != "op"}
            f["c0"] = HW.d_max - f["w"]
            assert f["c0"] + f["w"] > img.manifest["model"]["embed_dim"]
            return i, [(d0 + i * isa.DESC_BYTES, isa.encode("STORE", **f))]
    raise AssertionError("no STORE of tiles in the program")


def test_a_store_of_unwritten_channels_is_caught(measured):
    q, x = unused_lanes_model(3)
    img = compile_model(q, HW, checkpoints=True)
    i, poke = _store_unwritten_channels(img)
    xs, pokes = [x[0], x[0]], [poke, []]
    runs = run_accel(img, xs, pokes=pokes, pause=0.1, seed=2, sim="icarus")
    assert len(runs) == 1 and runs[0].undefined.startswith("m_axi0__wdata = ") \
        and runs[0].undefined.endswith(f"(descriptor {i})"), runs
    stopped_at = runs[0].undefined
    c = compare_runs(img, xs, runs, pokes=pokes)
    assert c.bad == 2 and "undefined value (X) on an output" in c.first[0] and "image 1: not run" in c.first[1]
    caught = []
    for x_seed in (1, 2):
        runs = run_accel(img, xs, pokes=pokes, pause=0.1, seed=2, sim="verilator", x_seed=x_seed)
        bad = compare_runs(img, xs[:1], runs[:1], pokes=pokes[:1])
        assert bad.bad and bad.first[0].startswith("image 0 block "), bad.first     # the stored checkpoint
        compare_runs(img, xs[1:], runs[1:]).check(f"the unpoked program, x seed {x_seed}")
        caught.append(bad.bad)
    measured(f"a STORE of never-written channels (descriptor {i}): Icarus stops at {stopped_at.split(' =')[0]} "
             f"({stopped_at.split(' at ')[-1]}); Verilator with random initial values: {caught} elements differ from "
             f"the interpreter (seeds 1, 2), the unpoked program bit-exact")


def test_a_failing_bench_is_a_simulation_error(tmp_path):
    """A bench that raises: SimulationError with the exception line and the log path."""
    from rtl_gen.primitives.recip import Reciprocal
    from sim.runner import run_bench
    with pytest.raises(SimulationError) as e:
        run_bench(Reciprocal(8, 10), "recip_bad_spec", "sim.tb_stream", {}, sim="icarus", tag="bad_spec")
    msg = str(e.value)
    assert "icarus simulation of recip_bad_spec failed" in msg and "KeyError" in msg and "log: " in msg
    assert msg.rsplit("log: ", 1)[1].endswith("sim.log")


def test_spvit_run_without_the_simulator_exits_2(demo_package, monkeypatch, capsys, tmp_path):
    """iverilog missing from PATH: `spvit run --sim icarus` ends with one error line naming the log."""
    import sys
    from pathlib import Path

    from spvit.cli import main
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))      # the venv only: no iverilog
    rc = main(["run", "--package", str(demo_package), "--sim", "icarus", "--images", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("spvit: error: icarus build of spvit_accel_mini failed") and "log: " in err
    assert "iverilog" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_random_init_seed_must_be_positive():
    from sim.runner import random_init_plusargs
    assert random_init_plusargs(3) == ["+verilator+rand+reset+2", "+verilator+seed+3"]
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="x_seed must be a positive integer"):
            random_init_plusargs(bad)

