"""Port signatures shared by the accelerator's units (docs/accelerator.md, "Units and ports").

Every unit is a wiring.Component; its memory ports are *unit-side* signatures (requests are
Out, read data is In) that connect to the buffer fabric (rtl_gen/buffers/fabric.py). The token,
key and value memories are block RAM behind registers: `data` is valid READ_LATENCY cycles after
the cycle in which `en` was high, and holds until the next read's data arrives (the selector's
and the array's own small memories answer in one cycle).

Token buffers B0..B3 (token-tile layout): word (tile t, channel c) holds the mac_rows tokens
t R .. t R + R - 1 of channel c, one int16 lane each; writes have one enable per lane.
KB (key tiles): word (key tile u, channel c) holds the mac_cols tokens u C .. u C + C - 1.
VB (value banks): written one channel of R tokens per beat (as the MAC array drains), read as
the mac_cols channels g C .. g C + C - 1 of one token; mac_cols one-lane block RAMs skewed by
token (fabric.py), and a write lands three cycles after its beat (the fabric registers it three
times: no unit reads VB that soon after the operation that writes it).

Operation control (every unit started by the controller):
    start  In   one-cycle pulse; `desc` and `rows` are valid from then until `done`
    desc   In   the raw 512-bit descriptor (decode with rtl_gen.control.decode.desc_view)
    rows   In   the resolved row count (the token-count register N, or the descriptor's rows)
    done   Out  one-cycle pulse: the operation has finished all of its writes
"""
from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden.hw import HardwareConfig
from golden.isa import DESC_BITS

from ..primitives.arith import thermometer

WORD = 16
READ_LATENCY = 3        # a read's data: 3 cycles after its request (port register, block RAM, data register)


def lanes(n: int, bits: int = WORD, is_signed: bool = True) -> data.ArrayLayout:
    return data.ArrayLayout(signed(bits) if is_signed else unsigned(bits), n)


def tok_read(hw: HardwareConfig) -> wiring.Signature:
    return wiring.Signature({"buf": Out(2), "tile": Out(range(hw.tiles)), "ch": Out(range(hw.k_max)),
                             "en": Out(1), "data": In(lanes(hw.mac_rows))})


def tok_write(hw: HardwareConfig) -> wiring.Signature:
    return wiring.Signature({"buf": Out(2), "tile": Out(range(hw.tiles)), "ch": Out(range(hw.k_max)),
                             "data": Out(lanes(hw.mac_rows)), "en": Out(hw.mac_rows)})


def key_read(hw: HardwareConfig) -> wiring.Signature:
    return wiring.Signature({"ktile": Out(range(hw.key_tiles)), "ch": Out(range(hw.d_max)), "en": Out(1),
                             "data": In(lanes(hw.mac_cols))})


def key_write(hw: HardwareConfig) -> wiring.Signature:
    return wiring.Signature({"ktile": Out(range(hw.key_tiles)), "ch": Out(range(hw.d_max)),
                             "data": Out(lanes(hw.mac_cols)), "en": Out(hw.mac_cols)})


