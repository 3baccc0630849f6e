"""Checkpoint handlers and every way a checkpoint can be wrong."""
from __future__ import annotations

import dataclasses
import os

import pytest
import torch
from safetensors.torch import save_file

from golden.config import load_config
from golden.float_model import DeiT
from quant import schemes
from quant.loaders import HANDLERS, CheckpointError, fit, infer_config, load_float_model, read_checkpoint
from spvit.cli import main


def _same(sd, ref):
    assert set(sd) == set(ref)
    for k in ref:
        assert torch.equal(sd[k], ref[k]), k


def test_registry_is_typed():
    assert set(HANDLERS) == {"torch", "safetensors", "onnx"}
    for h in HANDLERS.values():
        assert dataclasses.is_dataclass(h)


@pytest.mark.parametrize("wrap", ["bare", "model", "state_dict", "module_prefix"])
def test_torch_formats(tmp_path, state, cfg, wrap):
    obj = {"bare": state, "model": {"model": state, "epoch": 3}, "state_dict": {"state_dict": state},
           "module_prefix": {"module." + k: v for k, v in state.items()}}[wrap]
    p = tmp_path / "m.pth"
    torch.save(obj, p)
    ck = read_checkpoint(p)
    _same(fit(ck, cfg.model), state)


def test_safetensors_and_fp16(tmp_path, ckpt, state, cfg):
    _same(fit(read_checkpoint(ckpt), cfg.model), state)
    p = tmp_path / "half.safetensors"
    save_file({k: v.half() for k, v in state.items()}, str(p))
    sd = fit(read_checkpoint(p), cfg.model)
    assert all(v.dtype == torch.float32 for v in sd.values())
    m = load_float_model(p, cfg.model)
    assert isinstance(m, DeiT) and not m.training


def test_spvit_per_head_copies_load_as_they_are(tmp_path, state, cfg):
    sd = dict(state)
    for k in list(sd):
        if k.startswith("score_predictor.0.in_conv."):
            h = int(k.split(".")[3])
            sd[k] = state[k.replace(f"in_conv.{h}.", "in_conv.0.")].clone()
    p = tmp_path / "copies.pth"
    torch.save({"model": sd}, p)
    m = load_float_model(p, cfg.model)
    assert torch.equal(m.score_predictor[0].in_conv[3][1].weight, sd["score_predictor.0.in_conv.0.1.weight"])


def _err(tmp_path, sd, cfg, name="m.pth"):
    p = tmp_path / name
    torch.save(sd, p)
    with pytest.raises(CheckpointError) as e:
        load_float_model(p, cfg)
    return str(e.value)


def test_missing_and_unexpected_keys(tmp_path, state, cfg):
    sd = dict(state)
    del sd["blocks.3.mlp.fc2.bias"]
    sd["blocks.3.mlp.extra.weight"] = torch.zeros(3)
    msg = _err(tmp_path, sd, cfg.model)
    assert "missing keys (1): blocks.3.mlp.fc2.bias" in msg
    assert "unexpected keys (1): blocks.3.mlp.extra.weight" in msg


def test_shape_mismatch_names_both_shapes(tmp_path, state, cfg):
    sd = dict(state)
    sd["blocks.1.attn.proj.weight"] = torch.zeros(64, 32)
    msg = _err(tmp_path, sd, cfg.model)
    assert "shape mismatch (1): blocks.1.attn.proj.weight: checkpoint [64, 32] vs model [64, 64]" in msg


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights(tmp_path, state, cfg, bad):
    sd = dict(state)
    w = sd["blocks.2.mlp.fc1.weight"].clone()
    w[3, 5] = bad
    sd["blocks.2.mlp.fc1.weight"] = w
    msg = _err(tmp_path, sd, cfg.model)
    assert "non-finite weights" in msg and "blocks.2.mlp.fc1.weight" in msg


