"""Piecewise-linear unit (GELU, sigmoid): golden.kernels.PWL.evaluate, tables from make_pwl in
a ROM (amaranth.lib.memory), three pipeline stages:

  1. xc = clamp(x); k = min((xc - lo) >> seg_shift, n_seg - 1); d = xc - lo - (k << seg_shift)
  2. read base[k], slope[k]
  3. y = sat16(round((base << in_frac + slope * d) / 2^(in_frac + 6)))
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.kernels import PWL, PWL_GUARD

from .arith import requant
from .pipe import stall_pipeline


def _signed_bits(values) -> int:
    lo, hi = min(int(v) for v in values), max(int(v) for v in values)
    return max(max(hi, 0).bit_length(), (-lo - 1).bit_length() if lo < 0 else 0) + 1


class PwlUnit(wiring.Component):
    """i_x: signed(in_bits); o_y: signed(16). `pwl` is a golden PWL (golden.kernels.make_pwl)."""

    def __init__(self, pwl: PWL):
        self.pwl = pwl
        self.base_bits = _signed_bits(pwl.base)
        self.slope_bits = _signed_bits(pwl.slope)
        super().__init__({
            "i_x": In(stream.Signature(signed(pwl.in_bits))),
            "o_y": Out(stream.Signature(signed(16))),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.pwl
        row = data.StructLayout({"base": signed(self.base_bits), "slope": signed(self.slope_bits)})
        m.submodules.rom = rom = memory.Memory(
            shape=row, depth=p.n_seg,
            init=[{"base": int(b), "slope": int(s)} for b, s in zip(p.base, p.slope)])
        rd = rom.read_port()
        en, _ = stall_pipeline(m, self.i_x, self.o_y, 3)

        x = self.i_x.payload
        hi = p.lo + (p.n_seg << p.seg_shift)
        xc = Signal(signed(p.in_bits + 1))
        off = Signal(unsigned(p.in_bits + 1))     # xc - lo >= 0
        k = Signal(range(p.n_seg))
        d = Signal(unsigned(p.in_bits + 1))   # the extended tail reaches past the last segment
        d2 = Signal.like(d)
        m.d.comb += xc.eq(Mux(x < p.lo, p.lo, x) if p.extend else
                          Mux(x < p.lo, p.lo, Mux(x > hi - 1, hi - 1, x)))
        m.d.comb += off.eq(xc - p.lo)
        seg = off >> p.seg_shift
        k_c = Mux(seg > p.n_seg - 1, p.n_seg - 1, seg)
        m.d.comb += [rd.en.eq(en), rd.addr.eq(k)]
        with m.If(en):
            m.d.sync += [k.eq(k_c), d.eq(off - (k_c << p.seg_shift))]
            m.d.sync += d2.eq(d)
            acc = (rd.data.base << p.in_frac) + rd.data.slope * d2
            m.d.sync += self.o_y.payload.eq(requant(acc, p.in_frac + PWL_GUARD))
        return m
