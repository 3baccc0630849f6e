"""cocotb testbench of the DMA (rtl_gen/host/dma.py) against cocotbext-axi's AxiRam (run by
tests/sim/test_dma.py through sim.runner.run_cocotb, never by hand).

Every AXI port gets an AxiRam model (port 0 read + write, ports 1.. read only) over ONE shared
memory (`FaultMemory`: a bytearray that answers accesses overlapping "poisoned" ranges with an
exception, which AxiRam reports as SLVERR on R or B). Every AXI channel pauses at random;
o_stream/o_fetch get random back-pressure and i_wdata random gaps (all sim/pauses.py). The
testbench only records what happened; tests/sim/test_dma.py compares it with golden.

Spec (JSON, SPVIT_TB_VECTORS):
  {"ports": P, "bits": W, "mem_size": bytes (a power of two; addresses wrap modulo it),
   "mem_seed": s (initial contents: numpy default_rng(s) bytes), "pause": p, "seed": s,
   "jobs": [job, ...]}
  job = {"read": {"addr", "length", "fetch", "stall", "abort_after" (beats, or -1),
                  "hold" (cycles of o_stream/o_fetch not ready at the start)} | null,
         "write": {"addr", "length", "data" (hex), "gap"} | null,
         "poison": [[lo, hi], ...] (physical byte ranges, during this job), "clear": bool,
         "readback": [lo, hi] | null, "timeout": cycles}
  or {"bench": {"addr", "length", "fetch"}}: one read job, ready held high, no per-cycle Python;
  reports cycles (command accepted -> done pulse), wall and CPU time (the simulator process) only;
  or {"idle": cycles}: clock the idle DUT for that many cycles (the simulator's own speed).
Result (SPVIT_TB_RESULTS): {"jobs": [per-job record, see Job.record]}.
"""
from __future__ import annotations

import random
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge, Timer
from cocotb.utils import get_sim_time
from cocotbext.axi import AxiBus, AxiRam, AxiReadBus
from cocotbext.axi.axi_ram import AxiRamRead

from sim.pauses import axi_channels, child, pause_channels, pause_cycles
from sim.tb_io import tb_results, tb_spec

PERIOD_NS = 10
QUIET = 40                       # cycles watched after a job ends for stray outputs


class FaultMemory(bytearray):
    """Shared memory of all AxiRam models; an access overlapping a poisoned range raises, so
    the model answers SLVERR (reads return zeros, writes are dropped)."""

    def __init__(self, size: int):
        super().__init__(size)
        self.poison: list[tuple[int, int]] = []

    def _check(self, key):
        if isinstance(key, slice) and any(lo < key.stop and key.start < hi for lo, hi in self.poison):
            raise OSError(f"poisoned access {key.start:#x}..{key.stop:#x}")

    def __getitem__(self, key):
        self._check(key)
        return super().__getitem__(key)

    def __setitem__(self, key, value):
        self._check(key)
        super().__setitem__(key, value)


