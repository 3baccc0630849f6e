"""Configuration: one frozen dataclass per concern, checked in __post_init__.

`ModelConfig` describes the network, `FixedPointConfig` the integer arithmetic. Presets are
made with `dataclasses.replace`; a TOML file can define or override any field:

    preset = "deit-tiny"          # optional base
    [model]
    depth = 6
    [preprocess]                  # how image files become inputs (timm pretrained_cfg names)
    mean = [0.1307]
    std = [0.3081]
    [fixed_point]
    acc_bits = 48
"""
from __future__ import annotations

import dataclasses
import math
import sys
import typing
from dataclasses import dataclass, field, replace
from pathlib import Path

try:
    import tomllib  # novermin (Python 3.11)
except ModuleNotFoundError:      # Python 3.10 (PYNQ 3.x board images): the host driver reads no TOML
    tomllib = None

from base.errors import ConfigError, notice, shown
from base.inputs import regular_file

from .selectors import SCHEMES

SELECTORS = ("none", "spvit", "dynamicvit", "evit", "evovit")   # golden/selectors/, one module each
PACKAGE_MODES = ("norm", "sum", "mean")
ROUNDINGS = ("half_up",)
MAX_DEPTH = 128          # blocks (the largest ViTs have 48); bounds memory and time of a bad config
MAX_CLASSES = 100_000


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


