"""The host driver: a compiled DDR image (`spvit compile`) on the accelerator through a Device
(driver/device.py), with every register offset from the register map (driver/regs.py).

    acc = Accelerator(device, RegisterMap.load("board/spvit_regs.json"))
    acc.load("build/mini_digits.img")              # image -> device memory
    r = acc.run(x)                                 # int16 image [C, H, W] in the model's input format
    r.results.logits, r.results.kept, r.results.masks, r.cycles, r.kept_regs

A run: the input goes into the image's input region and the result region is cleared, then
PROG_BASE := the buffer's physical address, IRQ_ENABLE := DONE, CTRL := START; the driver waits
for STATUS.DONE (woken by the interrupt where the device delivers it, else polling) with a
timeout, clears IRQ_STATUS, and decodes ERROR_CODE / ERROR_INDEX into golden.isa.ProgramError:
the same exception and message the golden interpreter raises for the same program.

Relocation: every address in an image is relative to the base written into PROG_BASE (the header's
offsets and every STORE's address; golden/compiler.py, docs/accelerator.md), so the image is
copied as it is; the only requirement on the buffer is its alignment (below).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from base.errors import UsageError
from golden import isa
from golden.compiler import ALIGN, Image
from golden.interp import Results, read_results

from .device import Buffer, Device
from .regs import RegisterMap

DEFAULT_TIMEOUT_S = 10.0
POLL_S = 1e-3


class AcceleratorTimeout(TimeoutError):
    """No end of the run within the timeout; the run may still be going on (wait() again)."""


class AcceleratorBusy(RuntimeError):
    """START while a run is going on (the hardware ignores it)."""


@dataclass
class RunResult:
    results: Results        # logits, kept counts, keep masks (golden.interp.read_results of the result region)
    cycles: int             # the CYCLES register: from START through the end of the run
    kept_regs: list         # KEPT0.. registers of the model's selector stages
    seconds: float          # device time from START to the driver seeing DONE


class Accelerator:
    def __init__(self, device: Device, regs: RegisterMap, *, poll_s: float = POLL_S):
        self.device, self.regs, self.poll_s = device, regs, poll_s
        self.image: Image | None = None
        self.buffer: Buffer | None = None
        self._t0 = 0.0
        self.check_identity()

    # ------------------------------------------------------------ registers by name
    def read(self, register: str) -> int:
        return self.device.read32(self.regs.offset(register))

    def write(self, register: str, value: int) -> None:
        self.device.write32(self.regs.offset(register), value)

    def get(self, register: str, field: str) -> int:
        return self.regs.field(register, field).get(self.read(register))

    def check_identity(self) -> None:
        """The CSR window holds this accelerator: magic, format versions and hardware ident."""
        checks = [("ID", "MAGIC"), ("VERSION", "PROGRAM"), ("VERSION", "REGMAP"), ("HW_IDENT", "IDENT")]
        for reg, field in checks:
            got, want = self.get(reg, field), self.regs.value(reg, field)
            if got != want:
                raise UsageError(f"{reg}.{field} reads {got:#x}, the register map says {want:#x}: the CSR window does "
                                 f"not hold the accelerator the register map describes (wrong bitstream, address or "
                                 f"board directory)")

    # ------------------------------------------------------------ image
    def load(self, image) -> Image:
        """Copy a compiled image (an Image or the directory `spvit compile` wrote) into device memory."""
        img = image if isinstance(image, Image) else Image.load(Path(image))
        if img.manifest["hw_ident"] != self.regs.hw_ident:
            raise UsageError(f"the image was compiled for hardware {img.hw.name} "
                             f"(ident {img.manifest['hw_ident']:#010x}), "
                             f"the accelerator is {self.regs.hardware['name']} (ident {self.regs.hw_ident:#010x}); "
                             f"compile it with --hw for this accelerator")
        if self.buffer is not None:
            self.buffer.free()
            self.buffer = None
        buf = self.device.allocate(len(img.data))
        base = buf.physical_address
        if base % ALIGN or base + len(img.data) > 1 << self.device.address_bits:
            buf.free()
            raise UsageError(f"device buffer at {base:#x} is not {ALIGN}-byte aligned or lies beyond the "
                             f"accelerator's {self.device.address_bits}-bit addresses; allocate it elsewhere")
        buf.write(0, img.data)
        buf.sync_to_device()
        self.image, self.buffer = img, buf
        return img

    # ------------------------------------------------------------ runs
    def start(self, x) -> None:
        """Place input x and start a run (returns at once; wait() for the result)."""
        img, buf = self.image, self.buffer
        if img is None:
            raise UsageError("no image loaded: call load(image) first")
        if self.get("STATUS", "BUSY"):
            raise AcceleratorBusy(f"the accelerator is busy (descriptor {self.read('DESC_INDEX')}): wait() for the "
                                  f"running program, or reload the bitstream to reset it")
        for offset, data in img.input_runs(x):
            buf.write(offset, data)
        lo, n = img.regions["results"]
        buf.write(lo, bytes(n))
        buf.sync_to_device()
        base = buf.physical_address
        self.write("IRQ_STATUS", self.regs.field("IRQ_STATUS", "DONE").word(1))
        self.write("PROG_BASE_LO", base & 0xFFFF_FFFF)
        self.write("PROG_BASE_HI", base >> 32)
        self.write("IRQ_ENABLE", self.regs.field("IRQ_ENABLE", "DONE").word(1))
        self._t0 = self.device.now()
        self.write("CTRL", self.regs.field("CTRL", "START").word(1))

    def wait(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> RunResult:
        """Wait for the end of the started run; its results, or ProgramError / AcceleratorTimeout."""
        dev = self.device
        deadline = dev.now() + timeout_s
        while not self.get("STATUS", "DONE"):
            left = deadline - dev.now()
            if left <= 0:
                cycles = self.read("CYCLES_LO") | self.read("CYCLES_HI") << 32
                raise AcceleratorTimeout(
                    f"no end of the run after {timeout_s:g} s: the accelerator is at descriptor "
                    f"{self.read('DESC_INDEX')} with {self.read('TOKENS')} tokens after {cycles:,} cycles; "
                    f"wait() again for it, or reload the bitstream to reset it")
            dev.wait_interrupt(min(left, self.poll_s))
        seconds = dev.now() - self._t0
        self.write("IRQ_STATUS", self.regs.field("IRQ_STATUS", "DONE").word(1))
        code = self.get("ERROR_CODE", "CODE")
        if code:
            name = isa.ERRORS[code][0] if code in isa.ERRORS else None
            index = self.regs.error_index(self.get("ERROR_INDEX", "INDEX"))
            if name is None:
                raise UsageError(f"ERROR_CODE reads {code}, which this driver does not know: use the driver of the "
                                 f"same spvit release as the hardware")
            raise isa.ProgramError(name, index)
        cycles = self.read("CYCLES_LO") | self.read("CYCLES_HI") << 32
        stages = self.image.manifest["stages"]
        kept_regs = [self.get(f"KEPT{s}", "COUNT") for s in range(stages)]
        lo, n = self.image.regions["results"]
        self.buffer.sync_from_device()
        region = self.buffer.read(lo, n)
        # read_results indexes the whole image; base=-lo maps image offsets onto the region's bytes
        return RunResult(read_results(self.image.manifest, region, base=-lo), cycles, kept_regs, seconds)

    def run(self, x, timeout_s: float = DEFAULT_TIMEOUT_S) -> RunResult:
        self.start(x)
        return self.wait(timeout_s)

    def run_many(self, xs, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[RunResult]:
        return [self.run(x, timeout_s) for x in xs]

    def close(self) -> None:
        if self.buffer is not None:
            self.buffer.free()
            self.buffer = None
