"""DynamicViT (dynamicvit.txt Sec. 3.2 Eq. 1-5, Sec. 3.4 Eq. 17; the authors' models/dyvit.py
at evaluation): before each block of `selector_blocks` a local/global MLP predictor on the full
embedding scores the patch tokens, and the `int(P * rho^(s+1))` best are kept (a fixed count),
CLS always, in descending score order. Specification: docs/selector.md.

The float predictor module is `golden.float_model.DynamicViTPredictor` (the authors' layout and
key names `score_predictor.<stage>.in_conv.{0,1}`, `.out_conv.{0,2,4}`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..arith import as_int, recip, rshift_round
from ..kernels import PWL
from ..layers import MEAN_RECIP_BITS, QLayerNorm, QLinear
from ..tokens import Group, Record, keep_mask, rank_desc, take_ids
from .base import Scheme, check


@dataclass(frozen=True, eq=False)
class QPredictor:
    """The integer predictor of one stage and its top-k. Layers as the authors' PredictorLG;
    the last layer is folded into one output row (keep minus drop: w0 - w1, b0 - b1) whose
    48-bit accumulator is the score, so the ranking is never rounded to 16 bits."""
    in_ln: QLayerNorm        # [C], eps 1e-5
    in_fc: QLinear           # [C, C]
    in_act: PWL              # GELU
    out1: QLinear            # [C/2, C]
    act1: PWL
    out2: QLinear            # [C/4, C/2]
    act2: PWL
    score: QLinear           # [1, C/4]; only its accumulator is used (frac in_frac + w_frac)
    keep: int                # patch tokens kept
    res_frac: int            # format of the token stream

    def scores(self, x) -> np.ndarray:
        """x int16 [b, n, C] = [CLS, patches] -> score [b, n - 1] int64, < 2^47 in magnitude."""
        cand = as_int(x)[:, 1:]
        f = self.in_act(self.in_fc(self.in_ln(cand)))                  # [b, n-1, C]
        c = f.shape[-1]
        glob = rshift_round(f[..., c // 2:].sum(1, keepdims=True) * recip(cand.shape[1], MEAN_RECIP_BITS),
                            MEAN_RECIP_BITS)                            # mean over the patch tokens, < 2^57
        feat = np.concatenate([f[..., : c // 2], np.broadcast_to(glob, (*f.shape[:2], c - c // 2))], -1)
        return self.score.acc(self.act2(self.out2(self.act1(self.out1(feat)))))[..., 0]

    def __call__(self, x):
        """x [b, n, C] -> (tokens [b, 1 + keep, C] = [CLS, kept by descending score], order
        [b, 1 + keep] (input positions), score [b, n - 1])."""
        x = as_int(x)
        s = self.scores(x)
        top = rank_desc(s)[:, : self.keep]
        order = np.concatenate([np.zeros((len(x), 1), dtype=np.int64), 1 + top], 1)
        return np.take_along_axis(x, order[..., None], 1), order, s


class DynamicViT(Scheme):
    name = "dynamicvit"
    title = "DynamicViT"
    hardware = True           # the RTL runs it (top-k DECIDE, MATMUL into SB, COMPACT in rank order)
    where = "before"

    def check(self, cfg) -> None:
        self.check_blocks(cfg, 1, "the blocks a predictor runs before")
        check(cfg.embed_dim % 4 == 0,
              f"the DynamicViT predictor needs embed_dim divisible by 4 (embed_dim = {cfg.embed_dim})")
        rates = self.check_rates(cfg)
        if len(cfg.keep_rate) > 1:
            check(list(rates) == sorted(rates, reverse=True),
                  f"keep_rate per stage (fractions of all patch tokens) must not increase (got {list(rates)})")
        for s, k in enumerate(self.counts(cfg)):
            check(k >= 1, f"keep_rate {list(cfg.keep_rate)} keeps "
                          f"int({cfg.num_patches} * {self.ratio(cfg, s):.4g}) = {k} "
                          f"patch tokens at stage {s}; raise keep_rate")
        self.check_unused(cfg, keep_rate=False)

    @staticmethod
    def ratio(cfg, s: int) -> float:
        """Kept fraction of all patch tokens after stage s: rho^(s+1) for one rate (the authors'
        [rho, rho^2, rho^3]), else the stage's own rate."""
        kr = cfg.keep_rate
        return kr[0] ** (s + 1) if len(kr) == 1 else kr[s]

    def counts(self, cfg) -> list:
        """Patch tokens kept per stage: int(P * ratio) in float64, as the authors' code."""
        return [int(cfg.num_patches * self.ratio(cfg, s)) for s in range(cfg.stages)]

    # ---- counts
    def schedule(self, cfg, keep=None) -> list:
        Scheme.schedule(self, cfg, keep)          # refuses --keep
        n, out, ks = cfg.num_tokens, [], dict(zip(cfg.selector_blocks, self.counts(cfg)))
        for i in range(cfg.depth):
            n = 1 + ks[i] if i in ks else n
            out.append((n, n))
        return out

    def selector_macs(self, cfg, stage: int, n_in: int, n_out: int) -> int:
        c = cfg.embed_dim
        return (n_in - 1) * (c * c + c * c // 2 + c // 2 * c // 4 + c // 4)

    def selector_params(self, cfg) -> int:
        c = cfg.embed_dim
        return 2 * c + (c * c + c) + (c * c // 2 + c // 2) + (c // 2 * c // 4 + c // 4) + (c // 4 * 2 + 2)

    # ---- float twin
    def build(self, model) -> None:
        from torch import nn

        from ..float_model import DynamicViTPredictor
        model.score_predictor = nn.ModuleList(DynamicViTPredictor(model.cfg.embed_dim)
                                              for _ in model.cfg.selector_blocks)

    def f_scores(self, model, stage: int, x, trace=None):
        """Float score z0 - z1 [b, n - 1] of the patch tokens of x [b, n, C] (the ranking of
        the authors' log-probability of keeping)."""
        from ..float_model import _noop
        z = model.score_predictor[stage](x[:, 1:], trace or _noop, f"sel.{stage}.")
        return z[..., 0] - z[..., 1]

    def f_top(self, model, stage: int, x, trace=None):
        import torch
        d = self.f_scores(model, stage, x, trace)
        k = self.counts(model.cfg)[stage]
        order = torch.cat([torch.zeros(len(x), 1, dtype=torch.long), 1 + rank_desc(d)[:, :k]], 1)
        return order, d

    def f_before(self, model, i, g: Group, rec: Record, trace) -> list:
        import torch
        if i not in model.cfg.selector_blocks:
            return [g]
        s = model.cfg.selector_blocks.index(i)
        order, d = self.f_top(model, s, g.x, trace)
        y = torch.gather(g.x, 1, order[..., None].expand(-1, -1, g.x.shape[-1]))
        return [self._regroup(g, order.numpy(), y, s, rec, d)]

    @staticmethod
    def _regroup(g: Group, order, y, s: int, rec: Record, score) -> Group:
        rec.mark(s, g.rows, g.ids[:, 1:], keep_mask(order, g.x.shape[1] - 1), score)
        return Group(y, g.rows, take_ids(g.ids, order, -1))

    # ---- integer model
    def score_unit(self, q, stage: int) -> float:
        sel = q.selectors[q.cfg.selector_blocks[stage]].score    # the folded row's accumulator
        return 2.0 ** -(sel.in_frac + sel.w_frac)

    def q_before(self, q, i, g: Group, rec: Record) -> list:
        if i not in q.selectors:
            return [g]
        y, order, score = q.selectors[i](g.x)
        return [self._regroup(g, order, y, q.cfg.selector_blocks.index(i), rec, score)]
