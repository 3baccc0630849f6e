"""SPViT on the quantiser's side (the scheme: golden/selectors/spvit.py, docs/selector.md): the
integer selectors from the float ones, their package settings, the same-input decisions, and
the official checkpoints' per-head predictors."""
from __future__ import annotations

import re

import numpy as np

from golden.arith import dequantize
from golden.kernels import PROB_FRAC, make_pwl
from golden.layers import QSelector

from .base import QuantScheme


class SPViTQuant(QuantScheme):
    name = "spvit"
    q_types = (QSelector,)
    made_token = "package"
    legend = ("greyed: patches not kept at that stage or an earlier one; each stage fuses the patches it drops into "
              "a package token (p0, p1, ...: not a patch, kept to the end, not drawn)")

    def makes_token(self, cfg, stage: int) -> bool:
        return True          # every stage appends one, a zero vector if it dropped nothing (docs/selector.md)

    # ---- calibration
    def quantize(self, model, fmt: dict, qz) -> dict:
        cfg = model.cfg
        return {b: self._qselector(model.score_predictor[j], fmt, f"sel.{j}.", fmt[f"res.{b}"], cfg, j, qz)
                for j, b in enumerate(cfg.selector_blocks)}

    def q_settings(self, cfg, fmt: dict) -> dict:
        return {b: dict(heads=cfg.num_heads, res_frac=fmt.get(f"res.{b}"), package_mode=cfg.package_mode,
                        cap=cfg.cap(j)) for j, b in enumerate(cfg.selector_blocks)}

    @staticmethod
    def _qselector(sel, fmt: dict, p: str, res: int, cfg, stage: int, qz):
        t = qz.array

        def stack(mods):
            return np.stack([t(m.weight) for m in mods]), np.stack([t(m.bias) for m in mods])

        lns = [s[0] for s in sel.in_conv]
        gam, bet = np.stack([t(m.weight) for m in lns]), np.stack([t(m.bias) for m in lns])
        in_ln = qz.layernorm(gam, bet, lns[0].eps, res, fmt[p + "ln"])
        f, fg = fmt[p + "f"], fmt[p + "fg"]
        in_fc = qz.linear(*stack([s[1] for s in sel.in_conv]), fmt[p + "ln"], f)
        out1 = qz.linear(*stack([s[0] for s in sel.out_conv]), fg, fmt[p + "o1"])
        out2 = qz.linear(*stack([s[2] for s in sel.out_conv]), fmt[p + "o1g"], fmt[p + "o2"])
        out3 = qz.linear(*stack([s[4] for s in sel.out_conv]), fmt[p + "o2g"], fmt[p + "z"])
        se1 = qz.linear(t(sel.senet[0].weight), t(sel.senet[0].bias), res, fmt[p + "se1"])
        se2 = qz.linear(t(sel.senet[2].weight), t(sel.senet[2].bias), fmt[p + "se1g"], fmt[p + "se2"])
        return QSelector(
            in_ln, in_fc, make_pwl("gelu", f, fg),
            out1, make_pwl("gelu", fmt[p + "o1"], fmt[p + "o1g"]),
            out2, make_pwl("gelu", fmt[p + "o2"], fmt[p + "o2g"]),
            out3, se1, make_pwl("gelu", fmt[p + "se1"], fmt[p + "se1g"]), se2,
            make_pwl("sigmoid", fmt[p + "se2"], PROB_FRAC), make_pwl("sigmoid", fmt[p + "z"], PROB_FRAC, in_bits=17),
            cfg.num_heads, res, cfg.package_mode, cfg.cap(stage))

    # ---- same-input decisions
    def agreement_inputs(self, model, io, stage: int) -> list:
        """The selector before block b sees block b - 1's output: recompute it from block b - 1's
        recorded input (per image from the second stage on)."""
        b = model.cfg.selector_blocks[stage]
        return [model.blocks[b - 1](inp) for inp in io[b - 1]]

    def f_decide(self, model, stage: int, x):
        keeps, scores = [], []
        for t in x:
            _, keep = model.cfg.scheme.f_select(model, stage, t)
            z, w = model.score_predictor[stage](t[None], stage)
            keeps.append(keep.numpy())
            scores.append((w * (z[..., 0] - z[..., 1])).sum(-1)[0].double().numpy())
        return np.stack(keeps), np.stack(scores)

    def q_decide(self, q, stage: int, x):
        sel = q.selectors[q.cfg.selector_blocks[stage]]
        keeps, scores = [], []
        for t in x:
            _, s = sel(t, stage)
            keeps.append(s.keep)
            scores.append(dequantize(s.score, 15 + sel.out3.out_frac))
        return np.stack(keeps), np.stack(scores)

    # ---- checkpoints
    def detect(self, keys: set) -> str | None:
        """Per-head predictors: score_predictor.<stage>.in_conv.<head>.<layer>.*"""
        return next((k for k in sorted(keys) if re.match(r"score_predictor\.\d+\.in_conv\.\d+\.\d+\.", k)), None)

    def infer(self, shapes: dict, depth: int, tensors: dict | None = None) -> dict | None:
        """Heads and stages from the per-head predictors; `package_mode` from their values: the
        official code repeats one module for every head (identical copies), and its checkpoints
        were trained with the summed package token ("sum"); distinct heads (our own training)
        suggest "norm", marked as a guess."""
        if not self.detect(set(shapes)):
            return None
        stages = {int(m.group(1)) for k in shapes if (m := re.match(r"score_predictor\.(\d+)\.", k))}
        heads = {int(m.group(1)) for k in shapes if (m := re.match(r"score_predictor\.0\.in_conv\.(\d+)\.\d+\.", k))}
        out = dict(selector="spvit", num_heads=max(heads) + 1, selector_blocks=self.spaced(max(stages) + 1, depth),
                   _guessed=["selector_blocks"])
        if tensors is not None:
            import torch
            w = [tensors[k] for k in sorted(shapes) if re.match(r"score_predictor\.0\.in_conv\.\d+\.1\.weight$", k)]
            shared = len(w) > 1 and all(torch.equal(w[0], x) for x in w[1:])
            out["package_mode"] = "sum" if shared else "norm"
            if not shared:
                out["_guessed"].append("package_mode")
        return out
