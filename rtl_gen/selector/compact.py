"""COMPACT: the selector's output tokens (golden/interp.py Machine.op_compact): o_buf rows

    [CLS, kept scored tokens in order, earlier packages (tokens 1 + ns .. rows - 1), the new package]

for channels 0..d-1, and the new token count N' = 2 + kept + n_pkg (`n_out`, with the one-cycle
strobe `n_stb` at done: the top writes the token-count register).

Streaming compaction: per input tile t the output mask (CLS, kept, earlier packages) is read;
tiles without an output token are skipped. Each channel word of the tile is read once; a shift
network packs its output lanes to the bottom (log2 R stages, each lane moving down by the bits
of the number of dropped lanes below it, least significant bit first: conflict-free) and a
barrel rotator places them at the output position `out_pos` (mod R). The packed lanes span at most
two output tiles, written with lane enables (one or two writes per channel, never a
read-modify-write). The package token then goes to row N' - 1, one write per channel.
"""
from __future__ import annotations

from types import SimpleNamespace

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
    bits = ports.lane_bits(R)
    word = Value.cast(word)
    vals = [word[i * width:(i + 1) * width] for i in range(R)]
    valid = [mask[i] for i in range(R)]
    shift, below = [], Const(0, bits + 1)
    for i in range(R):                                   # dropped lanes below lane i: its distance down
        s = Signal(bits + 1, name=f"{name}_below{i}")
        m.d.comb += s.eq(below)
        shift.append(s)
        below = below + ~mask[i]
    for k in range(bits):                                # stage k moves a lane down by 2^k if bit k says so
        dist = 1 << k
        next_vals, next_valid, next_shift = [], [], []
        for i in range(R):
            up = i + dist < R
            move_down = valid[i + dist] & shift[i + dist][k] if up else Const(0, 1)
            stay = valid[i] & ~shift[i][k]
            val = Signal(width, name=f"{name}_val{k}_{i}")
            sh = Signal(bits + 1, name=f"{name}_shift{k}_{i}")
            ok = Signal(name=f"{name}_valid{k}_{i}")
            m.d.comb += [val.eq(Mux(move_down, vals[i + dist], vals[i]) if up else vals[i]),
                         sh.eq(Mux(move_down, shift[i + dist], shift[i]) if up else shift[i]), ok.eq(move_down | stay)]
            next_vals.append(val)
            next_valid.append(ok)
            next_shift.append(sh)
        vals, valid, shift = next_vals, next_valid, next_shift
    out = Cat(*vals)
    for b in range(bits):                                # rotate up by off lanes
        r = Signal(R * width, name=f"{name}_rot{b}")
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
        desc = desc_view("COMPACT", self.desc)
        ns = Signal(range(hw.n_max + 1))
        tiles = Signal(range(hw.tiles + 1))
        m.d.comb += [ns.eq(self.rows - 1 - desc.n_pkg), tiles.eq(ports.tiles_of(self.rows, R))]
        tile = Signal(range(hw.tiles + 1))
        out_pos = Signal(range(hw.tiles * R + 2))             # output tokens so far
        ch = Signal(range(hw.d_max + 1))
        part = Signal()                                        # 1: the write to the second output tile
        m.d.comb += self.mask.tile.eq(tile)
        place = self._placement(m, ns, tile, out_pos)
        ch_stage = self._channel_pipeline(m, desc, tile, out_pos, place)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [tile.eq(0), out_pos.eq(0)]
                    m.next = "MASK"
            with m.State("MASK"):
                m.d.comb += self.mask.en.eq(1)
                m.next = "PLACE"
            with m.State("PLACE"):
                full = Const((1 << R) - 1, R)
                m.d.sync += [place.lanes.eq(place.out_mask), place.rotate.eq(place.out_lane),
                             place.out_tile.eq(out_pos >> ports.lane_bits(R)), place.two.eq(place.end > R),
                             place.first_en.eq((full << place.out_lane)[:R] & ~(full << place.end)[:R]),
                             place.second_en.eq(~(full << place.overflow)[:R]),
                             out_pos.eq(out_pos + place.count), ch.eq(0), part.eq(0)]
                with m.If(place.count == 0):
                    m.next = "NEXT"
                with m.Else():
                    m.next = "CH"
            with m.State("CH"):
                m.d.comb += [ch_stage[0].valid.eq(1), ch_stage[0].ch.eq(ch), ch_stage[0].part.eq(part)]
                with m.If(place.two & ~part):
                    m.d.sync += part.eq(1)
                with m.Else():
                    m.d.sync += [part.eq(0), ch.eq(ch + 1)]
                    with m.If(ch == desc.d - 1):
                        m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(~(ch_stage[1].valid | ch_stage[2].valid)):
                    m.next = "NEXT"
            with m.State("NEXT"):
                m.d.sync += tile.eq(tile + 1)
                with m.If(tile == tiles - 1):
                    m.d.sync += ch.eq(0)
                    m.next = "PKG"
                with m.Else():
                    m.next = "MASK"
            with m.State("PKG"):
                m.d.comb += [self.pkg.en.eq(1), self.pkg.ch.eq(ch)]
                m.d.sync += ch.eq(ch + 1)
                with m.If(ch == desc.d - 1):
                    m.next = "PKG_DRAIN"
            with m.State("PKG_DRAIN"):
                m.d.comb += [self.done.eq(1), self.n_stb.eq(1)]
                m.next = "IDLE"
        m.d.comb += self.n_out.eq(out_pos + 1)
        return m

    def _placement(self, m, ns, tile, out_pos):
        """Where the output tokens of `tile` go. Comb: out_mask (lanes of CLS, kept tokens and
        earlier packages), count, out_lane = out_pos mod R, end = out_lane + count, overflow
        (lanes in the second output tile). Registers (set in PLACE): lanes, rotate, out_tile,
        two (the tile's tokens span two output tiles) and the lane enables of both writes."""
        R = self.hw.mac_rows
        bits = ports.lane_bits(R)
        place = SimpleNamespace(
            out_mask=Signal(R, name="out_mask"), count=Signal(range(R + 1), name="out_count"),
            out_lane=out_pos[:bits] if bits else Const(0, 1),
            end=Signal(range(2 * R + 1), name="end_lane"), overflow=Signal(range(R + 1), name="overflow"),
            lanes=Signal(R, name="out_lanes"), rotate=Signal(range(R), name="rotate"),
            out_tile=Signal(range(self.hw.tiles + 1), name="out_tile"), two=Signal(name="two_tiles"),
            first_en=Signal(R, name="first_en"), second_en=Signal(R, name="second_en"))
        base = tile * R
        cls_or_package = [(base + r == 0) | ((base + r >= ns + 1) & (base + r < self.rows)) for r in range(R)]
        m.d.comb += place.out_mask.eq(self.mask.keep | Cat(cls_or_package))
        m.d.comb += [place.count.eq(sum(place.out_mask[r] for r in range(R))),
                     place.end.eq(place.out_lane + place.count),
                     place.overflow.eq(Mux(place.end > R, place.end - R, 0))]
        return place

    def _channel_pipeline(self, m, desc, tile, out_pos, place):
        """Every channel word of the tile: stage 0 reads (ch, part), 1 packs the output lanes
        into `packed`, 2 writes part 0 (first output tile) or 1 (second); the package token
        (PKG: one word per channel from PACKAGE) goes to row N' - 1. Returns the stage tags."""
        hw, R = self.hw, self.hw.mac_rows
        tag = data.StructLayout({"valid": 1, "ch": range(hw.d_max), "part": 1})
        stage = [Signal(tag, name=f"ch_stage{k}") for k in range(3)]
        m.d.sync += [stage[1].eq(stage[0]), stage[2].eq(stage[1])]
        m.d.comb += [self.rd.buf.eq(desc.x_buf), self.rd.tile.eq(tile), self.rd.ch.eq(stage[0].ch),
                     self.rd.en.eq(stage[0].valid & ~stage[0].part)]
        packed = Signal(R * 16)
        lanes_packed = pack_lanes(m, self.rd.data, place.lanes, place.rotate, R)
        with m.If(stage[1].valid & ~stage[1].part):
            m.d.sync += packed.eq(lanes_packed)
        pkg_arrives, pkg_ch = Signal(), Signal(range(hw.d_max))
        m.d.sync += [pkg_arrives.eq(self.pkg.en), pkg_ch.eq(self.pkg.ch)]
        wr = self.wr
        m.d.comb += wr.buf.eq(desc.o_buf)
        with m.If(stage[2].valid):
            m.d.comb += [wr.tile.eq(place.out_tile + stage[2].part), wr.ch.eq(stage[2].ch), wr.data.eq(packed),
                         wr.en.eq(Mux(stage[2].part, place.second_en, place.first_en))]
        with m.Elif(pkg_arrives):
            m.d.comb += [wr.tile.eq(out_pos >> ports.lane_bits(R)), wr.ch.eq(pkg_ch),
                         wr.data.eq(Cat(self.pkg.data for _ in range(R))),
                         wr.en.eq(Const(1, R) << place.out_lane if ports.lane_bits(R) else 1)]
        return stage
