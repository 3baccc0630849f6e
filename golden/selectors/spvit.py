"""SPViT (spvit.txt Sec. 4.2-4.3): per-head scoring MLPs and a head branch before blocks
`selector_blocks`, an adaptive keep decision, dropped tokens fused into a package token.
Specification: docs/selector.md. The golden selector is `golden.layers.QSelector`, the float
one `golden.float_model.SPViTSelector` (kept there: the RTL and its tests import them)."""
from __future__ import annotations

import numpy as np

from ..tokens import Group, Record, take_ids
from .base import Scheme, check


class SPViT(Scheme):
    name = "spvit"
    title = "SPViT"
    where = "before"
    adaptive = True

    def check(self, cfg) -> None:
        self.check_blocks(cfg, 1, "the blocks a selector runs before")
        check(cfg.head_dim % 4 == 0, f"the SPViT selector needs head_dim divisible by 4 (head_dim = {cfg.head_dim})")
        if cfg.keep_cap:
            check(len(cfg.keep_cap) in (1, len(cfg.selector_blocks)),
                  f"keep_cap needs 1 or {len(cfg.selector_blocks)} entries (got {len(cfg.keep_cap)})")
            check(all(c >= 0 for c in cfg.keep_cap), f"keep_cap entries must be >= 0 (got {list(cfg.keep_cap)})")
            check(all(c <= cfg.num_patches for c in cfg.keep_cap),
                  f"keep_cap entries must be at most the {cfg.num_patches} patch tokens a stage can score "
                  f"(got {list(cfg.keep_cap)}); a larger cap never binds: lower it or remove keep_cap")
        self.check_unused(cfg, keep_cap=False, package=False)

    # ---- the accelerator
    def extra_tokens(self, cfg) -> int:
        return cfg.stages                       # one package token per stage

    def misfits(self, cfg, hw) -> list:
        if 3 * cfg.num_heads > hw.hidden_max:   # z (2 per head) and w (1 per head) in B3
            return [f"the selector needs 3 x heads = {3 * cfg.num_heads} channels > hidden_max {hw.hidden_max}"]
        return []

    # ---- counts
    def schedule(self, cfg, keep=None) -> list:
        """`keep[s]`: the fraction of the image's patch tokens still kept after stage s
        (cumulative); each stage adds one package token. None: every token kept."""
        if keep is None:
            return [(cfg.num_tokens, cfg.num_tokens)] * cfg.depth
        if len(keep) != cfg.stages:
            raise ValueError(f"--keep needs {cfg.stages} rates, one per selector stage (got {len(keep)})")
        if any(not 0.0 <= k <= 1.0 for k in keep) or list(keep) != sorted(keep, reverse=True):
            raise ValueError(f"keep rates must lie in [0, 1] and not increase (got {list(keep)})")
        out, n, stage = [], cfg.num_tokens, 0
        for i in range(cfg.depth):
            if stage < cfg.stages and i == cfg.selector_blocks[stage]:
                n = 1 + round(keep[stage] * cfg.num_patches) + stage + 1
                stage += 1
            out.append((n, n))
        return out

    def selector_macs(self, cfg, stage: int, n_in: int, n_out: int) -> int:
        """n_in = tokens entering the selector (CLS included; CLS is not scored)."""
        hh, dh = cfg.num_heads, cfg.head_dim
        h2 = max(hh // 2, 1)
        m = n_in - 1
        return hh * m * (dh * dh + dh * dh // 2 + dh // 2 * dh // 4 + dh // 4 * 2) + m * 2 * hh * h2

    def selector_params(self, cfg) -> int:
        hh, dh = cfg.num_heads, cfg.head_dim
        h2 = max(hh // 2, 1)
        per_head = (2 * dh + (dh * dh + dh) + (dh * dh // 2 + dh // 2) + (dh // 2 * dh // 4 + dh // 4)
                    + (dh // 4 * 2 + 2))
        return hh * per_head + (hh * h2 + h2) + (h2 * hh + hh)

    # ---- float twin
    def build(self, model) -> None:
        from torch import nn

        from ..float_model import SPViTSelector
        model.score_predictor = nn.ModuleList(SPViTSelector(model.cfg) for _ in model.cfg.selector_blocks)

    def f_select(self, model, stage: int, x, trace=None):
        """One image x [N, C] through selector `stage`: (output tokens, keep [ns])."""
        import torch

        from ..float_model import _noop, decide, package
        trace = trace or _noop
        n_pkg = stage
        z, w = model.score_predictor[stage](x[None], n_pkg, trace, f"sel.{stage}.")
        keep, _, m = decide(z, w, model.cfg.cap(stage))
        keep, m = keep[0], m[0]
        ns = keep.shape[0]
        pkg = package(x[1:1 + ns][~keep], m[~keep], model.cfg.package_mode)
        out = torch.cat([x[:1], x[1:1 + ns][keep], x[1 + ns:], pkg[None]], 0)
        return out, keep

    def f_before(self, model, i, g: Group, rec: Record, trace) -> list:
        cfg = model.cfg
        if i not in cfg.selector_blocks:
            return [g]
        s = cfg.selector_blocks.index(i)
        out = []
        for r in range(len(g.rows)):      # the kept count is per image: one group per image from here
            y, keep = self.f_select(model, s, g.x[r], trace)
            keep = keep.numpy()
            order = np.concatenate([[0], 1 + np.flatnonzero(keep), np.arange(1 + len(keep), g.x.shape[1]), [-1]])
            out.append(self._regroup(g, r, y, order, keep, s, cfg, rec))
            trace(f"res.{i}", y)
        return out

    @staticmethod
    def _regroup(g, r, y, order, keep, s, cfg, rec):
        ids = g.ids[r:r + 1]
        rec.mark(s, g.rows[r:r + 1], ids[:, 1:1 + len(keep)], keep[None])
        return Group(y[None], g.rows[r:r + 1], take_ids(ids, order[None], cfg.num_patches + 1 + s))

    def randomize(self, model, images) -> None:
        """Shift each selector's final bias, stage by stage, so that every head's median keep
        margin z0 - z1 is zero on `images`: about half of the tokens are kept at each stage."""
        import torch
        cfg = model.cfg
        for j in range(cfg.stages):
            d = [[] for _ in range(cfg.num_heads)]
            calls = [0]

            def trace(name, t, j=j):
                if name == f"sel.{j}.z":
                    d[calls[0] % cfg.num_heads].append((t[..., 0] - t[..., 1]).flatten())
                    calls[0] += 1

            model(images, trace=trace)
            for h, out in enumerate(model.score_predictor[j].out_conv):
                med = torch.cat(d[h]).median()
                out[4].bias[0] -= med / 2
                out[4].bias[1] += med / 2

    # ---- integer model
    def q_before(self, q, i, g: Group, rec: Record) -> list:
        if i not in q.selectors:
            return [g]
        s = q.cfg.selector_blocks.index(i)
        out = []
        for r in range(len(g.rows)):
            y, sel = q.selectors[i](g.x[r], n_pkg=s)
            out.append(self._regroup(g, r, y, sel.order, sel.keep, s, q.cfg, rec))
        return out
