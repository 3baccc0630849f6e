"""ATTENTION sequencer: per head h, O_h = requant(softmax(requant_mul(Q_h K_h^T)) V_h), on the
MAC array with the softmax unit and two probability banks.

Items i = (query tile t, head h), t outer, L = T H items.
    SCORE(i)  for each key tile u: K = head_dim beats, A = Q[t, h dh + j], B = K[u, h dh + j];
              the drained columns of keys < N go through the epilogue (scale, s_shift) to the
              softmax unit, whose probabilities fill bank i % 2 (key by key)
    PV(i)     for each channel group pc of the head: K = N beats, A = P[bank, n], B = V[n, pc];
              the drained columns (requant by o_shift) are written to O[t, h dh + pc C + c]
Issued as S0 S1 PV0 S2 PV1 ... S(L-1) PV(L-2) PV(L-1): the softmax of item i works while the
array runs PV(i-1) and S(i+1). PV(i) waits until bank i % 2 holds item i's probabilities.
With `score`, the softmax's first H items (query tile 0, heads 0..H-1) also go out on `cap`, lane
0's 23-bit CLS probability per key, to the score capture (rtl_gen/array/score_capture.py).
"""
from __future__ import annotations

from amaranth.hdl import Assert, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.hw import HardwareConfig

from ..buffers.ports import lanes, tiles_of
from ..control.decode import desc_view
from ..primitives.ram import Ram
from .fetch import A_PROB, A_TOK, B_KEY, B_VALUE, KIND_PV, KIND_SCORE, prob_read, req_layout
from .score_capture import capture_layout


