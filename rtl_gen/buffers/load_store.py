"""LOAD (stream words -> token buffer rows) and STORE (token buffer rows or a selection -> DDR
through the DMA writer on port 0), golden/interp.py op_load / op_store."""
from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from golden import isa
from golden.hw import HardwareConfig

from ..control.decode import desc_view
from ..primitives.fifo import Skid
from ..primitives.gearbox import Gearbox
from . import ports
from .ports import lanes

# STORE's read FIFO: a read holds a place READ_LATENCY + 3 cycles (in flight, the FIFO's write,
# its output register, taken) and one stays free, so a ROWS job reads one word per cycle
READ_FIFO_DEPTH = ports.READ_LATENCY + 4
OUT_SLICE = 1           # cycles a beat spends in the output register slice (before the DMA writer)
LOAD_DONE_DELAY = 1     # LOAD's done (and its writes): a register after the last word's take


class LoadUnit(wiring.Component):
    def __init__(self, hw: HardwareConfig):
        self.hw = hw
        super().__init__({**ports.control(hw), "w": Out(ports.tok_write(hw)),
                          "i": In(stream.Signature(lanes(hw.mac_rows)))})

    def elaborate(self, platform):
        m = Module()
        hw, R = self.hw, self.hw.mac_rows
        every = (1 << R) - 1
        d = desc_view("LOAD", ports.held(m, self.desc, "desc"))       # the writes decode a registered copy
        # the rows' first and last tile and lanes, registers by start (desc and rows hold from
        # three cycles before it): a write's lane enables are then the two end tiles' flags and
        # lanes, one LUT, not a compare per lane after an adder (the zcu102 top's deepest path
        # ran from the descriptor through them into the token buffers' write port)
        row_first = desc_view("LOAD", self.desc).r0
        row_last = Signal(range(hw.n_max + 1), name="row_last")
        m.d.sync += row_last.eq(row_first + self.rows - 1)
        span = ports.row_span(m, row_first, row_last, hw, "load")
        tile, ch = Signal(range(hw.tiles + 1), name="tile"), Signal(range(hw.k_max), name="ch")
        at_first, at_last = Signal(name="at_first"), Signal(name="at_last")
        busy = Signal(name="busy")
        last_ch = Signal(name="last_ch")                  # ch == w - 1, registered
        mask = Mux(at_first, span.first_lanes, every) & Mux(at_last, span.last_lanes, every)
        take = busy & self.i.valid
        # the write from registers (the loader's valid fans out to every lane's enable; through
        # the port routes it set the zcu102 top's clock): a cycle later, with the registered done
        m.d.comb += self.i.ready.eq(busy)
        m.d.sync += [self.w.buf.eq(d.buf[:2]), self.w.tile.eq(tile), self.w.ch.eq(d.c0 + ch),
                     self.w.data.eq(self.i.payload), self.w.en.eq(Mux(take, mask, 0))]
        with m.If(self.start):
            m.d.sync += [busy.eq(1), tile.eq(span.first_tile), ch.eq(0), at_first.eq(1),
                         at_last.eq(span.first_tile == span.last_tile), last_ch.eq(d.w == 1)]
        with m.If(take):
            m.d.sync += [ch.eq(ch + 1), last_ch.eq(ch == d.w - 2)]
            with m.If(last_ch):
                m.d.sync += [ch.eq(0), tile.eq(tile + 1), at_first.eq(0), at_last.eq(tile + 1 == span.last_tile),
                             last_ch.eq(d.w == 1)]
                with m.If(at_last):
                    m.d.sync += busy.eq(0)
        # done with the last write, from a register (the loader's valid ran through it into the
        # controller)
        done = ports.delayed(m, take & last_ch & at_last, LOAD_DONE_DELAY, "load_done")
        m.d.comb += self.done.eq(done)
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
        m.submodules.row_gearbox = row_gearbox = Gearbox(16, W)            # ROWS: int16 items
        # TILES: token-tile words (wider than a beat: read in place from the FIFO's output
        # register, which holds until the last beat of the word is taken)
        m.submodules.tile_gearbox = tile_gearbox = Gearbox(16 * R, W, in_place=16 * R > W)
        m.submodules.read_fifo = read_fifo = fifo.SyncFIFOBuffered(width=16 * R + ports.lane_bits(R),
                                                                  depth=READ_FIFO_DEPTH)
        # the selection's beats through a register slice (no valid / ready path from the selection
        # store through this unit into the DMA writer)
        m.submodules.sel_skid = sel_skid = Skid(W)
        wiring.connect(m, wiring.flipped(self.i_sel), sel_skid.i)
        self._sel = sel_skid.o
        # and the beats out through one (the writer's ready ran through the gearboxes into the
        # read FIFO's pointers: the zcu102 top's deepest path after LOAD's)
        m.submodules.out_skid = out_skid = Skid(W)
        wiring.connect(m, out_skid.o, wiring.flipped(self.o_data))
        self._out = out_skid.i
        job = SimpleNamespace(
            mode=Signal(2, name="mode"),       # the modes select beats and words of 16 R bits: replicated
            rows_mode=Signal(name="rows_mode", attrs={"max_fanout": 16}),
            tiles_mode=Signal(name="tiles_mode", attrs={"max_fanout": 16}),
            busy=Signal(name="busy"),
            sent_cmd=Signal(name="sent_cmd"),
            reading=Signal(name="reading"),
            items_left=Signal(32, name="items_left"),    # not yet taken from the read FIFO
            pad=Signal(range(max(2, self.hw.axi_bits // 16)), name="pad"),   # zero items still to add to the last beat
            padding=Signal(name="padding"),              # every item read has been taken and pad != 0
            row=Signal(range(hw.n_max + 1), name="row"), ch=Signal(range(hw.k_max), name="ch"),
            tile=Signal(range(hw.tiles + 1), name="tile"))
        job_items = self._command(m, d, job)
        self._read_words(m, d, job, read_fifo)
        self._pack_beats(m, job, read_fifo, row_gearbox, tile_gearbox)
        with m.If(self.start):
            m.d.sync += [job.busy.eq(1), job.sent_cmd.eq(0), job.mode.eq(d.mode),
                         job.rows_mode.eq(d.mode == isa.STORE_ROWS), job.tiles_mode.eq(d.mode == isa.STORE_TILES),
                         job.row.eq(d.r0), job.tile.eq(0),
                         job.ch.eq(0), job.items_left.eq(job_items), job.padding.eq(0),
                         job.reading.eq(d.mode != isa.STORE_SELECT), job.pad.eq(_pad_items(job_items, d.mode, R, W))]
        with m.If(job.busy & self.wr_done):
            m.d.comb += self.done.eq(1)
            m.d.sync += job.busy.eq(0)
        return m

    def _command(self, m, d, job):
        """The writer's command: the job's bytes at base + addr (ROWS: rows x w int16, TILES:
        tiles x w words, SELECT: sel_bytes), once per job. Returns the job's item count."""
        R = self.hw.mac_rows
        # registered twice (rows, then the product): desc and rows hold from three cycles before
        # start, and the controller's row count ran through the product into the padding
        rows = ports.held(m, self.rows, "cmd_rows")
        job_items = Signal(32, name="job_items")
        m.d.sync += job_items.eq(Mux(d.mode == isa.STORE_ROWS, rows * d.w, ports.tiles_of(rows, R) * d.w))
        item_bits = Mux(d.mode == isa.STORE_ROWS, 16, 16 * R)
        raw_bytes = Signal(32)
        m.d.comb += raw_bytes.eq(Mux(d.mode == isa.STORE_SELECT, self.sel_bytes, (job_items * item_bits) >> 3))
        m.d.comb += [self.wr_cmd.payload.addr.eq(self.base + d.addr), self.wr_cmd.payload.length.eq(raw_bytes),
                     self.wr_cmd.valid.eq(job.busy & ~job.sent_cmd)]
        with m.If(self.wr_cmd.valid & self.wr_cmd.ready):
            m.d.sync += job.sent_cmd.eq(1)
        return job_items

    def _read_words(self, m, d, job, read_fifo):
        """ROWS: row `row` channel `ch` (the row's lane kept beside the word); TILES: tile `tile`
        channel `ch`; one read a cycle while the FIFO has room for it."""
        hw, R = self.hw, self.hw.mac_rows
        bits = ports.lane_bits(R)
        tiles = ports.tiles_of(self.rows, R)
        inflight = Signal(range(ports.READ_LATENCY + 1))        # reads not yet in the FIFO
        room = read_fifo.level + inflight < READ_FIFO_DEPTH - 1
        go = job.reading & room
        rows_mode = job.rows_mode
        m.d.comb += [self.ra.buf.eq(d.buf[:2]), self.ra.tile.eq(Mux(rows_mode, job.row >> bits, job.tile)),
                     self.ra.ch.eq(d.c0 + job.ch), self.ra.en.eq(go)]
        lane = Signal(range(R), name="lane")
        # lanes past the last row (a TILES job's last tile) were never written: zeros leave, as
        # the interpreter writes, never the block RAM's undefined contents. The lanes' mask is
        # registered with the read from the first and last row's tile and lanes, registers
        # (desc and rows hold from three cycles before start: two steps, the last row first)
        row_last = Signal((d.r0 + self.rows).shape(), name="row_last")
        m.d.sync += row_last.eq(d.r0 + self.rows - 1)
        read_mask = ports.span_lanes(ports.row_span(m, d.r0, row_last, hw, "rows"), self.ra.tile, R)
        m.d.comb += lane.eq(job.row[:bits] if bits else 0)
        # the read's lane and mask travel beside it: its data is there ports.READ_LATENCY cycles later
        issued = Signal(data.StructLayout({"valid": 1, "lane": range(R), "mask": R}))
        m.d.comb += [issued.valid.eq(go), issued.lane.eq(lane), issued.mask.eq(read_mask)]
        arrived = ports.delayed(m, issued, ports.READ_LATENCY, "store_read")
        m.d.sync += inflight.eq(inflight + go - arrived.valid)
        # the job's last channel and tile as registers (desc and rows hold from before start): the
        # read's end compares registers, not adders behind the descriptor
        last_ch, last_tile = Signal.like(job.ch, name="last_ch"), Signal.like(job.tile, name="last_tile")
        m.d.sync += [last_ch.eq(d.w - 1), last_tile.eq(tiles - 1)]
        with m.If(go):
            m.d.sync += job.ch.eq(job.ch + 1)
            with m.If(job.ch == last_ch):
                m.d.sync += [job.ch.eq(0), job.row.eq(job.row + 1), job.tile.eq(job.tile + 1)]
                with m.If(Mux(rows_mode, job.row == row_last, job.tile == last_tile)):
                    m.d.sync += job.reading.eq(0)
        word = Cat(Mux(arrived.mask[r], self.ra.data[r], 0) for r in range(R))
        m.d.comb += [read_fifo.w_en.eq(arrived.valid), read_fifo.w_data.eq(Cat(word, arrived.lane))]

    def _pack_beats(self, m, job, read_fifo, row_gearbox, tile_gearbox):
        """FIFO words to W-bit beats: ROWS through the int16 gearbox (the row's lane of each
        word), TILES through the tile-word gearbox, then zero items up to a whole beat; SELECT
        passes i_sel through. Beats leave once the command has been sent."""
        R = self.hw.mac_rows
        word = data.View(data.StructLayout({"word": 16 * R, "lane": max(ports.lane_bits(R), 1)}), read_fifo.r_data)
        # every item read has been taken (so none is in the FIFO or on its way): the zero items
        # follow (registers, not the FIFO's level: its r_rdy -> level -> r_en path reached its
        # r_data; with no items there is no padding either)
        padding = job.padding
        rows_mode, tiles_mode = job.rows_mode, job.tiles_mode
        m.d.comb += [row_gearbox.i.payload.eq(Mux(padding, 0, word.word.word_select(word.lane, 16))),
                     row_gearbox.i.valid.eq(rows_mode & (read_fifo.r_rdy | padding)),
                     tile_gearbox.i.payload.eq(Mux(padding, 0, word.word)),
                     tile_gearbox.i.valid.eq(tiles_mode & (read_fifo.r_rdy | padding)),
                     read_fifo.r_en.eq(Mux(rows_mode, row_gearbox.i.ready, tile_gearbox.i.ready) & ~padding
                                       & (rows_mode | tiles_mode))]
        with m.If(padding & Mux(rows_mode, row_gearbox.i.ready, tile_gearbox.i.ready)):
            m.d.sync += [job.pad.eq(job.pad - 1), job.padding.eq(job.pad != 1)]
        with m.If(read_fifo.r_en & read_fifo.r_rdy):
            m.d.sync += [job.items_left.eq(job.items_left - 1), job.padding.eq((job.items_left == 1) & (job.pad != 0))]
        beat = Mux(rows_mode, row_gearbox.o.payload, Mux(tiles_mode, tile_gearbox.o.payload, self._sel.payload))
        ready = Mux(rows_mode, row_gearbox.o.valid, Mux(tiles_mode, tile_gearbox.o.valid, self._sel.valid))
        sending = job.busy & job.sent_cmd
        out = self._out
        m.d.comb += [out.payload.eq(beat), out.valid.eq(sending & ready),
                     row_gearbox.o.ready.eq(rows_mode & job.sent_cmd & out.ready),
                     tile_gearbox.o.ready.eq(tiles_mode & job.sent_cmd & out.ready),
                     self._sel.ready.eq(sending & (job.mode == isa.STORE_SELECT) & out.ready)]


def _pad_items(vals, mode, R: int, W: int):
    """Zero items that complete the last W-bit beat."""
    per_rows = W // 16
    per_tiles = max(1, W // (16 * R))
    pr = (per_rows - (vals & (per_rows - 1))) & (per_rows - 1)
    pt = (per_tiles - (vals & (per_tiles - 1))) & (per_tiles - 1) if per_tiles > 1 else 0
    return Mux(mode == isa.STORE_ROWS, pr, pt)
