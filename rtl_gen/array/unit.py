"""The MAC array and everything around it: operand fetch, drain, epilogue, and the sequencers of
the operations that use the array (MATMUL; ATTENTION in rtl_gen/array/attention.py).

    sequencer --req--> Fetch --ab--> MacArray --acc--> Drain --beat--> Epilogue --> buffers
                         \\--info (per tile)------------^

`done` pulses when every output of the operation has been written.
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out, connect

from golden import isa
from golden.hw import HardwareConfig

from ..buffers import ports
from ..buffers.scores import score_read, score_write
from ..buffers.weight_ring import drain_port, issue_port
from ..control.decode import Opcode, desc_view
from ..primitives.pwl import geometry_of, table_read
from .attention import AttentionSeq
from .epilogue import DEST_KB, DEST_TOK, DEST_VB, Epilogue
from .fetch import Drain, Fetch
from .mac import MacArray
from .matmul import MatmulSeq
from .score_capture import ScoreCapture
from .softmax import SoftmaxUnit

DONE_DELAY = 1           # the cycle after every stage is idle: done (the idle flags registered)


def default_softmax(hw: HardwareConfig):
    return SoftmaxUnit(hw)


class ArrayUnit(wiring.Component):
    """`softmax`: a factory of the softmax unit (i_s, o_p streams; runtime `frac` input)."""

    def __init__(self, hw: HardwareConfig, softmax=None):
        self.hw, self.softmax = hw, softmax or default_softmax
        super().__init__({
            **ports.control(hw),
            "ra": Out(ports.tok_read(hw)), "rb": Out(ports.tok_read(hw)), "w": Out(ports.tok_write(hw)),
            "kr": Out(ports.key_read(hw)), "kw": Out(ports.key_write(hw)),
            "vr": Out(ports.val_read(hw)), "vw": Out(ports.val_write(hw)),
            "sw": Out(score_write(hw)), "sr": Out(score_read(hw)),
            "wi": Out(issue_port(hw)), "wd": Out(drain_port(hw)),
            "table": Out(table_read(hw)).array(hw.mac_rows),
        })

    def elaborate(self, platform):
        m = Module()
        hw = self.hw
        m.submodules.fetch = fetch = Fetch(hw)
        m.submodules.mac = mac = MacArray(hw.mac_rows, hw.mac_cols)
        m.submodules.drain = drain = Drain(hw)
        m.submodules.epi = epi = Epilogue(hw)
        m.submodules.mm = mm = MatmulSeq(hw)
        # registered desc and rows: the sequencers latch them at start, so they must hold from the
        # cycle before (the controller sets them at least three cycles before start, the unit bench once)
        self._desc, self._rows = ports.held(m, self.desc, "desc"), ports.held(m, self.rows, "rows")
        m.submodules.att = att = AttentionSeq(hw, self.softmax(hw))
        m.submodules.capture = cap = ScoreCapture(hw)
        connect(m, fetch.o_ab, mac.i_ab)
        connect(m, fetch.o_info, drain.i_info)
        connect(m, mac.o_acc, drain.i_acc)
        connect(m, drain.o, epi.i)
        m.d.comb += drain.sm_free.eq(epi.sm_free)
        connect(m, epi.o_s, att.i_s)
        connect(m, fetch.pr, att.pr)
        with m.If(att.busy):
            connect_stream(m, att.req, fetch.req)
        with m.Else():
            connect_stream(m, mm.req, fetch.req)
        for a, b in ((fetch.ra, self.ra), (fetch.kr, self.kr), (fetch.vr, self.vr), (epi.rb, self.rb),
                     (epi.w, self.w), (epi.kw, self.kw), (epi.vw, self.vw), (drain.ring, self.wd), (cap.sr, self.sr)):
            connect(m, a, wiring.flipped(b))
        for r in range(hw.mac_rows):
            connect(m, epi.table[r], wiring.flipped(self.table[r]))
        # SB writes: the epilogue's (MATMUL into SB) or the score capture's (ATTENTION `score`)
        a = desc_view("ATTENTION", self._desc)
        m.d.comb += [cap.i.eq(att.cap), cap.heads.eq(a.heads), cap.momentum.eq(a.momentum)]
        capturing = cap.sw.en.any()
        m.d.comb += [self.sw.tile.eq(Mux(capturing, cap.sw.tile, epi.sw.tile)),
                     self.sw.data.eq(Mux(capturing, cap.sw.data, epi.sw.data)), self.sw.en.eq(cap.sw.en | epi.sw.en)]
        wi = self.wi
        m.d.comb += [wi.addr.eq(fetch.wr.addr), wi.en.eq(fetch.wr.en), fetch.wr.data.eq(wi.data),
                     mm.avail.eq(wi.avail), wi.done.eq(mm.slot_done),
                     mm.desc.eq(self._desc), mm.rows.eq(self._rows), att.desc.eq(self._desc), att.rows.eq(self._rows)]
        self._configure(m, epi, drain, mm, att)
        return m

    def _configure(self, m, epi, drain, mm, att):
        """Latch the epilogue and drain settings at start; `done` once all is written."""
        d = desc_view("MATMUL", self._desc)
        is_mm = d.op == Opcode.MATMUL
        busy = Signal()
        ecfg, dcfg = epi.cfg, drain.cfg
        dest = Signal(2)
        with m.Switch(d.o_buf):
            with m.Case(4):
                m.d.comb += dest.eq(DEST_KB)
            with m.Case(5):
                m.d.comb += dest.eq(DEST_VB)
            with m.Default():
                m.d.comb += dest.eq(DEST_TOK)
        with m.If(self.start & is_mm):
            m.d.comb += mm.start.eq(1)
            m.d.sync += [busy.eq(1), ecfg.act.eq(d.act != 0),
                         *[getattr(ecfg.pwl, k).eq(f) for k, f in geometry_of(d).items()],
                         ecfg.res.eq(d.res), ecfg.to_sb.eq(d.o_buf == isa.SB),
                         ecfg.r_buf.eq(d.r_buf), ecfg.sa.eq(d.sa), ecfg.sb.eq(d.sb), ecfg.so.eq(d.so),
                         ecfg.row0.eq(d.row0), ecfg.sa0.eq(d.sa0), ecfg.sb0.eq(d.sb0), ecfg.so0.eq(d.so0),
                         ecfg.rows.eq(self._rows),
                         dcfg.mm_dest.eq(dest), dcfg.mm_buf.eq(d.o_buf[:2]), dcfg.mm_mult.eq(d.mult),
                         dcfg.mm_shift.eq(d.shift), dcfg.n.eq(self._rows)]
        a = desc_view("ATTENTION", self._desc)
        with m.If(self.start & (d.op == Opcode.ATTENTION)):
            m.d.comb += att.start.eq(1)
            m.d.sync += [busy.eq(1), ecfg.act.eq(0), ecfg.res.eq(0), ecfg.to_sb.eq(0), ecfg.row0.eq(0),
                         ecfg.rows.eq(self._rows), dcfg.o_buf.eq(a.o_buf),
                         dcfg.scale.eq(a.scale), dcfg.s_shift.eq(a.s_shift), dcfg.o_shift.eq(a.o_shift),
                         dcfg.n.eq(self._rows)]
        # all issued, drained and written: the sequencers are idle and every stage is empty,
        # registered (DONE_DELAY: the stages' idle flags ran through this AND into the controller);
        # the sequencers are busy from the cycle after start, so the two cycles after it are skipped
        quiet, started = Signal(name="quiet"), Signal(name="started")
        m.d.sync += [quiet.eq(~mm.busy & ~att.busy & m.submodules.fetch.idle & m.submodules.mac.idle
                              & drain.idle & epi.idle & m.submodules.capture.idle), started.eq(self.start)]
        with m.If(busy & ~self.start & ~started & quiet):
            m.d.comb += self.done.eq(1)
            m.d.sync += busy.eq(0)


def connect_stream(m, src, dst):
    """comb-connect stream src -> dst (inside a conditional: a mux between producers)."""
    m.d.comb += [dst.valid.eq(src.valid), dst.payload.eq(src.payload), src.ready.eq(dst.ready)]
