"""Generic cocotb testbench for stream components (run by sim.runner, never by hand).

`StreamTB` drives every input stream from a vector file, takes every output stream with random
valid/ready stalls (each port its own pause process, sim/pauses.py), counts clock cycles, and
writes what it saw to a result file. Payloads are the flat integers of the Verilog ports
(sim.payload packs and unpacks them); the golden model and the exact comparison live on the
pytest side (sim.runner.run_stream, golden.compare.assert_exact).

Vector file (JSON, path in SPVIT_TB_VECTORS):
  {"inputs": {"i_x": [raw, ...]}, "outputs": {"o_y": count}, "static": {"n": 5},
   "stall": 0.3, "port_stall": {"i_x": 0.9}, "seed": 1, "timeout": cycles, "drain": cycles}
   (port_stall: per-port stall probabilities; drain: optional, see StreamTB.drain)
Result file (SPVIT_TB_RESULTS): {"outputs": {"o_y": [raw, ...]}, "cycles": n,
   "first_in": c, "last_out": c}
"""
from __future__ import annotations

import random
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from sim.pauses import child, pause_cycles
from sim.tb_io import tb_results, tb_spec


class StreamTB:
    def __init__(self, dut, spec: dict):
        self.dut = dut
        self.spec = spec
        rng = random.Random(spec.get("seed", 0))
        stall = float(spec.get("stall", 0.0))
        port_stall = {k: float(v) for k, v in spec.get("port_stall", {}).items()}   # per-port override
        self.ins = {k: list(v) for k, v in spec["inputs"].items()}
        self.pos = {k: 0 for k in self.ins}
        self.want = dict(spec["outputs"])
        # each port stalls (input: valid low, output: ready low) by its own pause process
        self.stalls = {k: pause_cycles(child(rng), port_stall.get(k, stall)) for k in [*self.ins, *self.want]}
        self.got = {k: [] for k in self.want}
        self.port = lambda name, member: getattr(dut, f"{name}__{member}")

    def done(self) -> bool:
        return all(len(self.got[k]) >= n for k, n in self.want.items())

    async def reset(self):
        cocotb.start_soon(Clock(self.dut.clk, 10, unit="ns").start())
        for name, value in self.spec.get("static", {}).items():
            getattr(self.dut, name).value = int(value)
        for k in self.ins:
            self.port(k, "valid").value = 0
            self.port(k, "payload").value = 0
        for k in self.want:
            self.port(k, "ready").value = 0
        self.dut.rst.value = 1
        for _ in range(2):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0

    async def run(self) -> dict:
        await self.reset()
        t0 = time.perf_counter()
        timeout = int(self.spec.get("timeout", 1_000_000))
        cycle, first_in, last_out = 0, None, None
        while not self.done():
            await FallingEdge(self.dut.clk)
            for k, vec in self.ins.items():                 # drive inputs, maybe stall
                i = self.pos[k]
                go = i < len(vec) and not next(self.stalls[k])
                self.port(k, "valid").value = int(go)
                if go:
                    self.port(k, "payload").value = vec[i]
            for k in self.want:
                self.port(k, "ready").value = int(not next(self.stalls[k]))
            await ReadOnly()                                 # settled: these transfer at the edge
            for k in self.ins:
                if int(self.port(k, "valid").value) and int(self.port(k, "ready").value):
                    self.pos[k] += 1
                    first_in = cycle if first_in is None else first_in
            for k in self.want:
                if int(self.port(k, "valid").value) and int(self.port(k, "ready").value):
                    self.got[k].append(int(self.port(k, "payload").value))
                    last_out = cycle
            cycle += 1
            if cycle > timeout:
                raise AssertionError(f"timeout after {cycle} cycles: consumed "
                                     f"{self.pos}, produced { {k: len(v) for k, v in self.got.items()} }")
        await RisingEdge(self.dut.clk)
        extra = await self.drain(int(self.spec.get("drain", 0)))
        return {"outputs": self.got, "cycles": cycle, "first_in": first_in, "last_out": last_out,
                "consumed": self.pos, "extra": extra, "wall_s": time.perf_counter() - t0}

    async def drain(self, cycles: int) -> dict:
        """After the wanted outputs: `cycles` more cycles with every output ready and no input
        valid; returns the number of further output beats per port (nothing extra: all 0)."""
        extra = {k: 0 for k in self.want}
        for _ in range(cycles):
            await FallingEdge(self.dut.clk)
            for k in self.ins:
                self.port(k, "valid").value = 0
            for k in self.want:
                self.port(k, "ready").value = 1
            await ReadOnly()
            for k in self.want:
                extra[k] += int(self.port(k, "valid").value)
        if cycles:
            await RisingEdge(self.dut.clk)
        return extra


@cocotb.test()
async def stream_test(dut):
    spec = tb_spec()
    res = await StreamTB(dut, spec).run()
    tb_results(res)
