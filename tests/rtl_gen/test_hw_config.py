"""golden/hw.py HardwareConfig: presets fit their models, bad values and misfits are named."""
import dataclasses

import pytest

from golden.config import PRESETS, ConfigError
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
