"""The integer network: QModel, the bit-exact int16 DeiT with its token-selection scheme. The
layers are in golden/layers.py; the loop over the blocks (`QModel.run`) calls the scheme's hooks
(golden/selectors/).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .arith import add_sat, as_int
from .config import ModelConfig
from .layers import QLayerNorm, QLinear
from .tokens import Group, Record


@lru_cache(maxsize=None)
def _pool(n: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(n, thread_name_prefix="golden")


@dataclass(frozen=True, eq=False)
class QModel:
    cfg: ModelConfig
    fmt: dict                # tensor name -> fraction bits (as chosen by calibration)
    patch: QLinear           # [C, in_chans * p * p], input = patches in channel-major order
    cls_row: np.ndarray      # int16 [C]: cls_token + pos_embed[0] at `cls_frac`
    pos: np.ndarray          # int16 [num_patches, C] at fmt["pos"]
    blocks: tuple
    selectors: dict          # block index -> QSelector
    norm: QLayerNorm
    head: QLinear

    @property
    def img_frac(self) -> int:
        return self.patch.in_frac

    @property
    def cls_frac(self) -> int:
        """The format of the CLS token entering block 0: res.0, or its own (QBlock.cls_in)."""
        c = self.blocks[0].cls_in
        return self.fmt["res.0"] if c is None else c

    def embed(self, img) -> np.ndarray:
        """int16 image [B, in_chans, H, W] -> tokens [B, N, C] at res.0 (the CLS token at cls_frac)."""
        img = as_int(img)
        b, ch, hh, ww = img.shape
        p = self.cfg.patch_size
        patches = img.reshape(b, ch, hh // p, p, ww // p, p).transpose(0, 2, 4, 1, 3, 5)
        patches = patches.reshape(b, (hh // p) * (ww // p), ch * p * p)
        x = add_sat(self.patch(patches), self.patch.out_frac, self.pos, self.fmt["pos"], self.fmt["res.0"])
        cls = np.broadcast_to(self.cls_row, (b, 1, x.shape[-1]))
        return np.concatenate([cls, x], 1)

    def forward(self, img, return_tokens: bool = False, threads: int = 1, return_record: bool = False,
                return_masks: bool = False):
        """Bit-exact forward. Returns int16 logits [B, classes] (frac fmt['logits']) and the
        kept patch-token count per image and selector stage [B, stages]; then, in this order,
        the final tokens per image with `return_tokens`, the selection record
        (golden.tokens.Record) with `return_record`, and the keep masks with `return_masks`
        (last): per image, per stage, the sorted indices of the kept tokens among that stage's
        candidates in their order at the decision (docs/selector.md, "Keep masks"). Images are
        independent, so the batch may be split over `threads` workers (the callers pass
        base.settings.THREADS, SPVIT_THREADS); numpy releases the GIL in its kernels. The result
        does not depend on the split."""
        threads = min(threads, len(img))
        if threads > 1:
            parts = np.array_split(np.arange(len(img)), threads)
            outs = list(_pool(threads).map(lambda ix: self.run(img[ix]), parts))
            logits = np.concatenate([o[0] for o in outs])
            rec = Record.concat([o[1] for o in outs])
            toks = [t for o in outs for t in o[2]]
        else:
            logits, rec, toks = self.run(img)
        return ((logits, rec.kept) + ((toks,) if return_tokens else ()) + ((rec,) if return_record else ())
                + ((rec.masks,) if return_masks else ()))

    def run(self, img):
        """One batch through the model: (logits, golden.tokens.Record, final tokens per image)."""
        sch = self.cfg.scheme
        x = self.embed(img)
        rec = Record(x.shape[0], self.cfg)
        groups = [Group.start(x)]
        for i, blk in enumerate(self.blocks):
            groups = [h for g in groups for h in sch.q_before(self, i, g, rec)]
            groups = [sch.q_block(self, i, blk, g, rec) for g in groups]
        pooled = np.zeros((x.shape[0], x.shape[-1]), dtype=np.int64)
        toks = [None] * x.shape[0]
        for g in groups:
            v, t = sch.q_readout(self, g)
            pooled[g.rows] = v
            for r, tr in zip(g.rows, t):
                toks[r] = tr
        return self.head(self.norm(pooled)), rec, toks

    __call__ = forward
