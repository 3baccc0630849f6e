"""MATMUL sequencer: o[:, o_c0:+m] = epilogue(a[:, a_c0:+k] @ W^T + b) on the MAC array.

Loops: m-tiles of mac_cols outputs (outer; one weight-ring slot each), token tiles of mac_rows
tokens, k (inner, one MAC beat each). Each tile's sums drain while the next tile accumulates, so
the array is busy k of every k cycles when k >= mac_cols and the weights arrive in time:

    cycles ~ ceil(m / C) * max(T k, weight refill) + C + pipeline,  T = ceil(rows / R)
"""
from __future__ import annotations

from amaranth.hdl import Assert, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from golden.hw import HardwareConfig

from ..buffers.ports import tiles_of
from ..control.decode import desc_view
from .fetch import A_TOK, B_WEIGHT, KIND_MM, req_layout


class MatmulSeq(wiring.Component):
    def __init__(self, hw: HardwareConfig):
        self.hw = hw
        super().__init__({
            "start": In(1), "desc": In(512), "rows": In(range(hw.n_max + 1)),
            "req": Out(stream.Signature(req_layout(hw))),
            "avail": In(1),            # weight ring: the next slot is full
            "slot_done": Out(1),       # the current slot has been issued (a cycle after its last request)
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        hw, R, C = self.hw, self.hw.mac_rows, self.hw.mac_cols
        d = desc_view("MATMUL", self.desc)
        tiles = Signal(range(hw.tiles + 1))            # token tiles (T)
        m_tiles = Signal(range(hw.k_max // C + 2))     # m-tiles of C outputs
        m_tile, tile, k = Signal.like(m_tiles), Signal(range(hw.tiles)), Signal(range(hw.k_max))
        ch0 = Signal(range(hw.k_max + C))              # first output channel of the m-tile
        left = Signal(range(hw.k_max + C))             # outputs of this and later m-tiles
        q = self.req.payload
        m.d.comb += q.eq(0)                     # fields MATMUL does not use (then overridden)
        m.d.comb += [q.a_src.eq(A_TOK), q.a_buf.eq(d.a_buf), q.a_tile.eq(tile), q.a_ch.eq(d.a_c0 + k),
                     q.b_src.eq(B_WEIGHT), q.w_addr.eq(k), q.first.eq(k == 0), q.last.eq(k == d.k - 1),
                     q.info.kind.eq(KIND_MM), q.info.tile.eq(tile), q.info.ch0.eq(ch0),
                     q.info.cols.eq(Mux(left > C, C, left)), q.info.release.eq(tile == tiles - 1)]
        # slot_done a cycle after the slot's last request, from a register (the descriptor's k
        # compare ran into the weight ring's slot flags; WAIT looks at the next slot a cycle later)
        m.d.sync += self.slot_done.eq(0)
        # the request's valid is a register (set with ISSUE): the fetch's read enables are one
        # LUT from registers, not a decode of the state behind the sequencer select
        issuing = Signal(name="issuing")
        m.d.comb += self.req.valid.eq(issuing)
        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [tiles.eq(tiles_of(self.rows, R)), m_tiles.eq(tiles_of(d.m, C)), m_tile.eq(0),
                                 tile.eq(0), k.eq(0), ch0.eq(d.o_c0), left.eq(d.m)]
                    m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(self.avail):
                    m.d.sync += issuing.eq(1)
                    m.next = "ISSUE"
            with m.State("ISSUE"):
                with m.If(self.req.ready):
                    m.d.sync += k.eq(k + 1)
                    with m.If(k == d.k - 1):
                        m.d.sync += [k.eq(0), tile.eq(tile + 1)]
                        with m.If(tile == tiles - 1):
                            m.d.sync += [self.slot_done.eq(1), issuing.eq(0)]
                            m.d.sync += [tile.eq(0), m_tile.eq(m_tile + 1), ch0.eq(ch0 + C), left.eq(left - C)]
                            m.next = "NEXT"
            with m.State("NEXT"):
                with m.If(m_tile == m_tiles):
                    m.next = "IDLE"
                with m.Else():
                    m.next = "WAIT"
        fsm.state.attrs["max_fanout"] = 16           # decoded by the request's fields: replicated
        if platform == "formal":    # invariant for k-induction (rtl_gen/tools/formal.py)
            m.d.comb += Assert(issuing == fsm.ongoing("ISSUE"), "matmul: issuing is the ISSUE state")
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        return m
