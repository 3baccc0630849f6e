"""LayerNorm unit bench: `LnBench` = the buffer fabric (rtl_gen.buffers.fabric) + LayerNormUnit behind
stream ports, and `run_ln`, which runs a list of LAYERNORM operations through it and through the
interpreter (golden.interp Machine.op_layernorm) and returns both buffers for an exact compare.

Ports of LnBench (each driven by the stream testbench with random stalls):
  i_cmd   {op, buf, tile, ch, data, desc, rows}: op 0 writes a token-buffer word, 1 reads one
          (-> o_rd), 2 starts the LayerNorm unit with desc / rows (commands wait until it is done)
  i_param the unit's parameter stream, passed through
  o_rd    read words;  o_done  {cycles}: one per operation, start -> done in cycles
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from base import settings
from golden import isa, stream as gstream
from golden.hw import HardwareConfig
from golden.interp import Machine
from rtl_gen.buffers import ports
from rtl_gen.buffers.fabric import Buffers
from rtl_gen.norm.layernorm import LayerNormUnit, _param_layout

from .runner import run_stream

WRITE, READ, RUN = range(3)


def cmd_layout(hw: HardwareConfig) -> data.StructLayout:
    return data.StructLayout({"op": 2, "buf": 2, "tile": range(hw.tiles), "ch": range(hw.k_max),
                              "data": ports.lanes(hw.mac_rows), "desc": isa.DESC_BITS, "rows": range(hw.n_max + 1)})


class LnBench(wiring.Component):
    def __init__(self, hw: HardwareConfig):
        self.hw = hw
        super().__init__({"i_cmd": In(stream.Signature(cmd_layout(hw))),
                          "i_param": In(stream.Signature(_param_layout())),
                          "o_rd": Out(stream.Signature(ports.lanes(hw.mac_rows))),
                          "o_done": Out(stream.Signature(unsigned(32)))})

    def elaborate(self, platform):
        m = Module()
        hw = self.hw
        m.submodules.bufs = bufs = Buffers(hw)
        m.submodules.unit = unit = LayerNormUnit(hw)
        wiring.connect(m, wiring.flipped(self.i_param), unit.i_param)
        cmd = self.i_cmd.payload
        running, start = Signal(), Signal()
        rd_wait = Signal(ports.READ_LATENCY)           # a host read on its way through the fabric
        desc = Signal(isa.DESC_BITS)
        rows = Signal(range(hw.n_max + 1))
        cyc = Signal(32)
        m.d.comb += [unit.desc.eq(desc), unit.rows.eq(rows), unit.start.eq(start),
                     self.i_cmd.ready.eq(~running & ~start & ~rd_wait.any() & ~self.o_rd.valid & ~self.o_done.valid)]
        take = self.i_cmd.valid & self.i_cmd.ready
        # the unit owns the read and write ports while it runs
        with m.If(running):
            m.d.comb += [bufs.ra.buf.eq(unit.ra.buf), bufs.ra.tile.eq(unit.ra.tile), bufs.ra.ch.eq(unit.ra.ch),
                         bufs.ra.en.eq(unit.ra.en), bufs.w.buf.eq(unit.w.buf), bufs.w.tile.eq(unit.w.tile),
                         bufs.w.ch.eq(unit.w.ch), bufs.w.data.eq(unit.w.data), bufs.w.en.eq(unit.w.en)]
        with m.Else():
            m.d.comb += [bufs.ra.buf.eq(cmd.buf), bufs.ra.tile.eq(cmd.tile), bufs.ra.ch.eq(cmd.ch),
                         bufs.ra.en.eq(take & (cmd.op == READ)), bufs.w.buf.eq(cmd.buf), bufs.w.tile.eq(cmd.tile),
                         bufs.w.ch.eq(cmd.ch), bufs.w.data.eq(cmd.data),
                         bufs.w.en.eq(Mux(take & (cmd.op == WRITE), -1, 0))]
        m.d.comb += unit.ra.data.eq(bufs.ra.data)
        m.d.sync += [start.eq(take & (cmd.op == RUN)), rd_wait.eq(Cat(take & (cmd.op == READ), rd_wait)),
                     cyc.eq(cyc + 1)]
        with m.If(take & (cmd.op == RUN)):
            m.d.sync += [desc.eq(cmd.desc), rows.eq(cmd.rows)]
        with m.If(start):
            m.d.sync += [running.eq(1), cyc.eq(1)]
        with m.If(self.o_rd.ready):
            m.d.sync += self.o_rd.valid.eq(0)
        with m.If(rd_wait[-1]):
            m.d.sync += [self.o_rd.valid.eq(1), self.o_rd.payload.eq(bufs.ra.data)]
        with m.If(self.o_done.ready):
            m.d.sync += self.o_done.valid.eq(0)
        with m.If(unit.done):
            m.d.sync += [running.eq(0), self.o_done.valid.eq(1), self.o_done.payload.eq(cyc)]
        return m


@dataclass
class LnOp:
    """One LAYERNORM operation and the input-buffer contents it reads."""
    fields: dict            # LAYERNORM descriptor fields (i_buf, i_c0, d, o_buf, o_c0, eps, y_shift)
    rows: int
    x: np.ndarray           # [rows, d] written to the input buffer before the op
    gamma: np.ndarray
    beta: np.ndarray


def _word(buf, tile, ch, lanes, hw):
    return {"op": WRITE, "buf": buf, "tile": tile, "ch": ch, "data": [int(v) for v in lanes], "desc": 0, "rows": 0}


def _words(cmds, reads, mach, b, hw, read: bool):
    """Write (read=False) or read back every word of buffer b as the interpreter holds it."""
    R = hw.mac_rows
    for t in range(hw.tiles):
        for c in range(hw.buffer_width(b)):
            lanes = mach.buf[b][t * R:(t + 1) * R, c]
            if read:
                cmds.append({"op": READ, "buf": b, "tile": t, "ch": c, "data": [0] * R, "desc": 0, "rows": 0})
                reads.append(lanes.copy())
            else:
                cmds.append(_word(b, t, c, lanes, hw))


def build(hw: HardwareConfig, ops: list[LnOp], seed: int = 0, all_buffers: bool = True):
    """Commands, parameter beats and the expected read-back: the interpreter runs on the same
    buffers, which start as random junk (outputs outside an op's rows and channels must keep
    it). The output buffer is read back after every op; at the end every buffer (all_buffers)
    or every buffer the ops use."""
    R = hw.mac_rows
    mach = Machine(hw, bytearray(), junk_seed=seed)
    used = sorted({op.fields[k] for op in ops for k in ("i_buf", "o_buf")})
    final = list(isa.TOKEN_BUFFERS) if all_buffers else used
    cmds, params, reads = [], [], []
    for b in final:
        _words(cmds, reads, mach, b, hw, read=False)
    for op in ops:
        f = op.fields
        i_buf, c0, d = f["i_buf"], f["i_c0"], f["d"]
        mach.buf[i_buf][:op.rows, c0:c0 + d] = op.x
        for t in range(-(-op.rows // R)):
            for c in range(c0, c0 + d):
                cmds.append(_word(i_buf, t, c, mach.buf[i_buf][t * R:(t + 1) * R, c], hw))
        desc = isa.encode("LAYERNORM", rows=op.rows, **f)
        cmds.append({"op": RUN, "buf": 0, "tile": 0, "ch": 0, "data": [0] * R,
                     "desc": int.from_bytes(desc, "little"), "rows": op.rows})
        params += [{"gamma": int(g), "beta": int(b)} for g, b in zip(op.gamma, op.beta)]
        mach.stream, mach.cursor = gstream.pack_ln(op.gamma, op.beta, hw), 0
        mach.op_layernorm(isa.decode(desc), op.rows)
        _words(cmds, reads, mach, f["o_buf"], hw, read=True)
    for b in final:
        _words(cmds, reads, mach, b, hw, read=True)
    return cmds, params, np.array(reads)


def run_ln(hw: HardwareConfig, ops: list[LnOp], name: str, stall: float = 0.25, seed: int = 0, sim=None,
           port_stall: dict | None = None, all_buffers: bool = True, tag: str = "run"):
    """-> (words read back [n, R], the interpreter's words [n, R], cycles per op, SimResult)."""
    cmds, params, want = build(hw, ops, seed, all_buffers)
    res = run_stream(LnBench(hw), name, {"i_cmd": cmds, "i_param": params},
                     {"o_rd": len(want), "o_done": len(ops)}, stall=stall, seed=seed,
                     sim=sim or settings.SIM_ENGINE, timeout=20 * len(cmds) + 200_000, port_stall=port_stall,
                     tag=tag)
    if res.consumed is not None:
        assert res.consumed == {"i_cmd": len(cmds), "i_param": len(params)}, f"inputs left: {res.consumed}"
    return np.array(res.outputs["o_rd"]), want, res.outputs["o_done"], res
