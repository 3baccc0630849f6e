"""Accuracy of the fixed-point model against the float twin on labelled data (`spvit compare`).

Both models see the same images (the golden model their int16 quantisation) and decide their
own tokens. Reported: top-1 of each, top-1 agreement, kept patch tokens per selector stage
(mean, min, max) for each, per-layer SQNR and selector decision agreement.

Per-layer SQNR: on the first `sqnr_images` images, each golden block is fed the float block's
input (quantised) and run layer by layer; every intermediate is compared with the float
intermediate, so the numbers show the error a block adds, accumulated from its input to that
layer (`out` is the block output; a selection inside a block replays the float twin's choice).
Selector agreement: the same quantised input tokens through the float and the integer selector,
share of equal keep decisions; decision agreement: each model on its own forward, token by
token (golden.tokens.Record).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from base import settings
from base.errors import UsageError
from golden.arith import dequantize
from golden.float_model import DeiT
from golden.layers import dequantize_tokens, quantize_tokens
from golden.network import QModel
from golden.tokens import Group, Record, decision_agreement

from .calibrate import quantize_images
from .selfcheck import first_flip, flip_line, same_input_decisions, sqnr_db

LAYERS = ("ln1", "q", "k", "v", "proj", "mid", "ln2", "h", "g", "fc2", "out")


@dataclass
class CompareResult:
    images: int
    num_patches: int
    selector_blocks: list
    float_top1: float
    int_top1: float
    agreement: float
    kept_float: np.ndarray            # [images, stages]
    kept_int: np.ndarray
    layer_sqnr: dict                  # "blocks.i.layer" -> dB
    selector_sqnr: dict               # "sel.j.score" -> dB: decision score on the same input tokens
    logits_sqnr: float
    sqnr_images: int
    selector_agreement: float
    selector_tokens: int
    decision_agreement: float = 1.0   # each model on its own forward, token by token
    decision_tokens: int = 0
    info: dict = field(default_factory=dict)
    # per image (in data order): what each model decided, for comparisons with other references
    items: list = field(default_factory=list)          # image names (file path, or digits:split[i])
    labels: np.ndarray | None = None                   # [images]
    logits_float: np.ndarray | None = None             # [images, classes] float32 twin
    logits_int: np.ndarray | None = None               # [images, classes] int16 golden, frac logits_frac
    logits_frac: int = 0
    masks_float: list = field(default_factory=list)    # per image, per stage: kept candidate indices
    masks_int: list = field(default_factory=list)
    kept_ids_float: list = field(default_factory=list)  # per image, per stage: the kept tokens' ids
    kept_ids_int: list = field(default_factory=list)
    cand_ids_float: list = field(default_factory=list)  # per image, per stage: the candidates' ids, in order
    cand_ids_int: list = field(default_factory=list)

    def stage_stats(self):
        """Per stage: (float mean, min, max, int mean, min, max)."""
        out = []
        for s in range(self.kept_float.shape[1]):
            f, q = self.kept_float[:, s], self.kept_int[:, s]
            out.append((float(f.mean()), int(f.min()), int(f.max()), float(q.mean()), int(q.min()), int(q.max())))
        return out

    def flips(self) -> tuple[list, float]:
        """(per image whose kept tokens differ between the models: the first such stage; the
        logits SQNR of the other images)."""
        first = [first_flip(f, q) for f, q in zip(self.kept_ids_float, self.kept_ids_int)]
        same = [i for i, s in enumerate(first) if s is None]
        lq = dequantize(self.logits_int[same], self.logits_frac)
        return [s for s in first if s is not None], sqnr_db(self.logits_float[same], lq) if same else float("nan")

    def per_image(self) -> list:
        """One record per image: name, label, both models' logits, predictions and keep masks."""
        out = []
        for i in range(self.images):
            lf, lq = self.logits_float[i], self.logits_int[i]
            out.append({"index": i, "item": self.items[i] if self.items else None, "label": int(self.labels[i]),
                        "float_pred": int(lf.argmax()), "int_pred": int(lq.argmax()),
                        "float_logits": [float(v) for v in lf], "int_logits": [int(v) for v in lq],
                        "keep_float": [m.tolist() for m in self.masks_float[i]],
                        "keep_int": [m.tolist() for m in self.masks_int[i]],
                        "keep_float_ids": [t.tolist() for t in self.kept_ids_float[i]],
                        "keep_int_ids": [t.tolist() for t in self.kept_ids_int[i]]})
        return out

    def to_json(self) -> dict:
        per = self.per_image() if self.labels is not None else []
        d = asdict(self)
        for k in ("items", "labels", "logits_float", "logits_int", "masks_float", "masks_int", "kept_ids_float",
                  "kept_ids_int", "cand_ids_float", "cand_ids_int"):
            d.pop(k)
        d["kept_float"] = self.kept_float.tolist()
        d["kept_int"] = self.kept_int.tolist()
        d["per_image_format"] = (f"int_logits are the golden model's int16 logits: value = int_logits / "
                                 f"2^{self.logits_frac}; keep_float / keep_int list, per selector stage, "
                                 f"the indices of the kept tokens among that stage's candidates in their order there, "
                                 f"keep_*_ids the same tokens' ids (0 CLS, 1..{self.num_patches} patch position "
                                 f"+ 1, {self.num_patches + 1} + s the token made at stage s) (docs/selector.md, "
                                 f"Keep masks)")
        d["per_image"] = per
        d["stages"] = [dict(zip(("float_mean", "float_min", "float_max", "int_mean", "int_min", "int_max"), s),
                            before_block=b, selection=self.info.get("where", "before"),
                            keep_rate_float=s[0] / self.num_patches,
                            keep_rate_int=s[3] / self.num_patches)
                       for s, b in zip(self.stage_stats(), self.selector_blocks)]
        return _finite(d)


