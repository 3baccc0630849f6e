"""MAC array: rows x cols signed 16x16 multipliers (one DSP48E2 each) with 48-bit accumulators,
an outer-product tile engine for golden.arith.matmul.

Each beat of i_ab carries a[r] = X[n0 + r, k] (rows tokens) and b[c] = W[m0 + c, k] (cols
output channels) for one k; acc[r][c] += a[r] b[c]. `first` restarts the sums, `last` ends a
tile: the sums move to a shadow bank and leave on o_acc one column per beat (c = 0 .. cols - 1:
the sums of output channel m0 + c for all rows tokens) while the next tile accumulates. The
shadow bank takes a finished tile from the accumulators once it is free (the cycle after the
last beat at the earliest); until then the array takes no beat (acc must hold), so tiles of
depth K >= cols keep every multiplier busy.

Written for DSP48E2 packing: acc <= a b + (first ? 0 : acc) is the multiplier, the post-adder
with its Z mux switched by `first`, and the P register; nothing reads the sum before P (the
shadow bank copies acc the cycle after the last beat), so a tool that packs accumulators keeps
all 48 bits inside the DSP. (Debian's Yosys 0.23 packs them for DSP48E1 (-family xc7) but not for
DSP48E2; rtl_gen/tools/synthesis.py therefore maps the MAC array with -family xc7.)
Products are below 2^30 and K <= 4096, so sums stay below 2^42 (no overflow in 48 bits).
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..primitives.arith import ACC_BITS, WORD


def ab_layout(rows: int, cols: int) -> data.StructLayout:
    return data.StructLayout({"a": data.ArrayLayout(signed(WORD), rows), "b": data.ArrayLayout(signed(WORD), cols),
                              "first": 1, "last": 1})


def acc_layout(rows: int) -> data.StructLayout:
    return data.StructLayout({"acc": data.ArrayLayout(signed(ACC_BITS), rows), "last": 1})


class MacArray(wiring.Component):
    def __init__(self, rows: int, cols: int):
        self.rows, self.cols = rows, cols
        super().__init__({
            "i_ab": In(stream.Signature(ab_layout(rows, cols))),
            "o_acc": Out(stream.Signature(acc_layout(rows))),   # last marks column cols - 1
            "idle": Out(1),                                     # no finished tile held or draining
        })

    def elaborate(self, platform):
        m = Module()
        R, C = self.rows, self.cols
        i_valid, i_ready, ab = self.i_ab.valid, self.i_ab.ready, self.i_ab.payload
        o_valid, o_ready = self.o_acc.valid, self.o_acc.ready
        acc = [[Signal(signed(ACC_BITS), name=f"acc_{r}_{c}") for c in range(C)] for r in range(R)]
        shadow = [[Signal(signed(ACC_BITS), name=f"shadow_{r}_{c}") for c in range(C)] for r in range(R)]
        col = Signal(range(C))
        take = Signal()
        pending = Signal()          # acc holds a finished tile that the shadow bank has not taken
        free = Signal()             # the shadow bank is free (or frees this cycle)
        capture = Signal()

        m.d.comb += [free.eq(~o_valid | (o_ready & (col == C - 1))), capture.eq(pending & free),
                     i_ready.eq(~pending | free), take.eq(i_valid & i_ready), self.idle.eq(~pending & ~o_valid)]
        with m.Switch(col):
            for c in range(C):
                with m.Case(c):
                    m.d.comb += [self.o_acc.payload.acc[r].eq(shadow[r][c]) for r in range(R)]
        m.d.comb += self.o_acc.payload.last.eq(col == C - 1)

        with m.If(o_valid & o_ready):
            m.d.sync += col.eq(col + 1)
            with m.If(col == C - 1):
                m.d.sync += [o_valid.eq(0), col.eq(0)]
        with m.If(capture):
            m.d.sync += [shadow[r][c].eq(acc[r][c]) for r in range(R) for c in range(C)]
            m.d.sync += [o_valid.eq(1), col.eq(0)]
        m.d.sync += pending.eq((pending & ~capture) | (take & ab.last))
        with m.If(take):
            for r in range(R):
                for c in range(C):
                    m.d.sync += acc[r][c].eq(ab.a[r] * ab.b[c] + Mux(ab.first, 0, acc[r][c]))
        return m
