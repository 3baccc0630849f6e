"""Parameter and MAC counts. Block MACs follow spvit.txt Table 1:
4 N D_ch D_attn + 2 N^2 D_attn + 2 N D_ch D_hidden (with D_attn = D_ch = D, D_hidden = r D);
a block that selects between its attention and its MLP (EViT) runs the MLP on fewer tokens.
Selector MACs are counted from the layer shapes of each scheme's selector (golden/selectors/;
SPViT's Eq. 9 is an approximation of the same thing)."""
from __future__ import annotations

from dataclasses import dataclass

from .config import ModelConfig


def block_params(cfg: ModelConfig) -> int:
    d, h = cfg.embed_dim, cfg.mlp_hidden
    return (3 * d * d + 3 * d) + (d * d + d) + (d * h + h) + (h * d + d) + 4 * d


def selector_params(cfg: ModelConfig) -> int:
    """Parameters of one selector stage (0 for the parameter-free schemes)."""
    return cfg.scheme.selector_params(cfg)


def block_macs(cfg: ModelConfig, n: int, n_mlp: int | None = None) -> int:
    d, h = cfg.embed_dim, cfg.mlp_hidden
    return 4 * n * d * d + 2 * n * n * d + 2 * (n if n_mlp is None else n_mlp) * d * h


def selector_macs(cfg: ModelConfig, n: int, stage: int = 0, n_out: int | None = None) -> int:
    """n = tokens entering the selector (CLS included), n_out = tokens after it."""
    return cfg.scheme.selector_macs(cfg, stage, n, n if n_out is None else n_out)


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
    tokens: int          # tokens entering the block (its attention)
    macs: int
    selector_macs: int
    mlp_tokens: int = 0  # tokens of its MLP (fewer than `tokens` where a block selects inside)


def schedule(cfg: ModelConfig, keep: tuple[float, ...] | None = None, unpruned: bool = False) -> list:
    """(attention tokens, MLP tokens) per block. Adaptive schemes (SPViT) take `keep[s]`, the
    fraction of the image's patch tokens still kept after stage s (cumulative, as SPViT's and
    DynamicViT's ratios; None: every token kept); fixed-count schemes follow their config.
    `unpruned`: every token kept (the selectors still run)."""
    if unpruned:
        return [(cfg.num_tokens, cfg.num_tokens)] * cfg.depth
    return cfg.scheme.schedule(cfg, keep)


def tokens_per_block(cfg: ModelConfig, keep: tuple[float, ...] | None = None) -> list[int]:
    """Tokens entering each block (see `schedule`)."""
    return [a for a, _ in schedule(cfg, keep)]


def count(cfg: ModelConfig, keep: tuple[float, ...] | None = None, unpruned: bool = False) -> list[BlockCount]:
    rows = []
    prev = cfg.num_tokens
    where = {b: s for s, b in enumerate(cfg.selector_blocks)} if cfg.stages else {}
    for i, (n, m) in enumerate(schedule(cfg, keep, unpruned)):
        sel = 0
        if i in where:     # a selector before block i reads its input; one inside reads the block's input
            sel = selector_macs(cfg, prev, where[i], n) if cfg.scheme.where == "before" else \
                selector_macs(cfg, n, where[i], m)
        rows.append(BlockCount(i, n, block_macs(cfg, n, m), sel, m))
        prev = m
    return rows


def total_macs(cfg: ModelConfig, keep: tuple[float, ...] | None = None, unpruned: bool = False) -> int:
    rows = count(cfg, keep, unpruned)
    return embed_macs(cfg) + head_macs(cfg) + sum(r.macs + r.selector_macs for r in rows)
