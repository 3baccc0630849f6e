"""Packages: bit-identical round trip, hardware order, checksums, config checks, atomic writes."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

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
        [f"blocks.0.attn.{l}.{p}" for l in "qkv" for p in "wb"] + \
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
    with pytest.raises(PackageError, match="was made for config 'mini'.*embed_dim: package 64 vs config 128"):
        load_package(package, load_config(toml).model)
    rc = main(["compare", "--checkpoint", str(ckpt), "--package", str(package), "--data", "digits",
               "--config", str(toml), "--limit", "2"])
    assert rc == 2 and "was made for config" in capsys.readouterr().err


def test_write_is_atomic_and_refuses_overwrite(tmp_path, qmodel, cfg):
    out = tmp_path / "p"
    write_package(qmodel, out, cfg.fixed_point)
    before = (out / "weights.bin").read_bytes()
    with pytest.raises(PackageError, match="already exists"):
        write_package(qmodel, out, cfg.fixed_point)
    write_package(qmodel, out, cfg.fixed_point, force=True)
    assert (out / "weights.bin").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]     # no temp or old dirs left
    (tmp_path / "notpkg").mkdir()
    with pytest.raises(PackageError, match="not a package"):
        write_package(qmodel, tmp_path / "notpkg", cfg.fixed_point, force=True)


def test_cli_quantize_roundtrip(tmp_path, ckpt, model, capsys):
    out = tmp_path / "cli.pkg"
    rc = main(["quantize", "--checkpoint", str(ckpt), "--config", "mini", "--calib", "digits", "--calib-limit", "8",
               "--method", "percentile", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    q, man = load_package(out, model.cfg)
    assert man["calibration"] == {"method": "percentile", "data": "digits:train (8 of 1197, evenly spaced)",
                                  "images": 8, "percentile": 99.99}
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
