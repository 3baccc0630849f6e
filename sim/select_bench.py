"""Bench of the selector units (rtl_gen gmean, decide, package, compact, selstore) on the buffer
fabric: `SelectBench` holds Buffers, the four units, the selection store and a PWL table RAM,
driven by ONE command stream so that every command runs in order under random stalls:

    WRITE   buffer word (buf, tile, ch) := data (all lanes)
    READ    buffer word (buf, tile, ch) -> o_rd
    TABLE   table entry addr := (base, slope)
    OP      start the unit of desc's opcode with (desc, rows); when it is done -> o_ev
            {op, cycles from the start pulse to the done pulse, kept / stage (DECIDE's strobe),
             n_out (COMPACT's strobe)}
    READ_M  selection state of token `token` -> o_m {m, keep}
    STORE   the beats of a STORE of the selection -> o_st
    SCORES  score buffer tile `tile` := scores (all lanes)
    READ_SB score buffer tile `tile`, bits 16 ch .. 16 ch + 15 of each lane -> o_rd

`Session` builds command lists and parses the outputs; the tests compare them with
golden.interp.Machine operations by ==.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
from amaranth.hdl import Cat, Module, Signal, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden import isa
from golden.hw import HardwareConfig
from rtl_gen.buffers import ports
from rtl_gen.buffers.fabric import Buffers
from rtl_gen.buffers.ports import route
from rtl_gen.buffers.scores import ScoreBuffer, score_read, score_write
from rtl_gen.primitives.ram import Ram
from rtl_gen.selector.compaction import Compaction
from rtl_gen.selector.decide import Decide
from rtl_gen.selector.gmean import GMean
from rtl_gen.selector.package import Package
from rtl_gen.selector.state import M_BITS, SelState, m_read, mask_read
from rtl_gen.selector.store import SelStore, beat_layout, beats as store_beats

WRITE, READ, TABLE, OP, READ_M, STORE, SCORES, READ_SB = range(8)
UNITS = ("GMEAN", "DECIDE", "PACKAGE", "COMPACT")
UNIT_OF = {"GMEAN": 0, "DECIDE": 1, "PACKAGE": 2, "COMPACT": 3, "COPY": 3}    # opcode -> the unit that runs it
SB_SLICES = isa.SCORE_BITS // 16


def cmd_layout(hw: HardwareConfig) -> data.StructLayout:
    return data.StructLayout({
        "kind": 3, "buf": 2, "tile": range(hw.tiles), "ch": range(hw.k_max), "data": ports.lanes(hw.mac_rows),
        "desc": isa.DESC_BITS, "rows": range(hw.n_max + 1), "addr": range(hw.pwl_max), "base": signed(32),
        "slope": signed(27), "token": range(hw.tiles * hw.mac_rows),
        "scores": ports.lanes(hw.mac_rows, isa.SCORE_BITS)})


def ev_layout(hw: HardwareConfig) -> data.StructLayout:
    return data.StructLayout({"op": 5, "cycles": 24, "kept_stb": 1, "kept": range(hw.n_max + 1), "stage": 3,
                              "n_stb": 1, "n_out": range(hw.n_max + 2)})


class SelectBench(wiring.Component):
    def __init__(self, hw: HardwareConfig, recips: int = 4, cap_bits: int = 3, pk_lanes: int | None = None):
        self.hw, self.recips, self.cap_bits, self.pk_lanes = hw, recips, cap_bits, pk_lanes
        super().__init__({
            "i_cmd": In(stream.Signature(cmd_layout(hw))),
            "o_rd": Out(stream.Signature(ports.lanes(hw.mac_rows))),
            "o_ev": Out(stream.Signature(ev_layout(hw))),
            "o_m": Out(stream.Signature(data.StructLayout({"m": signed(M_BITS), "keep": 1}))),
            "o_st": Out(stream.Signature(beat_layout(hw))),
        })

    def elaborate(self, platform):
        m = Module()
        hw = self.hw
        m.submodules.bufs = bufs = Buffers(hw)
        m.submodules.gmean = gmean = GMean(hw)
        m.submodules.decide = decide = Decide(hw, self.recips, self.cap_bits)
        m.submodules.package = package = Package(hw, self.pk_lanes)
        m.submodules.compact = compact = Compaction(hw)
        m.submodules.scores = scores = ScoreBuffer(hw)
        m.submodules.store = store = SelStore(hw)
        m.submodules.table = table = Ram(59, hw.pwl_max, is_signed=False)
        units = (gmean, decide, package, compact)
        run = SimpleNamespace(desc=Signal(isa.DESC_BITS, name="desc"), rows=Signal(range(hw.n_max + 1), name="rows"),
                              active=Signal(len(UNITS), name="active"),      # one-hot: the running unit
                              storing=Signal(name="storing"))
        host = SimpleNamespace(rd=ports.tok_read(hw).create(path=("host_rd",)),
                               wr=ports.tok_write(hw).create(path=("host_wr",)),
                               mask=mask_read(hw).create(path=("host_mask",)),
                               m=m_read(hw).create(path=("host_m",)),
                               token=Signal(range(hw.tiles * hw.mac_rows), name="m_token"),   # READ_M's token
                               sw=score_write(hw).create(path=("host_sw",)),
                               sr=score_read(hw).create(path=("host_sr",)),
                               sb_slice=Signal(range(SB_SLICES), name="sb_slice"))               # READ_SB's slice
        self._connect_units(m, bufs, units, store, table, run, host)
        route(m, scores.rd, [(run.active[2], package.sb), (run.active[3], compact.sr), (run.active[1], decide.sb),
                             (1, host.sr)], score_read(hw))
        route(m, scores.wr, [(run.active[3], compact.sw), (1, host.sw)], score_write(hw))
        wiring.connect(m, compact.order, decide.order)
        m.d.comb += compact.kept.eq(decide.info.kept)
        ev = self._events(m, decide, compact)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.i_cmd.ready.eq(1)
                with m.If(self.i_cmd.valid):
                    self._take_command(m, table, run, host, ev)
            self._answer_states(m, bufs, units, store, run, host, ev)
        return m

    def _connect_units(self, m, bufs, units, store, table, run, host):
        """Every unit sees the command's desc and rows; the fabric's ports and the selection
        state's read ports go to the running unit (or the store), else to the host side."""
        hw = self.hw
        gmean, decide, package, compact = units
        active = run.active
        for u in units:
            m.d.comb += [u.desc.eq(run.desc), u.rows.eq(run.rows)]
        route(m, bufs.ra, [(active[i], u.rd) for i, u in enumerate(units)] + [(1, host.rd)], ports.tok_read(hw))
        route(m, bufs.w, [(active[0], gmean.wr), (active[3], compact.wr), (1, host.wr)], ports.tok_write(hw))
        route(m, decide.mask, [(active[2], package.mask), (active[3], compact.mask), (run.storing, store.mask),
                               (1, host.mask)], mask_read(hw))
        route(m, decide.m, [(active[2], package.mr), (1, host.m)], m_read(hw))
        wiring.connect(m, compact.pkg, package.pkg)
        tr = decide.table
        m.d.comb += [table.raddr.eq(tr.addr), table.ren.eq(tr.en), tr.data.base.eq(table.rdata[:32]),
                     tr.data.slope.eq(table.rdata[32:59]), decide.consume.eq(compact.done),
                     store.kept.eq(decide.info.kept), store.ns.eq(decide.info.ns)]
        wiring.connect(m, wiring.flipped(self.o_st), store.o)

    def _events(self, m, decide, compact):
        """The event of an operation: DECIDE's kept / stage and COMPACT's N' when they strobe."""
        ev = self.o_ev.payload
        with m.If(decide.kept_stb):
            m.d.sync += [ev.kept_stb.eq(1), ev.kept.eq(decide.kept), ev.stage.eq(decide.stage)]
        with m.If(compact.n_stb):
            m.d.sync += [ev.n_stb.eq(1), ev.n_out.eq(compact.n_out)]
        return ev

    def _take_command(self, m, table, run, host, ev):
        """IDLE with a command: WRITE and TABLE complete at once; the others go to their state."""
        cmd = self.i_cmd.payload
        with m.Switch(cmd.kind):
            with m.Case(WRITE):
                m.d.comb += [host.wr.buf.eq(cmd.buf), host.wr.tile.eq(cmd.tile), host.wr.ch.eq(cmd.ch),
                             host.wr.data.eq(cmd.data), host.wr.en.eq(-1)]
            with m.Case(READ):
                m.d.comb += [host.rd.buf.eq(cmd.buf), host.rd.tile.eq(cmd.tile), host.rd.ch.eq(cmd.ch),
                             host.rd.en.eq(1)]
                m.next = "RD_WAIT1" if ports.READ_LATENCY > 1 else "RD"
            with m.Case(SCORES):
                m.d.comb += [host.sw.tile.eq(cmd.tile), host.sw.data.eq(cmd.scores), host.sw.en.eq(-1)]
            with m.Case(READ_SB):
                m.d.comb += [host.sr.tile.eq(cmd.tile), host.sr.en.eq(1)]
                m.d.sync += host.sb_slice.eq(cmd.ch)
                m.next = "RS"
            with m.Case(TABLE):
                m.d.comb += [table.waddr.eq(cmd.addr), table.wdata.eq(cmd.base.as_unsigned()
                             | (cmd.slope.as_unsigned() << 32)), table.wen.eq(1)]
            with m.Case(READ_M):
                m.d.comb += [host.m.token.eq(cmd.token), host.m.en.eq(1),
                             host.mask.tile.eq(cmd.token >> ports.lane_bits(self.hw.mac_rows)), host.mask.en.eq(1)]
                m.d.sync += host.token.eq(cmd.token)
                m.next = "RM"
            with m.Case(OP):
                m.d.sync += [run.desc.eq(cmd.desc), run.rows.eq(cmd.rows), ev.cycles.eq(0), ev.kept_stb.eq(0),
                             ev.n_stb.eq(0), ev.op.eq(cmd.desc[:5])]
                for name, i in UNIT_OF.items():
                    with m.If(cmd.desc[:5] == isa.OPS[name].code):
                        m.d.sync += run.active.eq(1 << i)
                m.next = "GO"
            with m.Case(STORE):
                m.d.sync += run.storing.eq(1)
                m.next = "ST_GO"

    def _answer_states(self, m, bufs, units, store, run, host, ev):
        """RD / RM answer a read; GO, RUN, EV run an operation and report its event; ST_GO, ST
        a STORE of the selection (beats on o_st)."""
        R = self.hw.mac_rows
        decide = units[1]
        for k in range(1, ports.READ_LATENCY):         # the fabric's read registers
            with m.State(f"RD_WAIT{k}"):
                m.next = f"RD_WAIT{k + 1}" if k + 1 < ports.READ_LATENCY else "RD"
        with m.State("RD"):
            m.d.comb += [self.o_rd.valid.eq(1), self.o_rd.payload.eq(bufs.ra.data)]
            with m.If(self.o_rd.ready):
                m.next = "IDLE"
        with m.State("RS"):
            m.d.comb += [self.o_rd.valid.eq(1), self.o_rd.payload.eq(
                Cat(Value.cast(host.sr.data[r]).word_select(host.sb_slice, 16) for r in range(R)))]
            with m.If(self.o_rd.ready):
                m.next = "IDLE"
        with m.State("RM"):
            lane = host.token[:ports.lane_bits(R)] if R > 1 else 0
            m.d.comb += [self.o_m.valid.eq(1), self.o_m.payload.m.eq(decide.m.m),
                         self.o_m.payload.keep.eq(decide.mask.keep.bit_select(lane, 1))]
            with m.If(self.o_m.ready):
                m.next = "IDLE"
        with m.State("GO"):
            for i, u in enumerate(units):
                m.d.comb += u.start.eq(run.active[i])
            m.next = "RUN"
        with m.State("RUN"):
            m.d.sync += ev.cycles.eq(ev.cycles + 1)
            with m.If(sum(u.done for u in units) != 0):
                m.d.sync += run.active.eq(0)
                m.next = "EV"
        with m.State("EV"):
            m.d.comb += self.o_ev.valid.eq(1)
            with m.If(self.o_ev.ready):
                m.next = "IDLE"
        with m.State("ST_GO"):
            m.d.comb += store.start.eq(1)
            m.next = "ST"
        with m.State("ST"):
            with m.If(store.done):
                m.d.sync += run.storing.eq(0)
                m.next = "IDLE"


