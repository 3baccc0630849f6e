import dataclasses

import pytest

from golden.config import (DEIT_TINY, MINI, PRESETS, ConfigError, FixedPointConfig, ModelConfig,
                           load_config)


@pytest.mark.parametrize("change,msg", [
    (dict(num_heads=5), "heads must divide embed_dim (192 % 5 != 0)"),
    (dict(patch_size=15), "patch_size must divide img_size (224 % 15 != 0)"),
    (dict(selector="dynamicvit"), "selector 'dynamicvit' is planned but not implemented yet"),
    (dict(selector="foo"), "selector must be one of ('none', 'spvit') (got 'foo')"),
    (dict(selector_blocks=(3,)), "selector_blocks (3,) given but selector is 'none'"),
    (dict(selector="spvit"), "selector 'spvit' needs selector_blocks (e.g. [3, 6, 9])"),
    (dict(selector="spvit", selector_blocks=(6, 3)), "selector_blocks must be strictly increasing (got [6, 3])"),
    (dict(selector="spvit", selector_blocks=(0, 3)), "selector_blocks must lie in 1..depth-1 = 1..11 (got [0, 3])"),
    (dict(selector="spvit", selector_blocks=(3, 12)), "selector_blocks must lie in 1..depth-1 = 1..11 (got [3, 12])"),
    (dict(package_mode="avg"), "package_mode must be one of ('norm', 'sum', 'mean') (got 'avg')"),
    (dict(selector="spvit", selector_blocks=(3, 6), keep_cap=(1, 2, 3)), "keep_cap needs 1 or 2 entries (got 3)"),
    (dict(embed_dim=0), "embed_dim must be a positive integer (got 0)"),
    (dict(mlp_ratio=4.3), "mlp_ratio * embed_dim must be a positive integer"),
    (dict(embed_dim=8192, num_heads=8), "matmul depth above 4096 is not supported"),
])
def test_model_config_errors(change, msg):
    with pytest.raises(ConfigError) as e:
        dataclasses.replace(DEIT_TINY, **change)
    assert msg in str(e.value)


@pytest.mark.parametrize("change,msg", [
    (dict(word_bits=8), "word_bits must be 16"),
    (dict(acc_bits=32), "acc_bits must be 48"),
    (dict(rounding="half_even"), "rounding must be one of ('half_up',) (got 'half_even')"),
    (dict(frac_overrides={"blocks.0.q": 99}), "frac_overrides['blocks.0.q'] must be an integer in [-8, 24] (got 99)"),
    (dict(headroom_bits=-1), "headroom_bits must lie in 0..8 (got -1)"),
])
def test_fixed_point_errors(change, msg):
    with pytest.raises(ConfigError) as e:
        FixedPointConfig(**change)
    assert msg in str(e.value)


def test_presets_shapes():
    assert PRESETS["deit-small"].embed_dim == 384 and PRESETS["deit-small"].num_heads == 6
    assert PRESETS["deit-tiny"].num_tokens == 197 and PRESETS["deit-tiny"].head_dim == 64
    assert PRESETS["spvit-deit-tiny"].selector_blocks == (3, 6, 9)
    assert MINI.stages == 2 and MINI.num_tokens == 65


def test_toml_overrides(tmp_path):
    f = tmp_path / "my.toml"
    f.write_text('preset = "spvit-deit-small"\n[model]\nselector_blocks = [4, 8]\nkeep_cap = 50\n'
                 '[fixed_point]\nfrac_overrides = {"blocks.0.q" = 10}\n')
    c = load_config(f)
    assert c.model.name == "my" and c.model.embed_dim == 384 and c.model.selector_blocks == (4, 8)
    assert c.model.keep_cap == (50,) and c.model.cap(1) == 50
    assert c.fixed_point.frac_overrides == {"blocks.0.q": 10}


