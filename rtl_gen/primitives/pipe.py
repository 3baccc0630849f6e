"""A stall-together pipeline: `depth` register stages between an input and an output stream.
All stages advance when the last one is empty or being taken (`en`), so a stage's sync logic
is written under `with m.If(en)`; valid bits travel beside the data."""
from __future__ import annotations

from amaranth.hdl import Signal


def stall_pipeline(m, i_stream, o_stream, depth: int):
    """Returns (en, valids): en = pipeline advances this cycle; valids[k] = stage k holds data
    (valids[-1] is o_stream.valid)."""
    en = Signal(name="pipe_en")
    valids = [Signal(name=f"pipe_v{k}") for k in range(depth - 1)] + [o_stream.valid]
    m.d.comb += [en.eq(~o_stream.valid | o_stream.ready), i_stream.ready.eq(en)]
    with m.If(en):
        m.d.sync += valids[0].eq(i_stream.valid)
        for k in range(1, depth):
            m.d.sync += valids[k].eq(valids[k - 1])
    return en, valids

