"""cocotb bench of rtl_gen.host.csr.Csr (run by tests/sim/test_csr.py through sim.runner.run_bench,
never by hand). cocotbext-axi's AxiLiteMaster is the host, with random pauses (sim/pauses.py) on all
five AXI channels and random gaps between transactions; `Core` plays the run controller
(busy, finish, error code/index, live counters) from per-run plans the tests queue.

A monitor checks on every cycle: BVALID/BRESP and RVALID/RDATA/RRESP are held until accepted,
`start` is never high two cycles in a row and only comes for a planned run; it also records in
which order AW and W were accepted (both orders and the same cycle must all occur).

Spec (SPVIT_TB_VECTORS): {"hw": HardwareConfig fields, "seed": n, "pause": p}. Results
(SPVIT_TB_RESULTS): per cocotb test, counters of what was exercised.
"""
from __future__ import annotations

import random
from collections import Counter, deque

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge
from cocotbext.axi import AxiLiteBus, AxiLiteMaster, AxiResp

from golden import isa
from golden.hw import HardwareConfig
from rtl_gen.host.regmap import ERROR_INDEX_HEADER, ID_MAGIC, REGMAP_VERSION, regmap
from sim.pauses import axi_channels, pause_channels
from sim.tb_io import tb_results, tb_spec

PERIOD_NS = 10
RESULTS: dict = {}
CONFIG_ATTRS = ("mac_rows", "mac_cols", "n_max", "d_max", "hidden_max", "axi_ports", "axi_bits", "stages_max",
                "desc_max", "pwl_max")


def _int(handle) -> int:
    v = handle.value
    return int(v) if v.is_resolvable else 0


class Core:
    """The run controller's side: reacts to each `start` pulse with the next queued plan."""

    def __init__(self, tb):
        self.tb, self.dut = tb, tb.dut
        self.plans: deque = deque()
        self.runs: list[dict] = []          # start/finish periods and prog_base of every run

    def plan(self, length: int | None = None, until=None, code: int = 0, index: int = 0, busy_lag: int = 1,
             linger: int = 0):
        """The next run ends after `length` cycles (1: in the start cycle itself), or in the first
        cycle in which `until()` is true at the falling edge; the core's busy rises `busy_lag`
        cycles after start and falls `linger` cycles after finish."""
        self.plans.append(dict(length=length, until=until, code=code, index=index, busy_lag=busy_lag,
                               linger=linger))

    async def wait_done(self, n_runs: int):
        while len(self.runs) < n_runs or "finish" not in self.runs[n_runs - 1] or int(self.dut.core__busy.value):
            await RisingEdge(self.dut.clk)
        await RisingEdge(self.dut.clk)

    async def run(self):
        d, run = self.dut, None
        while True:
            await FallingEdge(d.clk)
            k = self.tb.cycle
            if self.tb.starts and self.tb.starts[-1] == k:
                assert run is None or "finish" in run, f"start in period {k} during a run"
                assert self.plans, f"unplanned start pulse in period {k}"
                run = dict(self.plans.popleft(), start=k, prog_base=int(d.core__prog_base.value))
                self.runs.append(run)
            d.core__finish.value = 0
            if run is None:
                continue
            if "finish" not in run and (run["until"]() if run["until"] else k == run["start"] + run["length"] - 1):
                d.core__finish.value = 1
                d.core__error_code.value = run["code"]
                d.core__error_index.value = run["index"]
                run["finish"] = k
            d.core__busy.value = int(run["start"] + run["busy_lag"] <= k <= run.get("finish", k) + run["linger"])


