"""LayerNorm unit (golden.kernels.layernorm), `lanes` tokens in parallel, one channel per beat.

Per tile of `lanes` tokens (D beats in, D beats out), per lane:
  S1 = sum x, S2 = sum x^2                        accumulate while the tile is stored
  V  = D S2 - S1^2 + eps_q                        one cycle
  k  = (62 - bitlen(V)) // 2,  Vn = V << 2k       one cycle
  r  = isqrt(Vn)   (31 cycles, rtl_gen.isqrt),  R = floor(2^62 / r)  (63 cycles, rtl_gen.recip)
  z  = round((D x - S1) R / 2^(46 - k)),  y = sat16(round((gamma z + beta) / 2^(16 + g_frac - out_frac)))

Ports: i_param {gamma, beta} D beats before each job; i_x {x[lanes], last} D beats per tile,
`last` on the final beat of a job's final tile (then the next job's parameters are expected);
o_y {y[lanes], last} D beats per tile. Unused lanes may carry any int16 (V >= eps_q >= 1).
"""
from __future__ import annotations

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.kernels import LN_RECIP_BITS, LN_SQRT_BITS, LN_Z_FRAC

from .arith import ACC_BITS, WORD, requant, rshift_round_var
from .isqrt import Isqrt
from .recip import Reciprocal


def param_layout() -> data.StructLayout:
    return data.StructLayout({"gamma": signed(WORD), "beta": signed(ACC_BITS)})


def lanes_layout(lanes: int, name: str) -> data.StructLayout:
    return data.StructLayout({name: data.ArrayLayout(signed(WORD), lanes), "last": 1})


def bit_length(m: Module, v, name: str) -> Signal:
    """Number of significant bits of unsigned v (a priority encoder)."""
    n = Signal(range(len(v) + 1), name=name)
    for i in range(len(v)):
        with m.If(v[i]):
            m.d.comb += n.eq(i + 1)
    return n