def test_config_that_does_not_fit_suggests_one(tmp_path, cfg):
    other = dataclasses.replace(cfg.model, name="other", embed_dim=32, num_heads=2, depth=4, num_classes=7,
                                selector_blocks=(1, 3))
    sd = DeiT(other).state_dict()
    msg = _err(tmp_path, sd, cfg.model)
    assert "config 'mini' does not fit the checkpoint" in msg
    assert "embed_dim 32 in the checkpoint vs 64 in the config" in msg
    assert "depth 4 in the checkpoint vs 6" in msg and "num_classes 7 in the checkpoint vs 10" in msg
    assert "embed_dim = 32" in msg and "num_heads = 2" in msg and "selector_blocks = [1, 3]" in msg
    inf = infer_config(sd)
    assert inf["num_heads"] == 2 and inf["depth"] == 4 and inf["img_size"] == 32 and inf["in_chans"] == 1


def test_config_mismatch_suggests_matching_preset(tmp_path, state):
    toml = tmp_path / "deeper.toml"
    toml.write_text('preset = "mini"\n[model]\ndepth = 8\nselector_blocks = [2, 4]\n')
    msg = _err(tmp_path, dict(state), load_config(toml).model)
    assert "depth 6 in the checkpoint vs 8" in msg and "A config that fits: --config mini" in msg


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_code_executing_pickle_is_refused(tmp_path, state, cfg, capsys):
    marker = tmp_path / "PWNED"
    p = tmp_path / "evil.pth"
    torch.save({"model": state, "payload": _Evil(marker)}, p)
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(p)
    assert "arbitrary unpickling" in str(e.value) and "converted.pth" in str(e.value)
    out = tmp_path / "pkg"
    rc = main(["quantize", "--checkpoint", str(p), "--config", "mini", "--calib", "digits", "--out", str(out)])
    assert rc == 2
    assert "arbitrary unpickling" in capsys.readouterr().err
    assert not marker.exists(), "the pickle's code ran"
    assert not out.exists()


def test_unreadable_and_unknown_files(tmp_path, cfg):
    p = tmp_path / "junk.pth"
    p.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_checkpoint(p)
    q = tmp_path / "m.h5"
    q.write_bytes(b"x")
    with pytest.raises(CheckpointError, match="unknown checkpoint type '.h5'"):
        read_checkpoint(q)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.safetensors")
    s = tmp_path / "bad.safetensors"
    s.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00garbage!")
    with pytest.raises(CheckpointError, match="as safetensors"):
        read_checkpoint(s)


