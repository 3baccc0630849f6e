"""The accelerator's LayerNorm unit: the LAYERNORM operation (golden/isa.py, golden.interp
Machine.op_layernorm) with runtime formats, R = hw.mac_rows tokens (one token tile) at a time.

    o[:, o_c0 : o_c0 + d] = layernorm(i[:, i_c0 : i_c0 + d], eps_q = eps, y_shift)

Ports: ports.control(hw); `ra` reads the input buffer, `w` writes the output buffer (lanes of
rows >= `rows` disabled); `i_param` {gamma, beta} d beats per operation in channel order, taken
whenever they come after `start` (an output channel waits for its parameter).

Numerics, per lane (golden.kernels.layernorm, exactly):
  S1 = sum x, S2 = sum x^2                                   statistics pass, 1 DSP (x x)
  V  = d S2 - S1^2 + eps                                     serial shift-add (SB steps)
  k  = (62 - bitlen V) // 2,  r = isqrt(V << 2k)             NP + 30 steps (rtl_gen.norm.isqrt_norm)
  R  = floor(2^62 / r)                                       33 steps (r >= 2^30: recip.py)
  CR = d R,  S1R = S1 R - 2^(45 - k)                         serial shift-add (SB steps)
  z  = (x CR - S1R) >> (46 - k)  (= round((d x - S1) R / 2^(46 - k)))     2 DSPs (16 x (DB+33))
  y  = requant_sv(gamma z + beta, y_shift)                   1 DSP (16 x 24)
DSP48E2 per lane: 4 (x x; x CR as two 27 x 18 tiles; gamma z). The per-tile products (d S2,
S1^2, d R, S1 R) run on two shift-add multipliers per lane over SB = bitlen(d_max 2^15) cycles
instead of DSPs; (d x - S1) R is computed as x (d R) - S1 R, which saves the d x product and
narrows the per-element product to 16 bits on one side. No normalising shifter (the square
root skips V's leading zero pairs itself) and a pruned output shifter (arith.requant_sv).

Schedule: tiles t = 0 .. T - 1 (T = ceil(rows / R)) pass through three stages that overlap:
  stats(t)  reads the token buffer (d cycles), copies the tile into bank t % 2 of a block RAM
  post(t)   the per-tile chain above, P = post_cycles(hw) = 1 + S (2 SB + NP + 69) cycles, one
            tile at a time, S = ln_post_share passes of R / S lanes (NP = 29 pairs of V for
            d_max <= 4096: P = 147 for d_max = 384 and S = 1, 293 for S = 2 as on zcu102)
  out(t)    reads bank t % 2 and the parameter RAM, OUT_LAT-stage pipeline, writes (d cycles)
stats(t) may overwrite channel c of a bank once out(t - 2) has read it, so for P < d the unit
streams one tile per d cycles: cycles = T d + d + P + OUT_LAT + STATS_LAT. `ln_cycles` is the exact
stall-free schedule (tests/sim/test_ln_unit.py checks it against the RTL).
"""
from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.hw import HardwareConfig
from golden.kernels import LN_RECIP_BITS, LN_SQRT_BITS, LN_Z_FRAC

from ..buffers import ports
from ..control.decode import desc_view
from ..primitives.arith import (
    ACC_BITS,
    PIPE_REQUANT,
    WORD,
    partial_products,
    pipe_stage,
    requant_sv,
    requant_sv_shift,
)
from ..primitives.ram import Ram
from ..primitives.recip import Reciprocal
from .isqrt_norm import NormIsqrt

Z_BITS = 24                 # |z| <= sqrt(d) 2^16 (1 + 2^-29) < 2^22 for d <= 4096
ZSH_MIN = LN_RECIP_BITS - LN_Z_FRAC - LN_SQRT_BITS // 2 + 1     # 46 - k with k <= 30: 16
R_BITS = LN_RECIP_BITS - LN_SQRT_BITS // 2 + 2                   # R in (2^31, 2^32]: 33 bits
A4_BITS = ACC_BITS + 1     # gamma z + beta
OUT_LAT = 8 + PIPE_REQUANT  # out issue -> write (registered inputs, gamma z and + beta in two, the requant in three)
STATS_LAT = ports.READ_LATENCY + 2  # stats issue of a tile's last channel -> its sums offered to post


