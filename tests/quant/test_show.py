"""`spvit compare --show DIR`: pictures of the patches each selection stage keeps, float and
int16 side by side (quant/show.py). The pixels are checked exactly against the keep decisions:
on a synthetic image with known masks, and on the committed digits models through the CLI."""
from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from golden.config import PRESETS
from quant import DEMO_CHECKPOINT
from quant.show import FADE, GREY, KIND, OUTLINE, Layout, stage_panel, write_pictures

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _grey(v) -> np.ndarray:
    return np.rint(GREY + FADE * (np.asarray(v, np.float64) - GREY)).astype(np.uint8)


def _synthetic(cfg, float_ids, int_ids, cand_ids):
    """A one-image comparison result (the fields quant.show reads) and its data: every pixel of
    the image has its own known 8-bit value per channel."""
    s, c = cfg.img_size, cfg.in_chans
    yy, xx = np.mgrid[0:s, 0:s]
    u8 = np.stack([(7 * (yy // cfg.patch_size * 8 + xx // cfg.patch_size) + 3 * (yy % 4) + xx % 4 + 50 * ch) % 256
                   for ch in range(c)]).astype(np.uint8)
    x = (u8 / 255.0 - np.array(MEAN[:c])[:, None, None]) / np.array(STD[:c])[:, None, None]
    logits = np.eye(10)[[3]]
    r = SimpleNamespace(labels=np.array([3]), items=["synthetic[0]"], logits_float=logits, logits_int=logits,
                        cand_ids_float=[cand_ids], cand_ids_int=[cand_ids], kept_ids_float=[float_ids],
                        kept_ids_int=[int_ids])
    data = SimpleNamespace(classes=tuple("0123456789"), load=lambda i: torch.from_numpy(x),
                           normalisation=lambda: (MEAN[:c], STD[:c]))
    return r, data, u8.transpose(1, 2, 0)


def test_pixels_follow_the_masks(tmp_path):
    """Kept patches show the input's pixels, the others exactly the greyed value, composed over
    the stages; an int16 decision unlike float's is framed; the input panel is the input."""
    cfg = replace(PRESETS["mini"], in_chans=3)
    grid, P, p = 8, 64, cfg.patch_size
    ids0 = np.array([q + 1 for q in range(P) if q % 3])                  # stage 0 keeps these patches
    ids1 = ids0[ids0 % 2 == 0]                                           # stage 1: a subset of them
    f_ids, q_ids = [ids0, ids1], [np.append(ids0, 1), ids1[1:]]          # int16: patch 0 kept, ids1[0] not
    cands = [np.arange(1, P + 1), ids0]
    r, data, u8 = _synthetic(cfg, f_ids, q_ids, cands)
    man = write_pictures(r, data, cfg, 1, tmp_path)
    assert man["format"] == KIND and sorted(f.name for f in tmp_path.iterdir()) == ["image_000_label_3.png",
                                                                                   "manifest.json"]
    rec = man["images"][0]
    png = _png(tmp_path / rec["file"])
    lay = Layout(panel=rec["panel"], stages=2)
    assert png.shape == (rec["size"][1], rec["size"][0], 3) and rec["size"][0] == lay.width
    assert rec["panel"] == 224 and rec["size"][0] <= 1000 and rec["size"][1] <= 900
    k = rec["panel"] // cfg.img_size
    big = np.repeat(np.repeat(u8, k, 0), k, 1)
    x, y = rec["input_at"]
    assert np.array_equal(png[y:y + rec["panel"], x:x + rec["panel"]], big)
    assert rec["kept_float"] == [len(ids0), len(ids1)] and rec["kept_int16"] == [len(ids0) + 1, len(ids1) - 1]
    assert rec["differ"] == [1, 1] and (_grey(u8) != u8).mean() > 0.99
    frame = 3                                   # the outline is inside this many pixels of a patch's edge
    for m, ids in (("float", f_ids), ("int16", q_ids)):
        for s in range(2):
            x, y = rec[f"{m}_at"][s]
            panel = png[y:y + rec["panel"], x:x + rec["panel"]]
            kept = set((ids[s] - 1).tolist())
            for q in range(P):
                r0, c0 = q // grid * p * k, q % grid * p * k
                tile, ref = panel[r0:r0 + p * k, c0:c0 + p * k], big[r0:r0 + p * k, c0:c0 + p * k]
                want = ref if q in kept else _grey(ref)
                differs = m == "int16" and (q in kept) != (q in set((f_ids[s] - 1).tolist()))
                inner = (slice(frame, -frame),) * 2 if differs else (slice(None),) * 2
                assert np.array_equal(tile[inner], want[inner]), (m, s, q, q in kept)
                if differs:
                    assert (tile[0] == OUTLINE).all() and (tile[:, -1] == OUTLINE).all(), (m, s, q)


@pytest.mark.parametrize("scheme,stage,cand,kept,lines", [
    ("mini", 1, [2, 5, 9], [5], ["1 of 3 patches kept", "2 dropped \u2192 package token p1"]),
    ("mini-dynamicvit", 0, [1, 2, 3, 4], [4, 1], ["2 of 4 patches kept", "2 discarded"]),
    ("mini-evit", 1, [3, 65, 7], [65, 3], ["2 of 3 tokens kept", "  (1 patch + f0)",
                                           "1 dropped \u2192 fused token f1"]),
    ("mini-evit", 1, [3, 65, 7], [7, 3], ["2 of 3 tokens kept", "1 dropped \u2192 fused token f1",
                                          "  (0 patches + f0)"]),
    ("mini-evovit", 0, [4, 3, 2, 1], [2, 1], ["2 of 4 patches on the slow path", "2 placeholders"]),
])
def test_captions_name_the_tokens(scheme, stage, cand, kept, lines):
    """Package and fused tokens (ids past the patches) are counted by name, never drawn."""
    panel = stage_panel(PRESETS[scheme], stage, cand, kept)
    assert panel.lines == lines
    assert panel.keep.sum() == sum(1 for t in kept if t <= 64)


PLAIN = 'preset = "mini-evit"\n[model]\nselector = "none"\nselector_blocks = []\nkeep_rate = []\n'


@pytest.mark.parametrize("scheme", ["spvit", "dynamicvit", "evit", "evovit", "none"])
def test_cli_show_committed_models(tmp_path, scheme, capsys):
    """Every scheme through `spvit compare --show`: one PNG per image, named by index and label,
    whose panels grey exactly the patches the JSON's keep ids do not hold (plain DeiT: the
    input alone, and the picture says why)."""
    from spvit.cli import main
    name = {"spvit": "digits", "none": "evit"}.get(scheme, scheme)
    ck = DEMO_CHECKPOINT.parent / f"mini_{name}.safetensors"
    if not ck.exists():
        pytest.skip(f"{ck.name} not committed")
    config = {"spvit": "mini", "none": str(tmp_path / "plain.toml")}.get(scheme, f"mini-{scheme}")
    (tmp_path / "plain.toml").write_text(PLAIN)
    pkg, js, show = tmp_path / "p.pkg", tmp_path / "r.json", tmp_path / "show"
    assert main(["quantize", "--checkpoint", str(ck), "--config", config, "--calib", "digits:train",
                 "--calib-limit", "8", "--out", str(pkg)]) == 0
    assert main(["compare", "--checkpoint", str(ck), "--package", str(pkg), "--data", "digits", "--limit", "2",
                 "--sqnr-images", "0", "--no-progress", "--json", str(js), "--show", str(show)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {show}: 2 picture(s)" in out
    per, man = json.loads(js.read_text())["per_image"], json.loads((show / "manifest.json").read_text())
    assert man["format"] == KIND and man["selector"] == scheme
    names = [f"image_{i:03d}_label_{p['label']}.png" for i, p in enumerate(per)]
    assert [m["file"] for m in man["images"]] == names
    assert sorted(f.name for f in show.iterdir()) == sorted(names + ["manifest.json"])
    stages = 0 if scheme == "none" else 2
    if not stages:
        assert "no token selection (plain DeiT)" in out
    for p, rec in zip(per, man["images"]):
        png = _png(show / rec["file"])
        assert png.shape[:2] == (rec["size"][1], rec["size"][0]) and rec["size"][0] == Layout(224, stages).width
        x, y = rec["input_at"]
        view = np.rint((load_digit(p["index"]) * 0.5 + 0.5) * 255).astype(np.uint8)      # digits: mean, std 0.5
        big = np.repeat(np.repeat(view, 7, 0), 7, 1)[..., None]                          # 32 -> 224 pixels
        assert rec["panel"] == 224 and (png[y:y + 224, x:x + 224] == big).all()
        for m, key in (("float", "keep_float_ids"), ("int16", "keep_int_ids")):
            assert len(rec[f"{m}_at"]) == stages == len(p[key])
            for s, ids in enumerate(p[key]):
                x, y = rec[f"{m}_at"][s]
                centres = png[y + 14:y + 224:28, x + 14:x + 224:28]         # one pixel inside each 28-px patch
                kept = np.zeros(64, bool)
                kept[[t - 1 for t in ids if t <= 64]] = True
                want = np.where(kept.reshape(8, 8), big[14::28, 14::28, 0], _grey(big[14::28, 14::28, 0]))
                assert (centres == want[..., None]).all(), (m, s)
                assert rec[f"kept_{m}"][s] == kept.sum()
            patches = [{t for t in ids if t <= 64} for ids in p[key]]
            if scheme in ("spvit", "dynamicvit", "evit"):        # stages compose: later kept patches were kept before
                assert patches[1] <= patches[0], (m, patches)
            if scheme == "spvit":                               # pos = masks[0][masks[1][k]] (docs/selector.md)
                masks = p[key.replace("_ids", "")]
                assert [masks[0][j] + 1 for j in masks[1]] == p[key][1]


def load_digit(i: int) -> np.ndarray:
    from quant.data import load_data
    return load_data("digits", PRESETS["mini"]).take(2).load(i)[0].numpy().astype(np.float64)


def test_cli_show_bad_input(tmp_path, ckpt, package, capsys):
    """Out-of-range counts, --show-images alone, an existing target, a directory of another kind,
    a report inside the picture directory: exit 2 with a message, nothing written."""
    from spvit.cli import main
    base = ["compare", "--checkpoint", str(ckpt), "--package", str(package), "--data", "digits", "--limit", "3",
            "--sqnr-images", "0", "--no-progress"]
    show = tmp_path / "show"

    def refused(args, msg):
        assert main(base + args) == 2
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err, err

    refused(["--show", str(show), "--show-images", "4"],
            "--show-images 4 asks for more pictures than the 3 images compared "
            "(digits:test (3 of 600, evenly spaced: 0, 300, 599)): lower it or raise --limit")
    refused(["--show", str(show), "--show-images", "0"], "argument --show-images: must be an integer in 1..")
    refused(["--show-images", "2"], "--show-images sets how many pictures --show draws: add --show DIR")
    refused(["--show", str(show), "--json", str(show / "r.json")], "lies inside --show")
    assert not show.exists() and list(tmp_path.iterdir()) == []
    assert main(base + ["--show", str(show), "--show-images", "1"]) == 0
    first = (show / "manifest.json").read_text()
    refused(["--show", str(show)], "already exists and is not empty; pass --force")
    assert (show / "manifest.json").read_text() == first
    assert main(base + ["--show", str(show), "--force"]) == 0                 # the same kind: replaced
    assert len(json.loads((show / "manifest.json").read_text())["images"]) == 3
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    refused(["--show", str(other), "--force"], "is not a picture directory (spvit compare --show)")
    assert (other / "keep.txt").read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["other",
                                                                                                       "show"]
