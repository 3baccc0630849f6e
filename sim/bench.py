"""A bench wrapper for operation units: the buffer fabric, the unit under test, and a host
command stream that writes and reads buffer words and starts the operation, so that
sim.runner.run_stream can drive everything with random stalls.

    i_cmd  {kind: 0 write | 1 read | 2 start, buf (0-3 token buffers, 4 KB, 5 VB, 6 SB), tile, ch,
            token, grp, data (mac_cols lanes), en (lanes)}; start uses the static `desc`/`rows`
            inputs and blocks later commands until the unit's `done`
    o_rd   one beat per read command: {data: mac_cols lanes} (token words in lanes 0..R-1)

The score buffer SB (a unit with `sr` / `sw` ports) is reached in 16-bit slices: channel k of an
SB tile is bits 16 k .. 16 k + 15 of each lane's score; a write of the last slice writes the lanes.

`state_commands` / `read_commands` turn the interpreter's logical buffers into commands and
`parse_reads` turns read beats back into arrays, so a test can load the exact state the
interpreter had before an operation and compare every word afterwards.
"""
from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.hw import HardwareConfig
from golden.isa import DESC_BITS, KB, SB, SCORE_BITS, TOKEN_BUFFERS, VB
from rtl_gen.buffers.fabric import Buffers
from rtl_gen.buffers.ports import READ_LATENCY, lanes
from rtl_gen.buffers.scores import ScoreBuffer

WRITE, READ, START = range(3)
SB_SLICES = SCORE_BITS // 16


