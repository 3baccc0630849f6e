"""Users' own preprocessing from the model config: a model trained on MNIST-style 28x28 digits
(mean 0.1307, std 0.3081, 2-pixel zero padding to 32x32) quantised and compared from an image
folder through the CLI alone."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from base.errors import ConfigError
from golden.config import load_config
from golden.random_model import random_model
from quant.data import load_data
from spvit.cli import main

MNIST_TOML = '''preset = "mini"
[model]
name = "mnist-vit"
[preprocess]
mean = [0.1307]
std = [0.3081]
crop_mode = "none"
pad = 2
'''


def _mnist_folder(root, n=3):
    """28x28 grey strokes, 3 classes."""
    rng = np.random.default_rng(0)
    raw = {}
    for c in ("0", "1", "2"):
        (root / c).mkdir(parents=True)
        for i in range(n):
            a = np.zeros((28, 28), np.uint8)
            r = rng.integers(4, 20, 4)
            a[r[0]:r[0] + 8, r[1]:r[1] + 3] = 255
            a[r[2]:r[2] + 3, r[3]:r[3] + 8] = rng.integers(100, 256)
            Image.fromarray(a, "L").save(root / c / f"{i}.png")
            raw[f"{c}/{i}.png"] = a
    return raw


def _expected(a):
    """torchvision: Pad(2) -> ToTensor -> Normalize((0.1307,), (0.3081,)), by hand."""
    x = np.pad(a, 2).astype(np.float32) / 255.0
    return ((x - np.float32(0.1307)) / np.float32(0.3081))[None]


def test_mnist_preprocessing_through_the_cli(tmp_path, capsys):
    data = tmp_path / "mnist"
    raw = _mnist_folder(data)
    toml = tmp_path / "mnist.toml"
    toml.write_text(MNIST_TOML)
    cfg = load_config(toml).model
    assert cfg.preprocess.mean == (0.1307,) and cfg.preprocess.pad == 2 and cfg.in_chans == 1
    d = load_data(str(data), cfg)
    names = [str(p.relative_to(data)) for p in d.items]
    want = np.stack([_expected(raw[n]) for n in names])
    got = torch.stack([d.load(i) for i in range(len(d))]).numpy()
    assert got.shape == (9, 1, 32, 32) and np.allclose(got, want, atol=1e-6)
    assert np.allclose(got[:, 0, :2, :], (0 - 0.1307) / 0.3081)            # the zero padding, normalised
    model = random_model(cfg, seed=4, balance_with=torch.from_numpy(want))
    ck = tmp_path / "mnist_vit.safetensors"
    save_file(model.state_dict(), str(ck))
    pkg = tmp_path / "mnist.pkg"
    rc = main(["quantize", "--checkpoint", str(ck), "--config", str(toml), "--calib", str(data), "--out", str(pkg)])
    assert rc == 0, capsys.readouterr().err
    man = json.loads((pkg / "manifest.json").read_text())
    assert man["model"]["preprocess"]["mean"] == [0.1307] and man["model"]["preprocess"]["crop_mode"] == "none"
    js = tmp_path / "r.json"
    rc = main(["compare", "--checkpoint", str(ck), "--package", str(pkg), "--data", str(data), "--json", str(js),
               "--no-progress"])                                   # the package's preprocessing
    assert rc == 0, capsys.readouterr().err
    r = json.loads(js.read_text())
    per = sorted(r["per_image"], key=lambda p: p["item"])
    ref = model(torch.from_numpy(np.stack([_expected(raw[n]) for n in sorted(names)]))).detach().numpy()
    assert np.allclose([p["float_logits"] for p in per], ref, atol=1e-5)
    assert r["agreement"] >= 8 / 9 and r["logits_sqnr"] > 30
    # a config with other preprocessing does not match the package
    rc = main(["compare", "--checkpoint", str(ck), "--package", str(pkg), "--data", str(data), "--config", "mini"])
    err = capsys.readouterr().err
    assert rc == 2 and ("was made for a model that differs from config 'mini' in preprocess.mean: package (0.1307,) "
                        "vs config (); preprocess.std: package (0.3081,) vs config (); preprocess.crop_mode: package "
                        "'none' vs config 'center'; preprocess.pad: package 2 vs config 0. Quantise") in err, err


def test_resize_and_crop_follow_torchvision(tmp_path):
    """Shorter side to floor(S / crop_pct) with int() for the longer side, centre offsets
    rounded as torchvision rounds them (round((w - S) / 2))."""
    import dataclasses

    from golden.config import PRESETS, Preprocess
    a = np.tile(np.arange(35, dtype=np.uint8) * 7, (32, 1))               # x-gradient, 35 x 32
    (tmp_path / "c").mkdir()
    Image.fromarray(a, "L").save(tmp_path / "c" / "g.png")
    base = dataclasses.replace(PRESETS["mini"], num_classes=10)
    none = dataclasses.replace(base, preprocess=Preprocess(mean=(0.0,), std=(1.0,), crop_mode="none"))
    x = load_data(str(tmp_path), none).load(0).numpy()[0]
    assert np.allclose(x[0] * 255, a[0, 2:34])                            # round(1.5) = 2, as torchvision
    sq = dataclasses.replace(base, preprocess=Preprocess(mean=(0.0,), std=(1.0,), crop_mode="squash", crop_pct=1.0,
                                                          interpolation="nearest"))
    x = load_data(str(tmp_path), sq).load(0).numpy()[0]
    assert x.shape == (32, 32) and np.allclose(x[0] * 255, np.asarray(Image.fromarray(a).resize((32, 32), 0))[0])


@pytest.mark.parametrize("table,msg", [
    ("mean = [0.5, 0.5]\nstd = [0.5, 0.5]", "preprocess mean and std need 1 or in_chans = 1 values (got 2)"),
    ("mean = [0.5]", "preprocess mean and std need the same number of values (got 1 and 0)"),
    ("mean = [0.5]\nstd = [0]", "preprocess std must be positive numbers"),
    ('crop_mode = "border"', "crop_mode must be one of ('center', 'squash', 'none') (got 'border'; timm's 'border'"),
    ('interpolation = "cubic"', "interpolation must be one of"),
    ("crop_pct = 1.5", "preprocess crop_pct must lie in (0, 1]"),
    ("pad = -1", "preprocess pad must lie in 0..1024"),
    ('mean = "0.5"\nstd = [0.5]', "mean in [preprocess] must be a list of numbers"),
    ("means = [0.5]", "unknown field(s) ['means'] in [preprocess]"),
])
def test_preprocess_errors(tmp_path, table, msg):
    t = tmp_path / "p.toml"
    t.write_text(f'preset = "mini"\n[preprocess]\n{table}\n')
    with pytest.raises(ConfigError) as e:
        load_config(t)
    assert msg in str(e.value)
