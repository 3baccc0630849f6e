"""Normalising square root for LayerNorm, `lanes` values in lock step:
r = isqrt(V << 2k) with k = (62 - bitlen V) // 2 (golden.kernels.layernorm), and zsh = 46 - k.

No normalising shifter: the digit-by-digit square root (golden.arith.isqrt_bitwise) runs over V
in a frame of NP pairs and then over zero pairs. After j >= NP steps the partial root is
isqrt(V 4^(j - NP)), and for j <= NP it is below 2^29, so the first step at which it reaches
2^30 is j = NP + k: the lane freezes there (root and remainder keep their values) and a
per-lane down counter from 46 + NP, stopped at the same step, holds 46 - k. V >= 1 gives
k <= 30: NP + 30 steps finish every lane. Taken on i_v; o_r valid NP + 31 cycles later.
"""
from __future__ import annotations

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.kernels import LN_RECIP_BITS, LN_SQRT_BITS, LN_Z_FRAC

ROOT_BITS = LN_SQRT_BITS // 2                     # r in [2^30, 2^31)
ZSH_BITS = 6                                      # 46 - k in [16, 44]


def out_layout(lanes: int) -> data.StructLayout:
    return data.StructLayout({"r": data.ArrayLayout(unsigned(ROOT_BITS), lanes),
                              "zsh": data.ArrayLayout(unsigned(ZSH_BITS), lanes)})


class NormIsqrt(wiring.Component):
    """i_v: lanes x unsigned(v_bits <= 60), each >= 1; o_r {r, zsh} per lane."""

    def __init__(self, v_bits: int, lanes: int):
        if not 1 <= v_bits <= 60:          # NP <= 30 pairs: the root stays below 2^30 while V is read
            raise ValueError(f"NormIsqrt takes at most 60-bit values (got {v_bits})")
        self.v_bits, self.lanes = v_bits, lanes
        self.pairs = (v_bits + 1) // 2
        self.steps = self.pairs + ROOT_BITS - 1
        super().__init__({"i_v": In(stream.Signature(data.ArrayLayout(unsigned(v_bits), lanes))),
                          "o_r": Out(stream.Signature(out_layout(lanes)))})

    def elaborate(self, platform):
        m = Module()
        # every lane register hangs on `busy` and on `idle` (= ready: neither busy nor offering),
        # replicated registers; the lanes follow the input while idle, so the one they hold
        # when `busy` rises is the one taken
        fanout = {"max_fanout": 16}
        busy, idle = Signal(attrs=fanout), Signal(init=1, attrs=fanout)
        self.o_r.valid.attrs.update(fanout)          # (LayerNorm: every reciprocal's start)
        step = Signal(range(self.steps))
        take = self.i_v.valid & idle
        m.d.comb += self.i_v.ready.eq(idle)
        with m.If(self.o_r.valid & self.o_r.ready):
            m.d.sync += [self.o_r.valid.eq(0), idle.eq(1)]
        with m.If(take):
            m.d.sync += [busy.eq(1), idle.eq(0), step.eq(self.steps - 1)]
        with m.If(busy):
            m.d.sync += step.eq(step - 1)
            with m.If(step == 0):
                m.d.sync += [busy.eq(0), self.o_r.valid.eq(1)]
        for l in range(self.lanes):
            self._lane(m, l, idle, busy)
        return m

    def _lane(self, m, l, idle, busy):
        nb = 2 * self.pairs
        n = Signal(nb, name=f"n{l}")                        # V, two bits a step from the top
        rem = Signal(ROOT_BITS + 2, name=f"rem{l}")         # rem <= 2 root
        root = self.o_r.payload.r[l]
        zsh = self.o_r.payload.zsh[l]
        cur = Signal(ROOT_BITS + 4, name=f"cur{l}")
        trial = Signal(ROOT_BITS + 3, name=f"trial{l}")
        m.d.comb += [cur.eq((rem << 2) | n[nb - 2:]), trial.eq((root << 2) | 1)]
        with m.If(idle):
            m.d.sync += [n.eq(self.i_v.payload[l]), rem.eq(0), root.eq(0),
                         zsh.eq((LN_RECIP_BITS - LN_Z_FRAC + self.pairs) % (1 << ZSH_BITS))]   # mod 64: ends at 46 - k
        with m.If(busy & ~root[ROOT_BITS - 1]):
            m.d.sync += [n.eq(n << 2), zsh.eq(zsh - 1)]
            with m.If(cur >= trial):
                m.d.sync += [rem.eq(cur - trial), root.eq((root << 1) | 1)]
            with m.Else():
                m.d.sync += [rem.eq(cur), root.eq(root << 1)]
