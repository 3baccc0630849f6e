"""Golden integer model against the float twin: per-block SQNR, logits SQNR, selector agreement.
Used by `spvit check`, the tests and the demo."""
from __future__ import annotations

from dataclasses import dataclass, field

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
    flips: list = field(default_factory=list)   # Flip per image whose kept tokens differ (decision_flips)
    flip_free_sqnr: float = float("nan")        # logits SQNR of the other images


@dataclass
class Flip:
    """An image whose two models kept different tokens: the first stage where they differ, the
    image's logits SQNR and, for schemes that rank by a recorded score (Scheme.score_unit), the
    swapped pairs (float-kept token, integer-kept token, float score gap, the integer model's
    error on that difference), the median float gap between neighbouring scores at the keep
    boundary and the rms error of the integer scores, in the float twin's score units."""
    image: int
    stage: int
    sqnr: float
    pairs: list = field(default_factory=list)
    boundary_gap: float = float("nan")
    score_error: float = float("nan")
    integer_tie: bool = False                   # a swapped pair has equal integer scores (ranked by position)

    def describe(self) -> str:
        s = f"image {self.image} stage {self.stage}: {self.sqnr:.1f} dB"
        if self.pairs:
            s += ("; pairs (float gap, integer error) " + ", ".join(f"({g:.2e}, {e:+.2e})" for _, _, g, e in self.pairs)
                  + f"; boundary gap {self.boundary_gap:.2e}, score rms error {self.score_error:.2e}"
                  + ("; equal integer scores" if self.integer_tie else ""))
        return s


BOUNDARY_GAPS = 5    # neighbouring float-score gaps on each side of the keep boundary (Flip.boundary_gap)


def first_flip(kept_f, kept_q):
    """The first stage whose kept token ids (per stage) differ between two models, or None."""
    for s, (a, b) in enumerate(zip(kept_f, kept_q)):
        if set(np.asarray(a).tolist()) != set(np.asarray(b).tolist()):
            return s
    return None


def flip_pairs(rec_f: Record, rec_q: Record, image: int, s: int, unit: float) -> dict:
    """Flip's score fields for stage s of `image` (unit: Scheme.score_unit)."""
    ids_f, ids_q = rec_f.cand_ids[image][s], rec_q.cand_ids[image][s]
    sf = dict(zip(ids_f.tolist(), rec_f.scores[image][s].astype(np.float64)))
    raw = dict(zip(ids_q.tolist(), rec_q.scores[image][s].tolist()))
    sq = {t: v * unit for t, v in raw.items()}
    kf, kq = set(rec_f.kept_ids(image, s).tolist()), set(rec_q.kept_ids(image, s).tolist())
    only_f = sorted(kf - kq, key=lambda t: sf[t])              # weakest float-kept first
    only_q = sorted(kq - kf, key=lambda t: -sf[t])             # strongest float-dropped first
    pairs = [(a, c, sf[a] - sf[c], (sq[a] - sq[c]) - (sf[a] - sf[c])) for a, c in zip(only_f, only_q)]
    ranked = np.sort(np.fromiter(sf.values(), np.float64))[::-1]
    gaps = -np.diff(ranked)[max(len(kf) - BOUNDARY_GAPS, 0): len(kf) + BOUNDARY_GAPS]
    err = [(sq[t] - sf[t]) ** 2 for t in sf if t in sq]
    return dict(pairs=pairs, boundary_gap=float(np.median(gaps)), score_error=float(np.sqrt(np.mean(err))),
                integer_tie=any(raw[a] == raw[c] for a, c, _, _ in pairs))


def decision_flips(lf, lq, rec_f: Record, rec_q: Record, q: QModel) -> tuple[list, float]:
    """(a Flip per image whose kept tokens differ, the logits SQNR of the other images) from
    both models' float logits and records."""
    sch, stages = q.cfg.scheme, q.cfg.stages
    flips, same = [], []
    for b in range(len(lf)):
        s = first_flip([rec_f.kept_ids(b, j) for j in range(stages)], [rec_q.kept_ids(b, j) for j in range(stages)])
        if s is None:
            same.append(b)
            continue
        f = Flip(b, s, sqnr_db(lf[b], lq[b]))
        unit = sch.score_unit(q, s)
        if unit is not None and rec_f.scores[b][s] is not None and rec_q.scores[b][s] is not None:
            f = Flip(b, s, f.sqnr, **flip_pairs(rec_f, rec_q, b, s, unit))
        flips.append(f)
    return flips, (sqnr_db(lf[same], lq[same]) if same else float("nan"))


@dataclass
class Fidelity:
    logits_float: np.ndarray      # [B, classes]
    logits_int: np.ndarray        # [B, classes], dequantised
    flips: list                   # Flip per image whose kept tokens differ
    flip_free_sqnr: float         # logits SQNR of the other images

    @property
    def logits_sqnr(self) -> float:
        return sqnr_db(self.logits_float, self.logits_int)


def pooled_sqnr(runs: list) -> float:
    """The logits SQNR of several Fidelity runs taken as one set of images."""
    return sqnr_db(np.concatenate([r.logits_float.ravel() for r in runs]),
                   np.concatenate([r.logits_int.ravel() for r in runs]))


@torch.no_grad()
def logits_and_flips(model: DeiT, q: QModel, images: torch.Tensor) -> Fidelity:
    """Both forwards only (no per-block replay, cheaper than `compare`): logits and flips."""
    lf = model(images).double().numpy()
    rec_f = model.last_record
    lq, _, rec_q = q(quantize_images(images, q), return_record=True, threads=settings.THREADS)
    lq = dequantize(lq, q.fmt["logits"])
    return Fidelity(lf, lq, *decision_flips(lf, lq, rec_f, rec_q, q))


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
    flips, flip_free = decision_flips(lf, lq, rec_f, rec_q, q)
    return Report(blocks, sqnr_db(lf, lq), float((lf.argmax(1) == lq.argmax(1)).mean()), kept_f, kept_q,
                  agree / total if total else 1.0, total, da / dt if dt else 1.0, dt, flips, flip_free)


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
        lines.append(flip_line(len(r.kept_float), [f.stage for f in r.flips], r.flip_free_sqnr))
        lines.append("mean kept patch tokens per stage: float " +
                     ", ".join(f"{v:.1f}" for v in r.kept_float.mean(0)) +
                     "; int16 " + ", ".join(f"{v:.1f}" for v in r.kept_golden.mean(0)))
    return "\n".join(lines)


def flip_line(images: int, stages: list, flip_free_sqnr: float) -> str:
    """A report line: how many images kept other tokens than the float model (at which first
    stages) and the logits SQNR of the rest (a decision flip near a tie costs its image 30-45 dB,
    docs/arithmetic.md)."""
    line = f"images whose kept tokens differ from the float model's: {len(stages)} of {images}"
    if stages:
        line += " (first differing at " + ", ".join(f"stage {s}: {stages.count(s)}" for s in sorted(set(stages))) + ")"
    if len(stages) < images:
        line += f"; logits SQNR of the others: {flip_free_sqnr:.1f} dB"
    return line


def print_report(r: Report) -> None:
    print(format_report(r))