def cmd_layout(hw: HardwareConfig) -> data.StructLayout:
    return data.StructLayout({"kind": 2, "buf": 3, "tile": range(hw.tiles), "ch": range(hw.k_max),
                              "token": range(hw.tiles * hw.mac_rows), "grp": range(max(hw.d_max // hw.mac_cols, 1)),
                              "data": lanes(hw.mac_cols), "en": hw.mac_cols})


class UnitBench(wiring.Component):
    """`unit`: a component with ports.control members and any of ra, rb, w, kr, kw, vr, vw.
    `extra`: {name: (member, port of the unit)} stream ports passed through to the top."""

    def __init__(self, hw: HardwareConfig, unit, extra: dict | None = None):
        self.hw, self.unit, self.extra = hw, unit, extra or {}
        members = {"i_cmd": In(stream.Signature(cmd_layout(hw))),
                   "o_rd": Out(stream.Signature(data.StructLayout({"data": lanes(hw.mac_cols)}))),
                   "desc": In(DESC_BITS), "rows": In(range(hw.n_max + 1))}
        for name, (member, _) in self.extra.items():
            members[name] = member
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        hw, u, R = self.hw, self.unit, self.hw.mac_rows
        m.submodules.buffers = buf = Buffers(hw)
        m.submodules.unit = u
        for name, (_, port) in self.extra.items():
            _pass(m, getattr(self, name), port)
        running = Signal()
        m.d.comb += [u.desc.eq(self.desc), u.rows.eq(self.rows)]
        c = self.i_cmd.payload
        pending = Signal(range(READ_LATENCY + 1))   # cycles until a read's data arrives (1: this cycle)
        pend_buf = Signal(3)
        host = ~running
        can = host & ~(self.o_rd.valid & ~self.o_rd.ready) & (pending == 0)
        m.d.comb += self.i_cmd.ready.eq(can)
        take = self.i_cmd.valid & can
        m.d.comb += u.start.eq(take & (c.kind == START))
        with m.If(u.start):
            m.d.sync += running.eq(1)
        with m.If(u.done):
            m.d.sync += running.eq(0)
        # host access, muxed with the unit's ports
        names = [p for p in ("ra", "rb", "w", "kr", "kw", "vr", "vw") if hasattr(u, p)]
        for p in names:
            with m.If(running):
                connect_lite(m, getattr(u, p), getattr(buf, p))
        wr, rd = take & (c.kind == WRITE), take & (c.kind == READ)
        with m.If(host):
            m.d.comb += [buf.w.buf.eq(c.buf[:2]), buf.w.tile.eq(c.tile), buf.w.ch.eq(c.ch),
                         buf.w.data.eq(c.data.as_value()[:16 * R]),
                         buf.w.en.eq(Mux(wr & (c.buf < 4), c.en[:R], 0)),
                         buf.kw.ktile.eq(c.tile), buf.kw.ch.eq(c.ch), buf.kw.data.eq(c.data),
                         buf.kw.en.eq(Mux(wr & (c.buf == KB), c.en, 0)),
                         buf.vw.tile.eq(c.tile), buf.vw.ch.eq(c.ch), buf.vw.data.eq(c.data.as_value()[:16 * R]),
                         buf.vw.en.eq(Mux(wr & (c.buf == VB), c.en[:R], 0)),
                         buf.ra.buf.eq(c.buf[:2]), buf.ra.tile.eq(c.tile), buf.ra.ch.eq(c.ch),
                         buf.ra.en.eq(rd & (c.buf < 4)),
                         buf.kr.ktile.eq(c.tile), buf.kr.ch.eq(c.ch), buf.kr.en.eq(rd & (c.buf == KB)),
                         buf.vr.token.eq(c.token), buf.vr.grp.eq(c.grp), buf.vr.en.eq(rd & (c.buf == VB))]
        with m.If(rd):
            m.d.sync += [pending.eq(Mux(c.buf == SB, 1, READ_LATENCY)), pend_buf.eq(c.buf)]
        with m.Elif(pending != 0):
            m.d.sync += pending.eq(pending - 1)
        read_sb = self._scores(m, running, host, wr, rd) if hasattr(u, "sr") else 0
        with m.If(pending == 1):
            read_data = Mux(pend_buf == SB, read_sb, Mux(pend_buf == KB, buf.kr.data.as_value(),
                            Mux(pend_buf == VB, buf.vr.data.as_value(), buf.ra.data.as_value())))
            m.d.sync += [self.o_rd.valid.eq(1), self.o_rd.payload.data.eq(read_data)]
        with m.Elif(self.o_rd.ready):
            m.d.sync += self.o_rd.valid.eq(0)
        return m

    def _scores(self, m, running, host, wr, rd):
        """The score buffer behind the unit's sr / sw ports; host access in 16-bit slices.
        Returns the read beat's data (the read slice of each lane)."""
        u, R, c = self.unit, self.hw.mac_rows, self.i_cmd.payload
        m.submodules.scores = sb = ScoreBuffer(self.hw)
        with m.If(running):
            connect_lite(m, u.sr, sb.rd)
            connect_lite(m, u.sw, sb.wr)
        held = [Signal(16 * (SB_SLICES - 1), name=f"sb_held{r}") for r in range(R)]   # lower slices of a write
        pend_ch = Signal(range(SB_SLICES))
        with m.If(host):
            m.d.comb += [sb.rd.tile.eq(c.tile), sb.rd.en.eq(rd & (c.buf == SB)), sb.wr.tile.eq(c.tile),
                         sb.wr.data.eq(Cat(Cat(h, c.data[r]) for r, h in enumerate(held))),
                         sb.wr.en.eq(Mux(wr & (c.buf == SB) & (c.ch == SB_SLICES - 1), c.en[:R], 0))]
            with m.If(wr & (c.buf == SB) & (c.ch < SB_SLICES - 1)):
                m.d.sync += [h.word_select(c.ch[:2], 16).eq(c.data[r]) for r, h in enumerate(held)]
            with m.If(rd):
                m.d.sync += pend_ch.eq(c.ch)
        return Cat(Value.cast(sb.rd.data[r]).word_select(pend_ch, 16) for r in range(R))


def _pass(m, top, port):
    """Connect a top-level pass-through port to the unit's port of the same signature."""
    for name, member in port.signature.members.items():
        a, b = getattr(top, name), getattr(port, name)
        if member.is_signature:
            _pass(m, a, b)
        elif member.flow == In:        # unit input: driven from the top
            m.d.comb += b.eq(a)
        else:
            m.d.comb += a.eq(b)


def connect_lite(m, unit_side, fabric_side):
    """comb-connect a unit-side port to the fabric's flipped port (inside a conditional)."""
    for name, member in unit_side.signature.members.items():
        a, b = getattr(unit_side, name), getattr(fabric_side, name)
        if member.flow == In:
            m.d.comb += a.eq(b)
        else:
            m.d.comb += b.eq(a)


# ---------------------------------------------------------------- commands from the interpreter
def _cmd(hw, kind, buf=0, tile=0, ch=0, token=0, grp=0, data=None, en=0):
    return {"kind": kind, "buf": buf, "tile": tile, "ch": ch, "token": token, "grp": grp,
            "data": list(data) + [0] * (hw.mac_cols - len(data)) if data is not None else [0] * hw.mac_cols,
            "en": en}


def state_commands(hw: HardwareConfig, bufs: dict, which=(0, 1, 2, 3, KB, VB), rows: int | None = None) -> list:
    """Write commands that load logical buffers ({buf: int array [tokens, channels]}) into the
    fabric (all tiles, or the tiles holding `rows` tokens)."""
    R, C = hw.mac_rows, hw.mac_cols
    out = []
    tiles = hw.tiles if rows is None else -(-rows // R)
    for b in which:
        x = np.asarray(bufs[b], dtype=np.int64)
        if b in TOKEN_BUFFERS or b == VB:
            for t in range(tiles):
                for c in range(x.shape[1]):
                    out.append(_cmd(hw, WRITE, b, t, c, data=x[t * R:(t + 1) * R, c], en=(1 << R) - 1))
        elif b == KB:
            for u in range(-(-tiles * R // C) if rows is not None else hw.key_tiles):
                for c in range(x.shape[1]):
                    out.append(_cmd(hw, WRITE, b, u, c, data=x[u * C:(u + 1) * C, c], en=(1 << C) - 1))
        elif b == SB:
            for t in range(tiles):
                for k in range(SB_SLICES):
                    words = (x[t * R:(t + 1) * R, 0] >> (16 * k)) & 0xFFFF
                    out.append(_cmd(hw, WRITE, b, t, k, data=(words ^ 0x8000) - 0x8000, en=(1 << R) - 1))
    return out


def read_commands(hw: HardwareConfig, b: int, rows: int, c0: int, w: int) -> list:
    """Read commands for rows 0..rows-1, channels c0..c0+w-1 of buffer b (token words; for KB
    key tiles; for VB one token at a time)."""
    R, C = hw.mac_rows, hw.mac_cols
    if b in TOKEN_BUFFERS:
        return [_cmd(hw, READ, b, t, c) for t in range(-(-rows // R)) for c in range(c0, c0 + w)]
    if b == KB:
        return [_cmd(hw, READ, b, u, c) for u in range(-(-rows // C)) for c in range(c0, c0 + w)]
    if b == SB:
        return [_cmd(hw, READ, b, t, k) for t in range(-(-rows // R)) for k in range(SB_SLICES)]
    return [_cmd(hw, READ, b, token=n, grp=g) for n in range(rows) for g in range(c0 // C, -(-(c0 + w) // C))]


def parse_reads(hw: HardwareConfig, beats: list, b: int, rows: int, c0: int, w: int) -> np.ndarray:
    R, C = hw.mac_rows, hw.mac_cols
    out = np.zeros((rows, w), dtype=np.int64)
    it = iter(beats)
    if b in TOKEN_BUFFERS:
        for t in range(-(-rows // R)):
            for c in range(w):
                v = next(it)["data"][:R]
                n = min(R, rows - t * R)
                out[t * R:t * R + n, c] = v[:n]
    elif b == KB:
        for u in range(-(-rows // C)):
            for c in range(w):
                v = next(it)["data"]
                n = min(C, rows - u * C)
                out[u * C:u * C + n, c] = v[:n]
    elif b == SB:                                   # one 48-bit score per row, in 16-bit slices
        for t in range(-(-rows // R)):
            n = min(R, rows - t * R)
            score = sum((np.array(next(it)["data"][:n], dtype=np.int64) & 0xFFFF) << (16 * k)
                        for k in range(SB_SLICES))
            out[t * R:t * R + n, 0] = (score ^ (1 << (SCORE_BITS - 1))) - (1 << (SCORE_BITS - 1))
    else:
        g0 = c0 // C
        for n in range(rows):
            for g in range(g0, -(-(c0 + w) // C)):
                v = next(it)["data"]
                for j in range(C):
                    ch = g * C + j
                    if c0 <= ch < c0 + w:
                        out[n, ch - c0] = v[j]
    return out


def start_command(hw: HardwareConfig) -> dict:
    return _cmd(hw, START)
