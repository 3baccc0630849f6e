"""Packages: bit-identical round trip, hardware order, checksums, config checks, atomic writes."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from base.errors import UsageError
from golden.config import load_config
from quant.calibrate import quantize_images
from quant.package import ALIGN, PackageError, hardware_order, load_package, write_package
from spvit.cli import main


def _arrays(obj, prefix=""):
    """Every ndarray in a QModel-like tree, by path."""
    out = {}
    if isinstance(obj, np.ndarray):
        out[prefix] = obj
    elif isinstance(obj, (tuple, list)):
        for i, v in enumerate(obj):
            out.update(_arrays(v, f"{prefix}[{i}]"))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if k != "fmt":
                out.update(_arrays(v, f"{prefix}[{k}]"))
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            if f.name not in ("cfg", "fmt"):
                out.update(_arrays(getattr(obj, f.name), f"{prefix}.{f.name}"))
    return out


def test_roundtrip_bit_identical(package, qmodel, images, cfg):
    q2, man = load_package(package, cfg.model)
    a, b = _arrays(qmodel), _arrays(q2)
    assert set(a) == set(b) and len(a) > 100
    for k in a:
        assert a[k].shape == b[k].shape and np.array_equal(a[k], b[k]), k
    assert q2.fmt == qmodel.fmt
    x = quantize_images(images[8:], qmodel)
    (la, ka), (lb, kb) = qmodel(x), q2(x)
    assert np.array_equal(la, lb) and np.array_equal(ka, kb)
    assert ka.min() < 64  # the selectors prune: the comparison covers the selector path


def test_manifest_contents(package, qmodel):
    man = json.loads((package / "manifest.json").read_text())
    assert man["model"]["name"] == "mini" and man["calibration"]["method"] == "maxabs"
    assert man["tool_version"] and len(man["blob"]["sha256"]) == 64
    t = {x["name"]: x for x in man["tensors"]}
    assert t["blocks.0.attn.q.w"]["dtype"] == "<i2" and t["blocks.0.attn.q.b"]["dtype"] == "<i8"
    assert t["blocks.0.attn.q.w"]["frac"] == qmodel.blocks[0].attn.q.w_frac
    assert t["blocks.0.attn.q.b"]["frac"] == qmodel.blocks[0].attn.q.w_frac + qmodel.blocks[0].attn.q.in_frac
    assert man["formats"]["res.0"] == qmodel.fmt["res.0"]


def test_blob_layout_is_hardware_order(package, qmodel):
    man = json.loads((package / "manifest.json").read_text())
    names = [t["name"] for t in man["tensors"]]
    assert names[:6] == ["patch.w", "patch.b", "cls_row", "pos", "blocks.0.norm1.gamma", "blocks.0.norm1.beta"]
    blk0 = [n for n in names if n.startswith("blocks.0.")]
    assert blk0 == ["blocks.0.norm1.gamma", "blocks.0.norm1.beta"] + \
        [f"blocks.0.attn.{qkv}.{p}" for qkv in "qkv" for p in "wb"] + \
        ["blocks.0.attn.proj.w", "blocks.0.attn.proj.b", "blocks.0.norm2.gamma", "blocks.0.norm2.beta",
         "blocks.0.mlp.fc1.w", "blocks.0.mlp.fc1.b", "blocks.0.mlp.fc2.w", "blocks.0.mlp.fc2.b"]
    # selector j comes right before the block it runs in front of
    assert names.index("sel.0.in_ln.gamma") == names.index("blocks.1.mlp.fc2.b") + 1
    assert names.index("blocks.2.norm1.gamma") == names.index("sel.0.se2.b") + 1
    assert names[-4:] == ["norm.gamma", "norm.beta", "head.w", "head.b"]
    blob = (package / "weights.bin").read_bytes()
    off = 0
    for t in man["tensors"]:
        assert t["offset"] % ALIGN == 0 and t["offset"] >= off
        off = t["offset"] + t["nbytes"]
    w = np.frombuffer(blob[:man["tensors"][0]["nbytes"]], "<i2").reshape(man["tensors"][0]["shape"])
    assert np.array_equal(w, qmodel.patch.w)        # row-major [out, in], little-endian int16
    recs, tensors = hardware_order(qmodel)
    assert [t[0] for t in tensors] == names


def _copy(src, dst):
    import shutil
    shutil.copytree(src, dst)
    return dst


def test_corrupt_blob_is_refused(tmp_path, package, cfg, capsys, ckpt):
    bad = _copy(package, tmp_path / "bad.pkg")
    blob = bytearray((bad / "weights.bin").read_bytes())
    blob[1000] ^= 0x10
    (bad / "weights.bin").write_bytes(bytes(blob))
    with pytest.raises(PackageError, match="is corrupt: weights.bin has sha256"):
        load_package(bad, cfg.model)
    rc = main(["compare", "--checkpoint", str(ckpt), "--package", str(bad), "--data", "digits", "--limit", "2"])
    assert rc == 2 and "is corrupt" in capsys.readouterr().err


def test_truncated_blob_and_bad_manifest(tmp_path, package, cfg):
    bad = _copy(package, tmp_path / "short.pkg")
    (bad / "weights.bin").write_bytes((bad / "weights.bin").read_bytes()[:-10])
    with pytest.raises(PackageError, match="is corrupt"):
        load_package(bad, cfg.model)
    (bad / "manifest.json").write_text("{not json")
    with pytest.raises(PackageError, match="not valid JSON"):
        load_package(bad, cfg.model)
    with pytest.raises(PackageError, match="not found"):
        load_package(tmp_path / "nothing", cfg.model)


def test_package_from_another_config(tmp_path, package, cfg, ckpt, capsys):
    toml = tmp_path / "wide.toml"
    toml.write_text('preset = "mini"\n[model]\nembed_dim = 128\nnum_heads = 4\n')
    with pytest.raises(PackageError, match="was made for a model that differs from config 'wide' in embed_dim: "
                                           "package 64 vs config 128"):
        load_package(package, load_config(toml).model)
    rc = main(["compare", "--checkpoint", str(ckpt), "--package", str(package), "--data", "digits",
               "--config", str(toml), "--limit", "2"])
    assert rc == 2 and "was made for a model that differs from config 'wide'" in capsys.readouterr().err
    # same name, other preprocessing: the message names the differing field, not 'mini' twice
    same = tmp_path / "mini.toml"
    same.write_text('preset = "mini"\n[preprocess]\nmean = [0.1307]\nstd = [0.3081]\n')
    with pytest.raises(PackageError) as e:
        load_package(package, load_config(same).model)
    assert str(e.value).startswith(f"package {str(package)!r} was made for a model that differs from config 'mini' "
                                   f"in preprocess.mean: package () vs config (0.1307,); preprocess.std: package () "
                                   f"vs config (0.3081,). Quantise"), str(e.value)


def test_write_is_atomic_and_refuses_overwrite(tmp_path, qmodel, cfg):
    out = tmp_path / "p"
    write_package(qmodel, out, cfg.fixed_point)
    before = (out / "weights.bin").read_bytes()
    with pytest.raises(UsageError, match="already exists and is not empty; pass --force"):
        write_package(qmodel, out, cfg.fixed_point)
    write_package(qmodel, out, cfg.fixed_point, force=True)
    assert (out / "weights.bin").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]     # no temp or old dirs left
    (tmp_path / "notpkg").mkdir()
    (tmp_path / "notpkg" / "a.txt").write_text("mine")
    with pytest.raises(UsageError, match=r"is not a weight package \(it holds a.txt\); refusing to replace it even"):
        write_package(qmodel, tmp_path / "notpkg", cfg.fixed_point, force=True)
    assert (tmp_path / "notpkg" / "a.txt").read_text() == "mine"


def test_cli_quantize_roundtrip(tmp_path, ckpt, model, capsys):
    out = tmp_path / "cli.pkg"
    rc = main(["quantize", "--checkpoint", str(ckpt), "--config", "mini", "--calib", "digits", "--calib-limit", "8",
               "--method", "percentile", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    q, man = load_package(out, model.cfg)
    assert man["calibration"] == {
        "method": "percentile", "images": 8, "percentile": 99.99,
        "data": "digits:train (8 of 1197, evenly spaced: 0, 171, 342, 513, 683, 854, 1025, 1196)"}
    assert man["source"]["checkpoint_sha256"]
    rc = main(["quantize", "--checkpoint", str(ckpt), "--config", "mini", "--calib", "digits", "--out", str(out)])
    assert rc == 2 and "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["mini-dynamicvit", "mini-evit", "mini-evovit"])
def test_scheme_packages_roundtrip(tmp_path, name):
    from golden.config import PRESETS
    from golden.random_model import random_images, random_model
    from quant.calibrate import calibrate
    cfg = PRESETS[name]
    imgs = random_images(cfg, 10, seed=2)
    q = calibrate(random_model(cfg, seed=2, balance_with=imgs[:8]), imgs[:8])
    man = write_package(q, tmp_path / "p", calibration={"method": "maxabs"})
    q2, _ = load_package(tmp_path / "p", cfg)
    assert type(q2.selectors[2]) is type(q.selectors[2]) and set(q2.selectors) == {2, 4}
    a, b = _arrays(q), _arrays(q2)
    assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)
    x = quantize_images(imgs[8:], q)
    (la, ka), (lb, kb) = q(x), q2(x)
    assert np.array_equal(la, lb) and np.array_equal(ka, kb)
    names = [t["name"] for t in man["tensors"]]
    if name == "mini-dynamicvit":        # the predictor of stage 0 sits right before block 2
        assert names.index("sel.0.in_ln.gamma") == names.index("blocks.1.mlp.fc2.b") + 1
        assert names[names.index("sel.0.score.w")] and man["layers"]["selectors"]["2"]["keep"] == 44
    else:                                # parameter-free: a record, no tensors
        assert not any(n.startswith("sel.") for n in names)
        assert man["layers"]["selectors"]["4"]["keep"] == (33 if name == "mini-evit" else 32)
    if name == "mini-evovit":
        assert "pool" in man["formats"]


def _edit(tmp_path, package, change, name="edited.pkg"):
    bad = _copy(package, tmp_path / name)
    m = json.loads((bad / "manifest.json").read_text())
    m = change(m)
    (bad / "manifest.json").write_text(json.dumps(m))
    return bad


def _tensor(m, name):
    return next(t for t in m["tensors"] if t["name"] == name)


def _set(d, **kw):
    d.update(kw)
    return d


@pytest.mark.parametrize("change,msg", [
    (lambda m: [1, 2, 3], "manifest.json holds a JSON list, not an object"),
    (lambda m: {k: v for k, v in m.items() if k != "tensors"}, "manifest.json lacks 'tensors'"),
    (lambda m: {k: v for k, v in m.items() if k != "layers"}, "manifest.json lacks 'layers'"),
    (lambda m: _set(m, layers={k: v for k, v in m["layers"].items() if k != "head"}),
     "'layers' in manifest.json lacks 'head'"),
    (lambda m: (_set(_tensor(m, "patch.w"), shape=[16, 64]), m)[1], "its layers do not fit together"),
    (lambda m: (_set(_tensor(m, "patch.w"), dtype="<i8"), m)[1],
     "tensor 'patch.w': shape [64, 16] of <i8 does not match"),
    (lambda m: (_set(_tensor(m, "patch.w"), dtype="float32"), m)[1], "tensor record 0 in manifest.json is malformed"),
    (lambda m: (_set(_tensor(m, "patch.w"), dtype={}), m)[1], "tensor record 0 in manifest.json is malformed"),
    (lambda m: (_set(m["layers"]["blocks"][0]["mlp"]["act"], pwl=[]), m)[1],
     "blocks.0.mlp.act is not a valid PWL record"),
    (lambda m: (_set(_tensor(m, "patch.w"), shape=[10 ** 9, 10 ** 9]), m)[1], "is malformed"),
    (lambda m: (_set(m["model"], embed_dim=62), m)[1],
     "the model config in its manifest.json is invalid (heads must divide embed_dim (62 % 4 != 0))"),
    (lambda m: (_set(m["model"], depth="six"), m)[1],
     "the model config in its manifest.json is invalid (depth in [model] must be an integer"),
    (lambda m: (_set(m["model"], depth=5), m)[1], "6 blocks, but the model config has depth 5"),
    (lambda m: (_set(m["blob"], file="../../weights.bin"), m)[1],
     "'blob' in manifest.json must name a file in the package"),
    (lambda m: (_set(m["formats"], logits="x"), m)[1], "format 'logits' must be an integer number of fraction bits"),
    (lambda m: (_set(m["layers"]["blocks"][0]["attn"], heads=10 ** 9), m)[1],
     "blocks.0.attn.heads must be an integer in [1, 4096]"),
    (lambda m: (_set(m["layers"]["blocks"][1], type="QMlp"), m)[1], "blocks.1 has layer type 'QMlp', expected QBlock"),
    (lambda m: (_set(m["layers"]["blocks"][0]["mlp"]["act"], in_bits=40), m)[1],
     "blocks.0.mlp.act is not a valid PWL record"),
    (lambda m: (m["layers"]["selectors"].pop("2"), m)[1],
     "selectors before blocks ['4'], but the model config has [2, 4]"),
])
def test_malformed_manifests_are_the_packages_fault(tmp_path, package, cfg, change, msg):
    bad = _edit(tmp_path, package, change)
    with pytest.raises(PackageError) as e:
        load_package(bad)
    assert msg in str(e.value) and str(bad) in str(e.value), str(e.value)


def test_malformed_manifest_via_cli(tmp_path, package, ckpt, capsys):
    bad = _edit(tmp_path, package, lambda m: (_set(m["model"], num_heads=3), m)[1])
    rc = main(["compare", "--checkpoint", str(ckpt), "--package", str(bad), "--data", "digits", "--limit", "1"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith(f"spvit: error: package '{bad}': the model config in its manifest.json is invalid")
    assert "re-run spvit quantize" in err and "Traceback" not in err


@pytest.fixture(scope="module")
def scheme_packages(tmp_path_factory):
    from golden.config import PRESETS
    from golden.random_model import random_images, random_model
    from quant.calibrate import calibrate
    out = {}
    for name in ("mini-dynamicvit", "mini-evit", "mini-evovit"):
        cfg = PRESETS[name]
        imgs = random_images(cfg, 8, seed=2)
        q = calibrate(random_model(cfg, seed=2, balance_with=imgs), imgs)
        out[name] = tmp_path_factory.mktemp("schemes") / f"{name}.pkg"
        write_package(q, out[name], calibration={"method": "maxabs"})
    return out


def _sel(m, block="2"):
    return m["layers"]["selectors"][block]


@pytest.mark.parametrize("name,change,msg", [
    ("mini", lambda m: _set(_sel(m), cap=3),
     "selectors.2 does not match the model config: cap 3 (the config gives None)"),
    ("mini", lambda m: _set(_sel(m, "4"), package_mode="sum"),
     "selectors.4 does not match the model config: package_mode 'sum' (the config gives 'norm')"),
    ("mini", lambda m: _set(_sel(m), type="QPredictor"), "selectors.2 has layer type 'QPredictor', expected QSelector"),
    ("mini-dynamicvit", lambda m: _set(_sel(m), keep=45), "keep 45 (the config gives 44)"),
    ("mini-dynamicvit", lambda m: _set(_sel(m), keep=10 ** 6), "selectors.2.keep must be an integer in [0, 4096]"),
    ("mini-dynamicvit", lambda m: _set(_sel(m, "4"), res_frac=_sel(m, "4")["res_frac"] + 1), "res_frac"),
    ("mini-dynamicvit", lambda m: _set(_sel(m), score="x"), "selectors.2.score is not a layer record"),
    ("mini-evit", lambda m: _set(_sel(m), fuse=1), "selectors.2.fuse must be true or false (got 1)"),
    ("mini-evit", lambda m: _set(_sel(m), fuse=False), "fuse False (the config gives True)"),
    ("mini-evit", lambda m: _set(_sel(m), type="QSelector"),
     "selectors.2 has layer type 'QSelector', expected QEViTSelector (selector 'evit')"),
    ("mini-evit", lambda m: _set(_sel(m), heads=2), "heads 2 (the config gives 4)"),
    ("mini-evovit", lambda m: _set(_sel(m), momentum=40000), "selectors.2.momentum must be an integer in [0, 32768]"),
    ("mini-evovit", lambda m: _set(_sel(m), momentum=8192), "momentum 8192 (the config gives 16384)"),
    ("mini-evovit", lambda m: _set(m["model"], keep_rate=[0.5, 0.25]),
     "selectors.4 does not match the model config: keep 32 (the config gives 16)"),
    ("mini-evovit", lambda m: _set(m["model"], score_momentum="half"),
     "score_momentum in [model] must be a finite number (got the string 'half')"),
    ("mini-evit", lambda m: _set(m["model"], fuse_token="yes"), "fuse_token in [model] must be true or false"),
])
def test_scheme_records_are_checked(tmp_path, package, scheme_packages, name, change, msg):
    """Issue 10's manifest checks cover every scheme's records: types, field ranges and the
    settings the model config implies (kept counts, heads, modes, formats)."""
    src = package if name == "mini" else scheme_packages[name]
    bad = _edit(tmp_path, src, lambda m: (change(m), m)[1])
    with pytest.raises(PackageError) as e:
        load_package(bad)
    assert msg in str(e.value) and "re-run spvit quantize" in str(e.value), str(e.value)
