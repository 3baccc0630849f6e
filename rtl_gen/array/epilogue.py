"""Epilogue of the MAC array: one drained column (mac_rows 48-bit sums of one output channel)
per beat becomes int16 outputs in a fixed-latency pipeline that never stalls:

    s = acc + bias                                      1 stage
    p = s x mult  (two 25 x 17 DSP products, summed)    2 stages
    y = requant(p, shift)                               3 stages (runtime signed shift)
    PWL (primitives/pwl.py PwlEval)                     PWL_LATENCY stages, when `act`
    y = add_shifted(residual, sa, y, sb, so)            5 stages (the residual read before)
    write                                               1 stage

and is written to a token buffer, the key buffer, the value banks, or sent to the softmax unit
(scores, through a FIFO whose places the drain reserves by credits: `sm_free`), as the beat's
context says. A MATMUL into the score buffer (`cfg.to_sb`) writes the bare s = acc + bias of
stage 1 to SB instead (its mult is 1: golden/isa.py CHECKS), no token word. With `cfg.row0`,
token row 0 (lane 0 of tile 0: EViT's and Evo-ViT's CLS token) adds its residual in its own
alignments sa0, sb0, so0. Rows at or above `rows` are never written. Every stage is one register deep
(docs/rtl.md, "Timing budget"); `bias`, `mult` and `shift` travel with the beat, the residual
alignments and the activation geometry are the operation's (`cfg`). `idle`: no beat in flight.
"""
from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Cat, Module, Mux, Signal, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.hw import HardwareConfig
from golden.isa import ALIGN_MAX

from ..buffers import ports
from ..buffers.ports import lanes
from ..buffers.scores import score_write
from ..primitives.arith import WORD, pipe_stage, requant_sv, requant_sv_shift
from ..primitives.fifo import RamFifo, Skid
from ..primitives.pwl import DEEP_LATENCY as PWL_LATENCY, PwlEval, geometry_layout, table_read

ACC_BITS = 48
PRODUCT_BITS = ACC_BITS + 1 + 17            # (acc + bias) x mult
SUM_BITS = WORD + ALIGN_MAX + 2             # (r << sa) + (y << sb)
# where a beat goes
DEST_TOK, DEST_KB, DEST_VB, DEST_SM = range(4)
SPLIT = 24                                  # s = hi 2^24 + lo: lo x mult and hi x mult, one DSP each
REQUANT_STAGES = 3                          # requant_sv with two cuts, then its result registered
RES_CUTS = 2                                # the residual's output shifter in three (its shift is wider)
RES_STAGES = 2 + REQUANT_STAGES + RES_CUTS - 1     # shifts, sum, requant
Y_STAGE = 3 + REQUANT_STAGES                # the stage whose register holds the requantised y
ACT_STAGE = Y_STAGE + PWL_LATENCY           # the activation's result
assert ACT_STAGE - ports.READ_LATENCY >= 1  # the residual's read: a beat's tag from stage 1
LATENCY = ACT_STAGE + RES_STAGES + 1        # a beat in -> its write (the write ports are combinational from here)
REPLICATED = {"max_fanout": 16}            # a register every lane reads (the shifts, their copies at the cut)
SM_DEPTH = 32                               # score FIFO: the drain's credit loop at one beat per cycle
SM_SLICE = 1                                # the score FIFO -> its register slice -> the softmax unit


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


def tag_layout(hw: HardwareConfig) -> data.StructLayout:
    """What travels beside a beat's lanes after the first stage."""
    return data.StructLayout({"valid": 1, "dest": 2, "buf": 2, "tile": range(hw.tiles), "ch": range(hw.k_max),
                              "ok": 1, "last": 1, "rows": hw.mac_rows})


