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
SOFTMAX_FIXED = 52     # softmax per row group besides its 2 n beats: exp pipeline 3, reciprocal 47, hand-offs


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
    items, pv = t * heads, (dh // C) * n            # (query tile, head) items; P.V beats per item
    # lag: a score's last beat -> its probabilities stored (the last key column reaches the
    # softmax n - (u - 1) C cycles later; then exp, reciprocal, output)
    lag = n - (u - 1) * C + 2 * n + SOFTMAX_FIXED
    # scores and P.V interleave (S0 S1 PV0 S2 PV1 ... PV(L-1)): an item costs its MAC beats, or
    # the softmax's turn-around when longer (the second score tile waits for the softmax to
    # take the first; later tiles come every head_dim cycles)
    sm = lag + (C + (u - 2) * dh if u > 1 else 0)
    period = max(u * dh + pv, sm)
    # S0; S1 (it may wait for the softmax of item 0); L - 2 periods; the wait for the last
    # probabilities after PV(L-2); the last P.V and its drain
    mid = lag if items == 1 else max(u * dh, sm) + (items - 2) * period + max(pv, lag)
    core = u * dh + mid + pv + C + 1
    return (_ln(d, hw, t) + _linear(3 * d // C, d, t, hw) + core + _linear(d // C, d, t, hw) + t * d)


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


# token-selector engine (rtl_gen/selector.py): its tile-parallel schedule, state by state
SEL_LN = 100           # LayerNorm unit per pass (a token tile or part of one) besides its 2 x head_dim beats
SEL_PWL = 4            # a post-processing pass through 3-stage PWL units: outputs + 4 cycles


def _sel_layer(k: int, outs: int, q: int, pwl: bool = True) -> int:
    """One layer of the selector's MAC block (k deep, `outs` outputs, q per pass): per pass k
    MAC cycles, then the outputs of the pass through requant (+ PWL) and a hand-off."""
    return _ceil(outs, q) * (k + (SEL_PWL if pwl else 1)) + outs


def selector_cycles(cfg: ModelConfig, n: int, n_pkg: int, kept: int, hw: HardwareConfig, mode: str = "norm",
                    kept_before_cap: int | None = None, lanes_out: int | None = None,
                    lanes_ln: int | None = None) -> int:
    """One selector job without stalls: n tokens in (n_pkg earlier packages, ns = n - 1 - n_pkg
    scored), `kept` scored tokens kept; kept_before_cap: the kept count before a binding top-k
    cap (the cap pass ranks those), None if no cap binds; lanes_out, lanes_ln: the engine's
    output lanes per MAC pass and LayerNorm lanes (defaults: rtl_gen.selector.out_lanes, ln_lanes)."""
    from .selector import ln_lanes, out_lanes
    h, dh, d, r = cfg.num_heads, cfg.head_dim, cfg.embed_dim, hw.mac_rows
    q = lanes_out or out_lanes(dh, hw)
    passes = r // (lanes_ln or ln_lanes(hw))                          # LayerNorm passes per tile
    h2 = max(h // 2, 1)
    ns = n - 1 - n_pkg
    t = _ceil(n, r)                                                   # token tiles in
    ts = ns // r + 1 if ns else 0                                     # tiles holding scored tokens
    words = h * (1 + 11 * dh // 4) + h + h2 + 3 * (5 * h + 2)
    rx = words + t * d + MEAN_RECIP_BITS + 3                          # W_RX, X_RX, 1 / (N - 1)
    # LN + in_fc phase: the LayerNorm of tile i + 1 (per pass: in, ~100, out, 1 turn-around)
    # overlaps in_fc + GELU of tile i; a tile costs the slower of the two plus a hand-off cycle
    ln, fc = passes * (2 * dh + SEL_LN + 1) - 1, _sel_layer(dh, dh, q)
    phase_a = dh + ln + 1 + fc + (t - 1) * (max(fc, ln) + 1)
    per_scored = _sel_layer(dh, dh // 2, q) + _sel_layer(dh // 2, dh // 4, q) + _sel_layer(dh // 4, 2, q, False)
    heads = h * (2 + phase_a + dh // 2 + ts * per_scored)
    # head branch per scored tile: channel means, se1, se2 (+ sigmoid), score and d_sig,
    # R reciprocals 1 / den in parallel, then m of one lane per cycle
    branch = ts * (d + h + _sel_layer(h, h2, q) + _sel_layer(h2, h, q) + h + SEL_PWL + WEIGHT_RECIP_BITS + 2 + r)
    k0 = kept_before_cap
    cap = 0 if k0 is None else k0 * (ns + 3) + (ns - k0) * 2
    pk_recip = PACK_RECIP_BITS + 3 if mode != "sum" and kept < ns else 0
    order = 3 + ns + pk_recip                                         # o_sel, o_kept, 1 / sum m
    package = t * r + d * (ts + 2)                                    # lane weights, then per channel
    n_out = kept + n_pkg + 2
    out = (t + 1) * (d + 1) + (d if n_out % r else 0)                 # compaction, package, last tile
    return rx + heads + branch + cap + order + package + out


def selector_cycles_per_block(cfg: ModelConfig, tokens: list[int], hw: HardwareConfig) -> list[int]:
    """Cycles of the selector in front of each block (0 where there is none), tokens: the
    counts entering each block (golden.macs.tokens_per_block). Stage s keeps
    tokens[b] - s - 2 scored tokens; a keep_cap is assumed not to bind (its ranking pass,
    about ns cycles per kept token, is not counted)."""
    out = [0] * len(tokens)
    for s, b in enumerate(cfg.selector_blocks[: cfg.stages] if cfg.selector == "spvit" else ()):
        n_in = tokens[b - 1] if b else cfg.num_tokens
        out[b] = selector_cycles(cfg, n_in, s, tokens[b] - s - 2, hw, cfg.package_mode)
    return out
