"""Epilogue of the MAC array: one drained column (mac_rows 48-bit sums of one output channel)
per beat becomes int16 outputs, in a five-stage pipeline that advances together:

    1  p = (acc + bias) * mult                         (bias and mult travel with the beat)
    2  y = requant(p, shift)                            (runtime signed shift)
    3-5 PWL (primitives/pwl.py PwlEval, latency 3)     (when `act`); the residual word is read
    5  y = add_shifted(residual, sa, y, sb, so); write  (golden.arith.add_shifted)

and is written to a token buffer, the key buffer, the value banks, or sent to the softmax unit
(scores), as the beat's context says. A MATMUL into the score buffer (`cfg.to_sb`) writes the
bare acc + bias of stage 1 to SB instead (its mult is 1: golden/isa.py CHECKS), no token word.
Rows at or above `rows` are never written. The pipeline
only stalls when the softmax unit does (ATTENTION, which has no activation, so the free-running
PWL lanes never hold a beat that a stall could misalign); `idle` says no beat is in flight.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.hw import HardwareConfig

from ..buffers import ports
from ..primitives.arith import add_shifted, requant_sv
from ..buffers.ports import lanes
from ..buffers.scores import score_write
from ..primitives.pwl import PwlEval, geometry_layout, table_read

ACC_BITS = 48
# where a beat goes
DEST_TOK, DEST_KB, DEST_VB, DEST_SM = range(4)


def ctx_layout(hw: HardwareConfig) -> data.StructLayout:
    return data.StructLayout({"dest": 2, "buf": 2, "tile": range(hw.tiles), "ch": range(hw.k_max), "ok": 1,
                              "last": 1, "bias": signed(ACC_BITS), "mult": 17, "shift": signed(8)})


def beat_layout(hw: HardwareConfig) -> data.StructLayout:
    return data.StructLayout({"acc": data.ArrayLayout(signed(ACC_BITS), hw.mac_rows), "ctx": ctx_layout(hw)})


def config_layout(hw: HardwareConfig) -> data.StructLayout:
    """Held for a whole operation."""
    return data.StructLayout({"act": 1, "pwl": geometry_layout(), "to_sb": 1, "res": 1, "r_buf": 2, "sa": 6, "sb": 6,
                              "so": signed(8), "rows": range(hw.n_max + 1),
                              "row0": 1, "sa0": 6, "sb0": 6, "so0": signed(8)})     # token row 0's own alignment


class Epilogue(wiring.Component):
    def __init__(self, hw: HardwareConfig):
        self.hw = hw
        R = hw.mac_rows
        super().__init__({
            "i": In(stream.Signature(beat_layout(hw))),
            "cfg": In(config_layout(hw)),
            "table": Out(table_read(hw)).array(R),
            "rb": Out(ports.tok_read(hw)),
            "w": Out(ports.tok_write(hw)),
            "kw": Out(ports.key_write(hw)),
            "vw": Out(ports.val_write(hw)),
            "sw": Out(score_write(hw)),
            "o_s": Out(stream.Signature(data.StructLayout({"s": lanes(R), "last": 1}))),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        hw, R = self.hw, self.hw.mac_rows
        cfg = self.cfg
        ctx = [Signal(ctx_layout(hw), name=f"ctx{k}") for k in range(6)]
        v = [Signal(name=f"v{k}") for k in range(6)]
        p1 = [Signal(signed(ACC_BITS + 18), name=f"p1_{r}") for r in range(R)]
        y2 = [Signal(signed(16), name=f"y2_{r}") for r in range(R)]
        y3 = [Signal(signed(16), name=f"y3_{r}") for r in range(R)]
        y4 = [Signal(signed(16), name=f"y4_{r}") for r in range(R)]

        # ------------------------------------------------ handshakes (all stages advance together)
        out_sm = ctx[5].dest == DEST_SM
        en = Signal()
        m.d.comb += [en.eq(~v[5] | ~out_sm | self.o_s.ready), self.i.ready.eq(en),
                     self.idle.eq(~(v[1] | v[2] | v[3] | v[4] | v[5]))]
        with m.If(en):
            m.d.sync += [v[1].eq(self.i.valid), ctx[1].eq(self.i.payload.ctx)]
            m.d.sync += [v[k].eq(v[k - 1]) for k in range(2, 6)] + [ctx[k].eq(ctx[k - 1]) for k in range(2, 6)]

        # ------------------------------------------------ per lane
        res = self.rb.data
        c4 = ctx[4]
        m.d.comb += [self.rb.buf.eq(cfg.r_buf), self.rb.tile.eq(c4.tile), self.rb.ch.eq(c4.ch),
                     self.rb.en.eq(en & v[4] & cfg.res)]
        y5, scores = [], []
        for r in range(R):
            acc = self.i.payload.acc[r]
            yq = requant_sv(m, p1[r], ctx[1].shift, name=f"rq{r}")
            m.submodules[f"pwl{r}"] = pwl = PwlEval(hw, 16)
            wiring.connect(m, pwl.table, wiring.flipped(self.table[r]))
            m.d.comb += [pwl.geo.eq(cfg.pwl), pwl.x.eq(y2[r])]
            y5r = Signal(signed(16), name=f"y5_{r}")
            with m.If(en):
                m.d.sync += [p1[r].eq((acc + self.i.payload.ctx.bias) * self.i.payload.ctx.mult), y2[r].eq(yq),
                             y3[r].eq(y2[r]), y4[r].eq(y3[r]), y5r.eq(y4[r])]
            scores.append(y5r)
            y = Signal(signed(16), name=f"yact_{r}")
            m.d.comb += y.eq(Mux(cfg.act, pwl.y, y5r))
            if r == 0:                         # token row 0 (CLS) may add in its own formats
                own = cfg.row0 & (ctx[5].tile == 0)
                ys = add_shifted(m, res[r], Mux(own, cfg.sa0, cfg.sa), y, Mux(own, cfg.sb0, cfg.sb),
                                 Mux(own, cfg.so0, cfg.so), name=f"res{r}")
            else:
                ys = add_shifted(m, res[r], cfg.sa, y, cfg.sb, cfg.so, name=f"res{r}")
            y5.append(Mux(cfg.res, ys, y))
        self._write(m, ctx[5], v[5], en, y5, scores)
        c1 = ctx[1]
        m.d.comb += [self.sw.tile.eq(c1.tile), self.sw.data.eq(Cat(p[:ACC_BITS] for p in p1)),
                     self.sw.en.eq(Mux(en & v[1] & cfg.to_sb & c1.ok & (c1.dest == DEST_TOK),
                                       ports.rows_mask(m, cfg.rows, c1.tile, hw, name="sb_rows"), 0))]
        return m

    def _write(self, m, c, valid, en, y, scores):
        """The last stage: write y (R lanes) where the context says (only rows < rows). Scores
        (requantised, never activated or residual-added: ATTENTION sets neither) go to the
        softmax unit, offered whether or not it is ready (stream rule 3: valid must not follow
        ready) and held by the stalled pipeline until taken."""
        hw, R, C = self.hw, self.hw.mac_rows, self.hw.mac_cols
        G = C // R
        go = valid & en
        rows = ports.rows_mask(m, self.cfg.rows, c.tile, hw)
        yv = Signal(lanes(R), name="y_out")
        m.d.comb += [yv.eq(Cat(y)), self.o_s.payload.s.eq(Cat(scores)), self.o_s.payload.last.eq(c.last),
                     self.o_s.valid.eq(valid & c.ok & (c.dest == DEST_SM))]
        w, kw, vw = self.w, self.kw, self.vw
        m.d.comb += [w.buf.eq(c.buf), w.tile.eq(c.tile), w.ch.eq(c.ch), w.data.eq(yv),
                     w.en.eq(Mux(go & c.ok & (c.dest == DEST_TOK) & ~self.cfg.to_sb, rows, 0)),
                     vw.tile.eq(c.tile), vw.ch.eq(c.ch), vw.data.eq(yv),
                     vw.en.eq(Mux(go & c.ok & (c.dest == DEST_VB), rows, 0)),
                     kw.ch.eq(c.ch), kw.data.eq(Cat(yv for _ in range(G)))]
        gb = (G - 1).bit_length()
        m.d.comb += kw.ktile.eq(c.tile >> gb)
        grp = c.tile[:gb] if gb else 0
        m.d.comb += kw.en.eq(Mux(go & c.ok & (c.dest == DEST_KB), rows << (grp * R if gb else 0), 0))