def sm_layout(hw: HardwareConfig) -> data.StructLayout:
    return data.StructLayout({"s": lanes(hw.mac_rows), "last": 1})


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
            "o_s": Out(stream.Signature(sm_layout(hw))),
            # credits back to the drain: a score FIFO place freed, a padding score dropped
            "sm_free": Out(2),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        hw, R = self.hw, self.hw.mac_rows
        cfg, beat = self.cfg, self.i.payload
        m.d.comb += self.i.ready.eq(1)
        # the beat's tag, one register per stage; the rows mask and the requant shift of stage 1
        tags = [Signal(tag_layout(hw), name=f"tag{k}") for k in range(LATENCY + 1)]
        c = beat.ctx
        m.d.sync += [tags[1].valid.eq(self.i.valid), tags[1].dest.eq(c.dest), tags[1].buf.eq(c.buf),
                     tags[1].tile.eq(c.tile), tags[1].ch.eq(c.ch), tags[1].ok.eq(c.ok), tags[1].last.eq(c.last)]
        room = Signal(signed(len(cfg.rows) + 1), name="room")       # rows of this tile that exist
        m.d.sync += room.eq(cfg.rows - (c.tile << ports.lane_bits(R)))
        m.d.sync += [tags[2].eq(tags[1]), tags[2].rows.eq(Cat(room > r for r in range(R)))]
        m.d.sync += [tags[k].eq(tags[k - 1]) for k in range(3, LATENCY + 1)]
        sh = Signal(range(PRODUCT_BITS + 2 * WORD + 3), name="sh1")
        mult = Signal(17, name="mult1")
        m.d.sync += [sh.eq(requant_sv_shift(m, c.shift, PRODUCT_BITS, WORD, "rq_sh")), mult.eq(c.mult)]
        # the shifts drive the first shifter stage of every lane: replicated registers
        sh2, sh3 = Signal.like(sh, name="sh2"), Signal.like(sh, name="sh3", attrs=REPLICATED)
        m.d.sync += [sh2.eq(sh), sh3.eq(sh2)]
        # the operation's output shifts and activation switch (static from start, long before a
        # beat reaches them): the shifts computed, then replicated registers
        so, so0 = (ports.delayed(m, requant_sv_shift(m, v, SUM_BITS, WORD, f"{n}_c"), 2, n, attrs=REPLICATED)
                   for v, n in ((cfg.so, "so_sh"), (cfg.so0, "so0_sh")))
        self._act = ports.delayed(m, cfg.act, 1, "act_q", attrs=REPLICATED)
        # row 0's alignments where its residual is added (ACT_STAGE) and requantised (two later)
        own = [cfg.row0 & (tags[ACT_STAGE + k].tile == 0) for k in (0, 2)]
        # the residual's alignments, the operation's (static from start, long before a beat
        # reaches them): replicated registers, as the shifts above
        sa, sb, sa0, sb0 = (Signal.like(getattr(cfg, n), name=f"{n}_q", attrs=REPLICATED)
                            for n in ("sa", "sb", "sa0", "sb0"))
        m.d.sync += [sa.eq(cfg.sa), sb.eq(cfg.sb), sa0.eq(cfg.sa0), sb0.eq(cfg.sb0)]
        row0 = SimpleNamespace(sa=Mux(own[0], sa0, sa), sb=Mux(own[0], sb0, sb),
                               so=Mux(own[1], so0, so))

        # the residual word is read so that it arrives with the beat at ACT_STAGE (the fabric
        # registers it after its buffer select; the beat's tag carries its address)
        res = self.rb.data
        t_rb = tags[ACT_STAGE - ports.READ_LATENCY]
        m.d.comb += [self.rb.buf.eq(cfg.r_buf), self.rb.tile.eq(t_rb.tile), self.rb.ch.eq(t_rb.ch),
                     self.rb.en.eq(t_rb.valid & cfg.res)]
        sums, out = zip(*(self._lane(m, r, beat.acc[r], c.bias, mult, sh3,
                                     row0 if r == 0 else SimpleNamespace(sa=sa, sb=sb, so=so), res[r])
                          for r in range(R)))
        self._write(m, tags[LATENCY], tags[LATENCY - 1], out)
        # MATMUL into SB: s = acc + bias (stage 1) of the rows that exist
        t1 = tags[1]
        m.d.comb += [self.sw.tile.eq(t1.tile), self.sw.data.eq(Cat(s[:ACC_BITS] for s in sums)),
                     self.sw.en.eq(Mux(t1.valid & cfg.to_sb & t1.ok & (t1.dest == DEST_TOK),
                                       ports.rows_mask(m, cfg.rows, t1.tile, hw, name="sb_rows"), 0))]
        m.d.comb += self.idle.eq(~Cat(t.valid for t in tags[1:]).any() & ~self.o_s.valid & ~self._sm.o.valid
                              & (self._sm.count == 0))
        return m

    def _lane(self, m, r: int, acc, bias, mult, sh3, align, res) -> tuple[Value, Value]:
        """One lane's arithmetic, LATENCY register stages; returns its stage-1 sum acc + bias (a
        MATMUL into SB stores it) and its last register. `align`: the residual add's sa, sb and
        output shift so (row 0's own where it has them)."""
        cfg = self.cfg

        def reg(value, name, shape=None):
            x = Value.cast(value)
            q = Signal(shape or x.shape(), name=f"{name}_{r}")
            m.d.sync += q.eq(x)
            return q

        def delay(value, n, name):
            for k in range(n):
                value = reg(value, f"{name}{k}")
            return value
        s = reg(acc + bias, "s1", signed(ACC_BITS + 1))
        lo = reg(s[:SPLIT] * mult, "lo2")
        hi = reg(s[SPLIT:].as_signed() * mult, "hi2")
        p = reg(lo + (hi << SPLIT), "p3", signed(PRODUCT_BITS))
        cut = pipe_stage(m, name=f"rq{r}_c", attrs=REPLICATED)
        y = reg(requant_sv(m, p, 0, WORD, f"rq{r}", cut, shift=sh3), "y")
        m.submodules[f"pwl{r}"] = pwl = PwlEval(self.hw, WORD, deep=True)
        wiring.connect(m, pwl.table, wiring.flipped(self.table[r]))
        m.d.comb += [pwl.geo.eq(cfg.pwl), pwl.x.eq(y)]
        yact = Signal(signed(WORD), name=f"yact_{r}")
        m.d.comb += yact.eq(Mux(self._act, pwl.y, delay(y, PWL_LATENCY, "yd")))
        # residual: (r << sa) + (y << sb), requantised by so; the residual word arrives now
        rs = reg(res.as_signed() << align.sa, "rs", signed(SUM_BITS))
        ys = reg(yact << align.sb, "ys", signed(SUM_BITS))
        total = reg(rs + ys, "sum", signed(SUM_BITS))
        cut = pipe_stage(m, name=f"ra{r}_c", attrs=REPLICATED)
        yres = reg(requant_sv(m, total, 0, WORD, f"ra{r}", cut, shift=align.so, cuts=RES_CUTS), "yres")
        return s, reg(Mux(cfg.res, yres, delay(yact, RES_STAGES, "yn")), "yout")

    def _write(self, m, t, before, y):
        """The last stage: write y (R lanes) where the tag says (only rows < rows); scores into
        the FIFO to the softmax unit."""
        hw, R, C = self.hw, self.hw.mac_rows, self.hw.mac_cols
        G = C // R
        go = t.valid & t.ok
        yv = Signal(lanes(R), name="y_out")
        m.d.comb += yv.eq(Cat(y))
        m.submodules.sm = self._sm = fifo = RamFifo(sm_layout(hw).size, SM_DEPTH)
        # out through a register slice: the softmax's ready (its first score's) meets a register,
        # not the FIFO's pointers and count
        m.submodules.sm_out = self._sm_out = out = Skid(sm_layout(hw))
        q = data.View(sm_layout(hw), fifo.i.payload)
        m.d.comb += [fifo.i.valid.eq(go & (t.dest == DEST_SM)), q.s.eq(yv), q.last.eq(t.last),
                     out.i.valid.eq(fifo.o.valid), out.i.payload.eq(fifo.o.payload), fifo.o.ready.eq(out.i.ready)]
        wiring.connect(m, out.o, wiring.flipped(self.o_s))
        # a score beat of a padding key (ok = 0) never enters the FIFO: its credit returns here
        m.d.sync += self.sm_free.eq((fifo.o.valid & fifo.o.ready) + (t.valid & ~t.ok & (t.dest == DEST_SM)))
        w, kw, vw = self.w, self.kw, self.vw
        m.d.comb += [w.buf.eq(t.buf), w.tile.eq(t.tile), w.ch.eq(t.ch), w.data.eq(yv),
                     vw.tile.eq(t.tile), vw.ch.eq(t.ch), vw.data.eq(yv),
                     kw.ch.eq(t.ch), kw.data.eq(Cat(yv for _ in range(G)))]
        gb = (G - 1).bit_length()
        m.d.comb += kw.ktile.eq(t.tile >> gb)
        # the write enables are registers, made from the stage before (the pipeline never stalls,
        # and to_sb holds for the operation): they reach the port routes without a LUT
        b_go, grp = before.valid & before.ok, before.tile[:gb] if gb else 0
        for name, port, en in (
                ("w", w, Mux(b_go & (before.dest == DEST_TOK) & ~self.cfg.to_sb, before.rows, 0)),
                ("vw", vw, Mux(b_go & (before.dest == DEST_VB), before.rows, 0)),
                ("kw", kw, Mux(b_go & (before.dest == DEST_KB), before.rows << (grp * R if gb else 0), 0))):
            en_q = Signal.like(port.en, name=f"{name}_en_q")
            m.d.sync += en_q.eq(en)
            m.d.comb += port.en.eq(en_q)
