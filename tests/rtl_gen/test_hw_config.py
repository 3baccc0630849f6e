"""golden/hw.py HardwareConfig: presets fit their models, bad values and misfits are named."""
import dataclasses

import pytest

from base.errors import ConfigError
from golden.config import PRESETS
from golden.hw import HW_PRESETS, HardwareConfig


def test_presets_fit_their_models():
    HW_PRESETS["mini"].check(PRESETS["mini"])
    for m in ("deit-tiny", "deit-small", "spvit-deit-tiny", "spvit-deit-small"):
        HW_PRESETS["zcu102"].check(PRESETS[m])
        HW_PRESETS["small"].check(PRESETS[m])


@pytest.mark.parametrize("kw,msg", [
    ({"mac_rows": 12}, "mac_rows and mac_cols must be powers of two (got 12 x 64)"),
    ({"mac_rows": 64, "mac_cols": 32}, "mac_rows must divide mac_cols (32 % 64 != 0)"),
    ({"d_max": 100}, "mac_cols must divide d_max and hidden_max (100 % 64"),
    ({"axi_bits": 96}, "axi_bits must be 64, 128 or 256 (got 96)"),
    ({"axi_ports": 3}, "axi_ports must be 1, 2, 4 or 8 (got 3)"),
    ({"clock_mhz": 0}, "clock_mhz must be a number in (0, 1000] (got 0)"),
    ({"n_max": True}, "n_max must be a positive integer (got True)"),
    ({"d_max": 512, "hidden_max": 256}, "hidden_max must be at least d_max (256 < 512)"),
])
def test_bad_hardware(kw, msg):
    with pytest.raises(ConfigError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        dataclasses.replace(HW_PRESETS["zcu102"], **kw)


def test_misfits_are_named():
    bad = HW_PRESETS["mini"].misfits(PRESETS["spvit-deit-tiny"])
    assert "embed_dim 192 > d_max 64" in bad and "197 tokens + 3 package tokens = 200 > n_max 72" in bad
    with pytest.raises(ConfigError, match="hardware mini cannot run spvit-deit-tiny: embed_dim 192 > d_max 64"):
        HW_PRESETS["mini"].check(PRESETS["spvit-deit-tiny"])


def test_ident_depends_on_the_program_relevant_fields_only():
    z = HW_PRESETS["zcu102"]
    assert z.ident() == dataclasses.replace(z, clock_mhz=250.0, name="other").ident()
    assert z.ident() != dataclasses.replace(z, n_max=208).ident()
    assert isinstance(HardwareConfig().ident(), int)


def test_hardware_table_works_as_written(tmp_path):
    """A model TOML's [hardware] table applies as written: on top of the model preset's default
    hardware (mini for the mini model), of its own `preset`, or of the ,HW given."""
    from spvit.commands.sim import resolve
    t = tmp_path / "small-mini.toml"
    t.write_text('preset = "mini"\n[model]\ndepth = 4\nselector_blocks = [2]\n'
                 '[hardware]\nclock_mhz = 250\nmac_rows = 2\n')
    cfg, hw = resolve(str(t))
    assert cfg.model.name == "small-mini" and (hw.mac_rows, hw.mac_cols, hw.n_max, hw.clock_mhz) == (2, 16, 72, 250)
    t.write_text('preset = "mini"\n')
    assert resolve(str(t))[1] == HW_PRESETS["mini"]                       # the model preset's default
    t.write_text('preset = "deit-small"\n[hardware]\npreset = "small"\nclock_mhz = 200.5\n')
    hw = resolve(str(t))[1]
    assert (hw.mac_cols, hw.clock_mhz) == (32, 200.5) and resolve(f"{t},zcu102")[1].mac_cols == 64


@pytest.mark.parametrize("table,msg", [
    ('clock_mhz = "fast"', "clock_mhz in [hardware] must be a finite number (got the string 'fast')"),
    ("mac_rows = 2.5", "mac_rows in [hardware] must be an integer (got 2.5)"),
    ("macs = 4", "unknown field(s) ['macs'] in [hardware]"),
    ("preset = 3", "preset in [hardware] must be a hardware preset name"),
    ('preset = "zcu"', "unknown hardware preset 'zcu'"),
    ("mac_cols = 32", "hardware mini cannot run t: head_dim 16 is not a multiple of mac_cols 32"),
])
def test_hardware_table_errors(tmp_path, table, msg, capsys):
    from spvit.cli import main
    t = tmp_path / "t.toml"
    t.write_text(f'preset = "mini"\n[hardware]\n{table}\n')
    assert main(["report", "--config", str(t)]) == 2
    err = capsys.readouterr().err
    assert f"spvit: error: {msg}" in err and "Traceback" not in err, err


@pytest.mark.parametrize("text,msg", [
    ("[hardware]\nmac_rows = 'eight'\n",
     "hardware file '{f}': mac_rows in [hardware] must be an integer (got the string 'eight')"),
    ("[hardware]\npreset = 'zcu'\n", "unknown hardware preset 'zcu' in '{f}'"),
    ("[hardware\n", "hardware file '{f}' is not valid TOML"),
    ("x = 1\n", "hardware file '{f}' has no [hardware] table"),
    (b"\x80\x81", "hardware file '{f}' is not UTF-8 text"),
])
def test_hardware_file_errors(tmp_path, text, msg):
    from golden.hw import load_hw
    f = tmp_path / "hw.toml"
    f.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError) as e:
        load_hw(str(f))
    assert msg.format(f=f) in str(e.value), str(e.value)
