"""Piecewise-linear evaluation with a runtime table: golden.kernels.PWL.evaluate where the table
lives in a memory of the top (the MATMUL epilogue and DECIDE share it, loaded from the data
stream) and the geometry comes from a descriptor's pwl_* fields (golden/isa.py PWL_FIELDS).

    table_read(hw)   unit-side port of the table memory: addr, en -> data {base, slope} one
                     cycle later (synchronous read, held while en is low)
    PwlEval          one input per cycle, fixed latency LATENCY, no stalls

Arithmetic (docs/arithmetic.md, "Piecewise-linear units"), with f = in_frac:

    off = clamp(x - lo, 0, span - 1)            (no right clamp when `extend`), span = n_seg << shift
    k   = min(off >> shift, n_seg - 1);  d = off - (k << shift)
    y   = sat((base[k] + ((slope[k] d + 2^(f+5)) >> f)) >> 6)

which equals sat(rshift_round(base 2^f + slope d, f + 6)) exactly (base 2^f is a multiple of
2^f, so the division by 2^(f+6) splits into >> f then >> 6 without changing the floor), and
needs no 63-bit shifted base.
"""
from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden.hw import HardwareConfig
from golden.kernels import PWL_GUARD
from golden.stream import TABLE_BASE_BITS, TABLE_SLOPE_BITS

from .arith import sat

OFF_BITS = 19            # x - lo for a 17-bit x and an 18-bit lo: |x - lo| < 2^18
LATENCY = 3


def entry_layout() -> data.StructLayout:
    return data.StructLayout({"base": signed(TABLE_BASE_BITS), "slope": signed(TABLE_SLOPE_BITS)})


def table_read(hw: HardwareConfig) -> wiring.Signature:
    return wiring.Signature({"addr": Out(range(hw.pwl_max)), "en": Out(1), "data": In(entry_layout())})


def geometry_layout() -> data.StructLayout:
    """The descriptor's table geometry (golden.isa PWL_FIELDS without act / pwl_17)."""
    return data.StructLayout({"lo": signed(18), "shift": unsigned(5), "n_seg": unsigned(13), "extend": 1,
                              "frac": unsigned(5)})


def geometry_of(view) -> dict:
    """{geometry member: descriptor field} of a desc_view with PWL fields."""
    return {"lo": view.pwl_lo, "shift": view.pwl_shift, "n_seg": view.pwl_nseg, "extend": view.pwl_ext,
            "frac": view.pwl_frac}


class PwlEval(wiring.Component):
    """x (signed(in_bits), in_bits <= 17) in cycle k -> y (int16) valid in cycle k + LATENCY.

    `geo` must be stable from one cycle before the first input until the last result (the
    per-operation constants derived from it are registered). The table is read every cycle."""

    def __init__(self, hw: HardwareConfig, in_bits: int = 17):
        assert in_bits <= 17
        self.hw, self.in_bits = hw, in_bits
        super().__init__({"geo": In(geometry_layout()), "x": In(signed(in_bits)), "y": Out(signed(16)),
                          "table": Out(table_read(hw))})

    def elaborate(self, platform):
        m = Module()
        g, tab = self.geo, self.table
        top = (1 << OFF_BITS) - 1
        # per-operation constants (registered from the stable geometry)
        span_m1 = Signal(OFF_BITS)            # min(n_seg << shift, 2^19) - 1: the right clamp
        last_off = Signal(OFF_BITS + 1)       # (n_seg - 1) << shift, saturated at 2^19
        mask = Signal(32)                     # 2^shift - 1
        rnd = Signal(37)                      # 2^(frac + 5)
        span = Signal(13 + 32)
        lo_span = Signal(13 + 32)
        m.d.comb += [span.eq(g.n_seg << g.shift), lo_span.eq((g.n_seg - 1) << g.shift)]
        m.d.sync += [span_m1.eq(Mux(span > top, top, span - 1)),
                     last_off.eq(Mux(lo_span > top, top + 1, lo_span)),
                     mask.eq((Const(1, 33) << g.shift) - 1), rnd.eq(Const(1, 37) << (g.frac + 5))]

        # stage 0: offset, segment, table read
        raw = Signal(signed(OFF_BITS + 1))
        off = Signal(OFF_BITS)
        m.d.comb += raw.eq(self.x - g.lo)
        clamp_lo = Mux(raw < 0, 0, raw)
        m.d.comb += off.eq(Mux(~g.extend & (clamp_lo > span_m1), span_m1, clamp_lo))
        seg = Signal(OFF_BITS)
        m.d.comb += seg.eq(off >> g.shift)
        over = seg > g.n_seg - 1
        k = Signal(range(self.hw.pwl_max))
        m.d.comb += [k.eq(Mux(over, g.n_seg - 1, seg)), tab.addr.eq(k), tab.en.eq(1)]
        d1 = Signal(OFF_BITS)
        m.d.sync += d1.eq(Mux(over, off - last_off, off & mask))

        # stage 1: slope x d + rounding constant
        v2 = Signal(signed(TABLE_SLOPE_BITS + OFF_BITS + 2))
        base2 = Signal(signed(TABLE_BASE_BITS))
        m.d.sync += [v2.eq(tab.data.slope * d1 + rnd), base2.eq(tab.data.base)]

        # stage 2: y = sat((base + (v >> f)) >> 6)
        m.d.sync += self.y.eq(sat((base2 + (v2 >> g.frac)) >> PWL_GUARD, 16))
        return m
