import dataclasses

import pytest

from golden.config import PRESETS, ConfigError
from rtl_gen.config import HW_PRESETS, HardwareConfig, hw_for


def test_presets_fit_their_models():
    assert hw_for(PRESETS["mini"]).name == "mini"
    for m in ("deit-tiny", "deit-small", "spvit-deit-tiny", "spvit-deit-small"):
        assert hw_for(PRESETS[m], "zcu102").dsp_estimate <= 2520


def test_zcu102_dsp_fits():
    assert HW_PRESETS["zcu102"].dsp_estimate == 2 * 16 * 32 + 16 * 42 <= 2520


@pytest.mark.parametrize("kw,msg", [
    (dict(token_buffer=100, n_max=200), r"token_buffer too small for n_max \(100 < 200\)"),
    (dict(mac_rows=32, mac_cols=64), r"estimated DSP48E2 of a block \(5440 = 2 MAC arrays 32x64 \+ 32 lanes x 42\) "
                                     r"exceeds dsp_budget 2520"),
    (dict(mac_rows=6, mac_cols=16), r"mac_rows must divide mac_cols \(16 % 6 != 0\)"),
    (dict(mac_cols=0), r"mac_cols must be a positive integer \(got 0\)"),
    (dict(clock_mhz=0), r"clock_mhz must lie in \(0, 1000\]"),
])
def test_bad_hardware(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        dataclasses.replace(HW_PRESETS["small"], **kw)


def test_checked_against_model():
    tiny = PRESETS["deit-tiny"]
    with pytest.raises(ConfigError, match=r"MAC array wider than the embed dim \(mac_cols 256 > embed_dim 192\)"):
        HardwareConfig(mac_rows=2, mac_cols=256, n_max=200, token_buffer=200).check(tiny)
    with pytest.raises(ConfigError, match=r"mac_cols must divide embed_dim"):
        HardwareConfig(mac_rows=2, mac_cols=40, n_max=200, token_buffer=200).check(tiny)
    with pytest.raises(ConfigError, match=r"mac_cols must divide head_dim \(16 % 32 != 0\)"):
        HardwareConfig(mac_rows=2, mac_cols=32, n_max=68, token_buffer=68).check(PRESETS["mini"])
    with pytest.raises(ConfigError, match=r"n_max too small for spvit-deit-tiny \(197 < 200 = 197 tokens \+ 3 package tokens\)"):
        HardwareConfig(n_max=197, token_buffer=197).check(PRESETS["spvit-deit-tiny"])
    with pytest.raises(ConfigError, match=r"unknown hardware preset 'zcu' ; use one of".replace(" ;", ";")):
        hw_for(tiny, "zcu")


def test_hardware_table_works_as_written(tmp_path):
    """A [hardware] table without `preset` used to be ignored and the model checked against
    zcu102 ('MAC array wider than the embed dim'); it applies to the model preset's default."""
    from rtl_gen.cli import resolve
    t = tmp_path / "small-mini.toml"
    t.write_text('preset = "mini"\n[model]\ndepth = 4\nselector_blocks = [2]\n[hardware]\nclock_mhz = 250\nmac_rows = 2\n')
    cfg, hw = resolve(str(t))
    assert cfg.model.name == "small-mini" and (hw.mac_rows, hw.mac_cols, hw.n_max, hw.clock_mhz) == (2, 8, 68, 250)
    t.write_text('preset = "mini"\n')
    assert resolve(str(t))[1] == HW_PRESETS["mini"]                       # the model preset's default
    t.write_text('preset = "deit-small"\n[hardware]\npreset = "small"\nclock_mhz = 200.5\n')
    assert resolve(str(t))[1].mac_cols == 16 and resolve(f"{t},zcu102")[1].mac_cols == 32


@pytest.mark.parametrize("table,msg", [
    ('clock_mhz = "fast"', "clock_mhz in [hardware] must be a finite number (got the string 'fast')"),
    ("mac_rows = 2.5", "mac_rows in [hardware] must be an integer (got 2.5)"),
    ("macs = 4", "unknown field(s) ['macs'] in [hardware]"),
    ("preset = 3", "preset in [hardware] must be a hardware preset name"),
    ('preset = "zcu"', "unknown hardware preset 'zcu'"),
    ("mac_cols = 32", "mac_cols must divide head_dim (16 % 32 != 0)"),
])
def test_hardware_table_errors(tmp_path, table, msg, capsys):
    from spvit.cli import main
    t = tmp_path / "h.toml"
    t.write_text(f'preset = "mini"\n[hardware]\n{table}\n')
    assert main(["report", "--config", str(t)]) == 2
    err = capsys.readouterr().err
    assert f"spvit: error: {msg}" in err and "Traceback" not in err, err
