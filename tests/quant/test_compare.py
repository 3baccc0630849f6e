"""`spvit compare`: results, JSON, plot, CLI."""
from __future__ import annotations

import json

import pytest

from quant.compare import LAYERS, compare_dataset, format_table
from quant.data import load_data


def test_compare_dataset(model, qmodel, cfg):
    data = load_data("digits:test", cfg.model)
    r = compare_dataset(model, qmodel, data, limit=12, batch=6, sqnr_images=6, progress=False)
    assert r.images == 12 and r.sqnr_images == 6
    assert r.kept_float.shape == (12, 2) and r.kept_int.shape == (12, 2)
    assert 0 <= r.float_top1 <= 1 and 0 <= r.int_top1 <= 1 and 0.8 <= r.agreement <= 1
    assert set(r.layer_sqnr) == {f"blocks.{i}.{n}" for i in range(6) for n in LAYERS}
    assert all(v > 30 for v in r.layer_sqnr.values()), r.layer_sqnr
    assert r.selector_tokens > 0 and r.selector_agreement > 0.9
    assert set(r.selector_sqnr) == {"sel.0.score", "sel.1.score"} and min(r.selector_sqnr.values()) > 30
    assert r.logits_sqnr > 20
    t = format_table(r)
    assert "top-1 agreement" in t and "kept tokens, stage 1 (blk 4)" in t


def test_cli_compare_json_plot(tmp_path, ckpt, package, capsys):
    from spvit.cli import main
    js, png = tmp_path / "out" / "r.json", tmp_path / "out" / "r.png"
    rc = main(["compare", "--checkpoint", str(ckpt), "--package", str(package), "--data", "digits",
               "--limit", "8", "--json", str(js), "--plot", str(png), "--sqnr-images", "4"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "compare" in out.err          # tqdm progress bar
    d = json.loads(js.read_text())
    assert d["images"] == 8 and len(d["stages"]) == 2 and "keep_rate_int" in d["stages"][0]
    _check_per_image(d, ckpt, package)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in js.parent.iterdir()) == ["r.json", "r.png"]


@pytest.mark.parametrize("args,msg", [
    (["--limit", "0"], "argument --limit: must be an integer in 1.. (got 0)"),
    (["--json", "x.txt"], "argument --json: must name a .json file"),
    (["--package", "/nonexistent/pkg"], "not found"),
])
def test_cli_compare_bad_args(ckpt, package, capsys, args, msg):
    from spvit.cli import main
    base = {"--checkpoint": str(ckpt), "--package": str(package), "--data": "digits"}
    for k, v in zip(args[::2], args[1::2]):
        base[k] = v
    rc = main(["compare"] + [x for kv in base.items() for x in kv])
    assert rc == 2 and msg in capsys.readouterr().err


def _check_per_image(d, ckpt, package):
    """Per-image logits, labels and keep masks equal what the models compute on those images."""
    import numpy as np

    from quant.calibrate import quantize_images
    from quant.loaders import load_float_model
    from quant.package import load_package
    q, _ = load_package(package)
    model = load_float_model(ckpt, q.cfg)
    data = load_data("digits", q.cfg).take(8)
    x, y = data.tensors()
    per = d["per_image"]
    assert [p["index"] for p in per] == list(range(8)) and [p["label"] for p in per] == y.tolist()
    assert per[0]["item"] == "digits:test[0]" and per[-1]["item"] == "digits:test[599]"
    lf = model(x).detach().numpy()
    lq, kept, masks = q(quantize_images(x, q), return_masks=True)
    assert np.allclose([p["float_logits"] for p in per], lf, atol=1e-6)
    assert [p["int_logits"] for p in per] == lq.tolist() and f"2^{q.fmt['logits']}" in d["per_image_format"]
    assert [p["keep_int"] for p in per] == [[m.tolist() for m in im] for im in masks]
    assert [p["keep_float"] for p in per] == [[m.tolist() for m in im] for im in model.last_masks]
    assert [[len(s) for s in p["keep_int"]] for p in per] == kept.tolist() == d["kept_int"]
    assert [p["int_pred"] for p in per] == lq.argmax(1).tolist()
    _check_ids(per, q, quantize_images(x, q), model)


def _check_ids(per, q, xq, model):
    """keep_*_ids: the kept tokens' ids in mask order (golden.tokens.Record.kept_ids)."""
    _, _, rec = q(xq, return_record=True)
    frec = model.last_record
    for i, p in enumerate(per):
        assert p["keep_int_ids"] == [rec.kept_ids(i, s).tolist() for s in range(q.cfg.stages)]
        assert p["keep_float_ids"] == [frec.kept_ids(i, s).tolist() for s in range(q.cfg.stages)]
        assert p["keep_int_ids"][0] == [k + 1 for k in p["keep_int"][0]]     # stage 0: patch position + 1


@pytest.mark.parametrize("scheme", ["dynamicvit", "evit", "evovit"])
def test_cli_compare_json_other_schemes(tmp_path, scheme):
    """Per-image records and keep masks for the fixed-count schemes (committed digits models)."""
    import numpy as np

    from quant import DEMO_CHECKPOINT
    from quant.calibrate import quantize_images
    from quant.loaders import load_float_model
    from quant.package import load_package
    from spvit.cli import main
    ck = DEMO_CHECKPOINT.parent / f"mini_{scheme}.safetensors"
    if not ck.exists():
        pytest.skip(f"{ck.name} not committed")
    pkg, js = tmp_path / "p.pkg", tmp_path / "r.json"
    assert main(["quantize", "--checkpoint", str(ck), "--config", f"mini-{scheme}", "--calib", "digits:train",
                 "--calib-limit", "16", "--out", str(pkg)]) == 0
    assert main(["compare", "--checkpoint", str(ck), "--package", str(pkg), "--data", "digits", "--limit", "4",
                 "--sqnr-images", "0", "--no-progress", "--json", str(js)]) == 0
    d = json.loads(js.read_text())
    per = d["per_image"]
    q, _ = load_package(pkg)
    model = load_float_model(ck, q.cfg)
    x, _ = load_data("digits", q.cfg).take(4).tensors()
    model(x)
    lq, kept, masks = q(quantize_images(x, q), return_masks=True)
    assert [p["keep_int"] for p in per] == [[m.tolist() for m in im] for im in masks]
    assert [p["keep_float"] for p in per] == [[m.tolist() for m in im] for im in model.last_masks]
    assert [[len(s) for s in p["keep_int"]] for p in per] == kept.tolist()
    assert np.array_equal([p["int_logits"] for p in per], lq)
    _check_ids(per, q, quantize_images(x, q), model)
    if scheme == "evit":                      # stage 1 may keep stage 0's fused token (id P + 1)
        assert all(max(p["keep_int_ids"][1]) <= q.cfg.num_patches + 1 for p in per)
