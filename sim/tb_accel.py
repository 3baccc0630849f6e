"""cocotb testbench of the whole accelerator (rtl_gen/top.py), run by sim.accel.run_accel.

DDR is cocotbext-axi's AxiRam (port 0 read + write, the other ports read only) over one shared
memory holding the compiled image at `base`; every AXI channel pauses at random (sim/pauses.py).
The host is an AxiLiteMaster: for each run it writes the run's input bytes into memory, programs
PROG_BASE and IRQ_ENABLE, writes START, waits for the interrupt (with a cycle timeout, so a hang
fails the test instead of blocking it), reads the status registers and the result region, and
clears the interrupt. The memory counts every byte read and written per region, so the harness
can check that the header, the program and the stream were each read exactly once and that
nothing outside the result region was written.

Spec (JSON, SPVIT_TB_VECTORS): {"image": path of the image bytes, "base": address, "mem_size",
"regs": {name: offset}, "stages": S, "regions": {name: [lo, hi)}, "results": [lo, hi),
"runs": [{"writes": [[offset, hex], ...], "timeout": cycles, "pokes": [[offset, hex], ...],
"poison": [[lo, hi], ...] (offsets from base: accesses answer SLVERR)}],
"pause": p, "seed": s, "watch": [[output, its channel's VALID or null], ...] (4-state simulators)}
Result (SPVIT_TB_RESULTS): {"runs": [{"status", "error_code", "error_index", "cycles", "kept",
"results" (hex of the result region), "reads": {region: bytes}, "writes_outside": n,
"irq_cycle", "wall_s"}]}; a run stopped by an undefined output is {"undefined": {"output",
"value", "cycle", "descriptor"}} and the last entry.

Undefined outputs (Icarus): from reset on, every output in "watch" is checked at each falling
clock edge, half a cycle before the DDR model or the host would sample it: a VALID, READY,
irq or dbg_op always, a payload while its channel's VALID is high. The first X or Z ends the
simulation there, with the results so far (cocotbext-axi would otherwise stop it with "Can't
convert LogicArray to int" and no hint of where the value came from).
"""
from __future__ import annotations

import random
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Edge, FallingEdge, First, RisingEdge, Timer
from cocotb.utils import get_sim_time
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam, AxiReadBus
from cocotbext.axi.axi_ram import AxiRamRead

from sim.pauses import axi_channels, pause_channels
from sim.tb_io import tb_results, tb_spec

PERIOD_NS = 10


class CountingMemory(bytearray):
    """The shared DDR: counts bytes read and written per region; an access overlapping a
    `poison` range raises, which AxiRam answers with SLVERR (AXI error tests)."""

    def __init__(self, size: int, regions: dict, results):
        super().__init__(size)
        self.regions = {k: tuple(v) for k, v in regions.items()}
        self.results = tuple(results)
        self.counting = False
        self.poison: list = []
        self.reset_counts()

    def _check(self, key):
        lo, hi = self._span(key)
        if any(a < hi and lo < b for a, b in self.poison):
            raise OSError(f"poisoned access {lo:#x}..{hi:#x}")

    def reset_counts(self):
        self.reads = {k: 0 for k in self.regions}
        self.writes_outside = 0

    def _span(self, key):
        return (key.start, key.stop) if isinstance(key, slice) else (key, key + 1)

    def __getitem__(self, key):
        self._check(key)
        if self.counting:
            lo, hi = self._span(key)
            for k, (a, b) in self.regions.items():
                self.reads[k] += max(0, min(hi, b) - max(lo, a))
        return super().__getitem__(key)

    def __setitem__(self, key, value):
        self._check(key)
        if self.counting:
            lo, hi = self._span(key)
            a, b = self.results
            self.writes_outside += (hi - lo) - max(0, min(hi, b) - max(lo, a))
        super().__setitem__(key, value)


