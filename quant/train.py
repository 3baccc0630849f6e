"""Training the float twin with SPViT selectors (spvit.txt Sec. 4.4, Eq. 11-12) and DynamicViT
predictors (dynamicvit.txt Sec. 3.3-3.4, Eq. 7, 10-16). EViT and Evo-ViT train through the float
twin's own forward (their selection is a top-k whose gradient flows through the kept tokens).

Training keeps every token and masks instead of removing (as the official code does): `alive`
[B, N] marks the tokens that inference would still carry; attention ignores dead keys (each
token still sees itself, so no row is empty), the selector's global feature averages alive
tokens only, and each stage appends its package token (always alive, zero when nothing was
dropped, as in inference). Decisions are Gumbel-softmax samples with straight-through
gradients during training (with an annealed temperature, see `masked_forward`) and the
deterministic rule of `golden.float_model.decide` otherwise (`mode="det"`), which gives the
float twin's logits (tested).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from golden.float_model import DeiT, decide

LAMBDA_KL, LAMBDA_DISTILL, LAMBDA_RATIO = 0.5, 0.5, 2.0   # spvit.txt Eq. 12


def masked_block(blk, x, alive):
    """One DeiT block on all tokens; dead tokens (alive == 0) are hidden from attention."""
    b, n, c = x.shape
    at = blk.attn
    h = blk.norm1(x)
    qkv = at.qkv(h).reshape(b, n, 3, at.heads, c // at.heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    see = None if alive is None else \
        ((alive[:, None, None, :] > 0) | torch.eye(n, dtype=torch.bool, device=x.device))
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=see, scale=at.scale)
    o = o.transpose(1, 2).reshape(b, n, c)
    x = x + at.proj(o)
    return x + blk.mlp(blk.norm2(x))


def gumbel_keep(logp, tau: float = 1.0, temp: float = 1.0):
    """Straight-through Gumbel-softmax keep decision [B, P] from log-probabilities [B, P, 2]
    (index 0 = keep). The forward value is the hard sample argmax(logp / temp + g); the
    gradient is that of softmax((logp + g) / tau). With temp = 1 this is torch's
    gumbel_softmax(hard=True); temp < 1 sharpens the sampled decisions towards the
    deterministic argmax without letting the gradient vanish."""
    g = -torch.empty_like(logp).exponential_().log()
    soft = torch.softmax((logp + g) / tau, -1)
    hard = F.one_hot((logp / temp + g).argmax(-1), 2).to(logp.dtype)
    return (hard - soft.detach() + soft)[..., 0]


def masked_select(model: DeiT, stage: int, x, alive, mode: str, tau: float = 1.0, temp: float = 1.0):
    """Selector `stage` on x [B, N, C] = [CLS, P patch slots, packages]. Returns the new tokens
    (package appended), the new alive mask and the kept fraction of patch tokens [B]."""
    cfg = model.cfg
    p = cfg.num_patches
    z, w = model.score_predictor[stage](x, stage, alive=alive[:, 1:])   # [B, P, H, 2], [B, P, H]
    if mode == "det":
        keep = decide(z, w, cfg.cap(stage))[0].to(x.dtype)
    else:
        logp = (w.unsqueeze(-1) * F.log_softmax(z, -1)).sum(2) / w.sum(-1, keepdim=True)
        keep = gumbel_keep(logp, tau, temp)
    m = (w * torch.softmax(z, -1)[..., 0]).sum(-1) / w.sum(-1).clamp_min(1e-12)
    prev = alive[:, 1:1 + p]
    now = prev * keep
    dropped = prev - now
    tok = x[:, 1:1 + p]
    if cfg.package_mode == "mean":
        wts = dropped
    else:
        wts = dropped * m
    pkg = (wts.unsqueeze(-1) * tok).sum(1)
    if cfg.package_mode != "sum":
        pkg = pkg / wts.sum(1, keepdim=True).clamp_min(1e-12)
    x = torch.cat([x, pkg[:, None]], 1)
    alive = torch.cat([alive[:, :1], now, alive[:, 1 + p:], torch.ones_like(alive[:, :1])], 1)
    return x, alive, now.mean(1)


def dynamicvit_masked_select(model: DeiT, stage: int, x, alive, mode: str, tau: float = 1.0, temp: float = 1.0):
    """DynamicViT predictor `stage` on x [B, 1 + P, C] (no package tokens): the global feature
    averages the tokens still alive (Eq. 2), decisions are Gumbel-softmax samples of
    log_softmax(z) (Eq. 7; index 0 = keep) in training; 'det' keeps the top int(P * ratio) alive
    tokens by z0 - z1, as inference. Returns (x, new alive mask, kept fraction of all patches)."""
    cfg = model.cfg
    prev = alive[:, 1:]
    z = model.score_predictor[stage](x[:, 1:], policy=prev)
    if mode == "det":
        d = (z[..., 0] - z[..., 1]).masked_fill(prev <= 0, float("-inf"))
        k = cfg.scheme.counts(cfg)[stage]
        keep = torch.zeros_like(prev).scatter(1, torch.topk(d, k, 1).indices, 1.0)
    else:
        keep = gumbel_keep(F.log_softmax(z, -1), tau, temp)
    now = prev * keep
    return x, torch.cat([alive[:, :1], now], 1), now.mean(1)


MASKED_SELECT = {"spvit": masked_select, "dynamicvit": dynamicvit_masked_select}


def masked_forward(model: DeiT, img, mode: str = "gumbel", tau: float = 1.0, temp: float = 1.0, hook=None):
    """mode: 'none' (selectors skipped: the unpruned backbone), 'gumbel' (training) or 'det'.
    `tau` is the Gumbel-softmax temperature of the straight-through gradient; `temp` divides
    the combined log-probabilities before sampling (`gumbel_keep`): annealing it towards 0 makes the sampled
    decisions converge to the deterministic ones used at inference (a sample from softmax(l)
    with hard=True does not depend on tau, so an uncertain selector would otherwise keep, say,
    70% of the tokens in training and 100% at inference).
    Returns logits, final tokens [B, N', C], final alive mask, kept fractions per stage."""
    cfg = model.cfg
    x = model.embed(img)
    alive = torch.ones(x.shape[:2], dtype=x.dtype, device=x.device)
    fracs = []
    stage = 0
    for i, blk in enumerate(model.blocks):
        if mode != "none" and i in cfg.selector_blocks:
            if hook is not None:
                hook(stage, x, alive)
            x, alive, f = MASKED_SELECT[cfg.selector](model, stage, x, alive, mode, tau, temp)
            fracs.append(f)
            stage += 1
        x = masked_block(blk, x, alive if stage else None)
    logits = model.head(model.norm(x[:, 0]))
    return logits, x, alive, fracs


def spvit_loss(logits, labels, t_logits, tokens, t_tokens, alive, fracs, targets):
    """Eq. 12: cross-entropy + 0.5 KL(teacher || student) + 0.5 token distillation (MSE over the
    patch tokens still alive, against the unpruned teacher) + 2 * Eq. 11 (squared distance of
    the batch-mean kept fraction to the target, summed over stages). Returns (loss, parts)."""
    ce = F.cross_entropy(logits, labels)
    kl = F.kl_div(F.log_softmax(logits, -1), F.log_softmax(t_logits, -1), log_target=True,
                  reduction="batchmean")
    p = t_tokens.shape[1] - 1
    mask = alive[:, 1:1 + p].unsqueeze(-1)
    diff = (tokens[:, 1:1 + p] - t_tokens[:, 1:]) ** 2 * mask
    distill = diff.sum() / (mask.sum() * tokens.shape[-1]).clamp_min(1.0)
    ratio = sum((f.mean() - t) ** 2 for f, t in zip(fracs, targets))
    loss = ce + LAMBDA_KL * kl + LAMBDA_DISTILL * distill + LAMBDA_RATIO * ratio
    return loss, {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in
                  (("ce", ce), ("kl", kl), ("distill", distill), ("ratio", ratio))}


def dynamicvit_loss(logits, labels, t_logits, tokens, t_tokens, alive, fracs, targets):
    """dynamicvit.txt Eq. 16: cross-entropy + 0.5 KL(teacher || student) + 0.5 distillation of
    the final tokens kept (Eq. 13) + 2 * Eq. 15, the ratio loss per image: the mean over images
    and stages of (rho_s - kept fraction)^2 (SPViT's Eq. 11 squares the batch mean instead)."""
    loss, parts = spvit_loss(logits, labels, t_logits, tokens, t_tokens, alive, [], [])
    ratio = sum(((f - t) ** 2).mean() for f, t in zip(fracs, targets)) / max(len(fracs), 1)
    parts["ratio"] = float(ratio.detach()) if torch.is_tensor(ratio) else float(ratio)
    return loss + LAMBDA_RATIO * ratio, parts


@torch.no_grad()
def calibrate_thresholds(model: DeiT, images, targets, batch: int = 256) -> list:
    """Make the deterministic decisions keep the target fractions (cumulative, of all patch
    tokens) on `images`, stage by stage: shift every head's keep margin z0 - z1 by the same
    delta (half on each output bias of out_conv[4]), which moves the decision threshold of the
    normalised score sum_h w_h (z0_h - z1_h) / sum_h w_h to -delta. The token ranking the
    selector learned is unchanged; only where it is cut. Returns the deltas."""
    cfg = model.cfg
    deltas = []
    for j, target in enumerate(targets):
        margins, prev_frac = [], []

        def grab(stage, x, alive, j=j):
            if stage != j:
                return
            z, w = model.score_predictor[j](x, j, alive=alive[:, 1:])
            score = (w * (z[..., 0] - z[..., 1])).sum(-1) / w.sum(-1).clamp_min(1e-12)
            a = alive[:, 1:1 + cfg.num_patches] > 0
            margins.append(score[a])
            prev_frac.append(a.float().mean(1))

        for i in range(0, len(images), batch):
            masked_forward(model, images[i:i + batch], "det", hook=grab)
        m = torch.cat(margins)
        prev = float(torch.cat(prev_frac).mean())
        rate = min(1.0, target / max(prev, 1e-9))           # keep rate among this stage's candidates
        delta = 0.0 if rate >= 1.0 else -float(torch.quantile(m.double(), 1.0 - rate))
        for out in model.score_predictor[j].out_conv:
            out[4].bias[0] += delta / 2
            out[4].bias[1] -= delta / 2
        deltas.append(delta)
    return deltas
