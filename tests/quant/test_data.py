"""Data: digits split, image folders with DeiT preprocessing, and bad folders."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from base.errors import UsageError
from quant.data import DIGITS_HELD_OUT, digits, digits_arrays, load_data
from spvit.cli import main


def test_digits_split_fixed_and_disjoint(cfg):
    tr, te = digits_arrays("train"), digits_arrays("test")
    assert len(te[1]) == DIGITS_HELD_OUT and len(tr[1]) + len(te[1]) == 1797
    rows = {r.tobytes() for r in te[0]}
    assert sum(r.tobytes() in rows for r in tr[0]) < 20        # digits has a few duplicate images
    d = digits(cfg.model, "test")
    x, y = d.tensors(5)
    assert x.shape == (5, 1, 32, 32) and float(x.min()) >= -1 and float(x.max()) <= 1
    assert np.array_equal(y.numpy(), te[1][:5])
    with pytest.raises(UsageError, match="unknown digits split"):
        load_data("digits:val", cfg.model)


def _folder(root, sizes=((40, 30), (20, 50)), mode="RGB"):
    for k, cls in enumerate(["cat", "dog"]):
        (root / cls).mkdir(parents=True)
        for i, s in enumerate(sizes):
            a = (np.arange(s[0] * s[1] * 3).reshape(s[1], s[0], 3) * (k + 1) % 256).astype(np.uint8)
            Image.fromarray(a).convert(mode).save(root / cls / f"{i}.png")
    return root


def test_image_folder(tmp_path, cfg):
    root = _folder(tmp_path / "imgs")
    d = load_data(str(root), cfg.model)
    assert d.classes == ("cat", "dog") and list(d.labels) == [0, 0, 1, 1]
    x, y = d.tensors()
    assert x.shape == (4, 1, 32, 32)
    t = d.take(2)                       # evenly spaced: one image of each class, not the first two
    assert list(t.labels) == [0, 1] and len(t.tensors()[0]) == 2 and d.take(None) is d
    rgb = dataclasses.replace(cfg.model, in_chans=3)
    x3 = load_data(str(root), rgb).load(0)
    assert x3.shape == (3, 32, 32)
    # normalisation: a white image gives (1 - mean) / std per channel
    (root / "cat" / "w.png").unlink(missing_ok=True)
    Image.new("RGB", (50, 60), (255, 255, 255)).save(root / "cat" / "w.png")
    d3 = load_data(str(root), rgb)
    i = [p.name for p in d3.items].index("w.png")
    np.testing.assert_allclose(d3.load(i)[:, 5, 5].numpy(), [(1 - .485) / .229, (1 - .456) / .224, (1 - .406) / .225],
                               rtol=1e-5)


@pytest.mark.parametrize("case,msg", [
    ("missing", "does not exist"), ("empty", "no class subfolders"), ("noimages", "no images"),
    ("unreadable", "cannot read image"), ("file", "is not a folder")])
def test_bad_folders(tmp_path, cfg, ckpt, package, case, msg, capsys):
    root = tmp_path / "data"
    if case == "empty":
        root.mkdir()
    elif case == "noimages":
        (root / "a").mkdir(parents=True)
        (root / "a" / "readme.txt").write_text("x")
    elif case == "unreadable":
        _folder(root)
        (root / "dog" / "broken.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    elif case == "file":
        root.write_text("x")
    with pytest.raises(UsageError, match=msg):
        load_data(str(root), cfg.model).tensors()
    out = tmp_path / "pkg"
    rc = main(["quantize", "--checkpoint", str(ckpt), "--config", "mini", "--calib", str(root), "--out", str(out)])
    assert rc == 2 and msg in capsys.readouterr().err and not out.exists()
    js = tmp_path / "r.json"
    rc = main(["compare", "--checkpoint", str(ckpt), "--package", str(package), "--data", str(root),
               "--json", str(js), "--no-progress"])
    assert rc == 2 and msg in capsys.readouterr().err and not js.exists()


def test_digits_colon_names_no_split(cfg, ckpt, tmp_path, capsys):
    with pytest.raises(UsageError, match=r"'digits:' names no split: use digits:train, digits:test or digits:all"):
        load_data("digits:", cfg.model, default_split="train")
    rc = main(["quantize", "--checkpoint", str(ckpt), "--config", "mini", "--calib", "digits:", "--out",
               str(tmp_path / "p")])
    assert rc == 2 and "names no split" in capsys.readouterr().err and not (tmp_path / "p").exists()
