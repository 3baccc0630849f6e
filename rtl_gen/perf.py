"""Cycle model of the engines (no stalls on the streams), built from the schedules in
rtl_gen/mlp.py and rtl_gen/attention.py; tests/sim/test_cycle_model.py checks it against
RTL-measured cycles (within 5%). MAC utilisation = useful MACs / (array size x cycles)."""
from __future__ import annotations

from dataclasses import dataclass

from golden.config import ModelConfig
from golden.macs import block_macs

from .config import HardwareConfig

LN_TILE = 101          # LayerNorm unit per tile besides its 2 x D beats: VAR, NORM, isqrt 33, recip 65
SOFTMAX_FIXED = 50     # softmax per row group besides its beats: exp pipeline, reciprocal, hand-offs


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _ln(d: int, hw: HardwareConfig, t: int) -> int:
    return (d // hw.mac_cols) * (4 + hw.mac_cols) + t * (2 * d + LN_TILE)


def _linear(mt: int, k: int, t: int, hw: HardwareConfig) -> int:
    """mt m-tiles of depth k over t token tiles: bound by the MAC array or by refilling a bank."""
    return mt * max(t * k, k + hw.mac_cols - 2) + hw.mac_cols + 4


def mlp_cycles(d: int, hidden: int, n: int, hw: HardwareConfig) -> int:
    t = _ceil(n, hw.mac_rows)
    return _ln(d, hw, t) + _linear(hidden // hw.mac_cols, d, t, hw) + _linear(d // hw.mac_cols, hidden, t, hw) + t * d


def attention_cycles(d: int, heads: int, n: int, hw: HardwareConfig) -> int:
    R, C = hw.mac_rows, hw.mac_cols
    t, u, dh = _ceil(n, R), _ceil(n, C), d // heads
    # score tiles; the last key column reaches the softmax n - (u - 1) C cycles after the last
    # tile's accumulation; exp + reciprocal + output; P.V over n keys per mac_cols channels
    per_head = u * dh + (n - u * C) + C + 2 * n + SOFTMAX_FIXED + (dh // C) * n + C + 4
    return (_ln(d, hw, t) + _linear(3 * d // C, d, t, hw) + t * heads * per_head
            + _linear(d // C, d, t, hw) + t * d)


def block_cycles(cfg: ModelConfig, n: int, hw: HardwareConfig) -> int:
    return attention_cycles(cfg.embed_dim, cfg.num_heads, n, hw) + mlp_cycles(cfg.embed_dim, cfg.mlp_hidden, n, hw)


@dataclass(frozen=True)
class BlockPerf:
    tokens: int
    attention: int
    mlp: int
    useful_macs: int

    @property
    def cycles(self) -> int:
        return self.attention + self.mlp

    def utilisation(self, hw: HardwareConfig) -> float:
        return self.useful_macs / (hw.macs * self.cycles)


def block_perf(cfg: ModelConfig, n: int, hw: HardwareConfig) -> BlockPerf:
    return BlockPerf(n, attention_cycles(cfg.embed_dim, cfg.num_heads, n, hw),
                     mlp_cycles(cfg.embed_dim, cfg.mlp_hidden, n, hw), block_macs(cfg, n))


def attention_macs(cfg: ModelConfig, n: int) -> int:
    d = cfg.embed_dim
    return 4 * n * d * d + 2 * n * n * d


def mlp_macs(cfg: ModelConfig, n: int) -> int:
    return 2 * n * cfg.embed_dim * cfg.mlp_hidden


def model_cycles(cfg: ModelConfig, hw: HardwareConfig, tokens: list[int]) -> int:
    """All blocks with their token counts (selector and embedding not included)."""
    return sum(block_cycles(cfg, n, hw) for n in tokens)
