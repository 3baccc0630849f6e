"""Width converter between streams of power-of-two widths: each wide input beat leaves as
in / out words (low bits first), or out / in input beats make one output word (the first beat
in the low bits). `flush` drops the rest of a held input beat (the padding at the end of a
stream item, golden/stream.py). `in_place` (narrowing only): the input beat is not copied into a
register but read where it is (a FIFO's memory: valid and payload hold until ready), and taken
with its last output word, so no enable fans out to in_bits register bits (`flush` only
restarts at the first output word: the beat stays the source's)."""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out


class Gearbox(wiring.Component):
    def __init__(self, in_bits: int, out_bits: int, in_place: bool = False):
        assert in_bits & (in_bits - 1) == 0 and out_bits & (out_bits - 1) == 0
        assert not in_place or out_bits < in_bits
        self.in_bits, self.out_bits, self.in_place = in_bits, out_bits, in_place
        super().__init__({"i": In(stream.Signature(in_bits)), "o": Out(stream.Signature(out_bits)),
                          "flush": In(1), "empty": Out(1)})

    def elaborate(self, platform):
        m = Module()
        i, o = self.i, self.o
        if self.out_bits == self.in_bits:
            m.d.comb += [o.valid.eq(i.valid), o.payload.eq(i.payload), i.ready.eq(o.ready), self.empty.eq(1)]
        elif self.in_place:
            k = self.in_bits // self.out_bits
            j = Signal(range(k), attrs={"max_fanout": 16})
            last = j == k - 1
            m.d.comb += [o.valid.eq(i.valid), o.payload.eq(i.payload.word_select(j, self.out_bits)),
                         i.ready.eq(o.ready & last), self.empty.eq(j == 0)]
            with m.If(o.valid & o.ready):
                m.d.sync += j.eq(Mux(last, 0, j + 1))
            with m.If(self.flush):
                m.d.sync += j.eq(0)
        elif self.out_bits < self.in_bits:
            k = self.in_bits // self.out_bits
            held, j = Signal(), Signal(range(k), attrs={"max_fanout": 16})     # selects every output bit
            beat = Signal(self.in_bits)
            last = j == k - 1
            take_o = o.valid & o.ready
            m.d.comb += [o.valid.eq(held), o.payload.eq(beat.word_select(j, self.out_bits)),
                         i.ready.eq(~held | (take_o & last)), self.empty.eq(~held)]
            with m.If(take_o):
                m.d.sync += j.eq(j + 1)
                with m.If(last):
                    m.d.sync += [held.eq(0), j.eq(0)]
            with m.If(i.valid & i.ready):
                m.d.sync += [held.eq(1), beat.eq(i.payload), j.eq(0)]
            with m.If(self.flush):
                m.d.sync += [held.eq(0), j.eq(0)]
        else:
            k = self.out_bits // self.in_bits
            word, n = Signal(self.out_bits), Signal(range(k + 1))
            full = n == k
            take_o, take_i = full & o.ready, i.valid & i.ready
            at = Signal(range(k))
            m.d.comb += [o.valid.eq(full), o.payload.eq(word), i.ready.eq(~full | o.ready), self.empty.eq(n == 0),
                         at.eq(Mux(take_o, 0, n))]
            with m.If(take_i):
                m.d.sync += word.word_select(at, self.in_bits).eq(i.payload)
            m.d.sync += n.eq(Mux(take_o, 0, n) + take_i)
            with m.If(self.flush):
                m.d.sync += n.eq(0)
        return m
