"""MLP engine: y = add_sat(x, LN2 -> FC1 -> GELU -> FC2), golden.network.QBlock's second half.

Tokens travel as tiles of `mac_rows` tokens, one channel per beat (see docs/rtl.md):
  i_x / o_y  {x|y: int16[mac_rows], last}   tile t, channel k = 0..D-1, t = 0..T-1; `last`
             on the final beat; runtime N: T = ceil(N / mac_rows) tiles (pad lanes are ignored)
  i_w        int16[mac_cols]                the weights of one job, in weight_stream() order

Schedule per job: LOAD (x -> token buffer, LayerNorm unit -> normalised buffer) -> FC1 (m-tile
outer, token tile inner, MAC array, bias + requant + GELU on the drained columns -> hidden
buffer) -> FC2 (bias + requant + residual add_sat, written back over the token buffer) -> OUT.
Weights of the next m-tile load into the other bank of a ping-pong buffer while the current
one computes. Formats (shifts, GELU table) are fixed at elaboration (MlpFormats).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Array, Cat, Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.kernels import PWL

from .arith import WORD, add_sat, requant
from .pipe import collect_rows, load_rows
from .config import HardwareConfig
from .layernorm import LayerNormUnit, lanes_layout
from .loader import WeightLoader
from .mac import MacArray
from .pwl import PwlUnit

PWL_LATENCY = 3


@dataclass(frozen=True, eq=False)
class MlpFormats:
    dim: int
    hidden: int
    ln_g_frac: int
    ln_eps_q: int
    ln_out_frac: int
    fc1_shift: int
    act: PWL
    fc2_shift: int
    res_frac: int        # x (the block's mid format)
    fc2_frac: int
    out_frac: int

    @classmethod
    def from_block(cls, blk) -> "MlpFormats":
        n, f1, f2 = blk.norm2, blk.mlp.fc1, blk.mlp.fc2
        return cls(f1.w.shape[-1], f1.w.shape[-2], n.g_frac, n.eps_q, n.out_frac, f1.shift, blk.mlp.act,
                   f2.shift, blk.mid_frac, f2.out_frac, blk.out_frac)

    def key(self) -> tuple:
        a = self.act
        return (self.dim, self.hidden, self.ln_g_frac, self.ln_eps_q, self.ln_out_frac, self.fc1_shift,
                a.name, a.in_frac, a.out_frac, a.in_bits, self.fc2_shift, self.res_frac, self.fc2_frac, self.out_frac)


def split48(v) -> list[np.ndarray]:
    """A 48-bit signed value as three int16 chunks (low, middle, high); high keeps the sign."""
    v = np.asarray(v, dtype=np.int64)
    lo, mid = v & 0xFFFF, (v >> 16) & 0xFFFF
    return [(lo ^ 0x8000) - 0x8000, (mid ^ 0x8000) - 0x8000, v >> 32]


def weight_stream(blk, cols: int) -> list[list[int]]:
    """The words of i_w for one job of QBlock `blk` (the order in docs/rtl.md):
    LN2: per group of `cols` channels: gamma, beta low, beta mid, beta high;
    FC1 then FC2: per m-tile of `cols` outputs: bias low, mid, high, then w[m-tile, k] for k."""
    words = []
    g, b = np.asarray(blk.norm2.gamma, dtype=np.int64), np.asarray(blk.norm2.beta, dtype=np.int64)
    for j in range(0, len(g), cols):
        words += [g[j:j + cols].tolist()] + [c.tolist() for c in split48(b[j:j + cols])]
    for lin in (blk.mlp.fc1, blk.mlp.fc2):
        w, bias = np.asarray(lin.w, dtype=np.int64), np.broadcast_to(np.asarray(lin.b, dtype=np.int64), lin.w.shape[:1])
        for m0 in range(0, w.shape[0], cols):
            words += [c.tolist() for c in split48(bias[m0:m0 + cols])]
            words += w[m0:m0 + cols].T.tolist()
    return words


def tiles_of(x, rows: int, last_key: str = "x") -> list[dict]:
    """Tokens [N, D] -> i_x beats (tile-major, channel inside, pad lanes zero)."""
    x = np.asarray(x, dtype=np.int64)
    n, d = x.shape
    t = -(-n // rows)
    xp = np.zeros((t * rows, d), dtype=np.int64)
    xp[:n] = x
    return [{last_key: xp[i * rows:(i + 1) * rows, k].tolist(), "last": int(i == t - 1 and k == d - 1)}
            for i in range(t) for k in range(d)]


def untile(beats: list, n: int, d: int, rows: int, key: str = "y") -> np.ndarray:
    a = np.array([b[key] for b in beats], dtype=np.int64)          # [T * d, rows]
    t = len(a) // d
    return a.reshape(t, d, rows).transpose(0, 2, 1).reshape(t * rows, d)[:n]


class MlpEngine(wiring.Component):
    def __init__(self, fmt: MlpFormats, hw: HardwareConfig):
        R, C = hw.mac_rows, hw.mac_cols
        if fmt.dim % C or fmt.hidden % C or C > fmt.dim:
            raise ValueError(f"mac_cols {C} must divide dim {fmt.dim} and hidden {fmt.hidden}")
        self.fmt, self.hw = fmt, hw
        super().__init__({
            "i_x": In(stream.Signature(lanes_layout(R, "x"))),
            "i_w": In(stream.Signature(data.ArrayLayout(signed(WORD), C))),
            "o_y": Out(stream.Signature(lanes_layout(R, "y"))),
        })

    def elaborate(self, platform):
        m = Module()
        f, R, C = self.fmt, self.hw.mac_rows, self.hw.mac_cols
        D, H = f.dim, f.hidden
        TM = -(-self.hw.n_max // R)                     # token tiles at most
        KM = max(D, H)
        MT1, MT2 = H // C, D // C                       # m-tiles of FC1 and FC2
        row = data.ArrayLayout(signed(WORD), R)

        m.submodules.ln = ln = LayerNormUnit(D, R, f.ln_g_frac, f.ln_eps_q, f.ln_out_frac)
        m.submodules.mac = mac = MacArray(R, C)
        pwls = [PwlUnit(f.act) for _ in range(R)]
        for r in range(R):
            m.submodules[f"gelu{r}"] = pwls[r]
        m.submodules.xbuf = xbuf = memory.Memory(shape=row, depth=TM * D, init=[])
        m.submodules.xnbuf = xnbuf = memory.Memory(shape=row, depth=TM * D, init=[])
        m.submodules.hbuf = hbuf = memory.Memory(shape=row, depth=TM * H, init=[])
        x_w, x_r = xbuf.write_port(), xbuf.read_port(domain="comb")
        xn_w, xn_r = xnbuf.write_port(), xnbuf.read_port(domain="comb")
        h_w, h_r = hbuf.write_port(), hbuf.read_port(domain="comb")
        wl = WeightLoader(m, self.i_w, ln, D, C, [(MT1, D), (MT2, H)])
        w_r, full = wl.read, wl.full

        # ---------------------------------------------------------------- compute
        T = Signal(range(TM + 1))
        ti, ki = Signal(range(TM)), Signal(range(D))              # LOAD counters
        to, ko = Signal(range(TM)), Signal(range(D))              # LN output counters
        ln_done = Signal()
        layer = Signal()                                          # 0: FC1, 1: FC2
        mt, t, k = Signal(range(max(MT1, MT2))), Signal(range(TM)), Signal(range(KM))
        gmt = Signal(range(MT1 + MT2 + 1))                        # global m-tile: bank parity
        klen = Mux(layer, H, D)
        mtlen = Mux(layer, MT2, MT1)
        dc, dt, dmt = Signal(range(C)), Signal(range(TM)), Signal(range(max(MT1, MT2)))
        dg = Signal(range(MT1 + MT2 + 1))
        drained = Signal()                                        # all columns of this layer out
        out_phase = Signal()
        ot, ok = Signal(range(TM)), Signal(range(D))

        # LN output -> normalised buffer (any time)
        collect_rows(m, ln.o_y, xn_w, to, ko, D, ln_done)

        # MAC operands
        ab = mac.i_ab.payload
        m.d.comb += [xn_r.addr.eq(t * D + k), h_r.addr.eq(t * H + k), w_r.addr.eq(wl.addr(gmt[0], k)),
                     ab.a.eq(Mux(layer, h_r.data, xn_r.data)), ab.b.eq(w_r.data),
                     ab.first.eq(k == 0), ab.last.eq(k == klen - 1)]

        # drained columns: bias, requant, then GELU (FC1) or residual add (FC2)
        acc = mac.o_acc.payload.acc
        dch = dmt * C + dc
        b_sel = wl.bias_of(dg[0], dc, C)
        m.d.comb += mac.o_acc.ready.eq(1)
        dl_valid = [Signal(name=f"dl_valid{i}") for i in range(PWL_LATENCY)]
        dl_addr = [Signal(range(TM * H), name=f"dl_addr{i}") for i in range(PWL_LATENCY)]
        m.d.sync += [dl_valid[0].eq(mac.o_acc.valid & ~layer), dl_addr[0].eq(dt * H + dch)]
        for i in range(1, PWL_LATENCY):
            m.d.sync += [dl_valid[i].eq(dl_valid[i - 1]), dl_addr[i].eq(dl_addr[i - 1])]
        for r in range(R):
            s = acc[r] + b_sel
            m.d.comb += [pwls[r].i_x.valid.eq(mac.o_acc.valid & ~layer), pwls[r].i_x.payload.eq(requant(s, f.fc1_shift)),
                         pwls[r].o_y.ready.eq(1), h_w.data[r].eq(pwls[r].o_y.payload)]
            y2 = add_sat(x_r.data[r], f.res_frac, requant(s, f.fc2_shift), f.fc2_frac, f.out_frac)
            m.d.comb += [self.o_y.payload.y[r].eq(x_r.data[r]), x_w.data[r].eq(y2)]   # LOAD overrides
        m.d.comb += [h_w.addr.eq(dl_addr[-1]), h_w.en.eq(Mux(dl_valid[-1], -1, 0))]
        with m.If(mac.o_acc.valid):
            with m.If(layer):
                m.d.comb += [x_w.addr.eq(dt * D + dch), x_w.en.eq(-1)]
            m.d.sync += dc.eq(dc + 1)
            with m.If(dc == C - 1):
                m.d.sync += [dc.eq(0), dt.eq(dt + 1)]
                with m.If(dt == T - 1):
                    m.d.sync += [dt.eq(0), dmt.eq(dmt + 1), dg.eq(dg + 1), Array(full)[dg[0]].eq(0)]
                    with m.If(dmt == mtlen - 1):
                        m.d.sync += [dmt.eq(0), drained.eq(1)]
        m.d.comb += x_r.addr.eq(Mux(out_phase, ot * D + ok, dt * D + dch))

        with m.FSM(name="compute"):
            with m.State("LOAD"):
                load_rows(m, self.i_x, ln.i_x, x_w, ti, ki, D, [T.eq(ti + 1)], "LN_WAIT")
            with m.State("LN_WAIT"):
                with m.If(ln_done):
                    m.d.sync += [ln_done.eq(0), layer.eq(0), mt.eq(0), t.eq(0), k.eq(0), gmt.eq(0),
                                 dc.eq(0), dt.eq(0), dmt.eq(0), dg.eq(0), drained.eq(0)]
                    m.next = "FC"
            with m.State("FC"):
                with m.If(Array(full)[gmt[0]]):
                    m.d.comb += mac.i_ab.valid.eq(1)
                    with m.If(mac.i_ab.ready):
                        m.d.sync += k.eq(k + 1)
                        with m.If(k == klen - 1):
                            m.d.sync += [k.eq(0), t.eq(t + 1)]
                            with m.If(t == T - 1):
                                m.d.sync += [t.eq(0), mt.eq(mt + 1), gmt.eq(gmt + 1)]
                                with m.If(mt == mtlen - 1):
                                    m.d.sync += mt.eq(0)
                                    m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(drained & ~Cat(dl_valid).any()):
                    m.d.sync += drained.eq(0)
                    with m.If(layer):
                        m.d.sync += [out_phase.eq(1), ot.eq(0), ok.eq(0)]
                        m.next = "OUT"
                    with m.Else():
                        m.d.sync += layer.eq(1)
                        m.next = "FC"
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
