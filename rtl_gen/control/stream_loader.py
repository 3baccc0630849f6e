"""Stream loader: walks the descriptors in program order and routes each operation's items of the
merged DDR stream (golden/stream.py) to where they go:

    MATMUL     [activation table ->] weight ring, one m-tile item per slot (runs ahead of compute)
    LAYERNORM  parameters -> the LayerNorm unit's i_param stream       (when compute runs the op)
    DECIDE     [activation table]                                      (when compute runs the op)
    LOAD       token-tile words -> the LOAD unit                       (when compute runs the op)

Items start on stream-beat boundaries and are padded to whole beats; a gearbox per word kind
cuts beats into words and the padding words are dropped. Weights are fetched as far ahead as the
ring's two slots allow; every other item waits until the compute side has started its operation
(the tables and LayerNorm parameters have one copy). The controller resets the loader with
`ctl.stop` to stop it. If an item needs more beats than the stream holds, the loader stops with
`ctl.error` at that descriptor; the controller reports STREAM_SHORT when compute reaches it (the
interpreter's order).
"""
from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Const, Module, Mux, ResetInserter, Signal, signed
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from golden import isa
from golden.hw import HardwareConfig
from golden.stream import BIAS_WORDS, ENTRY_BYTES

from ..buffers.act_table import table_write
from ..buffers.ports import lanes
from ..buffers.weight_ring import fill_port
from ..primitives.fifo import Skid
from ..primitives.gearbox import Gearbox
from ..primitives.ram import read_port
from .decode import Opcode, common_view, desc_view


class Target(enum.Enum, shape=2):
    """Where the current item's words go."""
    TABLE = 0          # the activation table (MATMUL, DECIDE)
    LN_PARAMS = 1      # the LayerNorm unit's parameter stream
    WEIGHTS = 2        # the weight ring (MATMUL)
    LOAD_DATA = 3      # the LOAD unit's token-tile words


class WordKind(enum.Enum, shape=2):
    """The word a gearbox cuts from stream beats."""
    ENTRY = 0          # 64-bit table entries and LayerNorm parameters
    WEIGHT = 1         # a weight word: mac_cols int16 lanes
    TILE = 2           # a token-tile word: mac_rows int16 lanes


KIND_OF = {Target.TABLE: WordKind.ENTRY, Target.LN_PARAMS: WordKind.ENTRY, Target.WEIGHTS: WordKind.WEIGHT,
           Target.LOAD_DATA: WordKind.TILE}


def word_bits(hw: HardwareConfig) -> dict:
    return {WordKind.ENTRY: 8 * ENTRY_BYTES, WordKind.WEIGHT: 16 * hw.mac_cols, WordKind.TILE: 16 * hw.mac_rows}


def loader_port(hw: HardwareConfig) -> wiring.Signature:
    """Run controller <-> stream loader, directions as the controller sees them (the loader has
    the flipped port, `ctl`)."""
    index = range(hw.desc_max + 1)
    return wiring.Signature({
        "start": Out(1),            # pulse: the stream read is issued; walk from descriptor 0
        "stop": Out(1),             # reset the loader (abort, end of run)
        "total": Out(32),           # stream beats of the run
        "desc_index": Out(index),   # the descriptor compute is at ...
        "running": Out(1),          # ... and runs (or waits for its table): its items may flow
        "tokens": Out(range(hw.n_max + 1)),   # the token-count register N (rows of `rows_n` LOADs)
        "stream_index": In(index),  # the descriptor whose items the loader is at
        "table_ok": In(1),          # the activation table of stream_index is loaded
        "at_end": In(1),            # the loader reached END
        "consumed": In(32),         # stream beats claimed so far
        "error": In(1),             # an item needs more beats than the stream holds (at stream_index)
    })


def ln_param_layout() -> data.StructLayout:
    return data.StructLayout({"gamma": signed(16), "beta": signed(48)})


