"""DMA read side: `ReadEngine` (one AXI4 read port into a block-RAM FIFO) and `DmaReader` (the
stream reader over all P ports, and the fetch reader on port 0). `rtl_gen/host/dma.py` documents
the DMA's outside interface.

ReadEngine: a job (start pulse with addr, beats) reads `beats` beats of bits/8 bytes from the
beat-aligned `addr` sequentially in INCR bursts (rtl_gen.host.axi.burst_beats: at most burst_max
beats, never across a 4 KB boundary). Credits: an AR is issued only when the FIFO has room for
the whole burst (depth - words in the FIFO's RAM - beats requested and not yet written), so
RREADY is always 1 and several bursts are in flight. The next burst's length is computed from
registers a cycle ahead, and whether it fits the FIFO a cycle after that (at most one AR every
third cycle; a burst is never shorter than one beat, and in steady state 4 KB long); an AR's
beats are counted as owed a cycle after it. R inputs are registered before the FIFO.
`abort` (a pulse while active): no new AR, the FIFO is flushed and held empty, every
outstanding R beat is still accepted and dropped, and `active` falls when none is left.
`rerr` pulses for every R beat whose RRESP is not OKAY (the beat is delivered as usual).
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, ResetInserter, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..primitives.fifo import RamFifo, Skid
from . import axi

LEN_BITS = 32                                   # job lengths in bytes


def read_cmd_layout() -> data.StructLayout:
    return data.StructLayout({"addr": axi.ADDR_BITS, "length": LEN_BITS, "fetch": 1})


class ReadEngine(wiring.Component):
    def __init__(self, bits: int, depth: int, burst_max: int = axi.BURST_MAX, id_bits: int = 1):
        self.bits, self.depth, self.burst_max = bits, depth, burst_max
        if axi.burst_cap(bits, burst_max) > depth:
            axi.reject(self, f"the FIFO ({depth} beats) must hold a whole burst ({axi.burst_cap(bits, burst_max)})")
        super().__init__({
            "axi": Out(axi.read_signature(bits, id_bits)),
            "start": In(1), "addr": In(axi.ADDR_BITS), "beats": In(LEN_BITS),
            "abort": In(1), "o": Out(stream.Signature(bits)), "active": Out(1), "rerr": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = fifo = RamFifo(self.bits, self.depth)
        wiring.connect(m, fifo.o, wiring.flipped(self.o))
        ax, sh = self.axi, axi.log2(self.bits // 8)
        addr, left = Signal(axi.ADDR_BITS), Signal(LEN_BITS)
        owed = Signal(range(self.depth + 1))     # beats requested (AR issued or pending), not yet in the FIFO
        drain, stale = Signal(), Signal()
        n = Signal(range(axi.burst_cap(self.bits, self.burst_max) + 1))
        m.d.sync += n.eq(axi.burst_beats(m, addr, left, self.bits, self.burst_max, "next_len"))
        # whether burst n fits the FIFO's room, a register: valid from the second cycle after
        # an AR or a start (n, owed settle in the first): `stale` blocks the first, and `fits`,
        # computed while `stale`, is low in the second (issue: one gate of registers)
        fits = Signal()
        m.d.sync += fits.eq((n != 0) & (n <= self.depth - fifo.count - owed) & ~stale)
        issue = Signal()
        m.d.comb += issue.eq(self.active & ~drain & ~stale & fits & (~ax.arvalid | ax.arready))

        m.d.comb += [ax.arid.eq(0), ax.arsize.eq(sh), ax.arburst.eq(axi.INCR), ax.arcache.eq(axi.CACHE),
                     ax.arprot.eq(0), ax.rready.eq(1)]
        with m.If(~ax.arvalid | ax.arready):    # AR's address and length follow while none is offered
            m.d.sync += [ax.araddr.eq(addr), ax.arlen.eq(n - 1)]
        with m.If(issue):
            m.d.sync += [ax.arvalid.eq(1), addr.eq(addr + (n << sh)), left.eq(left - n)]
        with m.Elif(ax.arready):
            m.d.sync += ax.arvalid.eq(0)
        m.d.sync += stale.eq(issue | self.start)

        rv, rd, rresp = Signal(), Signal(self.bits), Signal(2)          # registered R beat
        m.d.sync += [rv.eq(ax.rvalid), rd.eq(ax.rdata), rresp.eq(ax.rresp)]
        # an AR's beats join `owed` a cycle after it (issue waits on ARREADY; the add starts at
        # registers): `fits` still sees them, since it waits two cycles after an AR (see `fits`)
        issued, issued_n = Signal(), Signal.like(n)
        m.d.sync += [issued.eq(issue), issued_n.eq(n), owed.eq(owed + Mux(issued, issued_n, 0) - rv)]
        m.d.comb += [fifo.i.valid.eq(rv & ~drain), fifo.i.payload.eq(rd),
                     fifo.flush.eq(drain | (self.abort & self.active)), self.rerr.eq(rv & (rresp != axi.OKAY))]

        finished = ~stale & (left == 0) & (owed == 0) & (fifo.count == 0) & ~fifo.o.valid
        # the job's address and length follow the inputs while idle (nothing reads them then),
        # so `start` sets only `active`: its fanout stays small
        self.active.attrs["max_fanout"] = 16
        with m.If(~self.active):
            m.d.sync += [addr.eq(self.addr), left.eq(self.beats)]
        with m.If(self.start & ~self.active):
            m.d.sync += self.active.eq(1)
        with m.Elif(self.active & self.abort):
            m.d.sync += drain.eq(1)
        with m.Elif(drain & (owed == 0) & ~issued):
            m.d.sync += [drain.eq(0), self.active.eq(0), left.eq(0)]
        with m.Elif(self.active & ~drain & finished):
            m.d.sync += self.active.eq(0)
        return m


class DmaReader(wiring.Component):
    """P ReadEngines; a command runs either as a stream job (all ports, merged output) or as a
    fetch job (port 0, output o_fetch). See rtl_gen/host/dma.py for the interface."""

    def __init__(self, ports: int, bits: int, depth: int, burst_max: int = axi.BURST_MAX, id_bits: int = 1):
        self.ports, self.bits = ports, bits
        self.engines = [ReadEngine(bits, depth, burst_max, id_bits) for _ in range(ports)]
        super().__init__({
            **{f"axi{p}": Out(axi.read_signature(bits, id_bits)) for p in range(ports)},
            "cmd": In(stream.Signature(read_cmd_layout())),
            "o_stream": Out(stream.Signature(ports * bits)), "o_fetch": Out(stream.Signature(bits)),
            "abort": In(1), "idle": Out(1), "done": Out(1), "error": Out(1), "clear": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        for p, e in enumerate(self.engines):
            m.submodules[f"port{p}"] = e
            wiring.connect(m, e.axi, wiring.flipped(getattr(self, f"axi{p}")))
            m.d.comb += e.abort.eq(self.abort)
        job, fetch = Signal(attrs={"max_fanout": 16}), Signal()      # job: every port's start, the idle flag
        left = Signal(LEN_BITS)                  # output beats still to deliver
        m.d.comb += [self.idle.eq(~job & ~Cat(e.active for e in self.engines).any()),
                     self.cmd.ready.eq(self.idle & ~self.abort)]
        bad = self._start(m, job, fetch, left)
        self._route(m, job, fetch, left)
        rerr = Cat(e.rerr for e in self.engines).any()
        with m.If(self.clear):
            m.d.sync += self.error.eq(0)
        with m.Elif(rerr | bad):
            m.d.sync += self.error.eq(1)
        return m

    def _start(self, m, job, fetch, left):
        """Accept a command: split a stream job over the ports, or start a fetch on port 0."""
        P, sh = self.ports, axi.log2(self.bits // 8)
        c = self.cmd.payload
        take = self.cmd.valid & self.cmd.ready
        fetch_beats = Signal(LEN_BITS + 1)
        m.d.comb += fetch_beats.eq((c.length + (1 << sh) - 1) >> sh)
        slice_bytes = Signal(LEN_BITS)
        m.d.comb += slice_bytes.eq(c.length >> axi.log2(P))
        misaligned = c.addr[:sh] != 0
        bad_len = ~c.fetch & (c.length[:sh + axi.log2(P)] != 0)
        bad = Signal()
        m.d.comb += bad.eq(take & (misaligned | bad_len))
        beats = Mux(c.fetch, fetch_beats, slice_bytes >> sh)
        go = take & ~bad & (beats != 0)
        for p, e in enumerate(self.engines):
            on = go if p == 0 else go & ~c.fetch
            offset = sum((slice_bytes << k for k in range(P.bit_length()) if p >> k & 1), start=0)   # no multiplier
            m.d.comb += [e.start.eq(on), e.addr.eq(c.addr + offset), e.beats.eq(beats)]
        with m.If(~job):                        # follow the command while idle (as the engines)
            m.d.sync += [fetch.eq(c.fetch), left.eq(beats)]
        with m.If(go):
            m.d.sync += job.eq(1)
        m.d.sync += self.done.eq(take & ~go)                          # empty or rejected job: done at once
        return bad

    def _route(self, m, job, fetch, left):
        """Port 0's engine feeds o_fetch in a fetch job; all engines feed o_stream in a stream
        job (one beat from every port per transfer, port 0 in the low bits)."""
        e0 = self.engines[0]
        all_valid = Cat(e.o.valid for e in self.engines).all()
        # the fetch output through a register slice: the controller's ready (its FSM) ends at the
        # slice, not at port 0's FIFO count; an abort empties it
        fetch_slice = Skid(self.bits)
        m.submodules.fetch_slice = ResetInserter(self.abort)(fetch_slice)
        wiring.connect(m, fetch_slice.o, wiring.flipped(self.o_fetch))
        m.d.comb += [
            fetch_slice.i.valid.eq(job & fetch & e0.o.valid), fetch_slice.i.payload.eq(e0.o.payload),
            self.o_stream.valid.eq(job & ~fetch & all_valid),
            self.o_stream.payload.eq(Cat(e.o.payload for e in self.engines)),
        ]
        take_stream = self.o_stream.ready & self.o_stream.valid
        take_fetch = fetch_slice.i.ready & fetch_slice.i.valid
        for p, e in enumerate(self.engines):
            m.d.comb += e.o.ready.eq(take_stream | take_fetch if p == 0 else take_stream)
        fire = take_stream | (self.o_fetch.valid & self.o_fetch.ready)      # a beat delivered
        with m.If(self.abort):                                          # abort wins over a last beat
            m.d.sync += job.eq(0)
        with m.Elif(fire):
            m.d.sync += left.eq(left - 1)
            with m.If(left == 1):
                m.d.sync += [job.eq(0), self.done.eq(1)]
