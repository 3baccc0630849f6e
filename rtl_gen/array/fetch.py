"""Operand fetch and drain around the MAC array (shared by MATMUL and ATTENTION).

Fetch: a sequencer sends one request per MAC beat (where to read A and B for one k, first/last
of a tile, and the tile's drain info on its last beat). A request is taken when a credit says
its beat will find room in the operand FIFO; its reads are issued then (buffer-fabric ports,
ports.READ_LATENCY cycles; the probability bank and the weight ring answer in one, so their data
passes READ_LATENCY - 1 registers), so both operands arrive together
READ_LATENCY cycles after the request and go into the FIFO. The MAC array takes beats from the
FIFO; nothing waits on the array combinationally, so the reads never stall.

    A: a token buffer word (tile, channel) or a probability-bank word (bank, key)
    B: a weight row of the weight ring, a key-buffer word, or a value-bank word

Drain: the array's columns leave one per beat; the info of the tile at the head of a small FIFO
(pushed when its last beat entered the array) gives every column its context for the epilogue,
computed into registers. A beat for the softmax unit (scores) leaves only with a credit for the
epilogue's score FIFO (Epilogue.sm_free), so the epilogue never stalls.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.hw import HardwareConfig

from ..buffers import ports
from ..buffers.weight_ring import drain_port, issue_port
from ..primitives.arith import ACC_BITS
from ..primitives.fifo import RamFifo
from .epilogue import DEST_SM, DEST_TOK, SM_DEPTH, beat_layout
from .mac import ab_layout, acc_layout

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
        "k_ch": range(hw.d_max), "v_token": range(hw.tiles * hw.mac_rows),
        "v_grp": range(max(hw.d_max // hw.mac_cols, 1)), "first": 1, "last": 1, "info": info_layout(hw)})


def prob_read(hw: HardwareConfig) -> wiring.Signature:
    """Probability bank read (unit side): bank, key -> R lanes (queries of the tile)."""
    return wiring.Signature({"bank": Out(1), "key": Out(range(hw.n_max)), "en": Out(1),
                             "data": In(ports.lanes(hw.mac_rows))})


def beat_fifo_layout(hw: HardwareConfig) -> data.StructLayout:
    return data.StructLayout({"ab": ab_layout(hw.mac_rows, hw.mac_cols), "info": info_layout(hw)})


# operand FIFO: the credit loop (request -> data -> FIFO -> MAC -> credit, READ_LATENCY + 4
# cycles) at one beat per cycle; a power of two (RamFifo)
FETCH_DEPTH = 1 << (ports.READ_LATENCY + 3).bit_length()
# a request taken -> its beat offered to the MAC array (reads, FIFO write, FIFO read)
ISSUE_LATENCY = ports.READ_LATENCY + 2
DRAIN_STAGES = 2         # a column on the MAC array's output -> its beat offered to the epilogue


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
        hw, q = self.hw, self.req.payload
        lat = ports.READ_LATENCY
        m.submodules.fifo = fifo = RamFifo(beat_fifo_layout(hw).size, FETCH_DEPTH, spare=True)
        # credits: FIFO places not yet promised to a request (a freed place returns a cycle later)
        credits = Signal(range(FETCH_DEPTH + 1), init=FETCH_DEPTH)
        can = Signal(init=1)
        freed = Signal()
        go = Signal()
        m.d.comb += [self.req.ready.eq(can), go.eq(self.req.valid & can)]
        # the next credits for both outcomes of a request, from registers: the request (the
        # sequencer's FSM) only selects
        back = Signal.like(credits)
        m.d.comb += back.eq(credits + freed)
        m.d.sync += [credits.eq(Mux(go, back - 1, back)), can.eq(Mux(go, back != 1, back != 0)),
                     freed.eq(fifo.o.valid & fifo.o.ready)]
        # reads, all now: the buffer fabric's answer in lat cycles; the one-cycle memories'
        # (probability bank, weight ring) through lat - 1 registers, so every answer comes with
        # its tag. Not their requests later: the ring changes its issue slot, and ATTENTION frees
        # the probability bank, when the sequencer's last request of it is taken
        m.d.comb += [
            self.ra.buf.eq(q.a_buf), self.ra.tile.eq(q.a_tile), self.ra.ch.eq(q.a_ch),
            self.ra.en.eq(go & (q.a_src == A_TOK)),
            self.kr.ktile.eq(q.k_tile), self.kr.ch.eq(q.k_ch), self.kr.en.eq(go & (q.b_src == B_KEY)),
            self.vr.token.eq(q.v_token), self.vr.grp.eq(q.v_grp), self.vr.en.eq(go & (q.b_src == B_VALUE)),
            self.pr.bank.eq(q.p_bank), self.pr.key.eq(q.p_key), self.pr.en.eq(go & (q.a_src == A_PROB)),
            self.wr.addr.eq(q.w_addr), self.wr.en.eq(go & (q.b_src == B_WEIGHT)),
        ]
        prob = ports.delayed(m, self.pr.data, lat - 1, "prob")
        weight = ports.delayed(m, self.wr.data, lat - 1, "weight")
        # the beat's tag travels beside its reads
        tag = data.StructLayout({"valid": 1, "a_src": 1, "b_src": 2, "first": 1, "last": 1, "info": info_layout(hw)})
        stages = [Signal(tag, name=f"tag{i}") for i in range(lat)]
        m.d.sync += [stages[0].valid.eq(go), stages[0].a_src.eq(q.a_src), stages[0].b_src.eq(q.b_src),
                     stages[0].first.eq(q.first), stages[0].last.eq(q.last), stages[0].info.eq(q.info)]
        m.d.sync += [stages[i].eq(stages[i - 1]) for i in range(1, lat)]
        t = stages[-1]
        w = data.View(beat_fifo_layout(hw), fifo.i.payload)
        m.d.comb += [fifo.i.valid.eq(t.valid),
                     w.ab.a.eq(Mux(t.a_src == A_PROB, prob, self.ra.data)),
                     w.ab.b.eq(Mux(t.b_src == B_KEY, self.kr.data,
                                   Mux(t.b_src == B_VALUE, self.vr.data, weight))),
                     w.ab.first.eq(t.first), w.ab.last.eq(t.last), w.info.eq(t.info)]
        # out of the FIFO into the MAC array; the tile's info leaves with its last beat (the
        # drain's info FIFO always has room: it is as deep as the tiles the array can hold)
        r = data.View(beat_fifo_layout(hw), fifo.o.payload)
        m.d.comb += [self.o_ab.valid.eq(fifo.o.valid), self.o_ab.payload.eq(r.ab), fifo.o.ready.eq(self.o_ab.ready),
                     self.o_info.payload.eq(r.info),
                     self.o_info.valid.eq(fifo.o.valid & self.o_ab.ready & r.ab.last),
                     self.idle.eq(~fifo.o.valid & (credits == FETCH_DEPTH) & ~Cat(s.valid for s in stages).any())]
        return m


def drain_cfg_layout(hw: HardwareConfig) -> data.StructLayout:
    """Per operation: the MATMUL output and epilogue factors, ATTENTION's factors."""
    return data.StructLayout({"mm_dest": 2, "mm_buf": 2, "mm_mult": 17, "mm_shift": signed(8), "o_buf": 2,
                              "scale": 17, "s_shift": signed(8), "o_shift": signed(8),
                              "n": range(hw.n_max + 1)})


