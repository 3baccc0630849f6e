"""Logic depth and a delay estimate of every unit after Yosys synth_xilinx (`spvit report --timing`).

Yosys maps each part (rtl_gen/tools/synthesis.py: the same parts, flow and cache as `--synth`)
and writes the mapped netlist; this module walks it: every register-to-register path (flip-flop,
block RAM, DSP48, LUT RAM, SRL or a module port at either end), its logic levels (LUTs, MUXF7/8,
carry chains) and its delay by the `DelayModel` below (docs/rtl.md, "Timing budget": every
number, its source or that it is an assumption). It is not Vivado: no placement, no routing,
no clock skew; the model stands in for them with a per-net delay that grows with fanout.

What Yosys 0.23 itself offers was tried first (docs/rtl.md): `ltp` counts cells on the longest
topological path but walks through the vendor flip-flops (it knows only Yosys's own FF cells, so
`-noff` does not stop at FDRE), and weighs a CARRY4 like a LUT; `sta` uses the 7-series
(Artix-7) delays of cells_sim.v and has no arcs for CARRY4 ("has no timing arcs"), so adder paths
vanish. `ltp` restricted to the combinational cells is kept as a cross-check of the cell depth
(tests/rtl_gen/test_timing.py).

A part is analysed once from its registers (register -> register paths, register -> output
port arrivals) and once from its input ports (input -> register depths and input -> output
feedthroughs): its *port model*. A part that instantiates another as a black box (the array
unit and its MAC array; the top and every unit) uses the black box's port model, so the top's
analysis finds the paths that cross unit boundaries.

    t = analyse(netlist_json, top, MODEL, models={"mac": mac_port_model})
    t.worst.delay, t.worst.levels, t.worst.start, t.worst.end, MODEL.fmax(t.worst.delay)
"""
from __future__ import annotations

import gzip
import hashlib
import json
import math
from collections import defaultdict, deque
from dataclasses import asdict, dataclass, field

from base.outputs import replace_text
from golden.hw import HardwareConfig

from . import synthesis

LUTS = {f"LUT{i}" for i in range(1, 7)}
MUXF = {"MUXF7", "MUXF8", "MUXF9"}
CARRY = {"CARRY4": 4, "CARRY8": 8}
FFS = {"FDRE", "FDSE", "FDCE", "FDPE"}
BRAMS = {"RAMB18E1", "RAMB36E1", "RAMB18E2", "RAMB36E2"}
DSPS = {"DSP48E1", "DSP48E2"}
SRLS = {"SRL16E", "SRLC32E"}
CLOCK_PINS = {"C", "CLK", "CLKARDCLK", "CLKBWRCLK", "WCLK", "CLKA", "CLKB"}
IGNORED = {"BUFG", "BUFGCTRL", "IBUF", "OBUF", "VCC", "GND", "INV"}