def _finite(x):
    if isinstance(x, float) and not np.isfinite(x):
        return "inf" if x > 0 else "-inf" if x < 0 else "nan"
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x


class _SqnrAcc:
    """Sums of squares per name, so SQNR is over all elements seen. Each batch's sums are kept
    and added with math.fsum (exactly rounded, independent of order and grouping), so shards
    merged from several processes give the single-process numbers bit for bit."""

    def __init__(self):
        self.sig, self.err = {}, {}

    def add(self, name, ref, test):
        ref = np.asarray(ref, dtype=np.float64)
        e = ref - np.asarray(test, dtype=np.float64)
        self.sig.setdefault(name, []).append(float((ref ** 2).sum()))
        self.err.setdefault(name, []).append(float((e ** 2).sum()))

    def merge(self, other: "_SqnrAcc") -> "_SqnrAcc":
        for mine, theirs in ((self.sig, other.sig), (self.err, other.err)):
            for k, v in theirs.items():
                mine.setdefault(k, []).extend(v)
        return self

    def result(self) -> dict:
        out = {}
        for k in self.sig:
            sig, err = math.fsum(self.sig[k]), math.fsum(self.err[k])
            out[k] = float("inf") if err == 0 else 10 * np.log10(sig / err)
        return out


def _heads_to_tokens(t):   # [b, H, n, dh] -> [b, n, H*dh]
    b, h, n, dh = t.shape
    return t.transpose(1, 2).reshape(b, n, h * dh)


@torch.no_grad()
def block_layers(model: DeiT, q: QModel, i: int, inp, acc: _SqnrAcc, prefix: str):
    """One float block call vs the golden block run layer by layer on the same input. A
    selection inside the block (EViT) replays the float twin's choice in the golden block."""
    sch = model.cfg.scheme
    tr = {}
    p = f"blocks.{i}."
    rec = Record(len(inp), model.cfg)
    out = sch.f_block(model, i, model.blocks[i], Group.start(inp), rec,
                      lambda n, t: tr.__setitem__(n[len(p):], t) if n.startswith(p) else None).x
    force = rec.orders[i][-1] if rec.orders.get(i) else None
    qb = q.blocks[i]
    x = quantize_tokens(inp.double().numpy(), qb.in_frac, qb.cls_in)
    ln1 = qb.norm1(x)
    a = qb.attn
    ints = {"ln1": (ln1, qb.norm1.out_frac), "q": (a.q(ln1), a.q.out_frac), "k": (a.k(ln1), a.k.out_frac),
            "v": (a.v(ln1), a.v.out_frac)}
    att, _, cls_att = a.attend(ln1)
    ints["proj"] = (att, a.proj.out_frac)
    mid = qb.residual(x, att, qb.in_frac, qb.cls_in, a.proj.out_frac, qb.mid_frac, qb.cls_mid)
    ints["mid"] = (mid, qb.mid_frac, qb.cls_mid)
    if sch.has_mid(model.cfg, i):
        mid = sch.q_mid(q, i, Group.start(mid), mid, cls_att, None, force)
    ln2 = qb.norm2(mid)
    ints["ln2"] = (ln2, qb.norm2.out_frac)
    h = qb.mlp.fc1(ln2)
    ints["h"] = (h, qb.mlp.fc1.out_frac)
    g = qb.mlp.act(h)
    ints["g"] = (g, qb.mlp.act.out_frac)
    f2 = qb.mlp.fc2(g)
    ints["fc2"] = (f2, qb.mlp.fc2.out_frac)
    ints["out"] = (qb.residual(mid, f2, qb.mid_frac, qb.cls_mid, qb.mlp.fc2.out_frac, qb.out_frac, qb.cls_out),
                   qb.out_frac, qb.cls_out)
    tr["out"] = out
    for name in LAYERS:
        ref = tr[name]
        if name in ("q", "k", "v"):
            ref = _heads_to_tokens(ref)
        acc.add(f"{prefix}{name}", ref.double().numpy(), dequantize_tokens(*ints[name]))


