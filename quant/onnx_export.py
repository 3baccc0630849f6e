"""ONNX export of the float twin with the SPViT decisions computed inside the graph.

Batch 1: the number of tokens after each selector depends on the image, so the graph uses
NonZero / Gather for the keep decision (keep iff sum_h w_h (z0_h - z1_h) >= 0, as
`golden.float_model.decide`) and works on every image, not only the one used for tracing.
Outputs: `logits` [1, classes] and `kept` [stages] (kept patch tokens per stage). keep_cap is
not supported in the export. Parameters keep their names (prefixed `model.`), so the file
loads back through the ONNX checkpoint handler.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from base.errors import UsageError
from golden.float_model import DeiT


def _block(blk, x):
    """One DeiT block on x [n, C] with a dynamic token count."""
    at = blk.attn
    c = x.shape[-1]
    h, dh = at.heads, c // at.heads
    qkv = at.qkv(blk.norm1(x)).reshape(-1, 3, h, dh).permute(1, 2, 0, 3)
    q, k, v = qkv[0], qkv[1], qkv[2]
    s = (q @ k.transpose(-2, -1)) * at.scale
    o = (s.softmax(-1) @ v).permute(1, 0, 2).reshape(-1, c)
    x = x + at.proj(o)
    return x + blk.mlp(blk.norm2(x))


def _select(sel, x, n_pkg: int, mode: str):
    """SPViT selector on x [n, C] = [CLS, patches, n_pkg packages]; returns (tokens, kept count)."""
    c = x.shape[-1]
    h, dh = sel.heads, c // sel.heads
    cand = x[1:]
    pats = cand[:-n_pkg] if n_pkg else cand
    zs = []
    for i in range(h):
        ln, fc, act = sel.in_conv[i]
        f = act(fc(ln(cand[:, i * dh:(i + 1) * dh])))
        glob = f[:, dh // 2:].mean(0, keepdim=True)
        loc = (f[:-n_pkg] if n_pkg else f)[:, : dh // 2]
        zs.append(sel.out_conv[i](torch.cat([loc, loc * 0 + glob], -1)))
    z = torch.stack(zs, 1)                                    # [ns, H, 2]
    w = sel.senet(pats.reshape(-1, h, dh).mean(-1))           # [ns, H]
    d = z[..., 0] - z[..., 1]
    keep = (w * d).sum(-1) >= 0
    m = (w * torch.sigmoid(d)).sum(-1) / w.sum(-1).clamp_min(1e-12)
    ik = torch.nonzero(keep).squeeze(1)
    idr = torch.nonzero(~keep).squeeze(1)
    dropped = pats.index_select(0, idr)
    md = m.index_select(0, idr)
    if mode == "mean":
        pkg = dropped.sum(0) / (md * 0 + 1).sum().clamp_min(1.0)
    else:
        pkg = (md.unsqueeze(-1) * dropped).sum(0)
        if mode == "norm":
            pkg = pkg / md.sum().clamp_min(1e-12)
    parts = [x[:1], pats.index_select(0, ik)]
    if n_pkg:
        parts.append(cand[-n_pkg:])
    parts.append(pkg[None])
    return torch.cat(parts, 0), keep.to(torch.int64).sum()


class OnnxTwin(nn.Module):
    """Batch-1 float twin with data-dependent token counts, for export."""

    def __init__(self, model: DeiT):
        super().__init__()
        if model.cfg.selector not in ("none", "spvit"):
            raise UsageError(f"ONNX export supports selector 'none' and 'spvit' (got {model.cfg.selector!r}); "
                             f"export the checkpoint itself (.pth / .safetensors) for the other schemes")
        if model.cfg.keep_cap:
            raise UsageError("ONNX export does not support keep_cap; export a config without it")
        self.model = model

    def forward(self, img):
        m = self.model
        cfg = m.cfg
        x = m.embed(img)[0]
        kept = []
        stage = 0
        for i, blk in enumerate(m.blocks):
            if cfg.stages and i in cfg.selector_blocks:
                x, k = _select(m.score_predictor[stage], x, stage, cfg.package_mode)
                kept.append(k)
                stage += 1
            x = _block(blk, x)
        logits = m.head(m.norm(x[:1]))
        kept = torch.stack(kept) if kept else torch.zeros(0, dtype=torch.int64)
        return logits, kept


def export_onnx(model: DeiT, out, opset: int = 17) -> None:
    """Write the ONNX file to `out` (the CLI writes through base.outputs: temp file, rename)."""
    model = model.eval()
    twin = OnnxTwin(model).eval()
    cfg = model.cfg
    dummy = torch.zeros(1, cfg.in_chans, cfg.img_size, cfg.img_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(twin, (dummy,), str(out), dynamo=False, opset_version=opset,
                          input_names=["image"], output_names=["logits", "kept"],
                          do_constant_folding=True)
