"""Operand fetch and drain around the MAC array (shared by MATMUL and ATTENTION).

Fetch: a sequencer sends one request per MAC beat (where to read A and B for one k, first/last
of a tile, and the tile's drain info on its last beat). Reads are issued in the cycle the request
is taken and their data, one cycle later, goes to the MAC array; both stages advance together,
so a stalled array holds the block-RAM outputs (no read enable while stalled).

    A: a token buffer word (tile, channel) or a probability-bank word (bank, key)
    B: a weight row of the weight ring, a key-buffer word, or a value-bank word

Drain: the array's columns leave one per beat; the info of the tile at the head of a small FIFO
(pushed when its last beat was issued) gives every column its context for the epilogue.
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.hw import HardwareConfig

from ..buffers import ports
from .epilogue import DEST_SM, DEST_TOK, beat_layout
from .mac import ab_layout, acc_layout
from ..buffers.weight_ring import drain_port, issue_port

A_TOK, A_PROB = range(2)
B_WEIGHT, B_KEY, B_VALUE = range(3)
KIND_MM, KIND_SCORE, KIND_PV = range(3)


def info_layout(hw: HardwareConfig) -> data.StructLayout:
    """What the drain needs to know about one tile."""
    return data.StructLayout({"kind": 2, "tile": range(hw.tiles), "ch0": range(hw.k_max + hw.mac_cols),
                              "cols": range(hw.mac_cols + 1), "key0": range(hw.key_tiles * hw.mac_cols + 1),
                              "release": 1})


def req_layout(hw: HardwareConfig) -> data.StructLayout:
    return data.StructLayout({
        "a_src": 1, "a_buf": 2, "a_tile": range(hw.tiles), "a_ch": range(hw.k_max), "p_bank": 1,
        "p_key": range(hw.n_max), "b_src": 2, "w_addr": range(hw.k_max), "k_tile": range(hw.key_tiles),
        "k_ch": range(hw.d_max), "v_token": range(hw.tiles * hw.mac_rows), "v_grp": range(max(hw.d_max // hw.mac_cols, 1)),
        "first": 1, "last": 1, "info": info_layout(hw)})


def prob_read(hw: HardwareConfig) -> wiring.Signature:
    """Probability bank read (unit side): bank, key -> R lanes (queries of the tile)."""
    return wiring.Signature({"bank": Out(1), "key": Out(range(hw.n_max)), "en": Out(1),
                             "data": In(ports.lanes(hw.mac_rows))})


class Fetch(wiring.Component):
    def __init__(self, hw: HardwareConfig):
        self.hw = hw
        super().__init__({
            "req": In(stream.Signature(req_layout(hw))),
            "ra": Out(ports.tok_read(hw)), "kr": Out(ports.key_read(hw)), "vr": Out(ports.val_read(hw)),
            "wr": Out(issue_port(hw)), "pr": Out(prob_read(hw)),
            "o_ab": Out(stream.Signature(ab_layout(hw.mac_rows, hw.mac_cols))),
            "o_info": Out(stream.Signature(info_layout(hw))),     # one per tile, when its last beat is taken
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        q = self.req.payload
        data_valid = self.o_ab.valid           # the reads issued last cycle: their data is there
        a_src, b_src, first, last = Signal(), Signal(2), Signal(), Signal()
        info = Signal(info_layout(self.hw))
        advance = Signal()
        m.d.comb += [advance.eq(~data_valid | self.o_ab.ready), self.req.ready.eq(advance), self.idle.eq(~data_valid)]
        go = advance & self.req.valid
        m.d.comb += [
            self.ra.buf.eq(q.a_buf), self.ra.tile.eq(q.a_tile), self.ra.ch.eq(q.a_ch),
            self.ra.en.eq(go & (q.a_src == A_TOK)),
            self.pr.bank.eq(q.p_bank), self.pr.key.eq(q.p_key), self.pr.en.eq(go & (q.a_src == A_PROB)),
            self.wr.addr.eq(q.w_addr), self.wr.en.eq(go & (q.b_src == B_WEIGHT)),
            self.kr.ktile.eq(q.k_tile), self.kr.ch.eq(q.k_ch), self.kr.en.eq(go & (q.b_src == B_KEY)),
            self.vr.token.eq(q.v_token), self.vr.grp.eq(q.v_grp), self.vr.en.eq(go & (q.b_src == B_VALUE)),
        ]
        with m.If(advance):
            m.d.sync += [data_valid.eq(self.req.valid), a_src.eq(q.a_src), b_src.eq(q.b_src), first.eq(q.first),
                         last.eq(q.last), info.eq(q.info)]
        ab = self.o_ab.payload
        m.d.comb += [ab.a.eq(Mux(a_src == A_PROB, self.pr.data, self.ra.data)),
                     ab.b.eq(Mux(b_src == B_KEY, self.kr.data, Mux(b_src == B_VALUE, self.vr.data, self.wr.data))),
                     ab.first.eq(first), ab.last.eq(last)]
        # tile info leaves with the tile's last beat (the FIFO behind always has room: it is as
        # deep as the tiles the array can hold)
        m.d.comb += [self.o_info.payload.eq(info), self.o_info.valid.eq(data_valid & last & self.o_ab.ready)]
        return m


def drain_cfg_layout(hw: HardwareConfig) -> data.StructLayout:
    """Per operation: the MATMUL output and epilogue factors, ATTENTION's factors."""
    return data.StructLayout({"mm_dest": 2, "mm_buf": 2, "mm_mult": 17, "mm_shift": signed(8), "o_buf": 2,
                              "scale": 17, "s_shift": signed(8), "o_shift": signed(8),
                              "n": range(hw.n_max + 1)})


