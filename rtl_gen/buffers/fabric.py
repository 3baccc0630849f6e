"""The on-chip buffers and their ports: token buffers B0..B3, the key buffer KB and the value
banks VB (rtl_gen/buffers/ports.py describes the layouts). One operation runs at a time, so the fabric
simply routes each port to the memory it names: two token read ports (ra, rb: different
buffers), one token write port, and a read and a write port each for KB and VB.

Every memory has one synchronous read port and one write port with lane enables: block RAM.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from golden.hw import HardwareConfig
from golden.isa import TOKEN_BUFFERS

from ..primitives.ram import Ram
from . import ports


class Buffers(wiring.Component):
    def __init__(self, hw: HardwareConfig):
        self.hw = hw
        super().__init__({
            "ra": In(ports.tok_read(hw)), "rb": In(ports.tok_read(hw)), "w": In(ports.tok_write(hw)),
            "kr": In(ports.key_read(hw)), "kw": In(ports.key_write(hw)),
            "vr": In(ports.val_read(hw)), "vw": In(ports.val_write(hw)),
        })

    def elaborate(self, platform):
        m = Module()
        self._token_buffers(m)
        self._keys(m)
        self._values(m)
        return m

    def _token_buffers(self, m):
        hw, R = self.hw, self.hw.mac_rows
        ra, rb, w = self.ra, self.rb, self.w
        datas = []
        for b in TOKEN_BUFFERS:
            width = hw.buffer_width(b)
            m.submodules[f"tok{b}"] = mem = Ram(16, hw.tiles * width, R)
            a_hit, b_hit = ra.buf == b, rb.buf == b
            m.d.comb += [
                mem.raddr.eq(Mux(a_hit, ra.tile * width + ra.ch, rb.tile * width + rb.ch)),
                mem.ren.eq((ra.en & a_hit) | (rb.en & b_hit)),
                mem.waddr.eq(w.tile * width + w.ch), mem.wdata.eq(w.data),
                mem.wen.eq(Mux(w.buf == b, w.en, 0)),
            ]
            datas.append(mem.rdata)
        for port, name in ((ra, "ra"), (rb, "rb")):
            sel = Signal(2, name=f"{name}_sel")          # buffer of the last read: steers its data
            with m.If(port.en):
                m.d.sync += sel.eq(port.buf)
            with m.Switch(sel):
                for b, d in zip(TOKEN_BUFFERS, datas):
                    with m.Case(b):
                        m.d.comb += port.data.eq(d)

    def _keys(self, m):
        hw = self.hw
        m.submodules.kb = mem = Ram(16, hw.key_tiles * hw.d_max, hw.mac_cols)
        kw, kr = self.kw, self.kr
        m.d.comb += [mem.waddr.eq(kw.ktile * hw.d_max + kw.ch), mem.wdata.eq(kw.data), mem.wen.eq(kw.en),
                     mem.raddr.eq(kr.ktile * hw.d_max + kr.ch), mem.ren.eq(kr.en), kr.data.eq(mem.rdata)]

    def _values(self, m):
        hw, R, C = self.hw, self.hw.mac_rows, self.hw.mac_cols
        G = hw.d_max // C
        vw, vr = self.vw, self.vr
        lane = vw.ch[:(C - 1).bit_length()] if C > 1 else Const(0)
        onehot = Signal(C, name="vb_lane")
        m.d.comb += onehot.eq(Const(1, C) << lane)
        rb = (R - 1).bit_length()                       # R and C are powers of two
        sel = Signal(range(R), name="vb_sel")
        with m.If(vr.en):
            m.d.sync += sel.eq(vr.token[:rb] if rb else 0)
        datas = []
        for r in range(R):
            m.submodules[f"vb{r}"] = mem = Ram(16, hw.tiles * G, C)
            m.d.comb += [mem.waddr.eq(vw.tile * G + (vw.ch >> (C.bit_length() - 1))),
                         mem.wdata.eq(Cat(vw.data[r] for _ in range(C))),
                         mem.wen.eq(Mux(vw.en[r], onehot, 0)),
                         mem.raddr.eq((vr.token >> rb) * G + vr.grp), mem.ren.eq(vr.en)]
            datas.append(mem.rdata)
        with m.Switch(sel):
            for r in range(R):
                with m.Case(r):
                    m.d.comb += vr.data.eq(datas[r])
