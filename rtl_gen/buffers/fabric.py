"""The on-chip buffers and their ports: token buffers B0..B3, the key buffer KB and the value
banks VB (rtl_gen/buffers/ports.py describes the layouts). One operation runs at a time, so the fabric
simply routes each port to the memory it names: two token read ports (ra, rb: different
buffers), one token write port, and a read and a write port each for KB and VB.

Every memory has one synchronous read port and one write port with lane enables: block RAM.
A read takes ports.READ_LATENCY (3) cycles, each of its ends at a register: the port (so the
unit's address logic and the port routes end there), the block RAM, then the read data after the
buffer select (so the RAM's clock-to-out and the select end there, before the unit's logic).
The data holds until the next read's arrives.

Every write goes through two registers before its memories (a write lands two cycles later;
nothing reads a buffer in the two cycles after the operation that writes it): the port, so the
unit's write logic and the port routes end there (the zcu102 top's deepest path was COMPACT's
write channel into a token buffer's address); then each memory's address (tile x width + ch),
enables and data, so only the block RAMs' own decode is left before them.
"""
from __future__ import annotations

from types import SimpleNamespace

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
        ra, rb, w = _read_port(m, self.ra, "ra"), _read_port(m, self.rb, "rb"), _registered(m, self.w, "tok_w")
        datas = []
        for b in TOKEN_BUFFERS:
            width = hw.buffer_width(b)
            m.submodules[f"tok{b}"] = mem = Ram(16, hw.tiles * width, R)
            a_hit, b_hit = ra.buf == b, rb.buf == b
            m.d.comb += [
                mem.raddr.eq(Mux(a_hit, ra.tile * width + ra.ch, rb.tile * width + rb.ch)),
                mem.ren.eq((ra.en & a_hit) | (rb.en & b_hit)),
            ]
            m.d.sync += [mem.waddr.eq(w.tile * width + w.ch), mem.wdata.eq(w.data),
                         mem.wen.eq(Mux(w.buf == b, w.en, 0))]
            datas.append(mem.rdata)
        for port, name in ((ra, "ra"), (rb, "rb")):
            sel = Signal(2, name=f"{name}_sel", attrs={"max_fanout": 16})   # the read's buffer: steers R x 16 bits
            with m.If(port.en):
                m.d.sync += sel.eq(port.buf)
            selected = Signal.like(port.data, name=f"{name}_selected")
            with m.Switch(sel):
                for b, d in zip(TOKEN_BUFFERS, datas):
                    with m.Case(b):
                        m.d.comb += selected.eq(d)
            port.data_in(selected)

    def _keys(self, m):
        hw = self.hw
        m.submodules.kb = mem = Ram(16, hw.key_tiles * hw.d_max, hw.mac_cols)
        kw, kr = _registered(m, self.kw, "kb_w"), _read_port(m, self.kr, "kr")
        m.d.sync += [mem.waddr.eq(kw.ktile * hw.d_max + kw.ch), mem.wdata.eq(kw.data), mem.wen.eq(kw.en)]
        m.d.comb += [mem.raddr.eq(kr.ktile * hw.d_max + kr.ch), mem.ren.eq(kr.en)]
        kr.data_in(mem.rdata)

    def _values(self, m):
        """VB: V[token t, channel ch] in C one-lane block RAMs, skewed: lane c = ch % C of token t
        lives in bank (c + t) % C at address t G + ch // C. A read (one token, C channels) takes
        one word from every bank at one address and rotates the words back by t % C; a write (one
        channel of R tokens) lands in R different banks, each at its token's address. (Banks by
        token, R memories C lanes wide and 42 deep on zcu102, map only to distributed RAM: 49k
        LUTs; these are 64 BRAM36.)"""
        hw, R, C = self.hw, self.hw.mac_rows, self.hw.mac_cols
        G = hw.d_max // C
        cb = (C - 1).bit_length()                       # R and C are powers of two
        vw, vr = _registered(m, self.vw, "vb_w"), _read_port(m, self.vr, "vr")
        rot = Signal(range(C), name="vb_rot")           # the read token's skew: steers its data
        with m.If(vr.en):
            m.d.sync += rot.eq(vr.token[:cb] if cb else 0)
        raddr = Signal(range(hw.tiles * R * G), name="vb_raddr")
        m.d.comb += raddr.eq(_times(vr.token, G) + vr.grp)
        # the write: the R lanes placed at banks s .. s + R - 1 (mod C), s = (c + tile R) % C, each
        # with its token's address, one adder a stage: the port registered; the skew and the
        # tile's base address; the banks' lanes and addresses (a write lands three cycles later:
        # nothing reads VB that soon after the operation that writes it)
        skew = Signal(range(C), name="vb_skew", attrs={"max_fanout": 16})    # rotates 16 C + C bits
        base = Signal(range(hw.tiles * R * G), name="vb_wbase")
        data, en = Signal.like(vw.data, name="vb_wlanes"), Signal.like(vw.en, name="vb_wlanes_en")
        m.d.sync += [skew.eq((vw.ch + vw.tile * R)[:cb] if cb else 0),
                     base.eq(_times(vw.tile, R * G) + (vw.ch >> cb)), data.eq(vw.data), en.eq(vw.en)]
        lane_data = Cat(data.as_value(), Const(0, 16 * (C - R)))
        lane_en = Cat(en, Const(0, C - R))
        bank_data = Signal(16 * C, name="vb_wdata")
        bank_en = Signal(C, name="vb_wen")
        m.d.sync += [bank_data.eq((Cat(lane_data, lane_data) << (skew * 16))[16 * C:]),
                     bank_en.eq((Cat(lane_en, lane_en) << skew)[C:])]
        words = []
        for j in range(C):
            m.submodules[f"vb{j}"] = mem = Ram(16, hw.tiles * R * G)
            r = Signal(range(C), name=f"vb_row{j}")     # the token (lane) this bank takes
            waddr = Signal.like(mem.waddr, name=f"vb_waddr{j}")
            m.d.comb += r.eq((j - skew)[:cb] if cb else 0)
            m.d.sync += waddr.eq(base + _times(r, G))
            m.d.comb += [mem.waddr.eq(waddr), mem.wdata.eq(bank_data[16 * j:16 * (j + 1)]),
                         mem.wen.eq(bank_en[j]), mem.raddr.eq(raddr), mem.ren.eq(vr.en)]
            words.append(mem.rdata)
        vr.data_in((Cat(*words, *words) >> (rot * 16))[:16 * C])