class CsrTB:
    def __init__(self, dut):
        spec = tb_spec()
        self.dut = dut
        self.hw = HardwareConfig(**spec["hw"])
        self.rm = regmap(self.hw)
        self.rng = random.Random(spec["seed"] * 1000 + len(RESULTS))
        self.pause = float(spec.get("pause", 0.3))
        self.stats = Counter()
        self.cycle = 0
        self.starts: list[int] = []
        self.core = Core(self)

    async def reset(self):
        d = self.dut
        cocotb.start_soon(Clock(d.clk, PERIOD_NS, unit="ns").start())
        for name in ("busy", "finish", "error_code", "error_index", "desc_index", "tokens", "kept"):
            getattr(d, f"core__{name}").value = 0
        d.rst.value = 1
        self.axi = AxiLiteMaster(AxiLiteBus.from_prefix(d, "s_axil", bus_separator="__"), d.clk, d.rst)
        pause_channels(axi_channels(self.axi.write_if, self.axi.read_if), self.rng, self.pause, PERIOD_NS)
        await ClockCycles(d.clk, 3)
        d.rst.value = 0
        cocotb.start_soon(self.monitor())
        cocotb.start_soon(self.core.run())
        await ClockCycles(d.clk, 2)

    # ------------------------------------------------------------ host accesses
    def off(self, reg) -> int:
        return self.rm[reg].offset if isinstance(reg, str) else reg

    async def gap(self):
        await ClockCycles(self.dut.clk, self.rng.choice((0, 0, 1, 2, 5)))

    async def read(self, reg, nbytes: int = 4) -> int:
        await self.gap()
        r = await self.axi.read(self.off(reg), nbytes)
        assert r.resp == AxiResp.OKAY, f"read {reg}: {r.resp}"
        self.stats["reads"] += 1
        return int.from_bytes(r.data, "little")

    async def write(self, reg, value: int, nbytes: int = 4):
        await self.gap()
        r = await self.axi.write(self.off(reg), int(value).to_bytes(nbytes, "little"))
        assert r.resp == AxiResp.OKAY, f"write {reg}: {r.resp}"
        self.stats["writes"] += 1

    async def field(self, reg: str, name: str) -> int:
        f = self.rm[reg].field(name)
        return (await self.read(reg) >> f.lsb) & ((1 << f.bits) - 1)

    async def snapshot(self) -> dict:
        return {r.name: await self.read(r.name) for r in self.rm}

    # ------------------------------------------------------------ protocol monitor
    async def monitor(self):
        d, prev = self.dut, None
        aw, w = deque(), deque()
        names = ("awvalid", "awready", "wvalid", "wready", "bvalid", "bready", "bresp",
                 "arvalid", "arready", "rvalid", "rready", "rdata", "rresp")
        while True:
            await RisingEdge(d.clk)
            await ReadOnly()
            self.cycle += 1
            s = {n: _int(getattr(d, f"s_axil__{n}")) for n in names}
            s["start"] = _int(d.core__start)
            if prev is not None:
                if prev["bvalid"] and not prev["bready"]:
                    assert s["bvalid"] and s["bresp"] == prev["bresp"], f"B dropped or changed in period {self.cycle}"
                if prev["rvalid"] and not prev["rready"]:
                    assert s["rvalid"] and (s["rdata"], s["rresp"]) == (prev["rdata"], prev["rresp"]), \
                        f"R dropped or changed in period {self.cycle}"
                assert not (s["start"] and prev["start"]), f"start longer than one cycle in period {self.cycle}"
            if s["start"]:
                self.starts.append(self.cycle)
            if s["awvalid"] and s["awready"]:
                aw.append(self.cycle)
            if s["wvalid"] and s["wready"]:
                w.append(self.cycle)
            while aw and w:
                a, b = aw.popleft(), w.popleft()
                self.stats["aw_first" if a < b else "w_first" if b < a else "aw_w_together"] += 1
            prev = s

    def finish(self, name: str):
        RESULTS[name] = dict(self.stats, starts=len(self.starts), runs=len(self.core.runs))
        tb_results(RESULTS)


async def _tb(dut) -> CsrTB:
    tb = CsrTB(dut)
    await tb.reset()
    return tb


@cocotb.test()
async def identity_and_reset_values(dut):
    """Every register: constants equal the configuration, everything else 0 after reset, live
    fields follow the core's inputs."""
    tb = await _tb(dut)
    hw, rm = tb.hw, tb.rm
    kept = [tb.rng.randrange(hw.n_max + 1) for _ in range(hw.stages_max)]
    desc, tokens = tb.rng.randrange(hw.desc_max), tb.rng.randrange(hw.n_max + 1)
    await FallingEdge(dut.clk)
    dut.core__desc_index.value, dut.core__tokens.value = desc, tokens
    dut.core__kept.value = sum(v << (i * hw.n_max.bit_length()) for i, v in enumerate(kept))
    got = await tb.snapshot()
    assert got["ID"] == ID_MAGIC == 0x53505641, hex(got["ID"])
    assert got["VERSION"] == isa.VERSION | REGMAP_VERSION << 16, hex(got["VERSION"])
    assert got["HW_IDENT"] == hw.ident(), hex(got["HW_IDENT"])
    seen = set()
    for r in rm:
        if r.name.startswith("CONFIG"):
            for f in r.fields:
                value = (got[r.name] >> f.lsb) & ((1 << f.bits) - 1)
                assert value == getattr(hw, f.name.lower()), f"{r.name}.{f.name} = {value}"
                seen.add(f.name.lower())
    assert seen == set(CONFIG_ATTRS), seen
    live = {"DESC_INDEX": desc, "TOKENS": tokens, **{f"KEPT{i}": v for i, v in enumerate(kept)}}
    for r in rm:
        if not r.is_const:
            assert got[r.name] == live.get(r.name, 0), f"{r.name} = {got[r.name]:#x} after reset"
    assert int(dut.irq.value) == 0 and int(dut.core__prog_base.value) == 0
    assert await tb.read("PROG_BASE_LO", 8) == 0
    tb.finish("identity_and_reset_values")