class Drain(wiring.Component):
    """MAC columns + tile info -> epilogue beats with their context."""

    def __init__(self, hw: HardwareConfig):
        self.hw = hw
        super().__init__({
            "i_acc": In(stream.Signature(acc_layout(hw.mac_rows))),
            "i_info": In(stream.Signature(info_layout(hw))),
            "cfg": In(drain_cfg_layout(hw)),
            "ring": Out(drain_port(hw)),
            "o": Out(stream.Signature(beat_layout(hw))),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        hw, C = self.hw, self.hw.mac_cols
        m.submodules.infos = infos = fifo.SyncFIFOBuffered(width=info_layout(hw).size, depth=4)
        m.d.comb += [infos.w_data.eq(self.i_info.payload), infos.w_en.eq(self.i_info.valid),
                     self.i_info.ready.eq(infos.w_rdy)]
        info = data.View(info_layout(hw), infos.r_data)          # the tile at the head of the FIFO
        col = Signal(range(C))
        cfg, ctx = self.cfg, self.o.payload.ctx
        take = self.i_acc.valid & infos.r_rdy & self.o.ready
        m.d.comb += [self.o.valid.eq(self.i_acc.valid & infos.r_rdy), self.i_acc.ready.eq(self.o.ready & infos.r_rdy),
                     self.o.payload.acc.eq(self.i_acc.payload.acc),
                     infos.r_en.eq(take & (col == C - 1)), self.idle.eq(~infos.r_rdy & ~self.i_acc.valid)]
        with m.If(take):
            m.d.sync += col.eq(Mux(col == C - 1, 0, col + 1))
        bias = Signal.like(ctx.bias)
        slot = self.ring.slot
        with m.Switch(Mux(slot, C, 0) + col):
            for s in range(2):
                for c in range(C):
                    with m.Case(s * C + c):
                        m.d.comb += bias.eq(self.ring.bias[s][c])
        key = info.key0 + col
        mm, score = info.kind == KIND_MM, info.kind == KIND_SCORE
        m.d.comb += [
            ctx.dest.eq(Mux(mm, cfg.mm_dest, Mux(score, DEST_SM, DEST_TOK))),
            ctx.buf.eq(Mux(mm, cfg.mm_buf, cfg.o_buf)),
            ctx.tile.eq(info.tile), ctx.ch.eq(info.ch0 + col),
            ctx.ok.eq(Mux(score, key < cfg.n, col < info.cols)), ctx.last.eq(key == cfg.n - 1),
            ctx.bias.eq(Mux(mm, bias, 0)),
            ctx.mult.eq(Mux(mm, cfg.mm_mult, Mux(score, cfg.scale, 1))),
            ctx.shift.eq(Mux(mm, cfg.mm_shift, Mux(score, cfg.s_shift, cfg.o_shift))),
            self.ring.release.eq(take & (col == C - 1) & mm & info.release),
        ]
        return m