class Drain(wiring.Component):
    """MAC columns + tile info -> epilogue beats with their context, in two register stages
    (the column's place in its tile; then its channel, bounds and bias). The epilogue never
    stalls: a score beat leaves only with a credit for its FIFO (`sm_free` returns them)."""

    def __init__(self, hw: HardwareConfig):
        self.hw = hw
        super().__init__({
            "i_acc": In(stream.Signature(acc_layout(hw.mac_rows))),
            "i_info": In(stream.Signature(info_layout(hw))),
            "cfg": In(drain_cfg_layout(hw)),
            "ring": Out(drain_port(hw)),
            "o": Out(stream.Signature(beat_layout(hw))),
            "sm_free": In(2),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        hw, C = self.hw, self.hw.mac_cols
        # the tile infos, each with its "score tile" bit decoded on the way in: the MAC array's
        # ready (`can`, into all its capture registers) is one LUT of registers
        head = data.StructLayout({"info": info_layout(hw), "score": 1})
        m.submodules.infos = infos = fifo.SyncFIFOBuffered(width=head.size, depth=4)
        m.d.comb += [infos.w_data.eq(Cat(self.i_info.payload.as_value(), self.i_info.payload.kind == KIND_SCORE)),
                     infos.w_en.eq(self.i_info.valid), self.i_info.ready.eq(infos.w_rdy)]
        at_head = data.View(head, infos.r_data)                   # the tile at the head of the FIFO
        info = at_head.info
        col = Signal(range(C))
        cfg = self.cfg
        credits = Signal(range(SM_DEPTH + 1), init=SM_DEPTH)
        credit = Signal(init=1)
        score = at_head.score
        can = infos.r_rdy & (~score | credit)
        take = self.i_acc.valid & can
        m.d.comb += [self.i_acc.ready.eq(can), infos.r_en.eq(take & (col == C - 1)),
                     self.ring.release.eq(take & (col == C - 1) & (info.kind == KIND_MM) & info.release)]
        with m.If(take):
            m.d.sync += col.eq(Mux(col == C - 1, 0, col + 1))
        # the next credits for both outcomes of a take, from registers; the take (late: the tile
        # info's kind and the MAC array's valid) only selects
        returned = Signal.like(credits)
        m.d.comb += returned.eq(credits + self.sm_free)
        took = take & score
        m.d.sync += [credits.eq(Mux(took, returned - 1, returned)), credit.eq(Mux(took, returned != 1, returned != 0))]

        # stage 1: the column, its tile, its place in the keys (scores: key0 + col < n)
        s1 = Signal(data.StructLayout({"valid": 1, "acc": data.ArrayLayout(signed(ACC_BITS), hw.mac_rows),
                                       "kind": 2, "tile": range(hw.tiles), "ch0": range(hw.k_max + C),
                                       "cols": range(C + 1), "slot": 1,
                                       "keys": signed((hw.n_max + 1).bit_length() + 1)}),
                    name="drain1")
        col1 = Signal(range(C), name="drain1_col", attrs={"max_fanout": 64})
        m.d.sync += [s1.valid.eq(take), s1.acc.eq(self.i_acc.payload.acc), s1.kind.eq(info.kind),
                     s1.tile.eq(info.tile), s1.ch0.eq(info.ch0), s1.cols.eq(info.cols), s1.slot.eq(self.ring.slot),
                     s1.keys.eq(cfg.n - info.key0), col1.eq(col)]
        # stage 2: the beat
        bias = Signal(signed(ACC_BITS))
        with m.Switch(Cat(col1, s1.slot)):
            for sl in range(2):
                for c in range(C):
                    with m.Case(sl * C + c):
                        m.d.comb += bias.eq(self.ring.bias[sl][c])
        mm, sc = s1.kind == KIND_MM, s1.kind == KIND_SCORE
        ctx = self.o.payload.ctx
        m.d.sync += [
            self.o.valid.eq(s1.valid), self.o.payload.acc.eq(s1.acc),
            ctx.dest.eq(Mux(mm, cfg.mm_dest, Mux(sc, DEST_SM, DEST_TOK))),
            ctx.buf.eq(Mux(mm, cfg.mm_buf, cfg.o_buf)),
            ctx.tile.eq(s1.tile), ctx.ch.eq(s1.ch0 + col1),
            ctx.ok.eq(Mux(sc, col1 < s1.keys, col1 < s1.cols)), ctx.last.eq(col1 == s1.keys - 1),
            ctx.bias.eq(Mux(mm, bias, 0)),
            ctx.mult.eq(Mux(mm, cfg.mm_mult, Mux(sc, cfg.scale, 1))),
            ctx.shift.eq(Mux(mm, cfg.mm_shift, Mux(sc, cfg.s_shift, cfg.o_shift))),
        ]
        m.d.comb += self.idle.eq(~infos.r_rdy & ~self.i_acc.valid & ~s1.valid & ~self.o.valid)
        return m