class LayerNormUnit(wiring.Component):
    def __init__(self, channels: int, lanes: int, g_frac: int, eps_q: int, out_frac: int):
        if not 1 <= channels <= 4096:
            raise ValueError(f"LayerNorm channels must lie in 1..4096 (got {channels})")
        self.channels, self.lanes = channels, lanes
        self.g_frac, self.eps_q, self.out_frac = g_frac, eps_q, out_frac
        super().__init__({
            "i_param": In(stream.Signature(param_layout())),
            "i_x": In(stream.Signature(lanes_layout(lanes, "x"))),
            "o_y": Out(stream.Signature(lanes_layout(lanes, "y"))),
        })

    def elaborate(self, platform):
        m = Module()
        D, L = self.channels, self.lanes
        m.submodules.buf = buf = memory.Memory(shape=data.ArrayLayout(signed(WORD), L), depth=D, init=[])
        m.submodules.par = par = memory.Memory(shape=param_layout(), depth=D, init=[])
        buf_w, buf_r = buf.write_port(), buf.read_port(domain="comb")
        par_w, par_r = par.write_port(), par.read_port(domain="comb")
        sqrts = [Isqrt(LN_SQRT_BITS) for _ in range(L)]
        recips = [Reciprocal(LN_SQRT_BITS // 2, LN_RECIP_BITS) for _ in range(L)]
        for l in range(L):
            m.submodules[f"isqrt{l}"] = sqrts[l]
            m.submodules[f"recip{l}"] = recips[l]

        j = Signal(range(D))                      # channel index within the tile
        job_last = Signal()
        s1 = [Signal(signed(30), name=f"s1_{l}") for l in range(L)]
        s2 = [Signal(unsigned(44), name=f"s2_{l}") for l in range(L)]
        v = [Signal(unsigned(56), name=f"v_{l}") for l in range(L)]
        vn = [Signal(unsigned(LN_SQRT_BITS), name=f"vn_{l}") for l in range(L)]
        r = [Signal(unsigned(LN_SQRT_BITS // 2), name=f"r_{l}") for l in range(L)]
        zsh = [Signal(range(64), name=f"zsh_{l}") for l in range(L)]      # 46 - k
        big_r = [Signal(unsigned(LN_RECIP_BITS + 1), name=f"big_r_{l}") for l in range(L)]

        x_in = self.i_x.payload.x
        m.d.comb += [buf_w.addr.eq(j), buf_w.data.eq(x_in), buf_r.addr.eq(j),
                     par_w.addr.eq(j), par_w.data.eq(self.i_param.payload), par_r.addr.eq(j)]
        y_shift = LN_Z_FRAC + self.g_frac - self.out_frac
        for l in range(L):
            m.d.comb += [sqrts[l].i_n.payload.eq(vn[l]), recips[l].i_d.payload.eq(r[l])]
            diff = D * buf_r.data[l] - s1[l]                                  # |.| <= 2^28
            z = rshift_round_var(diff * big_r[l], zsh[l])
            m.d.comb += self.o_y.payload.y[l].eq(requant(par_r.data.gamma * z + par_r.data.beta, y_shift))
        m.d.comb += self.o_y.payload.last.eq(job_last & (j == D - 1))

        with m.FSM():
            with m.State("PARAM"):
                m.d.comb += [self.i_param.ready.eq(1), par_w.en.eq(self.i_param.valid)]
                with m.If(self.i_param.valid):
                    m.d.sync += j.eq(j + 1)
                    with m.If(j == D - 1):
                        m.d.sync += j.eq(0)
                        m.next = "LOAD"
            with m.State("LOAD"):
                m.d.comb += [self.i_x.ready.eq(1), buf_w.en.eq(self.i_x.valid.replicate(L))]
                with m.If(self.i_x.valid):
                    first = j == 0
                    for l in range(L):
                        xl = x_in[l]
                        m.d.sync += [s1[l].eq((s1[l] & ~first.replicate(30)) + xl),
                                     s2[l].eq((s2[l] & ~first.replicate(44)) + xl * xl)]
                    m.d.sync += j.eq(j + 1)
                    with m.If(j == D - 1):
                        m.d.sync += [j.eq(0), job_last.eq(self.i_x.payload.last)]
                        m.next = "VAR"
            with m.State("VAR"):
                for l in range(L):
                    m.d.sync += v[l].eq(D * s2[l] - s1[l] * s1[l] + self.eps_q)
                m.next = "NORM"
            with m.State("NORM"):
                for l in range(L):
                    kl = Signal(range(32), name=f"kn_{l}")
                    m.d.comb += kl.eq((LN_SQRT_BITS - bit_length(m, v[l], f"bl_{l}")) >> 1)
                    m.d.sync += [zsh[l].eq(LN_RECIP_BITS - LN_Z_FRAC - kl),
                                 vn[l].eq(v[l] << (kl << 1))]
                m.next = "SQRT"
            with m.State("SQRT"):      # all lanes start together and finish together
                m.d.comb += [s.i_n.valid.eq(1) for s in sqrts]
                m.next = "SQRT_WAIT"
            with m.State("SQRT_WAIT"):
                m.d.comb += [s.o_root.ready.eq(1) for s in sqrts]
                with m.If(sqrts[0].o_root.valid):
                    m.d.sync += [r[l].eq(sqrts[l].o_root.payload) for l in range(L)]
                    m.next = "RECIP"
            with m.State("RECIP"):
                m.d.comb += [q.i_d.valid.eq(1) for q in recips]
                m.next = "RECIP_WAIT"
            with m.State("RECIP_WAIT"):
                m.d.comb += [q.o_q.ready.eq(1) for q in recips]
                with m.If(recips[0].o_q.valid):
                    m.d.sync += [big_r[l].eq(recips[l].o_q.payload) for l in range(L)]
                    m.next = "OUT"
            with m.State("OUT"):
                m.d.comb += self.o_y.valid.eq(1)
                with m.If(self.o_y.ready):
                    m.d.sync += j.eq(j + 1)
                    with m.If(j == D - 1):
                        m.d.sync += j.eq(0)
                        m.next = "NEXT"
            with m.State("NEXT"):
                with m.If(job_last):
                    m.next = "PARAM"
                with m.Else():
                    m.next = "LOAD"
        return m
