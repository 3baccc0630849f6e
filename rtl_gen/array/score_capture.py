"""ATTENTION's score capture (golden/isa.py ATTENTION `score`; golden/interp.py op_attention):
the CLS row of the block's own softmax summed over heads into the score buffer SB, with the
running-score momentum t, without a second pass over the attention:

    SB[j] := rshift_round((2^15 - t) SB[j] + t A_j, 15),   A_j = sum_h p23_h[0, j]

p23 is the softmax unit's CLS probability with 23 fraction bits (golden.kernels.cls_attention:
lane 0 of query tile 0). The softmax emits query tile 0's items first, head by head, key by key,
so each (head h, key j) arrives once and SB[j] is updated in place, read-modify-write:

    h = 0:      X_j  = (2^15 - t) SB[j] + t p23      (the old score weighed once)
    0 < h:      X_j += t p23
    h = H - 1:  SB[j] = rshift_round(X_j, 15)        (the one rounding of golden's formula)

Three stages, no back-pressure (the softmax's output is never stalled by it): read SB's tile,
the products, the sum and write with the key's lane enable. A key is read again only by the next
head, one softmax item (> 33 cycles) later, long after its write. The partial sums X_j live in
SB's 48 bits: exact while |(2^15 - t) SB[j]| + t A_j < 2^47 (a captured score is below
31 x 2^23 < 2^28, so X_j < 2^44).
"""
from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden.hw import HardwareConfig
from golden.isa import ONE_Q15, SCORE_BITS
from golden.kernels import CLS_ATTN_FRAC

from ..buffers.ports import lane_bits
from ..buffers.scores import score_read, score_write

P_BITS = CLS_ATTN_FRAC + 1            # p23 <= 2^23
MOMENTUM_BITS = ONE_Q15.bit_length()  # t in 0..2^15
LATENCY = 3                           # a probability in -> its SB write


def capture_layout(hw: HardwareConfig) -> data.StructLayout:
    """One CLS probability: key j of head `head` (p23, 23 fraction bits)."""
    return data.StructLayout({"valid": 1, "key": range(hw.n_max), "head": range(32), "p": unsigned(P_BITS)})


class ScoreCapture(wiring.Component):
    def __init__(self, hw: HardwareConfig):
        self.hw = hw
        super().__init__({"i": In(capture_layout(hw)), "heads": In(range(32)), "momentum": In(MOMENTUM_BITS),
                          "sr": Out(score_read(hw)), "sw": Out(score_write(hw)), "idle": Out(1)})

    def elaborate(self, platform):
        m = Module()
        R = self.hw.mac_rows
        bits = lane_bits(R)
        t = self.momentum
        tag = [Signal(capture_layout(self.hw), name=f"cap{k}") for k in range(LATENCY)]
        m.d.sync += [tag[0].eq(self.i), tag[1].eq(tag[0]), tag[2].eq(tag[1])]
        m.d.comb += [self.sr.tile.eq(self.i.key >> bits), self.sr.en.eq(self.i.valid),
                     self.idle.eq(~(tag[0].valid | tag[1].valid | tag[2].valid))]
        # stage 1: the key's old score (its lane of the tile read), the two products
        old = Signal(signed(SCORE_BITS))
        m.d.comb += old.eq(self.sr.data.as_value().word_select(tag[0].key[:bits], SCORE_BITS) if bits
                           else self.sr.data.as_value())
        kept, added = Signal(signed(SCORE_BITS + MOMENTUM_BITS + 1)), Signal(unsigned(MOMENTUM_BITS + P_BITS))
        m.d.sync += [kept.eq(Mux(tag[0].head == 0, (ONE_Q15 - t) * old, old)), added.eq(t * tag[0].p)]
        # stage 2: the sum, rounded after the last head; written to the key's lane
        total = Signal(signed(len(kept) + 1))
        m.d.sync += total.eq(kept + added)
        out = Signal(signed(SCORE_BITS))
        m.d.comb += out.eq(Mux(tag[2].head == self.heads - 1, (total + (1 << 14)) >> 15, total))
        m.d.comb += [self.sw.tile.eq(tag[2].key >> bits), self.sw.data.eq(out.replicate(R)),
                     self.sw.en.eq(Mux(tag[2].valid, Const(1, R) << tag[2].key[:bits] if bits else 1, 0))]
        return m