@dataclass
class ComparePart:
    """What images [start, stop) contribute: per-batch arrays in data order and the sums that
    the report is made of. Parts of consecutive ranges merge (`finish`) into the report that
    one pass over all of them gives, bit for bit, when their ranges start on batch boundaries."""
    start: int
    stop: int
    logits_float: list = field(default_factory=list)    # per batch [b, classes] float64
    logits_int: list = field(default_factory=list)      # per batch, dequantised
    labels: list = field(default_factory=list)
    kept_float: list = field(default_factory=list)
    kept_int: list = field(default_factory=list)
    acc: _SqnrAcc = field(default_factory=_SqnrAcc)
    sel_agree: int = 0
    sel_total: int = 0
    dec_agree: int = 0
    dec_total: int = 0
    measured: int = 0
    logits_raw: list = field(default_factory=list)      # per batch, int16 logits
    masks_float: list = field(default_factory=list)     # per image, per stage (CompareResult.masks_float)
    masks_int: list = field(default_factory=list)
    ids_float: list = field(default_factory=list)
    ids_int: list = field(default_factory=list)
    cands_float: list = field(default_factory=list)
    cands_int: list = field(default_factory=list)
    items: list = field(default_factory=list)           # image names
    logits_frac: int = 0


def _batches(data, start: int, stop: int, batch: int):
    """Dataset.batches over images [start, stop): the same tensors for the same images."""
    for s in range(start, stop, batch):
        idx = range(s, min(s + batch, stop))
        yield torch.stack([data.load(i) for i in idx]), torch.as_tensor(data.labels[s:s + len(idx)])


@torch.no_grad()
def compare_part(model: DeiT, q: QModel, data, start: int, stop: int, batch: int = 16, sqnr_images: int = 64,
                 bar=None) -> ComparePart:
    """Images [start, stop) in batches of `batch` from `start`; per-layer SQNR and same-input
    selector agreement on the batches that start before image `sqnr_images` (of the whole data)."""
    model.eval()
    part = ComparePart(start, stop)
    for k, (imgs, labels) in enumerate(_batches(data, start, stop, batch)):
        measure = start + k * batch < sqnr_images
        io = [[] for _ in model.blocks]
        hooks = [b.register_forward_hook(lambda mod, inp, out, i=i: io[i].append(inp[0]))
                 for i, b in enumerate(model.blocks)] if measure else []
        try:
            lf = model(imgs)
        finally:
            for hk in hooks:
                hk.remove()
        part.kept_float.append(model.last_kept.numpy())
        lq, kept, rec = q(quantize_images(imgs, q), return_record=True, threads=settings.THREADS)
        part.kept_int.append(kept)
        da, dt = decision_agreement(model.last_record, rec)
        part.dec_agree += da
        part.dec_total += dt
        for r, masks, ids, cands in ((model.last_record, part.masks_float, part.ids_float, part.cands_float),
                                     (rec, part.masks_int, part.ids_int, part.cands_int)):
            masks += r.masks
            ids += [[r.kept_ids(i, s) for s in range(model.cfg.stages)] for i in range(len(r.masks))]
            cands += r.cand_ids
        part.logits_float.append(lf.double().numpy())
        part.logits_raw.append(lq)
        part.logits_int.append(dequantize(lq, q.fmt["logits"]))
        part.labels.append(labels.numpy())
        if measure:
            for i, calls in enumerate(io):
                for inp in calls:
                    block_layers(model, q, i, inp, part.acc, f"blocks.{i}.")
            a, t, scores = same_input_decisions(model, q, io)
            for j, sf, sq in scores:
                part.acc.add(f"sel.{j}.score", sf, sq)
            part.sel_agree += a
            part.sel_total += t
            part.measured += len(labels)
        if bar is not None:
            bar.update(len(labels))
    part.items = [data.item_name(i) for i in range(start, stop)]
    part.logits_frac = int(q.fmt["logits"])
    return part