class AttentionSeq(wiring.Component):
    def __init__(self, hw: HardwareConfig, softmax):
        self.hw, self.softmax = hw, softmax
        R = hw.mac_rows
        super().__init__({
            "start": In(1), "desc": In(512), "rows": In(range(hw.n_max + 1)),
            "req": Out(stream.Signature(req_layout(hw))),
            "i_s": In(stream.Signature(data.StructLayout({"s": lanes(R), "last": 1}))),
            "pr": In(prob_read(hw)),
            "cap": Out(capture_layout(hw)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        hw, R = self.hw, self.hw.mac_rows
        d = desc_view("ATTENTION", self.desc)
        m.submodules.softmax = sm = self.softmax
        m.submodules.pbank = pb = Ram(16, 2 * hw.n_max, R)
        if "frac" in sm.signature.members:
            m.d.comb += sm.frac.eq(d.s_frac)
        m.d.comb += [sm.i_s.valid.eq(self.i_s.valid), sm.i_s.payload.eq(self.i_s.payload),
                     self.i_s.ready.eq(sm.i_s.ready)]
        # softmax output -> probability bank write_bank; PV reads bank read_bank
        write_bank, read_bank = Signal(), Signal()
        bank_full = Signal(2)                  # the bank holds an item's probabilities not yet used
        write_key = Signal(range(hw.n_max + 1))
        bank_filled, bank_used = Signal(), Signal()
        take = sm.o_p.valid & sm.o_p.ready
        m.d.comb += [sm.o_p.ready.eq(~bank_full.bit_select(write_bank, 1)),
                     pb.waddr.eq(Mux(write_bank, hw.n_max, 0) + write_key),
                     pb.wdata.eq(sm.o_p.payload.p), pb.wen.eq(Mux(take, -1, 0)),
                     pb.raddr.eq(Mux(self.pr.bank, hw.n_max, 0) + self.pr.key), pb.ren.eq(self.pr.en),
                     self.pr.data.eq(pb.rdata)]
        out_head = Signal(range(33))              # items of query tile 0 out so far (the head of the next)
        m.d.comb += [self.cap.valid.eq(take & d.score & (out_head < d.heads)), self.cap.key.eq(write_key),
                     self.cap.head.eq(out_head), self.cap.p.eq(sm.o_p.payload.cls)]
        with m.If(take):
            m.d.sync += write_key.eq(write_key + 1)
            with m.If(sm.o_p.payload.last):
                m.d.comb += bank_filled.eq(1)
                m.d.sync += [write_key.eq(0), write_bank.eq(~write_bank)]
                with m.If(out_head < d.heads):
                    m.d.sync += out_head.eq(out_head + 1)
        with m.If(self.start):
            m.d.sync += [write_bank.eq(0), write_key.eq(0), out_head.eq(0)]
        for b in range(2):
            with m.If(self.start):
                m.d.sync += bank_full[b].eq(0)
            with m.Elif(bank_filled & (write_bank == b)):
                m.d.sync += bank_full[b].eq(1)
            with m.Elif(bank_used & (read_bank == b)):
                m.d.sync += bank_full[b].eq(0)
        self._issue(m, d, bank_full, read_bank, bank_used, platform)
        return m

    def _issue(self, m, d, bank_full, read_bank, bank_used, platform):
        """The request sequence S0 S1 PV0 S2 PV1 ...: SCORE items (query tile, head) over key
        tiles and head channels, PV items over channel groups and keys of a filled bank."""
        hw, R, C = self.hw, self.hw.mac_rows, self.hw.mac_cols
        col_bits = (C - 1).bit_length()
        n_keys = Signal(range(hw.n_max + 1))
        q_tiles, k_tiles = Signal(range(hw.tiles + 1)), Signal(range(hw.key_tiles + 1))
        score_tile, score_head = Signal(range(hw.tiles)), Signal(range(32))      # the SCORE item
        pv_tile, pv_head = Signal(range(hw.tiles)), Signal(range(32))            # the PV item
        key_tile, dim = Signal(range(hw.key_tiles)), Signal(range(hw.d_max))     # SCORE: K beat dim of key tile
        pv_group, pv_key = Signal(range(hw.d_max // C + 1)), Signal(range(hw.n_max))   # PV: beat pv_key of group
        first_item, scores_done = Signal(), Signal()
        q = self.req.payload
        # fields ATTENTION does not use get a (harmless) live driver: a constant there would be a
        # process without inputs in the Verilog, which Icarus never runs (the bits stay X)
        m.d.comb += [q.w_addr.eq(dim), q.info.release.eq(first_item & ~first_item)]
        # the heads' first channels, head x head_dim kept as running sums (no multiplier)
        score_ch0, pv_ch0 = Signal(range(hw.d_max + 1)), Signal(range(hw.d_max + 1))
        # the state's request valid and sources as registers (set with the state): the fetch's
        # read enables are one LUT from registers, not a decode of the state behind the select
        scoring, in_pv = Signal(name="scoring"), Signal(name="in_pv")
        m.d.comb += [self.req.valid.eq(scoring | (in_pv & bank_full.bit_select(read_bank, 1))),
                     q.a_src.eq(Mux(in_pv, A_PROB, A_TOK)), q.b_src.eq(Mux(in_pv, B_VALUE, B_KEY)),
                     self.busy.eq(scoring | in_pv)]
        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [n_keys.eq(self.rows), q_tiles.eq(tiles_of(self.rows, R)),
                                 k_tiles.eq(tiles_of(self.rows, C)), score_tile.eq(0), score_head.eq(0),
                                 pv_tile.eq(0), pv_head.eq(0), key_tile.eq(0), dim.eq(0), pv_group.eq(0),
                                 pv_key.eq(0), first_item.eq(1), scores_done.eq(0), read_bank.eq(0),
                                 score_ch0.eq(0), pv_ch0.eq(0), scoring.eq(1)]
                    m.next = "SCORE"
            with m.State("SCORE"):
                m.d.comb += [q.a_buf.eq(d.q_buf), q.a_tile.eq(score_tile),
                             q.a_ch.eq(score_ch0 + dim), q.k_tile.eq(key_tile),
                             q.k_ch.eq(score_ch0 + dim), q.first.eq(dim == 0), q.last.eq(dim == d.head_dim - 1),
                             q.info.kind.eq(KIND_SCORE), q.info.tile.eq(score_tile),
                             q.info.key0.eq(key_tile << col_bits)]
                with m.If(self.req.ready):
                    m.d.sync += dim.eq(dim + 1)
                    with m.If(dim == d.head_dim - 1):
                        m.d.sync += [dim.eq(0), key_tile.eq(key_tile + 1)]
                        with m.If(key_tile == k_tiles - 1):
                            last_item = (score_head == d.heads - 1) & (score_tile == q_tiles - 1)
                            m.d.sync += [key_tile.eq(0), score_head.eq(score_head + 1), first_item.eq(0),
                                         score_ch0.eq(score_ch0 + d.head_dim)]
                            with m.If(score_head == d.heads - 1):
                                m.d.sync += [score_head.eq(0), score_tile.eq(score_tile + 1), score_ch0.eq(0)]
                            with m.If(last_item):
                                m.d.sync += scores_done.eq(1)
                            with m.If(~first_item | last_item):
                                m.d.sync += [scoring.eq(0), in_pv.eq(1)]
                                m.next = "PV"
            with m.State("PV"):
                m.d.comb += [q.p_bank.eq(read_bank), q.p_key.eq(pv_key), q.v_token.eq(pv_key),
                             q.v_grp.eq((pv_ch0 >> col_bits) + pv_group), q.first.eq(pv_key == 0),
                             q.last.eq(pv_key == n_keys - 1), q.info.kind.eq(KIND_PV), q.info.tile.eq(pv_tile),
                             q.info.ch0.eq(pv_ch0 + (pv_group << col_bits)), q.info.cols.eq(C)]
                with m.If(self.req.valid & self.req.ready):
                    m.d.sync += pv_key.eq(pv_key + 1)
                    with m.If(pv_key == n_keys - 1):
                        m.d.sync += [pv_key.eq(0), pv_group.eq(pv_group + 1)]
                        with m.If(pv_group == (d.head_dim >> col_bits) - 1):
                            pv_last = (pv_head == d.heads - 1) & (pv_tile == q_tiles - 1)
                            m.d.comb += bank_used.eq(1)
                            m.d.sync += [pv_group.eq(0), read_bank.eq(~read_bank), pv_head.eq(pv_head + 1),
                                         pv_ch0.eq(pv_ch0 + d.head_dim)]
                            with m.If(pv_head == d.heads - 1):
                                m.d.sync += [pv_head.eq(0), pv_tile.eq(pv_tile + 1), pv_ch0.eq(0)]
                            with m.If(pv_last):
                                m.d.sync += in_pv.eq(0)
                                m.next = "IDLE"
                            with m.Elif(~scores_done):
                                m.d.sync += [in_pv.eq(0), scoring.eq(1)]
                                m.next = "SCORE"
        fsm.state.attrs["max_fanout"] = 16           # decoded by the request's fields: replicated
        if platform == "formal":    # invariant for k-induction (rtl_gen/tools/formal.py)
            m.d.comb += Assert((scoring == fsm.ongoing("SCORE")) & (in_pv == fsm.ongoing("PV")),
                               "attention: scoring and in_pv are the SCORE and PV states")
