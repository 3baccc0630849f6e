"""COMPACT: the selector's output tokens (golden/interp.py Machine.op_compact): o_buf rows

    [CLS, kept scored tokens in order, earlier packages (tokens 1 + ns .. rows - 1), the new package]

for channels 0..d-1, and the new token count N' = 2 + kept + n_pkg (`n_out`, with the one-cycle
strobe `n_stb` at done: the top writes the token-count register).

Streaming compaction: per input tile t the output mask (CLS, kept, earlier packages) is read;
tiles without an output token are skipped. Each channel word of the tile is read once; a shift
network packs its output lanes to the bottom (log2 R stages, each lane moving down by the bits
of the number of dropped lanes below it, least significant bit first: conflict-free) and a
barrel rotator places them at the output position `opos` (mod R). The packed lanes span at most
two output tiles, written with lane enables (one or two writes per channel, never a
read-modify-write). The package token then goes to row N' - 1, one write per channel.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, wiring
from amaranth.lib.wiring import Out

from golden.hw import HardwareConfig

from ..buffers import ports
from ..control.decode import desc_view
from .package import pkg_read
from .state import mask_read


def pack_lanes(m, word, mask, off, R: int, width: int = 16, name: str = "pk") -> Value:
    """Comb: the lanes of `word` (R lanes of `width` bits) selected by `mask`, packed in order
    and rotated up by `off` lanes: output lane (off + k) mod R holds the k-th selected lane
    (other output lanes are don't-care)."""
    lg = R.bit_length() - 1
    word = Value.cast(word)
    vals = [word[i * width:(i + 1) * width] for i in range(R)]
    valid = [mask[i] for i in range(R)]
    shift, z = [], Const(0, lg + 1)
    for i in range(R):                                   # dropped lanes below lane i
        s = Signal(lg + 1, name=f"{name}_z{i}")
        m.d.comb += s.eq(z)
        shift.append(s)
        z = z + ~mask[i]
    for k in range(lg):
        st = 1 << k
        nv, nva, ns_ = [], [], []
        for i in range(R):
            up = i + st < R
            mv = valid[i + st] & shift[i + st][k] if up else Const(0, 1)
            stay = valid[i] & ~shift[i][k]
            v_ = Signal(width, name=f"{name}_v{k}_{i}")
            sh = Signal(lg + 1, name=f"{name}_s{k}_{i}")
            va = Signal(name=f"{name}_a{k}_{i}")
            m.d.comb += [v_.eq(Mux(mv, vals[i + st], vals[i]) if up else vals[i]),
                         sh.eq(Mux(mv, shift[i + st], shift[i]) if up else shift[i]), va.eq(mv | stay)]
            nv.append(v_)
            nva.append(va)
            ns_.append(sh)
        vals, valid, shift = nv, nva, ns_
    out = Cat(*vals)
    for b in range(lg):                                  # rotate up by off lanes
        r = Signal(R * width, name=f"{name}_r{b}")
        m.d.comb += r.eq(Mux(off[b], out.rotate_left(width << b), out))
        out = r
    return out


class Compact(wiring.Component):
    def __init__(self, hw: HardwareConfig):
        self.hw = hw
        n = range(hw.n_max + 2)
        super().__init__({**ports.control(hw), "rd": Out(ports.tok_read(hw)), "wr": Out(ports.tok_write(hw)),
                          "mask": Out(mask_read(hw)), "pkg": Out(pkg_read(hw)), "n_out": Out(n), "n_stb": Out(1)})

    def elaborate(self, platform):
        m = Module()
        hw, R = self.hw, self.hw.mac_rows
        lr = R.bit_length() - 1
        v = desc_view("COMPACT", self.desc)
        rows = self.rows
        ns = Signal(range(hw.n_max + 1))
        nt = Signal(range(hw.tiles + 1))
        m.d.comb += [ns.eq(rows - 1 - v.n_pkg), nt.eq(ports.tiles_of(rows, R))]
        t = Signal(range(hw.tiles + 1))
        opos = Signal(range(hw.tiles * R + 2))
        m.d.comb += self.mask.tile.eq(t)

        # ---- output mask of tile t and its placement
        om, off, otile, two = Signal(R), Signal(range(R)), Signal(range(hw.tiles + 1)), Signal()
        en_a, en_b = Signal(R), Signal(R)
        base = t * R
        omask = Signal(R)
        m.d.comb += omask.eq(self.mask.keep | Cat((base + r == 0) | ((base + r >= ns + 1) & (base + r < rows))
                                                  for r in range(R)))
        cnt = Signal(range(R + 1))
        m.d.comb += cnt.eq(sum(omask[r] for r in range(R)))
        o_lo = opos[:lr] if lr else Const(0, 1)
        end = Signal(range(2 * R + 1))
        over = Signal(range(R + 1))                      # lanes of the second output tile
        m.d.comb += [end.eq(o_lo + cnt), over.eq(Mux(end > R, end - R, 0))]

        # ---- channel pipeline: s0 read (c, sub), s1 pack -> W, s2 write part `sub`
        tag = data.StructLayout({"v": 1, "c": range(hw.d_max), "sub": 1})
        tg = [Signal(tag, name=f"ctg{k}") for k in range(3)]
        m.d.sync += [tg[1].eq(tg[0]), tg[2].eq(tg[1])]
        m.d.comb += [self.rd.buf.eq(v.x_buf), self.rd.tile.eq(t), self.rd.ch.eq(tg[0].c),
                     self.rd.en.eq(tg[0].v & ~tg[0].sub)]
        W = Signal(R * 16)
        packed = pack_lanes(m, self.rd.data, om, off, R)
        with m.If(tg[1].v & ~tg[1].sub):
            m.d.sync += W.eq(packed)

        # ---- writes: packed words (s2) or the package token
        pk_v, pk_c = Signal(), Signal(range(hw.d_max))
        m.d.sync += pk_v.eq(self.pkg.en)
        m.d.sync += pk_c.eq(self.pkg.ch)
        wr = self.wr
        m.d.comb += wr.buf.eq(v.o_buf)
        with m.If(tg[2].v):
            m.d.comb += [wr.tile.eq(otile + tg[2].sub), wr.ch.eq(tg[2].c), wr.data.eq(W),
                         wr.en.eq(Mux(tg[2].sub, en_b, en_a))]
        with m.Elif(pk_v):
            m.d.comb += [wr.tile.eq(opos >> lr), wr.ch.eq(pk_c), wr.data.eq(Cat(self.pkg.data for _ in range(R))),
                         wr.en.eq(Const(1, R) << o_lo if lr else 1)]

        c = Signal(range(hw.d_max + 1))
        sub = Signal()
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [t.eq(0), opos.eq(0)]
                    m.next = "MASK"
            with m.State("MASK"):
                m.d.comb += self.mask.en.eq(1)
                m.next = "PLACE"
            with m.State("PLACE"):
                lanes = Const((1 << R) - 1, R)
                m.d.sync += [om.eq(omask), off.eq(o_lo), otile.eq(opos >> lr), two.eq(end > R),
                             en_a.eq((lanes << o_lo)[:R] & ~(lanes << end)[:R]),
                             en_b.eq(~(lanes << over)[:R]), opos.eq(opos + cnt), c.eq(0), sub.eq(0)]
                with m.If(cnt == 0):
                    m.next = "NEXT"
                with m.Else():
                    m.next = "CH"
            with m.State("CH"):
                m.d.comb += [tg[0].v.eq(1), tg[0].c.eq(c), tg[0].sub.eq(sub)]
                with m.If(two & ~sub):
                    m.d.sync += sub.eq(1)
                with m.Else():
                    m.d.sync += [sub.eq(0), c.eq(c + 1)]
                    with m.If(c == v.d - 1):
                        m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(~(tg[1].v | tg[2].v)):
                    m.next = "NEXT"
            with m.State("NEXT"):
                m.d.sync += t.eq(t + 1)
                with m.If(t == nt - 1):
                    m.d.sync += c.eq(0)
                    m.next = "PKG"
                with m.Else():
                    m.next = "MASK"
            with m.State("PKG"):
                m.d.comb += [self.pkg.en.eq(1), self.pkg.ch.eq(c)]
                m.d.sync += c.eq(c + 1)
                with m.If(c == v.d - 1):
                    m.next = "PKG_DRAIN"
            with m.State("PKG_DRAIN"):
                m.d.comb += [self.done.eq(1), self.n_stb.eq(1)]
                m.next = "IDLE"
        m.d.comb += self.n_out.eq(opos + 1)
        return m
