"""DECIDE's optional cap (golden/interp.py Machine.op_decide): of the kept scored tokens (score
>= 0) keep only the `cap` with the highest score, ties to the lower token index. Instead of
ranking every token (ns^2 comparisons) it searches the threshold score v:

    v     = the largest value with #{i : score_i >= v} >= cap     (v >= 0: more than cap are kept)
    gt    = #{i : score_i > v}  (< cap)
    keep_i = score_i > v  or  (score_i == v  and  i is among the first cap - gt tokens scoring v)

v is found `bits` bits per pass from the most significant end: a pass reads every score once
(one per cycle) and counts, for each of the 2^bits - 1 candidates prefix + j 2^pos, the scores
>= it; the new prefix takes the largest j whose count still reaches cap (the counts fall with
j, so that j is the number of counts >= cap). The search starts at the bit length `top` of the
largest score (no score reaches 2^top), so it takes ceil(top / bits) passes and `gt` is the
count of the lowest rejected candidate, tracked on the way. A final pass writes every keep bit.
cap = 0 falls out of the same rule (v above every score, nothing kept).
"""
from __future__ import annotations

from amaranth.hdl import Const, Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.hw import HardwareConfig


def score_read(hw: HardwareConfig, bits: int) -> wiring.Signature:
    return wiring.Signature({"token": Out(range(hw.tiles * hw.mac_rows)), "en": Out(1), "data": In(signed(bits))})


def keep_bit_write(hw: HardwareConfig) -> wiring.Signature:
    return wiring.Signature({"token": Out(range(hw.tiles * hw.mac_rows)), "data": Out(1), "en": Out(1)})


def passes(top: int, bits: int) -> int:
    """Counting passes before the final pass."""
    return -(-top // bits)


class CapSearch(wiring.Component):
    """start (pulse) with ns, cap, top (bit length of the largest score, < 2^top) stable until
    done; reads scores of tokens 1..ns, writes the final keep bit of each."""

    def __init__(self, hw: HardwareConfig, score_bits: int, bits: int = 3):
        if not 1 <= bits <= 6:
            raise ValueError(f"cap search bits per pass must lie in 1..6 (got {bits})")
        self.hw, self.score_bits, self.bits = hw, score_bits, bits
        n = range(hw.n_max + 1)
        super().__init__({"start": In(1), "ns": In(n), "cap": In(range(1 << 13)), "top": In(range(score_bits + 1)),
                          "done": Out(1), "rd": Out(score_read(hw, score_bits)), "wr": Out(keep_bit_write(hw))})

    def elaborate(self, platform):
        m = Module()
        b, nc = self.bits, (1 << self.bits) - 1
        vb = self.score_bits + b + 1                  # candidates < 2^(ceil(top / b) b)
        hw = self.hw
        pos = Signal(range(vb + 1))
        prefix = Signal(vb)
        upper = Signal(range(hw.n_max + 1))
        cnt = [Signal(range(hw.n_max + 1), name=f"cnt{j}") for j in range(1, nc + 1)]
        j = Signal(range(hw.tiles * hw.mac_rows + 1))
        v1 = Signal()                                 # a score arrives this cycle
        tok1 = Signal.like(j)
        data = self.rd.data
        final = Signal()
        eq_seen = Signal(range(hw.n_max + 1))
        need = Signal(range(1 << 13))

        # counting (passes) or deciding (final pass) on the score read in the previous cycle
        m.d.comb += [self.wr.token.eq(tok1), self.rd.token.eq(j)]
        with m.If(v1 & ~final):
            for jj, c in enumerate(cnt, 1):
                with m.If(data >= (prefix | (Const(jj, b) << pos))):
                    m.d.sync += c.eq(c + 1)
        with m.If(v1 & final):
            tie = data == prefix
            m.d.comb += [self.wr.en.eq(1), self.wr.data.eq((data > prefix) | (tie & (eq_seen < need)))]
            with m.If(tie):
                m.d.sync += eq_seen.eq(eq_seen + 1)

        read = Signal()
        m.d.comb += [self.rd.en.eq(read)]
        m.d.sync += [v1.eq(read), tok1.eq(j)]
        pick = Signal(range(nc + 1))
        m.d.comb += pick.eq(sum((c >= self.cap) for c in cnt))
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [prefix.eq(0), upper.eq(0), j.eq(1), eq_seen.eq(0)] + [c.eq(0) for c in cnt]
                    with m.Switch(self.top):                # first position: (ceil(top / b) - 1) b
                        for t in range(1, self.score_bits + 1):
                            with m.Case(t):
                                m.d.sync += pos.eq((passes(t, b) - 1) * b)
                    m.d.sync += final.eq(self.top == 0)
                    m.next = "PASS"
            with m.State("PASS"):
                m.d.comb += read.eq(1)
                m.d.sync += j.eq(j + 1)
                with m.If(j == self.ns):
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(final):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.next = "PICK"
            with m.State("PICK"):
                m.d.sync += [prefix.eq(prefix | (pick << pos)), j.eq(1)] + [c.eq(0) for c in cnt]
                for jj in range(nc):
                    with m.If(pick == jj):
                        m.d.sync += upper.eq(cnt[jj])
                with m.If(pos == 0):
                    m.d.sync += final.eq(1)
                with m.Else():
                    m.d.sync += pos.eq(pos - b)
                m.next = "PASS"
        m.d.comb += need.eq(self.cap - upper)
        return m
