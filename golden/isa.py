"""The accelerator's program format: a header, descriptors and a data stream in DDR
(docs/accelerator.md). This module is the one definition of every field; the compiler
(golden/compiler.py), the interpreter (golden/interp.py) and the RTL decoder
(rtl_gen/decode.py) all derive from the tables below.

A descriptor is 512 bits (64 bytes, little-endian). Bits 0..31 hold the common fields (opcode,
row count); an operation's own fields follow from bit 32 in table order, LSB first.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

DESC_BYTES = 64
DESC_BITS = 8 * DESC_BYTES
HEADER_BYTES = 64
MAGIC = 0x50565053            # b"SPVP"
VERSION = 1
OP_FIELDS_AT = 32
ALIGN_MAX = 32                # largest residual alignment shift (fractions lie in [-8, 24])

# token buffers (token-tile layout), the key buffer and the value banks
B0, B1, B2, B3, KB, VB = range(6)
BUFFER_NAMES = ("B0", "B1", "B2", "B3", "KB", "VB")
TOKEN_BUFFERS = (B0, B1, B2, B3)

# activation table use of a MATMUL / DECIDE
ACT_NONE, ACT_LOAD, ACT_KEEP = range(3)
# STORE modes
STORE_ROWS, STORE_TILES, STORE_SELECT = range(3)
PACKAGE_MODES = {"norm": 0, "sum": 1, "mean": 2}


@dataclass(frozen=True)
class Field:
    name: str
    bits: int
    signed: bool = False

    @property
    def lo(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def hi(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1


COMMON = (Field("op", 5), Field("rows_n", 1), Field("rows", 13))
PWL_FIELDS = (Field("act", 2), Field("pwl_lo", 18, True), Field("pwl_shift", 5), Field("pwl_nseg", 13),
              Field("pwl_ext", 1), Field("pwl_frac", 5), Field("pwl_17", 1))


@dataclass(frozen=True)
class OpSpec:
    name: str
    code: int
    fields: tuple
    doc: str


def _op(name, code, doc, *fields):
    return OpSpec(name, code, tuple(Field(*f) if isinstance(f, tuple) else f for f in fields), doc)


OPS = {o.name: o for o in (
    _op("END", 0, "stop: done (the stream must be consumed exactly)"),
    _op("LOAD", 1, "stream -> token buffer rows [r0, r0+rows) x channels [c0, c0+w)",
        ("buf", 3), ("c0", 12), ("w", 13), ("r0", 13)),
    _op("STORE", 2, "token buffer or selector result -> DDR at base + addr",
        ("mode", 2), ("buf", 3), ("c0", 12), ("w", 13), ("r0", 13), ("addr", 32)),
    _op("MATMUL", 3, "o[:, o_c0:+m] = epilogue(a[:, a_c0:+k] @ W^T + b), W and b from the stream",
        ("a_buf", 3), ("a_c0", 12), ("k", 13), ("m", 13), ("o_buf", 3), ("o_c0", 12), ("shift", 8, True),
        ("mult", 17), ("res", 1), ("r_buf", 3), ("sa", 6), ("sb", 6), ("so", 8, True), *PWL_FIELDS),
    _op("LAYERNORM", 4, "o[:, o_c0:+d] = LayerNorm(i[:, i_c0:+d]); gamma, beta from the stream",
        ("i_buf", 3), ("i_c0", 12), ("d", 13), ("o_buf", 3), ("o_c0", 12), ("eps", 56), ("y_shift", 8, True)),
    _op("ATTENTION", 5, "per head: softmax(requant_mul(Q K^T)) V; K from KB, V from VB",
        ("q_buf", 3), ("o_buf", 3), ("heads", 5), ("head_dim", 13), ("s_shift", 8, True), ("scale", 17),
        ("s_frac", 8, True), ("o_shift", 8, True)),
    _op("GMEAN", 6, "channel means over tokens 1..N-1, written to every row 0..N-1",
        ("buf", 3), ("c0", 12), ("w", 13)),
    _op("DECIDE", 7, "SPViT decision: score, keep (optional cap), keep probability m",
        ("z_buf", 3), ("z_c0", 12), ("w_buf", 3), ("w_c0", 12), ("heads", 5), ("n_pkg", 4), ("cap_en", 1),
        ("cap", 13), ("stage", 3), *PWL_FIELDS),
    _op("PACKAGE", 8, "package token of the dropped tokens (norm / sum / mean)",
        ("x_buf", 3), ("d", 13), ("n_pkg", 4), ("mode", 2)),
    _op("COMPACT", 9, "o = [CLS, kept, earlier packages, new package]; N := 2 + kept + n_pkg",
        ("x_buf", 3), ("o_buf", 3), ("d", 13), ("n_pkg", 4)),
)}
OP_BY_CODE = {o.code: o for o in OPS.values()}


def field_offsets(op: OpSpec) -> dict[str, tuple[int, Field]]:
    """name -> (bit offset, Field) of the common fields and the op's own fields."""
    out, at = {}, 0
    for f in COMMON:
        out[f.name] = (at, f)
        at += f.bits
    at = OP_FIELDS_AT
    for f in op.fields:
        out[f.name] = (at, f)
        at += f.bits
    assert at <= DESC_BITS, op.name
    return out


