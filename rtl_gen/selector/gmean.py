"""GMEAN: the selector's global feature (golden/interp.py Machine.op_gmean). For each channel
c of buf channels c0 .. c0 + w - 1:

    mean[c] = rshift_round(sum_{tokens 1..rows-1} x[c] * recip(rows - 1, 30), 30)

written to every row 0..rows-1 of channel c (lane enables). One reciprocal per operation,
taken before the channel loop. The channel loop is a pipeline: the token tiles of channel c are
read (one word per cycle, masked lane sum, accumulate) while the mean of channel c - 1 is
written to its tiles (one word per cycle through the write port), so w channels of T tiles take
about w T cycles (gmean_cycles is exact).
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import Out

from golden.hw import HardwareConfig
from golden.layers import MEAN_RECIP_BITS

from ..buffers import ports
from ..primitives.arith import rshift_round
from ..control.decode import desc_view
from ..primitives.recip import Reciprocal


class GMean(wiring.Component):
    def __init__(self, hw: HardwareConfig):
        self.hw = hw
        super().__init__({**ports.control(hw), "rd": Out(ports.tok_read(hw)), "wr": Out(ports.tok_write(hw))})

    def elaborate(self, platform):
        m = Module()
        hw, R = self.hw, self.hw.mac_rows
        v = desc_view("GMEAN", self.desc)
        rows = self.rows
        nt = Signal(range(hw.tiles + 1))
        m.d.comb += nt.eq(ports.tiles_of(rows, R))
        sum_bits = 16 + hw.n_max.bit_length()
        m.submodules.rcp = rcp = Reciprocal(hw.n_max.bit_length(), MEAN_RECIP_BITS)
        q = Signal(MEAN_RECIP_BITS + 1)

        # ---- reads: channel rc, tile rt, one word per cycle
        rc, rt = Signal(13), Signal(range(hw.tiles))
        reading = Signal()
        tag = data.StructLayout({"v": 1, "t": range(hw.tiles), "c": 13, "first": 1, "last": 1})
        t1, t2, t3 = Signal(tag), Signal(tag), Signal(tag)
        m.d.comb += [self.rd.en.eq(reading), self.rd.buf.eq(v.buf), self.rd.tile.eq(rt), self.rd.ch.eq(v.c0 + rc)]
        m.d.sync += [t1.v.eq(reading), t1.t.eq(rt), t1.c.eq(rc), t1.first.eq(rt == 0), t1.last.eq(rt == nt - 1),
                     t2.eq(t1), t3.eq(t2)]
        with m.If(reading):
            m.d.sync += rt.eq(rt + 1)
            with m.If(rt == nt - 1):
                m.d.sync += [rt.eq(0), rc.eq(rc + 1)]
                with m.If(rc == v.w - 1):
                    m.d.sync += reading.eq(0)

        # ---- masked lane sum (tokens 1..rows-1), accumulate, mean
        base = t1.t * R
        part = Signal(signed(sum_bits))
        acc = Signal(signed(sum_bits))
        m.d.sync += part.eq(sum(Mux((base + r >= 1) & (base + r < rows), self.rd.data[r], 0) for r in range(R)))
        with m.If(t2.v):
            m.d.sync += acc.eq(Mux(t2.first, 0, acc) + part)
        mean = Signal(signed(16))
        with m.If(t3.v & t3.last):
            m.d.sync += mean.eq(rshift_round(acc * q, MEAN_RECIP_BITS)[:16])

        # ---- writes of the mean of channel wc to its nt tiles
        wact, wt, wc = Signal(), Signal(range(hw.tiles)), Signal(13)
        mask = ports.rows_mask(m, rows, wt, hw)
        m.d.comb += [self.wr.buf.eq(v.buf), self.wr.tile.eq(wt), self.wr.ch.eq(v.c0 + wc),
                     self.wr.en.eq(Mux(wact, mask, 0))]
        m.d.comb += [self.wr.data[r].eq(mean) for r in range(R)]
        with m.If(wact):
            m.d.sync += wt.eq(wt + 1)
            with m.If(wt == nt - 1):
                m.d.sync += wact.eq(0)
        with m.If(t3.v & t3.last):
            m.d.sync += [wact.eq(1), wt.eq(0), wc.eq(t3.c)]

        busy = Signal()
        m.d.comb += busy.eq(reading | t1.v | t2.v | t3.v | wact)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [rcp.i_d.valid.eq(self.start), rcp.i_d.payload.eq(rows - 1)]
                with m.If(self.start):
                    m.next = "RECIP"
            with m.State("RECIP"):
                m.d.comb += rcp.o_q.ready.eq(1)
                with m.If(rcp.o_q.valid):
                    m.d.sync += [q.eq(rcp.o_q.payload), reading.eq(1), rc.eq(0), rt.eq(0)]
                    m.next = "RUN"
            with m.State("RUN"):
                with m.If(~busy):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
        return m

