"""Golden integer model against the float twin: per-block SQNR, logits SQNR, selector agreement.
Used by `spvit check`, the tests and the demo."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from base import settings
from golden.arith import dequantize
from golden.float_model import DeiT
from golden.layers import dequantize_tokens, quantize_tokens
from golden.network import QModel
from golden.tokens import Group, Record, decision_agreement

from . import schemes
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
    decision_agreement: float = 1.0   # each model on its own forward, token by token (golden.tokens.Record)
    decision_tokens: int = 0


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
    logits_f, io = block_io(model, images)
    kept_f, rec_f = model.last_kept.numpy(), model.last_record
    logits_q, kept_q, rec_q = q(quantize_images(images, q), return_record=True, threads=settings.THREADS)
    blocks = []
    for i, blk in enumerate(q.blocks):
        ref, out = [], []
        for inp, o in io[i]:
            y = replay_block(model, q, i, inp)
            ref.append(o.double().numpy().ravel())
            out.append(dequantize_tokens(y, blk.out_frac, blk.cls_out).ravel())
        blocks.append(sqnr_db(np.concatenate(ref), np.concatenate(out)))
    agree, total, _ = same_input_decisions(model, q, [[inp for inp, _ in calls] for calls in io])
    lf = logits_f.numpy()
    lq = dequantize(logits_q, q.fmt["logits"])
    da, dt = decision_agreement(rec_f, rec_q)
    return Report(blocks, sqnr_db(lf, lq), float((lf.argmax(1) == lq.argmax(1)).mean()), kept_f, kept_q,
                  agree / total if total else 1.0, total, da / dt if dt else 1.0, dt)


def float_block_order(model: DeiT, i: int, inp: torch.Tensor):
    """The order chosen by a mid-block selection of float block i on `inp` (None if block i
    has none): the float twin's decision, replayed by the golden block for a like-for-like
    comparison of the block's output."""
    sch = model.cfg.scheme
    if not sch.has_mid(model.cfg, i):
        return None
    rec = Record(len(inp), model.cfg)
    sch.f_block(model, i, model.blocks[i], Group.start(inp), rec, lambda n, t: None)
    return rec.orders[i][-1] if rec.orders.get(i) else None


def replay_block(model: DeiT, q: QModel, i: int, inp: torch.Tensor) -> np.ndarray:
    """Golden block i on the quantised float input `inp`, with the float block's selection (if any)."""
    blk = q.blocks[i]
    g = Group.start(quantize_tokens(inp.double().numpy(), blk.in_frac, blk.cls_in))
    return q.cfg.scheme.q_block(q, i, blk, g, None, force=float_block_order(model, i, inp)).x


@torch.no_grad()
def same_input_decisions(model: DeiT, q: QModel, inputs) -> tuple[int, int, list]:
    """Each selection stage's float and integer decisions on the same (quantised) tokens, taken
    from the recorded block inputs `inputs[i]` (quant/schemes/: agreement_inputs). Returns
    (equal decisions, decisions, [(stage, float score, integer score)])."""
    cfg = model.cfg
    sch = schemes.of(cfg)
    agree = total = 0
    scores = []
    for j, b in enumerate(cfg.selector_blocks if cfg.stages else ()):
        f, cf = q.fmt[f"res.{b}"], q.blocks[b].cls_in
        for x in sch.agreement_inputs(model, inputs, j):
            xq = quantize_tokens(x.double().numpy(), f, cf)
            kf, sf = sch.f_decide(model, j, torch.from_numpy(dequantize_tokens(xq, f, cf)).float())
            kq, sq = sch.q_decide(q, j, xq)
            agree += int((kf == kq).sum())
            total += kf.size
            scores.append((j, sf, sq))
    return agree, total, scores


def format_report(r: Report, title: str = "") -> str:
    lines = [title] if title else []
    lines.append("per-block SQNR dB: " + " ".join(f"{s:.1f}" for s in r.block_sqnr))
    lines.append(f"logits SQNR: {r.logits_sqnr:.1f} dB; top-1 agreement {100 * r.top1_agreement:.1f}%")
    if r.selector_tokens:
        lines.append(f"selector decisions equal on the same input: {100 * r.selector_agreement:.2f}% "
                     f"of {r.selector_tokens} tokens")
    if r.decision_tokens:
        lines.append(f"decisions equal, each model on its own forward: {100 * r.decision_agreement:.2f}% "
                     f"of {r.decision_tokens} candidate tokens")
    if r.kept_float.shape[1]:
        lines.append("mean kept patch tokens per stage: float " +
                     ", ".join(f"{v:.1f}" for v in r.kept_float.mean(0)) +
                     "; int16 " + ", ".join(f"{v:.1f}" for v in r.kept_golden.mean(0)))
    return "\n".join(lines)


def print_report(r: Report) -> None:
    print(format_report(r))
