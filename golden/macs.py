"""Parameter and MAC counts. Block MACs follow spvit.txt Table 1:
4 N D_ch D_attn + 2 N^2 D_attn + 2 N D_ch D_hidden (with D_attn = D_ch = D, D_hidden = r D).
Selector MACs are counted from the layer shapes of our selector (the paper's Eq. 9 is an
approximation of the same thing)."""
from __future__ import annotations

from dataclasses import dataclass

from .config import ModelConfig


def block_params(cfg: ModelConfig) -> int:
    d, h = cfg.embed_dim, cfg.mlp_hidden
    return (3 * d * d + 3 * d) + (d * d + d) + (d * h + h) + (h * d + d) + 4 * d


def selector_params(cfg: ModelConfig) -> int:
    hh, dh = cfg.num_heads, cfg.head_dim
    h2 = max(hh // 2, 1)
    per_head = 2 * dh + (dh * dh + dh) + (dh * dh // 2 + dh // 2) + (dh // 2 * dh // 4 + dh // 4) + (dh // 4 * 2 + 2)
    return hh * per_head + (hh * h2 + h2) + (h2 * hh + hh)


def block_macs(cfg: ModelConfig, n: int) -> int:
    d, h = cfg.embed_dim, cfg.mlp_hidden
    return 4 * n * d * d + 2 * n * n * d + 2 * n * d * h


def selector_macs(cfg: ModelConfig, n: int) -> int:
    """n = tokens entering the selector (CLS included; CLS is not scored)."""
    hh, dh = cfg.num_heads, cfg.head_dim
    h2 = max(hh // 2, 1)
    m = n - 1
    return hh * m * (dh * dh + dh * dh // 2 + dh // 2 * dh // 4 + dh // 4 * 2) + m * 2 * hh * h2


def embed_macs(cfg: ModelConfig) -> int:
    return cfg.num_patches * cfg.patch_dim * cfg.embed_dim


def head_macs(cfg: ModelConfig) -> int:
    return cfg.embed_dim * cfg.num_classes


def total_params(cfg: ModelConfig) -> int:
    d = cfg.embed_dim
    p = cfg.patch_dim * d + d + d + cfg.num_tokens * d            # patch embed, cls, pos
    p += cfg.depth * block_params(cfg) + 2 * d + d * cfg.num_classes + cfg.num_classes
    return p + cfg.stages * selector_params(cfg)


@dataclass(frozen=True)
class BlockCount:
    index: int
    tokens: int
    macs: int
    selector_macs: int


def tokens_per_block(cfg: ModelConfig, keep: tuple[float, ...] | None = None) -> list[int]:
    """Tokens entering each block. `keep[s]` is the fraction of the image's patch tokens still
    kept after stage s (cumulative, as SPViT's and DynamicViT's ratios); each stage adds one
    package token."""
    if keep is None or cfg.stages == 0:
        return [cfg.num_tokens] * cfg.depth
    if len(keep) != cfg.stages:
        raise ValueError(f"--keep needs {cfg.stages} rates, one per selector stage (got {len(keep)})")
    if any(not 0.0 <= k <= 1.0 for k in keep) or list(keep) != sorted(keep, reverse=True):
        raise ValueError(f"keep rates must lie in [0, 1] and not increase (got {list(keep)})")
    out, n, stage = [], cfg.num_tokens, 0
    for i in range(cfg.depth):
        if stage < cfg.stages and i == cfg.selector_blocks[stage]:
            n = 1 + round(keep[stage] * cfg.num_patches) + stage + 1
            stage += 1
        out.append(n)
    return out


def count(cfg: ModelConfig, keep: tuple[float, ...] | None = None) -> list[BlockCount]:
    toks = tokens_per_block(cfg, keep)
    rows = []
    prev = cfg.num_tokens
    for i, n in enumerate(toks):
        sel = selector_macs(cfg, prev) if cfg.stages and i in cfg.selector_blocks else 0
        rows.append(BlockCount(i, n, block_macs(cfg, n), sel))
        prev = n
    return rows


def total_macs(cfg: ModelConfig, keep: tuple[float, ...] | None = None) -> int:
    rows = count(cfg, keep)
    return embed_macs(cfg) + head_macs(cfg) + sum(r.macs + r.selector_macs for r in rows)
