"""LOAD (stream words -> token buffer rows) and STORE (token buffer rows or a selection -> DDR
through the DMA writer on port 0), golden/interp.py op_load / op_store."""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from golden import isa
from golden.hw import HardwareConfig

from . import ports
from ..control.decode import desc_view
from ..primitives.gearbox import Gearbox
from .ports import lanes


def _tile_mask(m, t, r0, rows, hw, name):
    """Lanes of tile t whose rows lie in [r0, r0 + rows)."""
    mask = Signal(hw.mac_rows, name=name)
    base = t * hw.mac_rows
    m.d.comb += mask.eq(Cat((base + r >= r0) & (base + r < r0 + rows) for r in range(hw.mac_rows)))
    return mask


class LoadUnit(wiring.Component):
    def __init__(self, hw: HardwareConfig):
        self.hw = hw
        super().__init__({**ports.control(hw), "w": Out(ports.tok_write(hw)),
                          "i": In(stream.Signature(lanes(hw.mac_rows)))})

    def elaborate(self, platform):
        m = Module()
        hw, R = self.hw, self.hw.mac_rows
        d = desc_view("LOAD", self.desc)
        rb = (R - 1).bit_length()
        t, t1, c = Signal(range(hw.tiles)), Signal(range(hw.tiles)), Signal(range(hw.k_max))
        busy = Signal()
        last = (t == t1) & (c == d.w - 1)
        m.d.comb += [self.i.ready.eq(busy), self.w.buf.eq(d.buf[:2]), self.w.tile.eq(t), self.w.ch.eq(d.c0 + c),
                     self.w.data.eq(self.i.payload)]
        mask = _tile_mask(m, t, d.r0, self.rows, hw, "load_mask")
        m.d.comb += self.w.en.eq(Mux(busy & self.i.valid, mask, 0))
        with m.If(self.start):
            m.d.sync += [busy.eq(1), t.eq(d.r0 >> rb), t1.eq((d.r0 + self.rows - 1) >> rb), c.eq(0)]
        with m.If(busy & self.i.valid):
            m.d.sync += c.eq(c + 1)
            with m.If(c == d.w - 1):
                m.d.sync += [c.eq(0), t.eq(t + 1)]
            with m.If(last):
                m.d.comb += self.done.eq(1)
                m.d.sync += busy.eq(0)
        return m


def wcmd_layout() -> data.StructLayout:
    return data.StructLayout({"addr": 64, "length": 32})


