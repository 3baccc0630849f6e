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

PwlEval is a fixed-latency pipeline: LATENCY = 3 register stages (table address from x in one
cycle; slope d + rounding; the sum, shift and saturation), or with `deep` DEEP_LATENCY = 10, each
stage one adder, compare or shift step, the table read or the product (docs/rtl.md, "Timing
budget"): clamp low, clamp high, segment and remainder, table address, table data, slope d (one
27 x 17 DSP product and a 27 x 2 fabric product), + rounding, >> f, + base, >> 6 and saturate.
Both compute the same function; the registers of the shallow one are a subset of the deep one's.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden.hw import HardwareConfig
from golden.kernels import PWL_GUARD
from golden.stream import TABLE_BASE_BITS, TABLE_SLOPE_BITS

from .arith import sat, thermometer

OFF_BITS = 19            # x - lo for a 17-bit x and an 18-bit lo: |x - lo| < 2^18
D_LO = 17                # slope x d = slope x d[:17] (a DSP) + slope x d[17:] (two fabric terms)
LATENCY = 3
DEEP_LATENCY = 10


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
    """x (signed(in_bits), in_bits <= 17) in cycle k -> y (int16) valid in cycle k + self.latency
    (LATENCY, or DEEP_LATENCY with `deep`).

    `geo` must be stable from one cycle (deep: three cycles) before the first input until the last
    result (the per-operation constants derived from it are registered). The table is read every
    cycle."""

    def __init__(self, hw: HardwareConfig, in_bits: int = 17, deep: bool = False):
        assert in_bits <= 17
        self.hw, self.in_bits, self.deep = hw, in_bits, deep
        self.latency = DEEP_LATENCY if deep else LATENCY
        super().__init__({"geo": In(geometry_layout()), "x": In(signed(in_bits)), "y": Out(signed(16)),
                          "table": Out(table_read(hw))})

    def elaborate(self, platform):
        m = Module()
        tab = self.table
        top = (1 << OFF_BITS) - 1

        def reg(value, name, always=False, attrs=None):
            """A register of the deep pipeline; of the shallow one too when `always`."""
            r = Signal(value.shape() if isinstance(value, data.View) else Value.cast(value).shape(), name=name,
                       attrs=attrs)
            if self.deep or always:
                m.d.sync += r.eq(value)
            else:
                m.d.comb += r.eq(value)
            return r
        # the geometry, registered where it arrives, and the constants from it: the epilogue's
        # PWL units' copies are one register after Yosys merges them (replicated, as Vivado would)
        fan = {"max_fanout": 16}
        g = reg(self.geo, "geo_q", attrs=fan)
        # per-operation constants from the stable geometry
        span, lo_span = reg(g.n_seg << g.shift, "span"), reg((g.n_seg - 1) << g.shift, "lo_span")
        # min(n_seg << shift, 2^19) - 1; (n_seg - 1) << shift saturated at 2^19
        span_m1 = reg(Mux(span > top, top, span - 1)[:OFF_BITS], "span_m1", True, fan)
        last_off = reg(Mux(lo_span > top, top + 1, lo_span)[:OFF_BITS + 1], "last_off", True, fan)
        nseg_m1 = reg((g.n_seg - 1)[:13], "nseg_m1", True, fan)
        # 2^shift - 1 and 2^(frac + 5) as a compare and a decode per bit (not a shifter after an adder)
        mask = reg(~thermometer(g.shift, 32), "mask", True, fan)
        rnd = reg(Cat(Const(0, 5), *(g.frac == j for j in range(32))), "rnd", True, fan)
        # 1, 2: x - lo clamped below at 0, then right (unless `extend`) at span - 1
        raw = Signal(signed(OFF_BITS + 1))
        m.d.comb += raw.eq(self.x - g.lo)
        low = reg(Mux(raw < 0, 0, raw)[:OFF_BITS], "low")
        off = reg(Mux(~g.extend & (low > span_m1), span_m1, low), "off")
        # past the last segment (seg > n_seg - 1), found with the clamp a stage early: without
        # `extend`, off <= span - 1 never is; with it, off = low >= span = n_seg << shift, i.e.
        # low > span_m1 (a checked geometry has 1 <= n_seg and span <= 2^17: golden/isa.py)
        past = reg(g.extend & (low > span_m1), "past")
        # 3: segment, remainder within it, remainder past the last segment's start
        seg = reg(off >> g.shift, "seg")
        d_in, d_past = reg(off & mask, "d_in"), reg((off - last_off)[:OFF_BITS], "d_past")
        # 4: the table address (read in this cycle; a select of registers), the remainder with it
        over = reg(past, "over")
        m.d.comb += [tab.addr.eq(Mux(over, nseg_m1, seg)), tab.en.eq(1)]
        d = reg(Mux(over, d_past, d_in), "d", True)
        # 5: the table entry; 6: slope d; 7: + 2^(f+5); 8: >> f; 9: + base; 10: >> 6, saturated
        slope, base = reg(tab.data.slope, "slope"), reg(tab.data.base, "base5")
        d5 = reg(d, "d5")
        p_lo = reg(slope * d5[:D_LO], "p_lo")
        p_hi = reg(Mux(d5[D_LO], slope, 0) + Mux(d5[D_LO + 1], slope << 1, 0), "p_hi")
        v = reg(p_lo + (p_hi << D_LO) + rnd, "v", True)
        vs = reg(v >> g.frac, "vs")
        base8 = reg(reg(reg(base, "base6", True), "base7"), "base8")
        t = reg(base8 + vs, "t")
        m.d.sync += self.y.eq(sat(t >> PWL_GUARD, 16))
        return m
