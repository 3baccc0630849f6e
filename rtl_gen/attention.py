"""Attention engine: x1 = add_sat(x, proj(attn(LN1(x)))), golden.network.QAttention plus the
first residual of QBlock.

Streams as the MLP engine (docs/rtl.md): i_x / o_y token tiles of mac_rows tokens, one channel
per beat; i_w weights in weight_stream() order; plain input `n` = runtime token count N (held
during a job; the tiles on i_x must be ceil(N / mac_rows)).

Schedule per job, all on one MAC array (mac_rows x mac_cols):
  LOAD     x -> token buffer, LayerNorm unit -> normalised buffer
  QKV      [q|k|v] = LN1(x) W^T + b (3D outputs, m-tile outer), requantised per part; q goes to
           a token-tile buffer, k to key tiles of mac_cols tokens, v to mac_rows token banks
  items i = (query tile t, head h), t outer, L = T heads of them:
    SCORE  S = requant_mul(q_h k_h^T, scale_mult) key tile by key tile (K = head_dim); the
           drained columns of keys < N stream straight into the softmax unit (mac_rows rows),
           whose probabilities go to bank i % 2 of the probability buffer
    PV     o_h = requant(P v_h) (K = N), P from bank i % 2
    issued as S0 S1 PV0 S2 PV1 ... S(L-1) PV(L-2) PV(L-1): the softmax of item i works while
    the array runs PV(i-1) and the first tiles of S(i+1), so the array idles only when the
    softmax takes longer than those (a short head_dim against many keys)
  PROJ     proj(o) + bias, requantised, add_sat with x, written back over the token buffer
  OUT      token buffer -> o_y
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Array, Cat, Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.kernels import PROB_FRAC

from .arith import WORD, add_sat, requant
from .config import HardwareConfig
from .layernorm import LayerNormUnit, lanes_layout
from .loader import WeightLoader
from .mac import MacArray
from .mlp import split48
from .pipe import collect_rows, load_rows
from .softmax import SoftmaxUnit


@dataclass(frozen=True)
class AttnFormats:
    dim: int
    heads: int
    ln_g_frac: int
    ln_eps_q: int
    ln_out_frac: int
    q_shift: int
    k_shift: int
    v_shift: int
    scale_mult: int
    s_shift: int
    s_frac: int
    o_shift: int
    proj_shift: int
    res_frac: int        # x (the block's input format)
    proj_frac: int
    mid_frac: int

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @classmethod
    def from_block(cls, blk) -> "AttnFormats":
        a, n = blk.attn, blk.norm1
        return cls(a.q.w.shape[-1], a.heads, n.g_frac, n.eps_q, n.out_frac, a.q.shift, a.k.shift, a.v.shift,
                   a.scale_mult, a.q.out_frac + a.k.out_frac + 15 - a.s_frac, a.s_frac,
                   PROB_FRAC + a.v.out_frac - a.o_frac, a.proj.shift, blk.in_frac, a.proj.out_frac, blk.mid_frac)


def weight_stream(blk, cols: int) -> list[list[int]]:
    """i_w words for one job: LN1 (per `cols` channels: gamma, beta low/mid/high), then the
    q, k, v projections as one layer of 3D outputs, then proj; per m-tile of `cols` outputs:
    bias low/mid/high, then w[m-tile, k] for k = 0..D-1."""
    words = []
    g, b = np.asarray(blk.norm1.gamma, dtype=np.int64), np.asarray(blk.norm1.beta, dtype=np.int64)
    for j in range(0, len(g), cols):
        words += [g[j:j + cols].tolist()] + [c.tolist() for c in split48(b[j:j + cols])]
    a = blk.attn
    for lin in (a.q, a.k, a.v, a.proj):
        w = np.asarray(lin.w, dtype=np.int64)
        bias = np.broadcast_to(np.asarray(lin.b, dtype=np.int64), w.shape[:1])
        for m0 in range(0, w.shape[0], cols):
            words += [c.tolist() for c in split48(bias[m0:m0 + cols])]
            words += w[m0:m0 + cols].T.tolist()
    return words


class AttentionEngine(wiring.Component):
    def __init__(self, fmt: AttnFormats, hw: HardwareConfig):
        R, C, D, dh = hw.mac_rows, hw.mac_cols, fmt.dim, fmt.head_dim
        if D % C or dh % C or C % R:
            raise ValueError(f"attention engine needs mac_cols | head_dim and mac_rows | mac_cols "
                             f"(mac_rows {R}, mac_cols {C}, head_dim {dh})")
        self.fmt, self.hw = fmt, hw
        super().__init__({
            "n": In(range(hw.n_max + 1)),
            "i_x": In(stream.Signature(lanes_layout(R, "x"))),
            "i_w": In(stream.Signature(data.ArrayLayout(signed(WORD), C))),
            "o_y": Out(stream.Signature(lanes_layout(R, "y"))),
        })

    def elaborate(self, platform):
        m = Module()
        f, R, C, NM = self.fmt, self.hw.mac_rows, self.hw.mac_cols, self.hw.n_max
        D, HH, DH = f.dim, f.heads, f.head_dim
        TM, UM = -(-NM // R), -(-NM // C)               # token tiles, key tiles at most
        MP = D // C                                     # m-tiles per D outputs
        G = C // R                                      # token tiles per key tile
        rowl = data.ArrayLayout(signed(WORD), R)
        coll = data.ArrayLayout(signed(WORD), C)

        m.submodules.ln = ln = LayerNormUnit(D, R, f.ln_g_frac, f.ln_eps_q, f.ln_out_frac)
        m.submodules.mac = mac = MacArray(R, C)
        m.submodules.softmax = sm = SoftmaxUnit(f.s_frac, R, NM)
        mems = {}
        for name, shape, depth in (("xbuf", rowl, TM * D), ("xnbuf", rowl, TM * D), ("qbuf", rowl, TM * D),
                                   ("obuf", rowl, TM * D), ("kbuf", coll, UM * D), ("pbuf", rowl, 2 * NM)):
            m.submodules[name] = mems[name] = memory.Memory(shape=shape, depth=depth, init=[])
        x_w, x_r = mems["xbuf"].write_port(), mems["xbuf"].read_port(domain="comb")
        xn_w, xn_r = mems["xnbuf"].write_port(), mems["xnbuf"].read_port(domain="comb")
        q_w, q_r = mems["qbuf"].write_port(), mems["qbuf"].read_port(domain="comb")
        o_w, o_r = mems["obuf"].write_port(), mems["obuf"].read_port(domain="comb")
        k_w, k_r = mems["kbuf"].write_port(granularity=1), mems["kbuf"].read_port(domain="comb")
        p_w, p_r = mems["pbuf"].write_port(), mems["pbuf"].read_port(domain="comb")
        vbanks = []
        for r in range(R):
            m.submodules[f"vbank{r}"] = vb = memory.Memory(shape=coll, depth=TM * MP, init=[])
            vbanks.append((vb.write_port(granularity=1), vb.read_port(domain="comb")))
        wl = WeightLoader(m, self.i_w, ln, D, C, [(3 * MP, D), (MP, D)])
        w_r, full = wl.read, wl.full

        # ---------------------------------------------------------------- state
        N = Signal(range(NM + 1))
        T = Signal(range(TM + 1))
        U = Signal(range(UM + 1))
        ti, ki = Signal(range(TM)), Signal(range(D))
        to, ko = Signal(range(TM)), Signal(range(D))
        ln_done = Signal()
        lin = Signal()                                  # 0: QKV, 1: PROJ
        mt, t, k = Signal(range(3 * MP)), Signal(range(TM)), Signal(range(D))
        gmt = Signal(range(4 * MP + 1))
        th, hh = Signal(range(TM)), Signal(range(HH))   # query tile and head of the score being issued
        pth, phh = Signal(range(TM)), Signal(range(HH)) # query tile and head of the P.V being issued
        oth, ohh = Signal(range(TM)), Signal(range(HH)) # query tile and head of the P.V being drained
        obase = Signal(range(TM * D))                   # its o buffer address, oth D + ohh head_dim
        s_first, s_all = Signal(), Signal()             # issuing the first score; all scores issued
        u, j = Signal(range(UM)), Signal(range(max(DH, 2)))
        pc, pn = Signal(range(max(DH // C, 2))), Signal(range(NM))
        vr, vq = Signal(range(R)), Signal(range(TM))    # pn % R, pn // R
        ikind = Signal(2)                               # kind of the issued tile: 0 linear, 1 score, 2 pv
        skind = Signal(2)                               # kind of the tile in the MAC's shadow bank (draining)
        pwb, prb = Signal(), Signal()                   # probability bank written by the softmax / read by P.V
        p_full = Signal(2)                              # bank holds probabilities not yet read by P.V
        p_set, p_clr = Signal(), Signal()
        dc = Signal(range(C))
        dt, dmt = Signal(range(TM)), Signal(range(3 * MP))
        dpart, dmp = Signal(range(3)), Signal(range(MP))
        dku, dkg = Signal(range(UM)), Signal(range(G))  # key word / lane group of token tile dt
        dg = Signal(range(4 * MP + 1))
        drained = Signal()
        sk = Signal(range(UM * C + 1))                  # key index of the drained score column
        dpc = Signal(range(max(DH // C, 2)))
        pj = Signal(range(NM + 1))
        out_phase = Signal()
        ot, ok = Signal(range(TM)), Signal(range(D))

        # LN output -> normalised buffer
        collect_rows(m, ln.o_y, xn_w, to, ko, D, ln_done)

        # softmax output -> probability bank pwb (two banks: the softmax of one score overlaps the
        # P.V of the previous one)
        m.d.comb += [sm.o_p.ready.eq(~p_full.bit_select(pwb, 1)), p_w.addr.eq(Mux(pwb, NM, 0) + pj),
                     p_w.data.eq(sm.o_p.payload.p), p_w.en.eq(sm.o_p.valid & sm.o_p.ready)]
        with m.If(sm.o_p.valid & sm.o_p.ready):
            m.d.sync += pj.eq(pj + 1)
            with m.If(sm.o_p.payload.last):
                m.d.comb += p_set.eq(1)
                m.d.sync += [pj.eq(0), pwb.eq(~pwb)]
        for b in range(2):
            with m.If(p_set & (pwb == b)):
                m.d.sync += p_full[b].eq(1)
            with m.Elif(p_clr & (prb == b)):
                m.d.sync += p_full[b].eq(0)

        # ---------------------------------------------------------------- MAC operands
        ab = mac.i_ab.payload
        hoff = hh * DH
        m.d.comb += [xn_r.addr.eq(t * D + k), o_r.addr.eq(t * D + k), w_r.addr.eq(wl.addr(gmt[0], k)),
                     q_r.addr.eq(th * D + hoff + j), k_r.addr.eq(u * D + hoff + j), p_r.addr.eq(Mux(prb, NM, 0) + pn)]
        vaddr = vq * MP + (phh * (DH // C)) + pc
        vdata = Array(rd.data for _, rd in vbanks)[vr]
        for _, rd in vbanks:
            m.d.comb += rd.addr.eq(vaddr)

        # ---------------------------------------------------------------- drain
        acc = mac.o_acc.payload.acc
        bsel = wl.bias_of(dg[0], dc, C)
        dch = dmp * C + dc                               # channel within the part
        m.d.comb += [q_w.addr.eq(dt * D + dch), k_w.addr.eq(dku * D + dch)]
        for r in range(R):
            s = acc[r] + bsel
            m.d.comb += [q_w.data[r].eq(requant(s, f.q_shift)),
                         o_w.data[r].eq(requant(acc[r], f.o_shift)),
                         sm.i_s.payload.s[r].eq(requant(acc[r] * f.scale_mult, f.s_shift)),
                         x_w.data[r].eq(add_sat(x_r.data[r], f.res_frac, requant(s, f.proj_shift), f.proj_frac,
                                                f.mid_frac)),
                         self.o_y.payload.y[r].eq(x_r.data[r])]
            for g in range(G):
                m.d.comb += k_w.data[g * R + r].eq(requant(s, f.k_shift))
            vw, _ = vbanks[r]
            m.d.comb += vw.addr.eq(dt * MP + dmp)
            for c in range(C):
                m.d.comb += vw.data[c].eq(requant(s, f.v_shift))
        m.d.comb += [sm.i_s.payload.last.eq(sk == N - 1), o_w.addr.eq(obase + dpc * C + dc)]
        m.d.comb += x_r.addr.eq(Mux(out_phase, ot * D + ok, dt * D + dch))

        with m.If(mac.i_ab.valid & mac.i_ab.ready & ab.last):
            m.d.sync += skind.eq(ikind)
        lin_take = mac.o_acc.valid & (skind == 0)
        with m.If(skind == 1):
            m.d.comb += [sm.i_s.valid.eq(mac.o_acc.valid & (sk < N)), mac.o_acc.ready.eq(sm.i_s.ready | (sk >= N))]
        with m.Else():
            m.d.comb += mac.o_acc.ready.eq(1)
        with m.If(lin_take):
            with m.If(lin):
                m.d.comb += [x_w.addr.eq(dt * D + dch), x_w.en.eq(-1)]
            with m.Else():
                with m.Switch(dpart):
                    with m.Case(0):
                        m.d.comb += q_w.en.eq(-1)
                    with m.Case(1):
                        m.d.comb += k_w.en.eq(Cat(dkg == g for g in range(G) for _ in range(R)))
                    with m.Case(2):
                        for vw, _ in vbanks:
                            m.d.comb += vw.en.eq(Cat(dc == c for c in range(C)))
            m.d.sync += dc.eq(dc + 1)
            with m.If(dc == C - 1):
                m.d.sync += [dc.eq(0), dt.eq(dt + 1), dkg.eq(dkg + 1)]
                with m.If(dkg == G - 1):
                    m.d.sync += [dkg.eq(0), dku.eq(dku + 1)]
                with m.If(dt == T - 1):
                    m.d.sync += [dt.eq(0), dkg.eq(0), dku.eq(0), dmt.eq(dmt + 1), dmp.eq(dmp + 1), dg.eq(dg + 1),
                                 Array(full)[dg[0]].eq(0)]
                    with m.If(dmp == MP - 1):
                        m.d.sync += [dmp.eq(0), dpart.eq(dpart + 1)]
                    with m.If(dmt == Mux(lin, MP, 3 * MP) - 1):
                        m.d.sync += [dmt.eq(0), dpart.eq(0), drained.eq(1)]
        with m.If(mac.o_acc.valid & mac.o_acc.ready & (skind == 1)):
            m.d.sync += sk.eq(sk + 1)
            with m.If(sk == U * C - 1):
                m.d.sync += sk.eq(0)
        with m.If(mac.o_acc.valid & (skind == 2)):
            m.d.comb += o_w.en.eq(1)
            m.d.sync += dc.eq(dc + 1)
            with m.If(dc == C - 1):
                m.d.sync += [dc.eq(0), dpc.eq(dpc + 1)]
                with m.If(dpc == DH // C - 1):
                    m.d.sync += [dpc.eq(0), ohh.eq(ohh + 1), obase.eq(obase + DH)]
                    with m.If(ohh == HH - 1):
                        m.d.sync += [ohh.eq(0), oth.eq(oth + 1)]
                        with m.If(oth == T - 1):
                            m.d.sync += [oth.eq(0), obase.eq(0), drained.eq(1)]

        # ---------------------------------------------------------------- sequencer
        def start_linear(which):
            return [lin.eq(which), mt.eq(0), t.eq(0), k.eq(0), dc.eq(0), dt.eq(0), dmt.eq(0),
                    dmp.eq(0), dpart.eq(0), dku.eq(0), dkg.eq(0), drained.eq(0)]

        with m.FSM(name="compute"):
            with m.State("LOAD"):
                load_rows(m, self.i_x, ln.i_x, x_w, ti, ki, D,
                          [T.eq(ti + 1), N.eq(self.n), U.eq((self.n + C - 1) // C)], "LN_WAIT")
            with m.State("LN_WAIT"):
                with m.If(ln_done):
                    m.d.sync += [ln_done.eq(0), gmt.eq(0), dg.eq(0)] + start_linear(0)
                    m.next = "LINEAR"
            with m.State("LINEAR"):
                with m.If(Array(full)[gmt[0]]):
                    m.d.comb += [mac.i_ab.valid.eq(1), ab.a.eq(Mux(lin, o_r.data, xn_r.data)), ab.b.eq(w_r.data),
                                 ab.first.eq(k == 0), ab.last.eq(k == D - 1)]
                    with m.If(mac.i_ab.ready):
                        m.d.sync += k.eq(k + 1)
                        with m.If(k == D - 1):
                            m.d.sync += [k.eq(0), t.eq(t + 1)]
                            with m.If(t == T - 1):
                                m.d.sync += [t.eq(0), mt.eq(mt + 1), gmt.eq(gmt + 1)]
                                with m.If(mt == Mux(lin, MP, 3 * MP) - 1):
                                    m.next = "LIN_DRAIN"
            with m.State("LIN_DRAIN"):
                with m.If(drained):
                    m.d.sync += drained.eq(0)
                    with m.If(lin):
                        m.d.sync += [out_phase.eq(1), ot.eq(0), ok.eq(0)]
                        m.next = "OUT"
                    with m.Else():
                        m.d.sync += [th.eq(0), hh.eq(0), pth.eq(0), phh.eq(0), oth.eq(0), ohh.eq(0), obase.eq(0),
                                     u.eq(0), j.eq(0), pc.eq(0), pn.eq(0), vr.eq(0), vq.eq(0), dc.eq(0), dpc.eq(0),
                                     sk.eq(0), s_first.eq(1), s_all.eq(0), pwb.eq(0), prb.eq(0), p_full.eq(0)]
                        m.next = "SCORE"
            # scores and P.V interleave on the MAC array: S0 S1 PV0 S2 PV1 ... S(L-1) PV(L-2) PV(L-1)
            # (L = T heads items, item = query tile t, head h); the softmax of item i runs during
            # PV(i-1) and the start of S(i+1), its probabilities go to bank i % 2
            with m.State("SCORE"):
                m.d.comb += [ikind.eq(1), mac.i_ab.valid.eq(1), ab.a.eq(q_r.data), ab.b.eq(k_r.data),
                             ab.first.eq(j == 0), ab.last.eq(j == DH - 1)]
                with m.If(mac.i_ab.ready):
                    m.d.sync += j.eq(j + 1)
                    with m.If(j == DH - 1):
                        m.d.sync += [j.eq(0), u.eq(u + 1)]
                        with m.If(u == U - 1):
                            s_last = (hh == HH - 1) & (th == T - 1)
                            m.d.sync += [u.eq(0), hh.eq(hh + 1), s_first.eq(0)]
                            with m.If(hh == HH - 1):
                                m.d.sync += [hh.eq(0), th.eq(th + 1)]
                                with m.If(th == T - 1):
                                    m.d.sync += [th.eq(0), s_all.eq(1)]
                            with m.If(~s_first | s_last):
                                m.next = "PV"
            with m.State("PV"):
                m.d.comb += [ikind.eq(2), mac.i_ab.valid.eq(p_full.bit_select(prb, 1)), ab.a.eq(p_r.data),
                             ab.b.eq(vdata), ab.first.eq(pn == 0), ab.last.eq(pn == N - 1)]
                with m.If(mac.i_ab.valid & mac.i_ab.ready):
                    m.d.sync += [pn.eq(pn + 1), vr.eq(vr + 1)]
                    with m.If(vr == R - 1):
                        m.d.sync += [vr.eq(0), vq.eq(vq + 1)]
                    with m.If(pn == N - 1):
                        m.d.sync += [pn.eq(0), vr.eq(0), vq.eq(0), pc.eq(pc + 1)]
                        with m.If(pc == DH // C - 1):
                            pv_last = (phh == HH - 1) & (pth == T - 1)
                            m.d.comb += p_clr.eq(1)
                            m.d.sync += [pc.eq(0), prb.eq(~prb), phh.eq(phh + 1)]
                            with m.If(phh == HH - 1):
                                m.d.sync += [phh.eq(0), pth.eq(pth + 1)]
                                with m.If(pth == T - 1):
                                    m.d.sync += pth.eq(0)
                            with m.If(~s_all):
                                m.next = "SCORE"
                            with m.Elif(pv_last):
                                m.next = "PV_DRAIN"
            with m.State("PV_DRAIN"):                 # every P.V output written to the o buffer
                with m.If(drained):
                    m.d.sync += [drained.eq(0)] + start_linear(1)
                    m.next = "LINEAR"
            with m.State("OUT"):
                m.d.comb += [self.o_y.valid.eq(1), self.o_y.payload.last.eq((ot == T - 1) & (ok == D - 1))]
                with m.If(self.o_y.ready):
                    m.d.sync += ok.eq(ok + 1)
                    with m.If(ok == D - 1):
                        m.d.sync += [ok.eq(0), ot.eq(ot + 1)]
                        with m.If(ot == T - 1):
                            m.d.sync += [ot.eq(0), out_phase.eq(0)]
                            m.next = "LOAD"
        return m
