"""Tokens in flight and what the selection stages decided, shared by the integer model
(golden/network.py), the float twin (golden/float_model.py), the token-selection schemes
(golden/selectors/) and the reports.

A `Group` holds images with the same token count (a batch until an adaptive selector splits it
per image). Every token carries an id (0 CLS, 1..P patches in raster order, P + 1 + s the token
made at stage s: SPViT's package token, EViT's fused token), so that decisions of two models
can be compared token by token (`Record`, `decision_agreement`).

The one ranking rule of every top-k (docs/selector.md): score descending, ties toward the
lower position in the current token sequence (`rank_desc`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


# ------------------------------------------------------------------ the ranking rule
def rank_desc(score) -> np.ndarray:
    """Positions of `score` (last axis) by descending score, ties toward the lower position.
    Integer scores are compared exactly; float scores by value (a stable sort)."""
    import torch
    if isinstance(score, torch.Tensor):
        return torch.sort(score, dim=-1, descending=True, stable=True).indices
    return np.argsort(-np.asarray(score), axis=-1, kind="stable")


# ------------------------------------------------------------------ tokens in flight
@dataclass
class Group:
    x: object                 # tokens [b, n, C]: int64 ndarray (golden) or torch tensor (float twin)
    rows: np.ndarray          # image index (within the batch) of each row
    ids: np.ndarray           # [b, n] token ids (module docstring)
    state: dict = field(default_factory=dict)   # scheme state carried between blocks

    @staticmethod
    def start(x) -> "Group":
        b, n = x.shape[:2]
        return Group(x, np.arange(b), np.broadcast_to(np.arange(n), (b, n)).copy())


def keep_mask(order, m: int) -> np.ndarray:
    """bool [b, m]: which of the m candidates (input positions 1..m; 0 is the CLS token) the
    output sequence `order` [b, 1 + kept] (input positions, CLS first) keeps."""
    keep = np.zeros((len(order), m), dtype=bool)
    np.put_along_axis(keep, np.asarray(order)[:, 1:] - 1, True, 1)
    return keep


def take_ids(ids: np.ndarray, order: np.ndarray, new_id: int) -> np.ndarray:
    """Ids of an output sequence given by `order` (input positions; -1 = a new token)."""
    order = np.asarray(order)
    return np.where(order >= 0, np.take_along_axis(ids, np.maximum(order, 0), -1), new_id)


def _numpy(t) -> np.ndarray:
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)


class Record:
    """What the selection stages decided, per image: tokens kept per stage, and by token id the
    candidates of each stage and the ones that went on through the full blocks; the keep masks
    (per image and stage: the sorted indices of the kept tokens among the stage's candidates in
    their order at the decision, docs/selector.md "Keep masks") with the candidates' token ids in
    that order; plus the order of every mid-block selection per block call (to replay the float
    twin's choice in the golden model when comparing one block at a time); and, where a scheme
    ranks by a score, the candidates' scores in that order (`scores`: integer in the golden
    model, `Scheme.score_unit` converts) to see how near a tie a decision was."""

    def __init__(self, images: int, cfg):
        s, width = cfg.stages, cfg.num_patches + 1 + cfg.stages
        self.kept = np.zeros((images, s), dtype=np.int64)
        self.cand = np.zeros((images, s, width), dtype=bool)
        self.alive = np.zeros((images, s, width), dtype=bool)
        none = np.zeros(0, dtype=np.int64)
        self.masks = [[none] * s for _ in range(images)]       # [image][stage] int64 indices, sorted
        self.cand_ids = [[none] * s for _ in range(images)]    # [image][stage] candidates' token ids, in order
        self.scores = [[None] * s for _ in range(images)]      # [image][stage] candidates' scores, in order
        self.orders: dict = {}

    def mark(self, stage: int, rows, cand_ids, keep, scores=None) -> None:
        """Stage `stage` saw tokens `cand_ids` [b, m] (in their sequence order) of images `rows`
        and kept `keep` [b, m], ranked by `scores` [b, m] when given."""
        cand_ids, keep = np.asarray(cand_ids), np.asarray(keep, dtype=bool)
        rows = np.asarray(rows)
        r = np.broadcast_to(rows[:, None], cand_ids.shape)
        self.cand[r, stage, cand_ids] = True
        self.alive[r[keep], stage, cand_ids[keep]] = True
        self.kept[rows, stage] = keep.sum(-1)
        for j, row in enumerate(rows):
            self.masks[row][stage] = np.flatnonzero(keep[j]).astype(np.int64)
            self.cand_ids[row][stage] = cand_ids[j].astype(np.int64)
            if scores is not None:
                self.scores[row][stage] = _numpy(scores[j])

    def kept_ids(self, image: int, stage: int) -> np.ndarray:
        """Token ids (module docstring) of the tokens image `image` kept at stage `stage`, in
        the order of its keep mask."""
        return self.cand_ids[image][stage][self.masks[image][stage]]

    def add_order(self, block: int, order) -> None:
        self.orders.setdefault(block, []).append(np.asarray(order))

    @staticmethod
    def concat(recs: list) -> "Record":
        out = object.__new__(Record)
        out.kept = np.concatenate([r.kept for r in recs])
        out.cand = np.concatenate([r.cand for r in recs])
        out.alive = np.concatenate([r.alive for r in recs])
        out.masks = [m for r in recs for m in r.masks]
        out.cand_ids = [c for r in recs for c in r.cand_ids]
        out.scores = [c for r in recs for c in r.scores]
        out.orders = {}
        for r in recs:
            for b, v in r.orders.items():
                out.orders.setdefault(b, []).extend(v)
        return out


def decision_agreement(a: Record, b: Record) -> tuple[int, int]:
    """(equal, total) over images and stages: a token counts if it was a candidate in either
    model; it agrees if both kept it or both did not."""
    cand = a.cand | b.cand
    return int((cand & (a.alive == b.alive)).sum()), int(cand.sum())