class Widths:
    """Bit widths that follow from d_max (DB = bits of d, SB = bits of |S1|)."""

    def __init__(self, hw: HardwareConfig):
        self.db = hw.d_max.bit_length()
        self.sb = (hw.d_max << 15).bit_length()
        self.s2 = (hw.d_max << 30).bit_length()
        self.acc_a = max(self.db + self.s2, self.db + R_BITS)       # d S2, d R
        self.acc_b = max(2 * self.sb, self.sb + R_BITS) + 2         # S1^2, then +-|S1| R - half (signed)
        self.v = max(self.db + self.s2, 56) + 1                      # V < 2^(db + s2) + 2^56
        self.cr = self.db + R_BITS
        self.s1r = self.sb + R_BITS + 2                             # signed, minus the rounding half
        self.np = (self.v + 1) // 2                                  # pairs of V for the square root
        assert self.v <= 60


def post_cycles(hw: HardwareConfig) -> int:
    """post(t): its sums offered (post idle) -> its constants offered to the output stage (taken
    by the out pass's first read of the tile, in the same cycle at the earliest). Post takes the
    sums the cycle after it sees them (LOAD1), then runs ln_post_share passes of LOAD1 .. STORE."""
    w = Widths(hw)
    return 1 + hw.ln_post_share * (2 * w.sb + w.np + 69)


