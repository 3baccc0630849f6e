import dataclasses

import pytest

from base.errors import ConfigError
from golden.config import DEIT_TINY, MINI, PRESETS, FixedPointConfig, ModelConfig, load_config


@pytest.mark.parametrize("change,msg", [
    (dict(num_heads=5), "heads must divide embed_dim (192 % 5 != 0)"),
    (dict(patch_size=15), "patch_size must divide img_size (224 % 15 != 0)"),
    (dict(selector="evit"), "selector 'evit' needs selector_blocks (e.g. [3, 6, 9])"),
    (dict(selector="foo"), "selector must be one of ('none', 'spvit', 'dynamicvit', 'evit', 'evovit') (got 'foo')"),
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


DV = dict(selector="dynamicvit", selector_blocks=(3, 6, 9))


@pytest.mark.parametrize("change,msg", [
    (DV, "selector 'dynamicvit' needs keep_rate (e.g. [0.7])"),
    (dict(DV, keep_rate=(0.7, 0.5)), "keep_rate needs 1 or 3 entries, one per stage (got 2)"),
    (dict(DV, keep_rate=(1.5,)), "keep_rate entries must lie in (0, 1] (got [1.5])"),
    (dict(DV, keep_rate=(0.5, 0.6, 0.4)), "keep_rate per stage (fractions of all patch tokens) must not increase"),
    (dict(DV, keep_rate=(0.01,)),
     "keep_rate [0.01] keeps int(196 * 0.0001) = 0 patch tokens at stage 1; raise keep_rate"),
    (dict(DV, keep_rate=(0.7,), keep_cap=(50,)),
     "keep_cap applies to selector 'spvit' only (got selector 'dynamicvit')"),
    (dict(DV, keep_rate=(0.7,), package_mode="sum"), "package_mode applies to selector 'spvit' only"),
    (dict(DV, keep_rate=(0.7,), embed_dim=6, num_heads=1), "the DynamicViT predictor needs embed_dim divisible by 4"),
    (dict(DV, keep_rate="abc"), "keep_rate must be a number or a list of numbers (got 'abc')"),
    (dict(selector="spvit", selector_blocks=(3,), keep_rate=(0.7,)), "keep_rate is not used by selector 'spvit'"),
    (dict(selector="spvit", selector_blocks=(3,), fuse_token=False), "fuse_token applies to selector 'evit' only"),
    (dict(selector="evit", selector_blocks=(3,), keep_rate=(0.7,), fuse_token="yes"),
     "fuse_token must be true or false"),
    (dict(selector="evit", selector_blocks=(3,), keep_rate=(0.7,), score_momentum=0.5),
     "score_momentum applies to selector 'evovit' only"),
    (dict(selector="evit", selector_blocks=(3, 12), keep_rate=(0.7,)),
     "selector_blocks must lie in 0..depth-1 = 0..11"),
    (dict(selector="evovit", selector_blocks=(0, 4), keep_rate=(0.5,)),
     "selector_blocks must lie in 1..depth-1 = 1..11"),
    (dict(selector="evovit", selector_blocks=(4, 8), keep_rate=(0.5,), score_momentum=1.5),
     "score_momentum must lie in [0, 1] (got 1.5)"),
    (dict(selector="evovit", selector_blocks=(4, 8), keep_rate=(0.004,)),
     "keeps int(196 * rate) = 0 tokens at stage 0"),
    (dict(selector="none", keep_rate=(0.7,)), "keep_rate is not used by selector 'none'"),
])
def test_scheme_config_errors(change, msg):
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


def test_scheme_presets_and_toml(tmp_path):
    assert PRESETS["dynamicvit-deit-small"].keep_rate == (0.7,)
    assert PRESETS["evovit-deit-tiny"].selector_blocks == (4, 8)
    assert PRESETS["evit-deit-tiny"].scheme.name == "evit" and PRESETS["mini-evovit"].stages == 2
    ok = dataclasses.replace(DEIT_TINY, selector="evit", selector_blocks=(0, 5), keep_rate=0.5)
    assert ok.keep_rate == (0.5,)                      # a scalar is one rate for every stage
    f = tmp_path / "evit.toml"
    f.write_text('preset = "evit-deit-tiny"\n[model]\nfuse_token = false\nkeep_rate = [0.9, 0.8, 0.7]\n')
    m = load_config(f).model
    assert m.fuse_token is False and m.keep_rate == (0.9, 0.8, 0.7)
    assert [c[1] for c in m.scheme.counts(m)] == [177, 142, 100]          # ceil(0.9*196), ceil(0.8*177), ceil(0.7*142)


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
    """Every model config in configs/ loads (sweep grids, configs/sweep-*.toml, are loaded by
    tests/cluster/test_sweep.py)."""
    from pathlib import Path
    files = [f for f in (Path(__file__).resolve().parents[2] / "configs").glob("*.toml")
             if not f.name.startswith("sweep-")]
    assert files
    for f in files:
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
    ('preset = "mini"\n[fixed_point]\nfrac_overrides = { "blocks.0.q" = true }\n',
     "frac_overrides['blocks.0.q'] must be an integer"),
    ("preset = 5\n", "must be a string such as \"deit-tiny\" (got 5)"),
    ("", "is empty; name the model it starts from, e.g. preset = \"deit-tiny\""),
    ("# only a comment\n", "is empty"),
    ('preset = "mini"\n[model]\nkeep_cap = 100\n',
     "keep_cap entries must be at most the 64 patch tokens a stage can score"),
    # the fields of the other schemes (issue 9) are type-checked the same way
    ('preset = "mini-evit"\n[model]\nfuse_token = "yes"\n',
     "fuse_token in [model] must be true or false (got the string 'yes')"),
    ('preset = "mini-evit"\n[model]\nfuse_token = 1\n', "fuse_token in [model] must be true or false (got 1)"),
    ('preset = "mini-evovit"\n[model]\nscore_momentum = true\n',
     "score_momentum in [model] must be a finite number (got the boolean true)"),
    ('preset = "mini-dynamicvit"\n[model]\nkeep_rate = "0.7"\n',
     "keep_rate in [model] must be a list of numbers, e.g. [0.7] (got the string '0.7')"),
    ('preset = "mini-dynamicvit"\n[model]\nkeep_rate = [0.7, nan]\n',
     "each entry of keep_rate in [model] must be a finite number"),
    ('preset = "mini-dynamicvit"\n[model]\nkeep_cap = 100\n', "keep_cap applies to selector 'spvit' only"),
    ('preset = "mini"\n[preprocess]\npad = "2"\n', "pad in [preprocess] must be an integer (got the string '2')"),
    ('preset = "mini"\n[model]\npreprocess = { pad = 1.5 }\n',
     "pad in [model.preprocess] must be an integer (got 1.5)"),
    ('preset = "mini"\n[model]\npreprocess = 3\n', "[model.preprocess] must be a table of fields (got 3)"),
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
