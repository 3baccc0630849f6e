"""Golden integer model against the float twin: per-block SQNR, logits SQNR, selector agreement.
Used by `spvit check`, the tests and the demo."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from golden.arith import dequantize, quantize
from golden.float_model import DeiT
from golden.network import QModel

from .calibrate import quantize_images


def sqnr_db(ref, test) -> float:
    ref = np.asarray(ref, dtype=np.float64)
    err = ref - np.asarray(test, dtype=np.float64)
    e = float((err ** 2).sum())
    return float("inf") if e == 0 else 10 * np.log10(float((ref ** 2).sum()) / e)


@dataclass
class Report:
    block_sqnr: list            # per block: SQNR (dB) of the golden block on the float block's input
    logits_sqnr: float
    top1_agreement: float
    kept_float: np.ndarray      # [B, stages]
    kept_golden: np.ndarray
    selector_agreement: float   # decisions equal on the same (quantised) input tokens
    selector_tokens: int


@torch.no_grad()
def block_io(model: DeiT, images: torch.Tensor):
    """Per block: list of (input, output) float tensors, one entry per call (group or image)."""
    io = [[] for _ in model.blocks]
    hooks = [b.register_forward_hook(lambda mod, inp, out, i=i: io[i].append((inp[0], out)))
             for i, b in enumerate(model.blocks)]
    try:
        logits = model(images)
    finally:
        for h in hooks:
            h.remove()
    return logits, io


@torch.no_grad()
def compare(model: DeiT, q: QModel, images: torch.Tensor) -> Report:
    cfg = model.cfg
    logits_f, io = block_io(model, images)
    kept_f = model.last_kept.numpy()
    logits_q, kept_q = q(quantize_images(images, q))
    blocks = []
    for i, blk in enumerate(q.blocks):
        ref, out = [], []
        for inp, o in io[i]:
            y = blk(quantize(inp.double().numpy(), blk.in_frac))
            ref.append(o.double().numpy().ravel())
            out.append(dequantize(y, blk.out_frac).ravel())
        blocks.append(sqnr_db(np.concatenate(ref), np.concatenate(out)))
    agree = total = 0
    for j, b in enumerate(cfg.selector_blocks if cfg.stages else ()):
        for _, o in io[b - 1]:                 # block b-1 output = selector j input
            for t in o:
                xq = quantize(t.double().numpy(), q.fmt[f"res.{b}"])
                _, keep = model.select(j, torch.from_numpy(dequantize(xq, q.fmt[f"res.{b}"])).float())
                _, sel = q.selectors[b](xq, j)
                agree += int((keep.numpy() == sel.keep).sum())
                total += len(sel.keep)
    lf = logits_f.numpy()
    lq = dequantize(logits_q, q.fmt["logits"])
    return Report(blocks, sqnr_db(lf, lq), float((lf.argmax(1) == lq.argmax(1)).mean()), kept_f, kept_q,
                  agree / total if total else 1.0, total)


def format_report(r: Report, title: str = "") -> str:
    lines = [title] if title else []
    lines.append("per-block SQNR dB: " + " ".join(f"{s:.1f}" for s in r.block_sqnr))
    lines.append(f"logits SQNR: {r.logits_sqnr:.1f} dB; top-1 agreement {100 * r.top1_agreement:.1f}%")
    if r.selector_tokens:
        lines.append(f"selector decisions equal on the same input: {100 * r.selector_agreement:.2f}% "
                     f"of {r.selector_tokens} tokens")
        lines.append("mean kept patch tokens per stage: float " +
                     ", ".join(f"{v:.1f}" for v in r.kept_float.mean(0)) +
                     "; int16 " + ", ".join(f"{v:.1f}" for v in r.kept_golden.mean(0)))
    return "\n".join(lines)


def print_report(r: Report) -> None:
    print(format_report(r))