INTERPOLATIONS = ("bicubic", "bilinear", "nearest", "box", "hamming", "lanczos")
CROP_MODES = ("center", "squash", "none")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """How an image file becomes the model's input, with timm's `pretrained_cfg` names (TOML
    section [preprocess]). In order: convert to RGB (in_chans 3) or grey (in_chans 1); add `pad`
    pixels of value `fill` on every side; resize (`center`: the shorter side to
    floor(img_size / crop_pct), aspect kept; `squash`: both sides to that; `none`: no resize);
    centre-crop to img_size (padding with `fill` where the image is smaller); scale to [0, 1];
    subtract `mean`, divide by `std` per channel. Empty mean / std: ImageNet's for 3 channels,
    0.5 / 0.5 for one. The defaults are DeiT's evaluation transform."""
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    crop_mode: str = "center"
    pad: int = 0
    fill: int = 0

    def __post_init__(self):
        object.__setattr__(self, "mean", tuple(self.mean))
        object.__setattr__(self, "std", tuple(self.std))
        _check(len(self.mean) == len(self.std),
               f"preprocess mean and std need the same number of values (got {len(self.mean)} and {len(self.std)})")
        _check(all(isinstance(v, (int, float)) and math.isfinite(v) for v in self.mean),
               f"preprocess mean must be finite numbers (got {list(self.mean)})")
        _check(all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in self.std),
               f"preprocess std must be positive numbers (got {list(self.std)})")
        _check(self.interpolation in INTERPOLATIONS,
               f"preprocess interpolation must be one of {INTERPOLATIONS} (got {self.interpolation!r})")
        _check(self.crop_mode in CROP_MODES,
               f"preprocess crop_mode must be one of {CROP_MODES} (got {self.crop_mode!r}; "
               f"timm's 'border' is not supported)")
        _check(isinstance(self.crop_pct, (int, float)) and 0 < self.crop_pct <= 1,
               f"preprocess crop_pct must lie in (0, 1] (got {self.crop_pct!r})")
        _check(isinstance(self.pad, int) and 0 <= self.pad <= 1024,
               f"preprocess pad must lie in 0..1024 pixels (got {self.pad!r})")
        _check(isinstance(self.fill, int) and 0 <= self.fill <= 255,
               f"preprocess fill must lie in 0..255 (got {self.fill!r})")

    def describe(self, in_chans: int, img_size: int) -> str:
        """The steps above in words, for a model of `in_chans` channels and `img_size` pixels."""
        mean, std = self.stats(in_chans)
        n = 1 if len(set(mean)) == len(set(std)) == 1 else in_chans
        steps = [f"convert to {'RGB' if in_chans == 3 else 'grey'}"]
        if self.pad:
            steps.append(f"pad {self.pad} pixels of {self.fill}")
        scale = math.floor(img_size / self.crop_pct)
        if self.crop_mode == "center":
            steps.append(f"resize the shorter side to {scale} ({self.interpolation})")
        elif self.crop_mode == "squash":
            steps.append(f"resize to {scale}x{scale} ({self.interpolation})")
        steps.append(f"crop the centre {img_size}x{img_size}")
        steps.append(f"scale to [0, 1], subtract mean {', '.join(f'{v:g}' for v in mean[:n])}, divide by std "
                     f"{', '.join(f'{v:g}' for v in std[:n])}")
        return ", ".join(steps)

    def stats(self, in_chans: int) -> tuple[tuple, tuple]:
        """(mean, std) per channel."""
        if not self.mean:
            return (IMAGENET_MEAN, IMAGENET_STD) if in_chans == 3 else ((0.5,) * in_chans, (0.5,) * in_chans)
        n = len(self.mean)
        return (self.mean * in_chans, self.std * in_chans) if n == 1 else (self.mean, self.std)


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
    preprocess: Preprocess = Preprocess()   # image files -> input (TOML [preprocess])

    def __post_init__(self):
        _check(isinstance(self.name, str) and self.name.isprintable() and self.name.strip() != "",
               f"name must be one line of printable characters (got {self.name!r}): it appears in every message")
        object.__setattr__(self, "selector_blocks", tuple(int(b) for b in self.selector_blocks))
        cap = self.keep_cap if isinstance(self.keep_cap, (tuple, list)) else (self.keep_cap,)
        object.__setattr__(self, "keep_cap", tuple(int(c) for c in cap))
        rate = self.keep_rate if isinstance(self.keep_rate, (tuple, list)) else (self.keep_rate,)
        _check(all(isinstance(r, (int, float)) and not isinstance(r, bool) for r in rate),
               f"keep_rate must be a number or a list of numbers (got {self.keep_rate!r})")
        object.__setattr__(self, "keep_rate", tuple(float(r) for r in rate))
        for f in ("img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads", "num_classes"):
            v = getattr(self, f)
            _check(isinstance(v, int) and not isinstance(v, bool) and v > 0,
                   f"{f} must be a positive integer (got {v!r})")
        _check(self.depth <= MAX_DEPTH, f"depth must be at most {MAX_DEPTH} blocks (got {self.depth})")
        _check(self.num_classes <= MAX_CLASSES, f"num_classes must be at most {MAX_CLASSES:,} (got {self.num_classes})")
        _check(isinstance(self.mlp_ratio, (int, float)) and math.isfinite(self.mlp_ratio),
               f"mlp_ratio must be a finite number (got {self.mlp_ratio!r})")
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
        _check(isinstance(self.preprocess, Preprocess), f"preprocess must be a table (got {self.preprocess!r})")
        _check(len(self.preprocess.mean) in (0, 1, self.in_chans),
               f"preprocess mean and std need 1 or in_chans = {self.in_chans} values (got {len(self.preprocess.mean)})")
        _check(self.selector in SELECTORS, f"selector must be one of {SELECTORS} (got {self.selector!r})")
        _check(self.package_mode in PACKAGE_MODES,
               f"package_mode must be one of {PACKAGE_MODES} (got {self.package_mode!r})")
        _check(self.fuse_token is None or isinstance(self.fuse_token, bool),
               f"fuse_token must be true or false (got {self.fuse_token!r})")
        _check(self.score_momentum is None or (isinstance(self.score_momentum, (int, float))
                                               and not isinstance(self.score_momentum, bool)),
               f"score_momentum must be a number in [0, 1] (got {self.score_momentum!r})")
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
        _check(self.word_bits == 16,
               f"word_bits must be 16: the golden model and RTL are 16-bit (got {self.word_bits})")
        _check(self.acc_bits == 48,
               f"acc_bits must be 48 (the DSP48E2 accumulator; the overflow proof in docs/arithmetic.md assumes it), "
               f"got {self.acc_bits}")
        _check(self.rounding in ROUNDINGS, f"rounding must be one of {ROUNDINGS} (got {self.rounding!r})")
        _check(0 <= self.headroom_bits <= 8, f"headroom_bits must lie in 0..8 (got {self.headroom_bits})")
        _check(-32 <= self.frac_min <= self.frac_max <= 32,
               f"frac_min and frac_max must satisfy -32 <= frac_min <= frac_max <= 32 "
               f"(got {self.frac_min}, {self.frac_max})")
        for k, v in self.frac_overrides.items():
            _check(isinstance(v, int) and not isinstance(v, bool) and self.frac_min <= v <= self.frac_max,
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
EVOVIT_DEIT_TINY = replace(DEIT_TINY, name="evovit-deit-tiny", selector="evovit", selector_blocks=(4, 8),
                           keep_rate=(0.5,))
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
    preset: str | None = None                         # the preset the model was made from
    hardware: dict = field(default_factory=dict)      # a TOML's [hardware] table, checked by rtl_gen


def _fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _show(v) -> str:
    if isinstance(v, bool):
        return f"the boolean {str(v).lower()}"
    if isinstance(v, str):
        return f"the string {v!r}"
    if isinstance(v, dict):
        return "a table"
    if isinstance(v, list):
        return f"the list {v!r}"
    return repr(v)


def _value(tp, v, what: str):
    """`v` as the annotated type `tp` (TOML / JSON values: lists become tuples); ConfigError
    naming `what` if it has the wrong type."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if v is None and type(None) in args:
            return None
        tp = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is bool:
        if not isinstance(v, bool):
            raise ConfigError(f"{what} must be true or false (got {_show(v)})")
        return v
    if tp is int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"{what} must be an integer (got {_show(v)})")
        return v
    if tp is float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ConfigError(f"{what} must be a finite number (got {_show(v)})")
        return float(v) if isinstance(v, float) else v
    if tp is str:
        if not isinstance(v, str):
            raise ConfigError(f"{what} must be a string (got {_show(v)})")
        return v
    if origin is tuple:
        elem = args[0]
        if not isinstance(v, (list, tuple)):
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                v = [v]
            else:
                kind, eg = {int: ("integers", "[2, 4]"), float: ("numbers", "[0.7]"),
                            str: ("strings", '["a", "b"]')}.get(elem, ("values", "[...]"))
                raise ConfigError(f"{what} must be a list of {kind}, e.g. {eg} (got {_show(v)})")
        return tuple(_value(elem, e, f"each entry of {what}") for e in v)
    if tp is dict or origin is dict:
        if not isinstance(v, dict):
            raise ConfigError(f"{what} must be a table, e.g. {{ \"blocks.0.q\" = 10 }} (got {_show(v)})")
        return dict(v)
    if dataclasses.is_dataclass(tp):
        return build(tp, v, what)
    return v


def typed(cls, table, where: str) -> dict:
    """The fields of `table` checked against the annotations of dataclass `cls` (unknown
    names and wrong types are ConfigErrors naming `where`)."""
    if not isinstance(table, dict):
        raise ConfigError(f"[{where}] must be a table of fields (got {_show(table)})")
    unknown = set(table) - _fields(cls)
    if unknown:
        raise ConfigError(f"unknown field(s) {sorted(unknown)} in [{where}]; "
                          f"valid fields: {sorted(_fields(cls))}")
    hints = typing.get_type_hints(cls)
    return {k: build(hints[k], v, f"{where}.{k}") if dataclasses.is_dataclass(hints[k])
            else _value(hints[k], v, f"{k} in [{where}]") for k, v in table.items()}


def build(cls, table, where: str, base=None):
    """An instance of dataclass `cls` from a TOML / JSON table (on top of `base` if given)."""
    kw = typed(cls, table, where)
    return replace(base, **kw) if base is not None else cls(**kw)


def config_dict(cfg) -> dict:
    """A config dataclass as JSON (tuples as lists, nested dataclasses as objects): how weight
    packages and DDR images record their model (read back by `model_from_dict`)."""
    def js(v):
        if isinstance(v, (tuple, list)):
            return [js(x) for x in v]
        if isinstance(v, dict):
            return {k: js(x) for k, x in v.items()}
        return v
    return js(dataclasses.asdict(cfg))


def model_from_dict(d, where: str = "model") -> ModelConfig:
    """A ModelConfig from its JSON form (`config_dict`), every value type-checked."""
    return build(ModelConfig, d, where)


SECTIONS = ("preset", "model", "preprocess", "fixed_point", "hardware")


def read_toml(path: Path, spec: str, what: str = "config file", fix: str = "give a .toml file") -> dict:
    """A TOML file's tables; a path that is no regular file (base.inputs), binary / non-UTF-8
    text, an unreadable file or invalid TOML are ConfigErrors naming `what` and `spec`, then
    `fix`."""
    if what == "config file":
        fix = f"give a preset ({', '.join(PRESETS)}) or a .toml file"
    regular_file(spec, what, fix, error=ConfigError)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {spec!r} is not UTF-8 text (a binary file?); {fix}") from None
    except OSError as e:
        raise ConfigError(f"cannot read {what} {spec!r}: {e.strerror or e}; check its permissions") from None
    if tomllib is None:
        raise ConfigError(f"reading {what} {spec!r} needs Python 3.11 or later (tomllib); this is Python "
                          f"{sys.version.split()[0]}")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{what} {spec!r} is not valid TOML: {e}") from None


def load_config(spec: str | Path) -> Config:
    """A preset name (`deit-tiny`, ...) or a TOML file path."""
    spec = str(spec)
    if spec in PRESETS:
        return Config(PRESETS[spec], preset=spec)
    path = Path(spec)
    if not path.exists() and path.suffix != ".toml":
        raise ConfigError(f"unknown config {spec!r}: give a preset ({', '.join(PRESETS)}) or a .toml file")
    data = read_toml(path, spec)
    unknown = set(data) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"unknown section(s) {sorted(unknown)} in {spec!r}; valid: {', '.join(SECTIONS)}")
    if not data:
        raise ConfigError(f"config file {spec!r} is empty; name the model it starts from, e.g. preset = \"deit-tiny\" "
                          f"(presets: {', '.join(PRESETS)}), and override fields under [model]")
    for sec in ("model", "preprocess", "fixed_point", "hardware"):
        if not isinstance(data.get(sec, {}), dict):
            raise ConfigError(f"[{sec}] in {spec!r} must be a table of fields (got {_show(data[sec])})")
    preset = data.get("preset")
    if preset is None:
        notice(f"{spec} has no `preset`: fields not set under [model] take the deit-tiny values")
        preset = "deit-tiny"
    if not isinstance(preset, str):
        raise ConfigError(f"preset in {spec!r} must be a string such as \"deit-tiny\" (got {_show(preset)})")
    base = PRESETS.get(preset)
    if base is None:
        raise ConfigError(f"unknown preset {preset!r} in {spec!r}; valid: {', '.join(PRESETS)}")
    model = build(ModelConfig, data.get("model", {}), "model", replace(base, name=shown(path.stem) or "custom"))
    if "preprocess" in data:
        model = replace(model, preprocess=build(Preprocess, data["preprocess"], "preprocess", model.preprocess))
    fp = build(FixedPointConfig, data.get("fixed_point", {}), "fixed_point")
    return Config(model, fp, preset, data.get("hardware", {}))
