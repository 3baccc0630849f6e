"""The board driver's Device (driver/device.py) on the simulated RTL: register access through the
bench's AxiLiteMaster on s_axil, device memory in the AxiRam that models DDR (a bump allocator
from a 4 KB-aligned base), the interrupt line `irq`, simulated time as the clock. The driver is
synchronous code; it runs in a thread started with cocotb's `bridge`, and every method here
hands its bus work back to the simulator with `resume` (cocotb 2.x), so the same driver code runs
here and on the board.

    dev = SimDevice(tb, base=0x137000)           # tb: sim.tb_accel.AccelTB (clock, DDR, host, pauses)
    out = await bridge(run_driver)(dev)          # run_driver uses driver.Accelerator(dev, regs)
"""
from __future__ import annotations

from cocotb.task import resume
from cocotb.triggers import First, RisingEdge, Timer
from cocotb.utils import get_sim_time

from driver.device import Buffer, Device

PAGE = 4096


class SimBuffer(Buffer):
    """The host's accesses go to the memory directly: the bench's access counting (sim.tb_accel's
    CountingMemory) sees only the accelerator's."""

    def __init__(self, mem: bytearray, physical_address: int, size: int):
        self.mem, self.physical_address, self.size = mem, physical_address, size

    def write(self, offset: int, data: bytes) -> None:
        assert 0 <= offset and offset + len(data) <= self.size, (offset, len(data), self.size)
        a = self.physical_address + offset
        bytearray.__setitem__(self.mem, slice(a, a + len(data)), bytes(data))

    def read(self, offset: int, nbytes: int) -> bytes:
        assert 0 <= offset and offset + nbytes <= self.size, (offset, nbytes, self.size)
        a = self.physical_address + offset
        return bytes(bytearray.__getitem__(self.mem, slice(a, a + nbytes)))


class SimDevice(Device):
    def __init__(self, tb, base: int):
        self.tb, self.next_free = tb, base

    async def _read32(self, offset: int) -> int:
        return int.from_bytes((await self.tb.host.read(offset, 4)).data, "little")

    async def _write32(self, offset: int, value: int) -> None:
        await self.tb.host.write(offset, int(value).to_bytes(4, "little"))

    async def _wait_interrupt(self, timeout_s: float) -> bool:
        irq = self.tb.dut.irq
        if not int(irq.value):
            await First(RisingEdge(irq), Timer(max(1, round(timeout_s * 1e9)), unit="ns"))
        return bool(int(irq.value))

    async def _now(self) -> float:
        return get_sim_time("ns") * 1e-9

    def read32(self, offset: int) -> int:
        return resume(self._read32)(offset)

    def write32(self, offset: int, value: int) -> None:
        resume(self._write32)(offset, value)

    def allocate(self, nbytes: int) -> Buffer:
        base = self.next_free
        if base + nbytes > len(self.tb.mem):
            raise MemoryError(f"simulated DDR ({len(self.tb.mem)} bytes) has no room for {nbytes} more bytes")
        self.next_free = base + nbytes + (-nbytes % PAGE)
        return SimBuffer(self.tb.mem, base, nbytes)

    def wait_interrupt(self, timeout_s: float) -> bool:
        return resume(self._wait_interrupt)(timeout_s)

    def now(self) -> float:
        return resume(self._now)()
