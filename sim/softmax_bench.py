"""Softmax unit bench: `SoftmaxBench` carries the unit's `frac` input beside each score beat (the
unit samples it with an item's first beat), so one run covers items of several formats;
`run_softmax` runs items (R x n score arrays) through it and golden.kernels.softmax (and lane 0's
23-bit `cls` output through golden.kernels.cls_attention)."""
from __future__ import annotations

import numpy as np
from amaranth.hdl import Module, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from base import settings
from golden.compare import assert_exact
from golden.hw import HardwareConfig
from golden.kernels import cls_attention, softmax
from rtl_gen.array.softmax import SoftmaxUnit, item_layout
from rtl_gen.buffers import ports
from rtl_gen.primitives.exp import FRAC_BITS

from .runner import run_stream


class SoftmaxBench(wiring.Component):
    def __init__(self, hw: HardwareConfig):
        self.hw = hw
        lay = data.StructLayout({"s": ports.lanes(hw.mac_rows), "last": 1, "frac": signed(FRAC_BITS)})
        super().__init__({"i_s": In(stream.Signature(lay)), "o_p": Out(stream.Signature(item_layout(hw, "p")))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = unit = SoftmaxUnit(self.hw)
        m.d.comb += [unit.i_s.valid.eq(self.i_s.valid), self.i_s.ready.eq(unit.i_s.ready),
                     unit.i_s.payload.s.eq(self.i_s.payload.s), unit.i_s.payload.last.eq(self.i_s.payload.last),
                     unit.frac.eq(self.i_s.payload.frac)]
        wiring.connect(m, unit.o_p, wiring.flipped(self.o_p))
        return m


def run_softmax(hw: HardwareConfig, items, name: str, stall: float = 0.25, seed: int = 0, sim=None):
    """items: [(scores int [R, n], frac)] -> (RTL probabilities [beats, R], golden [beats, R],
    RTL last flags, input last flags, SimResult). The `cls` output is checked here, by ==."""
    beats, want, want_cls = [], [], []
    for s, frac in items:
        n = s.shape[1]
        beats += [{"s": [int(v) for v in s[:, j]], "last": int(j == n - 1), "frac": frac} for j in range(n)]
        want.append(softmax(s, frac).T)
        want_cls.append(cls_attention(s[0], frac))
    want = np.concatenate(want)
    res = run_stream(SoftmaxBench(hw), name, {"i_s": beats}, {"o_p": len(want)}, stall=stall, seed=seed,
                     sim=sim or settings.SIM_ENGINE, timeout=100 * len(beats) + 10_000)
    if res.consumed is not None:
        assert res.consumed == {"i_s": len(beats)}, f"score beats left: {res.consumed}"
    got = np.array([b["p"] for b in res.outputs["o_p"]])
    assert_exact(np.array([b["cls"] for b in res.outputs["o_p"]]), np.concatenate(want_cls),
                 "softmax unit: lane 0's 23-bit CLS probability")
    return got, want, [b["last"] for b in res.outputs["o_p"]], [b["last"] for b in beats], res