def finish(parts: list, cfg) -> CompareResult:
    """The report of consecutive parts (merged in data order, whatever order they come in)."""
    parts = sorted(parts, key=lambda p: p.start)
    n = sum(p.stop - p.start for p in parts)
    def cat(name):
        return [a for p in parts for a in getattr(p, name)]
    lf, lq, y = (np.concatenate(cat(name)) for name in ("logits_float", "logits_int", "labels"))
    pf, pq = lf.argmax(1), lq.argmax(1)
    kf = np.concatenate(cat("kept_float")) if n else np.zeros((n, 0))
    kq = np.concatenate(cat("kept_int")) if n else np.zeros((n, 0))
    acc = _SqnrAcc()
    for p in parts:
        acc.merge(p.acc)
    res = acc.result()
    def total(name):
        return sum(getattr(p, name) for p in parts)
    sel_agree, sel_total = total("sel_agree"), total("sel_total")
    dec_agree, dec_total = total("dec_agree"), total("dec_total")
    return CompareResult(
        images=n, num_patches=cfg.num_patches, selector_blocks=list(cfg.selector_blocks),
        float_top1=float((pf == y).mean()), int_top1=float((pq == y).mean()), agreement=float((pf == pq).mean()),
        kept_float=kf, kept_int=kq, layer_sqnr={k: v for k, v in res.items() if k.startswith("blocks.")},
        selector_sqnr={k: v for k, v in res.items() if k.startswith("sel.")}, logits_sqnr=sqnr_db(lf, lq),
        sqnr_images=total("measured"), info={"selector": cfg.selector, "where": cfg.scheme.where},
        selector_agreement=sel_agree / sel_total if sel_total else 1.0, selector_tokens=sel_total,
        decision_agreement=dec_agree / dec_total if dec_total else 1.0, decision_tokens=dec_total,
        items=cat("items"), labels=y, logits_float=lf.astype(np.float32), logits_int=np.concatenate(cat("logits_raw")),
        logits_frac=parts[0].logits_frac, masks_float=cat("masks_float"), masks_int=cat("masks_int"),
        kept_ids_float=cat("ids_float"), kept_ids_int=cat("ids_int"), cand_ids_float=cat("cands_float"),
        cand_ids_int=cat("cands_int"))


def compare_dataset(model: DeiT, q: QModel, data, limit: int | None = None, batch: int = 16,
                    sqnr_images: int = 64, progress: bool = True) -> CompareResult:
    from tqdm import tqdm
    n = len(data) if limit is None else min(limit, len(data))
    if n == 0:
        raise UsageError(f"data {data.name!r} has no images to compare on")
    with tqdm(total=n, unit="img", desc="compare", disable=not progress, dynamic_ncols=True) as bar:
        part = compare_part(model, q, data, 0, n, batch, sqnr_images, bar)
    return finish([part], model.cfg)


