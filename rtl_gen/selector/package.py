"""PACKAGE: the package token of the tokens the latest decision dropped (golden/interp.py
Machine.op_package = golden.layers.package), channels 0..d-1:

    acc[c] = sum over dropped scored tokens i of m_i x_i[c]      (mode mean: m_i = 1; scores: SB[i])
    total  = sum of those m_i                                    (mean: their count)
    sum:        requant(acc, 15)
    norm, mean: 0 if total == 0 else requant(acc recip(total, 46), 46)    (0 if nothing dropped)
    scores:     requant(acc mult, shift)                         (EViT's fused token)

Mode scores weighs by the score buffer (a top-k decision's candidates: EViT's CLS attention
summed over heads, below 31 x 2^23 < 2^28: SCORE_WEIGHT_BITS). The sums are exact while the
dropped tokens' weights add up to less than 2^32 (|acc| < 2^47; EViT's add up to at most
H (2^23 + N / 2): CLS probabilities of each head sum to about 1).

Schedule (package_cycles is exact): after START cycles (ns and the last tile registered), per
token tile t holding scored tokens, the keep mask is read; a tile without dropped tokens is
skipped. Otherwise the R weights (m or 1 of dropped lanes, 0 elsewhere) are read into a ring
register (R cycles), then each channel word of the tile passes `lanes` multipliers, R / lanes
cycles per word, into per-channel 48-bit sums in a RAM. After the tiles: one reciprocal (norm /
mean), then one pass over the channels writes the result to the package RAM that COMPACT reads
(`pkg`, a synchronous read port): one requantiser with a runtime shift for every mode (15, 46 or
the descriptor's), PIPE_REQUANT stages.
"""
from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden.hw import HardwareConfig
from golden.isa import PACKAGE_MODES, SCORE_BITS
from golden.layers import PACK_RECIP_BITS

from ..buffers import ports
from ..buffers.scores import score_read
from ..control.decode import desc_view
from ..primitives.arith import ACC_BITS, PIPE_REQUANT, pipe_stage, product_latency, requant_uvar, split_product
from ..primitives.ram import Ram
from ..primitives.recip import Reciprocal
from .state import M_BITS, m_read, mask_read, scored_lanes

SUM, MEAN, SCORES = PACKAGE_MODES["sum"], PACKAGE_MODES["mean"], PACKAGE_MODES["scores"]
ACC_USED = ACC_BITS      # |acc| < 2^15 x 2^15 x 4096 = 2^42; scores: < 2^47 while the weights sum below 2^32
SCORE_WEIGHT_BITS = 29   # a captured score: sum of <= 31 heads' 23-bit CLS probabilities, < 2^28
WEIGHT_BITS = max(M_BITS, SCORE_WEIGHT_BITS)
TOTAL_BITS = 28          # total < 2^15 x 4096
FACTOR_BITS = PACK_RECIP_BITS + 1                       # recip(total, 46) < 2^47; mult: 21 bits
SCALE_LATENCY = product_latency(ACC_USED, FACTOR_BITS)  # the sum x factor (split_product)
START = 1                # start -> the first READ_MASK (SIZE: ns registered)
MASK_STEPS = 4           # a tile's READ_MASK, TAKE_MASK, SKIP and NEXT
PRODUCT_LATENCY = product_latency(16, WEIGHT_BITS)      # a word's lane x its weight (split_product)
ARRIVE = ports.READ_LATENCY                             # the channel pipeline's stage a word arrives in
ACC = ARRIVE + 2 + PRODUCT_LATENCY                      # the stage adding to the sum
CH_STAGES = ACC + 2                                     # then the acc_ram write


def pkg_read(hw: HardwareConfig) -> wiring.Signature:
    return wiring.Signature({"ch": Out(range(hw.d_max)), "en": Out(1), "data": In(signed(16))})


