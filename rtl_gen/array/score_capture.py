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

Six stages, no back-pressure (the softmax's output is never stalled by it), each one lane
select, product, adder or rounding: read SB's tile; the key's lane and its weight (2^15 - t at
head 0, else 1); the products, the old score as two halves of 24 bits (one DSP48 each); the
halves summed; + t p23; rounded at the last head, then written with the key's lane enable. A key
is read again only by the next head, one softmax item (> 33 cycles) later, long after its write.
The partial sums X_j live in SB's 48 bits: exact while |(2^15 - t) SB[j]| + t A_j < 2^47 (a
captured score is below 31 x 2^23 < 2^28, so X_j < 2^44).
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden.hw import HardwareConfig
from golden.isa import ONE_Q15, SCORE_BITS
from golden.kernels import CLS_ATTN_FRAC

from ..buffers.ports import lane_bits, lane_select
from ..buffers.scores import score_read, score_write
from ..primitives.arith import product_latency, split_product

P_BITS = CLS_ATTN_FRAC + 1            # p23 <= 2^23
MOMENTUM_BITS = ONE_Q15.bit_length()  # t in 0..2^15
PRODUCT = product_latency(SCORE_BITS, MOMENTUM_BITS + 1)    # the old score x its weight (2)
LATENCY = 4 + PRODUCT                 # a probability in -> its SB write (6)


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
        m.d.sync += [tag[0].eq(self.i)] + [tag[k].eq(tag[k - 1]) for k in range(1, LATENCY)]
        m.d.comb += [self.sr.tile.eq(self.i.key >> bits), self.sr.en.eq(self.i.valid),
                     self.idle.eq(~Cat(x.valid for x in tag).any())]
        # the momentum's weights and the last head, registered (the descriptor's fields: fanout
        # and arithmetic off the path from the controller)
        t_r, old_weight, last_head = Signal(MOMENTUM_BITS), Signal(MOMENTUM_BITS + 1), Signal(range(32))
        m.d.sync += [t_r.eq(t), old_weight.eq(ONE_Q15 - t), last_head.eq(self.heads - 1)]
        # stage 1: the key's old score (its lane of the tile read, a mux tree from a replicated
        # copy of the key's lane bits) and its weight
        old, weight = Signal(signed(SCORE_BITS)), Signal(MOMENTUM_BITS + 1)
        if bits:
            key_lane = Signal(bits, name="key_lane", attrs={"max_fanout": 64})    # selects 48 R bits
            m.d.sync += key_lane.eq(self.i.key[:bits])
            lane = lane_select(self.sr.data, key_lane, SCORE_BITS, R)
        else:
            lane = self.sr.data.as_value()
        m.d.sync += [old.eq(lane), weight.eq(Mux(tag[0].head == 0, old_weight, 1))]
        # stages 2, 3: the products (split_product: the old score in two halves, then their sum)
        kept = split_product(m, old, weight, name="kept")
        added = [Signal(unsigned(MOMENTUM_BITS + P_BITS), name=f"added{k}") for k in range(PRODUCT)]
        m.d.sync += [added[0].eq(t_r * tag[1].p)] + [added[k].eq(added[k - 1]) for k in range(1, PRODUCT)]
        # stage 4: + t p23
        total = Signal(signed(len(kept) + 1))
        m.d.sync += total.eq(kept + added[-1])
        # stage 5: rounded after the last head; stage 6: written to the key's lane
        out = Signal(signed(SCORE_BITS), attrs={"max_fanout": 64})     # R lanes of the write
        m.d.sync += out.eq(Mux(tag[LATENCY - 2].head == last_head, (total + (1 << 14)) >> 15, total))
        key = tag[LATENCY - 1].key
        m.d.comb += [self.sw.tile.eq(key >> bits), self.sw.data.eq(out.replicate(R)),
                     self.sw.en.eq(Mux(tag[LATENCY - 1].valid, Const(1, R) << key[:bits] if bits else 1, 0))]
        return m
