"""Formal harness of the score capture (rtl_gen/array/score_capture.py) on a real score buffer:
the score it leaves for a key is golden's formula (golden/isa.py ATTENTION `score`)

    SB[j] := rshift_round((2^15 - t) SB[j] + t sum_h p23_h[j], 15)

for any old score, head count up to `heads_max` and CLS probabilities, through the
read-modify-write of the block RAM (the partial sums stored between heads and read back).

  asserted  for one key j chosen by the solver: the write that ends its last head lands on j's
            tile and lane, LATENCY cycles after that head's probability, with the value above;
            no other write touches j's lane
  assumed   what the softmax unit guarantees: heads 1..heads_max held for the operation; each
            key's probabilities (<= 2^23) come head 0, 1, .. in order, one item apart (`gap`
            cycles at least; the softmax emits one key per cycle, all keys of a head before the
            next head, so a key returns after n > 33 cycles); j's old score |SB[j]| < 2^32
            (docs/arithmetic.md: a compiled program stays inside); other keys arrive freely
            (their writes share j's tile)

    formal.prove(ScoreCaptureFormal(hw, momentum=2**14), depth=2 * (LATENCY + 1), workdir=path)  # bounded

The momentum t is a constant of the harness: with t = 0, 2^14 or 2^15 both products are shifts
and the proof takes seconds; for other t the solver would have to show two 48 x 16 constant
products through different multiplexers equal, which it did not finish in 5-10 minutes. The
products themselves are covered by the unit tests with arbitrary momenta
(tests/sim/test_array_unit.py); this harness is about the order of operations, the rounding and
the read-modify-write. `gap` = LATENCY is one cycle too soon (the key's read meets its own
pending write): the proof then fails, which is why the attention must not send a key twice
within LATENCY cycles.
"""
from __future__ import annotations

from amaranth.asserts import AnyConst
from amaranth.hdl import Assert, Assume, Mux, Signal, signed
from amaranth.lib import wiring

from golden.hw import HardwareConfig
from golden.isa import ONE_Q15, SCORE_BITS

from ..buffers.ports import lane_bits
from ..buffers.scores import ScoreBuffer
from ..tools import formal
from .score_capture import LATENCY, MOMENTUM_BITS, P_BITS, ScoreCapture

OLD_BOUND = 1 << 32                 # |old score| below it: the capture's sums stay exact


class ScoreCaptureFormal(wiring.Component):
    """`capture`: the design under proof (default ScoreCapture(hw))."""

    def __init__(self, hw: HardwareConfig, momentum: int, capture: ScoreCapture | None = None,
                 gap: int = LATENCY + 1, heads_max: int = 2):
        if not 0 <= momentum <= ONE_Q15:
            raise ValueError(f"momentum must lie in 0..{ONE_Q15} (got {momentum})")
        self.hw, self.momentum, self.capture = hw, momentum, capture or ScoreCapture(hw)
        self.gap, self.heads_max = gap, heads_max
        super().__init__({})

    def elaborate(self, platform):
        m = formal.harness_module()
        hw, cap = self.hw, self.capture
        m.submodules.dut = cap
        m.submodules.sb = sb = ScoreBuffer(hw)
        wiring.connect(m, cap.sr, sb.rd)
        wiring.connect(m, cap.sw, sb.wr)

        key, heads, t = AnyConst(range(hw.n_max)), AnyConst(range(32)), self.momentum
        i = cap.i
        m.d.comb += [cap.heads.eq(heads), cap.momentum.eq(t), *formal.free(i),
                     Assume((heads >= 1) & (heads <= self.heads_max)),
                     Assume(~i.valid | ((i.key < hw.n_max) & (i.head < heads) & (i.p <= 1 << (P_BITS - 1))))]

        # the tracked key: heads in order, `gap` cycles apart
        mine = Signal()
        seen = Signal(range(self.heads_max + 1))        # its heads so far
        since = Signal(range(self.gap + 1), init=self.gap)   # cycles since its last probability
        m.d.comb += [mine.eq(i.valid & (i.key == key)),
                     Assume(~mine | ((i.head == seen) & (since >= self.gap)))]
        m.d.sync += since.eq(Mux(mine, 1, Mux(since < self.gap, since + 1, since)))
        with m.If(mine):
            m.d.sync += seen.eq(Mux(seen + 1 == heads, 0, seen + 1))

        # the reference: its old score (read with head 0) and the sum of t p over its heads
        bits = lane_bits(hw.mac_rows)
        lane = key[:bits] if bits else 0
        read_lane = Signal(signed(SCORE_BITS))
        m.d.comb += read_lane.eq(sb.rd.data.as_value().word_select(lane, SCORE_BITS) if bits else sb.rd.data.as_value())
        first, old = Signal(), Signal(signed(SCORE_BITS))
        products = Signal(MOMENTUM_BITS + P_BITS + 2)
        m.d.sync += first.eq(mine & (i.head == 0))
        with m.If(mine):
            m.d.sync += products.eq(Mux(i.head == 0, 0, products) + t * i.p)
        with m.If(first):
            m.d.sync += old.eq(read_lane)
            m.d.comb += Assume((read_lane < OLD_BOUND) & (read_lane > -OLD_BOUND))
        expected = Signal(signed(SCORE_BITS))
        m.d.comb += expected.eq(((ONE_Q15 - t) * old + products + (1 << 14)) >> 15)

        # which of the tracked key's probabilities is LATENCY cycles old now
        arrived, last = [Signal(name=f"arrived{k}") for k in range(LATENCY)], \
                        [Signal(name=f"last{k}") for k in range(LATENCY)]
        m.d.sync += [arrived[0].eq(mine), last[0].eq(mine & (i.head == heads - 1))]
        m.d.sync += [a.eq(b) for a, b in zip(arrived[1:], arrived)] + [a.eq(b) for a, b in zip(last[1:], last)]

        written = Signal()
        wrote_lane = Signal(signed(SCORE_BITS))
        m.d.comb += [written.eq((cap.sw.tile == key >> bits) & cap.sw.en.bit_select(lane, 1)),
                     wrote_lane.eq(cap.sw.data.as_value().word_select(lane, SCORE_BITS) if bits
                                   else cap.sw.data.as_value())]
        with m.If(last[-1]):
            m.d.comb += [Assert(written, "score capture: the last head's write does not reach the key's lane"),
                         Assert(wrote_lane == expected, "score capture: final score differs from golden's formula")]
        with m.If(written & ~arrived[-1]):
            m.d.comb += Assert(0, "score capture: a write to the key's lane without its probability")
        return m
