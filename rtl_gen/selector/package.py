"""PACKAGE: the package token of the tokens the latest decision dropped (golden/interp.py
Machine.op_package = golden.layers.package), channels 0..d-1:

    acc[c] = sum over dropped scored tokens i of m_i x_i[c]      (mode mean: m_i = 1)
    total  = sum of those m_i                                    (mean: their count)
    sum:        requant(acc, 15)
    norm, mean: 0 if total == 0 else requant(acc recip(total, 46), 46)    (0 if nothing dropped)

Schedule (package_cycles is exact): per token tile t holding scored tokens, the keep mask is
read; a tile without dropped tokens is skipped. Otherwise the R weights (m or 1 of dropped
lanes, 0 elsewhere) are read into a ring register (R cycles), then each channel word of the
tile passes `lanes` multipliers, R / lanes cycles per word, into per-channel 48-bit sums in a
RAM. After the tiles: one reciprocal (norm / mean), then one pass over the channels writes the
result to the package RAM that COMPACT reads (`pkg`, a synchronous read port).
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden.hw import HardwareConfig
from golden.isa import PACKAGE_MODES
from golden.layers import PACK_RECIP_BITS

from ..buffers import ports
from ..primitives.arith import ACC_BITS, requant
from ..control.decode import desc_view
from ..primitives.ram import Ram
from ..primitives.recip import Reciprocal
from .state import M_BITS, m_read, mask_read, scored_lanes

SUM, MEAN = PACKAGE_MODES["sum"], PACKAGE_MODES["mean"]
ACC_USED = 44            # |acc| < 2^15 x 2^15 x 4096 = 2^42
TOTAL_BITS = 28          # total < 2^15 x 4096


def pkg_read(hw: HardwareConfig) -> wiring.Signature:
    return wiring.Signature({"ch": Out(range(hw.d_max)), "en": Out(1), "data": In(signed(16))})


def default_lanes(hw: HardwareConfig) -> int:
    return max(1, hw.mac_rows // 4)


class Package(wiring.Component):
    def __init__(self, hw: HardwareConfig, lanes: int | None = None):
        L = lanes or default_lanes(hw)
        if hw.mac_rows % L:
            raise ValueError(f"package lanes must divide mac_rows ({hw.mac_rows} % {L} != 0)")
        self.hw, self.lanes = hw, L
        super().__init__({**ports.control(hw), "rd": Out(ports.tok_read(hw)), "mask": Out(mask_read(hw)),
                          "mr": Out(m_read(hw)), "pkg": In(pkg_read(hw)), "pkg_d": Out(13)})

    def elaborate(self, platform):
        m = Module()
        hw, R, L = self.hw, self.hw.mac_rows, self.lanes
        G = R // L
        lr = R.bit_length() - 1
        v = desc_view("PACKAGE", self.desc)
        ns = Signal(range(hw.n_max + 1))
        m.d.comb += ns.eq(self.rows - 1 - v.n_pkg)
        m.submodules.accm = accm = Ram(ACC_BITS, hw.d_max)
        m.submodules.pkgm = pkgm = Ram(16, hw.d_max)
        m.submodules.rcp = rcp = Reciprocal(TOTAL_BITS, PACK_RECIP_BITS)
        m.d.comb += [pkgm.raddr.eq(self.pkg.ch), pkgm.ren.eq(self.pkg.en), self.pkg.data.eq(pkgm.rdata)]

        t = Signal(range(hw.tiles + 1))
        total = Signal(TOTAL_BITS)
        started = Signal()                      # some tile has been accumulated (acc RAM defined)
        rq = Signal(PACK_RECIP_BITS + 1)

        # ---- weights of the tile's lanes: a ring of R values, pushed at the top
        wm = Signal(data.ArrayLayout(signed(M_BITS), R))
        drop = Signal(R)
        lv = Signal()                           # an m read returns this cycle
        r = Signal(range(R + 1))
        m.d.comb += [self.mr.token.eq(t * R + r), self.mask.tile.eq(t)]
        val = Signal(signed(M_BITS))
        m.d.comb += val.eq(Mux(drop[0], Mux(v.mode == MEAN, 1, self.mr.m), 0))
        with m.If(lv):
            m.d.sync += [wm.eq((wm.as_value() >> M_BITS) | (val.as_unsigned() << (M_BITS * (R - 1)))),
                         drop.eq(drop >> 1), total.eq(total + val)]

        # ---- channel pipeline: s0 issue (c, g), s1 word, s2 products, s3 tree, s4 accumulate
        tag = data.StructLayout({"v": 1, "c": range(hw.d_max), "g": range(max(G, 2))})
        tg = [Signal(tag, name=f"tg{k}") for k in range(5)]
        for k in range(1, 5):
            m.d.sync += tg[k].eq(tg[k - 1])
        word = Signal(ports.lanes(R))
        m.d.comb += [self.rd.buf.eq(v.x_buf), self.rd.tile.eq(t), self.rd.ch.eq(tg[0].c),
                     self.rd.en.eq(tg[0].v & (tg[0].g == 0))]
        with m.If(tg[2].v):
            m.d.sync += [word.eq(word.as_value() >> (16 * L)),
                         wm.eq(wm.as_value().rotate_right(M_BITS * L))]
        with m.If(tg[1].v & (tg[1].g == 0)):
            m.d.sync += word.eq(self.rd.data)
        prod = [Signal(signed(M_BITS + 16), name=f"prod{l}") for l in range(L)]
        m.d.sync += [p.eq(wm[l] * word[l]) for l, p in enumerate(prod)]
        tree = Signal(signed(M_BITS + 16 + L.bit_length()))
        m.d.sync += tree.eq(sum(prod))
        csum = Signal(signed(M_BITS + 16 + R.bit_length()))
        cnew = Signal.like(csum)
        m.d.comb += [cnew.eq(Mux(tg[4].g == 0, 0, csum) + tree),
                     accm.raddr.eq(tg[3].c), accm.ren.eq(tg[3].v & (tg[3].g == G - 1)),
                     accm.waddr.eq(tg[4].c), accm.wdata.eq(Mux(started, accm.rdata, 0) + cnew),
                     accm.wen.eq(tg[4].v & (tg[4].g == G - 1))]
        with m.If(tg[4].v):
            m.d.sync += csum.eq(cnew)

        # ---- output pass: o0 read acc[c], o1 product, o2 write pkg[c]
        otag = data.StructLayout({"v": 1, "c": range(hw.d_max)})
        og = [Signal(otag, name=f"og{k}") for k in range(3)]
        for k in range(1, 3):
            m.d.sync += og[k].eq(og[k - 1])
        acc1 = Signal(signed(ACC_USED))
        prod1 = Signal(signed(ACC_USED + PACK_RECIP_BITS + 1))
        m.d.sync += [acc1.eq(accm.rdata), prod1.eq(accm.rdata[:ACC_USED].as_signed() * rq)]
        y = Mux(~started | ((v.mode != SUM) & (total == 0)), 0,
                Mux(v.mode == SUM, requant(acc1, 15), requant(prod1, PACK_RECIP_BITS)))
        m.d.comb += [pkgm.waddr.eq(og[2].c), pkgm.wdata.eq(y), pkgm.wen.eq(og[2].v)]

        dropped = Signal(R)
        m.d.comb += dropped.eq(scored_lanes(m, t, ns, hw, "pk_scored") & ~self.mask.keep)
        c = Signal(range(hw.d_max + 1))
        g = Signal(range(max(G, 2)))
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [t.eq(0), total.eq(0), started.eq(0)]
                    m.next = "MASK"
            with m.State("MASK"):
                m.d.comb += self.mask.en.eq(1)
                m.next = "MASK2"
            with m.State("MASK2"):
                m.d.sync += [drop.eq(dropped), r.eq(0)]
                with m.If(dropped == 0):
                    m.next = "NEXT"
                with m.Else():
                    m.next = "LOAD"
            with m.State("LOAD"):
                m.d.comb += self.mr.en.eq(1)
                m.d.sync += [lv.eq(1), r.eq(r + 1)]
                with m.If(r == R - 1):
                    m.d.sync += [c.eq(0), g.eq(0)]
                    m.next = "CH"
            with m.State("CH"):
                m.d.sync += lv.eq(0)
                m.d.comb += [tg[0].v.eq(1), tg[0].c.eq(c), tg[0].g.eq(g)]
                m.d.sync += g.eq(g + 1)
                with m.If(g == G - 1):
                    m.d.sync += [g.eq(0), c.eq(c + 1)]
                    with m.If(c == v.d - 1):
                        m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(~(tg[1].v | tg[2].v | tg[3].v | tg[4].v)):
                    m.d.sync += started.eq(1)
                    m.next = "NEXT"
            with m.State("NEXT"):
                m.d.sync += t.eq(t + 1)
                with m.If(t == ns >> lr):
                    m.next = "FIN"
                with m.Else():
                    m.next = "MASK"
            with m.State("FIN"):
                m.d.comb += [rcp.i_d.valid.eq(1), rcp.i_d.payload.eq(total)]
                with m.If((v.mode == SUM) | (total == 0)):
                    m.d.comb += rcp.i_d.valid.eq(0)
                    m.d.sync += c.eq(0)
                    m.next = "OUT"
                with m.Elif(rcp.i_d.ready):
                    m.next = "RWAIT"
            with m.State("RWAIT"):
                m.d.comb += rcp.o_q.ready.eq(1)
                with m.If(rcp.o_q.valid):
                    m.d.sync += [rq.eq(rcp.o_q.payload), c.eq(0)]
                    m.next = "OUT"
            with m.State("OUT"):
                m.d.comb += [og[0].v.eq(1), og[0].c.eq(c), accm.raddr.eq(c), accm.ren.eq(1)]
                m.d.sync += c.eq(c + 1)
                with m.If(c == v.d - 1):
                    m.next = "OUT_DRAIN"
            with m.State("OUT_DRAIN"):
                with m.If(~(og[1].v | og[2].v)):
                    m.d.comb += self.done.eq(1)
                    m.d.sync += self.pkg_d.eq(v.d)
                    m.next = "IDLE"
        return m