@pytest.mark.parametrize("case", ["missing", "shape", "nan"])
def test_cli_bad_checkpoint_exit_2_nothing_written(tmp_path, state, case, capsys):
    sd = dict(state)
    if case == "missing":
        del sd["head.bias"]
    elif case == "shape":
        sd["head.weight"] = torch.zeros(5, 64)
    else:
        sd["norm.weight"] = torch.full((64,), float("nan"))
    p = tmp_path / "bad.safetensors"
    save_file(sd, str(p))
    out = tmp_path / "pkg"
    rc = main(["quantize", "--checkpoint", str(p), "--config", "mini", "--calib", "digits", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("spvit: error: checkpoint")
    assert not out.exists() and list(tmp_path.iterdir()) == [p]


# ------------------------------------------------------------------ the other schemes' checkpoints
@pytest.fixture(scope="module")
def scheme_states():
    from golden.config import PRESETS
    out = {}
    for name in ("mini-dynamicvit", "mini-evit", "mini-evovit"):
        m = DeiT(PRESETS[name])
        m.init_weights(seed=2)
        out[name] = {k: v.clone() for k, v in m.state_dict().items()}
    return out


def test_dynamicvit_keys_are_the_authors(scheme_states):
    sp = sorted(k for k in scheme_states["mini-dynamicvit"] if k.startswith("score_predictor"))
    convs = (("in_conv", (0, 1)), ("out_conv", (0, 2, 4)))
    want = sorted(f"score_predictor.{s}.{m}.{j}.{w}" for s in (0, 1) for m, js in convs
                  for j in js for w in ("weight", "bias"))
    assert sp == want


def test_evovit_authors_layout_loads_through_the_key_map(tmp_path, scheme_states):
    from golden.config import PRESETS
    cfg = PRESETS["mini-evovit"]
    sd = scheme_states["mini-evovit"]
    authors = schemes.of(cfg).to_authors(sd)
    assert {"qks.3.qk.weight", "vs.3.v.bias", "norms.0.weight", "projs.5.bias", "blocks.2.norm2.weight"} <= set(authors)
    assert authors["qks.0.qk.weight"].shape == (128, 64) and not any(".attn." in k or "norm1" in k for k in authors)
    authors["head_cls.weight"] = torch.zeros(10, 64)             # the training-only CLS head is dropped
    authors["norm_cls.weight"] = torch.zeros(64)
    p = tmp_path / "evo.pth"
    torch.save({"model": authors}, p)
    m = load_float_model(p, cfg)
    _same(m.state_dict(), sd)
    del authors["vs.1.v.weight"]
    torch.save(authors, p)
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): blocks.1.attn.qkv.weight"):
        load_float_model(p, cfg)


@pytest.mark.parametrize("ckpt_of,config,msg", [
    ("mini-dynamicvit", "mini", "looks like one made for DynamicViT (score_predictor.0.in_conv.0.bias), "
                                "but config 'mini' has selector 'spvit': use a dynamicvit config "
                                "(presets: dynamicvit-deit-tiny"),
    ("mini", "mini-dynamicvit", "looks like one made for SPViT (score_predictor.0.in_conv.0.0.bias)"),
    ("mini-evovit", "mini-evit", "looks like one made for Evo-ViT (qks.0.qk.weight), "
                                 "but config 'mini-evit' has selector 'evit'"),
    ("mini-evit", "mini-dynamicvit", "has no DynamicViT selector weights (a plain DeiT or EViT checkpoint?)"),
])
def test_other_schemes_checkpoint_is_named(tmp_path, scheme_states, state, ckpt_of, config, msg):
    from golden.config import PRESETS
    sd = state if ckpt_of == "mini" else scheme_states[ckpt_of]
    if ckpt_of == "mini-evovit":
        sd = schemes.of(PRESETS[ckpt_of]).to_authors(sd)
    err = _err(tmp_path, sd, PRESETS[config])
    assert msg in err
    if config == "mini-dynamicvit":
        assert "missing keys (20): score_predictor.0.in_conv.0.bias, score_predictor.0.in_conv.0.weight" in err


def test_infer_config_names_the_scheme(scheme_states):
    from golden.config import PRESETS
    inf = infer_config(scheme_states["mini-dynamicvit"])
    assert inf["selector"] == "dynamicvit" and inf["selector_blocks"] == (2, 4) and "keep_rate" in inf["_guessed"]
    inf = infer_config(schemes.of(PRESETS["mini-evovit"]).to_authors(scheme_states["mini-evovit"]))
    assert inf["selector"] == "evovit" and inf["depth"] == 6 and inf["embed_dim"] == 64


@pytest.mark.parametrize("dtype", [torch.int64, torch.int8, torch.bool, torch.int32])
def test_integer_checkpoints_are_refused(tmp_path, state, dtype, capsys):
    """int64 weights used to be truncated into the float model and quantised with exit 0; int8
    ones failed later with an unrelated GELU fraction-width error."""
    sd = {k: (v * 100).to(dtype) if dtype != torch.bool else v > 0 for k, v in state.items()}
    p = tmp_path / "int.pth"
    torch.save(sd, p)
    out = tmp_path / "pkg"
    rc = main(["quantize", "--checkpoint", str(p), "--config", "mini", "--calib", "digits", "--calib-limit", "2",
               "--out", str(out)])
    err = capsys.readouterr().err
    kind = str(dtype).replace("torch.", "")
    assert rc == 2 and f"tensor(s) are not floating point: blocks.0.attn.proj.bias ({kind})" in err, err
    assert "give the float checkpoint, not an integer or already quantised one" in err and not out.exists()


@pytest.mark.parametrize("wrap,said", [
    (lambda sd: {"state_dict_ema": sd, "epoch": 3}, "using the state_dict under 'state_dict_ema' (not used: epoch)"),
    (lambda sd: {"model_ema": {"module." + k: v for k, v in sd.items()}},
     "under 'model_ema'; key prefix 'module.' stripped"),
    (lambda sd: {"module._orig_mod." + k: v for k, v in sd.items()}, "key prefix 'module._orig_mod.' stripped"),
    (lambda sd: {"state_dict": {"model": sd}, "optimizer": {}}, "under 'state_dict.model' (not used: optimizer)"),
    (lambda sd: {"model": sd, "model_ema": sd}, "under 'model' (not used: model_ema)"),
])
def test_wrappers_load_and_are_named(tmp_path, state, cfg, wrap, said, capsys):
    p = tmp_path / "w.pth"
    torch.save(wrap(state), p)
    m = load_float_model(p, cfg.model)
    _same(m.state_dict(), state)
    err = capsys.readouterr().err
    assert err.startswith(f"spvit: note: checkpoint {p}: ") and said in err, err


def test_official_spvit_layout_suggests_sum_and_heads(tmp_path, cfg):
    """Official SPViT checkpoints repeat one selector module for every head and were trained
    with the summed package token: the suggested config says so and spells out num_heads."""
    other = dataclasses.replace(cfg.model, name="o", embed_dim=96, num_heads=4, depth=4, selector_blocks=(1, 3))
    sd = DeiT(other).state_dict()
    for k in list(sd):
        if ".in_conv." in k or ".out_conv." in k:
            h = int(k.split(".")[3])
            sd[k] = sd[k.replace(f"_conv.{h}.", "_conv.0.")].clone()
    msg = _err(tmp_path, sd, cfg.model)
    assert 'package_mode = "sum"   # official SPViT layout' in msg and "num_heads = 4\n" in msg
    plain = DeiT(dataclasses.replace(other, selector="none", selector_blocks=())).state_dict()
    msg = _err(tmp_path, plain, cfg.model, "plain.pth")
    assert "num_heads = 3   # guessed: check" in msg            # 96 = 3 x 32: spelled out, marked as a guess
    inf = infer_config(DeiT(cfg.model).state_dict())             # our own (distinct heads): norm, marked
    assert inf["package_mode"] == "norm" and "package_mode" in inf["_guessed"]


def test_head_count_that_cannot_be_checked_is_announced(tmp_path, cfg, capsys):
    m = dataclasses.replace(cfg.model, name="plain", selector="none", selector_blocks=())
    p = tmp_path / "plain.safetensors"
    save_file(DeiT(m).state_dict(), str(p))
    load_float_model(p, m)
    err = capsys.readouterr().err
    assert "does not store the head count; using num_heads = 4 (head_dim 16) from config 'plain'" in err


def test_head_count_notice_follows_the_scheme(tmp_path, scheme_states, state, capsys):
    """Only SPViT's per-head predictors store the head count: DynamicViT, EViT and Evo-ViT
    checkpoints get the note (and suggestions spell num_heads out), SPViT ones do not."""
    from golden.config import PRESETS
    for name in ("mini-dynamicvit", "mini-evit", "mini-evovit"):
        p = tmp_path / f"{name}.safetensors"
        sd = scheme_states[name]
        save_file(schemes.of(PRESETS[name]).to_authors(sd) if name == "mini-evovit" else sd, str(p))
        load_float_model(p, PRESETS[name])
        assert f"does not store the head count; using num_heads = 4 (head_dim 16) from config '{name}'" \
            in capsys.readouterr().err
    p = tmp_path / "spvit.safetensors"
    save_file(state, str(p))
    load_float_model(p, PRESETS["mini"])
    assert "head count" not in capsys.readouterr().err
    inf = infer_config(scheme_states["mini-dynamicvit"])
    assert inf["num_heads"] == 1 and "num_heads" in inf["_guessed"] and "package_mode" not in inf
    msg = _err(tmp_path, scheme_states["mini-dynamicvit"], dataclasses.replace(PRESETS["mini-dynamicvit"], depth=4,
                                                                                selector_blocks=(1, 3)))
    assert "num_heads = 1   # guessed: check" in msg and 'selector = "dynamicvit"' in msg
