"""The accelerator's AXI4 master DMA: P = axi_ports read ports (the stream reader; port 0 also
the fetch reader) and a writer on port 0's write channels. W = axi_bits, B = W / 8 bytes.

    dma = Dma(hw)                          # hw: golden.hw.HardwareConfig
    dma = Dma(hw, burst_max=16, fifo_depth=64)

Ports (members of the component; streams are amaranth.lib.stream, so `rd_cmd` is
`rd_cmd__payload/__valid/__ready` in Verilog):

AXI4 masters `m_axi0` .. `m_axi{P-1}` (rtl_gen/host/axi.py: flat AXI names, 64-bit addresses, ID 0,
INCR bursts of at most burst_max (256) beats that never cross a 4 KB boundary; port 0 also has
the write channels). cocotbext-axi: `AxiBus.from_prefix(dut, "m_axi0", bus_separator="__")`.

Read side (one job at a time; abort, idle, done, error; the run controller's controls and flags
are the `status` member, a dma_status(): Verilog `status__rd_abort` ...):
  rd_cmd    In  stream {addr: 64, length: 32, fetch: 1}; ready while the read side is idle
            fetch = 0, a stream job: `length` bytes (a multiple of P x B) of the interleaved data
              stream at beat-aligned `addr` (golden/stream.py interleave: port p reads its slice
              [addr + p length / P, + length / P) sequentially) -> o_stream.
            fetch = 1, a fetch job on port 0: `length` bytes (any count; the controller's are
              multiples of 16) from beat-aligned `addr` -> o_fetch, ceil(length / B) beats
              (bytes past `length` in the last beat are whatever memory holds).
            An address not aligned to B (with B = 32 this includes 16-byte aligned addresses
            that the ISA allows: not supported) or a stream length not a multiple of P x B
            sets `rd_error` and completes at once without bus traffic (done pulse); a zero
            length completes at once without the error.
  o_stream  Out stream of P x W bits: one beat from every port per transfer, port p's in bits
            p W .. p W + W - 1 (the logical stream, in order: golden.stream.deinterleave).
  o_fetch   Out stream of W bits (fetch jobs).
  status.rd_abort  In  pulse: stop issuing bursts, drop buffered data, accept and drop every
            outstanding R beat; rd_idle rises when none is left (no rd_done pulse).
  status.rd_idle   Out no job, nothing outstanding.
  rd_done   Out pulse: the job's last beat was transferred (or an empty/rejected job).
  status.rd_error  Out sticky: an R beat had RRESP != OKAY (the data is still delivered), or a
            rejected command; cleared by `clear`.
Stream and fetch jobs share port 0's AR/R channels and FIFO: a single command port makes two
simultaneous jobs impossible; the job kind selects where port 0's data goes.

Write side (port 0's AW/W/B; runs concurrently with the read side):
  wr_cmd    In  stream {addr: 64, length: 32}; ready while the writer is idle. `length` bytes
            (any count) to beat-aligned `addr`: ceil(length / B) beats from i_wdata, WSTRB all
            ones except on the last beat when `length` is not a multiple of B (cut to the
            length, so exactly the bytes golden's STORE writes change, e.g. 20 bytes of logits).
            A misaligned address: rejected like reads (wr_error, done, no traffic, no data).
  i_wdata   In  stream of W bits, the job's data in address order.
  status.wr_idle   Out no job.
  wr_done   Out pulse per job: all bursts written and every B response received.
  status.wr_error  Out sticky: a B response was not OKAY, or a rejected command; cleared by `clear`.
  status.clear     In  clears rd_error and wr_error.

Buffering: every read port has a block-RAM FIFO of fifo_depth beats (default 4 bursts); a burst
is requested only when its whole length fits (credits), so RREADY is always 1.
"""
from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from golden.hw import HardwareConfig

from . import axi
from .dma_read import DmaReader, read_cmd_layout
from .dma_write import DmaWriter, write_cmd_layout

FIFO_BURSTS = 4


def dma_status() -> wiring.Signature:
    """The DMA's run controls and flags, from the DMA's side (the run controller has the flipped
    port): abort the read job, clear the sticky errors; idle and error of each side."""
    return wiring.Signature({"rd_abort": In(1), "clear": In(1), "rd_idle": Out(1), "rd_error": Out(1),
                             "wr_idle": Out(1), "wr_error": Out(1)})


class Dma(wiring.Component):
    def __init__(self, hw: HardwareConfig, burst_max: int = axi.BURST_MAX, fifo_depth: int | None = None,
                 id_bits: int = 1):
        P, W = hw.axi_ports, hw.axi_bits
        if not 1 <= burst_max <= axi.BURST_MAX:
            axi.reject(self, f"burst_max must lie in 1..{axi.BURST_MAX} (got {burst_max})")
        cap = axi.burst_cap(W, burst_max)
        depth = fifo_depth or 1 << (FIFO_BURSTS * cap - 1).bit_length()
        if depth < cap or depth & (depth - 1):
            axi.reject(self, f"fifo_depth must be a power of two that holds a whole burst ({cap} beats; got {depth})")
        self.hw, self.burst_max, self.depth = hw, burst_max, depth
        self.reader = DmaReader(P, W, depth, burst_max, id_bits)
        self.writer = DmaWriter(W, burst_max, id_bits)
        super().__init__({
            **{f"m_axi{p}": Out(axi.master_signature(W, p == 0, id_bits)) for p in range(P)},
            "rd_cmd": In(stream.Signature(read_cmd_layout())),
            "o_stream": Out(stream.Signature(P * W)), "o_fetch": Out(stream.Signature(W)),
            "rd_done": Out(1),
            "wr_cmd": In(stream.Signature(write_cmd_layout())), "i_wdata": In(stream.Signature(W)),
            "wr_done": Out(1), "status": Out(dma_status()),
        })

    def elaborate(self, platform):
        m = Module()
        rd, wr = self.reader, self.writer
        m.submodules.reader, m.submodules.writer = rd, wr
        W = self.hw.axi_bits
        for p in range(self.hw.axi_ports):
            axi.connect_members(m, getattr(rd, f"axi{p}"), getattr(self, f"m_axi{p}"), axi.read_members(W))
        axi.connect_members(m, wr.axi, self.m_axi0, axi.write_members(W))
        wiring.connect(m, wiring.flipped(self.rd_cmd), rd.cmd)
        wiring.connect(m, rd.o_stream, wiring.flipped(self.o_stream))
        wiring.connect(m, rd.o_fetch, wiring.flipped(self.o_fetch))
        wiring.connect(m, wiring.flipped(self.wr_cmd), wr.cmd)
        wiring.connect(m, wiring.flipped(self.i_wdata), wr.i_wdata)
        st = self.status
        m.d.comb += [rd.abort.eq(st.rd_abort), rd.clear.eq(st.clear), wr.clear.eq(st.clear),
                     st.rd_idle.eq(rd.idle), self.rd_done.eq(rd.done), st.rd_error.eq(rd.error),
                     st.wr_idle.eq(wr.idle), self.wr_done.eq(wr.done), st.wr_error.eq(wr.error)]
        return m
