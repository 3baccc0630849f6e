"""SB, the score buffer (golden/isa.py SB): one 48-bit score per token row, in the token-tile
layout of the token buffers (word t holds rows t R .. t R + R - 1, one lane each, written with
lane enables). A MATMUL into SB writes it (the epilogue's bare accumulator); DECIDE's top-k
reads it (rtl_gen/selector/topk.py). One block RAM of n_max rows, read one tile a cycle
(data the cycle after `en`, as every buffer port: rtl_gen/buffers/ports.py).
"""
from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.hw import HardwareConfig
from golden.isa import SCORE_BITS

from ..primitives.ram import Ram
from .ports import lanes


def score_write(hw: HardwareConfig) -> wiring.Signature:
    """Unit side: the R scores of token tile `tile` (lane r: row tile R + r; en per row)."""
    return wiring.Signature({"tile": Out(range(hw.tiles)), "data": Out(lanes(hw.mac_rows, SCORE_BITS)),
                             "en": Out(hw.mac_rows)})


def score_read(hw: HardwareConfig) -> wiring.Signature:
    return wiring.Signature({"tile": Out(range(hw.tiles)), "en": Out(1), "data": In(lanes(hw.mac_rows, SCORE_BITS))})


class ScoreBuffer(wiring.Component):
    def __init__(self, hw: HardwareConfig):
        self.hw = hw
        super().__init__({"wr": In(score_write(hw)), "rd": In(score_read(hw))})

    def elaborate(self, platform):
        m = Module()
        hw = self.hw
        m.submodules.ram = ram = Ram(SCORE_BITS, hw.tiles, hw.mac_rows)
        m.d.comb += [ram.waddr.eq(self.wr.tile), ram.wdata.eq(self.wr.data), ram.wen.eq(self.wr.en),
                     ram.raddr.eq(self.rd.tile), ram.ren.eq(self.rd.en), self.rd.data.eq(ram.rdata)]
        return m
