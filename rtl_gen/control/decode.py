"""Descriptor and header fields as Amaranth views, derived from golden.isa's tables (the one
definition); no unit slices a descriptor by hand.

    v = desc_view("MATMUL", raw)     # raw: a 512-bit Value; v.k, v.o_c0, v.shift ... at their bit offsets
    c = common_view(raw)             # c.op (an Opcode view), c.rows_n, c.rows: any descriptor
    with m.If(c.op == Opcode.MATMUL): ...
"""
from __future__ import annotations

from functools import lru_cache

from amaranth.hdl import signed, unsigned
from amaranth.lib import data, enum

from golden import isa

_OP_BITS = {f.name: f for f in isa.COMMON}["op"].bits


class Opcode(enum.Enum, shape=_OP_BITS):
    """The opcodes of golden.isa.OPS (members named as there: Opcode.MATMUL ...). A descriptor's
    `op` field may hold a code that is none of them: compare, never assume a member."""
    locals().update({name: spec.code for name, spec in isa.OPS.items()})


def _shape(f: isa.Field):
    return Opcode if f.name == "op" else signed(f.bits) if f.signed else unsigned(f.bits)


@lru_cache(maxsize=None)
def op_layout(name: str) -> data.FlexibleLayout:
    fields = {n: data.Field(_shape(f), at) for n, (at, f) in isa.field_offsets(isa.OPS[name]).items()}
    return data.FlexibleLayout(isa.DESC_BITS, fields)


@lru_cache(maxsize=None)
def common_layout() -> data.FlexibleLayout:
    """The fields every descriptor has (opcode, row count): the first ones of any op's layout."""
    return data.FlexibleLayout(isa.DESC_BITS, {f.name: op_layout("END")[f.name] for f in isa.COMMON})


def desc_view(name: str, raw) -> data.View:
    return data.View(op_layout(name), raw)


def common_view(raw) -> data.View:
    return data.View(common_layout(), raw)


def header_layout() -> data.StructLayout:
    """The program header's fields (golden.isa.HEADER_FIELDS, u32 each, in order from bit 0)."""
    return data.StructLayout({name: unsigned(32) for name in isa.HEADER_FIELDS})
