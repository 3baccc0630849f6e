"""The selection state: what the latest DECIDE decided, kept for PACKAGE, COMPACT and a STORE of
the selection (golden/interp.py Machine.sel / Machine.last).

DECIDE writes it (keep bits per token tile, keep probability m per token, and on completion the
status); the other units read it through small synchronous ports (data one cycle after `en`,
held while `en` is low). Only one operation runs at a time, so the top routes the single mask
and m read ports to whichever unit runs.

    mask_read(hw)  unit side: tile -> keep[R]: lane r = token t R + r is scored (1 <= t R + r <= ns)
                   and kept; every other lane reads 0
    m_read(hw)     unit side: token j -> m[j] (the keep probability of scored token j - 1, Q15)
    order_read(hw) unit side: rank p -> the candidate row of rank p (a top-k decision: score
                   descending, ties to the lower row; rtl_gen/selector/topk.py writes it)
    info_layout    status: valid (a decision PACKAGE / COMPACT may use; cleared by `consume`,
                   i.e. when COMPACT finishes), last (a decision exists: STORE of a selection),
                   rows, n_pkg (what the decision was made for: the controller checks them),
                   ns (scored tokens), kept (kept scored tokens)
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, Value, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden.hw import HardwareConfig

from ..buffers import ports
from ..primitives.ram import Ram

M_BITS = 17          # m in [-2^15, 2^15] whenever every head weight w >= 0 (docs/rtl.md)


def mask_read(hw: HardwareConfig) -> wiring.Signature:
    return wiring.Signature({"tile": Out(range(hw.tiles)), "en": Out(1), "keep": In(hw.mac_rows)})


def m_read(hw: HardwareConfig) -> wiring.Signature:
    return wiring.Signature({"token": Out(range(hw.tiles * hw.mac_rows)), "en": Out(1), "m": In(signed(M_BITS))})


def order_read(hw: HardwareConfig) -> wiring.Signature:
    n = range(hw.tiles * hw.mac_rows)
    return wiring.Signature({"rank": Out(n), "en": Out(1), "token": In(n)})


def order_write(hw: HardwareConfig) -> wiring.Signature:
    n = range(hw.tiles * hw.mac_rows)
    return wiring.Signature({"rank": Out(n), "token": Out(n), "en": Out(1)})


def keep_write(hw: HardwareConfig) -> wiring.Signature:
    return wiring.Signature({"tile": Out(range(hw.tiles)), "data": Out(hw.mac_rows), "en": Out(hw.mac_rows)})


def m_write(hw: HardwareConfig) -> wiring.Signature:
    return wiring.Signature({"token": Out(range(hw.tiles * hw.mac_rows)), "data": Out(signed(M_BITS)),
                             "en": Out(1)})


def info_layout(hw: HardwareConfig) -> data.StructLayout:
    n = range(hw.n_max + 1)
    return data.StructLayout({"valid": 1, "last": 1, "rows": n, "n_pkg": 4, "ns": n, "kept": n})


def scored_lanes(m, tile, ns, hw: HardwareConfig, name: str = "scored"):
    """Lane mask of the scored tokens (1 <= token <= ns) of `tile` (a comb Signal)."""
    s = Signal(hw.mac_rows, name=name)
    base = tile * hw.mac_rows
    m.d.comb += s.eq(Cat((base + r >= 1) & (base + r <= ns) for r in range(hw.mac_rows)))
    return s


class SelState(wiring.Component):
    """Memories and status of the latest decision. Writer side (DECIDE): `write_keep`, `write_m`,
    and a one-cycle `set` with `set_info` (rows, n_pkg, ns, kept) when the decision is complete.
    `consume`: pulse when COMPACT finishes (clears info.valid, keeps info.last)."""

    def __init__(self, hw: HardwareConfig):
        self.hw = hw
        super().__init__({
            "write_keep": In(keep_write(hw)), "write_m": In(m_write(hw)), "write_order": In(order_write(hw)),
            "set": In(1), "set_info": In(info_layout(hw)), "consume": In(1),
            "mask": In(mask_read(hw)), "m": In(m_read(hw)), "order": In(order_read(hw)),
            "info": Out(info_layout(hw)),
        })

    def elaborate(self, platform):
        m = Module()
        hw = self.hw
        m.submodules.keep = keep = Ram(1, hw.tiles, hw.mac_rows, is_signed=False)
        m.submodules.mval = mval = Ram(M_BITS, hw.tiles * hw.mac_rows)
        m.submodules.order = order = Ram(len(self.order.token), hw.tiles * hw.mac_rows, is_signed=False)
        wk, wm, wo = self.write_keep, self.write_m, self.write_order
        m.d.comb += [order.waddr.eq(wo.rank), order.wdata.eq(wo.token), order.wen.eq(wo.en),
                     order.raddr.eq(self.order.rank), order.ren.eq(self.order.en), self.order.token.eq(order.rdata)]
        m.d.comb += [keep.waddr.eq(wk.tile), keep.wdata.eq(wk.data), keep.wen.eq(wk.en),
                     keep.raddr.eq(self.mask.tile), keep.ren.eq(self.mask.en),
                     mval.waddr.eq(wm.token), mval.wdata.eq(wm.data), mval.wen.eq(wm.en),
                     mval.raddr.eq(self.m.token), mval.ren.eq(self.m.en), self.m.m.eq(mval.rdata)]
        info = self.info
        # the scored lanes of the tile read: ns's tile and lanes are registers (set with ns), the
        # read's tile is compared with them as it is asked, so the keep bits (into PACKAGE,
        # COMPACT and the selection store) leave through one LUT
        every = (1 << hw.mac_rows) - 1
        ns = ports.last_row(m, self.set_info.ns, hw, "ns", en=self.set)
        last_tile, last_lanes = ns.tile, ns.lanes
        at_first, at_last, past = Signal(name="at_first"), Signal(name="at_last"), Signal(name="past_ns")
        with m.If(self.mask.en):
            m.d.sync += [at_first.eq(self.mask.tile == 0), at_last.eq(self.mask.tile == last_tile),
                         past.eq(self.mask.tile > last_tile)]
        scored = Mux(past, 0, Mux(at_first, every & ~1, every) & Mux(at_last, last_lanes, every))
        m.d.comb += self.mask.keep.eq(Value.cast(keep.rdata) & scored)
        with m.If(self.set):
            m.d.sync += [info.rows.eq(self.set_info.rows), info.n_pkg.eq(self.set_info.n_pkg),
                         info.ns.eq(self.set_info.ns), info.kept.eq(self.set_info.kept),
                         info.valid.eq(1), info.last.eq(1)]
        with m.Elif(self.consume):
            m.d.sync += info.valid.eq(0)
        return m
