"""DMA write side: `DmaWriter`, jobs (address, length) plus a stream of data beats -> AXI4
AW/W/B on port 0. `rtl_gen/host/dma.py` documents the DMA's outside interface.

The AW side splits a job into INCR bursts (rtl_gen.host.axi.burst_beats: at most burst_max beats,
never across a 4 KB boundary), computing each length a cycle ahead, and queues the lengths
(at most LENS_AHEAD bursts) for the W side, which marks WLAST from them. W goes out through a
register slice (rtl_gen.primitives.fifo.Skid), so every AXI output is a register; BREADY is always 1.
The data beats enter through a register slice too (IN_SLICE cycles): the producer's valid (STORE's
read pipeline, across the top) ends at a register, not at the burst counters.
AW may run ahead of W by up to LENS_AHEAD bursts; W may also run ahead of AW (AXI allows either).
A job completes (done pulse) when every burst has been issued, every data beat accepted and
every B response received. Only one job runs at a time (cmd.ready = idle).
"""
from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ..primitives.fifo import Skid
from . import axi
from .dma_read import LEN_BITS

LENS_AHEAD = 4                  # bursts the AW side may issue before their data
IN_SLICE = 1                    # cycles a data beat spends in the input register slice
B_OWED_MAX = 63                 # bursts awaiting their B response (the AW side stalls beyond)


def write_cmd_layout() -> data.StructLayout:
    return data.StructLayout({"addr": axi.ADDR_BITS, "length": LEN_BITS})


