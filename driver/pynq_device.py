"""The Device of a ZCU102 running a PYNQ image: the bitstream as a pynq.Overlay (spvit.bit with
spvit.hwh next to it, both written by build.tcl), the CSR window through pynq.MMIO, device memory
from pynq.allocate (physically contiguous, page aligned; flushed and invalidated around each run,
since the S_AXI_HP ports are not cache coherent). pynq is imported when a PynqDevice is made, so
the driver imports anywhere.

The interrupt (pl_ps_irq0) is not delivered to Python: PYNQ's Interrupt class needs an AXI
interrupt controller, which the block design does not have, so wait_interrupt() sleeps and the
driver polls STATUS (every millisecond by default). driver.c shows interrupt-driven waiting
through Linux UIO.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from base.errors import UsageError

from .device import Buffer, Device


def _pynq():
    try:
        import pynq
    except ImportError:
        raise UsageError("the pynq package is not installed: run this on a ZCU102 with a PYNQ image (or use driver.c "
                         "on PetaLinux, see the board directory's README.md)") from None
    return pynq


class PynqBuffer(Buffer):
    def __init__(self, array):
        self.array = array
        self.size = int(array.nbytes)
        self.physical_address = int(array.device_address)

    def write(self, offset: int, data: bytes) -> None:
        self.array[offset:offset + len(data)] = np.frombuffer(bytes(data), dtype=np.uint8)

    def read(self, offset: int, nbytes: int) -> bytes:
        return self.array[offset:offset + nbytes].tobytes()

    def sync_to_device(self) -> None:
        self.array.flush()

    def sync_from_device(self) -> None:
        self.array.invalidate()

    def free(self) -> None:
        self.array.freebuffer()


class PynqDevice(Device):
    def __init__(self, bitstream, cell: str, csr_base: int | None = None, csr_range: int | None = None, *,
                 download: bool = True, address_bits: int = 64):
        """`cell`: the accelerator's cell in the block design (the board manifest's "cell"); its
        CSR window from the overlay's ip_dict unless csr_base/csr_range (address_map.json) are given."""
        pynq = _pynq()
        bitstream = Path(bitstream)
        if not bitstream.is_file() or not bitstream.with_suffix(".hwh").is_file():
            raise UsageError(f"{bitstream} and {bitstream.with_suffix('.hwh')} are needed (build.tcl writes both into "
                             f"the board directory); run the Vivado build first")
        self._pynq = pynq
        self.overlay = pynq.Overlay(str(bitstream), download=download)
        if csr_base is None:
            ip = self.overlay.ip_dict.get(cell)
            if ip is None:
                cells = ", ".join(sorted(self.overlay.ip_dict))
                raise UsageError(f"the overlay has no cell {cell!r} (cells: {cells}); "
                                 f"use the bitstream build.tcl wrote")
            csr_base, csr_range = int(ip["phys_addr"]), int(ip["addr_range"])
        self.mmio = pynq.MMIO(csr_base, csr_range)
        self.address_bits = address_bits

    def read32(self, offset: int) -> int:
        return int(self.mmio.read(offset))

    def write32(self, offset: int, value: int) -> None:
        self.mmio.write(offset, int(value))

    def allocate(self, nbytes: int) -> Buffer:
        return PynqBuffer(self._pynq.allocate(shape=(nbytes,), dtype=np.uint8))

    def wait_interrupt(self, timeout_s: float) -> bool:
        time.sleep(timeout_s)
        return False

    def now(self) -> float:
        return time.monotonic()
