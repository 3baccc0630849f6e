"""Evo-ViT on the quantiser's side (the scheme and its stage settings `QEvoSelector`:
golden/selectors/evovit.py, docs/selector.md): settings that follow from the config, and the
key map of the authors' DeiT release, which stores the attention in model-level lists
(`qks.i.qk`, `vs.i.v`, `norms.i`, `projs.i`) instead of timm's names. No same-input decisions:
a decision reads the running score, not only the tokens."""
from __future__ import annotations

import re

from golden.selectors.evovit import ONE_Q15, QEvoSelector

from .base import QuantScheme


class EvoViTQuant(QuantScheme):
    name = "evovit"
    kept_as = "on the slow path"
    dropped_as = "placeholders"
    legend = ("greyed: placeholders, frozen in memory while the slow path runs the stage's blocks and put back at "
              "its end; every stage re-ranks all patches")

    def stage_place(self, cfg, stage: int) -> str:
        sb = cfg.selector_blocks
        last = (sb[stage + 1] if stage + 1 < len(sb) else cfg.depth) - 1
        return f"blocks {sb[stage]}-{last}" if last > sb[stage] else f"block {last}"
    q_types = (QEvoSelector,)

    # ---- calibration (quantize: the base's, a selector is its settings)
    def q_settings(self, cfg, fmt: dict) -> dict:
        sch = cfg.scheme
        t = round(sch.momentum(cfg) * ONE_Q15)
        return {b: dict(keep=k, momentum=t) for b, k in zip(cfg.selector_blocks, sch.counts(cfg))}

    # ---- checkpoints: the authors' layout of the DeiT release
    def detect(self, keys: set) -> str | None:
        return next((k for k in sorted(keys) if re.match(r"qks\.\d+\.qk\.weight$", k)), None)

    def infer(self, shapes: dict, depth: int, tensors: dict | None = None) -> dict | None:
        if not self.detect(set(shapes)):
            return None
        return dict(selector="evovit", selector_blocks=self.spaced(2, depth), keep_rate=(0.5,),
                    _guessed=["selector_blocks", "keep_rate"])

    def from_checkpoint(self, tensors: dict) -> tuple[dict, list]:
        """The authors' names -> timm's: qks.i.qk [2C, C] and vs.i.v [C, C] -> blocks.i.attn.qkv
        [3C, C] (rows q, k, v), norms.i -> blocks.i.norm1, projs.i -> blocks.i.attn.proj;
        blocks.i.norm2 / mlp and the rest keep their names; the training-only CLS head
        (head_cls.*, norm_cls.*) is dropped. A state_dict already in timm's names passes through."""
        import torch
        if not self.detect(set(tensors)):
            return tensors, []
        out, notes = {}, []
        for k, v in tensors.items():
            if m := re.match(r"qks\.(\d+)\.qk\.(weight|bias)$", k):
                v2 = tensors.get(f"vs.{m.group(1)}.v.{m.group(2)}")
                if v2 is not None:
                    out[f"blocks.{m.group(1)}.attn.qkv.{m.group(2)}"] = torch.cat([v, v2], 0)
                    continue
            elif re.match(r"vs\.\d+\.v\.", k) and f"qks.{k.split('.')[1]}.qk.{k.split('.')[-1]}" in tensors:
                continue
            elif m := re.match(r"norms\.(\d+)\.(.*)$", k):
                k = f"blocks.{m.group(1)}.norm1.{m.group(2)}"
            elif m := re.match(r"projs\.(\d+)\.(.*)$", k):
                k = f"blocks.{m.group(1)}.attn.proj.{m.group(2)}"
            elif k.startswith(("head_cls.", "norm_cls.")):
                notes.append(k)
                continue
            out[k] = v
        return out, notes

    def to_authors(self, tensors: dict) -> dict:
        out = {}
        for k, v in tensors.items():
            if m := re.match(r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)$", k):
                c = v.shape[0] // 3
                out[f"qks.{m.group(1)}.qk.{m.group(2)}"] = v[: 2 * c].clone()
                out[f"vs.{m.group(1)}.v.{m.group(2)}"] = v[2 * c:].clone()
            elif m := re.match(r"blocks\.(\d+)\.norm1\.(.*)$", k):
                out[f"norms.{m.group(1)}.{m.group(2)}"] = v
            elif m := re.match(r"blocks\.(\d+)\.attn\.proj\.(.*)$", k):
                out[f"projs.{m.group(1)}.{m.group(2)}"] = v
            else:
                out[k] = v
        return out
