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

Timing (docs/rtl.md, "Timing budget"): the package row (1 + ns) and the last tile are registered
after start (SIZE, one cycle); a tile's placement takes PLACE_STEPS steps (MASK, PLACE,
COUNT, SPAN: the lane count as a balanced tree of the registered output lanes, the dropped-lane
distances as a prefix network registered twice, in COUNT and SPAN); SPAN registers the end
lane and the writes' lane enables follow a cycle later; the channel pipeline cuts the packing
network in two halves and from the rotator.
"""
from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, wiring
from amaranth.lib.wiring import Out

from golden.hw import HardwareConfig

from ..buffers import ports
from ..control.decode import desc_view
from ..primitives.arith import pipe_stage, tree_sum
from .package import pkg_read
from .state import mask_read

ARRIVE = ports.READ_LATENCY   # channel pipeline: read in stage 0, its word arrives in stage ARRIVE,
PIPE = ARRIVE + 3             # packs down (two halves), rotates; the write in stage PIPE
START = 1                # start -> the first MASK: the package row and last tile registered (SIZE)
PLACE_STEPS = 4          # MASK, PLACE, COUNT, SPAN: a tile's placement before its first read


def lane_shifts(m, mask, R: int, name: str = "pk", stage=None) -> list:
    """Per lane i the number of dropped lanes below it (how far pack_lanes moves it down), as a
    prefix network of log2 R adder levels (comb; `stage`, a function registering a list of
    values as primitives/arith.pipe_stage, cuts it after half of the levels)."""
    bits = ports.lane_bits(R)
    run = [(~mask[i]).as_unsigned() for i in range(R)]            # dropped lanes in [j, i], j per level
    d, level = 1, 0
    while d < R:
        if stage is not None and level == (bits + 1) // 2:
            run = stage(run)
        run = [run[i] + run[i - d] if i >= d else run[i] for i in range(R)]
        d, level = d << 1, level + 1
    shifts = []
    for i in range(R):                                             # dropped lanes strictly below i
        s = Signal(bits + 1, name=f"{name}_below{i}")
        m.d.comb += s.eq(run[i - 1] if i else 0)
        shifts.append(s)
    return shifts


def pack_lanes(m, word, mask, off, R: int, width: int = 16, name: str = "pk", shifts=None, cut=None,
               split=None) -> Value:
    """Comb: the lanes of `word` (R lanes of `width` bits) selected by `mask`, packed in order
    and rotated up by `off` lanes: output lane (off + k) mod R holds the k-th selected lane
    (other output lanes are don't-care). `shifts`: lane_shifts of `mask` (computed here when
    None); `cut`: registers the packed lanes before the rotation (then `off` is the offset of
    the word in the register); `split`: (cut_data, cut_control), registers the lanes after the
    first half of the packing stages (cut_data the word, cut_control each lane's valid bit and
    remaining shift: they depend on the mask alone)."""
    bits = ports.lane_bits(R)
    word = Value.cast(word)
    vals = [word[i * width:(i + 1) * width] for i in range(R)]
    valid = [mask[i] for i in range(R)]
    shift = lane_shifts(m, mask, R, name) if shifts is None else shifts
    for k in range(bits):                                # stage k moves a lane down by 2^k if bit k says so
        if split is not None and k == (bits + 1) // 2:
            cut_data, cut_control = split
            half = cut_data(Cat(*vals))
            vals = [half[i * width:(i + 1) * width] for i in range(R)]
            control = cut_control(valid + shift)
            valid, shift = control[:R], control[R:]
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
    if cut is not None:
        out = cut(out)
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
        # registered from desc and rows (held from the cycle after start; SIZE waits for them)
        # the earlier packages' rows pkg_row = 1 + ns .. rows - 1 as their first and last tile and
        # lanes there (the tile's fixed output lanes then take compares of the tile number only)
        pkg_row, row_last = Signal(range(hw.n_max + 2), name="pkg_row"), Signal(range(hw.n_max + 2), name="row_last")
        m.d.comb += [pkg_row.eq(self.rows - desc.n_pkg), row_last.eq(self.rows - 1)]
        pkgs = ports.row_span(m, pkg_row, row_last, hw, "pkg")
        last_tile, last_ch = pkgs.last_tile, Signal(range(hw.d_max + 1), name="last_ch")
        m.d.sync += last_ch.eq(desc.d - 1)
        tile = Signal(range(hw.tiles + 1))
        out_pos = Signal(range(hw.tiles * R + 2))             # output tokens so far
        ch = Signal(range(hw.d_max + 1))
        part = Signal()                                        # 1: the write to the second output tile
        m.d.comb += self.mask.tile.eq(tile)
        place = self._placement(m, pkgs, tile, out_pos)
        ch_stage = self._channel_pipeline(m, desc, tile, ch, out_pos, place)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [tile.eq(0), out_pos.eq(0)]
                    m.next = "SIZE"
            with m.State("SIZE"):
                m.next = "MASK"
            with m.State("MASK"):
                m.d.comb += self.mask.en.eq(1)
                m.d.sync += place.fixed.eq(place.fixed_lanes)
                m.next = "PLACE"
            with m.State("PLACE"):
                m.d.sync += [place.lanes.eq(place.out_mask),
                             place.rotate.eq(place.out_lane), place.out_tile.eq(out_pos >> ports.lane_bits(R))]
                m.next = "COUNT"
            with m.State("COUNT"):                                  # the tile's output tokens
                m.d.sync += place.count.eq(place.out_count)
                m.next = "SPAN"
            with m.State("SPAN"):
                m.d.sync += [place.two.eq(place.rotate + place.count > R), place.end.eq(place.rotate + place.count),
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
                    with m.If(ch == last_ch):
                        m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(~Cat(s.valid for s in ch_stage[1:]).any()):
                    m.next = "NEXT"
            with m.State("NEXT"):
                m.d.sync += tile.eq(tile + 1)
                with m.If(tile == last_tile):
                    m.d.sync += ch.eq(0)
                    m.next = "PKG"
                with m.Else():
                    m.next = "MASK"
            with m.State("PKG"):
                m.d.comb += [self.pkg.en.eq(1), self.pkg.ch.eq(ch)]
                m.d.sync += ch.eq(ch + 1)
                with m.If(ch == last_ch):
                    m.next = "PKG_DRAIN"
            with m.State("PKG_DRAIN"):
                m.d.comb += [self.done.eq(1), self.n_stb.eq(1)]
                m.next = "IDLE"
        m.d.comb += self.n_out.eq(out_pos + 1)
        return m

    def _placement(self, m, pkgs, tile, out_pos):
        """Where the output tokens of `tile` go, one step per state: MASK registers `fixed` (the
        CLS and package lanes, from the tile number alone) while the tile's mask is read; PLACE
        registers `lanes` (its output lanes), `rotate` (out_pos mod R) and `out_tile`; COUNT
        registers `count`; SPAN registers `two` (the tokens span two output tiles) and end = rotate + count, from
        which both writes' lane enables are registered (the second tile's lanes: r + R < end).
        `shifts` (pack_lanes' per-lane distances) are registered from `lanes` in two steps, in
        COUNT and SPAN, before the first pack (two cycles after SPAN)."""
        R = self.hw.mac_rows
        bits = ports.lane_bits(R)
        place = SimpleNamespace(
            fixed_lanes=Signal(R, name="fixed_lanes"), fixed=Signal(R, name="fixed"),
            out_mask=Signal(R, name="out_mask"), out_count=Signal(range(R + 1), name="out_count"),
            count=Signal(range(R + 1), name="count"),
            out_lane=out_pos[:bits] if bits else Const(0, 1),
            end=Signal(range(2 * R + 1), name="end_lane"), lanes=Signal(R, name="out_lanes", attrs={"max_fanout": 16}),
            rotate=Signal(range(R), name="rotate", attrs={"max_fanout": 64}),          # drives the rotator
            out_tile=Signal(range(self.hw.tiles + 1), name="out_tile"), two=Signal(name="two_tiles"),
            first_en=Signal(R, name="first_en"), second_en=Signal(R, name="second_en"))
        packages = Mux((tile >= pkgs.first_tile) & (tile <= pkgs.last_tile), ports.span_lanes(pkgs, tile, R), 0)
        m.d.comb += [place.fixed_lanes.eq(packages | (tile == 0)),                  # CLS: lane 0 of tile 0
                     place.out_mask.eq(self.mask.keep | place.fixed),
                     place.out_count.eq(tree_sum([place.lanes[r] for r in range(R)], "out_count_sum", m))]
        # both writes' lane enables from registers (rotate, end: held from SPAN to the tile's last
        # write), registered every cycle: the first write is PIPE cycles after SPAN
        m.d.sync += [place.first_en.eq(Cat(((r >= place.rotate) if r < R - 1 else 1) & (r < place.end)
                                           for r in range(R))),
                     place.second_en.eq(Cat(R + r < place.end for r in range(R)))]
        place.shifts = []
        for i, s in enumerate(lane_shifts(m, place.lanes, R, "lane", stage=pipe_stage(m, name="lane_run"))):
            q = Signal.like(s, name=f"shift_q{i}")
            m.d.sync += q.eq(s)
            place.shifts.append(q)
        return place

    def _channel_pipeline(self, m, desc, tile, ch, out_pos, place):
        """Every channel word of the tile: stage 0 reads (ch, part), the word arrives in ARRIVE,
        which and the next pack the output lanes down (the first and second half of the stages,
        the second half's lane controls registered from the first's: they change only with the
        tile), the one after rotates them into `packed`, PIPE writes part 0 (first output tile)
        or 1 (second);
        the package token (PKG: one word per channel from PACKAGE) goes to row N' - 1. Returns
        the stage tags."""
        hw, R = self.hw, self.hw.mac_rows
        tag = data.StructLayout({"valid": 1, "ch": range(hw.d_max), "part": 1})
        stage = [Signal(tag, name=f"ch_stage{k}") for k in range(PIPE + 1)]
        m.d.sync += [stage[k].eq(stage[k - 1]) for k in range(1, PIPE + 1)]
        m.d.comb += [self.rd.buf.eq(desc.x_buf), self.rd.tile.eq(tile), self.rd.ch.eq(ch),     # registers
                     self.rd.en.eq(stage[0].valid & ~stage[0].part)]
        packed = Signal(R * 16)

        def cut_at(k, name):
            def cut(value):
                q = Signal.like(value, name=name)
                with m.If(stage[k].valid & ~stage[k].part):
                    m.d.sync += q.eq(value)
                return q
            return cut

        def cut_control(values):
            return pipe_stage(m, name="half_control")(values)
        lanes_packed = pack_lanes(m, self.rd.data, place.lanes, place.rotate, R, shifts=place.shifts,
                                  cut=cut_at(ARRIVE + 1, "packed_down"),
                                  split=(cut_at(ARRIVE, "packed_half"), cut_control))
        with m.If(stage[ARRIVE + 2].valid & ~stage[ARRIVE + 2].part):
            m.d.sync += packed.eq(lanes_packed)
        # the write's selects (a channel word, its part, a package word) steer the whole port
        # (16 R data bits, the lane enables): replicated registers, the last stage's copies
        fan = {"max_fanout": 16}
        pkg_arrives, pkg_ch = Signal(name="pkg_arrives", attrs=fan), Signal(range(hw.d_max))
        m.d.sync += [pkg_arrives.eq(self.pkg.en), pkg_ch.eq(self.pkg.ch)]
        wr = self.wr
        m.d.comb += wr.buf.eq(desc.o_buf)
        w = SimpleNamespace(valid=Signal(name="write_valid", attrs=fan), part=Signal(name="write_part", attrs=fan),
                            ch=stage[PIPE].ch)
        m.d.sync += [w.valid.eq(stage[PIPE - 1].valid), w.part.eq(stage[PIPE - 1].part)]
        with m.If(w.valid):
            m.d.comb += [wr.tile.eq(place.out_tile + w.part), wr.ch.eq(w.ch), wr.data.eq(packed),
                         wr.en.eq(Mux(w.part, place.second_en, place.first_en))]
        with m.Elif(pkg_arrives):
            m.d.comb += [wr.tile.eq(out_pos >> ports.lane_bits(R)), wr.ch.eq(pkg_ch),
                         wr.data.eq(Cat(self.pkg.data for _ in range(R))),
                         wr.en.eq(Const(1, R) << place.out_lane if ports.lane_bits(R) else 1)]
        return stage
