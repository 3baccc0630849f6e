"""The accelerator's registers as the driver sees them: read from the register map JSON that the
generator writes next to the Verilog (spvit_regs.json, from rtl_gen/host/regmap.py, the one
register table). No offset or field position is typed here.

    regs = RegisterMap.load("board/spvit_regs.json")
    regs.offset("CTRL")                         # 0x20
    regs.field("STATUS", "DONE").get(word)      # 0 or 1
    regs.field("CTRL", "START").word(1)         # the word that sets START
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from base.errors import UsageError
from golden import isa

REGMAP_VERSIONS = (1,)          # register map versions this driver knows


@dataclass(frozen=True)
class Field:
    register: str
    name: str
    lsb: int
    bits: int

    @property
    def mask(self) -> int:
        return ((1 << self.bits) - 1) << self.lsb

    def get(self, word: int) -> int:
        return (word & self.mask) >> self.lsb

    def word(self, value: int) -> int:
        assert 0 <= value < 1 << self.bits, f"{self.register}.{self.name} = {value} does not fit {self.bits} bits"
        return value << self.lsb


class RegisterMap:
    def __init__(self, doc: dict, source: str = "register map"):
        try:
            version = doc["regmap_version"]
            regs = doc["registers"]
            self.offsets = {r["name"]: int(r["offset"]) for r in regs}
            self.fields = {(r["name"], f["name"]): Field(r["name"], f["name"], int(f["lsb"]), int(f["bits"]))
                           for r in regs for f in r["fields"]}
            self.values = {(r["name"], f["name"]): f["value"] for r in regs for f in r["fields"] if "value" in f}
            self.magic, self.hw_ident, self.size = int(doc["magic"]), int(doc["hw_ident"]), int(doc["size"])
            self.hardware = dict(doc["hardware"])
            errors = {int(c): (e["name"], e["doc"]) for c, e in doc["errors"].items()}
            self.header_index = int(doc["error_index_header"])
        except (KeyError, TypeError, ValueError) as e:
            raise UsageError(f"{source} is not a register map written by spvit ({e!r} missing or malformed); "
                             f"regenerate it with spvit board or spvit generate") from None
        if version not in REGMAP_VERSIONS:
            raise UsageError(f"{source} has register map version {version}; this driver knows "
                             f"{', '.join(map(str, REGMAP_VERSIONS))}: use the driver of the same spvit release")
        if errors != isa.ERRORS:
            raise UsageError(f"{source} lists other error codes than this driver's golden/isa.py: use the driver "
                             f"of the same spvit release as the hardware")

    @classmethod
    def load(cls, path) -> "RegisterMap":
        try:
            doc = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read the register map {str(path)!r} ({e}); it is spvit_regs.json of the board "
                             f"directory (spvit board --out DIR)") from None
        return cls(doc, repr(str(path)))

    def offset(self, register: str) -> int:
        return self.offsets[register]

    def field(self, register: str, name: str) -> Field:
        return self.fields[(register, name)]

    def value(self, register: str, name: str) -> int:
        """The constant value of an identity or configuration field (ID.MAGIC, HW_IDENT.IDENT, ...)."""
        return self.values[(register, name)]

    @property
    def stages_max(self) -> int:
        return int(self.hardware["stages_max"])

    def error_index(self, word: int) -> int:
        """ERROR_INDEX as the interpreter numbers it: -1 for header errors."""
        return -1 if word == self.header_index else word
