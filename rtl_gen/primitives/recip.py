"""Reciprocal unit: q = floor(2^k / d) (golden.arith.recip), a non-restoring divider that retires
one quotient bit per cycle, one division in flight. Non-restoring: the partial remainder r may
go negative, and the next step adds d or subtracts it by r's sign bit (a register), so a step is
one operand select and one adder; the quotient bit (the new r >= 0) is the restoring divider's
(trial >= d).

With a known lower bound d >= 2^b the top quotient bits are known to be zero: the numerator 2^k
has a single one, so after its top b bits the partial remainder is 2^(b - 1) < d. The divider
starts there and runs k - b + 1 steps (LayerNorm: 2^62 / r with r >= 2^30 in 33 cycles instead
of 63; softmax: 2^46 / S with S >= 2^15 in 32 instead of 47). b = 0 (any d >= 1) is the plain
divider. o_q is valid k - b + 2 cycles after the i_d transfer.
"""
from __future__ import annotations

from amaranth.hdl import Assert, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out


class Reciprocal(wiring.Component):
    """i_d: unsigned(d_bits) divisor, d >= 2^b (b = 0: d >= 1); o_q: unsigned(k - b + 1)."""

    def __init__(self, d_bits: int, k: int, b: int = 0):
        if not 0 <= b < d_bits or b > k:
            raise ValueError(f"Reciprocal needs 0 <= b < d_bits and b <= k (b={b}, d_bits={d_bits}, k={k})")
        self.d_bits, self.k, self.b = d_bits, k, b
        self.steps = k - b + 1
        super().__init__({
            "i_d": In(stream.Signature(unsigned(d_bits))),
            "o_q": Out(stream.Signature(unsigned(self.steps))),
        })

    def elaborate(self, platform):
        m = Module()
        i_valid, i_ready = self.i_d.valid, self.i_d.ready
        o_valid, o_ready = self.o_q.valid, self.o_q.ready
        busy = Signal()
        step = Signal(range(self.steps))
        d, minus_d = Signal(self.d_bits), Signal(signed(self.d_bits + 1))
        rem = Signal(signed(self.d_bits + 1))   # -d <= rem < d after every step
        trial = Signal(signed(self.d_bits + 2))
        nxt = Signal(signed(self.d_bits + 2))
        q = self.o_q.payload
        m.d.comb += i_ready.eq(~busy & ~o_valid)
        if self.b == 0:             # the numerator's one enters the remainder at the first step
            m.d.comb += trial.eq((rem << 1) | (step == self.steps - 1))
        else:                       # it is already in the starting remainder
            m.d.comb += trial.eq(rem << 1)
        m.d.comb += nxt.eq(trial + Mux(rem[-1], d, minus_d))
        with m.If(o_valid & o_ready):
            m.d.sync += o_valid.eq(0)
        with m.If(i_valid & i_ready):
            m.d.sync += [d.eq(self.i_d.payload), minus_d.eq(-self.i_d.payload), rem.eq((1 << self.b) >> 1),
                         q.eq(0), step.eq(self.steps - 1), busy.eq(1)]
        with m.If(busy):
            m.d.sync += [rem.eq(nxt), q.eq((q << 1) | ~nxt[-1]), step.eq(step - 1)]
            with m.If(step == 0):
                m.d.sync += [busy.eq(0), o_valid.eq(1)]
        if platform == "formal":    # invariant for k-induction (rtl_gen/tools/formal.py): q holds while offered
            m.d.comb += Assert(~(busy & o_valid), "recip: dividing while the quotient is offered")
        return m
