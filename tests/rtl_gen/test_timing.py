"""The timing report (rtl_gen/tools/timing.py) on small designs whose paths are known: levels and
delays by the model, path ends at flip-flops, block RAM and DSP48, fanout and replication, port
models and paths across a black box, and the cell depth against Yosys's own `ltp`; then one real
unit through the cached per-part flow. Each Yosys run takes a few seconds."""
from __future__ import annotations

import json
import re
import subprocess

import pytest
from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.hw import HW_PRESETS
from rtl_gen.primitives.ram import Ram
from rtl_gen.tools import synthesis, timing
from rtl_gen.tools.timing import MODEL
from rtl_gen.tools.verilog import write_verilog


class Adder(wiring.Component):
    """a, b registered; (a + b) registered: one LUT and a carry chain per bit; `stages` extra
    registers split nothing (they follow the sum)."""

    def __init__(self, width: int):
        self.width = width
        super().__init__({"a": In(width), "b": In(width), "q": Out(width + 1)})

    def elaborate(self, platform):
        m = Module()
        ra, rb = Signal(self.width, name="ra"), Signal(self.width, name="rb")
        m.d.sync += [ra.eq(self.a), rb.eq(self.b), self.q.eq(ra + rb)]
        return m


class MuxTree(wiring.Component):
    """A registered 256:1 mux of registered data: LUT6 + MUXF7/8 levels and a LUT level."""

    def __init__(self):
        super().__init__({"d": In(256), "sel": In(8), "q": Out(1)})

    def elaborate(self, platform):
        m = Module()
        d, sel = Signal(256, name="d"), Signal(8, name="sel")
        m.d.sync += [d.eq(self.d), sel.eq(self.sel), self.q.eq(d.bit_select(sel, 1))]
        return m


class Fanout(wiring.Component):
    """One register enables `n` others; with `limit`, the enable carries max_fanout."""

    def __init__(self, n: int, limit: int = 0):
        self.n, self.limit = n, limit
        super().__init__({"e": In(1), "d": In(n), "q": Out(n)})

    def elaborate(self, platform):
        m = Module()
        en = Signal(attrs={"max_fanout": self.limit} if self.limit else {})
        m.d.sync += en.eq(self.e)
        with m.If(en):
            m.d.sync += self.q.eq(self.d)
        return m


class Child(wiring.Component):
    """i -> two LUT levels -> register; register -> one LUT -> o; i -> x (a feedthrough)."""

    def __init__(self):
        super().__init__({"i": In(8), "o": Out(1), "x": Out(1)})

    def elaborate(self, platform):
        m = Module()
        r = Signal(8)
        m.d.sync += r.eq(self.i ^ (self.i >> 1) ^ (self.i >> 3))
        m.d.comb += [self.o.eq(r.all()), self.x.eq(self.i.any())]
        return m


