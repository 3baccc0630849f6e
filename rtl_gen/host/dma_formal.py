"""Formal harness of the DMA (rtl_gen/host/dma.py): a FormalSlave (rtl_gen/host/axi_formal.py)
on every master port, free commands, data and back-pressure on the DMA's own ports, and

  asserted  the AXI4 master rules at every port (axi_formal.py); lib.stream rule 2 on every
            stream of every component inside the DMA (outputs, FIFOs, register slices: a
            producer that drops a beat its consumer has not taken fails it); whenever the read
            side is idle, every port has taken exactly the R beats its ARs asked for; whenever
            the write side is idle, it has sent exactly the W beats its AWs announced
  assumed   the DMA's input streams (rd_cmd, wr_cmd, i_wdata) keep rule 2; the slaves keep
            theirs; no reset after the start

    formal.prove(DmaFormal(hw, burst_max=2, fifo_depth=2), depth=9, workdir=path)         # all, bounded
    formal.prove(DmaFormal(hw, scope="ports"), depth=3, workdir=path, induction=True)      # for all time

scope "ports": only the AXI4 master rules that are inductive (handshakes, burst type, size,
length, 4 KB, ID), which k-induction proves for every cycle; "all" (default): everything
above, from the reset state for a bounded number of cycles.

`rd_abort` is free: an abort drops the read side's buffered data (the DMA's contract, dma.py), so
rule 2 on the read side's streams (o_stream, o_fetch, the port FIFOs) is excused in the cycle
an abort lands, and only there.
"""
from __future__ import annotations

from amaranth.hdl import Assert
from amaranth.lib import wiring

from golden.hw import HardwareConfig

from ..tools import formal
from . import axi
from .axi_formal import FormalSlave
from .dma import Dma

INPUT_STREAMS = ("rd_cmd", "wr_cmd", "i_wdata")


class DmaFormal(wiring.Component):
    """`dma`: the design under proof (default Dma(hw, burst_max, fifo_depth))."""

    def __init__(self, hw: HardwareConfig, burst_max: int = axi.BURST_MAX, fifo_depth: int | None = None,
                 dma: Dma | None = None, outstanding: int = 4, scope: str = "all"):
        if scope not in ("all", "ports"):
            raise ValueError(f"scope must be 'all' or 'ports' (got {scope!r})")
        self.hw, self.outstanding, self.scope = hw, outstanding, scope
        self.dma = dma or Dma(hw, burst_max, fifo_depth)
        super().__init__({})

    def elaborate(self, platform):
        m = formal.harness_module()
        dma, W = self.dma, self.hw.axi_bits
        tree = formal.elaborate(dma)
        m.submodules.dut = formal.Prebuilt(tree)
        for name in INPUT_STREAMS:
            m.d.comb += formal.free(getattr(dma, name).valid, getattr(dma, name).payload)
        status = dma.status
        m.d.comb += formal.free(dma.o_stream.ready, dma.o_fetch.ready, status.rd_abort, status.clear)
        everything = self.scope == "all"
        for p in range(self.hw.axi_ports):
            m.submodules[f"slave{p}"] = slave = FormalSlave(W, dma.burst_max, p == 0, outstanding=self.outstanding,
                                                            name=f"m_axi{p}", bursts=everything)
            wiring.connect(m, getattr(dma, f"m_axi{p}"), slave.axi)
            if not everything:
                continue
            with m.If(status.rd_idle):
                m.d.comb += Assert(slave.ar_beats == slave.r_beats, f"m_axi{p}: read side idle with R beats owed")
            if p == 0:
                with m.If(status.wr_idle):
                    m.d.comb += Assert(slave.aw_beats == slave.w_beats, "m_axi0: write side idle with W beats owed")
        abort = {prefix: status.rd_abort for prefix in ("dut.reader", "dut.o_stream", "dut.o_fetch")}
        formal.stream_rules(m, tree, "dut", excused=abort, checked=lambda path: everything)
        return m
