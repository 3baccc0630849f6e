"""DynamicViT on the quantiser's side (the scheme and its integer predictor `QPredictor`:
golden/selectors/dynamicvit.py, docs/selector.md): the integer predictors from the float ones,
their package settings, the same-input decisions, and the authors' checkpoint layout."""
from __future__ import annotations

import re
from dataclasses import replace

from golden.arith import dequantize
from golden.kernels import make_pwl
from golden.selectors.dynamicvit import QPredictor
from golden.tokens import keep_mask

from .base import QuantScheme


class DynamicViTQuant(QuantScheme):
    name = "dynamicvit"
    q_types = (QPredictor,)
    legend = "greyed: patches dropped (discarded) at that stage or an earlier one"

    # ---- calibration
    def quantize(self, model, fmt: dict, qz) -> dict:
        cfg, t = model.cfg, qz.array
        counts = cfg.scheme.counts(cfg)
        out = {}
        for j, b in enumerate(cfg.selector_blocks):
            sp, p, res = model.score_predictor[j], f"sel.{j}.", fmt[f"res.{b}"]
            ln, fc, _ = sp.in_conv
            o1, o2, o3 = sp.out_conv[0], sp.out_conv[2], sp.out_conv[4]
            w, bias = t(o3.weight), t(o3.bias)
            score = qz.linear((w[0] - w[1])[None], (bias[0] - bias[1])[None], fmt[p + "o2g"], 0)
            out[b] = QPredictor(
                qz.layernorm(t(ln.weight), t(ln.bias), ln.eps, res, fmt[p + "ln"]),
                qz.linear(t(fc.weight), t(fc.bias), fmt[p + "ln"], fmt[p + "f"]),
                make_pwl("gelu", fmt[p + "f"], fmt[p + "fg"]),
                qz.linear(t(o1.weight), t(o1.bias), fmt[p + "fg"], fmt[p + "o1"]),
                make_pwl("gelu", fmt[p + "o1"], fmt[p + "o1g"]),
                qz.linear(t(o2.weight), t(o2.bias), fmt[p + "o1g"], fmt[p + "o2"]),
                make_pwl("gelu", fmt[p + "o2"], fmt[p + "o2g"]),
                replace(score, out_frac=score.in_frac + score.w_frac), counts[j], res)
        return out

    def q_settings(self, cfg, fmt: dict) -> dict:
        return {b: dict(keep=k, res_frac=fmt.get(f"res.{b}"))
                for b, k in zip(cfg.selector_blocks, cfg.scheme.counts(cfg))}

    # ---- same-input decisions
    def agreement_inputs(self, model, io, stage: int) -> list:
        b = model.cfg.selector_blocks[stage]
        return [model.blocks[b - 1](inp) for inp in io[b - 1]]

    def f_decide(self, model, stage: int, x):
        order, d = model.cfg.scheme.f_top(model, stage, x)
        return keep_mask(order.numpy(), x.shape[1] - 1), d.double().numpy()

    def q_decide(self, q, stage: int, x):
        sel = q.selectors[q.cfg.selector_blocks[stage]]
        _, order, s = sel(x)
        return keep_mask(order, x.shape[1] - 1), dequantize(s, sel.score.in_frac + sel.score.w_frac)

    # ---- checkpoints
    def detect(self, keys: set) -> str | None:
        """One predictor per stage on the full embedding: score_predictor.<stage>.in_conv.<layer>.*"""
        layer = re.compile(r"score_predictor\.\d+\.in_conv\.\d\.(weight|bias)$")
        return next((k for k in sorted(keys) if layer.match(k)), None)

    def infer(self, shapes: dict, depth: int, tensors: dict | None = None) -> dict | None:
        if not self.detect(set(shapes)):
            return None
        n = 1 + max(int(m.group(1)) for k in shapes if (m := re.match(r"score_predictor\.(\d+)\.", k)))
        return dict(selector="dynamicvit", selector_blocks=self.spaced(n, depth), keep_rate=(0.7,),
                    _guessed=["selector_blocks", "keep_rate"])
