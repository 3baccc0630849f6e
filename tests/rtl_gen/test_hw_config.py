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
