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


def collect_rows(m, src, wport, row, col, width: int, done):
    """Always-ready sink: every beat of `src` (payload `y`, `last`) is written to `wport` at
    row * width + col, `width` beats a row; `done` is set after the row that carries `last`."""
    m.d.comb += [src.ready.eq(1), wport.addr.eq(row * width + col), wport.data.eq(src.payload.y),
                 wport.en.eq(src.valid)]
    with m.If(src.valid):
        m.d.sync += col.eq(col + 1)
        with m.If(col == width - 1):
            m.d.sync += [col.eq(0), row.eq(row + 1)]
            with m.If(src.payload.last):
                m.d.sync += [row.eq(0), done.eq(1)]


def load_rows(m, src, fwd, wport, row, col, width: int, on_last, next_state: str):
    """Inside an FSM state: pass `src` through to `fwd` (same payload, fwd's back-pressure)
    while writing each accepted beat's `x` to `wport` at row * width + col. On the beat that
    ends the row carrying `last`: row -> 0, the `on_last` sync statements, go to `next_state`."""
    m.d.comb += [fwd.valid.eq(src.valid), src.ready.eq(fwd.ready), fwd.payload.eq(src.payload),
                 wport.addr.eq(row * width + col), wport.data.eq(src.payload.x)]
    with m.If(src.valid & src.ready):
        m.d.comb += wport.en.eq(-1)
        m.d.sync += col.eq(col + 1)
        with m.If(col == width - 1):
            m.d.sync += [col.eq(0), row.eq(row + 1)]
            with m.If(src.payload.last):
                m.d.sync += [row.eq(0), *on_last]
                m.next = next_state
