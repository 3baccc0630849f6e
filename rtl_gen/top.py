"""The accelerator: one top per hardware configuration (docs/accelerator.md).

    AXI4-Lite s_axil -> Csr -> Controller -> units          m_axi0 .. m_axi{P-1} <- Dma
                                  |    \\-> StreamLoader <- DMA stream (weights, tables, params, input)
                                  \\-> program memory (descriptors)

Ports: `s_axil` (AXI4-Lite slave, 32-bit; rtl_gen/host/regmap.py), `m_axi0` .. `m_axi{P-1}` (AXI4
masters of axi_bits; port 0 also writes), `irq`; clock `clk`, synchronous active-high `rst`;
`dbg_op`: the running descriptor's index + 1, 0 between operations (for cycle measurements;
leave unconnected on the board).
Every memory is a block RAM (rtl_gen/primitives/ram.py). One operation runs at a time; its unit owns the
buffer ports (selected by the opcode of the running descriptor).
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out, connect

from golden import isa
from golden.compiler import select_bytes
from golden.hw import HardwareConfig

from .array.unit import ArrayUnit
from .buffers.act_table import PwlTable
from .buffers.fabric import Buffers
from .buffers.load_store import LoadUnit, StoreUnit
from .buffers.ports import route
from .buffers.scores import ScoreBuffer
from .buffers.weight_ring import WeightRing
from .control.controller import Controller
from .control.decode import Opcode, common_view, desc_view
from .control.stream_loader import StreamLoader
from .host import axi
from .host.csr import ADDR_BITS, Csr, axi_lite
from .host.dma import Dma
from .norm.layernorm import LayerNormUnit
from .primitives.ram import Ram2
from .selector.compaction import Compaction
from .selector.decide import Decide
from .selector.gmean import GMean
from .selector.package import Package
from .selector.store import SelStore

UNITS = {"array": ("MATMUL", "ATTENTION"), "ln": ("LAYERNORM",), "gmean": ("GMEAN",), "decide": ("DECIDE",),
         "package": ("PACKAGE",), "compact": ("COMPACT", "COPY"), "load": ("LOAD",), "store": ("STORE",)}
# which unit port drives each buffer-fabric port, per unit (unit name -> its port's name)
FABRIC = {
    "ra": {"array": "ra", "ln": "ra", "gmean": "rd", "decide": "rd", "package": "rd", "compact": "rd", "store": "ra"},
    "rb": {"array": "rb"},
    "w": {"array": "w", "ln": "w", "gmean": "wr", "compact": "wr", "load": "w"},
    "kr": {"array": "kr"}, "kw": {"array": "kw"}, "vr": {"array": "vr"}, "vw": {"array": "vw"},
}


def module_name(hw: HardwareConfig) -> str:
    """The Verilog module name of the top for `hw` (spvit generate, the benches, the board wrapper)."""
    return f"spvit_accel_{hw.name}".replace("-", "_")


def components(hw: HardwareConfig) -> dict:
    """Every unit of the top: name -> factory (the top instantiates exactly these; the
    synthesis report synthesises them one by one)."""
    return {
        "csr": lambda: Csr(hw), "dma": lambda: Dma(hw), "ctl": lambda: Controller(hw),
        "prog": lambda: Ram2(isa.DESC_BITS, hw.desc_max), "loader": lambda: StreamLoader(hw),
        "buffers": lambda: Buffers(hw), "ring": lambda: WeightRing(hw), "table": lambda: PwlTable(hw, hw.mac_rows),
        "array": lambda: ArrayUnit(hw), "ln": lambda: LayerNormUnit(hw), "gmean": lambda: GMean(hw),
        "decide": lambda: Decide(hw), "package": lambda: Package(hw), "compact": lambda: Compaction(hw),
        "load": lambda: LoadUnit(hw), "store": lambda: StoreUnit(hw), "selstore": lambda: SelStore(hw),
        "scores": lambda: ScoreBuffer(hw),
    }


class Accelerator(wiring.Component):
    def __init__(self, hw: HardwareConfig):
        self.hw = hw
        W = hw.axi_bits
        super().__init__({"s_axil": In(axi_lite(ADDR_BITS)), "irq": Out(1),
                          "dbg_op": Out(range(hw.desc_max + 2)),    # descriptor being executed + 1 (0: none)
                          **{f"m_axi{p}": Out(axi.master_signature(W, p == 0, 1)) for p in range(hw.axi_ports)}})

    def elaborate(self, platform):
        m = Module()
        hw = self.hw
        c = {name: make() for name, make in components(hw).items()}
        csr, dma, ctl, prog, loader = c["csr"], c["dma"], c["ctl"], c["prog"], c["loader"]
        bufs, ring, table, sst = c["buffers"], c["ring"], c["table"], c["selstore"]
        self._scores = c["scores"]
        for name in ("csr", "dma", "ctl", "prog", "loader", "buffers", "ring", "table", "selstore", "scores"):
            m.submodules[name] = c[name]
        units = {name: c[name] for name in UNITS}
        dispatch = ctl.units
        reset = dispatch.reset | ctl.loader.start
        for name, u in units.items():
            m.submodules[name] = ResetInserter(reset)(u)
        self._host(m, csr, dma, ctl, prog, loader)
        # which unit the descriptor is for, registered: the descriptor is latched four cycles
        # before start (controller LATCH, STEP, RULES, CODE), so the start and the port routes
        # select from registers rather than through a decode of the controller's register
        op = common_view(dispatch.desc).op
        active = {}
        for name, ops in UNITS.items():
            active[name] = Signal(name=f"active_{name}", attrs={"max_fanout": 16})
            m.d.sync += active[name].eq(_any(op, ops))
        done = 0
        for name, u in units.items():
            # the start a cycle after the controller decides it (CHECK waits for the loader's
            # position): each unit's start is a register, so its fanout into the unit's latches
            # starts at a flip-flop (one cycle per operation: cycles.START)
            start = Signal(name=f"start_{name}", attrs={"max_fanout": 16})
            m.d.sync += start.eq(dispatch.start & active[name])
            m.d.comb += [u.desc.eq(dispatch.desc), u.rows.eq(dispatch.rows), u.start.eq(start)]
            done = done | u.done
        m.d.comb += [dispatch.done.eq(done), self.dbg_op.eq(Mux(ctl.loader.running, ctl.csr.desc_index + 1, 0))]
        for port, users in FABRIC.items():
            sig = getattr(bufs, port).signature.flip()
            route(m, getattr(bufs, port), [(active[u], getattr(units[u], p)) for u, p in users.items()], sig)
        self._streams(m, units, loader, ring, table, dma, ctl, csr, sst, active)
        return m

    def _host(self, m, csr, dma, ctl, prog, loader):
        connect(m, wiring.flipped(self.s_axil), csr.s_axil)
        for p in range(self.hw.axi_ports):
            connect(m, getattr(dma, f"m_axi{p}"), wiring.flipped(getattr(self, f"m_axi{p}")))
        m.d.comb += self.irq.eq(csr.irq)
        connect(m, csr.core, ctl.csr)
        connect(m, ctl.rd_cmd, dma.rd_cmd)
        connect(m, dma.o_fetch, ctl.i_fetch)
        connect(m, dma.status, ctl.dma)
        connect(m, ctl.prog, prog.a)
        connect(m, loader.prog, prog.b)
        connect(m, ctl.loader, loader.ctl)
        connect(m, dma.o_stream, loader.i_stream)

    def _streams(self, m, u, loader, ring, table, dma, ctl, csr, sst, active):
        hw, R = self.hw, self.hw.mac_rows
        connect(m, loader.fill, ring.fill)
        connect(m, u["array"].wi, ring.issue)
        connect(m, u["array"].wd, ring.drain)
        m.d.comb += ring.clear.eq(ctl.units.reset | ctl.loader.start)
        connect(m, loader.table, table.wr)
        for r in range(R):
            if r == 0:
                route(m, table.rd[0], [(active["decide"], u["decide"].table), (1, u["array"].table[0])],
                      table.rd[0].signature.flip())
            else:
                connect(m, u["array"].table[r], table.rd[r])
        connect(m, loader.o_ln, u["ln"].i_param)
        connect(m, loader.o_load, u["load"].i)
        # selection state (inside DECIDE): mask and m reads by PACKAGE, COMPACT, the selection store
        dc = u["decide"]
        route(m, dc.mask, [(active["package"], u["package"].mask), (active["compact"], u["compact"].mask),
                           (1, sst.mask)], dc.mask.signature.flip())
        connect(m, u["package"].mr, dc.m)
        connect(m, u["compact"].pkg, u["package"].pkg)
        connect(m, u["compact"].order, dc.order)
        m.d.comb += u["compact"].kept.eq(dc.info.kept)
        # the score buffer: MATMUL into SB and ATTENTION's score capture write it, COMPACT permutes
        # it (`scores`); the capture (read-modify-write), DECIDE's top-k and PACKAGE's score weights read it
        sb = self._scores
        route(m, sb.wr, [(active["compact"], u["compact"].sw), (1, u["array"].sw)], sb.wr.signature.flip())
        route(m, sb.rd, [(active["array"], u["array"].sr), (active["package"], u["package"].sb),
                         (active["compact"], u["compact"].sr), (1, dc.sb)], sb.rd.signature.flip())
        compacting = common_view(ctl.units.desc).op == Opcode.COMPACT          # COPY keeps the decision
        m.d.comb += [dc.consume.eq(u["compact"].done & compacting), ctl.units.kept_count.eq(dc.kept)]
        # STORE -> DMA writer; a STORE of the selection takes its bytes from the selection store
        st = u["store"]
        connect(m, st.wr_cmd, dma.wr_cmd)
        connect(m, st.o_data, dma.i_wdata)
        sel_mode = desc_view("STORE", st.desc).mode == isa.STORE_SELECT
        m.d.comb += [st.wr_done.eq(dma.wr_done), st.base.eq(csr.core.prog_base), st.sel_bytes.eq(select_bytes(hw)),
                     sst.start.eq(st.start & sel_mode), sst.kept.eq(dc.info.kept), sst.ns.eq(dc.info.ns),
                     st.i_sel.valid.eq(sst.o.valid), st.i_sel.payload.eq(sst.o.payload.data),
                     sst.o.ready.eq(st.i_sel.ready)]


def _any(op, names):
    out = 0
    for n in names:
        out = out | (op == Opcode[n])
    return out
