"""Random float twins for tests, benchmarks and `spvit check` (no checkpoint needed)."""
from __future__ import annotations

import torch

from .config import ModelConfig
from .float_model import DeiT


@torch.no_grad()
def random_model(cfg: ModelConfig, seed: int = 0, balance_with: torch.Tensor | None = None) -> DeiT:
    """timm-initialised DeiT (selectors: torch default init). With `balance_with` images, each
    selector's final bias is shifted, stage by stage, so that every head's median keep margin
    z0 - z1 is zero on those images: about half of the tokens are kept at each stage, which
    makes the selector decisions non-trivial."""
    m = DeiT(cfg).eval()
    m.init_weights(seed=seed)
    if balance_with is None or cfg.stages == 0:
        return m
    for j in range(cfg.stages):
        d = [[] for _ in range(cfg.num_heads)]
        calls = [0]

        def trace(name, t, j=j):
            if name == f"sel.{j}.z":
                d[calls[0] % cfg.num_heads].append((t[..., 0] - t[..., 1]).flatten())
                calls[0] += 1

        m(balance_with, trace=trace)
        for h, out in enumerate(m.score_predictor[j].out_conv):
            med = torch.cat(d[h]).median()
            out[4].bias[0] -= med / 2
            out[4].bias[1] += med / 2
    return m


def random_images(cfg: ModelConfig, n: int, seed: int = 0) -> torch.Tensor:
    """Smooth random images (normalised-pixel statistics), so patches are not white noise."""
    g = torch.Generator().manual_seed(seed)
    s = cfg.img_size
    low = torch.randn(n, cfg.in_chans, max(s // 8, 1), max(s // 8, 1), generator=g)
    img = torch.nn.functional.interpolate(low, size=(s, s), mode="bilinear", align_corners=False)
    return img + 0.3 * torch.randn(n, cfg.in_chans, s, s, generator=g)
