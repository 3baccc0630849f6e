"""The ranking of a top-k DECIDE (golden/interp.py Machine.op_decide, mode 1): the candidates,
rows 1..ns of the score buffer SB (ns = rows - 1), by score descending, ties to the lower row;
the first k are kept.

Each candidate i counts the candidates ranked before it,

    rank_i = #{j in 1..ns : s_j > s_i  or  (s_j = s_i and j < i)},

reading SB one tile a cycle and comparing its R lanes with s_i at once (R comparators, no
sorting network). rank_i is the candidate's place in the order: `write_order` stores
order[rank_i] = i (COMPACT's rank order reads it), `write_keep` its keep bit rank_i < k. Ranks of
distinct candidates differ, so the order is a permutation and exactly k are kept.

Per candidate: CAPTURE s_i, SCAN T tiles, then the last tile's compares, count and add (LAST,
COUNT, ADD), PLACE (which also reads s_(i+1)). Cycles from `start` to `done`: ns (T + 5) + 1
with T = tiles_of(rows, R) (rtl_gen/tools/cycles.py).
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.hw import HardwareConfig
from golden.isa import SCORE_BITS

from ..buffers import ports
from ..buffers.scores import score_read
from ..primitives.arith import tree_sum
from .state import keep_write, order_write


class TopK(wiring.Component):
    def __init__(self, hw: HardwareConfig):
        self.hw = hw
        n = range(hw.n_max + 1)
        super().__init__({"start": In(1), "done": Out(1), "rows": In(n), "k": In(n),
                          "sb": Out(score_read(hw)), "write_keep": Out(keep_write(hw)),
                          "write_order": Out(order_write(hw))})

    def elaborate(self, platform):
        m = Module()
        hw, R = self.hw, self.hw.mac_rows
        bits = ports.lane_bits(R)
        # rows (stable from start on) registered: the candidates are 1..rows - 1
        rows, last_tile = Signal.like(self.rows, name="rows_q"), Signal(range(hw.tiles), name="last_tile")
        m.d.sync += [rows.eq(self.rows), last_tile.eq(ports.tiles_of(self.rows, R) - 1)]
        cand = Signal(range(hw.n_max + 1), name="cand", attrs={"max_fanout": 64})   # candidate i
        own = Signal(signed(SCORE_BITS))            # s_i
        tile = Signal(range(hw.tiles + 1))          # next SB tile to read
        arriving = Signal()
        rank = Signal(range(hw.n_max + 1))
        lane_of_cand = cand[:bits] if bits else Const(0, 1)
        # the row compares of the tile being read, registered beside its read: which lanes j are
        # candidates (1 <= j < rows) and which lie below i (j < i)
        candidate, below = Signal(R, name="lane_candidate"), Signal(R, name="lane_below_cand")
        m.d.sync += [candidate.eq(Cat((tile * R + r >= 1) & (tile * R + r < rows) for r in range(R))),
                     below.eq(Cat(tile * R + r < cand for r in range(R)))]
        # the tile read last cycle: which of its lanes rank before i (registered, `hits`: the
        # score compares and the registered row bits), then their count, then the add to the rank
        hits, counting = Signal(R), Signal()
        m.d.sync += [arriving.eq(0), counting.eq(arriving)]
        with m.If(arriving):
            before = []
            for r in range(R):
                s = self.sb.data[r]
                before.append(candidate[r] & ((s > own) | ((s == own) & below[r])))
            m.d.sync += hits.eq(Cat(before))
        count, adding = Signal(range(R + 1), name="hit_count_q"), Signal()       # then counted, then added
        m.d.sync += adding.eq(counting)
        with m.If(counting):
            m.d.sync += count.eq(tree_sum(list(hits), "hit_count", m))
        with m.If(adding):
            m.d.sync += rank.eq(rank + count)
        # i + 1 and whether i is the last candidate, registered (used in PLACE, T + 5 cycles on)
        next_cand, final = Signal.like(cand, name="next_cand"), Signal(name="final_cand")
        m.d.sync += [next_cand.eq(cand + 1), final.eq(cand + 1 >= rows)]
        # the order write is registered (PLACE sets it): it lands a cycle after PLACE, long before
        # the next operation (COMPACT in rank order) reads the order
        m.d.sync += self.write_order.en.eq(0)
        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += cand.eq(1)
                    m.next = "FETCH"
            with m.State("FETCH"):                  # s_i
                with m.If(cand >= rows):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += [self.sb.tile.eq(cand >> bits), self.sb.en.eq(1)]
                    m.next = "CAPTURE"
            with m.State("CAPTURE"):
                lane_score = Signal(signed(SCORE_BITS))
                m.d.comb += lane_score.eq(ports.lane_select(self.sb.data, lane_of_cand, SCORE_BITS, R))
                m.d.sync += [own.eq(lane_score), tile.eq(0), rank.eq(0)]
                m.next = "SCAN"
            with m.State("SCAN"):                   # one SB tile a cycle
                m.d.comb += [self.sb.tile.eq(tile), self.sb.en.eq(1)]
                m.d.sync += [arriving.eq(1), tile.eq(tile + 1)]
                with m.If(tile == last_tile):
                    m.next = "LAST"
            with m.State("LAST"):                   # the last tile arrives
                m.next = "COUNT"
            with m.State("COUNT"):                  # its hits are counted
                m.next = "ADD"
            with m.State("ADD"):                    # and added to the rank
                m.next = "PLACE"
            with m.State("PLACE"):                  # i placed; s_(i+1) read (FETCH of the next candidate)
                m.d.sync += [self.write_order.rank.eq(rank), self.write_order.token.eq(cand),
                             self.write_order.en.eq(1)]     # registered: the order RAM's write address
                m.d.comb += [self.write_keep.tile.eq(cand >> bits), self.write_keep.data.eq(Mux(rank < self.k, -1, 0)),
                             self.write_keep.en.eq(Const(1, R) << lane_of_cand if bits else 1)]
                m.d.sync += cand.eq(next_cand)
                with m.If(final):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += [self.sb.tile.eq(next_cand >> bits), self.sb.en.eq(1)]
                    m.next = "CAPTURE"
        fsm.state.attrs["max_fanout"] = 16           # decoded by the selection state's write address
        return m
