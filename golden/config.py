"""Configuration: one frozen dataclass per concern, checked in __post_init__.

`ModelConfig` describes the network, `FixedPointConfig` the integer arithmetic. Presets are
made with `dataclasses.replace`; a TOML file can define or override any field:

    preset = "deit-tiny"          # optional base
    [model]
    depth = 6
    [fixed_point]
    acc_bits = 48
"""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

SELECTORS = ("none", "spvit", "dynamicvit", "evit", "evovit")   # golden/selectors/, one module each
PACKAGE_MODES = ("norm", "sum", "mean")
ROUNDINGS = ("half_up",)


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and the fix."""


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


@dataclass(frozen=True)
class ModelConfig:
    name: str = "custom"
    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 192
    depth: int = 12
    num_heads: int = 3
    mlp_ratio: float = 4.0
    num_classes: int = 1000
    selector: str = "none"
    selector_blocks: tuple[int, ...] = ()
    package_mode: str = "norm"      # spvit
    keep_cap: tuple[int, ...] = ()  # spvit, per stage; () = no cap
    keep_rate: tuple[float, ...] = ()   # dynamicvit (rho), evit, evovit: one value or one per stage
    fuse_token: bool | None = None      # evit: fuse the inattentive tokens into one (None = True)
    score_momentum: float | None = None  # evovit: weight of the new CLS attention in the running score (None = 0.5)

    def __post_init__(self):
        object.__setattr__(self, "selector_blocks", tuple(int(b) for b in self.selector_blocks))
        cap = self.keep_cap if isinstance(self.keep_cap, (tuple, list)) else (self.keep_cap,)
        object.__setattr__(self, "keep_cap", tuple(int(c) for c in cap))
        rate = self.keep_rate if isinstance(self.keep_rate, (tuple, list)) else (self.keep_rate,)
        _check(all(isinstance(r, (int, float)) and not isinstance(r, bool) for r in rate),
               f"keep_rate must be a number or a list of numbers (got {self.keep_rate!r})")
        object.__setattr__(self, "keep_rate", tuple(float(r) for r in rate))
        for f in ("img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads", "num_classes"):
            _check(isinstance(getattr(self, f), int) and getattr(self, f) > 0,
                   f"{f} must be a positive integer (got {getattr(self, f)!r})")
        _check(self.img_size % self.patch_size == 0,
               f"patch_size must divide img_size ({self.img_size} % {self.patch_size} != 0)")
        _check(self.embed_dim % self.num_heads == 0,
               f"heads must divide embed_dim ({self.embed_dim} % {self.num_heads} != 0)")
        hidden = self.mlp_ratio * self.embed_dim
        _check(hidden == int(hidden) and hidden > 0,
               f"mlp_ratio * embed_dim must be a positive integer ({self.mlp_ratio} * {self.embed_dim} = {hidden})")
        _check(self.mlp_hidden <= 4096 and self.embed_dim <= 4096 and self.patch_dim <= 4096,
               f"matmul depth above 4096 is not supported by the 48-bit accumulator "
               f"(embed_dim={self.embed_dim}, mlp hidden={self.mlp_hidden}, patch dim={self.patch_dim})")
        _check(self.num_tokens <= 4096, f"at most 4096 tokens are supported (got {self.num_tokens})")
        _check(self.selector in SELECTORS, f"selector must be one of {SELECTORS} (got {self.selector!r})")
        _check(self.package_mode in PACKAGE_MODES,
               f"package_mode must be one of {PACKAGE_MODES} (got {self.package_mode!r})")
        _check(self.fuse_token is None or isinstance(self.fuse_token, bool),
               f"fuse_token must be true or false (got {self.fuse_token!r})")
        _check(self.score_momentum is None or (isinstance(self.score_momentum, (int, float))
                                               and not isinstance(self.score_momentum, bool)),
               f"score_momentum must be a number in [0, 1] (got {self.score_momentum!r})")
        from .selectors import SCHEMES      # the scheme's own rules (lazy: the schemes import this module)
        _check(self.selector in SCHEMES, f"selector {self.selector!r} is planned but not implemented yet; "
               f"use one of {tuple(SCHEMES)}")
        SCHEMES[self.selector].check(self)

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        return int(self.mlp_ratio * self.embed_dim)

    @property
    def num_patches(self) -> int:
        return (self.img_size // self.patch_size) ** 2

    @property
    def num_tokens(self) -> int:
        return self.num_patches + 1

    @property
    def patch_dim(self) -> int:
        return self.in_chans * self.patch_size ** 2

    @property
    def stages(self) -> int:
        return len(self.selector_blocks) if self.selector != "none" else 0

    @property
    def scheme(self):
        """The token-selection scheme (golden/selectors/)."""
        from .selectors import SCHEMES
        return SCHEMES[self.selector]

    def cap(self, stage: int) -> int | None:
        if not self.keep_cap:
            return None
        return self.keep_cap[stage if len(self.keep_cap) > 1 else 0]


@dataclass(frozen=True)
class FixedPointConfig:
    """Integer arithmetic. Per-tensor fractional bits come from calibration (`frac_overrides`
    pins any tensor by name, e.g. {"blocks.0.q": 11})."""
    word_bits: int = 16
    acc_bits: int = 48
    rounding: str = "half_up"
    frac_min: int = -8
    frac_max: int = 24
    headroom_bits: int = 1  # activations get this many bits above the calibrated range
    frac_overrides: dict = field(default_factory=dict)

    def __post_init__(self):
        _check(self.word_bits == 16, f"word_bits must be 16: the golden model and RTL are 16-bit (got {self.word_bits})")
        _check(self.acc_bits == 48,
               f"acc_bits must be 48 (the DSP48E2 accumulator; the overflow proof in docs/arithmetic.md assumes it), got {self.acc_bits}")
        _check(self.rounding in ROUNDINGS, f"rounding must be one of {ROUNDINGS} (got {self.rounding!r})")
        _check(0 <= self.headroom_bits <= 8, f"headroom_bits must lie in 0..8 (got {self.headroom_bits})")
        _check(self.frac_min <= self.frac_max, f"frac_min must be <= frac_max ({self.frac_min} > {self.frac_max})")
        for k, v in self.frac_overrides.items():
            _check(isinstance(v, int) and self.frac_min <= v <= self.frac_max,
                   f"frac_overrides[{k!r}] must be an integer in [{self.frac_min}, {self.frac_max}] (got {v!r})")

    def __hash__(self):
        return hash((self.word_bits, self.acc_bits, self.rounding, self.frac_min, self.frac_max, self.headroom_bits,
                     tuple(sorted(self.frac_overrides.items()))))


# ---------------------------------------------------------------- presets
DEIT_TINY = ModelConfig(name="deit-tiny", embed_dim=192, depth=12, num_heads=3)
DEIT_SMALL = replace(DEIT_TINY, name="deit-small", embed_dim=384, num_heads=6)
SPVIT_DEIT_TINY = replace(DEIT_TINY, name="spvit-deit-tiny", selector="spvit", selector_blocks=(3, 6, 9))
SPVIT_DEIT_SMALL = replace(DEIT_SMALL, name="spvit-deit-small", selector="spvit", selector_blocks=(3, 6, 9))
# DynamicViT: predictors before blocks 3, 6, 9 keeping int(196 * 0.7^s) = 137, 96, 67 patch tokens
DYNAMICVIT_DEIT_TINY = replace(DEIT_TINY, name="dynamicvit-deit-tiny", selector="dynamicvit",
                               selector_blocks=(3, 6, 9), keep_rate=(0.7,))
DYNAMICVIT_DEIT_SMALL = replace(DYNAMICVIT_DEIT_TINY, name="dynamicvit-deit-small", embed_dim=384, num_heads=6)
# EViT: inside blocks 3, 6, 9 keep ceil(0.7 (N - 1)) tokens + one fused: 196 -> 139 -> 99 -> 71 non-CLS tokens
EVIT_DEIT_TINY = replace(DEIT_TINY, name="evit-deit-tiny", selector="evit", selector_blocks=(3, 6, 9), keep_rate=(0.7,))
EVIT_DEIT_SMALL = replace(EVIT_DEIT_TINY, name="evit-deit-small", embed_dim=384, num_heads=6)
# Evo-ViT (DeiT release): from blocks 4 and 8 the top 98 of 196 patch tokens run the blocks
EVOVIT_DEIT_TINY = replace(DEIT_TINY, name="evovit-deit-tiny", selector="evovit", selector_blocks=(4, 8), keep_rate=(0.5,))
EVOVIT_DEIT_SMALL = replace(EVOVIT_DEIT_TINY, name="evovit-deit-small", embed_dim=384, num_heads=6)
# The small model of the demo and the fast tests: 8x8 digits upsampled to 32x32, one channel.
MINI = ModelConfig(name="mini", img_size=32, patch_size=4, in_chans=1, embed_dim=64, depth=6,
                   num_heads=4, num_classes=10, selector="spvit", selector_blocks=(2, 4))
MINI_DYNAMICVIT = replace(MINI, name="mini-dynamicvit", selector="dynamicvit", keep_rate=(0.7,))
MINI_EVIT = replace(MINI, name="mini-evit", selector="evit", keep_rate=(0.7,))
MINI_EVOVIT = replace(MINI, name="mini-evovit", selector="evovit", keep_rate=(0.5,))

PRESETS: dict[str, ModelConfig] = {c.name: c for c in
                                   (DEIT_TINY, DEIT_SMALL, SPVIT_DEIT_TINY, SPVIT_DEIT_SMALL,
                                    DYNAMICVIT_DEIT_TINY, DYNAMICVIT_DEIT_SMALL, EVIT_DEIT_TINY, EVIT_DEIT_SMALL,
                                    EVOVIT_DEIT_TINY, EVOVIT_DEIT_SMALL, MINI, MINI_DYNAMICVIT, MINI_EVIT, MINI_EVOVIT)}


@dataclass(frozen=True)
class Config:
    model: ModelConfig
    fixed_point: FixedPointConfig = FixedPointConfig()


def _fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _apply(base, table: dict, where: str):
    unknown = set(table) - _fields(type(base))
    if unknown:
        raise ConfigError(f"unknown field(s) {sorted(unknown)} in [{where}]; "
                          f"valid fields: {sorted(_fields(type(base)))}")
    table = {k: tuple(v) if isinstance(v, list) else v for k, v in table.items()}
    return replace(base, **table)


def load_config(spec: str | Path) -> Config:
    """A preset name (`deit-tiny`, ...) or a TOML file path."""
    spec = str(spec)
    if spec in PRESETS:
        return Config(PRESETS[spec])
    path = Path(spec)
    if not path.suffix == ".toml" and not path.exists():
        raise ConfigError(f"unknown config {spec!r}: give a preset ({', '.join(PRESETS)}) or a .toml file")
    if not path.is_file():
        raise ConfigError(f"config file {spec!r} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {spec!r} is not valid TOML: {e}") from None
    unknown = set(data) - {"preset", "model", "fixed_point", "hardware"}
    if unknown:
        raise ConfigError(f"unknown section(s) {sorted(unknown)} in {spec!r}; valid: preset, model, fixed_point, hardware")
    base = PRESETS.get(data.get("preset", "deit-tiny"))
    if base is None:
        raise ConfigError(f"unknown preset {data['preset']!r} in {spec!r}; valid: {', '.join(PRESETS)}")
    model = _apply(replace(base, name=path.stem), data.get("model", {}), "model")
    fp = _apply(FixedPointConfig(), data.get("fixed_point", {}), "fixed_point")
    return Config(model, fp)
