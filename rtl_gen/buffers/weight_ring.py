"""Weight ring: two slots, each one m-tile of a MATMUL (3 bias words, then k weight words of
mac_cols int16 lanes: golden/stream.py pack_weights). The stream loader fills slot after slot
as far ahead as the slots allow; the MATMUL sequencer issues the words of a slot to the MAC
array; the drain reads the slot's bias registers while the m-tile's outputs leave the array and
then releases the slot. A slot goes EMPTY -> (commit) FULL -> (issued) DRAINING -> (release)
EMPTY, so the loader never overwrites biases that are still draining.

    fill   loader: addr (0..2 bias words, 3.. weight rows), data, en, commit; free (slot empty)
    issue  sequencer: addr (weight row), en, data (sync read); avail (slot full); done (pulse)
    drain  drain: release (pulse); bias: the 48-bit biases of both slots
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden.hw import HardwareConfig
from golden.stream import BIAS_WORDS

from ..primitives.ram import Ram
from .ports import lanes

ACC_BITS = 48


def fill_port(hw: HardwareConfig) -> wiring.Signature:
    return wiring.Signature({"addr": Out(range(hw.k_max + BIAS_WORDS)), "data": Out(lanes(hw.mac_cols)),
                             "en": Out(1), "commit": Out(1), "free": In(1)})


def issue_port(hw: HardwareConfig) -> wiring.Signature:
    return wiring.Signature({"addr": Out(range(hw.k_max)), "en": Out(1), "data": In(lanes(hw.mac_cols)),
                             "avail": In(1), "done": Out(1)})


def bias_layout(hw: HardwareConfig):
    return data.ArrayLayout(data.ArrayLayout(signed(ACC_BITS), hw.mac_cols), 2)


def drain_port(hw: HardwareConfig) -> wiring.Signature:
    return wiring.Signature({"release": Out(1), "slot": In(1), "bias": In(bias_layout(hw))})


class WeightRing(wiring.Component):
    def __init__(self, hw: HardwareConfig):
        self.hw = hw
        super().__init__({"fill": In(fill_port(hw)), "issue": In(issue_port(hw)), "drain": In(drain_port(hw)),
                          "clear": In(1)})     # empty both slots (abort)

    def elaborate(self, platform):
        m = Module()
        C, K = self.hw.mac_cols, self.hw.k_max
        m.submodules.mem = mem = Ram(16, 2 * K, C)
        full, busy = Signal(2), Signal(2)          # full: ready to issue; busy: not yet released
        wslot, islot, rslot = Signal(), Signal(), Signal()
        f, i, d = self.fill, self.issue, self.drain
        m.d.comb += [f.free.eq(~busy.bit_select(wslot, 1)), i.avail.eq(full.bit_select(islot, 1)), d.slot.eq(rslot),
                     mem.waddr.eq(Mux(wslot, K, 0) + f.addr - BIAS_WORDS), mem.wdata.eq(f.data),
                     mem.wen.eq(Mux(f.en & (f.addr >= BIAS_WORDS), -1, 0)),
                     mem.raddr.eq(Mux(islot, K, 0) + i.addr), mem.ren.eq(i.en), i.data.eq(mem.rdata)]
        # a bias word lands a cycle after its fill, from registers (each enable loads 16 C bits:
        # replicated); the drain reads the biases only after the slot's weights have been issued
        bias_en = Signal(2 * BIAS_WORDS, name="bias_en", attrs={"max_fanout": 16})
        bias_data = Signal.like(f.data, name="bias_data")
        m.d.sync += [bias_en.eq(Cat(f.en & (wslot == s) & (f.addr == j) for s in range(2) for j in range(BIAS_WORDS))),
                     bias_data.eq(f.data)]
        for s in range(2):
            for j in range(BIAS_WORDS):
                with m.If(bias_en[s * BIAS_WORDS + j]):
                    m.d.sync += [d.bias[s][c][16 * j:16 * (j + 1)].eq(bias_data[c]) for c in range(C)]
        commit = Mux(f.commit, 1 << wslot, 0)
        m.d.sync += [full.eq((full | commit) & ~Mux(i.done, 1 << islot, 0)),
                     busy.eq((busy | commit) & ~Mux(d.release, 1 << rslot, 0))]
        with m.If(f.commit):
            m.d.sync += wslot.eq(~wslot)
        with m.If(i.done):
            m.d.sync += islot.eq(~islot)
        with m.If(d.release):
            m.d.sync += rslot.eq(~rslot)
        with m.If(self.clear):
            m.d.sync += [full.eq(0), busy.eq(0), wslot.eq(0), islot.eq(0), rslot.eq(0)]
        return m
