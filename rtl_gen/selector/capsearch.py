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

from amaranth.hdl import Const, Module, Mux, Signal, signed
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
    """start (pulse) with ns, cap stable until done, top (bit length of the largest score, < 2^top)
    from the cycle after start; reads scores of tokens 1..ns, writes the final keep bit of each."""

    def __init__(self, hw: HardwareConfig, score_bits: int, bits: int = 3):
        if not 1 <= bits <= 6:
            raise ValueError(f"cap search bits per pass must lie in 1..6 (got {bits})")
        self.hw, self.score_bits, self.bits = hw, score_bits, bits
        n = range(hw.n_max + 1)
        super().__init__({"start": In(1), "ns": In(n), "cap": In(range(1 << 13)), "top": In(range(score_bits + 1)),
                          "done": Out(1), "rd": Out(score_read(hw, score_bits)), "wr": Out(keep_bit_write(hw))})

    def elaborate(self, platform):
        m = Module()
        b, n_cand = self.bits, (1 << self.bits) - 1
        value_bits = self.score_bits + b + 1          # candidates < 2^(ceil(top / b) b)
        hw = self.hw
        n = range(hw.n_max + 1)
        pos = Signal(range(value_bits + 1))           # the bit position this pass decides
        prefix = Signal(value_bits)                   # the threshold's bits above pos
        above = Signal(n)                             # gt: scores above the threshold
        counts = [Signal(n, name=f"count{j}") for j in range(1, n_cand + 1)]
        token = Signal(range(hw.tiles * hw.mac_rows + 1))
        score_arrives, score_token = Signal(), Signal.like(token)   # the score read last cycle
        score = self.rd.data
        final = Signal()                              # the final pass writes the keep bits
        ties_seen = Signal(n)                         # tokens scoring exactly the threshold so far
        ties_kept = Signal(range(1 << 13))            # cap - gt of them are kept

        # counting (passes) or deciding (final pass) on the score read in the previous cycle; the
        # keep bit is written a cycle later, from registers
        m.d.comb += self.rd.token.eq(token)
        # registered one cycle behind prefix / pos / above / counts, which a pass does not change
        # (the first score of a pass arrives two cycles after PICK; TALLY waits for `reaches`)
        candidates = [Signal(value_bits, name=f"candidate{j}") for j in range(1, n_cand + 1)]
        reaches = [Signal(name=f"reaches{j}") for j in range(1, n_cand + 1)]
        m.d.sync += [x.eq(prefix | (Const(j, b) << pos)) for j, x in enumerate(candidates, 1)]
        m.d.sync += [r.eq(c >= self.cap) for r, c in zip(reaches, counts)]
        m.d.sync += ties_kept.eq(self.cap - above)
        with m.If(score_arrives & ~final):
            for c, candidate in zip(counts, candidates):
                with m.If(score >= candidate):
                    m.d.sync += c.eq(c + 1)
        m.d.sync += [self.wr.en.eq(score_arrives & final), self.wr.token.eq(score_token),
                     self.wr.data.eq((score > prefix) | ((score == prefix) & (ties_seen < ties_kept)))]
        with m.If(score_arrives & final):
            tie = score == prefix
            with m.If(tie):
                m.d.sync += ties_seen.eq(ties_seen + 1)

        read = Signal()
        m.d.comb += [self.rd.en.eq(read)]
        last_token = Signal(name="last_token")        # token == ns, registered with token
        m.d.sync += last_token.eq(Mux(read, token + 1, 1) == self.ns)
        m.d.sync += [score_arrives.eq(read), score_token.eq(token)]
        # the counts fall with j, so `reaches` is a thermometer: the last candidate that reaches
        # cap becomes the prefix, the first that does not gives gt (one-hot selects of registers)
        last_reaching = [reaches[j] & ~reaches[j + 1] if j + 1 < n_cand else reaches[j] for j in range(n_cand)]
        first_short = [~reaches[j] & (reaches[j - 1] if j else 1) for j in range(n_cand)]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [prefix.eq(0), above.eq(0), token.eq(1), ties_seen.eq(0)] + [c.eq(0) for c in counts]
                    m.next = "FIRST"
            with m.State("FIRST"):                          # `top` may come from a register
                with m.Switch(self.top):                    # first position: (ceil(top / b) - 1) b
                    for t in range(1, self.score_bits + 1):
                        with m.Case(t):
                            m.d.sync += pos.eq((passes(t, b) - 1) * b)
                m.d.sync += final.eq(self.top == 0)
                m.next = "PASS"
            with m.State("PASS"):
                m.d.comb += read.eq(1)
                m.d.sync += token.eq(token + 1)
                with m.If(last_token):
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                m.next = "TALLY"
                with m.If(final):
                    m.next = "WRITE"
            with m.State("WRITE"):                      # the last keep bit is written
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"
            with m.State("TALLY"):                      # the last count lands, then `reaches`
                m.next = "PICK"
            with m.State("PICK"):
                m.d.sync += [token.eq(1)] + [c.eq(0) for c in counts]
                for j in range(n_cand):
                    with m.If(last_reaching[j]):
                        m.d.sync += prefix.eq(candidates[j])
                    with m.If(first_short[j]):
                        m.d.sync += above.eq(counts[j])
                with m.If(pos == 0):
                    m.d.sync += final.eq(1)
                with m.Else():
                    m.d.sync += pos.eq(pos - b)
                m.next = "PASS"
        return m
