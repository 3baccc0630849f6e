"""Formal harness of the array unit (rtl_gen/array/unit.py): the stream handshakes between its
parts (sequencers, fetch, MAC array, drain, epilogue, softmax unit and the softmax's exp and
reciprocal units).

  asserted  lib.stream rule 2 on every stream of every component inside the unit: once valid,
            valid and payload hold until ready (a producer that withdraws or changes a beat,
            or drops one its consumer did not take, fails it)
  assumed   what the rest of the accelerator guarantees: `start` only while no operation runs,
            `desc` and `rows` (at most n_max) held while it does; every read port changes
            its data only a read's latency after its enable: the buffer fabric's (token buffers,
            KB, VB) READ_LATENCY cycles (rtl_gen/buffers/ports.py), the weight ring's and the PWL
            tables' one; the weight ring changes the draining slot and its biases only after a
            release; everything else (descriptor fields, memory
            contents, `avail`) is free

    formal.prove(ArrayUnitFormal(hw, scope="inductive"), depth=3, workdir=path, induction=True)  # for all time
    formal.prove(ArrayUnitFormal(hw), depth=6, workdir=path)                                   # all, bounded

scope "inductive" leaves out the streams whose producer does not wait for ready (NO_BACKPRESSURE):
their rule holds only by a whole-unit invariant, so only BMC from reset (scope "all") checks them.

Rule 3 (valid must not follow ready) is structural: formal.ready_to_valid(ArrayUnit(hw), path).
"""
from __future__ import annotations

import re

from amaranth.hdl import Assume, Signal, Value
from amaranth.lib import wiring

from golden.hw import HardwareConfig

from ..buffers import ports
from ..tools import formal
from .unit import ArrayUnit

FABRIC_READS = ("ra", "rb", "kr", "vr")       # the buffer fabric's: ports.READ_LATENCY cycles
ONE_CYCLE_READS = ("wi",)                     # the weight ring's (and the PWL tables')
# streams whose producer does not wait for ready (the consumer always has room, an invariant
# of the whole unit that k-induction cannot see: the drain's credits for the epilogue's score
# FIFO and the fetch's for its operand FIFO): rule 2 holds from reset, checked by BMC
NO_BACKPRESSURE = re.compile(r"dut\.(fetch\.o_info|drain\.i_info|att\.softmax\.recip\d+\.i_d|epi\.sm\.i"
                             r"|fetch\.fifo\.i)")


class ArrayUnitFormal(wiring.Component):
    """`unit`: the design under proof (default ArrayUnit(hw))."""

    def __init__(self, hw: HardwareConfig, unit: ArrayUnit | None = None, scope: str = "all"):
        if scope not in ("all", "inductive"):
            raise ValueError(f"scope must be 'all' or 'inductive' (got {scope!r})")
        self.hw, self.unit, self.scope = hw, unit or ArrayUnit(hw), scope
        super().__init__({})

    def elaborate(self, platform):
        m = formal.harness_module()
        unit = self.unit
        tree = formal.elaborate(unit)
        m.submodules.dut = formal.Prebuilt(tree)
        self._operations(m, unit, dict(formal.components(tree, "dut")))
        for name in FABRIC_READS:
            block_ram_read(m, getattr(unit, name), ports.READ_LATENCY)
        for name in ONE_CYCLE_READS:
            block_ram_read(m, getattr(unit, name))
        for r in range(self.hw.mac_rows):
            block_ram_read(m, unit.table[r])
        m.d.comb += formal.free(unit.wi.avail)
        self._weight_ring(m, unit.wd)
        formal.stream_rules(m, tree, "dut",
                            checked=lambda path: self.scope == "all" or not NO_BACKPRESSURE.fullmatch(path))
        return m

    def _operations(self, m, unit, parts):
        """`start` only once every part is idle (as after `done`); `desc` and `rows` held while
        a sequencer runs (weaker than the controller's "until done": the rest uses copies).
        Stated on the parts' own idle outputs, so that k-induction sees them too."""
        seq = parts["dut.mm"].busy | parts["dut.att"].busy
        idle = ~seq & parts["dut.fetch"].idle & parts["dut.mac"].idle & parts["dut.drain"].idle & parts["dut.epi"].idle
        m.d.comb += formal.free(unit.start, unit.desc, unit.rows)
        m.d.comb += [Assume(unit.rows <= self.hw.n_max), Assume(~unit.start | idle)]
        held(m, unit.start | seq, unit.desc, unit.rows)

    def _weight_ring(self, m, wd):
        """The draining slot and its biases change only after a release."""
        m.d.comb += formal.free(wd.slot, wd.bias)
        held(m, ~wd.release, wd.slot, wd.bias[wd.slot])


def held(m, cond, *signals) -> None:
    """Assume each signal unchanged in every cycle in which `cond` (sampled the cycle before) holds."""
    was = Signal()
    m.d.sync += was.eq(cond)
    for sig in signals:
        sig = Value.cast(sig)
        before = Signal(len(sig))
        m.d.sync += before.eq(sig)
        with m.If(was):
            m.d.comb += Assume(sig == before)


def block_ram_read(m, port, latency: int = 1) -> None:
    """A read port: any data `latency` cycles after `en`, held until the next read's arrives."""
    m.d.comb += formal.free(port.data)
    en = port.en
    for _ in range(latency - 1):
        en_q = Signal()
        m.d.sync += en_q.eq(en)
        en = en_q
    held(m, ~en, port.data)
