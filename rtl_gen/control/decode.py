"""Descriptor fields as Amaranth views, derived from golden.isa's tables (the one definition).

    v = desc_view("MATMUL", raw)     # raw: a 512-bit Value; v.k, v.o_c0, v.shift ... at their bit offsets
"""
from __future__ import annotations

from functools import lru_cache

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from golden import isa


@lru_cache(maxsize=None)
def op_layout(name: str) -> data.FlexibleLayout:
    fields = {n: data.Field(signed(f.bits) if f.signed else unsigned(f.bits), at)
              for n, (at, f) in isa.field_offsets(isa.OPS[name]).items()}
    return data.FlexibleLayout(isa.DESC_BITS, fields)


def desc_view(name: str, raw) -> data.View:
    return data.View(op_layout(name), raw)


def op_code(name: str) -> int:
    return isa.OPS[name].code