def test_shipped_configs_load():
    from pathlib import Path
    for f in (Path(__file__).resolve().parents[2] / "configs").glob("*.toml"):
        load_config(f)


@pytest.mark.parametrize("text,msg", [
    ("[model]\nheads = 3\n", "unknown field(s) ['heads'] in [model]"),
    ("[modle]\n", "unknown section(s) ['modle']"),
    ('preset = "deit-huge"\n', "unknown preset 'deit-huge'"),
    ("[model\n", "is not valid TOML"),
    ("[model]\nnum_heads = 5\n", "heads must divide embed_dim (192 % 5 != 0)"),
])
def test_toml_errors(tmp_path, text, msg):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(f)
    assert msg in str(e.value)


def test_unknown_config_name():
    with pytest.raises(ConfigError, match="unknown config 'deit-xl'"):
        load_config("deit-xl")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("nowhere.toml")


def test_model_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        MINI.depth = 3
    assert isinstance(MINI, ModelConfig)


@pytest.mark.parametrize("text,msg", [
    ('[model]\nmlp_ratio = "four"\n', "mlp_ratio in [model] must be a finite number (got the string 'four')"),
    ('[model]\nselector = "spvit"\nselector_blocks = "2,4"\n',
     "selector_blocks in [model] must be a list of integers, e.g. [2, 4] (got the string '2,4')"),
    ('[model]\ndepth = 6.0\n', "depth in [model] must be an integer (got 6.0)"),
    ('[model]\ndepth = true\n', "depth in [model] must be an integer (got the boolean true)"),
    ('[model]\nmlp_ratio = nan\n', "mlp_ratio in [model] must be a finite number (got nan)"),
    ('[model]\nname = 5\n', "name in [model] must be a string (got 5)"),
    ('[model]\ndepth = 100000\n', "depth must be at most 128 blocks (got 100000)"),
    ("model = 5\n", "[model] in"),
    ("hardware = 3\n", "[hardware] in"),
    ('preset = "mini"\n[fixed_point]\nfrac_overrides = 5\n', "frac_overrides in [fixed_point] must be a table"),
    ('preset = "mini"\n[fixed_point]\nfrac_overrides = { "blocks.0.q" = true }\n', "frac_overrides['blocks.0.q'] must be an integer"),
    ("preset = 5\n", "must be a string such as \"deit-tiny\" (got 5)"),
    ("", "is empty; name the model it starts from, e.g. preset = \"deit-tiny\""),
    ("# only a comment\n", "is empty"),
    ('preset = "mini"\n[model]\nkeep_cap = 100\n', "keep_cap entries must be at most the 64 patch tokens a stage can score"),
])
def test_toml_value_errors(tmp_path, text, msg, capsys):
    from spvit.cli import main
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(f)
    assert msg in str(e.value)
    assert main(["info", "--config", str(f)]) == 2
    err = capsys.readouterr().err
    assert "spvit: error:" in err and msg in err and "Traceback" not in err


def test_config_files_that_are_not_toml(tmp_path):
    b = tmp_path / "weights.toml"
    b.write_bytes(bytes(range(256)))
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_config(b)
    b.write_bytes(b"preset = \"mini\"\x00\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(b)
    with pytest.raises(ConfigError, match="is a directory; give a preset"):
        load_config(tmp_path)
    import os
    if os.geteuid() != 0:                               # root reads anything
        b.write_text('preset = "mini"\n')
        b.chmod(0)
        with pytest.raises(ConfigError, match="cannot read config file"):
            load_config(b)


def test_missing_preset_is_announced(tmp_path, capsys):
    f = tmp_path / "m.toml"
    f.write_text("[model]\ndepth = 4\n")
    c = load_config(f)
    assert c.model.embed_dim == 192 and c.model.depth == 4 and c.preset == "deit-tiny"
    err = capsys.readouterr().err
    assert err.startswith("spvit: note: ") and "has no `preset`: fields not set under [model] take the deit-tiny" in err
