"""Token-selector engine: golden.network.QSelector (scores, decision, optional top-k cap,
package token, compaction), one image per job, a simple sequential datapath.

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

Datapath: one LayerNorm unit lane (rtl_gen.layernorm), a head_dim-lane MAC vector (lane o
accumulates W[o, k] v[k] in 48 bits, one k per cycle), one PWL unit per activation
(rtl_gen.pwl), three reciprocal units (rtl_gen.recip). Schedule per job:
  W_RX, X_RX   weights and tokens into on-chip memories
  per head h:  LN + in_fc + GELU of every candidate (local half kept, global half summed),
               global mean, then out1 -> out2 -> out3 of every scored token: d = z0 - z1
  per scored token: head means, se1 -> se2 -> sigmoid (w), score, d_sig, m (one reciprocal)
  CAP          rank of each kept token among kept ones (score desc, index asc), if needed
  ORDER        o_sel beats, output order list, dropped-weight total; o_kept
  PACKAGE      per channel sum m_i n_i over dropped tokens, then norm / sum / mean
  OUT          gather output tiles from the token buffer and the package token
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
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


class SelectorEngine(wiring.Component):
    def __init__(self, fmt: SelFormats, hw: HardwareConfig):
        R = hw.mac_rows
        if R & (R - 1):
            raise ValueError(f"the selector engine needs mac_rows a power of two (got {R})")
        dh, H = fmt.head_dim, fmt.heads
        if dh % 4 or H > dh:
            raise ValueError(f"the selector engine needs head_dim divisible by 4 and heads <= head_dim "
                             f"(head_dim {dh}, heads {H})")
        self.fmt, self.hw = fmt, hw
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
        f, hw = self.fmt, self.hw
        R, NM, D, dh, H = hw.mac_rows, hw.n_max, f.dim, f.head_dim, f.heads
        lr = R.bit_length() - 1
        TM = -(-NM // R)
        L = layout(f)
        dims = f.layer_dims()
        half = dh // 2
        PKG = NM                                    # order-list code of the new package token

        # ------------------------------------------------------------ units and memories
        m.submodules.ln = ln = LayerNormUnit(dh, 1, f.ln_g_frac, f.ln_eps_q, f.ln_out_frac)
        pwl = {}
        for lid, p in enumerate(f.pwls):
            if p is not None:
                m.submodules[f"pwl{lid}"] = pwl[lid] = PwlUnit(p)
        m.submodules.dsig = dsig = PwlUnit(f.d_sig)
        cnt_bits = NM.bit_length()
        m.submodules.rcp_cnt = rcp_cnt = _recip(cnt_bits, MEAN_RECIP_BITS)
        m.submodules.rcp_m = rcp_m = _recip(20, WEIGHT_RECIP_BITS)
        m.submodules.rcp_pk = rcp_pk = _recip(28, PACK_RECIP_BITS)

        row16 = data.ArrayLayout(signed(WORD), dh)
        m.submodules.xmem = xmem = memory.Memory(shape=data.ArrayLayout(signed(WORD), R), depth=TM * D, init=[])
        m.submodules.wmem = wmem = memory.Memory(shape=row16, depth=L["nw"], init=[])
        m.submodules.bmem = bmem = memory.Memory(shape=data.ArrayLayout(signed(ACC_BITS), dh), depth=L["nb"], init=[])
        m.submodules.fmem = fmem = memory.Memory(shape=data.ArrayLayout(signed(WORD), half), depth=NM, init=[])
        m.submodules.dmem = dmem = memory.Memory(shape=signed(17), depth=NM * H, init=[])
        m.submodules.smem = smem = memory.Memory(shape=signed(SCORE_BITS), depth=NM, init=[])
        m.submodules.mmem = mmem = memory.Memory(shape=signed(M_BITS), depth=NM, init=[])
        m.submodules.k0mem = k0mem = memory.Memory(shape=1, depth=NM, init=[])
        m.submodules.kfmem = kfmem = memory.Memory(shape=1, depth=NM, init=[])
        m.submodules.omem = omem = memory.Memory(shape=range(NM + 1), depth=NM + 1, init=[])
        m.submodules.pmem = pmem = memory.Memory(shape=signed(WORD), depth=D, init=[])
        x_w, x_r = xmem.write_port(), xmem.read_port(domain="comb")
        w_w, w_r = wmem.write_port(), wmem.read_port(domain="comb")
        b_w, b_r = bmem.write_port(), bmem.read_port(domain="comb")
        f_w, f_r = fmem.write_port(), fmem.read_port(domain="comb")
        d_w, d_r = dmem.write_port(), dmem.read_port(domain="comb")
        s_w, s_r, s_r2 = smem.write_port(), smem.read_port(domain="comb"), smem.read_port(domain="comb")
        m_w, m_r = mmem.write_port(), mmem.read_port(domain="comb")
        k0_w, k0_r, k0_r2 = k0mem.write_port(), k0mem.read_port(domain="comb"), k0mem.read_port(domain="comb")
        kf_w, kf_r = kfmem.write_port(), kfmem.read_port(domain="comb")
        o_w, o_r = omem.write_port(), omem.read_port(domain="comb")
        p_w, p_r = pmem.write_port(), pmem.read_port(domain="comb")

        # ------------------------------------------------------------ registers
        n, n_pkg = self.n, self.n_pkg
        ns = Signal(range(NM + 1))                  # scored tokens
        m.d.comb += ns.eq(n - 1 - n_pkg)
        v = [Signal(signed(WORD), name=f"v{o}") for o in range(dh)]          # layer input / output vector
        acc = [Signal(signed(ACC_BITS), name=f"acc{o}") for o in range(dh)]
        gsum = [Signal(signed(32), name=f"gsum{q}") for q in range(half)]
        glob = [Signal(signed(WORD), name=f"glob{q}") for q in range(half)]
        hsum = [Signal(signed(32), name=f"hsum{h}") for h in range(H)]
        ybuf = [Signal(signed(WORD), name=f"ybuf{r}") for r in range(R)]
        rcnt = Signal(MEAN_RECIP_BITS + 1)
        rpk = Signal(PACK_RECIP_BITS + 1)
        score = Signal(signed(SCORE_BITS))
        num = Signal(signed(SCORE_BITS))
        den = Signal(signed(24))
        total = Signal(unsigned(32))
        pacc = Signal(signed(ACC_BITS))
        wc = Signal(range(L["nw"] + 1))              # weight rows received
        brow = Signal(range(L["nb"] + 1))
        bch = Signal(range(3))
        bst = [Signal(32, name=f"bst{o}") for o in range(dh)]
        xt = Signal(range(TM + 1))
        h = Signal(range(H + 1))
        j = Signal(range(max(dh, D) + 1))
        c = Signal(range(max(NM, D) + 1))           # candidate / channel counter
        s = Signal(range(NM + 1))                   # scored-token counter
        b = Signal(range(NM + 1))
        k = Signal(range(dh + 1))
        layer = Signal(range(6))
        pi = Signal(range(dh + 1))
        pc = Signal(range(dh + 1))
        hc = Signal(range(H + 1))
        rank = Signal(range(NM + 1))
        sa = Signal(signed(SCORE_BITS))
        kept0 = Signal(range(NM + 1))
        kept = Signal(range(NM + 1))
        wp = Signal(range(NM + 2))
        p = Signal(range(NM + 1))
        ob = Signal(range(NM + R + 1))
        r = Signal(range(R + 1))

        # token buffer read: token xtok, channel xch
        xtok = Signal(range(NM + 1))
        xch = Signal(range(D))
        xval = Signal(signed(WORD))
        m.d.comb += [x_r.addr.eq((xtok >> lr) * D + xch), xval.eq(x_r.data[xtok[:lr] if lr else 0])]

        # ------------------------------------------------------------ MAC vector and post-processing
        klen = Signal(range(dh + 1))
        olen = Signal(range(dh + 1))
        wbase = Signal(range(L["nw"] + 1))
        bbase = Signal(range(L["nb"] + 1))
        pre = Signal(signed(WORD))
        with m.Switch(layer):
            for lid in range(6):
                with m.Case(lid):
                    m.d.comb += [klen.eq(dims[lid][0]), olen.eq(dims[lid][1])]
                    if lid <= OUT3:
                        m.d.comb += [wbase.eq(h * L["hw_rows"] + L["w_off"][lid]), bbase.eq(h * L["hb_rows"] + 1 + lid)]
                    else:
                        m.d.comb += [wbase.eq(L["se1_w"] if lid == SE1 else L["se2_w"]),
                                     bbase.eq(L["se1_b"] if lid == SE1 else L["se2_b"])]
                    sum_ = _index(acc, pi) + _index([b_r.data[o] for o in range(dh)], pi)
                    m.d.comb += pre.eq(requant(sum_, f.shifts[lid]))
        for u in pwl.values():
            m.d.comb += [u.i_x.payload.eq(pre), u.o_y.ready.eq(1)]
        m.d.comb += dsig.o_y.ready.eq(1)
        vk = _index(v, k)

        # LN unit ports
        m.d.comb += [ln.i_param.payload.gamma.eq(w_r.data[j[:max(1, (dh - 1).bit_length())]]),
                     ln.i_param.payload.beta.eq(b_r.data[j[:max(1, (dh - 1).bit_length())]]),
                     ln.i_x.payload.x[0].eq(xval)]

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
                                m.d.sync += [wc.eq(0), brow.eq(0), xt.eq(0), j.eq(0)]
                                m.next = "X_RX"
            with m.State("X_RX"):
                m.d.comb += [self.i_x.ready.eq(1), x_w.addr.eq(xt * D + j), x_w.data.eq(self.i_x.payload.x)]
                with m.If(self.i_x.valid):
                    m.d.comb += x_w.en.eq(1)
                    m.d.sync += j.eq(j + 1)
                    with m.If(j == D - 1):
                        m.d.sync += [j.eq(0), xt.eq(xt + 1)]
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

            # ---- per head: LN + in_fc + GELU of every candidate
            with m.State("HEAD"):
                m.d.sync += [g.eq(0) for g in gsum] + [j.eq(0), c.eq(0)]
                m.next = "LN_PARAM"
            with m.State("LN_PARAM"):
                m.d.comb += [w_r.addr.eq(h * L["hw_rows"]), b_r.addr.eq(h * L["hb_rows"]), ln.i_param.valid.eq(1)]
                with m.If(ln.i_param.ready):
                    m.d.sync += j.eq(j + 1)
                    with m.If(j == dh - 1):
                        m.d.sync += j.eq(0)
                        m.next = "LN_FEED"
            with m.State("LN_FEED"):
                m.d.comb += [xtok.eq(1 + c), xch.eq(h * dh + j), ln.i_x.valid.eq(1),
                             ln.i_x.payload.last.eq((c == n - 2) & (j == dh - 1))]
                with m.If(ln.i_x.ready):
                    m.d.sync += j.eq(j + 1)
                    with m.If(j == dh - 1):
                        m.d.sync += j.eq(0)
                        m.next = "LN_COL"
            with m.State("LN_COL"):
                m.d.comb += ln.o_y.ready.eq(1)
                with m.If(ln.o_y.valid):
                    for o in range(dh):
                        with m.If(j == o):
                            m.d.sync += v[o].eq(ln.o_y.payload.y[0])
                    m.d.sync += j.eq(j + 1)
                    with m.If(j == dh - 1):
                        m.d.sync += [j.eq(0), layer.eq(IN_FC), k.eq(0)]
                        m.next = "MAC"
            with m.State("F_STORE"):
                m.d.comb += [f_w.addr.eq(c), f_w.en.eq(1)] + [f_w.data[q].eq(v[q]) for q in range(half)]
                m.d.sync += [gsum[q].eq(gsum[q] + v[half + q]) for q in range(half)]
                m.d.sync += c.eq(c + 1)
                with m.If(c == n - 2):
                    m.next = "GLOB"
                with m.Else():
                    m.next = "LN_FEED"
            with m.State("GLOB"):
                m.d.sync += [glob[q].eq(rshift_round(gsum[q] * rcnt, MEAN_RECIP_BITS)[:WORD].as_signed())
                             for q in range(half)]
                m.d.sync += s.eq(0)
                with m.If(ns == 0):
                    m.next = "NEXT_HEAD"
                with m.Else():
                    m.next = "SC_LOAD"
            with m.State("SC_LOAD"):
                m.d.comb += f_r.addr.eq(s)
                m.d.sync += [v[q].eq(f_r.data[q]) for q in range(half)]
                m.d.sync += [v[half + q].eq(glob[q]) for q in range(half)]
                m.d.sync += [layer.eq(OUT1), k.eq(0)]
                m.next = "MAC"
            with m.State("Z_STORE"):
                m.d.comb += [d_w.addr.eq(s * H + h), d_w.data.eq(v[0] - v[1]), d_w.en.eq(1)]
                m.d.sync += s.eq(s + 1)
                with m.If(s == ns - 1):
                    m.next = "NEXT_HEAD"
                with m.Else():
                    m.next = "SC_LOAD"
            with m.State("NEXT_HEAD"):
                m.d.sync += h.eq(h + 1)
                with m.If(h == H - 1):
                    m.d.sync += [s.eq(0), h.eq(0), j.eq(0)] + [x.eq(0) for x in hsum]
                    with m.If(ns == 0):
                        m.next = "ORDER_INIT"
                    with m.Else():
                        m.next = "XBAR"
                with m.Else():
                    m.next = "HEAD"

            # ---- MAC vector: acc[o] = sum_k W[o, k] v[k]; then bias, requant, activation -> v
            with m.State("MAC"):
                m.d.comb += w_r.addr.eq(wbase + k)
                for o in range(dh):
                    m.d.sync += acc[o].eq(Mux(k == 0, 0, acc[o]) + w_r.data[o] * vk)
                m.d.sync += k.eq(k + 1)
                with m.If(k == klen - 1):
                    m.d.sync += [k.eq(0), pi.eq(0), pc.eq(0)]
                    m.next = "POST"
            with m.State("POST"):
                m.d.comb += b_r.addr.eq(bbase)
                issue = pi < olen
                with m.If(issue):
                    m.d.sync += pi.eq(pi + 1)
                with m.Switch(layer):
                    for lid in range(6):
                        with m.Case(lid):
                            if lid in pwl:
                                u = pwl[lid]
                                m.d.comb += u.i_x.valid.eq(issue)
                                with m.If(u.o_y.valid):
                                    _set(m, v, pc, u.o_y.payload)
                                    m.d.sync += pc.eq(pc + 1)
                            else:
                                with m.If(issue):
                                    _set(m, v, pi, pre)
                                    m.d.sync += pc.eq(pc + 1)
                with m.If(pc == olen):
                    with m.Switch(layer):
                        with m.Case(IN_FC):
                            m.next = "F_STORE"
                        with m.Case(OUT1, OUT2, SE1):
                            m.d.sync += layer.eq(layer + 1)
                            m.next = "MAC"
                        with m.Case(OUT3):
                            m.next = "Z_STORE"
                        with m.Case(SE2):
                            m.d.sync += [h.eq(0), hc.eq(0), score.eq(0), num.eq(0), den.eq(0)]
                            m.next = "SCORE"

            # ---- head branch and score of scored token s
            with m.State("XBAR"):
                m.d.comb += [xtok.eq(1 + s), xch.eq(h * dh + j)]
                for hh in range(H):
                    with m.If(h == hh):
                        m.d.sync += hsum[hh].eq(hsum[hh] + xval)
                m.d.sync += j.eq(j + 1)
                with m.If(j == dh - 1):
                    m.d.sync += [j.eq(0), h.eq(h + 1)]
                    with m.If(h == H - 1):
                        m.d.sync += h.eq(0)
                        m.next = "XBAR_FIN"
            with m.State("XBAR_FIN"):
                mult = round((1 << 15) / dh)
                m.d.sync += [v[hh].eq(requant(hsum[hh] * mult, 15)) for hh in range(H)]
                m.d.sync += [layer.eq(SE1), k.eq(0)]
                m.next = "MAC"
            with m.State("SCORE"):
                wv = _index(v, h)
                m.d.comb += [d_r.addr.eq(s * H + h), dsig.i_x.payload.eq(d_r.data)]
                with m.If(h < H):
                    m.d.comb += dsig.i_x.valid.eq(1)
                    m.d.sync += [h.eq(h + 1), score.eq(score + wv * d_r.data), den.eq(den + wv)]
                with m.If(dsig.o_y.valid):
                    m.d.sync += [num.eq(num + _index(v, hc) * dsig.o_y.payload), hc.eq(hc + 1)]
                with m.If(hc == H):
                    m.next = "M_RECIP"
            with m.State("M_RECIP"):
                m.d.comb += [rcp_m.i_d.valid.eq(1), rcp_m.i_d.payload.eq(Mux(den < 1, 1, den))]
                with m.If(rcp_m.i_d.ready):
                    m.next = "M_WAIT"
            with m.State("M_WAIT"):
                m.d.comb += rcp_m.o_q.ready.eq(1)
                mval = rshift_round(num * rcp_m.o_q.payload, WEIGHT_RECIP_BITS)
                keep0 = score >= 0
                m.d.comb += [s_w.addr.eq(s), s_w.data.eq(score), m_w.addr.eq(s), m_w.data.eq(mval),
                             k0_w.addr.eq(s), k0_w.data.eq(keep0), kf_w.addr.eq(s), kf_w.data.eq(keep0)]
                with m.If(rcp_m.o_q.valid):
                    m.d.comb += [s_w.en.eq(1), m_w.en.eq(1), k0_w.en.eq(1), kf_w.en.eq(1)]
                    m.d.sync += [s.eq(s + 1), kept0.eq(kept0 + keep0), h.eq(0), j.eq(0)] + [x.eq(0) for x in hsum]
                    with m.If(s == ns - 1):
                        m.d.sync += s.eq(0)
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

            # ---- o_sel, output order, package weights
            with m.State("ORDER_INIT"):
                m.d.comb += [o_w.addr.eq(0), o_w.data.eq(0), o_w.en.eq(1)]
                m.d.sync += [wp.eq(1), s.eq(0), total.eq(0), kept.eq(0), p.eq(0)]
                with m.If(ns == 0):
                    m.next = "ORDER_PKG"
                with m.Else():
                    m.next = "ORDER"
            with m.State("ORDER"):
                m.d.comb += [s_r.addr.eq(s), m_r.addr.eq(s), kf_r.addr.eq(s), self.o_sel.valid.eq(1),
                             self.o_sel.payload.keep.eq(kf_r.data), self.o_sel.payload.score.eq(s_r.data),
                             self.o_sel.payload.m.eq(m_r.data), self.o_sel.payload.last.eq(s == ns - 1)]
                with m.If(self.o_sel.ready):
                    with m.If(kf_r.data):
                        m.d.comb += [o_w.addr.eq(wp), o_w.data.eq(1 + s), o_w.en.eq(1)]
                        m.d.sync += [wp.eq(wp + 1), kept.eq(kept + 1)]
                    with m.Else():
                        m.d.sync += total.eq(total + Mux(self.mode == MODES["mean"], 1, m_r.data))
                    m.d.sync += s.eq(s + 1)
                    with m.If(s == ns - 1):
                        m.next = "ORDER_PKG"
            with m.State("ORDER_PKG"):
                m.d.sync += wp.eq(wp + 1)
                m.d.comb += [o_w.addr.eq(wp), o_w.en.eq(1)]
                with m.If(p == n_pkg):
                    m.d.comb += o_w.data.eq(PKG)
                    m.next = "KEPT_OUT"
                with m.Else():
                    m.d.comb += o_w.data.eq(1 + ns + p)
                    m.d.sync += p.eq(p + 1)
            with m.State("KEPT_OUT"):
                m.d.comb += [self.o_kept.valid.eq(1), self.o_kept.payload.eq(kept)]
                with m.If(self.o_kept.ready):
                    with m.If((self.mode != MODES["sum"]) & (total != 0)):
                        m.next = "PK_RECIP"
                    with m.Else():
                        m.d.sync += c.eq(0)
                        m.next = "PK_CH"
            with m.State("PK_RECIP"):
                m.d.comb += [rcp_pk.i_d.valid.eq(1), rcp_pk.i_d.payload.eq(total)]
                with m.If(rcp_pk.i_d.ready):
                    m.next = "PK_WAIT"
            with m.State("PK_WAIT"):
                m.d.comb += rcp_pk.o_q.ready.eq(1)
                with m.If(rcp_pk.o_q.valid):
                    m.d.sync += [rpk.eq(rcp_pk.o_q.payload), c.eq(0)]
                    m.next = "PK_CH"

            # ---- package token, one channel at a time
            with m.State("PK_CH"):
                m.d.sync += [pacc.eq(0), s.eq(0)]
                with m.If(ns == 0):
                    m.next = "PK_FIN"
                with m.Else():
                    m.next = "PK_ACC"
            with m.State("PK_ACC"):
                m.d.comb += [kf_r.addr.eq(s), m_r.addr.eq(s), xtok.eq(1 + s), xch.eq(c)]
                mv = Mux(self.mode == MODES["mean"], 1, m_r.data)
                with m.If(~kf_r.data):
                    m.d.sync += pacc.eq(pacc + mv * xval)
                m.d.sync += s.eq(s + 1)
                with m.If(s == ns - 1):
                    m.next = "PK_FIN"
            with m.State("PK_FIN"):
                y_sum = requant(pacc, 15)
                y_norm = Mux(total == 0, 0, requant(pacc * rpk, PACK_RECIP_BITS))
                m.d.comb += [p_w.addr.eq(c), p_w.data.eq(Mux(self.mode == MODES["sum"], y_sum, y_norm)), p_w.en.eq(1)]
                m.d.sync += c.eq(c + 1)
                with m.If(c == D - 1):
                    m.d.sync += [ob.eq(0), j.eq(0), r.eq(0)]
                    m.next = "GATHER"
                with m.Else():
                    m.next = "PK_CH"

            # ---- output tiles: lane r of tile ob / R is output token ob + r
            with m.State("GATHER"):
                idx = ob + r
                m.d.comb += [o_r.addr.eq(idx), p_r.addr.eq(j), xtok.eq(o_r.data), xch.eq(j)]
                val = Mux(idx < wp, Mux(o_r.data == PKG, p_r.data, xval), 0)
                _set(m, ybuf, r, val)
                m.d.sync += r.eq(r + 1)
                with m.If(r == R - 1):
                    m.d.sync += r.eq(0)
                    m.next = "EMIT"
            with m.State("EMIT"):
                end = ob + R >= wp
                m.d.comb += [self.o_y.valid.eq(1), self.o_y.payload.last.eq(end & (j == D - 1))]
                m.d.comb += [self.o_y.payload.y[rr].eq(ybuf[rr]) for rr in range(R)]
                with m.If(self.o_y.ready):
                    m.d.sync += j.eq(j + 1)
                    m.next = "GATHER"
                    with m.If(j == D - 1):
                        m.d.sync += [j.eq(0), ob.eq(ob + R)]
                        with m.If(end):
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
