"""A board directory (`spvit board --out DIR`) as the driver reads it: manifest.json (hardware,
part, clock, the CSR base the generator asked for), spvit_regs.json (the register map) and,
once build.tcl has run in Vivado, address_map.json (the addresses Vivado assigned) and
spvit.bit / spvit.hwh.

    board = BoardDir("build/board")
    acc = board.open_pynq()                     # on the ZCU102: Overlay, MMIO at the assigned CSR base
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from base.errors import UsageError

from .accelerator import Accelerator
from .pynq_device import PynqDevice
from .regs import RegisterMap

BOARD_FORMAT = "spvit-board"
_SIZE = re.compile(r"^(0x[0-9a-fA-F]+|\d+)\s*([KMGT]?)$")


def parse_size(text) -> int:
    """An address or size as Vivado prints it: 0x00A0000000, 4096, 4K, 2G."""
    m = _SIZE.match(str(text).strip())
    if not m:
        raise ValueError(f"not an address or size: {text!r}")
    return int(m.group(1), 0) << (10 * " KMGT".index(m.group(2) or " "))


class BoardDir:
    def __init__(self, path):
        self.path = Path(path)
        try:
            self.manifest = json.loads((self.path / "manifest.json").read_text())
        except (OSError, ValueError) as e:
            raise UsageError(f"{str(path)!r} is not a board directory ({e}); "
                             f"write one with spvit board --out DIR") from None
        if self.manifest.get("format") != BOARD_FORMAT:
            raise UsageError(f"{str(path)!r} is not a board directory (its manifest format is "
                             f"{self.manifest.get('format')!r}); write one with spvit board --out DIR")
        self.regs = RegisterMap.load(self.path / "spvit_regs.json")
        self.address_map = self._address_map()

    def _address_map(self) -> dict | None:
        p = self.path / "address_map.json"
        if not p.exists():
            return None
        try:
            doc = json.loads(p.read_text())
            csr = doc["csr"]
            return {"csr_base": parse_size(csr["offset"]), "csr_range": parse_size(csr["range"]), **doc}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UsageError(f"{p} is malformed ({e}); run build.tcl again") from None

    @property
    def bitstream(self) -> Path:
        return self.path / "spvit.bit"

    @property
    def address_bits(self) -> int:
        return int(self.manifest["address_bits"])

    def open_pynq(self, *, download: bool = True, poll_s: float | None = None) -> Accelerator:
        """The accelerator on this ZCU102 (PYNQ): programs the bitstream unless download=False."""
        am = self.address_map or {}
        device = PynqDevice(self.bitstream, self.manifest["cell"], am.get("csr_base"), am.get("csr_range"),
                            download=download, address_bits=self.address_bits)
        return Accelerator(device, self.regs, **({} if poll_s is None else {"poll_s": poll_s}))
