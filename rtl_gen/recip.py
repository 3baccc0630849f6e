"""Reciprocal unit: q = floor(2^k / d) for d >= 1 (golden.arith.recip), a restoring divider
that retires one quotient bit per cycle (k + 1 cycles per reciprocal, one in flight)."""
from __future__ import annotations

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out


class Reciprocal(wiring.Component):
    """i_d: unsigned(d_bits) divisor (>= 1); o_q: unsigned(k + 1) quotient floor(2^k / d)."""

    def __init__(self, d_bits: int, k: int):
        self.d_bits, self.k = d_bits, k
        super().__init__({
            "i_d": In(stream.Signature(unsigned(d_bits))),
            "o_q": Out(stream.Signature(unsigned(k + 1))),
        })

    def elaborate(self, platform):
        m = Module()
        k = self.k
        i_valid, i_ready = self.i_d.valid, self.i_d.ready
        o_valid, o_ready = self.o_q.valid, self.o_q.ready
        busy = Signal()
        step = Signal(range(k + 1))
        d = Signal(self.d_bits)
        rem = Signal(self.d_bits + 1)           # rem < d after every step
        q = self.o_q.payload
        trial = Signal(self.d_bits + 2)

        m.d.comb += [
            i_ready.eq(~busy & ~o_valid),
            trial.eq((rem << 1) | (step == k)),  # next numerator bit: 2^k has a single 1
        ]
        with m.If(o_valid & o_ready):
            m.d.sync += o_valid.eq(0)
        with m.If(i_valid & i_ready):
            m.d.sync += [d.eq(self.i_d.payload), rem.eq(0), q.eq(0), step.eq(k), busy.eq(1)]
        with m.If(busy):
            with m.If(trial >= d):
                m.d.sync += [rem.eq(trial - d), q.eq((q << 1) | 1)]
            with m.Else():
                m.d.sync += [rem.eq(trial), q.eq(q << 1)]
            m.d.sync += step.eq(step - 1)
            with m.If(step == 0):
                m.d.sync += [busy.eq(0), o_valid.eq(1)]
        return m