class DmaTB:
    def __init__(self, dut, spec: dict):
        self.dut, self.spec = dut, spec
        self.P, self.W = spec["ports"], spec["bits"]
        self.rng = random.Random(spec.get("seed", 0))
        self.mem = FaultMemory(spec["mem_size"])
        self.mem[:] = np.random.default_rng(spec.get("mem_seed", 0)).integers(0, 256, spec["mem_size"],
                                                                              dtype=np.uint8).tobytes()
        self.port = lambda name, member: getattr(dut, f"{name}__{member}")
        cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
        ram0 = AxiRam(AxiBus.from_prefix(dut, "m_axi0", bus_separator="__"), dut.clk, dut.rst, mem=self.mem)
        self.reads = [ram0.read_if] + [
            AxiRamRead(AxiReadBus.from_prefix(dut, f"m_axi{p}", bus_separator="__"), dut.clk, dut.rst, mem=self.mem)
            for p in range(1, self.P)]
        self.write = ram0.write_if
        pause_channels(axi_channels(*self.reads, self.write), self.rng, spec.get("pause", 0.0), PERIOD_NS)

    async def reset(self):
        d = self.dut
        for s in ("rd_cmd__valid", "wr_cmd__valid", "i_wdata__valid", "status__rd_abort", "status__clear"):
            getattr(d, s).value = 0
        d.o_stream__ready.value = 0
        d.o_fetch__ready.value = 0
        d.rst.value = 1
        for _ in range(3):
            await RisingEdge(d.clk)
        d.rst.value = 0
        await RisingEdge(d.clk)

    def models_idle(self) -> bool:
        return all(r.ar_channel.empty() and r.r_channel.idle() for r in self.reads) and \
            self.write.aw_channel.empty() and self.write.w_channel.empty() and self.write.b_channel.idle()

    async def run(self) -> dict:
        await self.reset()
        out = []
        for job in self.spec["jobs"]:
            if "bench" in job:
                out.append(await self.bench(job["bench"]))
            elif "idle" in job:
                out.append(await self.idle(job["idle"]))
            else:
                out.append(await Job(self, job).run())
        return {"jobs": out}

    async def bench(self, b: dict) -> dict:
        """One read job with o_stream/o_fetch always ready and no Python per cycle: the speed of
        DUT + AxiRam models alone."""
        d = self.dut
        await FallingEdge(d.clk)
        d.o_stream__ready.value = d.o_fetch__ready.value = 1
        d.rd_cmd__payload.value = b["addr"] | b["length"] << 64 | int(b.get("fetch", 0)) << 96
        d.rd_cmd__valid.value = 1
        await RisingEdge(d.clk)
        t0, w0, c0 = get_sim_time("ns"), time.perf_counter(), time.process_time()
        await FallingEdge(d.clk)
        d.rd_cmd__valid.value = 0
        await RisingEdge(d.rd_done)
        t1, w1, c1 = get_sim_time("ns"), time.perf_counter(), time.process_time()
        await FallingEdge(d.clk)
        d.o_stream__ready.value = d.o_fetch__ready.value = 0
        return {"cycles": round((t1 - t0) / PERIOD_NS), "wall_s": w1 - w0, "cpu_s": c1 - c0}


    async def idle(self, cycles: int) -> dict:
        """Clock the idle DUT (models instantiated, no traffic) without Python per cycle: the
        simulator's own speed on this design."""
        w0, c0 = time.perf_counter(), time.process_time()
        await Timer(cycles * PERIOD_NS, unit="ns")
        return {"cycles": cycles, "wall_s": time.perf_counter() - w0, "cpu_s": time.process_time() - c0}


