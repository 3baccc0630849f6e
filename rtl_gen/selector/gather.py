"""COMPACT in rank order (golden/interp.py Machine.op_compact, order 1, after a top-k DECIDE):
o_buf rows

    [CLS, the kept candidates by rank (with `rest`: every candidate by rank), earlier packages
     (rows 1 + ns .. rows - 1), the new package (unless no_pkg)]

for channels 0..d-1. The rank order is a permutation, not a filter, so the position-order unit's
lane packing (rtl_gen/selector/compact.py) does not apply: each output row is gathered from its
source row, one channel word a cycle (read the source tile, write its lane into the output
tile's lane). Per output row: the source (the order RAM of rtl_gen/selector/state.py for ranked
rows), then d channel words, pipelined into the next row. The package token follows as in the
position order.

Cycles from `start` to `done`: n_rows (d + 2) + 2, plus d + 1 for a package
(rtl_gen/tools/cycles.py).
"""
from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden.hw import HardwareConfig

from ..buffers import ports
from ..control.decode import desc_view
from .package import pkg_read
from .state import order_read


class Gather(wiring.Component):
    def __init__(self, hw: HardwareConfig):
        self.hw = hw
        n = range(hw.n_max + 2)
        super().__init__({**ports.control(hw), "kept": In(range(hw.n_max + 1)),
                          "rd": Out(ports.tok_read(hw)), "wr": Out(ports.tok_write(hw)),
                          "order": Out(order_read(hw)), "pkg": Out(pkg_read(hw)), "n_out": Out(n)})

    def elaborate(self, platform):
        m = Module()
        hw, R = self.hw, self.hw.mac_rows
        bits = ports.lane_bits(R)
        desc = desc_view("COMPACT", self.desc)
        ns = self.rows - 1 - desc.n_pkg
        ranked = Mux(desc.rest, ns, self.kept)                     # candidates in the output
        n_rows = 1 + ranked + desc.n_pkg                            # rows before the new package
        m.d.comb += self.n_out.eq(2 + self.kept + desc.n_pkg - desc.no_pkg)
        row = Signal(range(hw.n_max + 2))
        src = Signal(range(hw.tiles * R))
        ch = Signal(range(hw.d_max + 1))
        tag = data.StructLayout({"valid": 1, "ch": range(hw.d_max), "src_lane": range(R), "row": range(hw.n_max + 2),
                                 "pkg": 1})
        issued, arriving = Signal(tag), Signal(tag)
        m.d.sync += arriving.eq(issued)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += row.eq(0)
                    m.next = "ROW"
            with m.State("ROW"):                                    # the source of output row `row`
                m.d.comb += [self.order.rank.eq(row - 1), self.order.en.eq(1)]
                with m.If(row == n_rows):
                    m.d.sync += ch.eq(0)
                    m.next = "DRAIN"
                    with m.If(~desc.no_pkg):
                        m.next = "PKG"
                with m.Else():
                    m.next = "SOURCE"
            with m.State("SOURCE"):
                source = Mux(row == 0, 0, Mux(row <= ranked, self.order.token, ns + row - ranked))
                m.d.sync += [src.eq(source), ch.eq(0)]
                m.next = "CH"
            with m.State("CH"):                                     # one channel word a cycle
                m.d.comb += [self.rd.buf.eq(desc.x_buf), self.rd.tile.eq(src >> bits), self.rd.ch.eq(ch),
                             self.rd.en.eq(1), issued.valid.eq(1), issued.ch.eq(ch), issued.row.eq(row),
                             issued.src_lane.eq(src[:bits] if bits else 0)]
                m.d.sync += ch.eq(ch + 1)
                with m.If(ch == desc.d - 1):
                    m.d.sync += row.eq(row + 1)
                    m.next = "ROW"
            with m.State("PKG"):                                    # the new package token, row n_rows
                m.d.comb += [self.pkg.en.eq(1), self.pkg.ch.eq(ch), issued.valid.eq(1), issued.ch.eq(ch),
                             issued.row.eq(row), issued.pkg.eq(1)]
                m.d.sync += ch.eq(ch + 1)
                with m.If(ch == desc.d - 1):
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"
        word = Signal(16)
        lane = self.rd.data.as_value().word_select(arriving.src_lane, 16)
        m.d.comb += word.eq(Mux(arriving.pkg, self.pkg.data, lane))
        m.d.comb += [self.wr.buf.eq(desc.o_buf), self.wr.tile.eq(arriving.row >> bits), self.wr.ch.eq(arriving.ch),
                     self.wr.data.eq(word.replicate(R)),
                     self.wr.en.eq(Mux(arriving.valid, Const(1, R) << arriving.row[:bits] if bits else 1, 0))]
        return m
