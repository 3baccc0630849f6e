"""STORE of a selection (golden/interp.py Machine.op_store, mode STORE_SELECT): the bytes the
top's DMA writer puts at the descriptor's address, as a stream of W-bit beats (W = axi_bits,
byte k of the region in bits 8 (k mod W/8) .. of beat k // (W/8), little-endian):

    kept (u32), ns (u32), 8 reserved zero bytes, then one bit per scored token i (bit i % 8 of
    byte 16 + i // 8: token 1 + i kept), zero up to ceil(n_max / 128) x 16 bytes

select_bytes(hw) bytes in all (golden.compiler.select_bytes); the last beat is zero-padded when
W does not divide it (`beats` beats, `last` on the final one; the writer's byte strobes cover
the rest). The mask comes from the selection state, one token tile per read: chunk j = tokens
j R + 1 .. j R + R (lanes 1.. of tile j and lane 0 of tile j + 1) goes into a bit window behind
the header; a beat leaves whenever W bits are there. A tile's mask is registered (TAKE) before
it is shifted into the window (the mask's read data would otherwise run into the shifter).
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.compiler import select_bytes
from golden.hw import HardwareConfig

from .state import mask_read


def beat_layout(hw: HardwareConfig) -> data.StructLayout:
    return data.StructLayout({"data": hw.axi_bits, "last": 1})


def beats(hw: HardwareConfig) -> int:
    return -(-select_bytes(hw) * 8 // hw.axi_bits)


def chunks(hw: HardwareConfig) -> int:
    return (select_bytes(hw) * 8 - 128) // hw.mac_rows


def select_cycles(hw: HardwareConfig) -> int:
    """start -> the last beat offered, with a writer that takes every beat at once: FIRST, then
    per chunk NEXT, TAKE, PUSH and per beat NEXT, EMIT."""
    return 1 + 3 * chunks(hw) + 2 * beats(hw)


class SelStore(wiring.Component):
    """start (pulse) with kept / ns stable until done (the pulse with the last beat's transfer)."""

    def __init__(self, hw: HardwareConfig):
        R = hw.mac_rows
        if R > 128:
            raise ValueError(f"the selection store needs mac_rows <= 128 (got {R})")
        self.hw = hw
        n = range(hw.n_max + 1)
        super().__init__({"start": In(1), "kept": In(n), "ns": In(n), "done": Out(1),
                          "mask": Out(mask_read(hw)), "o": Out(stream.Signature(beat_layout(hw)))})

    def elaborate(self, platform):
        m = Module()
        hw, R, W = self.hw, self.hw.mac_rows, self.hw.axi_bits
        n_beats = beats(hw)
        n_chunks = chunks(hw)
        window_bits = max(W, 128) + R
        window = Signal(window_bits)              # bits not yet sent, from bit 0
        filled = Signal(range(window_bits + 1))
        pushed = Signal(range(n_chunks + 1))        # chunks in the window so far
        beat = Signal(range(n_beats + 1))
        keep = Signal(R)                          # keep bits of tile `pushed`
        next_keep = Signal(R)                     # keep bits of tile `pushed` + 1 (0 past the last), registered
        upcoming = Signal(range(n_chunks + 2), name="upcoming")   # pushed + 1, and whether it is a tile:
        more = Signal(name="more_tiles")                        # registered with `pushed`
        # the mask read's address and enable from registers and the state only (upcoming is 0 in
        # IDLE), not from the window's fill compare
        m.d.comb += [self.o.payload.data.eq(window[:W]), self.o.payload.last.eq(beat == n_beats - 1),
                     self.mask.tile.eq(upcoming)]
        with m.FSM() as fsm:
            with m.State("IDLE"):
                m.d.comb += self.mask.en.eq(self.start)
                with m.If(self.start):
                    m.d.sync += [window.eq(self.kept | (self.ns << 32)), filled.eq(128),
                                 pushed.eq(0), upcoming.eq(1), more.eq(1 < hw.tiles), beat.eq(0)]
                    m.next = "FIRST"
            with m.State("FIRST"):
                m.d.sync += keep.eq(self.mask.keep)
                m.next = "NEXT"
            with m.State("NEXT"):
                m.d.comb += self.mask.en.eq(more)      # harmless when EMIT comes first: read again after it
                with m.If((filled >= W) | (pushed == n_chunks)):
                    m.next = "EMIT"
                with m.Else():
                    m.next = "TAKE"
            with m.State("TAKE"):                    # the mask into a register before the window's shifter
                m.d.sync += next_keep.eq(Mux(more, self.mask.keep, 0))
                m.next = "PUSH"
            with m.State("PUSH"):
                chunk = Cat(keep[1:], next_keep[0])      # tokens pushed R + 1 .. pushed R + R
                m.d.sync += [window.eq(window | (chunk << filled)), filled.eq(filled + R), keep.eq(next_keep),
                             pushed.eq(upcoming), upcoming.eq(upcoming + 1), more.eq(upcoming + 1 < hw.tiles)]
                m.next = "NEXT"
            with m.State("EMIT"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    m.d.sync += [window.eq(window >> W), filled.eq(Mux(filled > W, filled - W, 0)), beat.eq(beat + 1)]
                    with m.If(beat == n_beats - 1):
                        m.d.comb += self.done.eq(1)
                        m.d.sync += upcoming.eq(0)
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "NEXT"
        fsm.state.attrs["max_fanout"] = 16           # decoded by the enables of the window's bits
        return m
