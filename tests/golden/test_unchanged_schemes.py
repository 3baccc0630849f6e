"""The integer results of DeiT, SPViT and DynamicViT stay what they were before EViT and Evo-ViT
gained their own CLS-token formats and wide attention scores (docs/arithmetic.md, "CLS token
format" and "CLS attention scores"): int16 logits, kept counts and keep masks of random and
trained models, equal to the values recorded in unchanged_schemes.json by ==.

The file was written by this module's `main` (`.venv/bin/python -m tests.golden.test_unchanged_schemes`)
on the code before that change (commit df329ab); run it again only for a change that is meant to
alter these schemes' results, and say so in the commit. The recorded models are calibrated from
float activations: a machine whose float kernels moved a calibrated maximum across a power of
two would choose another format; the test then names the first format that differs.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

REFERENCE = Path(__file__).with_name("unchanged_schemes.json")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RANDOM = [("mini", 4), ("mini-none", 4), ("mini-dynamicvit", 4), ("deit-tiny", 2), ("spvit-deit-tiny", 2),
          ("dynamicvit-deit-tiny", 2)]
TRAINED = [("mini", "mini_digits.safetensors"), ("mini-dynamicvit", "mini_dynamicvit.safetensors")]


def _config(name: str):
    from golden.config import PRESETS
    if name == "mini-none":
        return dataclasses.replace(PRESETS["mini"], name="mini-none", selector="none", selector_blocks=())
    return PRESETS[name]


def _case(kind: str, name: str, arg):
    """(QModel, int16 input images) of one recorded case, on one torch thread (torch's image
    interpolation in golden.random_model.random_images rounds differently on several)."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _make_case(kind, name, arg)
    finally:
        torch.set_num_threads(threads)


def _make_case(kind: str, name: str, arg):
    from golden.arith import quantize
    if kind == "random":
        from golden.random_model import random_images, random_model
        from quant.calibrate import calibrate
        cfg = _config(name)
        imgs = random_images(cfg, 8 + arg, 0)
        q = calibrate(random_model(cfg, 0, imgs), imgs[:8])
        return q, quantize(imgs[8:].numpy(), q.img_frac)
    from quant.calibrate import calibrate
    from quant.data import load_data
    from quant.loaders import load_float_model
    cfg = _config(name)
    model = load_float_model(str(EXAMPLES / arg), cfg)
    x, _ = load_data("digits:train", cfg, default_split="train").take(64).tensors()
    q = calibrate(model, x)
    test, _ = load_data("digits:test", cfg, default_split="test").take(16).tensors()
    return q, quantize(test.numpy(), q.img_frac)


def _results(q, x) -> dict:
    logits, kept, masks = q(x, return_masks=True)
    return {"formats": dict(sorted(q.fmt.items())), "logits": logits.tolist(), "kept": kept.tolist(),
            "masks": [[m.tolist() for m in per] for per in masks]}


CASES = [("random", n, k) for n, k in RANDOM] + [("trained", n, f) for n, f in TRAINED]


def _key(kind, name, arg) -> str:
    return f"{kind}:{name}:{arg}"


def main() -> None:
    out = {_key(*c): _results(*_case(*c)) for c in CASES}
    REFERENCE.write_text(json.dumps(out, separators=(",", ":")) + "\n")
    print(f"wrote {REFERENCE} ({len(out)} cases)")


@pytest.mark.parametrize("case", CASES, ids=[_key(*c) for c in CASES])
def test_results_unchanged(case):
    if case[0] == "trained" and not (EXAMPLES / case[2]).exists():
        pytest.skip(f"examples/{case[2]} not committed")
    want = json.loads(REFERENCE.read_text())[_key(*case)]
    q, x = _case(*case)
    got = _results(q, x)
    for k, v in want["formats"].items():        # formats first: another format is another model
        assert got["formats"].get(k) == v, f"format {k}: {got['formats'].get(k)} here, {v} recorded"
    a, b = np.asarray(got["logits"]), np.asarray(want["logits"])
    bad = np.argwhere(a != b)
    assert a.shape == b.shape and not len(bad), \
        f"{len(bad)} of {b.size} logits differ; first (image, class): " + \
        ", ".join(f"{tuple(i)} {a[tuple(i)]} vs {b[tuple(i)]}" for i in bad[:5])
    assert got["kept"] == want["kept"], f"kept {got['kept']} vs {want['kept']}"
    assert got["masks"] == want["masks"], "keep masks differ"


if __name__ == "__main__":
    main()
