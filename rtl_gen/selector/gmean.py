"""GMEAN: the selector's global feature (golden/interp.py Machine.op_gmean). For each channel
c of buf channels c0 .. c0 + w - 1:

    mean[c] = requant(sum_{tokens 1..rows-1} x[c] * recip(rows - 1, 30), 30 + shift)

written to every row 0..rows-1 of channel c (lane enables); `shift` != 0: the mean in another
format, saturated (Evo-ViT's pooled readout). One reciprocal per operation,
taken before the channel loop. The channel loop is a pipeline: the token tiles of channel c are
read (one word per cycle, masked lane sum, accumulate) while the mean of channel c - 1 is
written to its tiles (one word per cycle through the write port), so w channels of T tiles take
about w T cycles (gmean_cycles is exact). Each stage one adder, product or half a shifter: the
lane sum is an adder tree, the product by the reciprocal split into DSP48-sized partial products
(pipeline_latency stages from a tile's word to its channel's mean).
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import Out

from golden.hw import HardwareConfig
from golden.layers import MEAN_RECIP_BITS

from ..buffers import ports
from ..control.decode import desc_view
from ..primitives.arith import (
    PIPE_REQUANT,
    pipe_stage,
    pipe_sum,
    product_latency,
    requant_uvar,
    split_product,
    tree_latency,
)
from ..primitives.recip import Reciprocal


def lane_latency(hw: HardwareConfig) -> int:
    """Cycles of the masked lane sum (an adder tree over mac_rows lanes), at least one."""
    return tree_latency(max(hw.mac_rows, 2))


def pipeline_latency(hw: HardwareConfig) -> int:
    """A tile's word read -> its channel's mean registered (the last tile's): lane sum,
    accumulate, product, requantiser."""
    sum_bits = 16 + hw.n_max.bit_length()
    return lane_latency(hw) + 1 + product_latency(sum_bits, MEAN_RECIP_BITS + 1) + PIPE_REQUANT


class GMean(wiring.Component):
    def __init__(self, hw: HardwareConfig):
        self.hw = hw
        super().__init__({**ports.control(hw), "rd": Out(ports.tok_read(hw)), "wr": Out(ports.tok_write(hw))})

    def elaborate(self, platform):
        m = Module()
        hw, R = self.hw, self.hw.mac_rows
        LANE_LATENCY, PIPE = lane_latency(hw), pipeline_latency(hw)
        desc = desc_view("GMEAN", ports.held(m, self.desc, "desc"))
        rows = ports.held(m, self.rows, "rows_held")      # the start cycle's rows go to the reciprocal
        # the last token's tile and lanes, and w - 1, registered (reads start after RECIP)
        last_row, last_ch = ports.last_row(m, rows - 1, hw, "rows"), Signal(13)
        last_tile = last_row.tile
        m.d.sync += last_ch.eq(desc.w - 1)
        sum_bits = 16 + hw.n_max.bit_length()
        m.submodules.recip = recip = Reciprocal(hw.n_max.bit_length(), MEAN_RECIP_BITS)
        recip_rows = Signal(MEAN_RECIP_BITS + 1)               # recip(rows - 1, 30)

        # ---- reads: channel read_ch, tile read_tile, one word per cycle; the tile's lanes of
        # tokens 1..rows-1 taken with the read
        read_ch, read_tile = Signal(13), Signal(range(hw.tiles))
        read_addr = Signal(13)                            # c0 + read_ch, counted beside it
        reading = Signal()
        tag = data.StructLayout({"valid": 1, "tile": range(hw.tiles), "ch": 13, "first": 1, "last": 1, "lanes": R})
        stages = [Signal(tag, name=f"gm_stage{k}") for k in range(PIPE + 1)]
        sum_stage, acc_stage = stages[0], stages[LANE_LATENCY]
        m.d.comb += [self.rd.en.eq(reading), self.rd.buf.eq(desc.buf), self.rd.tile.eq(read_tile),
                     self.rd.ch.eq(read_addr)]
        base = read_tile * R
        issued = Signal(tag, name="gm_issued")           # the read's tag, into sum_stage with its word
        m.d.comb += [issued.valid.eq(reading), issued.tile.eq(read_tile), issued.ch.eq(read_addr),
                     issued.first.eq(read_tile == 0), issued.last.eq(read_tile == last_tile),
                     issued.lanes.eq(Cat((base + r >= 1) & (base + r < rows) for r in range(R)))]
        in_flight = ports.delay_chain(m, issued, ports.READ_LATENCY - 1, "gm_read")
        m.d.sync += sum_stage.eq(in_flight[-1] if in_flight else issued)
        m.d.sync += [stages[k].eq(stages[k - 1]) for k in range(1, PIPE + 1)]
        with m.If(reading):
            m.d.sync += read_tile.eq(read_tile + 1)
            with m.If(read_tile == last_tile):
                m.d.sync += [read_tile.eq(0), read_ch.eq(read_ch + 1), read_addr.eq(read_addr + 1)]
                with m.If(read_ch == last_ch):
                    m.d.sync += reading.eq(0)

        # ---- masked lane sum (an adder tree, LANE_LATENCY stages), accumulate, mean (the
        # product by the reciprocal, then the requantiser: the mean registered at stages[PIPE])
        lanes = [Mux(sum_stage.lanes[r], self.rd.data[r], 0) for r in range(R)]
        lane_sum = pipe_sum(m, lanes + [0] * (R < 2), "lane_sum")
        ch_sum = Signal(signed(sum_bits))
        with m.If(acc_stage.valid):
            m.d.sync += ch_sum.eq(Mux(acc_stage.first, 0, ch_sum) + lane_sum)
        out_shift = Signal(range(2 * MEAN_RECIP_BITS + 3))                # 30 + shift in 0..62 (golden/isa.py CHECKS)
        m.d.sync += out_shift.eq(MEAN_RECIP_BITS + desc.shift)
        scaled = split_product(m, ch_sum, recip_rows, name="mean_x")
        mean = Signal(signed(16), attrs={"max_fanout": 64})               # R lanes of the write
        mean_rq = requant_uvar(m, scaled, out_shift, name="mean_rq", stage=pipe_stage(m, name="mean_rq_p"))
        done_stage = stages[PIPE]
        with m.If(done_stage.valid & done_stage.last):
            m.d.sync += mean.eq(mean_rq)

        # ---- writes of the mean of channel write_ch (c0 + its index) to its tiles
        # (every lane but the last tile's lanes past the last row: registers, so the enables
        # leave through one LUT into the port routes)
        writing, write_tile, write_ch = Signal(), Signal(range(hw.tiles)), Signal(13)
        at_last, last_lanes = Signal(name="write_at_last"), last_row.lanes
        m.d.comb += [self.wr.buf.eq(desc.buf), self.wr.tile.eq(write_tile), self.wr.ch.eq(write_ch),
                     self.wr.en.eq(Mux(writing, Mux(at_last, last_lanes, (1 << R) - 1), 0))]
        m.d.comb += [self.wr.data[r].eq(mean) for r in range(R)]
        with m.If(writing):
            m.d.sync += [write_tile.eq(write_tile + 1), at_last.eq(write_tile + 1 == last_tile)]
            with m.If(at_last):
                m.d.sync += writing.eq(0)
        with m.If(done_stage.valid & done_stage.last):
            m.d.sync += [writing.eq(1), write_tile.eq(0), write_ch.eq(done_stage.ch), at_last.eq(last_tile == 0)]

        busy = Signal()
        m.d.comb += busy.eq(reading | Cat(x.valid for x in in_flight + stages).any() | writing)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [recip.i_d.valid.eq(self.start), recip.i_d.payload.eq(self.rows - 1)]
                with m.If(self.start):
                    m.next = "RECIP"
            with m.State("RECIP"):
                m.d.comb += recip.o_q.ready.eq(1)
                with m.If(recip.o_q.valid):
                    m.d.sync += [recip_rows.eq(recip.o_q.payload), reading.eq(1), read_ch.eq(0), read_addr.eq(desc.c0),
                                 read_tile.eq(0)]
                    m.next = "RUN"
            with m.State("RUN"):
                with m.If(~busy):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
        return m
