"""The accelerator's control/status register map: ONE table, from which the RTL decode
(rtl_gen/host/csr.py) and the software views (JSON, C header, Markdown) are all derived.

Registers are 32 bits wide; byte offsets follow table order, 4 bytes apart (the rule of
amaranth-soc's csr.Builder for 32-bit registers on a byte-addressed bus). Every offset is
independent of the hardware configuration except those of KEPT0.., which come last.

    rm = regmap(hw); rm["CTRL"].offset          # 0x20
    regmap_json(hw); c_header(hw); markdown(hw)  # texts written next to the Verilog
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from base.errors import ConfigError
from golden import isa
from golden.hw import HardwareConfig

REGMAP_VERSION = 1
ID_MAGIC = 0x53505641           # "SPVA" read as a big-endian word
DATA_BITS = 32
ADDR_BITS = 12                  # a 4 KiB window: the smallest AXI-Lite address range Vivado assigns
ERROR_INDEX_HEADER = 0xFFFF_FFFF
ACCESS = {
    "RO": "read-only; writes are ignored",
    "RW": "read/write",
    "W1C": "read; writing 1 to a bit clears it, 0 leaves it",
    "WO": "write-only action; reads as 0",
}
UNMAPPED = "reads of unmapped offsets in the window return 0, writes are ignored; both respond OKAY"


@dataclass(frozen=True)
class Field:
    name: str
    lsb: int
    bits: int
    doc: str
    const: int | None = None     # value of a field fixed at generation time (identity, configuration)

    @property
    def mask(self) -> int:
        return ((1 << self.bits) - 1) << self.lsb

    @property
    def span(self) -> str:
        msb = self.lsb + self.bits - 1
        return f"[{msb}:{self.lsb}]" if self.bits > 1 else f"[{self.lsb}]"


@dataclass(frozen=True)
class Reg:
    name: str
    access: str
    doc: str
    fields: tuple[Field, ...]
    offset: int = -1             # set by _place, in table order

    @property
    def mask(self) -> int:
        """Bits that hold a field (the others are reserved: read 0, writes ignored)."""
        m = 0
        for f in self.fields:
            m |= f.mask
        return m

    @property
    def is_const(self) -> bool:
        return all(f.const is not None for f in self.fields)

    @property
    def reset(self) -> int:
        """Value after reset (constant fields hold their value; everything else resets to 0)."""
        return sum((f.const or 0) << f.lsb for f in self.fields)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no field {name!r}")


class RegMap:
    def __init__(self, hw: HardwareConfig, regs: tuple[Reg, ...]):
        self.hw, self.regs = hw, regs
        self._by_name = {r.name: r for r in regs}

    def __getitem__(self, name: str) -> Reg:
        return self._by_name[name]

    def __iter__(self):
        return iter(self.regs)

    def __len__(self) -> int:
        return len(self.regs)

    @property
    def size(self) -> int:
        return 1 << ADDR_BITS


def _f(name, lsb, bits, doc, const=None):
    return Field(name, lsb, bits, doc, const)


def _cfg(attr: str, lsb: int, bits: int, hw: HardwareConfig) -> Field:
    return Field(attr.upper(), lsb, bits, f"HardwareConfig.{attr}", getattr(hw, attr))


def _table(hw: HardwareConfig) -> list[Reg]:
    """The register table, in address order."""
    errs = ", ".join(f"{c} {n}" for c, (n, _) in isa.ERRORS.items())
    return [
        Reg("ID", "RO", "identifies the accelerator", (_f("MAGIC", 0, 32, 'the magic 0x53505641 ("SPVA")', ID_MAGIC),)),
        Reg("VERSION", "RO", "format versions",
            (_f("PROGRAM", 0, 16, "program format version (golden.isa.VERSION) the hardware executes", isa.VERSION),
             _f("REGMAP", 16, 16, "version of this register map", REGMAP_VERSION))),
        Reg("HW_IDENT", "RO", "hardware configuration hash; a program records it and must match",
            (_f("IDENT", 0, 32, "HardwareConfig.ident()", hw.ident()),)),
        Reg("CONFIG0", "RO", "MAC array geometry", (_cfg("mac_rows", 0, 16, hw), _cfg("mac_cols", 16, 16, hw))),
        Reg("CONFIG1", "RO", "token buffer limits", (_cfg("n_max", 0, 16, hw), _cfg("d_max", 16, 16, hw))),
        Reg("CONFIG2", "RO", "hidden width and activation table limits",
            (_cfg("hidden_max", 0, 16, hw), _cfg("pwl_max", 16, 16, hw))),
        Reg("CONFIG3", "RO", "program memory and DDR port width",
            (_cfg("desc_max", 0, 16, hw), _cfg("axi_bits", 16, 16, hw))),
        Reg("CONFIG4", "RO", "DDR ports and selector stages",
            (_cfg("axi_ports", 0, 8, hw), _cfg("stages_max", 8, 8, hw))),
        Reg("CTRL", "WO", "run control",
            (_f("START", 0, 1, "write 1: start a run of the program at PROG_BASE (ignored while STATUS.BUSY)"),)),
        Reg("STATUS", "RO", "run status",
            (_f("BUSY", 0, 1, "a run is in progress (from START until its end and while the core is not idle)"),
             _f("DONE", 1, 1, "a run has ended (with or without error); cleared by START"),
             _f("ERROR", 2, 1, "the last run ended with an error (ERROR_CODE != 0); cleared by START"))),
        Reg("IRQ_ENABLE", "RW", "interrupt enables", (_f("DONE", 0, 1, "raise `irq` while IRQ_STATUS.DONE is set"),)),
        Reg("IRQ_STATUS", "W1C", "interrupt status; `irq` = IRQ_ENABLE & IRQ_STATUS",
            (_f("DONE", 0, 1, "set at the end of every run, error or not"),)),
        Reg("PROG_BASE_LO", "RW", "DDR byte address of the program image, bits 31..0 (sampled at START)",
            (_f("ADDR", 0, 32, "address bits 31..0"),)),
        Reg("PROG_BASE_HI", "RW", "DDR byte address of the program image, bits 63..32",
            (_f("ADDR", 0, 32, "address bits 63..32"),)),
        Reg("ERROR_CODE", "RO", "error code of the last run (golden.isa.ERRORS); 0 during a run",
            (_f("CODE", 0, 8, f"0 = OK; {errs}"),)),
        Reg("ERROR_INDEX", "RO", "descriptor index of the last run's error; 0 during a run and after success",
            (_f("INDEX", 0, 32, "0xFFFFFFFF for header errors"),)),
        Reg("CYCLES_LO", "RO", "clock cycles of the current or last run, bits 31..0; reading it latches CYCLES_HI",
            (_f("COUNT", 0, 32, "cycles from the START pulse through the end of the run"),)),
        Reg("CYCLES_HI", "RO", "bits 63..32 of the cycle count as latched by the last read of CYCLES_LO",
            (_f("COUNT", 0, 32, "read CYCLES_LO first, then CYCLES_HI"),)),
        Reg("DESC_INDEX", "RO", "descriptor being executed (live)", (_f("INDEX", 0, 16, "descriptor index"),)),
        Reg("TOKENS", "RO", "the token-count register N (live)", (_f("N", 0, 16, "tokens"),)),
        *(Reg(f"KEPT{i}", "RO", f"kept patch tokens of selector stage {i} in the last run",
              (_f("COUNT", 0, 16, "tokens kept"),)) for i in range(hw.stages_max)),
    ]


def _place(hw: HardwareConfig, regs: list[Reg]) -> tuple[Reg, ...]:
    """Offsets in table order, 4 bytes apart; checks names, field overlaps and constant fits."""
    out, seen = [], set()
    for i, r in enumerate(regs):
        assert r.name not in seen and r.access in ACCESS, r.name
        seen.add(r.name)
        used = 0
        for f in r.fields:
            assert 0 <= f.lsb and f.lsb + f.bits <= DATA_BITS and not used & f.mask, f"{r.name}.{f.name}"
            used |= f.mask
            if f.const is not None and not 0 <= f.const < 1 << f.bits:
                raise ConfigError(f"{f.doc} = {f.const} does not fit register field {r.name}.{f.name} "
                                  f"({f.bits} bits); use a value below {1 << f.bits}")
        out.append(replace(r, offset=4 * i))
    assert 4 * len(out) <= 1 << ADDR_BITS
    return tuple(out)


@lru_cache(maxsize=None)
def regmap(hw: HardwareConfig) -> RegMap:
    return RegMap(hw, _place(hw, _table(hw)))


# ---------------------------------------------------------------- generated views
def _hw_line(hw: HardwareConfig) -> str:
    keys = ("mac_rows", "mac_cols", "n_max", "d_max", "hidden_max", "axi_ports", "axi_bits", "desc_max",
            "pwl_max", "stages_max")
    return f"hardware {hw.name}: " + ", ".join(f"{k}={getattr(hw, k)}" for k in keys) + \
        f", clock_mhz={hw.clock_mhz:g}; ident 0x{hw.ident():08x}"


def regmap_json(hw: HardwareConfig) -> str:
    rm = regmap(hw)
    doc = {
        "regmap_version": REGMAP_VERSION, "magic": ID_MAGIC, "data_bits": DATA_BITS, "addr_bits": ADDR_BITS,
        "size": rm.size, "unmapped": UNMAPPED, "hardware": hw.as_dict(), "hw_ident": hw.ident(),
        "errors": {str(c): {"name": n, "doc": d} for c, (n, d) in isa.ERRORS.items()},
        "error_index_header": ERROR_INDEX_HEADER,
        "registers": [{"name": r.name, "offset": r.offset, "access": r.access, "reset": r.reset, "doc": r.doc,
                       "fields": [{"name": f.name, "lsb": f.lsb, "bits": f.bits, "doc": f.doc,
                                   **({"value": f.const} if f.const is not None else {})} for f in r.fields]}
                      for r in rm],
    }
    return json.dumps(doc, indent=1) + "\n"


def _define(name: str, value: str) -> str:
    return f"#define {name:<40} {value}"


def c_header(hw: HardwareConfig) -> str:
    rm = regmap(hw)
    out = ["/* SPViT accelerator control/status registers (generated by rtl_gen/host/regmap.py; do not edit).",
           f" * {_hw_line(hw)}",
           " * 32-bit registers on an AXI4-Lite slave; offsets in bytes from the slave's base address.",
           f" * {UNMAPPED}. */",
           "#ifndef SPVIT_REGS_H", "#define SPVIT_REGS_H", "",
           _define("SPVIT_REGMAP_VERSION", f"{REGMAP_VERSION}u"), _define("SPVIT_MAGIC", f"0x{ID_MAGIC:08x}u"),
           _define("SPVIT_REGMAP_SIZE", f"0x{rm.size:x}u"), _define("SPVIT_NUM_REGS", f"{len(rm)}u"),
_define("SPVIT_STAGES_MAX", f"{hw.stages_max}u"),
           _define("SPVIT_ERROR_INDEX_HEADER", f"0x{ERROR_INDEX_HEADER:08x}u"), ""]
    for c, (n, doc) in isa.ERRORS.items():
        out.append(_define(f"SPVIT_ERR_{n}", f"{c}u") + f"  /* {doc} */")
    assert list(isa.ERRORS) == list(range(len(isa.ERRORS)))
    out += ["", "/* name and meaning of each ERROR_CODE value, indexed by the code (as golden/isa.py words them) */",
            _define("SPVIT_NUM_ERRORS", f"{len(isa.ERRORS)}u"),
            _define("SPVIT_ERROR_NAMES", "{" + ", ".join(json.dumps(n) for n, _ in isa.ERRORS.values()) + "}"),
            _define("SPVIT_ERROR_TEXTS", "{" + ", ".join(json.dumps(d) for _, d in isa.ERRORS.values()) + "}")]
    for r in rm:
        out += ["", f"/* {r.name} ({r.access}): {r.doc} */", _define(f"SPVIT_{r.name}_OFFSET", f"0x{r.offset:03x}u")]
        if r.is_const:
            out.append(_define(f"SPVIT_{r.name}_VALUE", f"0x{r.reset:08x}u"))
        for f in r.fields:
            out += [_define(f"SPVIT_{r.name}_{f.name}_SHIFT", f"{f.lsb}u"),
                    _define(f"SPVIT_{r.name}_{f.name}_MASK", f"0x{f.mask:08x}u") + f"  /* {f.span} {f.doc} */"]
    out += ["", "/* KEPTi for i < SPVIT_STAGES_MAX */",
            _define("SPVIT_KEPT_OFFSET(i)", "(SPVIT_KEPT0_OFFSET + 4u * (unsigned)(i))"), "",
            "#endif /* SPVIT_REGS_H */", ""]
    return "\n".join(out)


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def field_cell(f: Field) -> str:
    value = f" = {f.const:#x}" if f.const is not None else ""
    return f"{f.name} {f.span}{value}"


def markdown(hw: HardwareConfig) -> str:
    rm = regmap(hw)
    out = [f"# SPViT accelerator registers (register map version {REGMAP_VERSION})", "",
           f"Generated by rtl_gen/host/regmap.py for {_hw_line(hw)}.", "",
           f"32-bit registers on the AXI4-Lite slave `s_axil` ({rm.size} byte window); {UNMAPPED}. "
           "Reserved bits read 0 and ignore writes. Byte strobes (WSTRB) select the bytes a write changes.", "",
           *(f"- {k}: {v}" for k, v in ACCESS.items()), "",
           "| Offset | Name | Access | Fields | Description |", "|---|---|---|---|---|"]
    for r in rm:
        fields = "<br>".join(_md(f"{field_cell(f)}: {f.doc}") for f in r.fields)
        out.append(f"| 0x{r.offset:03x} | {r.name} | {r.access} | {fields} | {_md(r.doc)} |")
    out += ["", "A 64-bit cycle count: read CYCLES_LO, then CYCLES_HI (the high word latched by that read).", "",
            "## Error codes (ERROR_CODE)", "", "| Code | Name | Meaning |", "|---|---|---|"]
    out += [f"| {c} | {n} | {_md(doc)} |" for c, (n, doc) in isa.ERRORS.items()]
    return "\n".join(out) + "\n"


def regmap_files(hw: HardwareConfig, stem: str = "spvit_regs") -> dict[str, str]:
    """The register map's files: <stem>.json, <stem>.h and <stem>.md -> their text."""
    return {f"{stem}.json": regmap_json(hw), f"{stem}.h": c_header(hw), f"{stem}.md": markdown(hw)}


def write_regmap(hw: HardwareConfig, out_dir: Path, stem: str = "spvit_regs") -> list[Path]:
    """regmap_files in out_dir (each written to a temp file, then renamed)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in regmap_files(hw, stem).items():
        path = out_dir / name
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        paths.append(path)
    return paths