class StoreUnit(wiring.Component):
    """ROWS: one int16 per (row, channel), row-major; TILES: token-tile words; SELECT: the bytes
    the selection source gives (`i_sel`, `sel_bytes` bytes). The writer writes exactly the job's
    bytes (its last beat's strobes are cut); the data stream is zero-padded to whole W-bit
    beats. `done` after the writer's last response."""

    def __init__(self, hw: HardwareConfig):
        self.hw = hw
        W = hw.axi_bits
        super().__init__({
            **ports.control(hw), "base": In(64), "ra": Out(ports.tok_read(hw)),
            "wr_cmd": Out(stream.Signature(wcmd_layout())), "o_data": Out(stream.Signature(W)), "wr_done": In(1),
            "i_sel": In(stream.Signature(W)), "sel_bytes": In(32),
        })

    def elaborate(self, platform):
        m = Module()
        hw, R, W = self.hw, self.hw.mac_rows, self.hw.axi_bits
        d = desc_view("STORE", self.desc)
        rb = (R - 1).bit_length()
        m.submodules.g16 = g16 = Gearbox(16, W)
        m.submodules.gt = gt = Gearbox(16 * R, W)
        m.submodules.q = q = fifo.SyncFIFOBuffered(width=16 * R + rb, depth=4)
        mode = Signal(2)
        items, n_items, pad = Signal(32), Signal(32), Signal(32)
        r, c, t = Signal(range(hw.n_max + 1)), Signal(range(hw.k_max)), Signal(range(hw.tiles + 1))
        inflight = Signal(2)
        reading, busy, sent_cmd = Signal(), Signal(), Signal()
        tiles = ports.tiles_of(self.rows, R)
        # ---------------------------------------------- job length (bytes, padded to W/8)
        vals = Signal(32)
        m.d.comb += vals.eq(Mux(d.mode == isa.STORE_ROWS, self.rows * d.w, tiles * d.w))
        item_bits = Mux(d.mode == isa.STORE_ROWS, 16, 16 * R)
        raw_bytes = Signal(32)
        m.d.comb += raw_bytes.eq(Mux(d.mode == isa.STORE_SELECT, self.sel_bytes, (vals * item_bits) >> 3))
        m.d.comb += [self.wr_cmd.payload.addr.eq(self.base + d.addr), self.wr_cmd.payload.length.eq(raw_bytes),
                     self.wr_cmd.valid.eq(busy & ~sent_cmd)]
        with m.If(self.wr_cmd.valid & self.wr_cmd.ready):
            m.d.sync += sent_cmd.eq(1)
        # ---------------------------------------------- reads (ROWS: row r channel c; TILES: tile t channel c)
        room = q.level + inflight < 3
        go = reading & room
        m.d.comb += [self.ra.buf.eq(d.buf[:2]), self.ra.tile.eq(Mux(mode == isa.STORE_ROWS, r >> rb, t)),
                     self.ra.ch.eq(d.c0 + c), self.ra.en.eq(go)]
        lane = Signal(range(R), name="lane")
        lane_q = Signal(range(R))
        m.d.comb += lane.eq(r[:rb] if rb else 0)
        m.d.sync += [inflight.eq(inflight + go - (inflight != 0))]      # one read in flight per cycle
        with m.If(go):
            m.d.sync += lane_q.eq(lane)
            m.d.sync += c.eq(c + 1)
            with m.If(c == d.w - 1):
                m.d.sync += [c.eq(0), r.eq(r + 1), t.eq(t + 1)]
                with m.If(Mux(mode == isa.STORE_ROWS, r == d.r0 + self.rows - 1, t == tiles - 1)):
                    m.d.sync += reading.eq(0)
        valid_rd = Signal()
        m.d.sync += valid_rd.eq(go)
        m.d.comb += [q.w_en.eq(valid_rd), q.w_data.eq(Cat(self.ra.data.as_value(), lane_q))]
        qd = data.View(data.StructLayout({"word": 16 * R, "lane": max(rb, 1)}), q.r_data)
        # ---------------------------------------------- packing to W-bit beats (+ zero padding)
        padding = (pad != 0) & ~reading & (q.level == 0) & ~valid_rd & (n_items == items)
        rows_mode, tiles_mode = mode == isa.STORE_ROWS, mode == isa.STORE_TILES
        m.d.comb += [g16.i.payload.eq(Mux(padding, 0, qd.word.word_select(qd.lane, 16))),
                     g16.i.valid.eq(rows_mode & (q.r_rdy | padding)),
                     gt.i.payload.eq(Mux(padding, 0, qd.word)), gt.i.valid.eq(tiles_mode & (q.r_rdy | padding)),
                     q.r_en.eq(Mux(rows_mode, g16.i.ready, gt.i.ready) & ~padding & (rows_mode | tiles_mode))]
        with m.If(padding & Mux(rows_mode, g16.i.ready, gt.i.ready)):
            m.d.sync += pad.eq(pad - 1)
        with m.If(q.r_en & q.r_rdy):
            m.d.sync += n_items.eq(n_items + 1)
        src = Mux(rows_mode, g16.o.payload, Mux(tiles_mode, gt.o.payload, self.i_sel.payload))
        ok = Mux(rows_mode, g16.o.valid, Mux(tiles_mode, gt.o.valid, self.i_sel.valid))
        m.d.comb += [self.o_data.payload.eq(src), self.o_data.valid.eq(busy & sent_cmd & ok),
                     g16.o.ready.eq(rows_mode & sent_cmd & self.o_data.ready),
                     gt.o.ready.eq(tiles_mode & sent_cmd & self.o_data.ready),
                     self.i_sel.ready.eq(busy & sent_cmd & (mode == isa.STORE_SELECT) & self.o_data.ready)]
        # ---------------------------------------------- start / done
        with m.If(self.start):
            m.d.sync += [busy.eq(1), sent_cmd.eq(0), mode.eq(d.mode), r.eq(d.r0), t.eq(0), c.eq(0), n_items.eq(0),
                         reading.eq(d.mode != isa.STORE_SELECT), items.eq(vals),
                         pad.eq(_pad_items(vals, d.mode, R, W))]
        with m.If(busy & self.wr_done):
            m.d.comb += self.done.eq(1)
            m.d.sync += busy.eq(0)
        return m


def _pad_items(vals, mode, R: int, W: int):
    """Zero items that complete the last W-bit beat."""
    per_rows = W // 16
    per_tiles = max(1, W // (16 * R))
    pr = (per_rows - (vals & (per_rows - 1))) & (per_rows - 1)
    pt = (per_tiles - (vals & (per_tiles - 1))) & (per_tiles - 1) if per_tiles > 1 else 0
    return Mux(mode == isa.STORE_ROWS, pr, pt)
