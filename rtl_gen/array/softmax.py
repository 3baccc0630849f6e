"""The accelerator's softmax unit: golden.kernels.softmax for R = hw.mac_rows query rows at once
(one token tile), one key column per beat, the score format `frac` a runtime input.

Ports: i_s {s: R x int16, last} (n beats per item, `last` on the row's final key, 1 <= n <=
n_max); `frac` (signed, the score format; sampled with an item's first beat and kept with the
item); o_p {p: R x int16 Q15 in 0..32767, last, cls}, n beats per item; `cls`: lane 0's probability
with 23 fraction bits, golden.kernels.cls_attention (EViT's and Evo-ViT's score, lane 0 of query
tile 0 being the CLS row: rtl_gen/array/score_capture.py).

Per lane (exactly golden.kernels.softmax):
  A  mx = max s_j                                  while the item is stored     (n cycles)
  B  E_j = exp_neg(s_j - mx, frac), S = sum E_j    rtl_gen.primitives.exp, EXP_LAT stages (n + B_LAT)
  C  Rc = floor(2^46 / S)  (S >= 2^15: 32 steps, rtl_gen.primitives.recip), then
     p_j = min((E_j Rc + 2^30) >> 31, 32767)                                   (33 + n)
The stages overlap on a ring of two row buffers per memory (block RAM, R x 16 bits, 2 n_max
words each: scores written by A and read by B, exponentials written by B and read by C), so
back-to-back items of n keys take n + 33 cycles each (C paces); `softmax_cycles` is the exact
stall-free schedule (tests/sim/test_softmax_unit.py checks it against the RTL).

DSP48E2 per lane: 3 (the mantissa product 2^(r/4096) = HI[r >> 6] LO[r & 63], 16 x 16; E Rc,
16 x 32 as two 27 x 18 tiles). x log2(e) is a shift-add constant product (rtl_gen.primitives.exp).
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.hw import HardwareConfig
from golden.kernels import CLS_ATTN_FRAC, PROB_FRAC, SOFTMAX_RECIP_BITS

from ..buffers import ports
from ..primitives.arith import WORD
from ..primitives.exp import FRAC_BITS, LATENCY as EXP_LAT, ExpNegVar
from ..primitives.fifo import Skid
from ..primitives.ram import Ram
from ..primitives.recip import Reciprocal

SUM_MIN_BITS = PROB_FRAC             # S >= 2^15: the maximum's term is exp(0) = 1.0
P_SHIFT = SOFTMAX_RECIP_BITS - PROB_FRAC
B_LAT = EXP_LAT + 2                  # B: issue of a key -> its E summed (read, exp, write)
C_LAT = 4                            # C: issue of a key -> its p on o_p (read, register, product, slice)
RECIP_CYCLES = SOFTMAX_RECIP_BITS - SUM_MIN_BITS + 2     # taken -> quotient valid (32 steps)


def softmax_cycles(n, items: int, hw: HardwareConfig) -> int:
    """Cycles from the first score beat to the last probability beat, stall-free, for `items`
    back-to-back items of n keys (n an int, or one length per item)."""
    ns = [n] * items if isinstance(n, int) else list(n)
    a_last, b_take, b_free, c_take, c_last = {}, {}, {}, {}, {}
    for i, k in enumerate(ns):
        a0 = 0 if i == 0 else max(a_last[i - 1] + 1, b_take[i - 1] + 1)     # A: its mailbox emptied
        a_last[i] = a0 + k - 1
        b_take[i] = max(a_last[i] + 1, b_free.get(i - 1, 0), c_take.get(i - 1, -1) + 1,
                        c_last.get(i - 2, -1) + 1)
        b_free[i] = b_take[i] + k + B_LAT                # its last E summed, mailbox to C full
        c_take[i] = max(b_free[i], c_last.get(i - 1, -1) + 1)
        c_last[i] = c_take[i] + RECIP_CYCLES + k - 1    # last key issued
    return c_last[len(ns) - 1] + C_LAT + 1


def item_layout(hw: HardwareConfig, name: str) -> data.StructLayout:
    """A score beat (name "s") or a probability beat ("p", with lane 0's 23-bit `cls`)."""
    cls = {"cls": unsigned(CLS_ATTN_FRAC + 1)} if name == "p" else {}
    return data.StructLayout({name: ports.lanes(hw.mac_rows), "last": 1, **cls})


class SoftmaxUnit(wiring.Component):
    def __init__(self, hw: HardwareConfig):
        self.hw = hw
        self.sum_bits = (hw.n_max << PROB_FRAC).bit_length()
        super().__init__({"i_s": In(stream.Signature(item_layout(hw, "s"))), "frac": In(signed(FRAC_BITS)),
                          "o_p": Out(stream.Signature(item_layout(hw, "p")))})

    def elaborate(self, platform):
        m = Module()
        hw, R = self.hw, self.hw.mac_rows
        m.submodules.sring = sring = Ram(WORD, 2 * hw.n_max, R)
        m.submodules.ering = ering = Ram(WORD, 2 * hw.n_max, R, is_signed=False)
        m.submodules.exp = exp = ExpNegVar(R)
        recips = []
        for l in range(R):
            m.submodules[f"recip{l}"] = rc = Reciprocal(self.sum_bits, SOFTMAX_RECIP_BITS, SUM_MIN_BITS)
            recips.append(rc)
        # mailboxes A -> B and B -> C; E-ring slots in use (B writing or C reading)
        ab = Signal(data.StructLayout({"full": 1, "n": range(hw.n_max + 1), "slot": 1, "frac": signed(FRAC_BITS),
                                       "mx": ports.lanes(R)}))
        bc = Signal(data.StructLayout({"full": 1, "n": range(hw.n_max + 1), "slot": 1,
                                       "sum": data.ArrayLayout(unsigned(self.sum_bits), R)}))
        e_busy = Signal(2)
        self._stage_a(m, sring, ab)
        self._stage_b(m, sring, ering, exp, ab, bc, e_busy)
        self._stage_c(m, ering, recips, bc, e_busy)
        return m

    def _stage_a(self, m, sring, ab):
        """Store the item's scores in ring slot `slot`, keep the running maximum per lane."""
        hw, R = self.hw, self.hw.mac_rows
        j = Signal(range(hw.n_max))
        first = Signal(init=1, name="first")      # j == 0, a register: i_s.ready runs into the epilogue's FIFO
        slot = Signal()
        frac = Signal(signed(FRAC_BITS))
        mx = [Signal(signed(WORD), name=f"mx{l}") for l in range(R)]
        s = self.i_s.payload.s
        take = self.i_s.valid & self.i_s.ready
        m.d.comb += [self.i_s.ready.eq(~first | ~ab.full),
                     sring.waddr.eq(Mux(slot, hw.n_max, 0) + j), sring.wdata.eq(s), sring.wen.eq(take.replicate(R))]
        with m.If(take):
            m.d.sync += [j.eq(j + 1), first.eq(0)]
            with m.If(first):
                m.d.sync += frac.eq(self.frac)
            for l in range(R):
                new = Signal(signed(WORD), name=f"mxn{l}")
                m.d.comb += new.eq(Mux(first | (s[l] > mx[l]), s[l], mx[l]))
                m.d.sync += [mx[l].eq(new), ab.mx[l].eq(new)]
            with m.If(self.i_s.payload.last | (j == hw.n_max - 1)):
                m.d.sync += [j.eq(0), first.eq(1), slot.eq(~slot), ab.full.eq(1), ab.n.eq(j + 1), ab.slot.eq(slot),
                             ab.frac.eq(Mux(first, self.frac, frac))]

    def _stage_b(self, m, sring, ering, exp, ab, bc, e_busy):
        """E_j = exp_neg(s_j - max) into the E ring, S = sum E_j; then the mailbox to C."""
        hw, R = self.hw, self.hw.mac_rows
        busy = Signal()
        n = Signal(range(hw.n_max + 1))
        j = Signal(range(hw.n_max + 1))              # reads issued
        written = Signal(range(hw.n_max))            # E written
        written_last = Signal()                      # written == n - 1, kept beside it: no compare after the valid
        slot = Signal()
        frac = Signal(signed(FRAC_BITS))
        mx = Signal(ports.lanes(R))
        acc = [Signal(unsigned(self.sum_bits), name=f"sum{l}") for l in range(R)]
        take = ~busy & ab.full & ~bc.full & ~e_busy.bit_select(ab.slot, 1)
        with m.If(take):
            m.d.sync += [busy.eq(1), ab.full.eq(0), n.eq(ab.n), j.eq(0), written.eq(0), written_last.eq(ab.n == 1),
                         slot.eq(ab.slot),
                         frac.eq(ab.frac), mx.eq(ab.mx), e_busy.bit_select(ab.slot, 1).eq(1)] + [a.eq(0) for a in acc]
        go = busy & (j < n)
        read_valid = Signal()                        # the read issued last cycle: its score is there
        m.d.sync += read_valid.eq(go)
        m.d.comb += [sring.raddr.eq(Mux(slot, hw.n_max, 0) + j), sring.ren.eq(go),
                     exp.i_x.valid.eq(read_valid), exp.i_x.payload.frac.eq(frac), exp.o_e.ready.eq(1)]
        with m.If(go):
            m.d.sync += j.eq(j + 1)
        for l in range(R):
            m.d.comb += exp.i_x.payload.x[l].eq(sring.rdata[l] - mx[l])
        e = exp.o_e.payload
        exp.o_e.valid.attrs["max_fanout"] = 16      # it enables every lane's sum: a replicated register
        m.d.comb += [ering.waddr.eq(Mux(slot, hw.n_max, 0) + written), ering.wdata.eq(e),
                     ering.wen.eq(exp.o_e.valid.replicate(R))]
        with m.If(exp.o_e.valid):
            m.d.sync += [written.eq(written + 1), written_last.eq(written == n - 2)]
            m.d.sync += [a.eq(a + e[l]) for l, a in enumerate(acc)]
            with m.If(written_last):
                m.d.sync += [busy.eq(0), bc.full.eq(1), bc.n.eq(n), bc.slot.eq(slot)]
                m.d.sync += [bc.sum[l].eq(a + e[l]) for l, a in enumerate(acc)]

    def _stage_c(self, m, ering, recips, bc, e_busy):
        """Reciprocal of S, then p_j = min(round(E_j Rc / 2^31), 32767) out with back-pressure
        (a stall-together pipeline: read, its register, product; the rounding into a skid
        register slice, whose ready is a register: the consumer's ready does not fan out to every
        lane's product)."""
        hw, R = self.hw, self.hw.mac_rows
        n = Signal(range(hw.n_max + 1))
        j = Signal(range(hw.n_max + 1))
        slot = Signal()
        q_bits = SOFTMAX_RECIP_BITS - SUM_MIN_BITS + 1
        recip_sum = [Signal(unsigned(q_bits), name=f"recip_sum{l}") for l in range(R)]
        busy, issuing, go = Signal(name="c_busy"), Signal(name="issuing"), Signal(name="c_go")
        # j < n and j == n - 1 as registers beside j (no compare between the issue and its fanout)
        more, at_last = Signal(name="c_more"), Signal(name="c_at_last")
        # pipeline stages 1 (E read), 2 (E registered: the RAM's output meets no DSP directly) and
        # 3 (product): valid, and the item's last key
        read_valid, read_last, prod_valid, prod_last = Signal(), Signal(), Signal(), Signal()
        e_valid, e_last = Signal(name="e_valid"), Signal(name="e_last")
        m.submodules.out = out = Skid(item_layout(hw, "p"))
        en = out.i.ready
        wiring.connect(m, out.o, wiring.flipped(self.o_p))
        m.d.comb += [out.i.valid.eq(prod_valid), out.i.payload.last.eq(prod_last)]
        for l, rc in enumerate(recips):
            m.d.comb += rc.i_d.payload.eq(bc.sum[l])
        with m.If(~busy & bc.full):                  # take the mailbox straight into the dividers
            m.d.comb += [rc.i_d.valid.eq(1) for rc in recips]
            m.d.sync += [busy.eq(1), bc.full.eq(0), n.eq(bc.n), slot.eq(bc.slot), j.eq(0), more.eq(1),
                         at_last.eq(bc.n == 1)]
        # the quotients are taken once the previous item has left the pipeline; keys issue from then.
        # `clear`: busy, not issuing and the pipeline empty a cycle ago, a register; it still holds
        # unless `start` came since, which sets `issuing` (so start and go are a LUT each)
        start, clear = Signal(), Signal(name="c_clear")
        m.d.sync += clear.eq(busy & ~issuing & ~read_valid & ~e_valid & ~prod_valid & ~self.o_p.valid)
        m.d.comb += [start.eq(clear & ~issuing & recips[0].o_q.valid & en), go.eq((issuing | start) & en & more)]
        with m.If(start):
            m.d.comb += [rc.o_q.ready.eq(1) for rc in recips]
            m.d.sync += issuing.eq(1)
        # the quotients load whenever no key uses them (not issuing, no read in flight), so their
        # enable is a gate of registers, not `start`, which waits on the output's valid
        with m.If(~issuing & ~read_valid & ~e_valid):
            m.d.sync += [r.eq(rc.o_q.payload) for r, rc in zip(recip_sum, recips)]
        with m.If(go & at_last):
            m.d.sync += [issuing.eq(0), busy.eq(0), e_busy.bit_select(slot, 1).eq(0)]
        m.d.comb += [ering.raddr.eq(Mux(slot, hw.n_max, 0) + j), ering.ren.eq(go)]
        with m.If(go):
            m.d.sync += [j.eq(j + 1), more.eq(~at_last), at_last.eq(j + 2 == n)]
        with m.If(en):
            m.d.sync += [read_valid.eq(go), read_last.eq(go & at_last), e_valid.eq(read_valid),
                         e_last.eq(read_last), prod_valid.eq(e_valid), prod_last.eq(e_last)]
        for l in range(R):
            prod = Signal(unsigned(WORD + len(recip_sum[l])), name=f"prod{l}")
            p = (prod + (1 << (P_SHIFT - 1))) >> P_SHIFT
            e_q = Signal(unsigned(WORD), name=f"e_q{l}")
            with m.If(en):
                m.d.sync += [e_q.eq(ering.rdata[l]), prod.eq(e_q * recip_sum[l])]
            m.d.comb += out.i.payload.p[l].eq(Mux(p > (1 << PROB_FRAC) - 1, (1 << PROB_FRAC) - 1, p))
            if l == 0:                               # the CLS row's probability, 23 fraction bits, unsaturated
                cls_shift = SOFTMAX_RECIP_BITS - CLS_ATTN_FRAC
                m.d.comb += out.i.payload.cls.eq((prod + (1 << (cls_shift - 1))) >> cls_shift)
        return m