def _registered(m, port, name: str) -> SimpleNamespace:
    """The members of a write port, each through a register."""
    regs = {}
    for member in port.signature.members:
        value = getattr(port, member)
        regs[member] = Signal(value.shape(), name=f"{name}_{member}")
        m.d.sync += regs[member].eq(value)
    return SimpleNamespace(**regs)


def _read_port(m, port, name: str) -> SimpleNamespace:
    """A read port's request members through a register (the memory sees them a cycle later),
    and `data_in(value)`: the memory's read data (a cycle after the memory's enable) into a
    register that loads a cycle after that and holds, driving the port's data."""
    assert ports.READ_LATENCY == 3
    regs = {}
    for member in (n for n in port.signature.members if n != "data"):
        value = getattr(port, member)
        regs[member] = Signal(value.shape(), name=f"{name}_{member}_q")
        m.d.sync += regs[member].eq(value)
    arrived = Signal(name=f"{name}_arrived", attrs={"max_fanout": 16})   # the memory's data is this cycle's
    m.d.sync += arrived.eq(regs["en"])
    data_q = Signal.like(port.data, name=f"{name}_data_q")

    def data_in(value):
        with m.If(arrived):
            m.d.sync += data_q.eq(value)
    m.d.comb += port.data.eq(data_q)
    return SimpleNamespace(**regs, data=data_q, data_in=data_in)


def _times(value, k: int):
    """value x the constant k as shifted adds (Yosys would put a constant product in a DSP48)."""
    terms = [value << i for i in range(k.bit_length()) if k >> i & 1]
    return sum(terms[1:], terms[0])