@dataclass(frozen=True)
class DelayModel:
    """Delays in ns of an XCZU9EG-2 (UltraScale+, -2, VCCINT 0.85 V) and how a path spends them.
    docs/rtl.md ("Timing budget") gives each value's source; the ones marked there as assumptions
    are ours. A path's delay: start (clock-to-out) + per cell its arc + per net its net delay +
    end (setup); it meets clock f when delay + uncertainty <= 1000 / f."""
    lut: float = 0.15               # LUT1..6 input -> output
    muxf: float = 0.10              # MUXF7/8 (inside a slice, no net before it)
    net: float = 0.40               # a net with few loads, after placement (assumption)
    fanout_local: int = 16          # loads a net reaches without extra delay
    fanout_step: float = 0.20       # per doubling of the loads beyond that (assumption)
    derate: float = 1.15            # routing allowance of a full device on every net (assumption)
    carry_in: float = 0.115         # S / DI -> CO / O of a CARRY8
    carry_through: float = 0.015    # CI -> CO of a CARRY8
    carry_out: float = 0.116        # CI -> O of a CARRY8
    carry_net: float = 0.026        # CO -> CI between CARRY8s
    lut_to_carry: float = 0.011     # LUT -> CARRY8 S / DI in the same slice
    ff_co: float = 0.10             # FDRE C -> Q
    ff_su: float = 0.05             # FDRE D / CE / R setup
    bram_co: float = 0.83           # RAMB36E2 CLK -> DOUT, no output register
    bram_co_reg: float = 0.30       # with the output register (DOx_REG = 1)
    bram_su: float = 0.45           # RAMB36E2 address / enable / data setup (assumption)
    dsp_co: float = 0.50            # DSP48E2 CLK -> P with PREG (assumption)
    dsp_su: float = 0.35            # into an enabled input register, CE, RST (assumption)
    dsp_mult_p: float = 1.84        # A / B pin -> multiplier -> ALU -> P register (1 / 544 MHz)
    dsp_mult_m: float = 1.00        # A / B pin -> multiplier -> M register (assumption)
    dsp_alu_p: float = 0.90         # C / OPMODE / ALUMODE / CARRYIN pin -> ALU -> P register (assumption)
    dsp_full: float = 1.29          # register to register inside a fully pipelined DSP48E2 (1 / 775 MHz)
    lutram_co: float = 0.90         # LUT RAM WCLK -> O (assumption)
    lutram_su: float = 0.50         # LUT RAM write address / data / enable setup (assumption)
    srl_co: float = 1.00            # SRL CLK -> Q (assumption)
    uncertainty: float = 0.15       # clock uncertainty and skew (assumption)

    def net_delay(self, fanout: int) -> float:
        extra = self.fanout_step * math.log2(fanout / self.fanout_local) if fanout > self.fanout_local else 0.0
        return self.derate * (self.net + extra)

    def level(self) -> float:
        """One LUT and the net into it: the unit of the budget tables."""
        return self.lut + self.net_delay(1)

    def fmax(self, delay: float) -> float:
        """MHz that a path of `delay` ns supports."""
        return 1000.0 / (delay + self.uncertainty)

    def budget(self, mhz: float) -> float:
        """ns a register-to-register path may take at `mhz` (its start and end included)."""
        return 1000.0 / mhz - self.uncertainty

    def lut_levels(self, mhz: float, start: float | None = None, end: float | None = None) -> int:
        """LUT levels (nets of few loads) that fit at `mhz` between a start and an end (default
        flip-flop to flip-flop): the net after the last LUT is counted too."""
        start = self.ff_co if start is None else start
        end = self.ff_su if end is None else end
        room = self.budget(mhz) - start - end - self.net_delay(1)
        return max(0, int(room // self.level()))


MODEL = DelayModel()


@dataclass
class Path:
    delay: float
    levels: int                  # LUTs + MUXFs + carry chains (CARRY8s, two CARRY4s per CARRY8)
    breakdown: dict              # cell type -> count along the path
    start: str
    end: str
    start_kind: str
    end_kind: str
    steps: list = field(default_factory=list)    # [cell type, the net it drives, arrival ns] from start to end

    def describe(self) -> str:
        kinds = " ".join(f"{k}={v}" for k, v in sorted(self.breakdown.items()))
        return (f"{self.delay:.2f} ns, {self.levels} levels ({kinds or 'none'}): {self.start} ({self.start_kind}) -> "
                f"{self.end} ({self.end_kind})")


@dataclass
class PortModel:
    """A part as seen from outside: per output port the latest arrival from its registers, per
    input port the longest delay to its registers (setup included), and input -> output
    feedthroughs (ns), each with the register at the inner end."""
    out_arrival: dict = field(default_factory=dict)      # port -> [ns, start register]
    in_depth: dict = field(default_factory=dict)         # port -> [ns, end register]
    feed: dict = field(default_factory=dict)             # input port -> {output port: ns}

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class PartTiming:
    worst: Path | None           # register to register inside the part (through black boxes' models)
    paths: list                  # the worst path per end register, longest first (a few)
    ports: PortModel
    dsp_internal: float          # the slowest register-to-register path inside a DSP48
    cells: int

    def as_dict(self) -> dict:
        return {"worst": asdict(self.worst) if self.worst else None, "paths": [asdict(p) for p in self.paths],
                "ports": self.ports.as_dict(), "dsp_internal": self.dsp_internal, "cells": self.cells}

    @staticmethod
    def from_dict(d: dict) -> "PartTiming":
        return PartTiming(Path(**d["worst"]) if d["worst"] else None, [Path(**p) for p in d["paths"]],
                          PortModel(**d["ports"]), d["dsp_internal"], d["cells"])


def _param(params: dict, name: str, default: int = 0) -> int:
    """A cell parameter as Yosys's JSON writes it: an int, or a string of binary digits."""
    v = params.get(name)
    if v is None:
        return default
    if isinstance(v, int):
        return v
    v = v.strip()
    if v and set(v) <= {"0", "1"}:
        return int(v, 2)
    return int(v) if v.isdigit() else default


def _bus(pin: str) -> str:
    return pin.split("[")[0]


class _Cell:
    """One netlist cell as the analysis sees it: start pins (their clock-to-out), end pins
    (their setup), combinational arcs (input pins -> output pins, delay)."""
    __slots__ = ("name", "type", "conn", "dirs", "params", "starts", "ends", "arcs", "internal")

    def __init__(self, name: str, c: dict):
        self.name, self.type = name.lstrip("\\"), c["type"].lstrip("\\")
        self.conn, self.dirs, self.params = c["connections"], c.get("port_directions", {}), c.get("parameters", {})
        self.starts: dict = {}            # output pin -> ns
        self.ends: dict = {}              # input pin -> ns
        self.arcs: list = []              # (input pins, output pins, ns)
        self.internal = 0.0               # a register-to-register path inside the cell (DSP48)

    def pins(self, direction: str) -> list:
        return [p for p in self.conn if self.dirs.get(p) == direction and p not in CLOCK_PINS]


def _classify(cell: _Cell, model: DelayModel, boxes: dict) -> None:
    t, ins, outs = cell.type, cell.pins("input"), cell.pins("output")
    if t in LUTS:
        cell.arcs.append((ins, outs, model.lut))
    elif t in MUXF:
        cell.arcs.append((ins, outs, model.muxf))
    elif t in CARRY:
        data = [p for p in ins if p != "CI"]
        cell.arcs += [(data, outs, model.carry_in), (["CI"], ["CO"], model.carry_through * CARRY[t] / 8),
                      (["CI"], ["O"], model.carry_out)]
    elif t in FFS:
        cell.starts = {p: model.ff_co for p in outs}
        cell.ends = {p: model.ff_su for p in ins}
    elif t in BRAMS:
        for p in outs:        # DOUTADOUT / DOUTPADOUTP (port A), DOUTBDOUT / DOUTPBDOUTP (port B); E1: DOADO, DOBDO
            port_b = p.startswith(("DOUTB", "DOUTPB", "DOB", "DOPB"))
            reg = _param(cell.params, "DOB_REG" if port_b else "DOA_REG")
            cell.starts[p] = model.bram_co_reg if reg else model.bram_co
        cell.ends = {p: model.bram_su for p in ins}
    elif t in DSPS:
        _dsp(cell, ins, outs, model)
    elif t in SRLS:
        addr = [p for p in ins if p.startswith("A")]
        cell.starts = {p: model.srl_co for p in outs}
        cell.arcs.append((addr, outs, model.lut))
        cell.ends = {p: model.ff_su for p in ins if p not in addr}
    elif t.startswith("RAM") and not t.startswith("RAMB"):      # LUT RAM: a LUT read, a clocked write
        read = [p for p in ins if p.startswith(("ADDRA", "ADDRB", "ADDRC", "DPRA", "A", "RADR"))
                and not p.startswith("ADDRD")]
        cell.starts = {p: model.lutram_co for p in outs}
        cell.arcs.append((read, outs, model.lut))
        cell.ends = {p: model.lutram_su for p in ins if p not in read}
    elif t in boxes:                                  # a black box with a port model
        pm: PortModel = boxes[t]
        cell.starts = {p: pm.out_arrival[p][0] for p in outs if p in pm.out_arrival}
        cell.ends = {p: pm.in_depth[p][0] for p in ins if p in pm.in_depth}
        for src, dsts in pm.feed.items():
            for dst, ns in dsts.items():
                if src in cell.conn and dst in cell.conn:
                    cell.arcs.append(([src], [dst], ns))
    elif t not in IGNORED:                            # unknown: a register boundary at each port
        cell.starts = {p: 0.0 for p in outs}
        cell.ends = {p: 0.0 for p in ins}


def _dsp(cell: _Cell, ins: list, outs: list, model: DelayModel) -> None:
    """DSP48E1/E2 by its register configuration: a pin into an enabled register ends a path
    there; a pin that feeds the multiplier or the ALU combinationally carries that delay to the
    next register (M or P) or, without one, through to P."""
    reg = {k: _param(cell.params, k, 1) for k in ("AREG", "BREG", "CREG", "DREG", "MREG", "PREG", "OPMODEREG",
                                                   "ALUMODEREG", "CARRYINREG", "INMODEREG")}
    out = [p for p in outs if p in ("P", "PCOUT", "CARRYOUT", "CARRYCASCOUT", "PATTERNDETECT", "OVERFLOW",
                                    "UNDERFLOW", "XOROUT")]
    which = {"A": "AREG", "ACIN": "AREG", "B": "BREG", "BCIN": "BREG", "D": "DREG", "INMODE": "INMODEREG",
             "C": "CREG", "OPMODE": "OPMODEREG", "ALUMODE": "ALUMODEREG", "CARRYIN": "CARRYINREG",
             "CARRYINSEL": "OPMODEREG"}
    for p in ins:
        if p.startswith(("CE", "RST")):
            cell.ends[p] = model.dsp_su
            continue
        r = which.get(p)
        if r is None:                                 # cascades (PCIN, CARRYCASCIN, MULTSIGNIN): into the ALU
            r, alu = "OPMODEREG", True
        else:
            alu = r in ("CREG", "OPMODEREG", "ALUMODEREG", "CARRYINREG")
        if reg[r] and p not in ("PCIN", "CARRYCASCIN", "MULTSIGNIN"):
            cell.ends[p] = model.dsp_su
        elif not alu and reg["MREG"]:
            cell.ends[p] = model.dsp_mult_m
        elif reg["PREG"]:
            cell.ends[p] = model.dsp_alu_p if alu else model.dsp_mult_p
        else:
            cell.arcs.append(([p], out, (model.dsp_alu_p if alu else model.dsp_mult_p) - model.ff_su))
    if reg["PREG"]:
        cell.starts = {p: model.dsp_co for p in out}
    # the slowest path between two of the DSP's own registers (DS925 FMAX of the configuration)
    if reg["MREG"]:
        cell.internal = model.dsp_full
    elif (reg["AREG"] or reg["BREG"]) and reg["PREG"]:
        cell.internal = model.dsp_mult_p


class _Netlist:
    """The mapped netlist as bits, drivers and loads, each cell classified."""

    def __init__(self, module: dict, model: DelayModel, boxes: dict):
        self.model = model
        self.names: dict = {}
        self.max_fanout: dict = {}               # bit -> the max_fanout attribute of its net
        for name, net in sorted(module["netnames"].items(), key=lambda kv: (kv[1].get("hide_name", 0), len(kv[0]))):
            n = name.lstrip("\\")
            limit = _param(net.get("attributes", {}), "max_fanout")
            for i, b in enumerate(net["bits"]):
                if isinstance(b, int) and b not in self.names:
                    self.names[b] = n if len(net["bits"]) == 1 else f"{n}[{i}]"
                if isinstance(b, int) and limit:
                    self.max_fanout[b] = limit
        self.inputs, self.outputs = {}, {}
        for pname, port in module["ports"].items():
            (self.inputs if port["direction"] == "input" else self.outputs)[pname] = \
                [b for b in port["bits"] if isinstance(b, int)]
        self.cells: list[_Cell] = []
        self.driver: dict = {}                   # bit -> cell index
        self.loads: dict = defaultdict(int)      # bit -> number of input pins it drives
        for name, c in module["cells"].items():
            cell = _Cell(name, c)
            _classify(cell, model, boxes)
            i = len(self.cells)
            self.cells.append(cell)
            for pin, bits in cell.conn.items():
                d = cell.dirs.get(pin)
                for b in bits:
                    if isinstance(b, int):
                        if d == "output":
                            self.driver[b] = i
                        elif d == "input" and pin not in CLOCK_PINS:
                            self.loads[b] += 1
        for bits in self.outputs.values():
            for b in bits:
                self.loads[b] += 1
        self._replicate()

    def _replicate(self):
        """A flip-flop whose net carries `max_fanout` N is replicated by Vivado (synthesis and
        phys_opt honour the attribute): each copy drives at most N loads, and the copies' D input
        drives one load per copy."""
        for b, limit in self.max_fanout.items():
            d = self.driver.get(b)
            if d is None or self.cells[d].type not in FFS or self.loads[b] <= limit:
                continue
            copies = -(-self.loads[b] // limit)
            self.loads[b] = limit
            for pin in ("D", "CE", "R", "S"):
                for x in self.cells[d].conn.get(pin, ()):
                    if isinstance(x, int):
                        self.loads[x] += copies - 1
    def wire(self, b: int, sink: _Cell, pin: str) -> float:
        """Net delay from bit b's driver to `sink`'s `pin`."""
        m = self.model
        d = self.driver.get(b)
        dtype = self.cells[d].type if d is not None else ""
        if sink.type in MUXF and (dtype in LUTS or dtype in MUXF):
            return 0.0
        if sink.type in CARRY:
            if pin == "CI" and dtype in CARRY:
                return m.carry_net * CARRY[sink.type] / 8
            if dtype in LUTS and self.loads[b] == 1:
                return m.lut_to_carry
        if dtype in DSPS and pin in ("PCIN", "ACIN", "BCIN", "CARRYCASCIN", "MULTSIGNIN"):
            return 0.016
        return m.net_delay(self.loads[b])

    def name(self, b: int) -> str:
        return self.names.get(b, f"net{b}")

    def register(self, cell: _Cell) -> str:
        """A readable name of a path end inside `cell`: a flip-flop's register bit, else the cell."""
        if cell.type in FFS:
            q = cell.conn.get("Q", [None])[0]
            return self.name(q) if isinstance(q, int) else cell.name
        return cell.name

    def order(self) -> list:
        """Cells with combinational arcs in topological order (Kahn's algorithm)."""
        comb = [i for i, c in enumerate(self.cells) if c.arcs]
        out_of = {}
        for i in comb:
            for _, outs, _ in self.cells[i].arcs:
                for p in outs:
                    for b in self.cells[i].conn.get(p, ()):
                        if isinstance(b, int):
                            out_of[b] = i
        deps, users = {}, defaultdict(list)
        for i in comb:
            srcs = {out_of[b] for ins, _, _ in self.cells[i].arcs for p in ins for b in self.cells[i].conn.get(p, ())
                    if isinstance(b, int) and b in out_of and out_of[b] != i}
            deps[i] = len(srcs)
            for s in srcs:
                users[s].append(i)
        ready = deque(i for i in comb if deps[i] == 0)
        done = []
        while ready:
            i = ready.popleft()
            done.append(i)
            for u in users[i]:
                deps[u] -= 1
                if deps[u] == 0:
                    ready.append(u)
        if len(done) != len(comb):
            raise RuntimeError(f"combinational loop through {len(comb) - len(done)} cells "
                               f"(e.g. {next(self.cells[i].name for i in comb if deps[i])})")
        return done


def _levels(cell_type: str) -> tuple:
    """(LUT, MUXF, CARRY8 halves, other) added by one cell on a path."""
    if cell_type in LUTS:
        return (1, 0, 0, 0)
    if cell_type in MUXF:
        return (0, 1, 0, 0)
    if cell_type in CARRY:
        return (0, 0, CARRY[cell_type] // 4, 0)
    return (0, 0, 0, 1)


def _forward_registers(nl: _Netlist, order: list, box_starts: dict):
    """Arrival (ns, levels, previous bit, start) of every bit reached from a register."""
    arr = {}
    for i, c in enumerate(nl.cells):
        for p, t in c.starts.items():
            for b in c.conn[p]:
                if isinstance(b, int):
                    start = box_starts.get((i, p)) or (nl.register(c) if c.type in FFS else f"{c.name}.{p}", c.type)
                    arr[b] = (t, (0, 0, 0, 0), None, start)
    for i in order:
        c = nl.cells[i]
        step = _levels(c.type)
        for ins, outs, d in c.arcs:
            best = None
            for p in ins:
                for b in c.conn.get(p, ()):
                    if isinstance(b, int) and b in arr:
                        t = arr[b][0] + nl.wire(b, c, p) + d
                        if best is None or t > best[0]:
                            best = (t, b)
            if best is None:
                continue
            t, b = best
            lv = tuple(x + y for x, y in zip(arr[b][1], step))
            for p in outs:
                for o in c.conn.get(p, ()):
                    if isinstance(o, int) and (o not in arr or arr[o][0] < t):
                        arr[o] = (t, lv, b, arr[b][3])
    return arr


def _forward_inputs(nl: _Netlist, order: list) -> dict:
    """For every bit reached from an input port: {input port: latest arrival (ns)}."""
    arr: dict = {}
    for port, bits in nl.inputs.items():
        for b in bits:
            arr.setdefault(b, {})[port] = 0.0
    for i in order:
        c = nl.cells[i]
        for ins, outs, d in c.arcs:
            acc: dict = {}
            for p in ins:
                for b in c.conn.get(p, ()):
                    if isinstance(b, int) and b in arr:
                        w = nl.wire(b, c, p) + d
                        for src, t in arr[b].items():
                            if acc.get(src, -1.0) < t + w:
                                acc[src] = t + w
            if not acc:
                continue
            for p in outs:
                for o in c.conn.get(p, ()):
                    if isinstance(o, int):
                        cur = arr.setdefault(o, {})
                        for src, t in acc.items():
                            if cur.get(src, -1.0) < t:
                                cur[src] = t
    return arr


def _path(nl: _Netlist, arr: dict, b: int, total: float, end: str, end_kind: str) -> Path:
    t, lv, _, (start, start_kind) = arr[b]
    breakdown, steps = {}, []
    x = b
    while x is not None:
        d = nl.driver.get(x)
        prev = arr[x][2]
        typ = nl.cells[d].type if d is not None else "port"
        steps.append([typ, nl.name(x), round(arr[x][0], 3)])
        if prev is not None and d is not None:
            key = "CARRY8" if typ in CARRY else typ
            breakdown[key] = breakdown.get(key, 0) + 1
        x = prev
    steps.reverse()
    if "CARRY8" in breakdown:           # count CARRY8s: two CARRY4s make one
        breakdown["CARRY8"] = -(-lv[2] // 2)
    levels = lv[0] + lv[1] + -(-lv[2] // 2)
    return Path(round(total, 3), levels, breakdown, start, end, start_kind, end_kind, steps)


def analyse(netlist: dict, top: str, model: DelayModel = MODEL, boxes: dict | None = None, keep: int = 8) -> PartTiming:
    """Timing of module `top` of a Yosys JSON netlist. `boxes`: black-box cell type -> PortModel
    (the part's own black boxes: their ports' arrivals, depths and feedthroughs)."""
    boxes = boxes or {}
    module = netlist["modules"][top]
    nl = _Netlist(module, model, boxes)
    order = nl.order()
    box_starts = {}
    for i, c in enumerate(nl.cells):
        if c.type in boxes:
            pm = boxes[c.type]
            for p in c.starts:
                box_starts[(i, p)] = (f"{c.name}.{p} <- {pm.out_arrival[p][1]}", c.type)
    arr = _forward_registers(nl, order, box_starts)
    # register -> register: the worst arrival at each end register
    per_end: dict = {}
    for i, c in enumerate(nl.cells):
        for p, su in c.ends.items():
            for b in c.conn.get(p, ()):
                if isinstance(b, int) and b in arr:
                    total = arr[b][0] + nl.wire(b, c, p) + su
                    if i not in per_end or per_end[i][0] < total:
                        per_end[i] = (total, b, p)
    paths = []
    for i, (total, b, p) in sorted(per_end.items(), key=lambda kv: -kv[1][0])[:keep]:
        c = nl.cells[i]
        end = f"{c.name}.{p} -> {boxes[c.type].in_depth[p][1]}" if c.type in boxes else \
            nl.register(c) if c.type in FFS else f"{c.name}.{p}"
        paths.append(_path(nl, arr, b, total, end, c.type))
    ports = PortModel()
    for port, bits in nl.outputs.items():
        best = max(((arr[b][0], arr[b][3][0]) for b in bits if b in arr), default=None)
        if best:
            ports.out_arrival[port] = [round(best[0], 3), best[1]]
    # from the input ports: depths to registers and feedthroughs to outputs
    arr_in = _forward_inputs(nl, order)
    for i, c in enumerate(nl.cells):
        for p, su in c.ends.items():
            for b in c.conn.get(p, ()):
                if isinstance(b, int) and b in arr_in:
                    w = nl.wire(b, c, p) + su
                    for src, t in arr_in[b].items():
                        if src not in ports.in_depth or ports.in_depth[src][0] < t + w:
                            ports.in_depth[src] = [round(t + w, 3), nl.register(c)]
    for port, bits in nl.outputs.items():
        for b in bits:
            for src, t in arr_in.get(b, {}).items():
                f = ports.feed.setdefault(src, {})
                f[port] = round(max(f.get(port, 0.0), t), 3)
    dsp = max((c.internal for c in nl.cells), default=0.0)
    return PartTiming(paths[0] if paths else None, paths, ports, dsp, len(nl.cells))


def cell_depth(netlist: dict, top: str) -> int:
    """The most LUT / MUXF / CARRY cells on one combinational path (what Yosys's `ltp` reports
    when given only those cells: tests/rtl_gen/test_timing.py compares the two)."""
    nl = _Netlist(netlist["modules"][top], MODEL, {})
    depth: dict = {}
    best = 0
    for i in nl.order():
        c = nl.cells[i]
        if c.type not in LUTS and c.type not in MUXF and c.type not in CARRY:
            continue
        d = 1 + max((depth.get(b, 0) for p in c.pins("input") for b in c.conn[p] if isinstance(b, int)), default=0)
        for p in c.pins("output"):
            for b in c.conn[p]:
                if isinstance(b, int):
                    depth[b] = d
        best = max(best, d)
    return best


def part_timing(hw, name: str, factory, boxes: dict, model: DelayModel = MODEL) -> PartTiming:
    """The timing of one part of rtl_gen/tools/synthesis.py (synthesised there and cached with its
    netlist); `boxes`: unit name -> PortModel of the part's black boxes. Cached per netlist,
    model and black-box models."""
    top, net, h = synthesis.part_netlist(hw, name, factory)
    key = hashlib.sha256(json.dumps([asdict(model), {k: v.as_dict() for k, v in sorted(boxes.items())}],
                                    sort_keys=True).encode()).hexdigest()[:12]
    cache = net.with_name(f"{top}-{h}.timing-{key}.json")
    if cache.exists():
        return PartTiming.from_dict(json.loads(cache.read_text()))
    with gzip.open(net) as f:
        netlist = json.load(f)
    t = analyse(netlist, top, model, {f"{top}.{unit}": pm for unit, pm in boxes.items()})
    replace_text(cache, json.dumps(t.as_dict()))
    return t


def timing_top(hw: HardwareConfig, model: DelayModel = MODEL, verbose: bool = True) -> dict:
    """Every part of the accelerator (the parts of `spvit report --synth`): its deepest
    register-to-register path, then the paths that cross unit boundaries through the top's
    wiring; the verdict at hw.clock_mhz and the clock the deepest path supports."""
    units = synthesis.parts(hw)
    order = [(synthesis.MAC, synthesis.all_parts(hw)[synthesis.MAC])] + list(units.items()) + \
        [(synthesis.GLUE, synthesis.all_parts(hw)[synthesis.GLUE])]
    models, rows = {}, []
    budget = model.budget(hw.clock_mhz)
    if verbose:
        print(f"  timing model: UltraScale+ -2 (docs/rtl.md, Timing budget); {hw.clock_mhz:g} MHz: {budget:.2f} ns per "
              f"path, about {model.lut_levels(hw.clock_mhz)} LUT levels flip-flop to flip-flop")
        print(f"  {'part':9s} {'levels':>6s} {'delay':>8s} {'fmax':>8s}  verdict  deepest path")
    for name, factory in order:
        boxes = {synthesis.MAC: models[synthesis.MAC]} if name == "array" else \
            {u: models[u] for u in units} if name == synthesis.GLUE else {}
        t = part_timing(hw, name, factory, boxes, model)
        models[name] = t.ports
        delay = max(t.worst.delay if t.worst else 0.0, t.dsp_internal)
        rows.append({"part": name, "worst": asdict(t.worst) if t.worst else None, "dsp_internal": t.dsp_internal,
                     "fmax_mhz": round(model.fmax(delay), 1), "meets": delay <= budget,
                     "paths": [asdict(p) for p in t.paths]})
        if verbose and t.worst:
            w = t.worst
            kinds = " ".join(f"{k}={v}" for k, v in sorted(w.breakdown.items()))
            print(f"  {name:9s} {w.levels:6d} {w.delay:6.2f} ns {model.fmax(delay):4.0f} MHz  "
                  f"{'ok' if delay <= budget else 'OVER':7s}  {w.start} ({w.start_kind}) -> "
                  f"{w.end} ({w.end_kind}); {kinds}"
                  + (f"; inside a DSP48 {t.dsp_internal:.2f} ns" if t.dsp_internal > w.delay else ""), flush=True)
    fmax = min(r["fmax_mhz"] for r in rows)
    result = {"clock_mhz": hw.clock_mhz, "fmax_mhz": fmax, "parts": rows, "model": asdict(model)}
    _write_summary(hw, result)
    if verbose:
        worst = min(rows, key=lambda r: r["fmax_mhz"])
        print(f"  supported clock by this model: {fmax:.0f} MHz (set by {worst['part']}); at {hw.clock_mhz:g} MHz "
              f"{sum(not r['meets'] for r in rows)} of {len(rows)} parts are over budget. An estimate from Yosys's "
              f"netlist, not Vivado: placement, routing and skew are modeled, not measured.")
    return result


def summary_path(hw: HardwareConfig):
    return synthesis.work_dir(hw) / "timing-summary.json"


def _write_summary(hw: HardwareConfig, result: dict) -> None:
    """The last whole-design result of `timing_top` for this hardware (read by
    benchmarks/latency.py): the supported clock and each part's, without the path lists."""
    brief = {"clock_mhz": result["clock_mhz"], "fmax_mhz": result["fmax_mhz"], "model": result["model"],
             "parts": {r["part"]: r["fmax_mhz"] for r in result["parts"]}}
    replace_text(summary_path(hw), json.dumps(brief, indent=1))


def last_summary(hw: HardwareConfig) -> dict | None:
    """The summary the last `spvit report --timing` of this hardware wrote, or None. It is the
    design as it was then: rerun the report after changing the RTL."""
    path = summary_path(hw)
    return json.loads(path.read_text()) if path.exists() else None