def ln_cycles(d: int, rows: int, hw: HardwareConfig) -> int:
    """Cycles from `start` to `done` without stalls (parameters arriving one per cycle from
    start): the tile schedule of LayerNormUnit, event by event."""
    T = -(-rows // hw.mac_rows)
    P = post_cycles(hw)
    i_last, take, o0, o_last = {}, {}, {}, {}
    for t in range(T):
        i0 = 1 if t == 0 else i_last[t - 1] + 1
        if t >= 2:
            i0 = max(i0, o0[t - 2] + 1)                 # bank reuse: out(t - 2) read channel c first
        i_last[t] = max(i0 + d - 1, take[t - 1] + 2) if t else i0 + d - 1     # its sums need the pin free
        take[t] = max(i_last[t] + STATS_LAT, o0[t - 1] + 1 if t else 0)      # post free once out took t - 1
        o0[t] = max(take[t] + P, o_last[t - 1] + 1 if t else 2)
        o_last[t] = o0[t] + d - 1
    return o_last[T - 1] + OUT_LAT + 1


def _stats_layout(hw, w: Widths) -> data.StructLayout:
    R = hw.mac_rows
    return data.StructLayout({"s1_abs": data.ArrayLayout(unsigned(w.sb), R), "s1_neg": data.ArrayLayout(1, R),
                              "s2": data.ArrayLayout(unsigned(w.s2), R)})


def _consts_layout(hw, w: Widths) -> data.StructLayout:
    R = hw.mac_rows
    return data.StructLayout({"cr": data.ArrayLayout(unsigned(w.cr), R), "s1r": data.ArrayLayout(signed(w.s1r), R),
                              "zsh": data.ArrayLayout(unsigned(6), R)})


def _param_layout() -> data.StructLayout:
    return data.StructLayout({"gamma": signed(WORD), "beta": signed(ACC_BITS)})


class LnStats(wiring.Component):
    """S1 and S2 of a tile, one channel per cycle (`valid` with `first` / `last` of the tile);
    two cycles after `last` the sums are offered on o_s (the caller never lets a tile end while
    the previous one is still offered)."""

    def __init__(self, hw: HardwareConfig):
        self.hw, self.wd = hw, Widths(hw)
        super().__init__({"valid": In(1), "first": In(1), "last": In(1), "x": In(ports.lanes(hw.mac_rows)),
                          "o_s": Out(stream.Signature(_stats_layout(hw, self.wd)))})

    def elaborate(self, platform):
        m = Module()
        w = self.wd
        # x and x^2 are registered: the channel in the sums is the one that came last cycle;
        # its valid, first and tile end (valid and last) enable or clear every lane's sums:
        # replicated registers, no gate between them and the lanes
        fanout = {"max_fanout": 16}
        x_valid, x_first, x_end = (Signal(name=n, attrs=fanout) for n in ("x_valid", "x_first", "x_end"))
        m.d.sync += [x_valid.eq(self.valid), x_first.eq(self.first), x_end.eq(self.valid & self.last)]
        with m.If(self.o_s.ready):
            m.d.sync += self.o_s.valid.eq(0)
        for l in range(self.hw.mac_rows):
            x = Signal(signed(WORD), name=f"x{l}")
            sq = Signal(unsigned(2 * WORD - 1), name=f"sq{l}")     # x^2 <= 2^30
            s1 = Signal(signed(w.sb + 1), name=f"s1_{l}")
            s2 = Signal(unsigned(w.s2), name=f"s2_{l}")
            s1_next = Signal(signed(w.sb + 1), name=f"s1_next{l}")
            s2_next = Signal(unsigned(w.s2), name=f"s2_next{l}")
            m.d.sync += [x.eq(self.x[l]), sq.eq(self.x[l] * self.x[l])]
            m.d.comb += [s1_next.eq(Mux(x_first, 0, s1) + x), s2_next.eq(Mux(x_first, 0, s2) + sq)]
            with m.If(x_valid):
                m.d.sync += [s1.eq(s1_next), s2.eq(s2_next)]
            with m.If(x_end):
                # S1 as |S1| and its sign (what post takes): the absolute value here, behind the
                # add, not behind post's pass select
                m.d.sync += [self.o_s.payload.s1_abs[l].eq(Mux(s1_next < 0, -s1_next, s1_next)),
                             self.o_s.payload.s1_neg[l].eq(s1_next < 0), self.o_s.payload.s2[l].eq(s2_next)]
        with m.If(x_end):
            m.d.sync += self.o_s.valid.eq(1)
        return m


class LnPost(wiring.Component):
    """Per tile and token row: V, the normalised square root, the reciprocal and the output
    constants CR = d R, S1R = S1 R - 2^(45 - k), zsh = 46 - k. Takes i_s, offers o_k
    post_cycles(hw) cycles later. L = mac_rows / ln_post_share lanes in lock step serve the rows
    in ln_post_share passes (rows p L .. p L + L - 1 in pass p): the chain is serial bit-steps,
    idle most of a tile at d > post_cycles, so a shared lane costs cycles only at small d. The
    sums of the later passes are kept (`later_s1`, `later_s2`) so i_s is free at once."""

    def __init__(self, hw: HardwareConfig):
        self.hw, self.wd = hw, Widths(hw)
        super().__init__({"d": In(13), "eps": In(56), "eps0": In(56),      # eps0: token row 0 of tile 0
                          "i_s": In(stream.Signature(_stats_layout(hw, self.wd))),
                          "o_k": Out(stream.Signature(_consts_layout(hw, self.wd)))})

    def elaborate(self, platform):
        m = Module()
        w, R, S = self.wd, self.hw.mac_rows, self.hw.ln_post_share
        L = R // S
        m.submodules.sqrt = sq = NormIsqrt(w.v, L)
        step = Signal(range(w.sb))
        # 1 bit when S = 1 (no empty vector); selects every lane's sums: replicated
        passno = Signal(max(1, (S - 1).bit_length()), name="pass_no", attrs={"max_fanout": 16})
        mc = Signal(w.db, attrs={"max_fanout": 16})   # the shared multiplier d, one bit per step
        neg_mode = Signal(attrs={"max_fanout": 16})   # MUL2: subtract |S1| R for negative S1 (every lane)
        later_s1 = [(Signal(w.sb, name=f"later_s1_abs{r}"), Signal(name=f"later_s1_neg{r}")) for r in range(L, R)]
        later_s2 = [Signal(unsigned(w.s2), name=f"later_s2_{r}") for r in range(L, R)]
        lanes = [self._lane(m, l, sq, neg_mode, passno, later_s1, later_s2) for l in range(L)]
        rc0 = lanes[0]["recip"]
        # the lanes' phases from registers (replicated by Vivado), not from the FSM's decode:
        # every lane register hangs on them. The lanes step whenever they do not load: once a
        # multiplication's bits are used up (mc and ms shifted to 0) a step adds 0, so the
        # products hold without an enable
        fanout = {"max_fanout": 16}
        load1, load2, store = (Signal(name=n, attrs=fanout) for n in ("load1", "load2", "store"))
        # = ~load1 & ~load2, its own register: no gate of the two in front of every lane
        stepping = Signal(name="stepping", init=1, attrs=fanout)
        sqrt_go = Signal(name="sqrt_go")       # the square root takes V (the state SQRT), a register
        m.d.sync += [load1.eq(0), load2.eq(0), stepping.eq(1), store.eq(0), sqrt_go.eq(0)]
        with m.If(stepping):
            for ln in lanes:
                m.d.sync += ln["step"](mc[0])
        with m.Elif(load1):
            m.d.sync += [a for ln in lanes for a in ln["load1"]]
        with m.Else():
            m.d.sync += [a for ln in lanes for a in ln["load2"]]
        # the square root's result goes straight on into the reciprocals (its valid, a register,
        # rises only in SQRT_WAIT, when the reciprocals are idle)
        m.d.comb += [sq.o_r.ready.eq(1), sq.i_v.valid.eq(sqrt_go)]
        m.d.comb += [ln["recip"].i_d.valid.eq(sq.o_r.valid) for ln in lanes]
        with m.If(sq.o_r.valid):
            m.d.sync += [a for ln in lanes for a in ln["zsh"]]
        with m.If(load1 & (passno == 0)):      # LOAD1 of pass 0 (from registers, not the FSM's decode)
            m.d.sync += [a for i, (r_abs, r_neg) in enumerate(later_s1)
                         for a in (r_abs.eq(self.i_s.payload.s1_abs[L + i]), r_neg.eq(self.i_s.payload.s1_neg[L + i]))]
            m.d.sync += [r.eq(self.i_s.payload.s2[L + i]) for i, r in enumerate(later_s2)]
        with m.If(store):                      # the pass's constants into its rows of o_k
            for p in range(S):
                with m.If(passno == p):
                    m.d.sync += [a for ln in lanes for a in ln["store"](p * L)]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.i_s.valid):
                    m.d.sync += [load1.eq(1), stepping.eq(0)]
                    m.next = "LOAD1"
            with m.State("LOAD1"):                 # the lanes take the sums (pass 0: still offered)
                m.d.comb += self.i_s.ready.eq(passno == 0)
                m.d.sync += self._mul_load(mc, step, neg_mode, 0)
                m.next = "MUL1"
            with m.State("MUL1"):
                self._mul_step(m, mc, step, "SQRT")
                with m.If(step == w.sb - 1):
                    m.d.sync += sqrt_go.eq(1)
            with m.State("SQRT"):                  # V = acc_a - acc_b goes straight in (sqrt_go)
                m.next = "SQRT_WAIT"
            with m.State("SQRT_WAIT"):             # r into the reciprocals, zsh into the lanes
                with m.If(sq.o_r.valid):
                    m.next = "RECIP_WAIT"
            with m.State("RECIP_WAIT"):
                with m.If(rc0.o_q.valid):
                    m.d.sync += [load2.eq(1), stepping.eq(0)]
                    m.next = "LOAD2"
            with m.State("LOAD2"):                 # the lanes take the reciprocals (still offered)
                m.d.comb += [ln["recip"].o_q.ready.eq(1) for ln in lanes]
                m.d.sync += self._mul_load(mc, step, neg_mode, 1)
                m.next = "MUL2"
            with m.State("MUL2"):
                self._mul_step(m, mc, step, "STORE")
                with m.If(step == w.sb - 1):
                    m.d.sync += store.eq(1)
            with m.State("STORE"):                 # `store` writes this pass's rows
                with m.If(passno == S - 1):
                    m.d.sync += [passno.eq(0), self.o_k.valid.eq(1)]      # a register: the out pass's go
                    m.next = "OFFER"
                with m.Else():
                    m.d.sync += [passno.eq(passno + 1), load1.eq(1), stepping.eq(0)]
                    m.next = "LOAD1"
            with m.State("OFFER"):
                with m.If(self.o_k.ready):
                    m.d.sync += self.o_k.valid.eq(0)
                    m.next = "IDLE"
        return m

    def _mul_load(self, mc, step, neg_mode, neg) -> list:
        """Start a multiplication pass (the lanes take their operands from `load1` / `load2`)."""
        return [mc.eq(self.d), step.eq(0), neg_mode.eq(neg)]

    def _mul_step(self, m, mc, step, nxt):
        m.d.sync += [mc.eq(mc >> 1), step.eq(step + 1)]
        with m.If(step == self.wd.sb - 1):
            m.next = nxt

    def _lane(self, m, l: int, sq, neg_mode, passno, later_s1, later_s2) -> dict:
        """Lane l's registers and the statements of each phase (it serves rows l, L + l, ...).
        acc_a starts at eps (MUL1: d S2 + eps; MUL2: d R); acc_b at 0 (MUL1: S1^2) or
        -2^(zsh - 1) (MUL2: adds or subtracts |S1| R by the sign of S1), so V = acc_a - acc_b and
        S1R = acc_b need no further adder."""
        w, S = self.wd, self.hw.ln_post_share
        L = self.hw.mac_rows // S
        m.submodules[f"recip{l}"] = rc = Reciprocal(LN_SQRT_BITS // 2, LN_RECIP_BITS, LN_SQRT_BITS // 2 - 1)
        # pass 0: row l's sums, still offered; pass p > 0: the kept sums of row p L + l
        s1_abs, s1_neg = Signal(w.sb, name=f"s1_abs_in{l}"), Signal(name=f"s1_neg_in{l}")
        s2_in = Signal(unsigned(w.s2), name=f"s2_in{l}")
        kept = [later_s1[p * L + l - L] for p in range(1, S)]
        m.d.comb += [s1_abs.eq(Array([self.i_s.payload.s1_abs[l]] + [k[0] for k in kept])[passno]),
                     s1_neg.eq(Array([self.i_s.payload.s1_neg[l]] + [k[1] for k in kept])[passno]),
                     s2_in.eq(Array([self.i_s.payload.s2[l]] + [later_s2[p * L + l - L] for p in range(1, S)])[passno])]
        sabs = Signal(w.sb, name=f"sabs{l}")
        neg = Signal(name=f"neg{l}")
        ms = Signal(w.sb, name=f"ms{l}")                      # |S1|, one bit per step
        md_a = Signal(w.acc_a, name=f"mda{l}")
        md_b = Signal(w.acc_b, name=f"mdb{l}")
        acc_a = Signal(max(w.v, w.cr), name=f"acca{l}")
        acc_b = Signal(signed(w.acc_b), name=f"accb{l}")
        zsh = Signal(6, name=f"zsh{l}")
        half = Signal(signed(w.acc_b), name=f"half{l}")
        m.d.comb += [sq.i_v.payload[l].eq(acc_a - acc_b), rc.i_d.payload.eq(sq.o_r.payload.r[l]),
                     half.eq((Const(1, 64) << zsh) >> 1)]
        sub = neg_mode & neg
        o = self.o_k.payload
        eps = Mux(passno == 0, self.eps0, self.eps) if l == 0 else self.eps
        return {
            "recip": rc,
            "load1": [sabs.eq(s1_abs), neg.eq(s1_neg), ms.eq(s1_abs), md_b.eq(s1_abs), md_a.eq(s2_in),
                      acc_a.eq(eps), acc_b.eq(0)],
            "step": lambda bit: [acc_a.eq(acc_a + Mux(bit, md_a, 0)), md_a.eq(md_a << 1),
                                 acc_b.eq(acc_b + Mux(ms[0], Mux(sub, -md_b, md_b), 0)), md_b.eq(md_b << 1),
                                 ms.eq(ms >> 1)],
            "zsh": [zsh.eq(sq.o_r.payload.zsh[l])],
            "load2": [ms.eq(sabs), md_a.eq(rc.o_q.payload), md_b.eq(rc.o_q.payload), acc_a.eq(0), acc_b.eq(-half)],
            "store": lambda row0: [o.cr[row0 + l].eq(acc_a), o.s1r[row0 + l].eq(acc_b), o.zsh[row0 + l].eq(zsh)],
        }


class LnOut(wiring.Component):
    """Output pipeline, OUT_LAT - 1 stages (the first registers the inputs): element (x lanes,
    gamma, beta, `first` / `last` channel of its tile) -> y lanes. A tile's constants are taken
    from `k` with `take` (the cycle before its first element arrives) and follow that element
    down the pipeline in registers with clock enables, so consecutive tiles stream back to back."""

    def __init__(self, hw: HardwareConfig):
        self.hw, self.wd = hw, Widths(hw)
        R = hw.mac_rows
        super().__init__({
            "take": In(1), "k": In(_consts_layout(hw, self.wd)), "y_shift": In(signed(8)),
            "valid": In(1), "first": In(1), "last": In(1), "x": In(ports.lanes(R)), "gamma": In(signed(WORD)),
            "beta": In(signed(ACC_BITS)),
            "y_valid": Out(1), "y_last": Out(1), "y": Out(ports.lanes(R)),
        })

    def elaborate(self, platform):
        m = Module()
        depth = OUT_LAT - 2
        # every input registered first (the block RAMs' data, and `take`, which enables every
        # lane's constants, from a register); the constants are read a cycle after the take
        # (post holds them two cycles longer)
        take = Signal(name="take_q", attrs={"max_fanout": 16})
        valid, first, last = Signal(name="v0"), Signal(name="f0"), Signal(name="l0")
        x, gamma, beta = Signal.like(self.x, name="x0"), Signal.like(self.gamma, name="g0"), \
            Signal.like(self.beta, name="b0")
        m.d.sync += [take.eq(self.take), valid.eq(self.valid), first.eq(self.first), last.eq(self.last),
                     x.eq(self.x), gamma.eq(self.gamma), beta.eq(self.beta)]
        # valid, first, last travel beside the data; gamma to stage 4, beta to stage 5
        ctl = [(valid, first, last)] + [(Signal(name=f"v{i}"), Signal(name=f"f{i}"),
                                         Signal(name=f"l{i}")) for i in range(1, depth + 1)]
        for i in range(1, depth + 1):
            m.d.sync += [a.eq(b) for a, b in zip(ctl[i], ctl[i - 1])]
        g, b = [gamma], [beta]
        for i in range(1, 5):
            if i < 4:
                g.append(Signal(signed(WORD), name=f"g{i}", attrs={"max_fanout": 16}))   # every lane's DSP
                m.d.sync += g[i].eq(g[i - 1])
            b.append(Signal(signed(ACC_BITS), name=f"b{i}", attrs={"max_fanout": 16}))
            m.d.sync += b[i].eq(b[i - 1])
        # requant_sv's right shift for y_shift, registered once for every lane (it holds through
        # the operation, read d cycles after start at the earliest): the add and the clamp in two
        # cycles
        y_sh = Signal(range(A4_BITS + 2 * WORD + 3), name="y_sh", attrs={"max_fanout": 16})  # every lane's shifter
        y_t = pipe_stage(m, name="y_t", attrs={"max_fanout": 16})
        m.d.sync += y_sh.eq(requant_sv_shift(m, self.y_shift, A4_BITS, WORD, "y_sh", stage=y_t))
        for l in range(self.hw.mac_rows):
            m.d.comb += self.y[l].eq(self._lane(m, l, ctl, g[3], b[4], take, x, y_sh))
        m.d.comb += [self.y_valid.eq(ctl[depth][0]), self.y_last.eq(ctl[depth][2])]
        return m

    def _lane(self, m, l, ctl, g3, b4, take, x, y_sh):
        w = self.wd
        cr1 = Signal(unsigned(w.cr), name=f"cr1_{l}")
        s1r1, s1r2 = (Signal(signed(w.s1r), name=f"s1r{i}_{l}") for i in (1, 2))
        zsh1, zsh2, zsh3 = (Signal(6, name=f"zsh{i}_{l}") for i in (1, 2, 3))
        with m.If(take):                                    # constants of the next tile
            m.d.sync += [cr1.eq(self.k.cr[l]), s1r1.eq(self.k.s1r[l]), zsh1.eq(self.k.zsh[l])]
        with m.If(ctl[0][0] & ctl[0][1]):                   # its first element enters stage 1
            m.d.sync += [s1r2.eq(s1r1), zsh2.eq(zsh1)]
        with m.If(ctl[1][0] & ctl[1][1]):
            m.d.sync += zsh3.eq(zsh2)
        zsh = Signal(range(LN_RECIP_BITS - LN_Z_FRAC - ZSH_MIN + 1), name=f"zsh{l}")
        m.d.comb += zsh.eq(zsh3 - ZSH_MIN)
        d2 = Signal(signed(max(WORD + w.cr + 1, w.s1r) + 1), name=f"d2_{l}")
        z3 = Signal(signed(Z_BITS), name=f"z3_{l}")
        p4 = Signal(signed(WORD + Z_BITS), name=f"p4_{l}")
        a5 = Signal(signed(A4_BITS), name=f"a5_{l}", attrs={"max_fanout": 16})    # its sign: the shifter's every stage
        y6 = Signal(signed(WORD), name=f"y6_{l}")
        cut = pipe_stage(m, name=f"yp{l}_", attrs={"max_fanout": 16})       # its shift bits: one register for all lanes
        y = requant_sv(m, a5, 0, WORD, name=f"y{l}", stage=cut, shift=y_sh)
        # x CR as DSP48 partial products (registered in the DSPs), added up with - S1R in the next
        # stage: no fabric add behind a multiplier in one cycle
        p1 = partial_products(m, cr1, x[l], name=f"p1_{l}")
        m.d.sync += [d2.eq(sum(v << sh for v, sh in p1) - s1r2), z3.eq((d2 >> ZSH_MIN) >> zsh),
                     p4.eq(g3 * z3), a5.eq(p4 + b4), y6.eq(y)]       # the product, then + beta
        return y6


class LayerNormUnit(wiring.Component):
    def __init__(self, hw: HardwareConfig):
        self.hw = hw
        super().__init__({**ports.control(hw), "ra": Out(ports.tok_read(hw)), "w": Out(ports.tok_write(hw)),
                          "i_param": In(stream.Signature(_param_layout()))})

    def elaborate(self, platform):
        m = Module()
        hw, R = self.hw, self.hw.mac_rows
        v = desc_view("LAYERNORM", ports.held(m, self.desc, "desc"))   # read from the cycle after start
        # d - 1, the channel counters' end, registered beside `v` from the input (right from the
        # cycle after start too): no subtract before the counters' compares
        d_last = Signal(range(hw.d_max), name="d_last")
        m.d.sync += d_last.eq(desc_view("LAYERNORM", self.desc).d - 1)
        rows = ports.held(m, self.rows, "rows")
        m.submodules.stats = stats = LnStats(hw)
        m.submodules.post = post = LnPost(hw)
        m.submodules.out = out = LnOut(hw)
        m.submodules.bank = bank = Ram(WORD, 2 * hw.d_max, R)
        m.submodules.par = par = Ram(WORD + ACC_BITS, hw.d_max, 1, is_signed=False)
        wiring.connect(m, stats.o_s, post.i_s)
        m.d.comb += [post.d.eq(v.d), post.eps.eq(v.eps), out.y_shift.eq(v.y_shift), out.k.eq(post.o_k.payload)]

        tn = range(hw.tiles + 1)
        busy = Signal()
        tiles = Signal(tn)                                     # tiles of this operation
        # the three passes: (tile, channel) of the stats read, the output read and the write
        stats_tile, out_tile, write_tile = (Signal(tn, name=n) for n in ("stats_tile", "out_tile", "write_tile"))
        # (the stats and out counters feed the bank's free check and the RAM addresses: replicated)
        stats_ch, out_ch = (Signal(range(hw.d_max), name=n, attrs={"max_fanout": 16}) for n in ("stats_ch", "out_ch"))
        write_ch = Signal(range(hw.d_max))
        sums_taken = Signal(tn)                                # tiles whose sums post has taken
        n_par = Signal(range(hw.d_max + 1))                    # parameters received
        m.d.sync += tiles.eq(ports.tiles_of(self.rows, R))     # rows holds from start: right from start + 1
        with m.If(self.start):
            m.d.sync += [busy.eq(1), stats_tile.eq(0), out_tile.eq(0), write_tile.eq(0), sums_taken.eq(0),
                         stats_ch.eq(0), out_ch.eq(0), write_ch.eq(0), n_par.eq(0)]

        # parameters: into the parameter RAM in arrival order; whether one more fits (n_par < d)
        # a register, from the cycle after d is read (two after start)
        par_room = Signal()
        m.d.comb += [self.i_param.ready.eq(busy & par_room), par.waddr.eq(n_par),
                     par.wdata.eq(Cat(self.i_param.payload.gamma, self.i_param.payload.beta)),
                     par.wen.eq(self.i_param.valid & self.i_param.ready)]
        with m.If(par.wen):
            m.d.sync += n_par.eq(n_par + 1)
        m.d.sync += par_room.eq(~self.start & Mux(par.wen, n_par + 1 < v.d, n_par < v.d))

        self._stats_pass(m, v, d_last, busy, tiles, stats_tile, stats_ch, out_tile, out_ch, sums_taken, stats, bank)
        # token row 0 (CLS) may have its own eps: lane 0 of the first tile post takes (a register:
        # sums_taken moves at a LOAD1's end, the next LOAD1 is a post pass later)
        m.d.sync += post.eps0.eq(Mux((v.eps0 != 0) & (sums_taken == 0), v.eps0, v.eps))
        self._out_pass(m, v, d_last, busy, tiles, out_tile, out_ch, n_par, post, out, bank, par)
        self._write(m, v, rows, busy, tiles, write_tile, write_ch, out)
        return m

    def _stats_pass(self, m, v, d_last, busy, tiles, stats_tile, stats_ch, out_tile, out_ch, sums_taken, stats, bank):
        """Read channel stats_ch of tile stats_tile when bank stats_tile % 2 no longer holds it
        for out(stats_tile - 2) and, for the tile's last channel, once post has taken the
        previous tile's sums."""
        hw = self.hw
        bank_free = ((stats_tile < 2) | (out_tile + 2 > stats_tile)
                     | ((out_tile + 2 == stats_tile) & (out_ch > stats_ch)))
        post_free = (stats_ch != d_last) | (sums_taken >= stats_tile)
        go = Signal()
        m.d.comb += go.eq(busy & (stats_tile < tiles) & bank_free & post_free)
        with m.If(stats.o_s.valid & stats.o_s.ready):
            m.d.sync += sums_taken.eq(sums_taken + 1)
        m.d.comb += [self.ra.buf.eq(v.i_buf[:2]), self.ra.tile.eq(stats_tile), self.ra.ch.eq(v.i_c0 + stats_ch),
                     self.ra.en.eq(go)]
        # the read's channel travels beside it: its data is there ports.READ_LATENCY cycles later
        issued = Signal(data.StructLayout({"valid": 1, "ch": range(hw.d_max), "bank": 1, "first": 1, "last": 1}))
        m.d.comb += [issued.valid.eq(go), issued.ch.eq(stats_ch), issued.bank.eq(stats_tile[0]),
                     issued.first.eq(stats_ch == 0), issued.last.eq(stats_ch == d_last)]
        read = ports.delayed(m, issued, ports.READ_LATENCY, "stats_read")
        with m.If(go):
            m.d.sync += stats_ch.eq(stats_ch + 1)
            with m.If(stats_ch == d_last):
                m.d.sync += [stats_ch.eq(0), stats_tile.eq(stats_tile + 1)]
        m.d.comb += [bank.waddr.eq(Mux(read.bank, hw.d_max, 0) + read.ch), bank.wdata.eq(self.ra.data),
                     bank.wen.eq(read.valid.replicate(hw.mac_rows)),
                     stats.valid.eq(read.valid), stats.first.eq(read.first), stats.last.eq(read.last),
                     stats.x.eq(self.ra.data)]

    def _out_pass(self, m, v, d_last, busy, tiles, out_tile, out_ch, n_par, post, out, bank, par):
        """Read channel out_ch of tile out_tile from its bank once the channel's parameter has
        arrived and, for the first channel, once post offers the tile's constants (taken then).
        Whether a tile is left, the channel is 0 and its parameter has arrived are registers, kept
        with the counters (each next value computed for every case from registers, then selected):
        `go` and `take` are one gate of registers."""
        hw = self.hw
        more, first, par_ok = Signal(), Signal(), Signal()
        last = out_ch == d_last
        go = Signal()
        m.d.comb += go.eq(busy & more & (~first | post.o_k.valid) & par_ok)
        with m.If(self.start):
            m.d.sync += [more.eq(1), first.eq(1), par_ok.eq(0)]          # rows >= 1; no parameter yet
        with m.Else():
            wen = self.i_param.valid & self.i_param.ready
            with m.If(go & last):
                m.d.sync += [more.eq(out_tile + 1 < tiles), first.eq(1), par_ok.eq(1)]   # go: n_par >= 1
            with m.Elif(go):
                m.d.sync += [first.eq(0), par_ok.eq(Mux(wen, out_ch < n_par, out_ch + 1 < n_par))]
            with m.Else():
                m.d.sync += par_ok.eq(Mux(wen, out_ch <= n_par, out_ch < n_par))
        # the RAMs read every cycle (their data counts with read_valid only): `go` does not fan
        # out to every block RAM's enable
        m.d.comb += [bank.raddr.eq(Mux(out_tile[0], hw.d_max, 0) + out_ch), bank.ren.eq(1), par.raddr.eq(out_ch),
                     par.ren.eq(1), out.take.eq(go & first),
                     # post sees ready only while it offers: the take without o_k.valid, a gate of
                     # registers apart from `take` (which fans out to every lane's constants)
                     post.o_k.ready.eq(busy & more & first & par_ok)]
        read_valid, read_first, read_last = Signal(), Signal(), Signal()
        m.d.sync += [read_valid.eq(go), read_first.eq(first), read_last.eq(last)]
        with m.If(go):
            m.d.sync += out_ch.eq(out_ch + 1)
            with m.If(last):
                m.d.sync += [out_ch.eq(0), out_tile.eq(out_tile + 1)]
        m.d.comb += [out.valid.eq(read_valid), out.first.eq(read_first), out.last.eq(read_last), out.x.eq(bank.rdata),
                     out.gamma.eq(par.rdata[:WORD].as_signed()), out.beta.eq(par.rdata[WORD:].as_signed())]

    def _write(self, m, v, rows, busy, tiles, write_tile, write_ch, out):
        """Results to the output buffer in order; the last write of the last tile ends the op."""
        R = self.hw.mac_rows
        # the lanes written: all but the last tile's lanes past the last row, from registers (the
        # tile compare is made a cycle ahead), one LUT into the port routes
        last = ports.last_row(m, rows - 1, self.hw, "write")
        last_tile, last_lanes = last.tile, last.lanes
        at_last = Signal(name="write_at_last")
        m.d.sync += at_last.eq(Mux(out.y_valid & out.y_last, write_tile + 1 == last_tile, write_tile == last_tile))
        m.d.comb += [self.w.buf.eq(v.o_buf[:2]), self.w.tile.eq(write_tile), self.w.ch.eq(v.o_c0 + write_ch),
                     self.w.data.eq(out.y), self.w.en.eq(Mux(out.y_valid, Mux(at_last, last_lanes, (1 << R) - 1), 0))]
        done = Signal()
        m.d.sync += done.eq(0)
        m.d.comb += self.done.eq(done)
        with m.If(out.y_valid):
            m.d.sync += write_ch.eq(write_ch + 1)
            with m.If(out.y_last):
                m.d.sync += [write_ch.eq(0), write_tile.eq(write_tile + 1)]
                with m.If(at_last):
                    m.d.sync += [done.eq(1), busy.eq(0)]