# ------------------------------------------------------------------ host side
@dataclass
class Session:
    """Commands for one bench run and the expected number of outputs of each stream."""
    hw: HardwareConfig
    cmds: list = field(default_factory=list)
    n_rd: int = 0
    n_ev: int = 0
    n_m: int = 0
    n_st: int = 0

    def _cmd(self, kind, **f):
        hw = self.hw
        c = {"kind": kind, "buf": 0, "tile": 0, "ch": 0, "data": [0] * hw.mac_rows, "desc": 0, "rows": 0, "addr": 0,
             "base": 0, "slope": 0, "token": 0, "scores": [0] * hw.mac_rows}
        c.update(f)
        self.cmds.append(c)

    def write_region(self, buf: int, x, c0: int = 0):
        """Whole token tiles: x [tiles R, w] -> channels c0.. of buf."""
        R = self.hw.mac_rows
        x = np.asarray(x, dtype=np.int64)
        for t in range(x.shape[0] // R):
            for c in range(x.shape[1]):
                self._cmd(WRITE, buf=buf, tile=t, ch=c0 + c, data=[int(v) for v in x[t * R:(t + 1) * R, c]])

    def write_scores(self, scores):
        """Whole tiles of the score buffer: scores [tiles R]."""
        R = self.hw.mac_rows
        for t in range(len(scores) // R):
            self._cmd(SCORES, tile=t, scores=[int(v) for v in scores[t * R:(t + 1) * R]])

    def read_scores(self, tiles: int):
        """Score buffer tiles 0..tiles-1, in 16-bit slices (scores_of parses them)."""
        for t in range(tiles):
            for k in range(SB_SLICES):
                self._cmd(READ_SB, tile=t, ch=k)
        self.n_rd += tiles * SB_SLICES

    def read_region(self, buf: int, tiles: int, c0: int, w: int):
        for t in range(tiles):
            for c in range(w):
                self._cmd(READ, buf=buf, tile=t, ch=c0 + c)
        self.n_rd += tiles * w

    def table(self, base, slope):
        for a, (b, s) in enumerate(zip(base, slope)):
            self._cmd(TABLE, addr=a, base=int(b), slope=int(s))

    def op(self, name: str, rows: int, **fields):
        self._cmd(OP, desc=int.from_bytes(isa.encode(name, rows=rows, **fields), "little"), rows=rows)
        self.n_ev += 1

    def read_m(self, tokens):
        for j in tokens:
            self._cmd(READ_M, token=int(j))
        self.n_m += len(tokens)

    def store(self):
        self._cmd(STORE)
        self.n_st += store_beats(self.hw)

    def counts(self) -> dict:
        return {"o_rd": self.n_rd, "o_ev": self.n_ev, "o_m": self.n_m, "o_st": self.n_st}


def region(words, tiles: int, w: int, R: int) -> np.ndarray:
    """READ outputs of read_region -> [tiles R, w]."""
    a = np.asarray(words, dtype=np.int64).reshape(tiles, w, R)
    return a.transpose(0, 2, 1).reshape(tiles * R, w)


def scores_of(words, tiles: int, R: int) -> np.ndarray:
    """READ_SB outputs of read_scores -> the scores [tiles R] (signed 48-bit)."""
    a = np.asarray(words, dtype=np.int64).reshape(tiles, SB_SLICES, R) & 0xFFFF
    v = sum(a[:, k] << (16 * k) for k in range(SB_SLICES)).reshape(-1)
    top = 1 << (isa.SCORE_BITS - 1)
    return (v ^ top) - top


def store_bytes(beats, hw: HardwareConfig, nbytes: int) -> bytes:
    raw = b"".join(int(b["data"]).to_bytes(hw.axi_bits // 8, "little") for b in beats)
    return raw[:nbytes]


class StoreBench(wiring.Component):
    """The selection store alone on a selection state: i_cmd {store: 0 -> keep word `keep` of
    tile `tile`; 1 -> decision info (ns, kept) then the STORE beats on o_st}."""

    def __init__(self, hw: HardwareConfig):
        self.hw = hw
        n = range(hw.n_max + 1)
        cmd = data.StructLayout({"store": 1, "tile": range(hw.tiles), "keep": hw.mac_rows, "ns": n, "kept": n})
        super().__init__({"i_cmd": In(stream.Signature(cmd)), "o_st": Out(stream.Signature(beat_layout(hw)))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.state = state = SelState(self.hw)
        m.submodules.store = store = SelStore(self.hw)
        c = self.i_cmd.payload
        wiring.connect(m, state.mask, store.mask)
        wiring.connect(m, wiring.flipped(self.o_st), store.o)
        m.d.comb += [store.kept.eq(state.info.kept), store.ns.eq(state.info.ns), state.set_info.ns.eq(c.ns),
                     state.set_info.kept.eq(c.kept), state.write_keep.tile.eq(c.tile),
                     state.write_keep.data.eq(c.keep)]
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.i_cmd.ready.eq(1)
                with m.If(self.i_cmd.valid):
                    with m.If(c.store):
                        m.d.comb += state.set.eq(1)
                        m.next = "GO"
                    with m.Else():
                        m.d.comb += state.write_keep.en.eq(-1)
            with m.State("GO"):
                m.d.comb += store.start.eq(1)
                m.next = "RUN"
            with m.State("RUN"):
                with m.If(store.done):
                    m.next = "IDLE"
        return m