def _beats(words, word_bits: int, stream_bits: int):
    """ceil(words * word_bits / stream_bits) for power-of-two widths."""
    if word_bits >= stream_bits:
        return words << (word_bits // stream_bits).bit_length() - 1
    r = stream_bits // word_bits
    return (words + r - 1) >> (r.bit_length() - 1)


class StreamLoader(wiring.Component):
    def __init__(self, hw: HardwareConfig):
        self.hw = hw
        super().__init__({
            "ctl": In(loader_port(hw)),
            "prog": Out(read_port(isa.DESC_BITS, hw.desc_max)),   # program memory port B
            "i_stream": In(stream.Signature(hw.stream_bits)),
            "fill": Out(fill_port(hw)),
            "table": Out(table_write(hw)),
            "o_ln": Out(stream.Signature(ln_param_layout())),
            "o_load": Out(stream.Signature(lanes(hw.mac_rows))),
        })

    def elaborate(self, platform):
        m = Module()
        hw = self.hw
        gearboxes = {k: Gearbox(hw.stream_bits, bits) for k, bits in word_bits(hw).items()}
        for k, g in gearboxes.items():
            m.submodules[f"gearbox_{k.name.lower()}"] = g
        # the DMA's beats through a register slice: its ready is a register, which cuts the ready
        # chain target (LayerNorm unit, LOAD) -> gearbox -> the DMA's FIFO
        m.submodules.in_skid = in_skid = Skid(hw.stream_bits)
        wiring.connect(m, wiring.flipped(self.i_stream), in_skid.i)
        in_skid.o.valid.attrs["max_fanout"] = 16      # the gearboxes' word index and every beat's take
        # the LayerNorm parameters out through one: the unit's ready ran through the entry
        # gearbox into its output register
        m.submodules.ln_skid = self._ln = ln_skid = Skid(len(self.o_ln.payload.as_value()))
        m.d.comb += [self.o_ln.payload.eq(ln_skid.o.payload), self.o_ln.valid.eq(ln_skid.o.valid),
                     ln_skid.o.ready.eq(self.o_ln.ready)]
        item = SimpleNamespace(
            desc=Signal(isa.DESC_BITS),                  # the descriptor the loader is at
            target=Signal(Target), kind=Signal(WordKind),
            beats_left=Signal(32), words_left=Signal(32),  # beats to feed, words to deliver
            # beats_left != 0, words_left != 0, words_left == 1 as registers (no compare in the cycle)
            beats_live=Signal(), words_live=Signal(), last_word=Signal(),
            word_index=Signal(range(max(hw.k_max + BIAS_WORDS, hw.pwl_max) + 1)),
            m_tile=Signal(range(hw.k_max + 2)), m_tiles=Signal(range(hw.k_max + 2)),
            claim_words=Signal(32), claim_beats=Signal(32),  # the next item's size, before its COMMIT
            fits=Signal(), room=Signal(32))                  # CHECK's verdict; beats the stream has left
        # one cycle behind `consumed`: the earliest CHECK comes two cycles after the COMMIT before
        m.d.sync += item.room.eq(self.ctl.total - self.ctl.consumed)
        with m.Switch(item.target):
            for target, kind in KIND_OF.items():
                with m.Case(target):
                    m.d.comb += item.kind.eq(kind)
        self._route(m, gearboxes, item, in_skid.o)
        feeding = item.beats_live | item.words_live | ~gearboxes[WordKind.ENTRY].empty \
            | ~gearboxes[WordKind.WEIGHT].empty | ~gearboxes[WordKind.TILE].empty
        with m.FSM() as fsm:
            self._walk(m, item)
            self._compute_items(m, item, feeding)
            self._weights(m, item, feeding)
        fsm.state.attrs["max_fanout"] = 16           # decoded by every register's enable
        return ResetInserter(self.ctl.stop)(m)

    def _walk(self, m, item):
        """Descriptor by descriptor: read it from the program memory, go to its items' states."""
        ctl = self.ctl
        with m.State("IDLE"):
            with m.If(ctl.start):
                m.d.sync += [ctl.stream_index.eq(0), ctl.consumed.eq(0), ctl.error.eq(0), ctl.at_end.eq(0),
                             ctl.table_ok.eq(0)]
                m.next = "READ"
        with m.State("READ"):
            m.d.comb += [self.prog.addr.eq(ctl.stream_index), self.prog.en.eq(1)]
            m.next = "DECODE"
        with m.State("DECODE"):
            m.d.sync += item.desc.eq(self.prog.data)
            m.next = "DISPATCH"
        with m.State("DISPATCH"):
            op = common_view(item.desc).op
            with m.If(op == Opcode.MATMUL):
                C = self.hw.mac_cols
                m_tiles = (desc_view("MATMUL", item.desc).m + C - 1) >> (C - 1).bit_length()     # ceil(m / C)
                m.d.sync += [item.m_tile.eq(0), item.m_tiles.eq(m_tiles)]
                m.next = "MM_TABLE"
            with m.Elif(op == Opcode.LAYERNORM):
                m.next = "LN"
            with m.Elif(op == Opcode.DECIDE):
                m.next = "DC_TABLE"
            with m.Elif(op == Opcode.LOAD):
                m.next = "LD"
            with m.Elif(op == Opcode.END):
                m.d.sync += ctl.at_end.eq(1)
                m.next = "END"
            with m.Else():
                m.next = "NEXT"
        with m.State("NEXT"):
            m.d.sync += [ctl.stream_index.eq(ctl.stream_index + 1), ctl.table_ok.eq(0)]
            m.next = "READ"
        with m.State("END"):
            pass
        with m.State("ERROR"):
            m.d.sync += ctl.error.eq(1)

    def _size(self, item, target, words) -> list:
        """The next item's size (`words` of `target`) into the claim registers."""
        beats = _beats(words, word_bits(self.hw)[KIND_OF[target]], self.hw.stream_bits)
        return [item.claim_words.eq(words), item.claim_beats.eq(beats)]

    def _claim(self, m, item, state, target, then, also=()):
        """The states after `state` has put an item's size into the claim registers (`_size`):
        CHECK whether the stream still holds its beats (or stop with ERROR), COMMIT it to
        `target` and feed it in the state `then`. Two cycles so that neither the size's
        arithmetic nor the compare's fanout shares a cycle with the FSM (docs/rtl.md, Timing
        budget; the cycle model's ITEM counts them)."""
        ctl, words = self.ctl, item.claim_words
        with m.State(state + "_CHECK"):
            m.d.sync += item.fits.eq(item.claim_beats <= item.room)
            m.next = state + "_COMMIT"
        with m.State(state + "_COMMIT"):
            with m.If(~item.fits):
                m.next = "ERROR"
            with m.Else():
                m.d.sync += [item.target.eq(target), item.words_left.eq(words), item.word_index.eq(0),
                             item.beats_left.eq(item.claim_beats), ctl.consumed.eq(ctl.consumed + item.claim_beats),
                             item.beats_live.eq(item.claim_beats != 0), item.words_live.eq(words != 0),
                             item.last_word.eq(words == 1), *also]
                m.next = then

    def _compute_items(self, m, item, feeding):
        """Items with one copy (tables, LayerNorm parameters, LOAD data): wait until compute runs
        this descriptor, then claim and feed them."""
        mm, ln, dc, ld = (desc_view(n, item.desc) for n in ("MATMUL", "LAYERNORM", "DECIDE", "LOAD"))
        # registered twice: the controller's running comes from its FSM (registered where it
        # arrives, then with the index compare); the item waits two cycles more
        compute_here, running = Signal(name="compute_here"), Signal(name="running_q")
        m.d.sync += [running.eq(self.ctl.running),
                     compute_here.eq((self.ctl.desc_index == self.ctl.stream_index) & running)]
        for state, target, needed, words, then in (
                ("MM_TABLE", Target.TABLE, mm.act == isa.ACT_LOAD, mm.pwl_nseg, "MM_W"),
                ("DC_TABLE", Target.TABLE, dc.act == isa.ACT_LOAD, dc.pwl_nseg, "NEXT"),
                ("LN", Target.LN_PARAMS, Const(1), ln.d, "NEXT")):
            with m.State(state):
                with m.If(~needed):
                    m.next = then
                with m.Elif(compute_here):
                    m.d.sync += self._size(item, target, words)
                    m.next = state + "_CHECK"
            self._claim(m, item, state, target, state + "_FEED")
            with m.State(state + "_FEED"):
                with m.If(~feeding):
                    m.d.sync += self.ctl.table_ok.eq(target == Target.TABLE)
                    m.next = then
        # LOAD: tiles x channels words, one adder or the product per cycle
        rb = (self.hw.mac_rows - 1).bit_length()
        last = ld.r0 + Mux(ld.rows_n, self.ctl.tokens, ld.rows) - 1
        last_row = Signal(last.shape())
        tiles = Signal(((last_row >> rb) - (ld.r0 >> rb) + 1).shape())
        with m.State("LD"):
            with m.If(compute_here):
                m.d.sync += last_row.eq(last)
                m.next = "LD_TILES"
        with m.State("LD_TILES"):
            m.d.sync += tiles.eq((last_row >> rb) - (ld.r0 >> rb) + 1)
            m.next = "LD_WORDS"
        words = Signal(32)
        m.d.sync += words.eq(tiles * ld.w)           # a DSP48 with its output register
        with m.State("LD_WORDS"):
            m.next = "LD_BEATS"
        with m.State("LD_BEATS"):
            m.d.sync += self._size(item, Target.LOAD_DATA, words)
            m.next = "LD_CHECK"
        self._claim(m, item, "LD", Target.LOAD_DATA, "LD_FEED")
        with m.State("LD_FEED"):
            with m.If(~feeding):
                m.next = "NEXT"

    def _weights(self, m, item, feeding):
        """MATMUL weights: one m-tile item per ring slot, as far ahead of compute as the ring allows."""
        k = desc_view("MATMUL", item.desc).k
        with m.State("MM_W"):
            with m.If(item.m_tile == item.m_tiles):
                m.next = "NEXT"
            with m.Elif(self.fill.free):
                m.d.sync += self._size(item, Target.WEIGHTS, k + BIAS_WORDS)
                m.next = "MM_W_CHECK"
        self._claim(m, item, "MM_W", Target.WEIGHTS, "MM_W_FEED", [item.m_tile.eq(item.m_tile + 1)])
        with m.State("MM_W_FEED"):
            with m.If(~feeding):
                m.next = "MM_W"

    def _route(self, m, gearboxes, item, i):
        """Beats -> the kind's gearbox while `beats_left` > 0; words -> the target while
        `words_left` > 0, then drop (the item's padding)."""
        beats_left, words_left = item.beats_left, item.words_left
        for k, g in gearboxes.items():
            sel = item.kind == k
            m.d.comb += [g.i.valid.eq(i.valid & sel & item.beats_live), g.i.payload.eq(i.payload),
                         g.flush.eq(sel & ~item.beats_live & ~item.words_live)]
        entry, weight, tile = (gearboxes[k] for k in (WordKind.ENTRY, WordKind.WEIGHT, WordKind.TILE))
        gearbox_ready = Mux(item.kind == WordKind.ENTRY, entry.i.ready,
                            Mux(item.kind == WordKind.WEIGHT, weight.i.ready, tile.i.ready))
        m.d.comb += i.ready.eq(item.beats_live & gearbox_ready)
        with m.If(i.valid & i.ready):
            m.d.sync += [beats_left.eq(beats_left - 1), item.beats_live.eq(beats_left != 1)]
        e, w, t = entry.o, weight.o, tile.o
        live = item.words_live
        # entries: table or LayerNorm parameters
        ent = data.View(data.StructLayout({"base": signed(32), "slope": signed(32)}), e.payload)
        m.d.comb += [self.table.addr.eq(item.word_index), self.table.data.base.eq(ent.base),
                     self.table.data.slope.eq(ent.slope), self._ln.i.payload.eq(e.payload)]
        m.d.comb += [self.table.en.eq(e.valid & live & (item.target == Target.TABLE)),
                     self._ln.i.valid.eq(e.valid & live & (item.target == Target.LN_PARAMS)),
                     e.ready.eq(~live | (item.target == Target.TABLE) | self._ln.i.ready)]
        m.d.comb += [self.fill.addr.eq(item.word_index), self.fill.data.eq(w.payload),
                     self.fill.en.eq(w.valid & live), self.fill.commit.eq(w.valid & item.last_word), w.ready.eq(1)]
        m.d.comb += [self.o_load.payload.eq(t.payload), self.o_load.valid.eq(t.valid & live),
                     t.ready.eq(~live | self.o_load.ready)]
        took = Mux(item.kind == WordKind.ENTRY, e.valid & e.ready,
                   Mux(item.kind == WordKind.WEIGHT, w.valid & w.ready, t.valid & t.ready))
        with m.If(took & live):
            m.d.sync += [words_left.eq(words_left - 1), item.word_index.eq(item.word_index + 1),
                         item.words_live.eq(words_left != 1), item.last_word.eq(words_left == 2)]
