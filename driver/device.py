"""The one interface between the driver and a device: register access on the CSR window, device
memory the accelerator reads and writes, the interrupt line and a clock. Two implementations:

    driver.pynq_device.PynqDevice   a ZCU102 running PYNQ (MMIO, allocate)
    sim.board_device.SimDevice      the RTL in cocotb (AxiLiteMaster on s_axil, AxiRam as DDR)

so the same driver code (driver/accelerator.py) runs on the board and on the simulated RTL.
"""
from __future__ import annotations

from abc import ABC, abstractmethod


class Buffer(ABC):
    """Physically contiguous device memory (DDR the accelerator's AXI masters reach)."""
    physical_address: int
    size: int

    @abstractmethod
    def write(self, offset: int, data: bytes) -> None: ...

    @abstractmethod
    def read(self, offset: int, nbytes: int) -> bytes: ...

    def sync_to_device(self) -> None:
        """Make the CPU's writes visible to the accelerator (flush caches; no-op if uncached)."""

    def sync_from_device(self) -> None:
        """Make the accelerator's writes visible to the CPU (invalidate caches; no-op if uncached)."""

    def free(self) -> None:
        """Release the memory."""


class Device(ABC):
    address_bits: int = 64          # bits of a DDR address the accelerator's masters can drive

    @abstractmethod
    def read32(self, offset: int) -> int:
        """The 32-bit register at byte `offset` of the CSR window."""

    @abstractmethod
    def write32(self, offset: int, value: int) -> None: ...

    @abstractmethod
    def allocate(self, nbytes: int) -> Buffer: ...

    @abstractmethod
    def wait_interrupt(self, timeout_s: float) -> bool:
        """Return once the interrupt line is high (True) or after at most timeout_s (False).
        A device without interrupt delivery just waits and returns False: the driver polls."""

    @abstractmethod
    def now(self) -> float:
        """Seconds on the device's clock (wall time on a board, simulated time in simulation)."""