@cocotb.test()
async def writes_rw_ro_and_unmapped(dut):
    """RW registers hold what was written (byte strobes honoured, reserved bits 0); writes to RO
    registers, to CTRL without START and to unmapped offsets change nothing; unmapped offsets
    read 0 with OKAY; reads and writes in flight at once do not disturb each other."""
    tb = await _tb(dut)
    rm = tb.rm
    for _ in range(3):
        lo, hi = tb.rng.getrandbits(32), tb.rng.getrandbits(32)
        await tb.write("PROG_BASE_LO", lo)
        await tb.write("PROG_BASE_HI", hi)
        assert (await tb.read("PROG_BASE_LO"), await tb.read("PROG_BASE_HI")) == (lo, hi)
        assert int(dut.core__prog_base.value) == hi << 32 | lo
    await tb.write(rm["PROG_BASE_LO"].offset + 2, 0xA5, nbytes=1)        # one byte lane
    assert await tb.read("PROG_BASE_LO") == (lo & ~0x00FF0000) | 0x00A50000
    await tb.write("PROG_BASE_LO", 0x0123456789ABCDEF, nbytes=8)         # 64-bit: two beats
    assert await tb.read("PROG_BASE_LO", 8) == 0x0123456789ABCDEF
    await tb.write("IRQ_ENABLE", 0xFFFFFFFF)
    assert await tb.read("IRQ_ENABLE") == 1
    await tb.write("IRQ_ENABLE", 0xFFFFFFFE)
    assert await tb.read("IRQ_ENABLE") == 0
    await tb.write("IRQ_STATUS", 0xFFFFFFFF)                             # W1C on a clear bit
    assert await tb.read("IRQ_STATUS") == 0

    before = await tb.snapshot()
    for r in rm:
        if r.access == "RO":
            await tb.write(r.name, tb.rng.getrandbits(32))
    await tb.write("CTRL", 0xFFFFFFFE)                                   # reserved bits, no START
    unmapped = [4 * len(rm), 4 * len(rm) + 4, rm.size - 4, 4 * tb.rng.randrange(len(rm) + 2, rm.size // 4)]
    for off in unmapped:
        assert await tb.read(off) == 0, f"unmapped {off:#x}"
        await tb.write(off, tb.rng.getrandbits(32) | 1)
        tb.stats["unmapped"] += 1
    assert await tb.snapshot() == before
    assert not tb.starts, f"start pulses {tb.starts} without a START write"

    # a write stream and a read stream in flight together
    values = [tb.rng.getrandbits(32) for _ in range(12)]
    writes = [tb.axi.init_write(rm["PROG_BASE_HI"].offset, v.to_bytes(4, "little")) for v in values]
    reads = [(name, tb.axi.init_read(rm[name].offset, 4))
             for name in tb.rng.choices([r.name for r in rm if r.is_const], k=12)]
    for e in writes:
        await e.wait()
        assert e.data.resp == AxiResp.OKAY
    for name, e in reads:
        await e.wait()
        assert int.from_bytes(e.data.data, "little") == before[name], name
    assert await tb.read("PROG_BASE_HI") == values[-1]
    tb.finish("writes_rw_ro_and_unmapped")


@cocotb.test()
async def runs_status_and_irq(dut):
    """START pulses `start` once with PROG_BASE on the core port; STATUS, ERROR_*, IRQ_STATUS
    and `irq` through runs with and without errors; START while busy and with START = 0 ignored;
    W1C of IRQ_STATUS, with a set in the same cycle winning."""
    tb = await _tb(dut)
    core = tb.core
    base = tb.rng.getrandbits(64)
    await tb.write("PROG_BASE_LO", base & 0xFFFFFFFF)
    await tb.write("PROG_BASE_HI", base >> 32)
    await tb.write("IRQ_ENABLE", 1)

    # run 1: OK, long enough to poke at it while busy; the core stays busy after finish
    core.plan(length=400, busy_lag=150, linger=300)
    await tb.write("CTRL", 1)
    assert len(tb.starts) == 1 and core.runs[0]["prog_base"] == base
    assert await tb.read("STATUS") == 0b001                       # busy before the core's busy rises
    assert not int(dut.core__busy.value), "the core's busy rose before the check"
    c1 = await tb.read("CYCLES_LO")
    await tb.write("CTRL", 1)                                     # ignored: busy
    c2 = await tb.read("CYCLES_LO")
    assert 0 < c1 < c2 < 400, (c1, c2)
    while "finish" not in core.runs[0]:
        await RisingEdge(dut.clk)
    await tb.write("CTRL", 1)                                     # ignored: the core is still busy
    assert int(dut.core__busy.value), "the core's busy ended before the check"
    assert await tb.read("STATUS") == 0b011                       # busy (core) and done
    await core.wait_done(1)
    assert len(tb.starts) == 1, tb.starts
    assert await tb.read("STATUS") == 0b010
    assert await tb.read("CYCLES_LO") == 400 and await tb.read("CYCLES_HI") == 0
    assert (await tb.read("ERROR_CODE"), await tb.read("ERROR_INDEX")) == (0, 0)
    assert await tb.read("IRQ_STATUS") == 1 and int(dut.irq.value) == 1
    await tb.write("IRQ_STATUS", 0)                               # writing 0 leaves it
    assert await tb.read("IRQ_STATUS") == 1
    await tb.write("IRQ_STATUS", 1)
    assert await tb.read("IRQ_STATUS") == 0 and int(dut.irq.value) == 0

    # run 2: descriptor error, interrupt disabled; START clears DONE; error visible after
    await tb.write("IRQ_ENABLE", 0)
    core.plan(length=120, code=isa.ERROR_CODES["BAD_SHAPE"], index=7)
    await tb.write("CTRL", 1)
    assert await tb.read("STATUS") == 0b001
    await core.wait_done(2)
    assert await tb.read("STATUS") == 0b110
    assert (await tb.read("ERROR_CODE"), await tb.read("ERROR_INDEX")) == (isa.ERROR_CODES["BAD_SHAPE"], 7)
    assert await tb.read("IRQ_STATUS") == 1 and int(dut.irq.value) == 0
    await tb.write("IRQ_ENABLE", 1)
    assert int(dut.irq.value) == 1

    # run 3: header error; ERROR_* read 0 during the run; finish lands in the cycle of a W1C
    # write that clears IRQ_STATUS: the set wins
    await tb.write("IRQ_STATUS", 1)
    armed = []
    core.plan(until=lambda: bool(armed) and bool(int(dut.wr_irq_status.value)),
              code=isa.ERROR_CODES["HW_MISMATCH"], index=ERROR_INDEX_HEADER)
    await tb.write("CTRL", 1)
    assert (await tb.read("ERROR_CODE"), await tb.read("ERROR_INDEX"), await tb.read("STATUS")) == (0, 0, 0b001)
    armed.append(1)                            # finish in the cycle in which this W1C write acts
    await tb.write("IRQ_STATUS", 1)
    await core.wait_done(3)
    assert await tb.read("IRQ_STATUS") == 1, "a W1C in the set cycle lost the interrupt"
    assert await tb.read("STATUS") == 0b110
    assert (await tb.read("ERROR_CODE"), await tb.read("ERROR_INDEX")) == (2, ERROR_INDEX_HEADER)

    # run 4: a one-cycle run, START clears the error; OK
    core.plan(length=1)
    await tb.write("CTRL", 1)
    await core.wait_done(4)
    assert await tb.read("STATUS") == 0b010 and await tb.read("CYCLES_LO") == 1
    assert len(tb.starts) == 4
    tb.finish("runs_status_and_irq")


@cocotb.test()
async def cycle_counter_latch(dut):
    """CYCLES_HI returns the high word latched by the last CYCLES_LO read, so LO-then-HI is a
    consistent 64-bit value even when the counter carries into bit 32 between the two reads."""
    tb = await _tb(dut)
    core, d = tb.core, dut
    end = []
    core.plan(until=lambda: bool(end) and tb.cycle == end[0])
    await tb.write("CTRL", 1)
    straddled = 0
    for k in range(1, 60):
        await FallingEdge(d.clk)
        lo_before = (1 << 32) - k                                 # k cycles before the carry
        d.cycles.value = lo_before
        if k % 2:                                                 # one 8-byte read: two beats, LO first
            value = await tb.read("CYCLES_LO", 8)
        else:
            value = await tb.read("CYCLES_LO")
            value |= await tb.read("CYCLES_HI") << 32
        await ReadOnly()
        now = int(d.cycles.value)
        assert lo_before <= value <= now, f"k={k}: read {value:#x} outside [{lo_before:#x}, {now:#x}]"
        straddled += value < 1 << 32 <= now
    assert straddled >= 3, f"only {straddled} reads straddled the carry"
    tb.stats["straddled"] = straddled
    # the count carries through bit 32 and freezes at the end of the run
    await FallingEdge(d.clk)
    v = (1 << 32) - 5
    d.cycles.value = v
    end.append(tb.cycle + 20)                                     # finish 20 cycles later
    await core.wait_done(1)
    want = v + 21
    assert await tb.read("CYCLES_LO", 8) == want
    await ClockCycles(d.clk, 10)
    assert await tb.read("CYCLES_LO") == want & 0xFFFFFFFF and await tb.read("CYCLES_HI") == want >> 32
    tb.finish("cycle_counter_latch")
