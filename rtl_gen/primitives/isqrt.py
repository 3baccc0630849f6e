"""Integer square root: floor(sqrt(n)) by the restoring digit-by-digit algorithm of
golden.arith.isqrt_bitwise, one result bit per cycle (bits / 2 cycles, one in flight)."""
from __future__ import annotations

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out


class Isqrt(wiring.Component):
    """i_n: unsigned(bits) (bits even); o_root: unsigned(bits // 2)."""

    def __init__(self, bits: int = 62):
        if bits % 2:
            raise ValueError(f"Isqrt needs an even input width (got {bits})")
        self.bits = bits
        super().__init__({
            "i_n": In(stream.Signature(unsigned(bits))),
            "o_root": Out(stream.Signature(unsigned(bits // 2))),
        })

    def elaborate(self, platform):
        m = Module()
        half = self.bits // 2
        i_valid, i_ready = self.i_n.valid, self.i_n.ready
        o_valid, o_ready = self.o_root.valid, self.o_root.ready
        busy = Signal()
        step = Signal(range(half))
        n = Signal(self.bits)                   # shifts left two bits per step
        rem = Signal(half + 2)                  # rem <= 2 root
        root = self.o_root.payload
        cur = Signal(half + 4)
        trial = Signal(half + 3)

        m.d.comb += [
            i_ready.eq(~busy & ~o_valid),
            cur.eq((rem << 2) | n[-2:]),
            trial.eq((root << 2) | 1),
        ]
        with m.If(o_valid & o_ready):
            m.d.sync += o_valid.eq(0)
        with m.If(i_valid & i_ready):
            m.d.sync += [n.eq(self.i_n.payload), rem.eq(0), root.eq(0), step.eq(half - 1), busy.eq(1)]
        with m.If(busy):
            m.d.sync += n.eq(n << 2)
            with m.If(cur >= trial):
                m.d.sync += [rem.eq(cur - trial), root.eq((root << 1) | 1)]
            with m.Else():
                m.d.sync += [rem.eq(cur), root.eq(root << 1)]
            m.d.sync += step.eq(step - 1)
            with m.If(step == 0):
                m.d.sync += [busy.eq(0), o_valid.eq(1)]
        return m
