"""COMPACT, both orders, and COPY: the position order streams tiles through the lane packer
(rtl_gen/selector/compact.py), the rank order of a top-k decision and COPY gather row by row
(rtl_gen/selector/gather.py). The opcode and COMPACT's `order` pick the unit; the other stays
idle and its ports are not routed."""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden import isa
from golden.hw import HardwareConfig

from ..buffers import ports
from ..buffers.ports import route
from ..buffers.scores import score_read, score_write
from ..control.decode import Opcode, desc_view
from .compact import Compact
from .gather import Gather
from .package import pkg_read
from .state import mask_read, order_read


class Compaction(wiring.Component):
    def __init__(self, hw: HardwareConfig):
        self.hw = hw
        super().__init__({**ports.control(hw), "kept": In(range(hw.n_max + 1)),
                          "rd": Out(ports.tok_read(hw)), "wr": Out(ports.tok_write(hw)),
                          "mask": Out(mask_read(hw)), "order": Out(order_read(hw)), "pkg": Out(pkg_read(hw)),
                          "sr": Out(score_read(hw)), "sw": Out(score_write(hw)),
                          "n_out": Out(range(hw.n_max + 2)), "n_stb": Out(1)})

    def elaborate(self, platform):
        m = Module()
        hw = self.hw
        m.submodules.position = position = Compact(hw)
        m.submodules.rank = rank = Gather(hw)
        # the units read registered copies of desc and rows (from the cycle after start)
        desc, rows = ports.held(m, self.desc, "desc"), ports.held(m, self.rows, "rows")
        for u in (position, rank):
            m.d.comb += [u.desc.eq(desc), u.rows.eq(rows)]

        d = desc_view("COMPACT", self.desc)
        start_rank = (d.op == Opcode.COPY) | (d.order == isa.ORDER_RANK)
        # which unit runs, registered for the port routes and outputs (used from the cycle after start)
        copy, by_rank = Signal(name="copy"), Signal(name="by_rank")
        m.d.sync += [copy.eq(d.op == Opcode.COPY), by_rank.eq(start_rank)]
        m.d.comb += [position.start.eq(self.start & ~start_rank), rank.start.eq(self.start & start_rank),
                     rank.kept.eq(self.kept), self.done.eq(position.done | rank.done),
                     self.n_stb.eq(position.n_stb | (rank.done & ~copy)),
                     self.n_out.eq(Mux(by_rank, rank.n_out, position.n_out))]
        for name in ("rd", "wr", "pkg"):
            port = getattr(self, name)
            route(m, port, [(by_rank, getattr(rank, name)), (1, getattr(position, name))],
                  port.signature)
        # the token buffers' selects straight from registers (the top's route the only logic after
        # them): they hold for the whole operation (both units read and write from the fourth
        # cycle after start on)
        cp, cd = desc_view("COPY", desc), desc_view("COMPACT", desc)
        held_copy = cd.op == Opcode.COPY
        rd_buf, wr_buf = Signal.like(self.rd.buf, name="rd_buf"), Signal.like(self.wr.buf, name="wr_buf")
        m.d.sync += [rd_buf.eq(Mux(held_copy, cp.i_buf, cd.x_buf)), wr_buf.eq(Mux(held_copy, cp.o_buf, cd.o_buf))]
        m.d.comb += [self.rd.buf.eq(rd_buf), self.wr.buf.eq(wr_buf)]
        wiring.connect(m, position.mask, wiring.flipped(self.mask))
        wiring.connect(m, rank.order, wiring.flipped(self.order))
        wiring.connect(m, rank.sr, wiring.flipped(self.sr))
        wiring.connect(m, rank.sw, wiring.flipped(self.sw))
        return m