class AccelTB:
    def __init__(self, dut, spec: dict):
        self.dut, self.spec = dut, spec
        self.rng = random.Random(spec.get("seed", 0))
        p = float(spec.get("pause", 0.0))
        base = spec["base"]
        regions = {k: (base + lo, base + hi) for k, (lo, hi) in spec["regions"].items()}
        res = (base + spec["results"][0], base + spec["results"][1])
        self.mem = CountingMemory(spec["mem_size"], regions, res)
        if "image" in spec:                     # (the board driver's bench loads its images itself)
            image = open(spec["image"], "rb").read()
            self.mem[base:base + len(image)] = image
        cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
        ports = spec["ports"]
        self.rams = [AxiRam(AxiBus.from_prefix(dut, "m_axi0", bus_separator="__"), dut.clk, dut.rst, mem=self.mem)]
        self.rams += [AxiRamRead(AxiReadBus.from_prefix(dut, f"m_axi{i}", bus_separator="__"), dut.clk, dut.rst,
                                 mem=self.mem) for i in range(1, ports)]
        for r in self.rams:
            pause_channels(axi_channels(r, getattr(r, "read_if", None), getattr(r, "write_if", None)), self.rng, p,
                           PERIOD_NS)
        self.host = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil", bus_separator="__"), dut.clk, dut.rst)
        pause_channels(axi_channels(self.host.write_if, self.host.read_if), self.rng, p, PERIOD_NS)
        self.regs = spec["regs"]
        self.runs: list = []                    # finished runs (the results written at the end)
        self.started = 0.0                      # sim time (ns) of the current run's START

    async def watch_undefined(self, watch: list) -> None:
        """Stop the simulation at the first undefined output (module docstring)."""
        dut = self.dut
        ports = [(name, getattr(dut, name), getattr(dut, valid) if valid else None) for name, valid in watch]
        while True:
            await FallingEdge(dut.clk)
            for name, handle, valid in ports:
                if valid is not None:
                    v = valid.value
                    if not v.is_resolvable or not int(v):       # an undefined VALID is reported itself
                        continue
                value = handle.value
                if not value.is_resolvable:
                    op = dut.dbg_op.value
                    self.runs.append({"undefined": {
                        "output": name, "value": str(value),
                        "cycle": int((get_sim_time("ns") - self.started) // PERIOD_NS),
                        "descriptor": int(op) - 1 if op.is_resolvable and int(op) else None}})
                    tb_results({"runs": self.runs})
                    cocotb.end_test(f"undefined value on output {name}")

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 4)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 2)

    async def rd(self, name):
        return int.from_bytes((await self.host.read(self.regs[name], 4)).data, "little")

    async def wr(self, name, value):
        await self.host.write(self.regs[name], int(value).to_bytes(4, "little"))

    async def watch_ops(self):
        """(descriptor index, first cycle, last cycle) of every operation, from dbg_op edges."""
        t0 = get_sim_time("ns")
        while True:
            await Edge(self.dut.dbg_op)
            v = int(self.dut.dbg_op.value)
            now = (get_sim_time("ns") - t0) // PERIOD_NS
            if self.ops and self.ops[-1][2] is None:
                self.ops[-1][2] = now
            if v:
                self.ops.append([v - 1, now, None])

    async def run_one(self, run: dict) -> dict:
        base = self.spec["base"]
        for off, hexdata in run.get("writes", []):
            b = bytes.fromhex(hexdata)
            self.mem[base + off:base + off + len(b)] = b
        saved = []
        for off, hexdata in run.get("pokes", []):             # corrupt the program for this run only
            b = bytes.fromhex(hexdata)
            saved.append((off, bytes(self.mem[base + off:base + off + len(b)])))
            self.mem[base + off:base + off + len(b)] = b
        lo, hi = self.spec["results"]
        self.mem.poison = []
        self.mem[base + lo:base + hi] = bytes(hi - lo)
        self.mem.poison = [(base + a, base + b) for a, b in run.get("poison", [])]
        self.mem.reset_counts()
        self.mem.counting = True
        await self.wr("PROG_BASE_LO", base & 0xFFFFFFFF)
        await self.wr("PROG_BASE_HI", base >> 32)
        await self.wr("IRQ_ENABLE", 1)
        t0 = time.perf_counter()
        self.started = get_sim_time("ns")
        await self.wr("CTRL", 1)
        timeout = int(run.get("timeout", 5_000_000))
        self.ops = []
        watch = cocotb.start_soon(self.watch_ops()) if run.get("ops") else None
        got = await First(RisingEdge(self.dut.irq), ClockCycles(self.dut.clk, timeout))
        if watch is not None:
            watch.cancel()
        hung = not (int(self.dut.irq.value) == 1)
        wall = time.perf_counter() - t0
        self.mem.counting = False
        self.mem.poison = []
        out = {"hung": hung, "wall_s": wall, "status": await self.rd("STATUS"),
               "error_code": await self.rd("ERROR_CODE"), "error_index": await self.rd("ERROR_INDEX"),
               "cycles": (await self.rd("CYCLES_LO")) | ((await self.rd("CYCLES_HI")) << 32),
               "kept": [await self.rd(f"KEPT{s}") for s in range(self.spec["stages"])],
               "results": bytes(self.mem[base + lo:base + hi]).hex(), "reads": dict(self.mem.reads),
               "writes_outside": self.mem.writes_outside, "ops": self.ops}
        await self.wr("IRQ_STATUS", 1)
        for off, b in saved:
            self.mem[base + off:base + off + len(b)] = b
        del got
        return out


@cocotb.test()
async def accel_test(dut):
    spec = tb_spec()
    tb = AccelTB(dut, spec)
    await tb.reset()
    if spec.get("watch"):
        cocotb.start_soon(tb.watch_undefined(spec["watch"]))
    for run in spec["runs"]:
        tb.runs.append(await tb.run_one(run))
        if tb.runs[-1]["hung"]:
            break
        await Timer(5 * PERIOD_NS, unit="ns")
    tb_results({"runs": tb.runs})
