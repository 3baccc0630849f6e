"""Bench of the runtime-table PWL (rtl_gen/primitives/pwl.py PwlEval): a table RAM loaded through the
command stream, then inputs x; results leave on o_y in order. The geometry (descriptor fields)
is a set of plain inputs held for the run. PwlEval never stalls, so an input is taken only when
the output FIFO has room for everything in flight."""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, signed
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.hw import HardwareConfig
from rtl_gen.primitives.pwl import PwlEval
from rtl_gen.primitives.ram import Ram

ROOM = 8                     # FIFO places beyond the results in flight


class PwlBench(wiring.Component):
    def __init__(self, hw: HardwareConfig, in_bits: int = 17, deep: bool = False):
        self.hw, self.in_bits, self.deep = hw, in_bits, deep
        cmd = data.StructLayout({"table": 1, "addr": range(hw.pwl_max), "base": signed(32), "slope": signed(27),
                                 "x": signed(in_bits)})
        super().__init__({"i_cmd": In(stream.Signature(cmd)), "o_y": Out(stream.Signature(signed(16))),
                          "lo": In(signed(18)), "shift": In(5), "n_seg": In(13), "extend": In(1), "frac": In(5)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.pwl = pwl = PwlEval(self.hw, self.in_bits, self.deep)
        lat = pwl.latency
        depth = lat + ROOM
        m.submodules.tab = tab = Ram(59, self.hw.pwl_max, is_signed=False)
        m.submodules.out = q = fifo.SyncFIFOBuffered(width=16, depth=depth)
        g = pwl.geo
        m.d.comb += [g.lo.eq(self.lo), g.shift.eq(self.shift), g.n_seg.eq(self.n_seg), g.extend.eq(self.extend),
                     g.frac.eq(self.frac)]
        t = pwl.table
        m.d.comb += [tab.raddr.eq(t.addr), tab.ren.eq(t.en), t.data.base.eq(tab.rdata[:32]),
                     t.data.slope.eq(tab.rdata[32:59])]
        c = self.i_cmd.payload
        v = Signal(lat)
        m.d.comb += [self.i_cmd.ready.eq(q.level + lat + 1 < depth), pwl.x.eq(c.x),
                     tab.waddr.eq(c.addr), tab.wdata.eq(Cat(c.base, c.slope)),
                     tab.wen.eq(self.i_cmd.valid & self.i_cmd.ready & c.table)]
        m.d.sync += v.eq(Cat(self.i_cmd.valid & self.i_cmd.ready & ~c.table, v[:-1]))
        m.d.comb += [q.w_data.eq(pwl.y), q.w_en.eq(v[-1]),
                     self.o_y.valid.eq(q.r_rdy), self.o_y.payload.eq(q.r_data.as_signed()), q.r_en.eq(self.o_y.ready)]
        return m