class Job:
    """One read and/or write job, clocked by one Python loop (drive at the falling edge, sample
    settled values in ReadOnly)."""

    def __init__(self, tb: DmaTB, job: dict):
        self.tb, self.job, self.d = tb, job, tb.dut
        self.rd, self.wr = job.get("read"), job.get("write")
        # o_stream / o_fetch not ready (stall) and i_wdata not valid (gap): the bench's pause process
        self.stalls = pause_cycles(child(tb.rng), self.rd.get("stall", 0.0)) if self.rd else None
        self.gaps = pause_cycles(child(tb.rng), self.wr.get("gap", 0.0)) if self.wr else None
        self.wbeats = []
        if self.wr:
            raw, b = bytes.fromhex(self.wr["data"]), tb.W // 8
            raw += bytes(-len(raw) % b)
            self.wbeats = [int.from_bytes(raw[i:i + b], "little") for i in range(0, len(raw), b)]
        self.rec = {"out": [], "ar": [], "aw": [], "r_beats": [0] * tb.P, "w_beats": 0, "b": 0, "rd_done": 0,
                    "drained": 0,
                    "max_fill": [0] * tb.P,
                    "wr_done": 0, "after_abort": 0, "extra": 0, "late_ar": 0, "late": 0, "timeout": False, "w_sent": 0}

    def drive(self, cyc: int) -> None:
        d, r, w = self.d, self.rd, self.wr
        if r:
            d.rd_cmd__valid.value = int(not self.rd_taken)
            if not self.rd_taken:
                d.rd_cmd__payload.value = r["addr"] | r["length"] << 64 | int(r["fetch"]) << 96
            rdy = int((self.ended or not next(self.stalls)) and cyc >= r.get("hold", 0))
            d.o_stream__ready.value = rdy
            d.o_fetch__ready.value = rdy
            d.status__rd_abort.value = int(not self.aborted and 0 <= r.get("abort_after", -1) <= len(self.rec["out"])
                                and self.rd_taken)
        if w:
            d.wr_cmd__valid.value = int(not self.wr_taken)
            if not self.wr_taken:
                d.wr_cmd__payload.value = w["addr"] | w["length"] << 64
            i = self.rec["w_sent"]
            go = i < len(self.wbeats) and not next(self.gaps)
            d.i_wdata__valid.value = int(go)
            if go:
                d.i_wdata__payload.value = self.wbeats[i]

    def sample(self) -> None:
        d, rec, P = self.d, self.rec, self.tb.P

        def fire(name):
            return int(self.tb.port(name, "valid").value) and int(self.tb.port(name, "ready").value)

        if self.rd:
            if not self.rd_taken and fire("rd_cmd"):
                self.rd_taken = True
            if int(d.status__rd_abort.value):
                self.aborted = True
            for name in ("o_stream", "o_fetch"):
                if fire(name):
                    if self.rd_ended:
                        rec["extra"] += 1
                    elif self.aborted and not int(d.status__rd_abort.value):
                        rec["after_abort"] += 1
                    else:
                        rec["out"].append(int(self.tb.port(name, "payload").value))
            rec["rd_done"] += int(d.rd_done.value)
        if self.wr:
            if not self.wr_taken and fire("wr_cmd"):
                self.wr_taken = True
            if fire("i_wdata"):
                rec["w_sent"] += 1
            rec["wr_done"] += int(d.wr_done.value)
        for p in range(P):
            ax = f"m_axi{p}"
            if int(self.tb.port(ax, "arvalid").value) and int(self.tb.port(ax, "arready").value):
                rec["ar"].append([p, int(self.tb.port(ax, "araddr").value), int(self.tb.port(ax, "arlen").value)])
                rec["late_ar"] += int(self.rd_ended)
            if int(self.tb.port(ax, "rvalid").value) and int(self.tb.port(ax, "rready").value):
                rec["r_beats"][p] += 1
                rec["drained"] += self.aborted
                rec["late"] += self.rd_ended
            if not self.aborted:
                rec["max_fill"][p] = max(rec["max_fill"][p], rec["r_beats"][p] - len(rec["out"]))
        if int(d.m_axi0__awvalid.value) and int(d.m_axi0__awready.value):
            rec["aw"].append([int(d.m_axi0__awaddr.value), int(d.m_axi0__awlen.value)])
        wr_ended = self.wr is None or rec["wr_done"] > 0
        if int(d.m_axi0__wvalid.value) and int(d.m_axi0__wready.value):
            rec["w_beats"] += 1
            rec["late"] += wr_ended
            rec.setdefault("wstrb", []).append(int(d.m_axi0__wstrb.value))
            rec.setdefault("wlast", []).append(int(d.m_axi0__wlast.value))
        if int(d.m_axi0__bvalid.value) and int(d.m_axi0__bready.value):
            rec["b"] += 1
            rec["late"] += wr_ended

    @property
    def rd_ended(self) -> bool:
        return self.rd is None or self.rec["rd_done"] > 0 or (self.aborted and self.idle_seen)

    @property
    def ended(self) -> bool:
        return self.rd_ended and (self.wr is None or self.rec["wr_done"] > 0)

    async def run(self) -> dict:
        tb, d, rec, job = self.tb, self.d, self.rec, self.job
        self.rd_taken = self.wr_taken = self.aborted = self.idle_seen = False
        tb.mem.poison = [tuple(r) for r in job.get("poison", [])]
        if job.get("clear"):
            await FallingEdge(d.clk)
            d.status__clear.value = 1
            await RisingEdge(d.clk)
            await FallingEdge(d.clk)
            d.status__clear.value = 0
        t0 = time.perf_counter()
        cyc, quiet, limit = 0, 0, job.get("timeout", 200_000)
        while quiet < QUIET:
            await FallingEdge(d.clk)
            self.drive(cyc)
            await ReadOnly()
            self.sample()
            self.idle_seen = self.idle_seen or (self.aborted and bool(int(d.status__rd_idle.value)))
            cyc += 1
            quiet += self.ended
            if cyc > limit:
                rec["timeout"] = True
                break
        await FallingEdge(d.clk)
        for s in ("rd_cmd__valid", "wr_cmd__valid", "i_wdata__valid", "status__rd_abort", "o_stream__ready",
                  "o_fetch__ready"):
            getattr(d, s).value = 0
        st = {k: int(getattr(d, f"status__{k}").value) for k in ("rd_idle", "wr_idle", "rd_error", "wr_error")}
        rec.update(cycles=cyc - QUIET, wall_s=time.perf_counter() - t0, **st,
                   models_idle=tb.models_idle())
        tb.mem.poison = []
        if job.get("readback"):
            lo, hi = job["readback"]
            rec["mem"] = bytes(tb.mem[lo:hi]).hex()
        return rec


@cocotb.test()
async def dma_test(dut):
    spec = tb_spec()
    res = await DmaTB(dut, spec).run()
    tb_results(res)
