"""MAC array: rows x cols signed 16x16 multipliers (one DSP48E2 each) with 48-bit accumulators,
an outer-product tile engine for golden.arith.matmul.

Each beat of i_ab carries a[r] = X[n0 + r, k] (rows tokens) and b[c] = W[m0 + c, k] (cols
output channels) for one k; acc[r][c] += a[r] b[c]. `first` restarts the sums, `last` ends a
tile: the sums move to a shadow bank and leave on o_acc one column per beat (c = 0 .. cols - 1:
the sums of output channel m0 + c for all rows tokens) while the next tile accumulates.

Pipeline, every stage registered (docs/rtl.md, "Timing budget"):

    i_ab -> operand registers (a, b, first, last) -> DSP: acc = a b + (first ? 0 : acc)
         -> shadow bank (capture) -> column register (o_acc)

The operand registers broadcast a[r] to the cols DSPs of row r and b[c] to the rows DSPs of
column c and load every cycle; the accumulators' enable, `first` (the DSP's Z multiplexer) and
the shadow bank's capture are registers marked max_fanout, which Vivado replicates. Nothing
downstream reaches back into the array combinationally: i_ab is ready unless it offers a tile's
first beat while the previous tile could not yet move to the shadow bank (`tile_ok`, a
register: at most one finished tile waits in the accumulators, and it moves once the shadow
bank has drained), so tiles of depth K >= cols keep every multiplier busy.

Written for DSP48 packing: acc <= a b + (first ? 0 : acc) is the multiplier, the post-adder
with its Z mux switched by `first`, the P register (clock enable: the beat's valid). Debian's
Yosys 0.23 packs it for DSP48E1 (-family xc7) but not for DSP48E2, so
rtl_gen/tools/synthesis.py maps the MAC array with -family xc7. Products are below 2^30 and
K <= 4096, so sums stay below 2^42 (no overflow in 48 bits).
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..primitives.arith import ACC_BITS, WORD

FANOUT = 64          # max_fanout of the registers that drive every DSP or shadow register
CAPTURE_DELAY = 2    # a tile's last beat taken -> the earliest capture into the shadow bank
DRAIN_DELAY = 2      # a capture -> its first column on o_acc


def ab_layout(rows: int, cols: int) -> data.StructLayout:
    return data.StructLayout({"a": data.ArrayLayout(signed(WORD), rows), "b": data.ArrayLayout(signed(WORD), cols),
                              "first": 1, "last": 1})


def acc_layout(rows: int) -> data.StructLayout:
    return data.StructLayout({"acc": data.ArrayLayout(signed(ACC_BITS), rows), "last": 1})


def wide(name: str, shape=1) -> Signal:
    """A register that drives many loads: Vivado replicates it (max_fanout)."""
    return Signal(shape, name=name, attrs={"max_fanout": FANOUT})


class MacArray(wiring.Component):
    def __init__(self, rows: int, cols: int):
        self.rows, self.cols = rows, cols
        super().__init__({
            "i_ab": In(stream.Signature(ab_layout(rows, cols))),
            "o_acc": Out(stream.Signature(acc_layout(rows))),   # last marks column cols - 1
            "idle": Out(1),                                     # no beat, finished tile or column in the array
        })

    def elaborate(self, platform):
        m = Module()
        R, C = self.rows, self.cols
        acc = [[Signal(signed(ACC_BITS), name=f"acc_{r}_{c}") for c in range(C)] for r in range(R)]
        shadow = [[Signal(signed(ACC_BITS), name=f"shadow_{r}_{c}") for c in range(C)] for r in range(R)]
        a = [Signal(signed(WORD), name=f"a_{r}") for r in range(R)]
        b = [Signal(signed(WORD), name=f"b_{c}") for c in range(C)]
        valid, first, last = wide("beat_valid"), wide("beat_first"), Signal(name="beat_last")

        # entry: the operand registers; a tile's first beat waits for tile_ok
        tile_ok = Signal(init=1)
        take = Signal()
        ab = self.i_ab.payload
        m.d.comb += [self.i_ab.ready.eq(~ab.first | tile_ok), take.eq(self.i_ab.valid & self.i_ab.ready)]
        m.d.sync += [valid.eq(take), first.eq(ab.first), last.eq(take & ab.last)]
        # loaded every cycle (no enable: `take` would fan out to rows x cols x 16 operand bits);
        # the accumulators use them only in the cycle after a take
        m.d.sync += [a[r].eq(ab.a[r]) for r in range(R)] + [b[c].eq(ab.b[c]) for c in range(C)]

        # the accumulators (DSP P registers)
        with m.If(valid):
            for r in range(R):
                for c in range(C):
                    m.d.sync += acc[r][c].eq(a[r] * b[c] + Mux(first, 0, acc[r][c]))

        # finished tiles: `held` in the accumulators, `pending` entered but not captured;
        # `full`: the shadow bank drains; every decision below is registered one cycle ahead
        held, full = Signal(), Signal()
        pending = Signal(range(3))
        capture = wide("capture")
        col = wide("drain_col", range(C))
        col_last = Signal(init=C == 1)     # col == C - 1, kept beside col: no compare behind its fanout
        o_valid = self.o_acc.valid
        drain = Signal()
        m.d.comb += drain.eq(full & (~o_valid | self.o_acc.ready))
        drained = drain & col_last
        held_next = (held & ~capture) | last
        full_next = (full & ~drained) | capture
        pending_next = Signal(range(3))
        m.d.comb += pending_next.eq(pending + (take & ab.last) - capture)
        m.d.sync += [held.eq(held_next), full.eq(full_next), pending.eq(pending_next),
                     capture.eq(held_next & ~full_next),
                     tile_ok.eq((pending_next == 0) | ((pending_next == 1) & ~full_next))]
        with m.If(capture):
            m.d.sync += [shadow[r][c].eq(acc[r][c]) for r in range(R) for c in range(C)]

        # drain: one column per beat into the output register
        with m.If(o_valid & self.o_acc.ready):
            m.d.sync += o_valid.eq(0)
        with m.If(drain):
            m.d.sync += [o_valid.eq(1), col.eq(Mux(col_last, 0, col + 1)), self.o_acc.payload.last.eq(col_last),
                         col_last.eq(Mux(col_last, C == 1, col == C - 2))]
            with m.Switch(col):
                for c in range(C):
                    with m.Case(c):
                        m.d.sync += [self.o_acc.payload.acc[r].eq(shadow[r][c]) for r in range(R)]
        m.d.comb += self.idle.eq(~valid & ~held & ~full & ~o_valid & (pending == 0))
        return m
