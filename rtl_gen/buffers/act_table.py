"""The activation table memory: one loadable PWL table (golden/stream.py pack_table entries) for
`lanes` parallel lookups by rtl_gen.primitives.pwl.PwlEval lanes (the MATMUL epilogue's, and DECIDE's
through lane 0): ceil(lanes / 2) copies of a true dual-port block RAM, two lanes per copy; the
stream loader writes every copy at once (never while an operation reads the table).
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.hw import HardwareConfig

from ..primitives.pwl import entry_layout, table_read
from ..primitives.ram import Ram2

ENTRY = entry_layout()


def table_write(hw: HardwareConfig) -> wiring.Signature:
    return wiring.Signature({"addr": Out(range(hw.pwl_max)), "data": Out(ENTRY), "en": Out(1)})


class PwlTable(wiring.Component):
    """`lanes` read ports (`rd`: array of table_read) and one write port (`wr`)."""

    def __init__(self, hw: HardwareConfig, lanes: int):
        self.hw, self.lanes = hw, lanes
        super().__init__({"rd": In(table_read(hw)).array(lanes), "wr": In(table_write(hw))})

    def elaborate(self, platform):
        m = Module()
        w = ENTRY.size
        for i in range(-(-self.lanes // 2)):
            m.submodules[f"copy{i}"] = ram = Ram2(w, self.hw.pwl_max)
            a = self.rd[2 * i]
            m.d.comb += [ram.a.addr.eq(Mux(self.wr.en, self.wr.addr, a.addr)), ram.a.wdata.eq(self.wr.data),
                         ram.a.wen.eq(self.wr.en), ram.a.ren.eq(a.en), a.data.eq(ram.a.rdata)]
            if 2 * i + 1 < self.lanes:
                b = self.rd[2 * i + 1]
                m.d.comb += [ram.b.addr.eq(b.addr), ram.b.en.eq(b.en), b.data.eq(ram.b.data)]
        return m
