"""Evo-ViT, the authors' DeiT release (deit/evo_deit.py at evaluation; evo-vit.txt): every
token carries a running score, the CLS token's attention summed over heads, blended into the
score block by block (`score_momentum` = the authors' `tradeoff`, 0.5, from the first stage on;
before it each block's attention replaces the score). At each block of `selector_blocks` all
patch tokens are re-ranked by score; the top `int(P * keep_rate)` run the blocks up to the next
stage (slow path, their scores keep updating); the others (placeholders) are carried unchanged,
scores frozen, and put back behind them when the stage ends. The DeiT release has no
representative token and no fast update: placeholders are frozen. Output:
head(norm(mean of all patch tokens)), not the CLS token. Specification: docs/selector.md.

The authors' DeiT release stores the attention in model-level lists (`qks.i.qk`, `vs.i.v`,
`norms.i`, `projs.i`); `KEY_MAP` maps them onto timm's names.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..arith import as_int, recip, requant, rshift_round
from ..kernels import CLS_ATTN_FRAC
from ..layers import MEAN_RECIP_BITS
from ..tokens import Group, Record, rank_desc
from .base import Scheme, check
from .evit import sharpen_attention

ONE_Q15 = 1 << 15


@dataclass(frozen=True, eq=False)
class QEvoSelector:
    """One stage: how many tokens run the slow path, and the Q15 weight of a block's CLS
    attention in the running score during this stage (2^15: replace)."""
    keep: int
    momentum: int


def blend(old, new, t_q: int):
    """Running score update, integer: round(((2^15 - t) old + t new) / 2^15), t in Q15 (0..2^15).
    Scores are CLS attentions (QAttention.attend, 23 fraction bits): <= 2^27 for H <= 16;
    products <= 2^42."""
    if old is None or t_q == ONE_Q15:
        return as_int(new)
    return rshift_round((ONE_Q15 - t_q) * as_int(old) + t_q * as_int(new), 15)


class EvoViT(Scheme):
    name = "evovit"
    title = "Evo-ViT"
    hardware = True           # the RTL runs it (momentum capture, COMPACT scores and rest, COPY, GMEAN shift)
    where = "before"
    cls_format = True

    def check(self, cfg) -> None:
        self.check_blocks(cfg, 1, "the blocks where a stage starts (tokens re-ranked; the top ones run the "
                                  "blocks up to the next stage)")
        self.check_rates(cfg)
        for s, k in enumerate(self.counts(cfg)):
            check(k >= 1, f"keep_rate {list(cfg.keep_rate)} keeps int({cfg.num_patches} * rate) = 0 tokens at "
                          f"stage {s}; raise keep_rate")
        m = self.momentum(cfg)
        check(0.0 <= m <= 1.0, f"score_momentum must lie in [0, 1] (got {m})")
        self.check_unused(cfg, keep_rate=False, momentum=False)

    @staticmethod
    def momentum(cfg) -> float:
        return 0.5 if cfg.score_momentum is None else float(cfg.score_momentum)

    def counts(self, cfg) -> list:
        """Tokens on the slow path per stage: int(P * rate) (of all patch tokens, every stage)."""
        return [int(cfg.num_patches * r) for r in self.rates(cfg)]

    def stage_of(self, cfg, i: int) -> int:
        """The stage block i belongs to (-1 before the first)."""
        return sum(1 for b in cfg.selector_blocks if b <= i) - 1

    # ---- counts
    def schedule(self, cfg, keep=None) -> list:
        Scheme.schedule(self, cfg, keep)
        ks = self.counts(cfg)
        out = []
        for i in range(cfg.depth):
            s = self.stage_of(cfg, i)
            n = cfg.num_tokens if s < 0 else 1 + ks[s]
            out.append((n, n))
        return out

    # ---- float twin
    def has_mid(self, cfg, i: int) -> bool:
        return i >= cfg.selector_blocks[0] - 1           # the score the first stage reads is block b0 - 1's

    def f_mid(self, model, i, g: Group, x1, a, rec: Record | None, trace):
        s = self.stage_of(model.cfg, i)
        t = 1.0 if s < 0 else self.momentum(model.cfg)
        new = a[:, :, 0, 1:].sum(1)
        old = g.state.get("score")
        g.state["score"] = new if old is None or t == 1.0 else (1 - t) * old + t * new
        return x1

    def f_before(self, model, i, g: Group, rec: Record, trace) -> list:
        import torch
        if i not in model.cfg.selector_blocks:
            return [g]
        s = model.cfg.selector_blocks.index(i)
        x, score, ids = self._merge(g, torch.cat)
        trace(f"res.{i}", x.flatten(0, 1))
        return [self._split(g, x, score, ids, rank_desc(score), self.counts(model.cfg)[s], s, rec, torch.cat,
                            lambda t, r: torch.gather(t, 1, r if t.dim() == 2
                                                      else r[..., None].expand(-1, -1, t.shape[-1])),
                            None)]

    def f_readout(self, model, g: Group, trace):
        import torch
        x, _, _ = self._merge(g, torch.cat)
        trace(f"res.{model.cfg.depth}", x.flatten(0, 1))
        pool = x[:, 1:].mean(1)
        trace("pool", pool)
        return pool, x

    @staticmethod
    def _merge(g: Group, cat, convert=None):
        """Active tokens followed by the placeholders (converted to the active tokens' format
        by `convert` in the integer model); their scores and ids likewise."""
        st = g.state
        if "parked" not in st:
            return g.x, st.get("score"), g.ids
        parked = st["parked"] if convert is None else convert(st["parked"], st["park_frac"])
        return (cat([g.x, parked], 1), cat([st["score"], st["park_score"]], 1),
                np.concatenate([g.ids, st["park_ids"]], 1))

    @staticmethod
    def _split(g, x, score, ids, rank, k, s, rec, cat, take, x_frac):
        """Re-rank the non-CLS tokens by score (descending, ties to the lower position) and
        split them into the slow path (CLS, then the top k) and the placeholders (state)."""
        pat, sc = take(x[:, 1:], rank), take(score, rank)
        r = np.asarray(rank)
        pid = np.take_along_axis(ids[:, 1:], r, 1)
        keep = np.zeros(r.shape, dtype=bool)
        np.put_along_axis(keep, r[:, :k], True, 1)
        rec.mark(s, g.rows, ids[:, 1:], keep, score)
        state = {"score": sc[:, :k], "parked": pat[:, k:], "park_score": sc[:, k:], "park_ids": pid[:, k:],
                 "park_frac": x_frac}
        return Group(cat([x[:, :1], pat[:, :k]], 1), g.rows, np.concatenate([ids[:, :1], pid[:, :k]], 1), state)

    def randomize(self, model, images) -> None:
        sharpen_attention(model)

    # ---- integer model
    def score_unit(self, q, stage: int) -> float:
        return 2.0 ** -CLS_ATTN_FRAC                           # the head sum with 23 fraction bits

    def q_mid(self, q, i, g: Group, x1, a, rec: Record | None, force=None):
        if rec is None:                   # a replay of one block: no running score to update
            return x1
        s = self.stage_of(q.cfg, i)
        t = ONE_Q15 if s < 0 else q.selectors[q.cfg.selector_blocks[s]].momentum
        g.state["score"] = blend(g.state.get("score"), as_int(a)[:, 1:], t)
        return x1

    def q_before(self, q, i, g: Group, rec: Record) -> list:
        if i not in q.selectors:
            return [g]
        f = q.blocks[i].in_frac
        x, score, ids = self._merge(g, np.concatenate, lambda t, pf: requant(t, pf - f))
        return [self._split(g, as_int(x), score, ids, rank_desc(score), q.selectors[i].keep,
                            q.cfg.selector_blocks.index(i), rec, np.concatenate,
                            lambda t, r: np.take_along_axis(t, r if t.ndim == 2 else r[..., None], 1), f)]

    def q_readout(self, q, g: Group):
        f, fp = q.blocks[-1].out_frac, q.fmt["pool"]
        x, _, _ = self._merge(g, np.concatenate, lambda t, pf: requant(t, pf - f))
        x = as_int(x)
        pool = requant(x[:, 1:].sum(1) * recip(x.shape[1] - 1, MEAN_RECIP_BITS), MEAN_RECIP_BITS + f - fp)
        return pool, x

    def readout_fmt(self, cfg) -> str:
        return "pool"
