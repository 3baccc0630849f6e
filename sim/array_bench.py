"""The array unit with its weight ring and activation table, fed by streams (a stand-in for
the stream loader), for bit-exact tests of MATMUL and ATTENTION against the interpreter."""
from __future__ import annotations

import numpy as np
from amaranth.hdl import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out, connect

from golden import stream as gstream
from golden.hw import HardwareConfig
from rtl_gen.array.unit import ArrayUnit
from rtl_gen.buffers import ports
from rtl_gen.buffers.act_table import ENTRY, PwlTable
from rtl_gen.buffers.ports import lanes
from rtl_gen.buffers.scores import score_read, score_write
from rtl_gen.buffers.weight_ring import WeightRing


def wfill_layout(hw: HardwareConfig):
    return data.StructLayout({"addr": range(hw.k_max + gstream.BIAS_WORDS), "data": lanes(hw.mac_cols), "commit": 1})


def tfill_layout(hw: HardwareConfig):
    return data.StructLayout({"addr": range(hw.pwl_max), "data": ENTRY})


class ArrayDut(wiring.Component):
    def __init__(self, hw: HardwareConfig, softmax=None):
        self.hw, self.softmax = hw, softmax
        super().__init__({
            **ports.control(hw),
            "ra": Out(ports.tok_read(hw)), "rb": Out(ports.tok_read(hw)), "w": Out(ports.tok_write(hw)),
            "kr": Out(ports.key_read(hw)), "kw": Out(ports.key_write(hw)),
            "vr": Out(ports.val_read(hw)), "vw": Out(ports.val_write(hw)),
            "sr": Out(score_read(hw)), "sw": Out(score_write(hw)),
            "i_w": In(stream.Signature(wfill_layout(hw))), "i_t": In(stream.Signature(tfill_layout(hw))),
        })

    def elaborate(self, platform):
        m = Module()
        hw = self.hw
        m.submodules.au = au = ArrayUnit(hw, self.softmax)
        m.submodules.ring = ring = WeightRing(hw)
        m.submodules.table = table = PwlTable(hw, hw.mac_rows)
        for p in ("start", "desc", "rows"):
            m.d.comb += getattr(au, p).eq(getattr(self, p))
        m.d.comb += self.done.eq(au.done)
        for p in ("ra", "rb", "w", "kr", "kw", "vr", "vw", "sr", "sw"):
            connect(m, getattr(au, p), wiring.flipped(getattr(self, p)))
        connect(m, au.wi, ring.issue)
        connect(m, au.wd, ring.drain)
        for r in range(hw.mac_rows):
            connect(m, au.table[r], table.rd[r])
        f = ring.fill
        m.d.comb += [f.addr.eq(self.i_w.payload.addr), f.data.eq(self.i_w.payload.data),
                     f.en.eq(self.i_w.valid & f.free), f.commit.eq(self.i_w.valid & f.free & self.i_w.payload.commit),
                     self.i_w.ready.eq(f.free)]
        m.d.comb += [table.wr.addr.eq(self.i_t.payload.addr), table.wr.data.eq(self.i_t.payload.data),
                     table.wr.en.eq(self.i_t.valid), self.i_t.ready.eq(1)]
        return m


def weight_beats(raw: bytes, m: int, k: int, hw: HardwareConfig) -> list:
    """A MATMUL's weight item (stream bytes) as ring fill beats: per m-tile 3 + k words."""
    C = hw.mac_cols
    tb = gstream.tile_bytes(k, hw)
    out = []
    for t in range(-(-m // C)):
        words = np.frombuffer(raw[t * tb:t * tb + (gstream.BIAS_WORDS + k) * C * 2], dtype="<i2").reshape(-1, C)
        out += [{"addr": i, "data": [int(v) for v in wd], "commit": int(i == len(words) - 1)}
                for i, wd in enumerate(words)]
    return out


def table_beats(base, slope) -> list:
    return [{"addr": i, "data": {"base": int(b), "slope": int(s)}} for i, (b, s) in enumerate(zip(base, slope))]