def val_read(hw: HardwareConfig) -> wiring.Signature:
    """Token `token`, channels grp C .. grp C + C - 1."""
    return wiring.Signature({"token": Out(range(hw.tiles * hw.mac_rows)), "grp": Out(range(hw.d_max // hw.mac_cols)),
                             "en": Out(1), "data": In(lanes(hw.mac_cols))})


def val_write(hw: HardwareConfig) -> wiring.Signature:
    """Channel `ch` of the R tokens of tile `tile` (lane r: token tile R + r; en per token)."""
    return wiring.Signature({"tile": Out(range(hw.tiles)), "ch": Out(range(hw.d_max)),
                             "data": Out(lanes(hw.mac_rows)), "en": Out(hw.mac_rows)})


def control(hw: HardwareConfig) -> dict:
    """Members of an operation unit's control port (merge into the unit's signature)."""
    return {"start": In(1), "desc": In(DESC_BITS), "rows": In(range(hw.n_max + 1)), "done": Out(1)}


def held(m, value, name: str) -> Signal:
    """A registered copy of a control input (desc, rows): they hold from start until done (the
    controller sets them at least three cycles before start, the unit benches with start), so the copy is
    right from the cycle after start and the decode behind it starts at a register, not at the
    controller's register fanned out to every unit."""
    r = Signal.like(value, name=name)
    m.d.sync += r.eq(value)
    return r


def delay_chain(m, value, cycles: int, name: str, attrs=None) -> list:
    """`value` through `cycles` registers: the list of them, the last one (with `attrs`) is `value`
    delayed by `cycles`. A unit lines up what it issued with its read data (READ_LATENCY later),
    or delays a request to a one-cycle memory so that its data arrives with a buffer read's."""
    chain = []
    for k in range(cycles):
        r = Signal.like(value, name=f"{name}{k}", attrs=attrs if k == cycles - 1 else None)
        m.d.sync += r.eq(chain[-1] if chain else value)
        chain.append(r)
    return chain


def delayed(m, value, cycles: int, name: str, attrs=None):
    """`value` delayed by `cycles` registers (`value` itself for none)."""
    return (delay_chain(m, value, cycles, name, attrs) or [value])[-1]


def tiles_of(n, size: int):
    """ceil(n / size) for a power-of-two `size` (an expression on the value or signal n)."""
    assert size & (size - 1) == 0, f"tile size must be a power of two ({size})"
    return (n + size - 1) >> (size.bit_length() - 1)


def lane_bits(R: int) -> int:
    """Bits of a lane index in a token tile of R (a power of two) tokens: token = tile R + lane."""
    assert R & (R - 1) == 0, f"tile size must be a power of two ({R})"
    return R.bit_length() - 1


def lane_select(word, lane, width: int, lanes: int) -> Value:
    """Lane `lane` of `word` (`lanes` values of `width` bits) as a balanced tree of 2:1 muxes, one
    level per bit of `lane` (LUT6s and MUXF7/8 after mapping). `word_select` with a runtime
    offset becomes a shifter by lane x width, which for a width that is not a power of two
    (SB's 48-bit scores) is a multiplier in front of a wide barrel shifter."""
    word = Value.cast(word)
    vals = [word[i * width:(i + 1) * width] for i in range(lanes)]
    for b in range(lane_bits(lanes)):
        vals = [Mux(lane[b], vals[i + 1], vals[i]) for i in range(0, len(vals), 2)]
    return vals[0]


def rows_mask(m, rows, tile, hw: HardwareConfig, name: str = "row_mask"):
    """Lane-enable mask of the tokens of `tile` that lie below `rows` (a comb Signal)."""
    mask = Signal(hw.mac_rows, name=name)
    base = tile * hw.mac_rows
    m.d.comb += mask.eq(Cat(base + r < rows for r in range(hw.mac_rows)))
    return mask


def last_row(m, last, hw: HardwareConfig, name: str, en=1) -> SimpleNamespace:
    """Row `last` as registers (loaded while `en`): its tile and the lanes of that tile up to it,
    so a write's or read's lanes take a compare of the tile number, not a compare per lane."""
    R, bits = hw.mac_rows, lane_bits(hw.mac_rows)
    row = SimpleNamespace(tile=Signal(range(hw.tiles + 1), name=f"{name}_last_tile"),
                          lanes=Signal(R, name=f"{name}_last_lanes"))
    with m.If(en):
        m.d.sync += [row.tile.eq(last >> bits), row.lanes.eq(thermometer(last[:bits], R, up=False))]
    return row


def row_span(m, first, last, hw: HardwareConfig, name: str) -> SimpleNamespace:
    """Rows first .. last as registers: their first and last tile and their lanes there, so a
    tile's lanes in the span (`span_lanes`) take compares of the tile number only, not an
    adder and compares per lane behind the tile's fanout. Registered a cycle after first/last."""
    R, bits = hw.mac_rows, lane_bits(hw.mac_rows)
    end = last_row(m, last, hw, name)
    span = SimpleNamespace(first_tile=Signal(range(hw.tiles + 1), name=f"{name}_first_tile"),
                           first_lanes=Signal(R, name=f"{name}_first_lanes"),
                           last_tile=end.tile, last_lanes=end.lanes)
    m.d.sync += [span.first_tile.eq(first >> bits), span.first_lanes.eq(thermometer(first[:bits], R))]
    return span


def span_lanes(span: SimpleNamespace, tile, R: int) -> Value:
    """The lanes of `tile` (between the span's first and last tile) whose rows lie in the span."""
    every = (1 << R) - 1
    return Mux(tile == span.first_tile, span.first_lanes, every) & Mux(tile == span.last_tile, span.last_lanes, every)


def route(m, target, sources: list, sig: wiring.Signature):
    """Drive the memory-side port `target` from the unit-side port of the true condition in
    `sources` [(cond, port)], the last one when none is true; read data goes to all. The
    conditions are exclusive (one unit runs at a time), so every bit is an OR of ANDs (two LUT
    levels for up to seven sources), not a chain of selects."""
    conds = [Value.cast(cond) for cond, _ in sources[:-1]]
    picks = conds + [~Cat(*conds).any() if conds else Const(1)]
    for name, mem in sig.members.items():
        if mem.flow == Out:                       # unit -> memory side
            val = 0
            for pick, (_, src) in zip(picks, sources):
                v = Value.cast(getattr(src, name)).as_unsigned()
                val = val | (v & pick.replicate(len(v)))
            m.d.comb += getattr(target, name).eq(val)
        else:
            for _, src in sources:
                m.d.comb += getattr(src, name).eq(getattr(target, name))