# ------------------------------------------------------------------ output
def format_table(r: CompareResult) -> str:
    lines = [f"images: {r.images}",
             f"{'':28s} {'float':>10s} {'int16':>10s}",
             f"{'top-1':28s} {100 * r.float_top1:9.2f}% {100 * r.int_top1:9.2f}%",
             f"{'top-1 agreement':28s} {'':10s} {100 * r.agreement:9.2f}%",
             f"{'logits SQNR (dB)':28s} {'':10s} {r.logits_sqnr:10.1f}"]
    for j, (s, b) in enumerate(zip(r.stage_stats(), r.selector_blocks)):
        lines.append(f"{f'kept tokens, stage {j} (blk {b})':28s} {s[0]:10.1f} {s[3]:10.1f}   "
                     f"of {r.num_patches}; min/max float {s[1]}/{s[2]}, int16 {s[4]}/{s[5]}")
        lines.append(f"{f'  keep rate, stage {j}':28s} {100 * s[0] / r.num_patches:9.1f}% "
                     f"{100 * s[3] / r.num_patches:9.1f}%")
    if r.selector_tokens:
        lines.append(f"selector decisions equal on the same input tokens: {100 * r.selector_agreement:.2f}% "
                     f"of {r.selector_tokens}; decision-score SQNR " +
                     ", ".join(f"stage {k.split('.')[1]} {v:.1f} dB" for k, v in r.selector_sqnr.items()))
    if r.kept_float.shape[1]:
        lines.append(flip_line(r.images, *r.flips()))
    if r.decision_tokens:
        lines.append(f"decisions equal, each model on its own forward: {100 * r.decision_agreement:.2f}% "
                     f"of {r.decision_tokens} candidate tokens (per stage, by token identity)")
    if r.layer_sqnr:
        depth = 1 + max(int(k.split(".")[1]) for k in r.layer_sqnr)
        lines.append(f"per-layer SQNR in dB (first {r.sqnr_images} images; each block fed the float input):")
        lines.append("block " + "".join(f"{n:>6s}" for n in LAYERS))
        for i in range(depth):
            lines.append(f"{i:5d} " + "".join(f"{r.layer_sqnr.get(f'blocks.{i}.{n}', float('nan')):6.1f}"
                                               for n in LAYERS))
    return "\n".join(lines)


def write_json(r: CompareResult, path) -> None:
    """Write the results to `path` (the CLI writes through base.outputs: temp file, rename)."""
    Path(path).write_text(json.dumps(r.to_json(), indent=1) + "\n")


def write_plot(r: CompareResult, path, title: str = "") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [3, 1]})
    names = list(r.layer_sqnr)
    vals = [min(r.layer_sqnr[k], 120.0) for k in names]
    depth = 1 + max((int(k.split(".")[1]) for k in names), default=-1)
    colors = plt.cm.tab10(np.arange(max(depth, 1)) % 10)
    for i in range(depth):
        idx = [t for t, k in enumerate(names) if k.startswith(f"blocks.{i}.")]
        ax1.plot(idx, [vals[t] for t in idx], "o-", ms=3, color=colors[i], label=f"block {i}")
    for k, v in r.selector_sqnr.items():     # each selector sits between blocks b-1 and b
        j = int(k.split(".")[1])
        ln1 = f"blocks.{r.selector_blocks[j]}.ln1"
        x = names.index(ln1) - 0.5 if ln1 in names else None
        if x is not None:
            ax1.plot([x], [min(v, 120.0)], "k*", ms=10, label="selector score" if j == 0 else None)
            vals.append(min(v, 120.0))
    ax1.set_xticks(range(len(names)))
    ax1.set_xticklabels([k.split(".")[-1] for k in names], rotation=90, fontsize=6)
    ax1.set_ylabel("SQNR (dB)")
    ax1.set_title(f"per-layer SQNR, golden int16 vs float (first {r.sqnr_images} images)")
    ax1.grid(alpha=0.3)
    if vals:
        lo, hi = min(vals), max(vals)
        ax1.set_ylim(lo - 0.25 * (hi - lo + 1), hi + 0.05 * (hi - lo + 1))
    ax1.legend(fontsize=7, ncol=min(depth + 1, 7), loc="lower center")
    stats = r.stage_stats()
    if stats:
        xs = np.arange(len(stats))
        for off, lab, m, lo, hi, c in ((-0.2, "float", 0, 1, 2, "tab:blue"), (0.2, "int16", 3, 4, 5, "tab:orange")):
            mean = np.array([s[m] for s in stats])
            err = np.array([[s[m] - s[lo] for s in stats], [s[hi] - s[m] for s in stats]])
            ax2.bar(xs + off, mean, 0.4, yerr=err, capsize=4, color=c, label=lab)
        ax2.axhline(r.num_patches, color="gray", ls="--", lw=1)
        ax2.set_xticks(xs)
        ax2.set_xticklabels([f"stage {j}\n(blk {b})" for j, b in enumerate(r.selector_blocks)])
        ax2.set_ylabel(f"kept patch tokens (of {r.num_patches})")
        ax2.set_title("kept tokens per stage (mean, min-max)")
        ax2.legend(fontsize=8)
    else:
        ax2.text(0.5, 0.5, "no selectors", ha="center", va="center")
        ax2.set_axis_off()
    fig.suptitle(title or f"top-1 float {100 * r.float_top1:.2f}%, int16 {100 * r.int_top1:.2f}%, "
                 f"agreement {100 * r.agreement:.2f}% ({r.images} images)")
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