class Desc(dict):
    """A decoded descriptor: field name -> int, plus `.op` (OpSpec)."""

    @property
    def op(self) -> OpSpec:
        return OP_BY_CODE[self["op"]]

    def rows_of(self, n: int) -> int:
        return n if self["rows_n"] else self["rows"]


def encode(op: str, **values) -> bytes:
    """Descriptor bytes; every field of the op must be in range (missing fields are 0)."""
    spec = OPS[op]
    offs = field_offsets(spec)
    unknown = set(values) - set(offs) - {"op"}
    if unknown:
        raise ValueError(f"{op}: unknown field(s) {sorted(unknown)}")
    word = 0
    for name, (at, f) in offs.items():
        v = spec.code if name == "op" else int(values.get(name, 0))
        if not f.lo <= v <= f.hi:
            raise ValueError(f"{op}.{name} = {v} does not fit {f.bits} bits ({f.lo}..{f.hi})")
        word |= (v & ((1 << f.bits) - 1)) << at
    return word.to_bytes(DESC_BYTES, "little")


def decode(raw: bytes) -> Desc:
    """Descriptor bytes -> Desc (an unknown opcode decodes to its common fields only)."""
    word = int.from_bytes(raw[:DESC_BYTES], "little")
    code = word & 31
    spec = OP_BY_CODE.get(code)
    d = Desc()
    offs = field_offsets(spec) if spec else {f.name: (a, f) for f, a in zip(COMMON, (0, 5, 6))}
    for name, (at, f) in offs.items():
        v = (word >> at) & ((1 << f.bits) - 1)
        d[name] = v - (1 << f.bits) if f.signed and v >> (f.bits - 1) else v
    return d


# ---------------------------------------------------------------- header
HEADER_FIELDS = ("magic", "version", "hw_ident", "n_desc", "desc_off", "stream_off", "stream_len", "n_tokens")
_HEADER = struct.Struct("<IIIIIIII")


def encode_header(**v) -> bytes:
    raw = _HEADER.pack(*(int(v.get(k, 0)) for k in HEADER_FIELDS))
    return raw + b"\0" * (HEADER_BYTES - len(raw))


def decode_header(raw: bytes) -> dict:
    return dict(zip(HEADER_FIELDS, _HEADER.unpack(raw[:_HEADER.size])))


# ---------------------------------------------------------------- errors
ERRORS = {
    0: ("OK", "no error"),
    1: ("BAD_HEADER", "the program header's magic or version is wrong"),
    2: ("HW_MISMATCH", "the program was compiled for another hardware configuration"),
    3: ("PROGRAM_SIZE", "the descriptor count is 0 or above desc_max"),
    4: ("BAD_OPCODE", "a descriptor has an unknown opcode"),
    5: ("BAD_SHAPE", "a descriptor field lies outside the hardware's limits"),
    6: ("BAD_TOKENS", "a row or token count lies outside the hardware's range"),
    7: ("NO_TABLE", "an operation reuses an activation table before any was loaded"),
    8: ("STREAM_SHORT", "the program reads past the end of its data stream"),
    9: ("STREAM_LEFTOVER", "END reached with unread data in the stream"),
    10: ("NO_END", "the program ran past its last descriptor without END"),
    11: ("AXI_READ", "a DDR read returned an error response"),
    12: ("AXI_WRITE", "a DDR write returned an error response"),
}
ERROR_CODES = {name: code for code, (name, _) in ERRORS.items()}


class ProgramError(Exception):
    """The accelerator stops with an error code (the interpreter raises this where the
    hardware would set ERROR_CODE and ERROR_INDEX)."""

    def __init__(self, code: str, index: int, detail: str = ""):
        self.code, self.index, self.detail = ERROR_CODES[code], index, detail
        super().__init__(f"{code} at descriptor {index}: {detail or ERRORS[ERROR_CODES[code]][1]}")

    @property
    def name(self) -> str:
        return ERRORS[self.code][0]
