"""EViT on the quantiser's side (the scheme and its integer selection `QEViTSelector`:
golden/selectors/evit.py, docs/selector.md): settings that follow from the config, and the
same-input decisions. No parameters: timm DeiT checkpoints load as they are."""
from __future__ import annotations

import numpy as np

from golden.arith import dequantize
from golden.kernels import CLS_ATTN_FRAC
from golden.selectors.evit import QEViTSelector
from golden.tokens import keep_mask, rank_desc

from .base import QuantScheme


class EViTQuant(QuantScheme):
    name = "evit"
    q_types = (QEViTSelector,)
    made_token = "fused"
    legend = ("greyed: patches not kept at that stage or an earlier one; a stage fuses the tokens it drops into one "
              "fused token (f0, f1, ...: not a patch, not drawn), a candidate of the next stage like any other")

    def makes_token(self, cfg, stage: int) -> bool:
        _, kept, leaving = cfg.scheme.counts(cfg)[stage]
        return leaving > kept

    # ---- calibration (quantize: the base's, a selector is its settings)
    def q_settings(self, cfg, fmt: dict) -> dict:
        sch = cfg.scheme
        return {b: dict(keep=k, fuse=sch.fuse(cfg), heads=cfg.num_heads)
                for b, (_, k, _) in zip(cfg.selector_blocks, sch.counts(cfg))}

    # ---- same-input decisions: block b's input, its attention, the selection
    def agreement_inputs(self, model, io, stage: int) -> list:
        return list(io[model.cfg.selector_blocks[stage]])

    def f_decide(self, model, stage: int, x):
        blk = model.blocks[model.cfg.selector_blocks[stage]]
        _, a = blk.attn.attend(blk.norm1(x))
        cls = a[:, :, 0, 1:].mean(1)
        k = model.cfg.scheme.counts(model.cfg)[stage][1]
        keep = np.zeros(cls.shape, dtype=bool)
        np.put_along_axis(keep, rank_desc(cls)[:, :k].numpy(), True, 1)
        return keep, cls.double().numpy()

    def q_decide(self, q, stage: int, x):
        b = q.cfg.selector_blocks[stage]
        blk, sel = q.blocks[b], q.selectors[b]
        o, _, a = blk.attn.attend(blk.norm1(x))
        x1 = blk.residual(x, o, blk.in_frac, blk.cls_in, blk.attn.proj.out_frac, blk.mid_frac, blk.cls_mid)
        _, order, s = sel(x1, a)
        return keep_mask(np.asarray(order)[:, :1 + sel.keep], s.shape[1]), dequantize(s, CLS_ATTN_FRAC) / sel.heads
