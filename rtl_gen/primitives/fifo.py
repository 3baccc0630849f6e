"""Stream FIFOs: `RamFifo` (block RAM, one word in and one out per cycle) and `Skid` (a
two-entry register slice: every output registered, full throughput).

    fifo = RamFifo(width=128, depth=1024)   # i, o: streams; count: words in the RAM; flush
    skid = Skid(shape)                      # i -> o, o.valid/payload and i.ready are registers

RamFifo keeps its words in rtl_gen.primitives.ram.Ram (synchronous read) and uses the RAM's read register
as the output stage: `o.payload` is `ram.rdata`, which holds while no read is issued, so the
FIFO holds `depth` words in the RAM plus one in the output register. A read is issued when the
RAM holds a word and the output register is empty or being taken (o.ready: a combinational
path from o.ready to the RAM's read enable). `count` counts the words in the RAM only (not the
output word): a producer that reserves room by credits frees a credit per RAM read.
`flush` empties the FIFO in one cycle (words written in that cycle are dropped).

`RamFifo(width, depth, spare=True)`: a wide FIFO whose read register is in fabric (a shallow
one, LUT RAM) would have o.ready enable every bit of it; with `spare` a refused word moves to a
spare register instead, so o.ready drives one flip-flop and the wide enables come from
registers (the read: the RAM holds a word and the spare is free; the spare follows the read
register while free). One more word of storage, the same order, never a later valid.
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .ram import Ram


class RamFifo(wiring.Component):
    def __init__(self, width: int, depth: int, spare: bool = False):
        if depth < 2 or depth & (depth - 1):
            raise ValueError(f"RamFifo depth must be a power of two >= 2 (got {depth})")
        self.width, self.depth, self.spare = width, depth, spare
        super().__init__({"i": In(stream.Signature(width)), "o": Out(stream.Signature(width)),
                          "count": Out(range(depth + 1)), "flush": In(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.ram = ram = Ram(self.width, self.depth, is_signed=False)
        wptr, rptr = Signal(range(self.depth)), Signal(range(self.depth))
        push = Signal()
        pop = Signal()
        m.d.comb += [
            self.i.ready.eq(self.count != self.depth),
            push.eq(self.i.valid & self.i.ready & ~self.flush),
            ram.waddr.eq(wptr), ram.wdata.eq(self.i.payload), ram.wen.eq(push),
            ram.raddr.eq(rptr), ram.ren.eq(pop),
        ]
        (self._spare_output if self.spare else self._output)(m, ram, pop)
        # o.ready arrives late (the consumer's take): the pointers and the count are computed from
        # registers for every outcome, and push and pop only select between them
        count = self.count
        with m.If(self.flush):
            m.d.sync += [wptr.eq(0), rptr.eq(0), count.eq(0)]
        with m.Else():
            m.d.sync += [wptr.eq(Mux(push, wptr + 1, wptr)), rptr.eq(Mux(pop, rptr + 1, rptr)),
                         count.eq(Mux(pop, Mux(push, count, count - 1), Mux(push, count + 1, count)))]
        return m

    def _output(self, m, ram, pop):
        """o = the read register: a read when the RAM holds a word and o is free or being taken."""
        m.d.comb += [pop.eq((self.count != 0) & (~self.o.valid | self.o.ready) & ~self.flush),
                     self.o.payload.eq(ram.rdata)]
        m.d.sync += self.o.valid.eq(~self.flush & (pop | (self.o.valid & ~self.o.ready)))

    def _spare_output(self, m, ram, pop):
        """o = the spare while it holds a refused word (the older one), else the read register."""
        read_valid = Signal()                                    # the read register holds a word
        spare, held = Signal(self.width, name="spare"), Signal(name="spare_held", attrs={"max_fanout": 16})
        m.d.comb += [pop.eq((self.count != 0) & ~held & ~self.flush), self.o.valid.eq(held | read_valid),
                     self.o.payload.eq(Mux(held, spare, ram.rdata))]
        with m.If(~held):
            m.d.sync += spare.eq(ram.rdata)
        with m.If(self.flush):
            m.d.sync += [held.eq(0), read_valid.eq(0)]
        with m.Elif(held):
            m.d.sync += held.eq(~self.o.ready)
        with m.Else():
            m.d.sync += [held.eq(read_valid & ~self.o.ready), read_valid.eq(pop)]


class Skid(wiring.Component):
    """Register slice: o.valid and o.payload come from registers, i.ready from a register;
    one transfer per cycle in steady state (a second register catches the word that arrives
    in the cycle o.ready falls)."""

    def __init__(self, shape):
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        spare = Signal.like(self.i.payload, name="spare")
        spare_valid = Signal(attrs={"max_fanout": 16})      # the spare's enables and i.ready: replicated
        m.d.comb += self.i.ready.eq(~spare_valid)
        take = self.i.valid & self.i.ready
        with m.If(~spare_valid):                             # the spare follows the input while free:
            m.d.sync += spare.eq(self.i.payload)             # its enable is a register, not o.ready
        with m.If(~self.o.valid | self.o.ready):            # output register free next cycle
            with m.If(spare_valid):
                m.d.sync += [self.o.payload.eq(spare), self.o.valid.eq(1), spare_valid.eq(0)]
            with m.Else():
                m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(self.i.valid)]
        with m.Elif(take):                                   # output stalled: keep the parked word
            m.d.sync += spare_valid.eq(1)
        return m
