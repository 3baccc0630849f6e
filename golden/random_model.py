"""Random float twins for tests, benchmarks and `spvit check` (no checkpoint needed)."""
from __future__ import annotations

import torch

from .config import ModelConfig
from .float_model import DeiT


@torch.no_grad()
def random_model(cfg: ModelConfig, seed: int = 0, balance_with: torch.Tensor | None = None) -> DeiT:
    """timm-initialised DeiT (selectors: torch default init). With `balance_with` images the
    scheme makes its decisions non-trivial on them (golden/selectors/*: `randomize`; SPViT
    shifts each selector's final bias, stage by stage, so that every head's median keep margin
    z0 - z1 is zero: about half of the tokens are kept at each stage)."""
    m = DeiT(cfg).eval()
    m.init_weights(seed=seed)
    if balance_with is not None and cfg.stages:
        cfg.scheme.randomize(m, balance_with)
    return m


def random_images(cfg: ModelConfig, n: int, seed: int = 0) -> torch.Tensor:
    """Smooth random images (normalised-pixel statistics), so patches are not white noise."""
    g = torch.Generator().manual_seed(seed)
    s = cfg.img_size
    low = torch.randn(n, cfg.in_chans, max(s // 8, 1), max(s // 8, 1), generator=g)
    img = torch.nn.functional.interpolate(low, size=(s, s), mode="bilinear", align_corners=False)
    return img + 0.3 * torch.randn(n, cfg.in_chans, s, s, generator=g)
