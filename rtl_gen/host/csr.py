"""The accelerator's control/status registers behind an AXI4-Lite slave.

    csr = Csr(hw)          # ports: s_axil (AXI4-Lite slave), core (to the run controller), irq

Everything register-specific (addresses, field positions, access kinds, constant values) comes
from the one table in rtl_gen/host/regmap.py; this module only says where each non-constant field's
value comes from, and elaboration fails if that does not match the table exactly.

AXI4-Lite (`AxilBridge`): AW and W are taken in either order or together, each into its own
holding register; the write happens once both are held and no write response is pending, then
BVALID is held until BREADY. AR is held likewise; RDATA is registered and held with RVALID until
RREADY. Every READY is a register output (never a function of a VALID in the same cycle). One
read and one write can be in flight at once; responses are always OKAY (unmapped offsets read 0
and ignore writes: rtl_gen.host.regmap.UNMAPPED). Byte strobes select the bytes a write changes.

Core side: `core_port(hw)`, whose directions are the CSR block's (it has `Out(core_port(hw))`);
the run controller has `In(core_port(hw))`, the same signature flipped, so rtl_gen/top.py joins
the two with `connect()`:
    start       Out  one-cycle pulse: run the program at prog_base (only while not busy)
    prog_base   Out  64-bit program address (PROG_BASE_HI:LO); sample it at start
    busy        In   the core is not idle (it may lag start and may outlast finish)
    finish      In   one-cycle pulse at the end of a run, error or not
    error_code  In   golden.isa.ERRORS code, sampled in the finish cycle (0 = OK)
    error_index In   descriptor index of the error (0xFFFFFFFF: header), sampled with finish
    desc_index  In   descriptor being executed (read live; n_desc after the last one: NO_END)
    tokens      In   the token-count register N (read live)
    kept        In   kept patch tokens of each selector stage (read live; the core clears them at start)
The run's cycle count is kept here: the CSR block is the one place that sees both the start
pulse and the finish pulse. CYCLES counts the cycles from the one in which `start` is high
through the one in which `finish` is high.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, Value, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden import isa
from golden.hw import HardwareConfig

from .regmap import ADDR_BITS, DATA_BITS, RegMap, regmap

OKAY = 0


def axi_lite(addr_bits: int = ADDR_BITS, data_bits: int = DATA_BITS) -> wiring.Signature:
    """AXI4-Lite, as the master sees it (a slave port is In(axi_lite(...)))."""
    return wiring.Signature({
        "awaddr": Out(addr_bits), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
        "wdata": Out(data_bits), "wstrb": Out(data_bits // 8), "wvalid": Out(1), "wready": In(1),
        "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        "araddr": Out(addr_bits), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
        "rdata": In(data_bits), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
    })


def reg_bus(addr_bits: int = ADDR_BITS, data_bits: int = DATA_BITS) -> wiring.Signature:
    """Register-file access, as the bridge sees it: a write per w_en cycle; a read per r_en cycle,
    r_data (combinational from r_addr) taken in that cycle. Addresses count 32-bit words."""
    return wiring.Signature({
        "w_en": Out(1), "w_addr": Out(addr_bits - 2), "w_data": Out(data_bits), "w_strb": Out(data_bits // 8),
        "r_en": Out(1), "r_addr": Out(addr_bits - 2), "r_data": In(data_bits),
    })


def core_port(hw: HardwareConfig) -> wiring.Signature:
    """CSR block <-> run controller, directions as the CSR block sees them (module docstring)."""
    count = Shape.cast(range(hw.n_max + 1))
    return wiring.Signature({
        "start": Out(1), "prog_base": Out(64),
        "busy": In(1), "finish": In(1), "error_code": In(range(max(isa.ERRORS) + 1)), "error_index": In(32),
        "desc_index": In(range(hw.desc_max + 1)), "tokens": In(count),
        "kept": In(data.ArrayLayout(unsigned(count.width), hw.stages_max)),
    })


class AxilBridge(wiring.Component):
    """AXI4-Lite slave -> reg_bus (module docstring)."""

    def __init__(self, addr_bits: int = ADDR_BITS):
        self.addr_bits = addr_bits
        super().__init__({"s_axil": In(axi_lite(addr_bits)), "bus": Out(reg_bus(addr_bits))})

    def elaborate(self, platform):
        m = Module()
        self._write(m, self.s_axil, self.bus)
        self._read(m, self.s_axil, self.bus)
        return m

    def _write(self, m, a, bus):
        aw_full, w_full = Signal(), Signal()
        addr = Signal(self.addr_bits - 2)
        m.d.comb += [a.awready.eq(~aw_full), a.wready.eq(~w_full), a.bresp.eq(OKAY)]
        with m.If(a.awvalid & a.awready):
            m.d.sync += [aw_full.eq(1), addr.eq(a.awaddr[2:])]
        with m.If(a.wvalid & a.wready):
            m.d.sync += [w_full.eq(1), bus.w_data.eq(a.wdata), bus.w_strb.eq(a.wstrb)]
        go = aw_full & w_full & ~a.bvalid
        m.d.comb += [bus.w_en.eq(go), bus.w_addr.eq(addr)]
        with m.If(go):
            m.d.sync += [aw_full.eq(0), w_full.eq(0), a.bvalid.eq(1)]
        with m.If(a.bvalid & a.bready):
            m.d.sync += a.bvalid.eq(0)

    def _read(self, m, a, bus):
        ar_full = Signal()
        addr = Signal(self.addr_bits - 2)
        m.d.comb += [a.arready.eq(~ar_full), a.rresp.eq(OKAY)]
        with m.If(a.arvalid & a.arready):
            m.d.sync += [ar_full.eq(1), addr.eq(a.araddr[2:])]
        go = ar_full & ~a.rvalid
        m.d.comb += [bus.r_en.eq(go), bus.r_addr.eq(addr)]
        with m.If(go):
            m.d.sync += [ar_full.eq(0), a.rvalid.eq(1), a.rdata.eq(bus.r_data)]
        with m.If(a.rvalid & a.rready):
            m.d.sync += a.rvalid.eq(0)


class Csr(wiring.Component):
    def __init__(self, hw: HardwareConfig):
        self.hw = hw
        self.map: RegMap = regmap(hw)
        super().__init__({"s_axil": In(axi_lite(ADDR_BITS)), "core": Out(core_port(hw)), "irq": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.axil = bridge = AxilBridge(ADDR_BITS)
        wiring.connect(m, wiring.flipped(self.s_axil), bridge.s_axil)
        bus = bridge.bus
        strobe = Signal(DATA_BITS)
        m.d.comb += strobe.eq(Cat(s.replicate(8) for s in bus.w_strb))
        wr = {r.name: self._hit(m, bus.w_en, bus.w_addr, r, "wr") for r in self.map if r.access != "RO"}
        read_lo = self._hit(m, bus.r_en, bus.r_addr, self.map["CYCLES_LO"], "rd")
        wdata = bus.w_data & strobe
        store = {r.name: Signal(DATA_BITS, name=r.name.lower()) for r in self.map if r.access in ("RW", "W1C")}
        actions = {f"{r.name}.{f.name}": wr[r.name] & wdata[f.lsb:f.lsb + f.bits].any()
                   for r in self.map if r.access == "WO" for f in r.fields}
        live, sets = self._run(m, actions.pop("CTRL.START"), read_lo)
        assert not actions, f"write actions without logic: {sorted(actions)}"
        self._storage(m, store, wr, wdata, strobe, sets)
        self._read_mux(m, bus, store, live)
        m.d.comb += [self.core.prog_base.eq(Cat(store["PROG_BASE_LO"], store["PROG_BASE_HI"])),
                     self.irq.eq(self._bit(store, "IRQ_ENABLE", "DONE") & self._bit(store, "IRQ_STATUS", "DONE"))]
        return m

    @staticmethod
    def _hit(m, en, addr, r, prefix):
        hit = Signal(name=f"{prefix}_{r.name.lower()}")
        m.d.comb += hit.eq(en & (addr == r.offset // 4))
        return hit

    def _bit(self, store, reg, field):
        return store[reg][self.map[reg].field(field).lsb]

    def _run(self, m, start_cmd, read_lo):
        """Run state: START, busy/done, error capture, the cycle counter and its high-word latch.
        Returns the values of the RO fields (`live`) and the set pulses of the W1C fields."""
        c = self.core
        running, done, busy = Signal(), Signal(), Signal()
        code, index = Signal.like(c.error_code, name="err_code"), Signal(32, name="err_index")
        cycles, hi = Signal(64, name="cycles"), Signal(32, name="cycles_hi")
        m.d.comb += busy.eq(running | c.busy)
        go = start_cmd & ~busy
        m.d.sync += c.start.eq(go)
        with m.If(go):
            m.d.sync += [running.eq(1), done.eq(0), code.eq(0), index.eq(0), cycles.eq(0)]
        with m.Elif(running):
            m.d.sync += cycles.eq(cycles + 1)
            with m.If(c.finish):
                m.d.sync += [running.eq(0), done.eq(1), code.eq(c.error_code), index.eq(c.error_index)]
        with m.If(read_lo):
            m.d.sync += hi.eq(cycles[32:])
        live = {"STATUS.BUSY": busy, "STATUS.DONE": done, "STATUS.ERROR": code != 0, "ERROR_CODE.CODE": code,
                "ERROR_INDEX.INDEX": index, "CYCLES_LO.COUNT": cycles[:32], "CYCLES_HI.COUNT": hi,
                "DESC_INDEX.INDEX": c.desc_index, "TOKENS.N": c.tokens,
                **{f"KEPT{i}.COUNT": c.kept[i] for i in range(self.hw.stages_max)}}
        return live, {"IRQ_STATUS.DONE": running & c.finish}

    def _storage(self, m, store, wr, wdata, strobe, sets):
        """RW: the strobed bytes of the field bits take the written value. W1C: written ones clear;
        a set pulse in the same cycle wins. Reserved bits stay 0. (wdata: already strobed)"""
        need = {f"{r.name}.{f.name}" for r in self.map if r.access == "W1C" for f in r.fields}
        assert set(sets) == need, f"W1C set pulses {sorted(sets)} != table {sorted(need)}"
        for r in self.map:
            s = store.get(r.name)
            if r.access == "RW":
                bits = strobe & r.mask
                with m.If(wr[r.name]):
                    m.d.sync += s.eq((s & ~bits) | (wdata & r.mask))
            elif r.access == "W1C":
                setv = 0
                for f in r.fields:
                    setv = setv | (sets[f"{r.name}.{f.name}"] << f.lsb)
                clr = Mux(wr[r.name], wdata & r.mask, 0)
                m.d.sync += s.eq((s & ~clr) | setv)

    def _read_mux(self, m, bus, store, live):
        need = {f"{r.name}.{f.name}" for r in self.map if r.access == "RO" for f in r.fields if f.const is None}
        assert set(live) == need, f"RO field sources {sorted(live)} != table {sorted(need)}"
        with m.Switch(bus.r_addr):
            for r in self.map:
                with m.Case(r.offset // 4):
                    m.d.comb += bus.r_data.eq(self._word(r, store, live))
            with m.Default():
                m.d.comb += bus.r_data.eq(0)

    def _word(self, r, store, live):
        """The read value of register r: its fields at their bit positions, reserved bits 0."""
        if r.access in ("RW", "W1C"):
            return store[r.name]
        parts, at = [], 0
        for f in sorted(r.fields, key=lambda f: f.lsb) if r.access == "RO" else ():
            v = Const(f.const, f.bits) if f.const is not None else Value.cast(live[f"{r.name}.{f.name}"])
            assert len(v) <= f.bits, f"{r.name}.{f.name}: a {len(v)}-bit value in a {f.bits}-bit field"
            parts += [Const(0, f.lsb - at), v, Const(0, f.bits - len(v))]
            at = f.lsb + f.bits
        return Cat(*parts, Const(0, DATA_BITS - at))        # WO: reads as 0
