import subprocess
import sys

import pytest

from golden.config import PRESETS
from golden.float_model import DeiT, param_count
from golden.macs import tokens_per_block, total_macs, total_params


def test_deit_figures():
    assert abs(total_macs(PRESETS["deit-small"]) / 1e9 - 4.6) < 0.01
    assert abs(total_params(PRESETS["deit-small"]) / 1e6 - 22.05) < 0.005
    assert abs(total_macs(PRESETS["deit-tiny"]) / 1e9 - 1.25) < 0.01
    assert abs(total_params(PRESETS["deit-tiny"]) / 1e6 - 5.72) < 0.005


@pytest.mark.parametrize("name", ["deit-tiny", "spvit-deit-tiny", "mini"])
def test_param_formula_matches_float_twin(name):
    assert total_params(PRESETS[name]) == param_count(DeiT(PRESETS[name]))


def test_keep_rates_reduce_macs():
    cfg = PRESETS["spvit-deit-small"]
    toks = tokens_per_block(cfg, (0.7, 0.5, 0.3))
    assert toks[:3] == [197] * 3 and toks[3] == 1 + 137 + 1 and toks[6] == 1 + 98 + 2 and toks[9] == 1 + 59 + 3
    assert total_macs(cfg, (0.7, 0.5, 0.3)) < 0.7 * total_macs(cfg)
    with pytest.raises(ValueError, match="needs 3 rates"):
        tokens_per_block(cfg, (0.5,))


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "spvit.cli", *args], capture_output=True, text=True)


def test_info_cli():
    r = run_cli("info", "--config", "deit-small")
    assert r.returncode == 0 and "22,050,664 (22.05 M)" in r.stdout and "total 4.599 GMAC" in r.stdout
    r = run_cli("info", "--config", "deit-tiny")
    assert "(5.72 M)" in r.stdout and "total 1.254 GMAC" in r.stdout
    r = run_cli("info", "--config", "spvit-deit-tiny", "--keep", "0.7,0.5,0.3")
    assert r.returncode == 0 and "keep 0.7,0.5,0.3" in r.stdout


@pytest.mark.parametrize("args,msg", [
    (("info", "--config", "spvit-deit-tiny", "--keep", "0.7,0.5"), "--keep needs 3 rates"),
    (("info", "--config", "spvit-deit-tiny", "--keep", "a,b,c"), "argument --keep: takes comma-separated fractions"),
    (("info", "--config", "nope"), "unknown config 'nope'"),
])
def test_info_cli_errors(args, msg):
    r = run_cli(*args)
    assert r.returncode == 2 and msg in r.stderr and r.stdout == ""


@pytest.mark.parametrize("name", ["dynamicvit-deit-tiny", "evit-deit-small", "evovit-deit-small", "mini-evit"])
def test_param_formula_matches_float_twin_schemes(name):
    assert total_params(PRESETS[name]) == param_count(DeiT(PRESETS[name]))


def test_fixed_count_schemes_macs():
    from golden.macs import count, schedule
    dv = PRESETS["dynamicvit-deit-small"]
    assert tokens_per_block(dv) == [197] * 3 + [138] * 3 + [97] * 3 + [68] * 3
    ev = PRESETS["evit-deit-small"]
    assert schedule(ev)[3] == (197, 140) and schedule(ev)[6] == (140, 100) and schedule(ev)[11] == (72, 72)
    rows = count(ev)
    assert rows[3].macs == 4 * 197 * 384 ** 2 + 2 * 197 ** 2 * 384 + 2 * 140 * 384 * 1536
    assert rows[3].selector_macs == (196 - 138) * 384                          # the fused token
    assert count(ev, unpruned=True)[3].selector_macs == 0
    eo = PRESETS["evovit-deit-small"]
    assert tokens_per_block(eo) == [197] * 4 + [99] * 8
    assert total_macs(eo) < 0.7 * total_macs(eo, unpruned=True)
    with pytest.raises(ValueError, match="--keep sets the keep rates of adaptive selectors"):
        tokens_per_block(dv, (0.5, 0.3, 0.1))


def test_info_cli_schemes():
    r = run_cli("info", "--config", "evit-deit-small")
    assert r.returncode == 0 and "evit, as configured (keep_rate 0.7)" in r.stdout and "197>140" in r.stdout
    assert "per selector" not in r.stdout
    r = run_cli("info", "--config", "dynamicvit-deit-tiny", "--keep", "0.5,0.3,0.1")
    assert r.returncode == 2 and "--keep sets the keep rates of adaptive selectors (spvit)" in r.stderr
