"""The board driver on the simulated RTL: one simulation of the generated top (the same Verilator
build as sim.accel's runs of that hardware) in which the driver (driver/) and the C example run
the steps of sim/tb_board.py.

    res = run_board_bench(hw, [{"kind": "set", "image": IMG_DIR, "inputs": SET_DIR, "timeout_s": 1.0}])
    res["steps"][0]["lines"]        # what `python -m driver` prints on the board
"""
from __future__ import annotations

from base import settings
from rtl_gen.host.regmap import write_regmap
from rtl_gen.top import Accelerator, module_name

from .runner import run_bench

BUFFER_BASE = 0x137000           # where the simulated DDR's first buffer starts (4 KB aligned, like a CMA page)
MEM_SIZE = 1 << 24


def run_board_bench(hw, steps: list, *, pause: float = 0.1, seed: int = 0, sim: str | None = None,
                    tag: str = "board") -> dict:
    work = settings.BUILD.resolve() / "sim" / "board" / hw.name
    regmap_json = write_regmap(hw, work)[0]
    spec = {"regmap": str(regmap_json), "base": BUFFER_BASE, "mem_size": MEM_SIZE, "ports": hw.axi_ports,
            "pause": pause, "seed": seed, "steps": steps}
    return run_bench(Accelerator(hw), module_name(hw), "sim.tb_board", spec, seed=seed,
                     sim=sim or settings.SIM_ENGINE, tag=tag)