def default_lanes(hw: HardwareConfig) -> int:
    return max(1, hw.mac_rows // 4)


class Package(wiring.Component):
    """`lanes` multipliers (default mac_rows / 4) weigh the lanes of a channel word."""

    def __init__(self, hw: HardwareConfig, lanes: int | None = None):
        L = lanes or default_lanes(hw)
        if hw.mac_rows % L:
            raise ValueError(f"package lanes must divide mac_rows ({hw.mac_rows} % {L} != 0)")
        self.hw, self.lanes = hw, L
        super().__init__({**ports.control(hw), "rd": Out(ports.tok_read(hw)), "mask": Out(mask_read(hw)),
                          "mr": Out(m_read(hw)), "sb": Out(score_read(hw)), "pkg": In(pkg_read(hw)),
                          "pkg_d": Out(13)})

    def elaborate(self, platform):
        m = Module()
        hw, R = self.hw, self.hw.mac_rows
        desc = desc_view("PACKAGE", ports.held(m, self.desc, "desc"))
        # ns, then the last tile and a tile's scored lanes, registered (SIZE waits for them)
        ns, last_tile = Signal(range(hw.n_max + 1), name="ns"), Signal(range(hw.tiles), name="last_tile")
        m.d.sync += [ns.eq(self.rows - 1 - desc.n_pkg), last_tile.eq(ns >> ports.lane_bits(R))]
        m.submodules.acc_ram = acc_ram = Ram(ACC_BITS, hw.d_max)         # per-channel sums
        m.submodules.pkg_ram = pkg_ram = Ram(16, hw.d_max)               # the package token, for COMPACT
        m.submodules.recip = recip = Reciprocal(TOTAL_BITS, PACK_RECIP_BITS)
        m.d.comb += [pkg_ram.raddr.eq(self.pkg.ch), pkg_ram.ren.eq(self.pkg.en), self.pkg.data.eq(pkg_ram.rdata)]
        # the registers the sequence steps through
        reg = SimpleNamespace(
            tile=Signal(range(hw.tiles + 1), name="tile"),
            ch=Signal(range(hw.d_max + 1), name="ch"),
            step=Signal(range(max(R // self.lanes, 2)), name="step"),          # lanes of a word done: step L
            total=Signal(TOTAL_BITS, name="total"),                          # sum of the dropped tokens' weights
            acc_valid=Signal(name="acc_valid"),                              # a tile accumulated: acc_ram holds sums
            recip_total=Signal(PACK_RECIP_BITS + 1, name="recip_total"))     # recip(total, 46)
        m.d.comb += [self.sb.tile.eq(reg.tile)]
        ring = self._weight_ring(m, desc, ns, reg)
        ch_stage = self._channel_pipeline(m, desc, reg, ring.weights, acc_ram)
        out_stage = self._output_pass(m, desc, reg, acc_ram, pkg_ram)
        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [reg.tile.eq(0), reg.total.eq(0), reg.acc_valid.eq(0)]
                    m.next = "SIZE"
            with m.State("SIZE"):
                m.next = "READ_MASK"
            self._tile_states(m, desc, last_tile, reg, ring, ch_stage)
            self._result_states(m, desc, reg, recip, acc_ram, out_stage)
        fsm.state.attrs["max_fanout"] = 16           # decoded by the reciprocal's and the ring's enables
        return m

    def _weight_ring(self, m, desc, ns, reg):
        """The weights of the tile's lanes (m of a dropped scored token, 1 in mode mean, its SB
        score in mode scores; 0 for every other lane): one m (or SB) read per lane (LOAD), each
        result pushed in at the top of a ring of R values and added to `total`. `dropped`: the
        tile's dropped scored lanes."""
        hw, R = self.hw, self.hw.mac_rows
        ring = SimpleNamespace(
            weights=Signal(data.ArrayLayout(signed(WEIGHT_BITS), R), name="weights"),
            dropped=Signal(R, name="dropped"),
            drop=Signal(R, name="drop"),                # lane 0: is the lane whose m arrives dropped
            m_arrives=Signal(name="m_arrives"),         # an m read returns this cycle
            lane=Signal(range(R + 1), name="load_lane"),
            sb_lane=Signal(range(R), name="sb_lane"))   # the lane whose SB read arrives
        m.d.comb += [self.mr.token.eq(reg.tile * R + ring.lane), self.mask.tile.eq(reg.tile)]
        score = Signal(signed(WEIGHT_BITS))
        lane_score = ports.lane_select(self.sb.data, ring.sb_lane, SCORE_BITS, R)
        m.d.comb += score.eq(lane_score[:WEIGHT_BITS].as_signed())
        # the weight registered, then pushed and added to `total` a cycle later (the last one
        # still before the first channel word's product)
        weight, weight_valid = Signal(signed(WEIGHT_BITS)), Signal()
        m.d.sync += weight_valid.eq(ring.m_arrives)
        with m.If(ring.m_arrives):
            m.d.sync += [weight.eq(Mux(ring.drop[0], Mux(desc.mode == MEAN, 1,
                                                         Mux(desc.mode == SCORES, score, self.mr.m)), 0)),
                         ring.drop.eq(ring.drop >> 1)]
        with m.If(weight_valid):
            pushed = (ring.weights.as_value() >> WEIGHT_BITS) | (weight.as_unsigned() << (WEIGHT_BITS * (R - 1)))
            m.d.sync += [ring.weights.eq(pushed), reg.total.eq(reg.total + weight)]
        scored = Signal(R, name="scored")              # the tile's scored lanes (from READ_MASK on)
        m.d.sync += scored.eq(scored_lanes(m, reg.tile, ns, hw, "pk_scored"))
        m.d.comb += ring.dropped.eq(scored & ~self.mask.keep)
        return ring

    def _channel_pipeline(self, m, desc, reg, weights, acc_ram):
        """Every channel word of the tile, R / lanes steps a word: stage 0 issues (ch, step), the
        word arrives in ARRIVE, the next multiplies `lanes` lanes by their weights (split_product,
        PRODUCT_LATENCY stages; word and ring then rotate by `lanes` lanes), SUM sums the products, ACC adds them
        to the channel's sum and, at the last step, reads acc_ram[ch], WRITE writes that sum plus
        the old one (one adder a stage; a channel's read and write are a cycle apart and the next
        word's is another channel: no hazard). Returns the stage tags."""
        hw, R, L = self.hw, self.hw.mac_rows, self.lanes
        last = R // L - 1
        tag = data.StructLayout({"valid": 1, "ch": range(hw.d_max), "step": range(max(R // L, 2))})
        # (stage ARRIVE + 1's valid enables the word and weight registers' shift: replicated)
        stage = [Signal(tag, name=f"ch_stage{k}", attrs={"max_fanout": 16}) for k in range(CH_STAGES)]
        for k in range(1, CH_STAGES):
            m.d.sync += stage[k].eq(stage[k - 1])
        word = Signal(ports.lanes(R))
        m.d.comb += [self.rd.buf.eq(desc.x_buf), self.rd.tile.eq(reg.tile), self.rd.ch.eq(stage[0].ch),
                     self.rd.en.eq(stage[0].valid & (stage[0].step == 0))]
        with m.If(stage[ARRIVE + 1].valid):
            m.d.sync += [word.eq(word.as_value() >> (16 * L)),
                         weights.eq(weights.as_value().rotate_right(WEIGHT_BITS * L))]
        # lanes past the token count hold whatever the buffer held (never written: X); their
        # weight is 0, but the sums must not depend on them even through a product with 0
        rows = Signal(R, name="pk_rows")                 # registered: the tile holds while its words pass
        m.d.sync += rows.eq(ports.rows_mask(m, self.rows, reg.tile, hw, "pk_rows_next"))
        word_arrives = ports.delayed(m, stage[0].valid & (stage[0].step == 0), ARRIVE, "word_arrives",
                                     attrs={"max_fanout": 16})           # stage ARRIVE at step 0: loads 16 R bits
        with m.If(word_arrives):
            m.d.sync += word.eq(Cat(Mux(rows[r], self.rd.data[r], 0) for r in range(R)))
        prod = [split_product(m, word[l], weights[l], name=f"prod{l}") for l in range(L)]
        prod_sum = Signal(signed(WEIGHT_BITS + 16 + L.bit_length()))
        m.d.sync += prod_sum.eq(sum(prod))
        ch_sum = Signal(signed(WEIGHT_BITS + 16 + R.bit_length()))
        acc, write = stage[ACC], stage[ACC + 1]
        m.d.comb += [acc_ram.raddr.eq(acc.ch), acc_ram.ren.eq(acc.valid & (acc.step == last)),
                     acc_ram.waddr.eq(write.ch), acc_ram.wen.eq(write.valid & (write.step == last)),
                     acc_ram.wdata.eq(Mux(reg.acc_valid, acc_ram.rdata, 0) + ch_sum)]
        with m.If(acc.valid):
            m.d.sync += ch_sum.eq(Mux(acc.step == 0, 0, ch_sum) + prod_sum)
        return stage

    def _output_pass(self, m, desc, reg, acc_ram, pkg_ram):
        """One pass over the channels: stage 0 reads acc_ram[ch], 1 scales the sum (by 1,
        recip_total or mult: split_product, SCALE_LATENCY stages), then the requantiser
        (PIPE_REQUANT stages) and the write of the result to pkg_ram[ch]. Returns the stage tags."""
        last = 1 + SCALE_LATENCY + PIPE_REQUANT
        tag = data.StructLayout({"valid": 1, "ch": range(self.hw.d_max)})
        stage = [Signal(tag, name=f"out_stage{k}") for k in range(last + 1)]
        for k in range(1, last + 1):
            m.d.sync += stage[k].eq(stage[k - 1])
        # the factor, shift and zero, registered (recip_total is ready a cycle before the pass)
        factor, shift, zero = Signal(FACTOR_BITS), Signal(range(64)), Signal()
        m.d.sync += [factor.eq(Mux(desc.mode == SUM, 1, Mux(desc.mode == SCORES, desc.mult, reg.recip_total))),
                     shift.eq(Mux(desc.mode == SUM, 15, Mux(desc.mode == SCORES, desc.shift, PACK_RECIP_BITS))),
                     zero.eq(~reg.acc_valid | ((desc.mode != SUM) & (desc.mode != SCORES) & (reg.total == 0)))]
        scaled = split_product(m, acc_ram.rdata[:ACC_USED].as_signed(), factor, name="scaled")
        y = requant_uvar(m, scaled, shift, name="pkg_rq", stage=pipe_stage(m, name="pkg_rq_p"))
        m.d.comb += [pkg_ram.waddr.eq(stage[last].ch), pkg_ram.wdata.eq(Mux(zero, 0, y)),
                     pkg_ram.wen.eq(stage[last].valid)]
        return stage

    def _tile_states(self, m, desc, last_tile, reg, ring, ch_stage):
        """Per token tile holding scored tokens: its keep mask (READ_MASK, TAKE_MASK); a tile
        without dropped tokens is skipped (SKIP), else its weights are loaded (LOAD), every channel
        word passes the pipeline (CH) until it is empty (DRAIN); NEXT: the next tile or RECIP."""
        R, steps = self.hw.mac_rows, self.hw.mac_rows // self.lanes
        with m.State("READ_MASK"):
            m.d.comb += self.mask.en.eq(1)
            m.next = "TAKE_MASK"
        with m.State("TAKE_MASK"):                  # the mask's read data into a register first
            m.d.sync += [ring.drop.eq(ring.dropped), ring.lane.eq(0)]
            m.next = "SKIP"
        with m.State("SKIP"):
            with m.If(ring.drop == 0):
                m.next = "NEXT"
            with m.Else():
                m.next = "LOAD"
        with m.State("LOAD"):
            m.d.comb += [self.mr.en.eq(1), self.sb.en.eq(1)]
            m.d.sync += [ring.m_arrives.eq(1), ring.lane.eq(ring.lane + 1), ring.sb_lane.eq(ring.lane)]
            with m.If(ring.lane == R - 1):
                m.d.sync += [reg.ch.eq(0), reg.step.eq(0)]
                m.next = "CH"
        with m.State("CH"):
            m.d.sync += ring.m_arrives.eq(0)
            m.d.comb += [ch_stage[0].valid.eq(1), ch_stage[0].ch.eq(reg.ch), ch_stage[0].step.eq(reg.step)]
            m.d.sync += reg.step.eq(reg.step + 1)
            with m.If(reg.step == steps - 1):
                m.d.sync += [reg.step.eq(0), reg.ch.eq(reg.ch + 1)]
                with m.If(reg.ch == desc.d - 1):
                    m.next = "DRAIN"
        with m.State("DRAIN"):
            with m.If(~Cat(s.valid for s in ch_stage[1:]).any()):
                m.d.sync += reg.acc_valid.eq(1)
                m.next = "NEXT"
        with m.State("NEXT"):
            m.d.sync += reg.tile.eq(reg.tile + 1)
            with m.If(reg.tile == last_tile):
                m.next = "RECIP"
            with m.Else():
                m.next = "READ_MASK"

    def _result_states(self, m, desc, reg, recip, acc_ram, out_stage):
        """After the tiles: recip(total, 46) unless mode sum or nothing dropped (RECIP,
        RECIP_WAIT), then the output pass (OUT, OUT_DRAIN) and done."""
        with m.State("RECIP"):
            m.d.comb += [recip.i_d.valid.eq(1), recip.i_d.payload.eq(reg.total)]
            with m.If((desc.mode == SUM) | (desc.mode == SCORES) | (reg.total == 0)):
                m.d.comb += recip.i_d.valid.eq(0)
                m.d.sync += reg.ch.eq(0)
                m.next = "OUT"
            with m.Elif(recip.i_d.ready):
                m.next = "RECIP_WAIT"
        with m.State("RECIP_WAIT"):
            m.d.comb += recip.o_q.ready.eq(1)
            with m.If(recip.o_q.valid):
                m.d.sync += [reg.recip_total.eq(recip.o_q.payload), reg.ch.eq(0)]
                m.next = "OUT"
        with m.State("OUT"):
            m.d.comb += [out_stage[0].valid.eq(1), out_stage[0].ch.eq(reg.ch), acc_ram.raddr.eq(reg.ch),
                         acc_ram.ren.eq(1)]
            m.d.sync += reg.ch.eq(reg.ch + 1)
            with m.If(reg.ch == desc.d - 1):
                m.next = "OUT_DRAIN"
        with m.State("OUT_DRAIN"):
            with m.If(~Cat(s.valid for s in out_stage[1:]).any()):
                m.d.comb += self.done.eq(1)
                m.d.sync += self.pkg_d.eq(desc.d)
                m.next = "IDLE"
