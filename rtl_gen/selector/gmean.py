"""GMEAN: the selector's global feature (golden/interp.py Machine.op_gmean). For each channel
c of buf channels c0 .. c0 + w - 1:

    mean[c] = requant(sum_{tokens 1..rows-1} x[c] * recip(rows - 1, 30), 30 + shift)

written to every row 0..rows-1 of channel c (lane enables); `shift` != 0: the mean in another
format, saturated (Evo-ViT's pooled readout). One reciprocal per operation,
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
from ..control.decode import desc_view
from ..primitives.arith import requant_uvar
from ..primitives.recip import Reciprocal


class GMean(wiring.Component):
    def __init__(self, hw: HardwareConfig):
        self.hw = hw
        super().__init__({**ports.control(hw), "rd": Out(ports.tok_read(hw)), "wr": Out(ports.tok_write(hw))})

    def elaborate(self, platform):
        m = Module()
        hw, R = self.hw, self.hw.mac_rows
        desc = desc_view("GMEAN", self.desc)
        rows = self.rows
        tiles = Signal(range(hw.tiles + 1))
        m.d.comb += tiles.eq(ports.tiles_of(rows, R))
        sum_bits = 16 + hw.n_max.bit_length()
        m.submodules.recip = recip = Reciprocal(hw.n_max.bit_length(), MEAN_RECIP_BITS)
        recip_rows = Signal(MEAN_RECIP_BITS + 1)               # recip(rows - 1, 30)

        # ---- reads: channel read_ch, tile read_tile, one word per cycle
        read_ch, read_tile = Signal(13), Signal(range(hw.tiles))
        reading = Signal()
        tag = data.StructLayout({"valid": 1, "tile": range(hw.tiles), "ch": 13, "first": 1, "last": 1})
        sum_stage, acc_stage, mean_stage = Signal(tag), Signal(tag), Signal(tag)
        m.d.comb += [self.rd.en.eq(reading), self.rd.buf.eq(desc.buf), self.rd.tile.eq(read_tile),
                     self.rd.ch.eq(desc.c0 + read_ch)]
        m.d.sync += [sum_stage.valid.eq(reading), sum_stage.tile.eq(read_tile), sum_stage.ch.eq(read_ch),
                     sum_stage.first.eq(read_tile == 0), sum_stage.last.eq(read_tile == tiles - 1),
                     acc_stage.eq(sum_stage), mean_stage.eq(acc_stage)]
        with m.If(reading):
            m.d.sync += read_tile.eq(read_tile + 1)
            with m.If(read_tile == tiles - 1):
                m.d.sync += [read_tile.eq(0), read_ch.eq(read_ch + 1)]
                with m.If(read_ch == desc.w - 1):
                    m.d.sync += reading.eq(0)

        # ---- masked lane sum (tokens 1..rows-1), accumulate, mean
        base = sum_stage.tile * R
        lane_sum = Signal(signed(sum_bits))
        ch_sum = Signal(signed(sum_bits))
        m.d.sync += lane_sum.eq(sum(Mux((base + r >= 1) & (base + r < rows), self.rd.data[r], 0) for r in range(R)))
        with m.If(acc_stage.valid):
            m.d.sync += ch_sum.eq(Mux(acc_stage.first, 0, ch_sum) + lane_sum)
        mean = Signal(signed(16))
        out_shift = Signal(range(2 * MEAN_RECIP_BITS + 3))                # 30 + shift in 0..62 (golden/isa.py CHECKS)
        m.d.comb += out_shift.eq(MEAN_RECIP_BITS + desc.shift)
        with m.If(mean_stage.valid & mean_stage.last):
            m.d.sync += mean.eq(requant_uvar(m, ch_sum * recip_rows, out_shift, name="mean_rq"))

        # ---- writes of the mean of channel write_ch to its tiles
        writing, write_tile, write_ch = Signal(), Signal(range(hw.tiles)), Signal(13)
        mask = ports.rows_mask(m, rows, write_tile, hw)
        m.d.comb += [self.wr.buf.eq(desc.buf), self.wr.tile.eq(write_tile), self.wr.ch.eq(desc.c0 + write_ch),
                     self.wr.en.eq(Mux(writing, mask, 0))]
        m.d.comb += [self.wr.data[r].eq(mean) for r in range(R)]
        with m.If(writing):
            m.d.sync += write_tile.eq(write_tile + 1)
            with m.If(write_tile == tiles - 1):
                m.d.sync += writing.eq(0)
        with m.If(mean_stage.valid & mean_stage.last):
            m.d.sync += [writing.eq(1), write_tile.eq(0), write_ch.eq(mean_stage.ch)]

        busy = Signal()
        m.d.comb += busy.eq(reading | sum_stage.valid | acc_stage.valid | mean_stage.valid | writing)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [recip.i_d.valid.eq(self.start), recip.i_d.payload.eq(rows - 1)]
                with m.If(self.start):
                    m.next = "RECIP"
            with m.State("RECIP"):
                m.d.comb += recip.o_q.ready.eq(1)
                with m.If(recip.o_q.valid):
                    m.d.sync += [recip_rows.eq(recip.o_q.payload), reading.eq(1), read_ch.eq(0), read_tile.eq(0)]
                    m.next = "RUN"
            with m.State("RUN"):
                with m.If(~busy):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
        return m
