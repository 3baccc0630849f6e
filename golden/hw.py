"""The accelerator's hardware configuration: one frozen dataclass, checked in __post_init__ and,
for a given model, by `check`. It lives in golden/ because the program format depends on it
(token-tile width, stream width, buffer sizes); rtl_gen/ generates the hardware from it.

    hw = HW_PRESETS["zcu102"]; hw.check(model_cfg)     # ConfigError naming the fix
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from base.errors import ConfigError

from .config import ModelConfig, _check, build, read_toml
from .isa import B3, SB

ZCU102_DSP = 2520
ZCU102_BRAM36 = 912
ZCU102_LUT = 274_080
ZCU102_LUT_MEM = 144_000      # of them usable as memory (SLICEM LUTs)
ZCU102_FF = 548_160
# ZCU102 PS DDR4: 64-bit at 2400 MT/s = 19.2 GB/s peak; 80% sustained for long sequential
# bursts from several HP ports is the figure the cycle model assumes by default.
ZCU102_DDR_GBPS = 15.4


# A hardware name becomes the Verilog module spvit_accel_NAME ('-' as '_'), the file NAME.v and
# the names of simulator build folders: letters, digits, '_' and '-', not starting with '-'.
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")
NAME_RULE = "letters, digits, '_' and '-' (at most 64, not starting with '-')"


class DoesNotFit(ConfigError):
    """A model, or its program, cannot run on a hardware configuration; the message names why
    and what would fit (`HardwareConfig.advice`)."""


def name_from(stem: str) -> str:
    """A valid hardware name made from a file name (other characters become '_')."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", stem)[:64]
    return "_" + name[1:] if name.startswith("-") else name or "custom"


def _pow2(v: int) -> bool:
    return v > 0 and v & (v - 1) == 0


