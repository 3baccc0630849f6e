"""EViT (evit.txt Sec. 3, Eq. 3; the authors' evit.py at evaluation): inside each block of
`selector_blocks`, after the attention residual and before the MLP, the non-CLS tokens are
ranked by the CLS token's attention (averaged over heads) and the top `ceil(keep_rate * (N-1))`
are kept, in descending order; the others are fused into one token `sum_i a_i x_i` appended
last (`fuse_token`, default on). A fused token of an earlier stage is an ordinary candidate.
No parameters: timm DeiT checkpoints load as they are. Specification: docs/selector.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..arith import as_int, recip, requant
from ..kernels import CLS_ATTN_FRAC
from ..tokens import Group, Record, rank_desc, take_ids
from .base import Scheme

HEAD_RECIP_BITS = 20     # fused token: round(sum_i S_i x_i * floor(2^20 / H) / 2^43), S_i the score (Q23)


@dataclass(frozen=True, eq=False)
class QEViTSelector:
    """The integer selection inside one block. The score of token i is S_i = sum_h P_h[0, i],
    the CLS row of the block's own integer softmax summed over heads with 23 fraction bits
    (QAttention.attend; H times the head average: the same ranking, no division)."""
    keep: int                # non-CLS tokens kept
    fuse: bool
    heads: int

    def __call__(self, x1, a, force=None):
        """x1 int16 [b, n, C]: the attention residual (block mid format); a [b, n]: the CLS
        attention (QAttention.attend, < H 2^23 + 1). Returns (tokens [b, 1 + keep (+ 1 fused), C],
        order (input positions, -1 the fused token), score S [b, n - 1]). `force`: an order to
        replay."""
        x1 = as_int(x1)
        b, n, _ = x1.shape
        s = as_int(a)[:, 1:]
        if self.keep >= n - 1:                                        # nothing to prune: no fused token
            return x1, np.broadcast_to(np.arange(n), (b, n)), s
        top = rank_desc(s)[:, : self.keep] if force is None else np.asarray(force)[:, 1:1 + self.keep] - 1
        order = np.concatenate([np.zeros((b, 1), dtype=np.int64), 1 + top], 1)
        out = np.take_along_axis(x1, order[..., None], 1)
        if not self.fuse:
            return out, order, s
        w = s.copy()
        np.put_along_axis(w, top, 0, 1)                               # weights of the inattentive tokens only
        acc = np.einsum("bn,bnc->bc", w, x1[:, 1:])                   # sum S_i x_i: |acc| < 2^43
        fused = requant(acc * recip(self.heads, HEAD_RECIP_BITS), HEAD_RECIP_BITS + CLS_ATTN_FRAC)   # < 2^63
        return (np.concatenate([out, fused[:, None]], 1),
                np.concatenate([order, np.full((b, 1), -1, dtype=np.int64)], 1), s)


class EViT(Scheme):
    name = "evit"
    title = "EViT"
    hardware = True           # the RTL runs it (ATTENTION's score capture, top-k, PACKAGE scores, rank order)
    where = "inside"
    cls_format = True

    def check(self, cfg) -> None:
        self.check_blocks(cfg, 0, "the blocks that prune after their attention (before their MLP)")
        self.check_rates(cfg)
        self.check_unused(cfg, keep_rate=False, fuse=False)

    @staticmethod
    def fuse(cfg) -> bool:
        return True if cfg.fuse_token is None else cfg.fuse_token

    def counts(self, cfg) -> list:
        """Per stage (non-CLS tokens entering, kept, non-CLS tokens leaving): kept =
        ceil(rate * entering) in float64 as the authors' code; keeping all prunes nothing (and
        adds no fused token), else the fused token is one more."""
        n, out = cfg.num_patches, []
        for r in self.rates(cfg):
            k = min(math.ceil(r * n), n)
            nxt = n if k == n else k + int(self.fuse(cfg))
            out.append((n, k, nxt))
            n = nxt
        return out

    # ---- counts
    def schedule(self, cfg, keep=None) -> list:
        Scheme.schedule(self, cfg, keep)
        at = {b: c for b, c in zip(cfg.selector_blocks, self.counts(cfg))}
        n, out = cfg.num_tokens, []
        for i in range(cfg.depth):
            if i in at:
                out.append((n, 1 + at[i][2]))
                n = 1 + at[i][2]
            else:
                out.append((n, n))
        return out

    def selector_macs(self, cfg, stage: int, n_in: int, n_out: int) -> int:
        """The fused token: one multiply-accumulate per channel of each inattentive token."""
        fuse = int(self.fuse(cfg))
        return (n_in - n_out + fuse) * cfg.embed_dim if fuse and n_out < n_in else 0

    # ---- float twin
    def has_mid(self, cfg, i: int) -> bool:
        return i in cfg.selector_blocks

    def f_mid(self, model, i, g: Group, x1, a, rec: Record, trace):
        import torch
        s = model.cfg.selector_blocks.index(i)
        cls = a[:, :, 0, 1:].mean(1)                                  # [b, n-1]: the authors' head average
        k = self.counts(model.cfg)[s][1]
        b, n, c = x1.shape
        if k >= n - 1:                                                # nothing to prune: no fused token
            self._regroup(g, np.broadcast_to(np.arange(n), (b, n)), s, model.cfg, rec, i, cls)
            return x1
        top = rank_desc(cls)[:, :k]
        order = torch.cat([torch.zeros(b, 1, dtype=torch.long), 1 + top], 1)
        out = torch.gather(x1, 1, order[..., None].expand(-1, -1, c))
        if self.fuse(model.cfg):
            w = cls.scatter(1, top, 0.0)
            out = torch.cat([out, (x1[:, 1:] * w[..., None]).sum(1, keepdim=True)], 1)
            order = torch.cat([order, torch.full((b, 1), -1, dtype=torch.long)], 1)
        self._regroup(g, order.numpy(), s, model.cfg, rec, i, cls)
        return out

    @staticmethod
    def _regroup(g: Group, order, s: int, cfg, rec: Record | None, i: int, score) -> None:
        if rec is None:
            return
        keep = np.zeros(g.ids[:, 1:].shape, dtype=bool)
        kk = order[:, 1:]
        np.put_along_axis(keep, kk[:, kk[0] >= 0] - 1, True, 1)       # -1 marks the fused token (last column)
        rec.mark(s, g.rows, g.ids[:, 1:], keep, score)
        rec.add_order(i, order)
        g.ids = take_ids(g.ids, order, cfg.num_patches + 1 + s)

    def randomize(self, model, images) -> None:
        sharpen_attention(model)

    # ---- integer model
    def score_unit(self, q, stage: int) -> float:
        return 2.0 ** -CLS_ATTN_FRAC / q.cfg.num_heads        # S = H 2^23 times the float head mean

    def q_mid(self, q, i, g: Group, x1, a, rec: Record | None, force=None):
        y, order, score = q.selectors[i](x1, a, force)
        self._regroup(g, np.asarray(order), q.cfg.selector_blocks.index(i), q.cfg, rec, i, score)
        return y

def sharpen_attention(model, factor: float = 4.0) -> None:
    """Scale every block's query and key weights by `factor` (scores by factor^2): a
    timm-initialised random twin attends almost uniformly (scores ~0.1), so its CLS-attention
    ranking would hinge on rounding; trained DeiTs attend far more selectively."""
    import torch
    with torch.no_grad():
        for blk in model.blocks:
            c = blk.attn.proj.weight.shape[0]
            blk.attn.qkv.weight[: 2 * c] *= factor
            blk.attn.qkv.bias[: 2 * c] *= factor
