"""The float twin: the same network in torch, with timm's DeiT parameter names and the official
selector names, so that timm / SPViT / DynamicViT / EViT checkpoints load directly (Evo-ViT's
through the key map of golden/selectors/evovit.py). With no selector it computes what timm's
DeiT computes (LayerNorm eps 1e-6, exact-erf GELU, qkv bias). The token selection of each
scheme is in golden/selectors/ (the loop over the blocks below calls its hooks).

`trace` (a callable name, tensor) sees every intermediate that the integer model quantises,
under the names of `QModel.fmt`; calibration uses it.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .config import ModelConfig
from .tokens import Group, Record


def _noop(name, t):
    pass


class PatchEmbed(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.proj = nn.Conv2d(cfg.in_chans, cfg.embed_dim, cfg.patch_size, cfg.patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, trace=_noop, p=""):
        return self.attend(x, trace, p)[0]

    def attend(self, x, trace=_noop, p=""):
        """(output, attention probabilities [B, H, N, N])."""
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        for name, t in (("q", q), ("k", k), ("v", v)):
            trace(p + name, t)
        s = (q @ k.transpose(-2, -1)) * self.scale
        trace(p + "s", s)
        a = s.softmax(-1)
        o = (a @ v).transpose(1, 2).reshape(b, n, c)
        trace(p + "o", o)
        o = self.proj(o)
        trace(p + "proj", o)
        return o, a


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x, trace=_noop, p=""):
        h = self.fc1(x)
        trace(p + "h", h)
        g = self.act(h)
        trace(p + "g", g)
        y = self.fc2(g)
        trace(p + "fc2", y)
        return y


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.embed_dim, eps=1e-6)
        self.attn = Attention(cfg.embed_dim, cfg.num_heads)
        self.norm2 = nn.LayerNorm(cfg.embed_dim, eps=1e-6)
        self.mlp = Mlp(cfg.embed_dim, cfg.mlp_hidden)
        self.cls_format = cfg.scheme.cls_format     # trace the CLS token on its own (its format)

    def forward(self, x, trace=_noop, p="", mid=None):
        """`mid(x, attention probabilities) -> x`: a scheme's hook between the attention
        residual and the MLP (EViT selects there; Evo-ViT reads the CLS attention)."""
        h = self.norm1(x)
        trace(p + "ln1", h)
        if mid is None:
            x = x + self.attn(h, trace, p)
            trace(p + "mid", x)
        else:
            o, a = self.attn.attend(h, trace, p)
            x = x + o
            trace(p + "mid", x)
            x = mid(x, a)
        if self.cls_format:
            trace(p + "mid.cls", x[:, 0])
        h = self.norm2(x)
        trace(p + "ln2", h)
        return x + self.mlp(h, trace, p)


def _chain(t, layers, names, trace, p):
    """Apply `layers` in order, tracing each output under p + its name."""
    for layer, name in zip(layers, names, strict=True):
        t = layer(t)
        trace(p + name, t)
    return t


def _local_global(f, alive, n_local: int):
    """The predictors' feature: the first half of the channels of the first n_local tokens (local)
    next to the mean of the second half over all tokens (global; over the tokens `alive` [B, N]
    marks, when given, as in training)."""
    c = f.shape[-1]
    g = f[..., c // 2:]
    if alive is None:
        glob = g.mean(1, keepdim=True)
    else:
        a = alive.unsqueeze(-1).to(g.dtype)
        glob = (g * a).sum(1, keepdim=True) / a.sum(1, keepdim=True).clamp_min(1e-6)
    return torch.cat([f[:, :n_local, : c // 2], glob.expand(-1, n_local, -1)], -1)


class SPViTSelector(nn.Module):
    """Official layout: in_conv.H = [LayerNorm(dh), Linear(dh, dh), GELU], out_conv.H =
    [Linear(dh, dh/2), GELU, Linear(dh/2, dh/4), GELU, Linear(dh/4, 2)], senet = [Linear(H, H/2),
    GELU, Linear(H/2, H), Sigmoid]. Output index 0 of out_conv means keep."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        h, dh = cfg.num_heads, cfg.head_dim
        self.heads = h
        self.in_conv = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(dh), nn.Linear(dh, dh), nn.GELU()) for _ in range(h))
        self.out_conv = nn.ModuleList(
            nn.Sequential(nn.Linear(dh, dh // 2), nn.GELU(), nn.Linear(dh // 2, dh // 4), nn.GELU(),
                          nn.Linear(dh // 4, 2)) for _ in range(h))
        self.senet = nn.Sequential(nn.Linear(h, max(h // 2, 1)), nn.GELU(), nn.Linear(max(h // 2, 1), h), nn.Sigmoid())

    def forward(self, x, n_pkg: int, trace=_noop, p="", alive=None):
        """x [B, N, C] = [CLS, patches, packages]. Returns z [B, ns, H, 2] and w [B, ns, H] for
        the ns = N - 1 - n_pkg patch tokens. `alive` [B, N-1] (training only) masks the mean."""
        b, n, c = x.shape
        h = self.heads
        dh = c // h
        cand = x[:, 1:]
        ns = n - 1 - n_pkg
        zs = []
        for i in range(h):
            f = _chain(cand[..., i * dh:(i + 1) * dh], self.in_conv[i], ("ln", "f", "fg"), trace, p)
            zs.append(_chain(_local_global(f, alive, ns), self.out_conv[i], ("o1", "o1g", "o2", "o2g", "z"),
                             trace, p))
        z = torch.stack(zs, 2)
        xbar = cand[:, :ns].reshape(b, ns, h, dh).mean(-1)
        t = _chain(xbar, self.senet[:3], ("se1", "se1g", "se2"), trace, p)
        return z, self.senet[3](t)


class DynamicViTPredictor(nn.Module):
    """The authors' PredictorLG layout (dynamicvit.txt Eq. 1-4): in_conv = [LayerNorm(C),
    Linear(C, C), GELU] (LayerNorm eps 1e-5, torch's default), the first C/2 channels local,
    the last C/2 averaged over the patch tokens still alive (global); out_conv = [Linear(C, C/2),
    GELU, Linear(C/2, C/4), GELU, Linear(C/4, 2), LogSoftmax]; output 0 is the keep
    log-probability. Used by golden/selectors/dynamicvit.py."""

    def __init__(self, dim: int):
        super().__init__()
        self.in_conv = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU())
        self.out_conv = nn.Sequential(nn.Linear(dim, dim // 2), nn.GELU(), nn.Linear(dim // 2, dim // 4), nn.GELU(),
                                      nn.Linear(dim // 4, 2), nn.LogSoftmax(dim=-1))

    def forward(self, x, trace=_noop, p="", policy=None):
        """x [B, n, C]: the patch tokens (no CLS). Returns the logits z [B, n, 2] (before the
        log-softmax, which does not change the ranking). `policy` [B, n] (training only) masks
        the global average to the tokens still alive."""
        f = _chain(x, self.in_conv, ("ln", "f", "fg"), trace, p)
        t = _chain(_local_global(f, policy, f.shape[1]), self.out_conv[:4], ("o1", "o1g", "o2", "o2g"), trace, p)
        return self.out_conv[4](t)


def decide(z, w, cap: int | None = None):
    """Deterministic decision: keep iff sum_h w_h (z0_h - z1_h) >= 0 (ties kept); the optional
    cap keeps the top-`cap` kept tokens by that score, ties toward the lower index. Returns
    (keep [B, ns] bool, score [B, ns], m [B, ns] keep probability)."""
    d = z[..., 0] - z[..., 1]
    score = (w * d).sum(-1)
    keep = score >= 0
    if cap is not None:
        for r in range(keep.shape[0]):
            if int(keep[r].sum()) > cap:
                order = sorted(range(score.shape[1]), key=lambda i: (-float(score[r, i]), i))
                top = torch.zeros_like(keep[r])
                top[order[:cap]] = True
                keep[r] &= top
    m = (w * torch.sigmoid(d)).sum(-1) / w.sum(-1).clamp_min(1e-12)
    return keep, score, m


def package(tokens, m, mode: str):
    """tokens [Q, C], m [Q] -> [C] (see golden.layers.package)."""
    if tokens.shape[0] == 0:
        return tokens.new_zeros(tokens.shape[-1])
    if mode == "mean":
        return tokens.mean(0)
    s = (m.unsqueeze(-1) * tokens).sum(0)
    return s if mode == "sum" else s / m.sum().clamp_min(1e-12)


class DeiT(nn.Module):
    """timm-compatible DeiT with the token selection of `cfg.selector` (golden/selectors/)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_tokens, c))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(c, eps=1e-6)
        self.head = nn.Linear(c, cfg.num_classes)
        cfg.scheme.build(self)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self, seed: int | None = None):
        """timm's DeiT initialisation of the backbone: trunc_normal(std .02) for linear weights,
        pos and cls, zero biases, unit LayerNorm. Selectors keep torch's default Linear init
        (as the official code), re-drawn from `seed` when given."""
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        for name, prm in self.named_parameters():
            if name.startswith("score_predictor"):
                continue
            if name.endswith("bias"):
                prm.zero_()
            elif prm.dim() == 1:  # LayerNorm weight
                prm.fill_(1.0)
            else:
                prm.copy_(torch.nn.init.trunc_normal_(torch.empty_like(prm), std=0.02, a=-0.04, b=0.04, generator=g))
        if seed is None or not hasattr(self, "score_predictor"):
            return
        for mod in self.score_predictor.modules():   # torch's default init, drawn from `seed`
            if isinstance(mod, nn.Linear):
                bound = mod.weight.shape[1] ** -0.5
                mod.weight.uniform_(-bound, bound, generator=g)
                mod.bias.uniform_(-bound, bound, generator=g)
            elif isinstance(mod, nn.LayerNorm):
                mod.weight.fill_(1.0)
                mod.bias.zero_()

    def embed(self, img, trace=_noop):
        x = self.patch_embed(img)
        trace("patch", x)
        trace("pos", self.pos_embed[:, 1:])
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        return x

    def forward(self, img, trace=_noop, return_tokens: bool = False):
        """Deterministic inference (no Gumbel noise). Returns logits [B, classes]; the kept
        patch-token count per image and stage [B, stages] is left in `self.last_kept`, the keep
        masks (per image, per stage, the sorted indices of the kept tokens among the stage's
        candidates; docs/selector.md "Keep masks") in `self.last_masks`, the full selection
        record (golden.tokens.Record) in `self.last_record`."""
        sch = self.cfg.scheme
        x = self.embed(img, trace)
        rec = Record(x.shape[0], self.cfg)
        groups = [Group.start(x)]
        for i, blk in enumerate(self.blocks):
            self._trace_res(trace, i, groups)
            groups = [h for g in groups for h in sch.f_before(self, i, g, rec, trace)]
            groups = [sch.f_block(self, i, blk, g, rec, trace) for g in groups]
        self._trace_res(trace, self.cfg.depth, groups)
        outs = [sch.f_readout(self, g, trace) for g in groups]
        rows = np.concatenate([g.rows for g in groups])
        pooled = torch.cat([o[0] for o in outs])[np.argsort(rows)]
        cls = self.norm(pooled)
        trace("norm", cls)
        logits = self.head(cls)
        trace("logits", logits)
        self.last_kept = torch.from_numpy(rec.kept)
        self.last_record = rec
        self.last_masks = rec.masks
        if not return_tokens:
            return logits
        toks = [t for o in outs for t in o[1]]
        return logits, self.last_kept, [toks[j] for j in np.argsort(rows)]

    def _trace_res(self, trace, i: int, groups) -> None:
        """The residual stream entering block i (`res.i`), and its CLS token on its own
        (`res.i.cls`) for the schemes that give it a format."""
        trace(f"res.{i}", torch.cat([g.x.flatten(0, 1) for g in groups]))
        if self.cfg.scheme.cls_format:
            trace(f"res.{i}.cls", torch.cat([g.x[:, 0] for g in groups]))

    def select(self, stage: int, x, trace=_noop):
        """One image x [N, C] through the selector of `stage` (schemes that select before a
        block): (output tokens, keep [candidates])."""
        return self.cfg.scheme.f_select(self, stage, x, trace)


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

