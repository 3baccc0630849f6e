"""What the summed package token (package_mode = "sum", the official SPViT code's) costs in
fixed point, measured on the demo model side by side with the normalised token it was trained
with ("norm"): the token's magnitude against the other tokens, the residual-stream formats it
forces, and the SQNR of the blocks after the first selector. docs/quantization.md quotes the
output.

    .venv/bin/python benchmarks/package_token.py [--test 600]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from golden.config import load_config  # noqa: E402
from quant.calibrate import calibrate  # noqa: E402
from quant.compare import compare_dataset  # noqa: E402
from quant.data import load_data  # noqa: E402
from quant.loaders import load_float_model  # noqa: E402
from quant.selfcheck import sqnr_db  # noqa: E402

CKPT = ROOT / "examples" / "mini_digits.safetensors"


@torch.no_grad()
def magnitudes(model, images):
    """Per block after the first selector: max |x| of the package rows and of the other rows
    of the block input (the residual stream), over the images."""
    m = model.cfg
    stages = {b: sum(s <= b for s in m.selector_blocks) for b in range(m.depth)}
    pkg, other = {}, {}

    def hook(i):
        def f(mod, inp, out):
            x = inp[0][0].abs()
            k = stages[i]
            if k:
                pkg[i] = max(pkg.get(i, 0.0), float(x[-k:].max()))
                other[i] = max(other.get(i, 0.0), float(x[:-k].max()))
        return f
    hooks = [b.register_forward_hook(hook(i)) for i, b in enumerate(model.blocks)]
    try:
        for i in range(0, len(images), 64):
            model(images[i:i + 64])
    finally:
        for h in hooks:
            h.remove()
    return pkg, other


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--test", type=int, default=600, help="held-out images to compare on")
    a = ap.parse_args()
    torch.set_num_threads(1)
    base = load_config("mini")
    calib, _ = load_data("digits:train", base.model).take(256).tensors()
    test = load_data("digits:test", base.model).take(a.test)
    first = base.model.selector_blocks[0]
    rows = {}
    for mode in ("norm", "sum"):
        cfg = dataclasses.replace(base.model, package_mode=mode)
        model = load_float_model(CKPT, cfg)
        q = calibrate(model, calib, base.fixed_point)
        pkg, other = magnitudes(model, calib)
        r = compare_dataset(model, q, test, sqnr_images=64, progress=False)
        same = np.array([all(np.array_equal(x, y) for x, y in zip(f, g)) for f, g in zip(r.masks_float, r.masks_int)])
        after = [v for k, v in r.layer_sqnr.items() if int(k.split(".")[1]) >= first]
        before = [v for k, v in r.layer_sqnr.items() if int(k.split(".")[1]) < first]
        rows[mode] = dict(
            fmt=[q.fmt[f"res.{b}"] for b in range(cfg.depth + 1)], pkg=pkg, other=other,
            before=np.mean(before), after=np.mean(after), after_min=min(after), top1=(r.float_top1, r.int_top1),
            logits=sqnr_db(r.logits_float[same], r.logits_int[same] * 2.0 ** -r.logits_frac), same=int(same.sum()))
    print(f"demo model (trained with package_mode = norm), calibrated maxabs on 256 digits:train, "
          f"compared on {a.test} digits:test; selectors before blocks {list(base.model.selector_blocks)}")
    for mode, r in rows.items():
        print(f"\npackage_mode = {mode}: float top-1 {100 * r['top1'][0]:.2f}%, int16 {100 * r['top1'][1]:.2f}%")
        print("  residual formats res.0..res.6 (fraction bits): " + " ".join(map(str, r["fmt"])))
        print("  block input max|x|, package rows / other rows: " + ", ".join(
            f"blk {b}: {r['pkg'][b]:.1f} / {r['other'][b]:.1f}" for b in sorted(r["pkg"])))
        print(f"  mean per-layer SQNR, blocks before the first selector {r['before']:.1f} dB, from it on "
              f"{r['after']:.1f} dB (lowest {r['after_min']:.1f} dB)")
        print(f"  logits SQNR on the {r['same']} images that decide as the float model: {r['logits']:.1f} dB")
    n, s = rows["norm"], rows["sum"]
    lost = [a - b for a, b in zip(n["fmt"], s["fmt"])]
    print(f"\nsum vs norm: residual fraction bits lost per block input {lost}; per-layer SQNR from the first "
          f"selector on {s['after'] - n['after']:+.1f} dB; logits {s['logits'] - n['logits']:+.1f} dB")


if __name__ == "__main__":
    main()
