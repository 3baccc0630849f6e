"""The board target: a ZCU102 (XCZU9EG Zynq UltraScale+ MPSoC). Every PS-side name the generated
TCL uses (IP, pins, configuration parameters) and every limit of the PS ports lives here.

The accelerator's AXI4 masters go to the PS's S_AXI_HP0..3_FPD ports (non-coherent, 32/64/128
bits, 49-bit addresses), its AXI4-Lite CSR slave behind M_AXI_HPM0_FPD (whose window starts at
0xA000_0000), its clock is pl_clk0, its reset comes from pl_resetn0 through a proc_sys_reset, its
interrupt goes to pl_ps_irq0 (GIC SPI 89, interrupt ID 121).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from base.errors import ConfigError
from golden.hw import HardwareConfig

PART = "xczu9eg-ffvb1156-2-e"
BOARD_PATTERN = "*zcu102*"        # board part xilinx.com:zcu102:part0:<version> when the board files are installed
VIVADO_VERSIONS = "2022.2 to 2024.1"   # the command syntax build.tcl and package_ip.tcl are written against
HP_PORTS = 4
HP_DATA_BITS = (32, 64, 128)
HP_ADDR_BITS = 49
CELL = "spvit_0"                  # the accelerator's cell in the block design (PYNQ's ip_dict key)
CSR_BASE = 0xA000_0000            # the first address of the M_AXI_HPM0_FPD window
PS_IRQ = "pl_ps_irq0"
PS_IRQ_SPI = 89                   # device tree: interrupts = <0 89 4> (level high)


def hp_port(p: int) -> dict:
    """PS names of HP port p: the slave interface pin, its clock pin and its configuration
    parameters (HP0..HP3 are the PS's AXI slaves GP2..GP5)."""
    return {"pin": f"S_AXI_HP{p}_FPD", "clock": f"saxihp{p}_fpd_aclk", "enable": f"PSU__USE__S_AXI_GP{p + 2}",
            "width": f"PSU__SAXIGP{p + 2}__DATA_WIDTH"}


@dataclass(frozen=True)
class Board:
    """One board build: the hardware configuration (its clock_mhz is pl_clk0's frequency), the
    FPGA part and whether the ZCU102 board preset applies (only on the ZCU102's own part)."""
    hw: HardwareConfig
    part: str = PART

    @property
    def clock_hz(self) -> int:
        return round(self.hw.clock_mhz * 1e6)

    @property
    def board_pattern(self) -> str:
        return BOARD_PATTERN if self.part == PART else ""


def board(hw: HardwareConfig, part: str = PART, clock_mhz: float | None = None) -> Board:
    """A Board for `hw` on `part`; `clock_mhz` replaces hw.clock_mhz. Refuses what the ZynqMP
    PS cannot connect, naming the fix."""
    if clock_mhz is not None:
        hw = replace(hw, clock_mhz=clock_mhz)
    if hw.axi_ports > HP_PORTS:
        raise ConfigError(f"hardware {hw.name} has {hw.axi_ports} AXI ports, but the ZynqMP PS has {HP_PORTS} HP ports "
                          f"(S_AXI_HP0..3_FPD); use axi_ports <= {HP_PORTS}")
    if hw.axi_bits not in HP_DATA_BITS:
        raise ConfigError(f"hardware {hw.name} has {hw.axi_bits}-bit AXI ports, but the ZynqMP HP ports are at most "
                          f"{max(HP_DATA_BITS)} bits wide; use axi_bits = {max(HP_DATA_BITS)}")
    if not 10 <= hw.clock_mhz <= 500:
        raise ConfigError(f"clock {hw.clock_mhz:g} MHz is outside what pl_clk0 can be set to here (10..500 MHz); "
                          f"give --clock-mhz in that range")
    if not part.startswith("xczu") or any(c.isspace() or c in "{}[]\\\"$;" for c in part):
        raise ConfigError(f"--part {part!r} is not a Zynq UltraScale+ MPSoC part (the design needs its PS); give one "
                          f"such as {PART}")
    return Board(hw, part)