def w_layout(bits: int) -> data.StructLayout:
    return data.StructLayout({"data": bits, "strb": bits // 8, "last": 1})


class DmaWriter(wiring.Component):
    def __init__(self, bits: int, burst_max: int = axi.BURST_MAX, id_bits: int = 1):
        self.bits, self.burst_max = bits, burst_max
        super().__init__({
            "axi": Out(axi.write_signature(bits, id_bits)),
            "cmd": In(stream.Signature(write_cmd_layout())), "i_wdata": In(stream.Signature(bits)),
            "idle": Out(1), "done": Out(1), "error": Out(1), "clear": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        cap = axi.burst_cap(self.bits, self.burst_max)
        m.submodules.lens = lens = fifo.SyncFIFOBuffered(width=(cap + 1).bit_length(), depth=LENS_AHEAD)
        active, stale = Signal(), Signal()
        aw_addr, aw_left, w_left = Signal(axi.ADDR_BITS), Signal(LEN_BITS), Signal(LEN_BITS)
        tail = Signal(self.bits // 8)                   # WSTRB of the job's last beat
        b_owed = Signal(range(B_OWED_MAX + 1))
        m.d.comb += [self.idle.eq(~active), self.cmd.ready.eq(~active)]
        go, bad, beats = self._accept(m, active, stale, aw_addr, aw_left, w_left, tail)
        issue = self._aw(m, active, stale, aw_addr, aw_left, lens, b_owed)
        m.d.sync += stale.eq(go | issue)            # aw_addr/aw_left changed: the next length is a cycle late
        self._w(m, lens, w_left, tail, go, beats)
        bv, berr = self._b(m)
        m.d.sync += b_owed.eq(b_owed + issue - bv)
        finish = active & ~stale & (aw_left == 0) & ~self.axi.awvalid & (w_left == 0) & (b_owed == 0)
        with m.If(finish):
            m.d.sync += active.eq(0)
        m.d.sync += self.done.eq(finish | (self.cmd.valid & self.cmd.ready & ~go))
        with m.If(self.clear):
            m.d.sync += self.error.eq(0)
        with m.Elif(berr | bad):
            m.d.sync += self.error.eq(1)
        return m

    def _accept(self, m, active, stale, aw_addr, aw_left, w_left, tail):
        """A job: `length` bytes (any count) from a beat-aligned address (else: error, done, no
        traffic); ceil(length / beat) beats, the last one strobed to the length."""
        sh = axi.log2(self.bits // 8)
        c = self.cmd.payload
        take = self.cmd.valid & self.cmd.ready
        beats = Signal(LEN_BITS + 1)
        m.d.comb += beats.eq((c.length + (1 << sh) - 1) >> sh)
        bad = Signal()
        m.d.comb += bad.eq(take & (c.addr[:sh] != 0))
        go = take & ~bad & (beats != 0)
        rem = c.length[:sh]
        with m.If(go):
            m.d.sync += [active.eq(1), aw_addr.eq(c.addr), aw_left.eq(beats), w_left.eq(beats),
                         tail.eq(Mux(rem == 0, (1 << (self.bits // 8)) - 1, (Const(1, self.bits // 8 + 1) << rem) - 1))]
        return go, bad, beats

    def _aw(self, m, active, stale, aw_addr, aw_left, lens, b_owed):
        ax, sh = self.axi, axi.log2(self.bits // 8)
        nc = axi.burst_beats(m, aw_addr, aw_left, self.bits, self.burst_max, "aw_next")
        n = Signal.like(nc, name="aw_len")               # registered: stale in the cycle after a change
        m.d.sync += n.eq(nc)
        issue = Signal()
        m.d.comb += issue.eq(active & ~stale & (n != 0) & lens.w_rdy & (b_owed != B_OWED_MAX)
                             & (~ax.awvalid | ax.awready))
        m.d.comb += [ax.awid.eq(0), ax.awsize.eq(sh), ax.awburst.eq(axi.INCR), ax.awcache.eq(axi.CACHE),
                     ax.awprot.eq(0), lens.w_en.eq(issue), lens.w_data.eq(n)]
        with m.If(issue):
            m.d.sync += [ax.awaddr.eq(aw_addr), ax.awlen.eq(n - 1), ax.awvalid.eq(1),
                         aw_addr.eq(aw_addr + (n << sh)), aw_left.eq(aw_left - n)]
        with m.Elif(ax.awready):
            m.d.sync += ax.awvalid.eq(0)
        return issue

    def _w(self, m, lens, w_left, tail, go, beats):
        """Data beats through the input slice (it takes the job's beats, no more: `in_open` and
        `in_last` are registers kept with its count) and the W slice; WLAST from the queued
        burst lengths."""
        ax = self.axi
        m.submodules.in_slice = ins = Skid(self.bits)
        in_left = Signal(LEN_BITS, name="in_left")
        in_open, in_last = Signal(name="in_open"), Signal(name="in_last")     # in_left != 0, == 1
        m.d.comb += [ins.i.valid.eq(self.i_wdata.valid & in_open), ins.i.payload.eq(self.i_wdata.payload),
                     self.i_wdata.ready.eq(ins.i.ready & in_open)]
        with m.If(go):
            m.d.sync += [in_left.eq(beats), in_open.eq(1), in_last.eq(beats == 1)]
        with m.Elif(self.i_wdata.valid & self.i_wdata.ready):
            m.d.sync += [in_left.eq(in_left - 1), in_open.eq(~in_last), in_last.eq(in_left == 2)]
        beat = ins.o
        m.submodules.w_slice = sk = Skid(w_layout(self.bits))
        wb = Signal(lens.w_data.shape(), name="w_burst_left")
        fire = beat.valid & beat.ready
        m.d.comb += [
            beat.ready.eq(sk.i.ready & (wb != 0)),
            sk.i.valid.eq(beat.valid & (wb != 0)),
            sk.i.payload.data.eq(beat.payload),
            sk.i.payload.strb.eq(Mux(w_left == 1, tail, (1 << (self.bits // 8)) - 1)),
            sk.i.payload.last.eq(wb == 1),
            lens.r_en.eq(((wb == 0) | (fire & (wb == 1))) & lens.r_rdy),
            ax.wvalid.eq(sk.o.valid), ax.wdata.eq(sk.o.payload.data), ax.wstrb.eq(sk.o.payload.strb),
            ax.wlast.eq(sk.o.payload.last), sk.o.ready.eq(ax.wready),
        ]
        with m.If(lens.r_en):
            m.d.sync += wb.eq(lens.r_data)
        with m.Elif(fire):
            m.d.sync += wb.eq(wb - 1)
        with m.If(fire):
            m.d.sync += w_left.eq(w_left - 1)

    def _b(self, m):
        """Registered B responses (BREADY is always 1): (beat, not OKAY)."""
        bv, bresp = Signal(), Signal(2)
        m.d.comb += self.axi.bready.eq(1)
        m.d.sync += [bv.eq(self.axi.bvalid), bresp.eq(self.axi.bresp)]
        return bv, bv & (bresp != axi.OKAY)
