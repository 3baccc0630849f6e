"""Pack and unpack stream payloads (Amaranth shapes and layouts) to and from the flat integers
that appear on the Verilog ports. Plain shapes take an int, StructLayout a dict, ArrayLayout a
list; signed fields are two's complement."""
from __future__ import annotations

from amaranth.hdl import Shape
from amaranth.lib import data


def width(shape) -> int:
    return Shape.cast(shape).width


def pack(shape, value) -> int:
    if isinstance(shape, data.StructLayout):
        out = 0
        for name, field in shape:
            out |= pack(field.shape, value[name]) << field.offset
        return out
    if isinstance(shape, data.ArrayLayout):
        if len(value) != shape.length:
            raise ValueError(f"array payload needs {shape.length} elements (got {len(value)})")
        w = width(shape.elem_shape)
        return sum(pack(shape.elem_shape, v) << (i * w) for i, v in enumerate(value))
    s = Shape.cast(shape)
    v = int(value)
    lo, hi = (-(1 << (s.width - 1)), (1 << (s.width - 1)) - 1) if s.signed else (0, (1 << s.width) - 1)
    if not lo <= v <= hi:
        raise ValueError(f"value {v} does not fit {s!r}")
    return v & ((1 << s.width) - 1)


def unpack(shape, raw: int):
    if isinstance(shape, data.StructLayout):
        return {name: unpack(f.shape, (raw >> f.offset) & ((1 << width(f.shape)) - 1)) for name, f in shape}
    if isinstance(shape, data.ArrayLayout):
        w = width(shape.elem_shape)
        return [unpack(shape.elem_shape, (raw >> (i * w)) & ((1 << w) - 1)) for i in range(shape.length)]
    s = Shape.cast(shape)
    raw &= (1 << s.width) - 1
    if s.signed and raw >> (s.width - 1):
        raw -= 1 << s.width
    return raw
