"""The host driver of the SPViT accelerator: importable without torch and without Amaranth (it
runs on a PYNQ board), depending only on base/, the torch-free golden modules (program format,
image loading, result decoding) and the board directory's register map JSON.

    from driver import Accelerator, BoardDir
    acc = BoardDir("board").open_pynq()          # the ZCU102 (PYNQ)
    acc.load("mini_digits.img"); r = acc.run(x)  # r.results.logits / .kept / .masks, r.cycles

Devices (driver/device.py): PynqDevice here, sim.board_device.SimDevice for the RTL in cocotb.
"""
from .accelerator import Accelerator, AcceleratorBusy, AcceleratorTimeout, RunResult  # noqa: F401
from .board import BoardDir, parse_size  # noqa: F401
from .device import Buffer, Device  # noqa: F401
from .inputs import InputSet, load_inputs  # noqa: F401
from .pynq_device import PynqDevice  # noqa: F401
from .regs import RegisterMap  # noqa: F401
