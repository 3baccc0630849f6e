"""Cycle model of the engines (no stalls on the streams), built from the schedules in
rtl_gen/mlp.py and rtl_gen/attention.py; tests/sim/test_cycle_model.py checks it against
RTL-measured cycles (within 5%). MAC utilisation = useful MACs / (array size x cycles)."""
from __future__ import annotations

from dataclasses import dataclass

from golden.config import ModelConfig
from golden.macs import block_macs
from golden.network import MEAN_RECIP_BITS, PACK_RECIP_BITS, WEIGHT_RECIP_BITS

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


# token-selector engine (rtl_gen/selector.py): its sequential schedule, state by state
SEL_LN = 100           # LayerNorm unit per token besides its 2 x head_dim beats (one lane)
SEL_PWL = 4            # a post-processing pass through a 3-stage PWL unit: outputs + 4 cycles


def selector_cycles(cfg: ModelConfig, n: int, n_pkg: int, kept: int, hw: HardwareConfig, mode: str = "norm",
                    kept_before_cap: int | None = None) -> int:
    """One selector job without stalls: n tokens in (n_pkg earlier packages, ns = n - 1 - n_pkg
    scored), `kept` scored tokens kept; kept_before_cap: the kept count before a binding top-k
    cap (the cap pass ranks those), None if no cap binds."""
    h, dh, d, r = cfg.num_heads, cfg.head_dim, cfg.embed_dim, hw.mac_rows
    h2 = max(h // 2, 1)
    cand, ns = n - 1, n - 1 - n_pkg
    words = h * (1 + 11 * dh // 4) + h + h2 + 3 * (5 * h + 2)
    rx = words + _ceil(n, r) * d + MEAN_RECIP_BITS + 3               # W_RX, X_RX, 1 / (N - 1)
    per_cand = 4 * dh + SEL_LN + SEL_PWL + 1                          # LN in / out, in_fc, GELU, store
    per_scored = (dh + dh // 2 + SEL_PWL) + (dh // 2 + dh // 4 + SEL_PWL) + (dh // 4 + 3) + 2   # out1..3
    heads = h * (3 + dh + cand * per_cand + ns * per_scored)
    # head branch: channel means, se1, se2 (+ sigmoid), score and d_sig, one reciprocal for m
    branch = ns * (d + 1 + (h + h2 + SEL_PWL) + (h2 + h + SEL_PWL) + (h + SEL_PWL) + 1 + WEIGHT_RECIP_BITS + 2)
    k0 = kept_before_cap
    cap = 0 if k0 is None else k0 * (ns + 3) + (ns - k0) * 2
    pk_recip = PACK_RECIP_BITS + 3 if mode != "sum" and kept < ns else 0
    order = 1 + (ns > 0) + ns + n_pkg + 1 + 1 + pk_recip             # o_sel, order list, o_kept
    package = d * (ns + 2)
    out = _ceil(kept + n_pkg + 2, r) * d * (r + 1)                    # gather + emit per output tile
    return rx + heads + branch + cap + order + package + out


def selector_cycles_per_block(cfg: ModelConfig, tokens: list[int], hw: HardwareConfig) -> list[int]:
    """Cycles of the selector in front of each block (0 where there is none), tokens: the
    counts entering each block (golden.macs.tokens_per_block). Stage s keeps
    tokens[b] - s - 2 scored tokens; a keep_cap is assumed not to bind (its ranking pass,
    about ns cycles per kept token, is not counted)."""
    out = [0] * len(tokens)
    for s, b in enumerate(cfg.selector_blocks[: cfg.stages]):
        n_in = tokens[b - 1] if b else cfg.num_tokens
        out[b] = selector_cycles(cfg, n_in, s, tokens[b] - s - 2, hw, cfg.package_mode)
    return out
