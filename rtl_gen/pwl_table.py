"""Piecewise-linear activation with a loadable table and runtime geometry: golden.kernels.PWL
.evaluate where (lo, seg_shift, n_seg, extend, in_frac) come from the descriptor and (base,
slope) from a table the stream loader writes (golden/stream.py: pack_table).

    xc  = clamp(x, lo, hi - 1)  (no right clamp when extend),  hi = lo + (n_seg << seg_shift)
    k   = min((xc - lo) >> seg_shift, n_seg - 1);  d = xc - lo - (k << seg_shift)
    y   = sat16(round((base[k] << in_frac + slope[k] d) / 2^(in_frac + 6)))

`PwlTable` holds one table for `lanes` parallel lookups: ceil(lanes / 2) copies of a true
dual-port block RAM (two lanes per copy); the loader writes every copy at once. `pwl_index`
and `pwl_value` are the two halves of a lane (before and after the table read), written as
functions so that a unit can place them in its own pipeline.
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden.hw import HardwareConfig
from golden.kernels import PWL_GUARD
from golden.isa import PWL_SPAN_BITS
from golden.stream import TABLE_BASE_BITS, TABLE_SLOPE_BITS

from .arith import requant_var
from .ram import Ram2

ENTRY = data.StructLayout({"base": signed(TABLE_BASE_BITS), "slope": signed(TABLE_SLOPE_BITS)})
X_BITS = 17                       # 16-bit activations and the selector's 17-bit logit difference


def params_layout(hw: HardwareConfig) -> data.StructLayout:
    return data.StructLayout({"lo": signed(18), "shift": unsigned(5), "nseg": unsigned(13), "ext": 1,
                              "frac": unsigned(5), "hi": signed(20)})


def table_read(hw: HardwareConfig) -> wiring.Signature:
    """Unit side of one lookup lane (sync read)."""
    return wiring.Signature({"addr": Out(range(hw.pwl_max)), "en": Out(1), "data": In(ENTRY)})


def table_write(hw: HardwareConfig) -> wiring.Signature:
    return wiring.Signature({"addr": Out(range(hw.pwl_max)), "data": Out(ENTRY), "en": Out(1)})


def set_params(m, p, view, domain="sync"):
    """Statements loading the params layout `p` from a descriptor view with pwl_* fields."""
    return [p.lo.eq(view.pwl_lo), p.shift.eq(view.pwl_shift), p.nseg.eq(view.pwl_nseg), p.ext.eq(view.pwl_ext),
            p.frac.eq(view.pwl_frac), p.hi.eq(view.pwl_lo + (view.pwl_nseg << view.pwl_shift))]


def pwl_index(m, x, p, name: str):
    """(k, d) of input x (signed, <= 17 bits) under params p: comb Signals."""
    xc = Signal(signed(20), name=f"{name}_xc")
    m.d.comb += xc.eq(Mux(x < p.lo, p.lo, Mux(~p.ext & (x > p.hi - 1), p.hi - 1, x)))
    off = Signal(unsigned(PWL_SPAN_BITS), name=f"{name}_off")
    m.d.comb += off.eq(xc - p.lo)
    seg = off >> p.shift
    k = Signal(range(1 << 13), name=f"{name}_k")
    m.d.comb += k.eq(Mux(seg > p.nseg - 1, p.nseg - 1, seg))
    d = Signal(unsigned(PWL_SPAN_BITS), name=f"{name}_d")
    m.d.comb += d.eq(off - (k << p.shift))
    return k, d


def pwl_value(m, entry, d, p, name: str):
    """y (signed 16) from the table entry of the lane's segment and its offset d."""
    acc = Signal(signed(TABLE_BASE_BITS + 32), name=f"{name}_acc")
    m.d.comb += acc.eq((entry.base << p.frac) + entry.slope * d)
    return requant_var(m, acc, p.frac + PWL_GUARD, name=f"{name}_y")


class PwlTable(wiring.Component):
    """`lanes` read ports (`rd`: array of table_read) and one write port (`wr`)."""

    def __init__(self, hw: HardwareConfig, lanes: int):
        self.hw, self.lanes = hw, lanes
        super().__init__({"rd": In(table_read(hw)).array(lanes), "wr": In(table_write(hw))})

    def elaborate(self, platform):
        m = Module()
        w = ENTRY.size
        for i in range(-(-self.lanes // 2)):
            m.submodules[f"copy{i}"] = ram = Ram2(w, self.hw.pwl_max)
            a = self.rd[2 * i]
            m.d.comb += [ram.addr_a.eq(Mux(self.wr.en, self.wr.addr, a.addr)), ram.wdata_a.eq(self.wr.data),
                         ram.wen_a.eq(self.wr.en), ram.ren_a.eq(a.en), a.data.eq(ram.rdata_a)]
            if 2 * i + 1 < self.lanes:
                b = self.rd[2 * i + 1]
                m.d.comb += [ram.addr_b.eq(b.addr), ram.ren_b.eq(b.en), b.data.eq(ram.rdata_b)]
        return m