class Parent(wiring.Component):
    """register -> child.i ... child.o -> register: the path crosses the child."""

    def __init__(self):
        super().__init__({"i": In(8), "q": Out(2)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.child = c = Child()
        r = Signal(8)
        m.d.sync += [r.eq(self.i), self.q.eq(Signal.cast(c.o) ^ c.x)]
        m.d.comb += c.i.eq(r)
        return m


class Mac(wiring.Component):
    """Registered operands into a multiply-accumulate (DSP48E2: A/B registers packed or not)."""

    def __init__(self):
        super().__init__({"a": In(signed(16)), "b": In(signed(16)), "q": Out(signed(40))})

    def elaborate(self, platform):
        m = Module()
        ra, rb, acc = Signal(signed(16), name="ra"), Signal(signed(16), name="rb"), Signal(signed(40), name="acc")
        m.d.sync += [ra.eq(self.a), rb.eq(self.b), acc.eq(acc + ra * rb)]
        m.d.comb += self.q.eq(acc)
        return m


class RamRead(wiring.Component):
    """Block RAM read data -> one LUT (an XOR with a register) -> register."""

    def __init__(self):
        super().__init__({"addr": In(10), "k": In(32), "we": In(1), "q": Out(32)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.ram = ram = Ram(32, 1024)
        k, addr, we = Signal(32, name="k"), Signal(10, name="addr"), Signal(name="we")
        m.d.sync += [k.eq(self.k), addr.eq(self.addr), we.eq(self.we), self.q.eq(ram.rdata ^ k)]
        m.d.comb += [ram.raddr.eq(addr), ram.ren.eq(1), ram.waddr.eq(addr), ram.wdata.eq(k), ram.wen.eq(we)]
        return m


def _netlist(tmp_path, component, top, prep="", family="xcup") -> dict:
    v = write_verilog(component, top, tmp_path)
    raw = tmp_path / f"{top}.netlist.json"
    synthesis.synthesize(v, top, tmp_path, prep, family, raw)
    return json.loads(raw.read_text())


def _ltp(tmp_path, top) -> int:
    """Yosys's own longest path over the LUT, MUXF and CARRY cells of the mapped design."""
    script = (f"read_verilog {top}.v; synth_xilinx -family xcup -top {top} -flatten -noiopad; "
              f"ltp w:* t:LUT* %u t:CARRY* %u t:MUXF* %u")
    out = subprocess.run(["yosys", "-p", script], cwd=tmp_path, capture_output=True, text=True).stdout
    return int(re.search(r"Longest topological path in \S+ \(length=(\d+)\)", out).group(1))


def test_adder_levels_and_delay(tmp_path):
    t = timing.analyse(_netlist(tmp_path, Adder(48), "adder"), "adder")
    w = t.worst
    # one LUT into the chain; the 49-bit sum: thirteen CARRY4s (Yosys) = seven CARRY8s
    assert w.breakdown.get("CARRY8") == 7 and w.levels == 8, w.describe()
    assert w.start.startswith(("ra", "rb")) and w.start_kind == "FDRE", w.describe()
    assert w.end.startswith("q") and w.end_kind == "FDRE", w.describe()
    m = MODEL
    lo = m.ff_co + m.lut + m.carry_in + m.carry_out + m.ff_su
    assert lo < w.delay < lo + 2 * m.net_delay(4) + 13 * (m.carry_through + m.carry_net), w.describe()
    assert [s[0] for s in w.steps][0] == "FDRE" and w.steps[-1][2] <= w.delay


def test_mux_tree_matches_yosys_ltp(tmp_path):
    net = _netlist(tmp_path, MuxTree(), "muxtree")
    t = timing.analyse(net, "muxtree")
    assert t.worst.breakdown.get("MUXF7") and t.worst.levels >= 3, t.worst.describe()
    assert timing.cell_depth(net, "muxtree") == _ltp(tmp_path, "muxtree")
    net = _netlist(tmp_path, Adder(24), "adder24")
    assert timing.cell_depth(net, "adder24") == _ltp(tmp_path, "adder24")


def test_fanout_costs_and_replication(tmp_path):
    few = timing.analyse(_netlist(tmp_path, Fanout(8), "few"), "few").worst
    many = timing.analyse(_netlist(tmp_path, Fanout(1024), "many"), "many").worst
    rep = timing.analyse(_netlist(tmp_path, Fanout(1024, limit=32), "rep"), "rep").worst
    assert many.delay - few.delay == pytest.approx(MODEL.net_delay(1024) - MODEL.net_delay(8), abs=0.01)
    assert rep.delay == pytest.approx(MODEL.ff_co + MODEL.net_delay(32) + MODEL.ff_su, abs=0.01), rep.describe()


def test_port_model_and_a_path_through_a_black_box(tmp_path):
    child = timing.analyse(_netlist(tmp_path, Child(), "child"), "child")
    p = child.ports
    assert set(p.in_depth) >= {"i"} and set(p.out_arrival) == {"o"} and p.feed["i"] == {"x": pytest.approx(
        p.feed["i"]["x"])}
    assert p.out_arrival["o"][0] > MODEL.ff_co and p.in_depth["i"][0] > MODEL.ff_su
    # the parent with the child a black box: register -> child.i ... and child.x -> register
    net = _netlist(tmp_path, Parent(), "parent", prep="blackbox parent.child")
    alone = timing.analyse(net, "parent")
    seen = timing.analyse(net, "parent", boxes={"parent.child": p})
    assert seen.worst.delay > alone.worst.delay
    # the worst path runs register r -> (feedthrough i -> x) -> LUT -> register q
    w = seen.worst
    assert w.delay >= MODEL.ff_co + p.feed["i"]["x"] and w.breakdown.get("parent.child") == 1, w.describe()
    assert w.start.startswith("r") and w.end.startswith("q")


def test_dsp_and_block_ram_ends(tmp_path):
    # -family xc7 (the MAC array's mapping): Yosys packs the operand registers and the
    # accumulator into the DSP48E1 (AREG, BREG, PREG): no fabric path, the DSP's own path remains
    t = timing.analyse(_netlist(tmp_path, Mac(), "mac16", family="xc7"), "mac16")
    assert not t.paths and t.dsp_internal == MODEL.dsp_mult_p
    # -family xcup: Yosys 0.23 packs no register into a DSP48E2: the multiplier is a
    # combinational arc between fabric registers, the accumulator a fabric adder
    t = timing.analyse(_netlist(tmp_path / "up", Mac(), "mac16"), "mac16")
    w = t.worst
    assert w.breakdown.get("DSP48E2") == 1 and w.breakdown.get("CARRY8"), w.describe()
    assert w.delay > MODEL.ff_co + MODEL.dsp_mult_p
    r = timing.analyse(_netlist(tmp_path, RamRead(), "ramread"), "ramread").worst
    assert r.start_kind.startswith("RAMB") and r.levels == 1, r.describe()
    assert r.delay == pytest.approx(MODEL.bram_co + MODEL.net_delay(1) + MODEL.lut + MODEL.net_delay(1) + MODEL.ff_su,
                                    abs=0.01)


def test_model_budget():
    m = MODEL
    assert m.fmax(m.budget(300)) == pytest.approx(300)
    assert m.lut_levels(250) > m.lut_levels(300) > m.lut_levels(400) >= 1
    path = m.ff_co + m.lut_levels(300) * m.level() + m.net_delay(1) + m.ff_su
    assert path <= m.budget(300) < path + m.level()


def test_a_unit_through_the_cached_flow(tmp_path, monkeypatch):
    """The weight ring of the mini preset (a few seconds): synthesised once with its netlist,
    analysed, cached; the second call reads the cache."""
    monkeypatch.setattr(synthesis.settings, "BUILD", tmp_path)
    hw = HW_PRESETS["mini"]
    factory = synthesis.all_parts(hw)["ring"]
    t = timing.part_timing(hw, "ring", factory, {})
    assert t.worst is not None and t.worst.delay > 0 and t.ports.in_depth and t.ports.out_arrival
    cached = list((tmp_path / "synth" / "mini").glob("ring_mini-*.timing-*.json"))
    assert len(cached) == 1
    assert timing.part_timing(hw, "ring", factory, {}).worst == t.worst