def _round_up(v: int, step: int) -> int:
    return -(-v // step) * step


@dataclass(frozen=True)
class HardwareConfig:
    """One accelerator: a mac_rows x mac_cols MAC array (mac_rows tokens x mac_cols output
    channels per beat, one DSP48E2 each), token buffers for n_max tokens of up to d_max
    channels (three) and hidden_max channels (one), axi_ports AXI4 masters of axi_bits each.

    Programs for it may use any model whose shapes fit (`check`)."""
    name: str = "custom"
    mac_rows: int = 32
    mac_cols: int = 64
    n_max: int = 200
    d_max: int = 384
    hidden_max: int = 1536
    axi_ports: int = 4
    axi_bits: int = 128
    desc_max: int = 1024
    pwl_max: int = 2048
    stages_max: int = 4
    clock_mhz: float = 300.0
    ddr_gbps: float = ZCU102_DDR_GBPS
    dsp_budget: int = ZCU102_DSP
    ln_post_share: int = 1      # token rows per LayerNorm post lane (square root, reciprocal): 1, 2, 4 ...

    def __post_init__(self):
        _check(isinstance(self.name, str) and NAME.fullmatch(self.name) is not None,
               f"name must be {NAME_RULE}: it names the Verilog module spvit_accel_NAME and its file "
               f"(got {self.name!r})")
        for f in ("mac_rows", "mac_cols", "n_max", "d_max", "hidden_max", "axi_ports", "axi_bits", "desc_max",
                  "pwl_max", "stages_max", "dsp_budget", "ln_post_share"):
            v = getattr(self, f)
            _check(isinstance(v, int) and not isinstance(v, bool) and v > 0,
                   f"{f} must be a positive integer (got {v!r})")
        for f in ("clock_mhz", "ddr_gbps"):
            v = getattr(self, f)
            _check(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1000,
                   f"{f} must be a number in (0, 1000] (got {v!r})")
        _check(_pow2(self.mac_rows) and _pow2(self.mac_cols),
               f"mac_rows and mac_cols must be powers of two (got {self.mac_rows} x {self.mac_cols})")
        _check(self.mac_cols % self.mac_rows == 0,
               f"mac_rows must divide mac_cols ({self.mac_cols} % {self.mac_rows} != 0): "
               f"a key tile holds whole token tiles")
        _check(self.mac_cols >= 8,
               f"mac_cols must be at least 8 (got {self.mac_cols}): a weight word is at least 128 bits")
        _check(self.axi_bits in (64, 128, 256), f"axi_bits must be 64, 128 or 256 (got {self.axi_bits})")
        _check(_pow2(self.axi_ports) and self.axi_ports <= 8, f"axi_ports must be 1, 2, 4 or 8 (got {self.axi_ports})")
        _check(self.n_max <= 4096, f"n_max must be at most 4096 tokens (got {self.n_max})")
        _check(self.d_max % self.mac_cols == 0 and self.hidden_max % self.mac_cols == 0,
               f"mac_cols must divide d_max and hidden_max ({self.d_max} % {self.mac_cols}, "
               f"{self.hidden_max} % {self.mac_cols})")
        _check(self.d_max <= 4096 and self.hidden_max <= 4096,
               f"d_max and hidden_max must be at most 4096 (the 48-bit accumulator's depth limit; got "
               f"{self.d_max}, {self.hidden_max})")
        _check(self.hidden_max >= self.d_max, f"hidden_max must be at least d_max ({self.hidden_max} < {self.d_max})")
        _check(self.pwl_max <= 4096, f"pwl_max must be at most 4096 table segments (got {self.pwl_max})")
        _check(1 <= self.stages_max <= 8, f"stages_max must lie in 1..8 (got {self.stages_max})")
        _check(_pow2(self.ln_post_share) and self.ln_post_share <= self.mac_rows,
               f"ln_post_share must be a power of two up to mac_rows {self.mac_rows} (got {self.ln_post_share}): "
               f"the LayerNorm unit's per-tile chain serves that many token rows per lane, one after another")

    # ------------------------------------------------------------ derived sizes
    @property
    def macs(self) -> int:
        return self.mac_rows * self.mac_cols

    @property
    def tiles(self) -> int:
        """Token tiles of mac_rows tokens that hold n_max tokens."""
        return -(-self.n_max // self.mac_rows)

    @property
    def key_tiles(self) -> int:
        return -(-self.n_max // self.mac_cols)

    @property
    def k_max(self) -> int:
        """Deepest matmul (rows of a weight bank)."""
        return max(self.d_max, self.hidden_max)

    @property
    def stream_bits(self) -> int:
        """Width of the merged DDR read stream: one beat from every port per cycle."""
        return self.axi_ports * self.axi_bits

    @property
    def stream_bytes(self) -> int:
        return self.stream_bits // 8

    def buffer_width(self, buf: int) -> int:
        """Channels of buffer `buf` (golden.isa.BUFFER_NAMES); the score buffer SB has one column
        of 48-bit scores."""
        if not 0 <= buf <= SB:
            raise ValueError(f"no buffer {buf}")
        return 1 if buf == SB else self.hidden_max if buf == B3 else self.d_max

    def ident(self) -> int:
        """32-bit hash of the configuration fields that the program format depends on; a
        program records it and the hardware refuses a program made for another design."""
        keys = ("mac_rows", "mac_cols", "n_max", "d_max", "hidden_max", "axi_ports", "axi_bits", "desc_max",
                "pwl_max", "stages_max")
        text = json.dumps({k: getattr(self, k) for k in keys}, sort_keys=True)
        return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")

    def as_dict(self) -> dict:
        return asdict(self)

    # ------------------------------------------------------------ model fit
    def misfits(self, model: ModelConfig) -> list[str]:
        """Every reason why a program for `model` cannot run on this hardware (empty: fits); the
        token-selection scheme's own reasons first (what a user of the scheme must hear first)."""
        m, out = model, list(model.scheme.misfits(model, self))
        d, hid, dh = m.embed_dim, m.mlp_hidden, m.head_dim
        if d > self.d_max:
            out.append(f"embed_dim {d} > d_max {self.d_max}")
        if hid > self.hidden_max:
            out.append(f"MLP hidden width {hid} > hidden_max {self.hidden_max}")
        if m.patch_dim > self.hidden_max:
            out.append(f"patch dim {m.patch_dim} (in_chans x patch_size^2) > hidden_max {self.hidden_max}")
        if m.num_classes > self.hidden_max:
            out.append(f"num_classes {m.num_classes} > hidden_max {self.hidden_max}")
        if dh % self.mac_cols:
            out.append(f"head_dim {dh} is not a multiple of mac_cols {self.mac_cols}")
        extra = m.scheme.extra_tokens(m)
        if m.num_tokens + extra > self.n_max:
            out.append(f"{m.num_tokens} tokens + {extra} package tokens = {m.num_tokens + extra} > n_max {self.n_max}"
                       if extra else f"{m.num_tokens} tokens > n_max {self.n_max}")
        if m.stages > self.stages_max:
            out.append(f"{m.stages} selector stages > stages_max {self.stages_max}")
        return out

    def check(self, model: ModelConfig) -> "HardwareConfig":
        bad = self.misfits(model)
        if bad:
            raise DoesNotFit(f"hardware {self.name} cannot run {model.name}: " + "; ".join(bad) + "; "
                             + self.advice(model))
        return self

    def fitting(self, model: ModelConfig, descriptors: int = 0) -> "HardwareConfig | None":
        """This configuration with the fewest fields changed so that `model` (a program of
        `descriptors` descriptors) runs on it; None if no configuration can run it."""
        m = model
        cols = self.mac_cols
        while cols > 8 and m.head_dim % cols:          # a head is whole mac_cols-wide tiles
            cols //= 2
        hidden = max(self.hidden_max, m.mlp_hidden, m.patch_dim, m.num_classes, 3 * m.num_heads if m.stages else 0)
        try:
            hw = replace(self, mac_cols=cols, mac_rows=min(self.mac_rows, cols),
                         d_max=_round_up(max(self.d_max, m.embed_dim), cols),
                         hidden_max=_round_up(max(hidden, self.d_max, m.embed_dim), cols),
                         n_max=max(self.n_max, m.num_tokens + m.stages), stages_max=max(self.stages_max, m.stages),
                         desc_max=max(self.desc_max, descriptors))
        except ConfigError:                               # beyond a limit (4096 tokens or channels, 8 stages)
            return None
        return None if hw.misfits(m) else hw

    def advice(self, model: ModelConfig, descriptors: int = 0) -> str:
        """What would run `model` (a program of `descriptors` descriptors): the hardware presets
        that do, and the fields of this configuration to change, computed from the model."""
        presets = [n for n, h in HW_PRESETS.items() if n != self.name and not h.misfits(model)
                   and h.desc_max >= descriptors]
        fit = self.fitting(model, descriptors)
        if fit is None:
            m = model
            why = [w for bad, w in ((m.head_dim % 8, f"head_dim {m.head_dim} is not a multiple of 8, the narrowest "
                                                    "MAC array"),
                                    (m.num_tokens + m.stages > 4096, "more than 4096 tokens"),
                                    (m.stages > 8, "more than 8 selector stages")) if bad]
            return (f"no hardware configuration can run {m.name}: {'; '.join(why) or 'wider than 4096 channels'}; "
                    f"change the model")
        changed = ", ".join(f"{f.name} = {getattr(fit, f.name)}" for f in fields(self)
                            if getattr(fit, f.name) != getattr(self, f.name))
        where = (f'in a hardware TOML on top of [hardware] preset = "{self.name}"' if self.name in HW_PRESETS
                 else f"in the [hardware] table of hardware {self.name}")
        use = f"use the hardware preset {' or '.join(presets)}" if presets else ""
        if not changed:
            return f"to run it, {use}"
        return f"to run it, {use + ', or ' if use else ''}set {changed} {where} (spvit report shows the resources " \
               f"it needs)"


# mini: the demo model and the fast tests; small: DeiT-T/S shapes in simulation in reasonable
# time; zcu102: the board target (one 32x64 array = 2,048 DSP48E2, four 128-bit HP ports).
MINI_HW = HardwareConfig(name="mini", mac_rows=8, mac_cols=16, n_max=72, d_max=64, hidden_max=256, axi_ports=1,
                         desc_max=256)
SMALL_HW = HardwareConfig(name="small", mac_rows=16, mac_cols=32, n_max=200, d_max=384, hidden_max=1536, axi_ports=2)
# zcu102 shares each LayerNorm post lane between two token rows: about 14k LUTs fewer (docs/rtl.md)
ZCU102_HW = HardwareConfig(name="zcu102", ln_post_share=2)
HW_PRESETS: dict[str, HardwareConfig] = {h.name: h for h in (MINI_HW, SMALL_HW, ZCU102_HW)}
DEFAULT_HW = {"mini": "mini"}           # model preset -> hardware preset when none is given


def load_hw(spec: str | None, model: ModelConfig | None = None, table: dict | None = None,
            preset: str | None = None) -> HardwareConfig:
    """A hardware preset name or a TOML file with a [hardware] table (fields of HardwareConfig,
    optionally `preset` as the base and `name`). `table`: a model TOML's [hardware] table
    (golden.config.Config.hardware), applied as written on top of `spec`, else of the table's own
    `preset`, else of the default of the model's preset `preset` (zcu102; mini for the mini
    model). Every value is type-checked; errors name the field and the file."""
    table = dict(table or {})
    base = table.pop("preset", None)
    if base is not None and not isinstance(base, str):
        raise ConfigError(f"preset in [hardware] must be a hardware preset name ({', '.join(HW_PRESETS)}), "
                          f"got {base!r}")
    if spec is None:
        spec = base or DEFAULT_HW.get(preset or getattr(model, "name", ""), "zcu102")
        if spec not in HW_PRESETS:
            raise ConfigError(f"unknown hardware preset {spec!r} in [hardware]; use one of {', '.join(HW_PRESETS)}")
    hw = _hw_spec(spec)
    return build(HardwareConfig, table, "hardware", hw) if table else hw


def _hw_spec(spec: str) -> HardwareConfig:
    if spec in HW_PRESETS:
        return HW_PRESETS[spec]
    path = Path(spec)
    if path.suffix != ".toml":
        raise ConfigError(f"unknown hardware {spec!r}: give a preset ({', '.join(HW_PRESETS)}) or a .toml file "
                          f"with a [hardware] table")
    table = read_toml(path, spec, "hardware file").get("hardware")
    if not isinstance(table, dict):
        raise ConfigError(f"hardware file {spec!r} has no [hardware] table; add one with fields of HardwareConfig "
                          f"({', '.join(f.name for f in fields(HardwareConfig))})")
    table = dict(table)
    base = table.pop("preset", "zcu102")
    if not isinstance(base, str) or base not in HW_PRESETS:
        raise ConfigError(f"unknown hardware preset {base!r} in {spec!r}; use one of {', '.join(HW_PRESETS)}")
    try:
        return build(HardwareConfig, {"name": name_from(path.stem), **table}, "hardware", HW_PRESETS[base])
    except ConfigError as e:
        raise ConfigError(f"hardware file {spec!r}: {e}") from None
