"""The accelerator's program format: a header, descriptors and a data stream in DDR
(docs/accelerator.md). This module is the one definition of every field; the compiler
(golden/compiler.py), the interpreter (golden/interp.py) and the RTL decoder
(rtl_gen/control/decode.py) all derive from the tables below.

A descriptor is 512 bits (64 bytes, little-endian). Bits 0..31 hold the common fields (opcode,
row count); an operation's own fields follow from bit 32 in table order, LSB first.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass

DESC_BYTES = 64
DESC_BITS = 8 * DESC_BYTES
HEADER_BYTES = 64
MAGIC = 0x50565053            # b"SPVP"
VERSION = 2                   # 2: DynamicViT, EViT, Evo-ViT (SB, top-k, COPY, the CLS token's row-0 fields)
OP_FIELDS_AT = 32
ALIGN_MAX = 32                # largest residual alignment shift (fractions lie in [-8, 24])
PWL_SPAN_BITS = 17            # a table covers at most 2^17 input LSBs (n_seg << seg_shift)

# token buffers (token-tile layout), the key buffer, the value banks and the score buffer (one
# 48-bit score per token row: DynamicViT's predictor scores, EViT's and Evo-ViT's CLS attention)
B0, B1, B2, B3, KB, VB, SB = range(7)
BUFFER_NAMES = ("B0", "B1", "B2", "B3", "KB", "VB", "SB")
TOKEN_BUFFERS = (B0, B1, B2, B3)
SCORE_BITS = 48

# activation table use of a MATMUL / DECIDE
ACT_NONE, ACT_LOAD, ACT_KEEP = range(3)
# STORE modes
STORE_ROWS, STORE_TILES, STORE_SELECT = range(3)
# PACKAGE modes: SPViT's three (weights m of a threshold decision), and SCORES: the weights are
# the score buffer's entries (EViT's fused token), the sum scaled by mult / 2^shift
PACKAGE_MODES = {"norm": 0, "sum": 1, "mean": 2, "scores": 3}
# DECIDE modes: SPViT's threshold (score >= 0 from z and w columns, optional cap, keep
# probabilities) and an exact top-k of the score buffer (score descending, ties to the lower row)
DECIDE_THRESHOLD, DECIDE_TOPK = range(2)
# COMPACT orders: the kept tokens in position order, or in rank order (score descending)
ORDER_POSITION, ORDER_RANK = range(2)
ONE_Q15 = 1 << 15             # ATTENTION's score momentum t: 2^15 replaces the score


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
    _op("MATMUL", 3, "o[:, o_c0:+m] = epilogue(a[:, a_c0:+k] @ W^T + b), W and b from the stream; o_buf SB: the "
        "48-bit accumulator itself (m = 1); `row0`: token row 0's residual alignment is sa0, sb0, so0",
        ("a_buf", 3), ("a_c0", 12), ("k", 13), ("m", 13), ("o_buf", 3), ("o_c0", 12), ("shift", 8, True),
        ("mult", 17), ("res", 1), ("r_buf", 3), ("sa", 6), ("sb", 6), ("so", 8, True), *PWL_FIELDS,
        ("row0", 1), ("sa0", 6), ("sb0", 6), ("so0", 8, True)),
    _op("LAYERNORM", 4, "o[:, o_c0:+d] = LayerNorm(i[:, i_c0:+d]); gamma, beta from the stream; eps0 (0: eps) "
        "is token row 0's eps",
        ("i_buf", 3), ("i_c0", 12), ("d", 13), ("o_buf", 3), ("o_c0", 12), ("eps", 56), ("y_shift", 8, True),
        ("eps0", 56)),
    _op("ATTENTION", 5, "per head: softmax(requant_mul(Q K^T)) V; K from KB, V from VB; `score`: also "
        "SB[j] = rshift_round((2^15 - t) SB[j] + t A_j, 15) for rows j, A_j = sum_h of the CLS row's "
        "probabilities with 23 fraction bits (t = `momentum`; 2^15 replaces)",
        ("q_buf", 3), ("o_buf", 3), ("heads", 5), ("head_dim", 13), ("s_shift", 8, True), ("scale", 17),
        ("s_frac", 8, True), ("o_shift", 8, True), ("score", 1), ("momentum", 16)),
    _op("GMEAN", 6, "channel means over tokens 1..N-1, requant(sum recip(N-1, 30), 30 + shift), written to "
        "every row 0..N-1",
        ("buf", 3), ("c0", 12), ("w", 13), ("shift", 8, True)),
    _op("DECIDE", 7, "mode 0: SPViT decision: score, keep (optional cap), keep probability m; mode 1: the top k "
        "of SB rows 1..N-1 (score descending, ties to the lower row) and their rank order",
        ("z_buf", 3), ("z_c0", 12), ("w_buf", 3), ("w_c0", 12), ("heads", 5), ("n_pkg", 4), ("cap_en", 1),
        ("cap", 13), ("stage", 3), *PWL_FIELDS, ("mode", 2), ("k", 13)),
    _op("PACKAGE", 8, "package token of the dropped tokens: norm / sum / mean of m-weighted tokens, or mode 3: "
        "requant(sum SB_i x_i mult, shift)",
        ("x_buf", 3), ("d", 13), ("n_pkg", 4), ("mode", 2), ("mult", 21), ("shift", 6)),
    _op("COMPACT", 9, "o = [CLS, kept (position or rank order), (the other candidates in rank order), earlier "
        "packages, (new package)]; N := 1 + kept + n_pkg (+ 1); `scores`: SB rows moved alike",
        ("x_buf", 3), ("o_buf", 3), ("d", 13), ("n_pkg", 4), ("order", 1), ("rest", 1), ("no_pkg", 1),
        ("scores", 1)),
    _op("COPY", 10, "o[o_r0:+rows, o_c0:+w] = requant(i[i_r0:+rows, i_c0:+w], shift) (in place when i and o are "
        "the same rows)",
        ("i_buf", 3), ("i_c0", 12), ("i_r0", 13), ("o_buf", 3), ("o_c0", 12), ("o_r0", 13), ("w", 13),
        ("shift", 8, True)),
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


# The header's rules, in the order they apply, in the style of CHECKS below: (error name, what is
# wrong, predicate(h, s)); `h` gives the header fields as attributes, `s` the hardware's limits
# (header_limits). The interpreter evaluates them on ints, the controller builds its header check
# from them (rtl_gen/control/checks.py). Offsets are multiples of 64 bytes (a descriptor): every
# AXI width a configuration allows (<= 256 bits) divides that, so the DMA reads the program and
# the stream from beat-aligned addresses (PROG_BASE itself must be beat-aligned: docs/accelerator.md).
OFFSET_ALIGN = DESC_BYTES
HEADER_CHECKS = [
    ("BAD_HEADER", "magic or version is not this format's",
     lambda h, s: (h.magic == MAGIC) & (h.version == VERSION)),
    ("HW_MISMATCH", "hw_ident is not this hardware's ident", lambda h, s: h.hw_ident == s.ident),
    ("PROGRAM_SIZE", "n_desc is 0 or above desc_max", lambda h, s: (h.n_desc >= 1) & (h.n_desc <= s.desc_max)),
    ("BAD_TOKENS", "n_tokens is 0 or above n_max", lambda h, s: (h.n_tokens >= 1) & (h.n_tokens <= s.n_max)),
    ("BAD_HEADER", "stream_len is not a multiple of stream_bytes (one stream beat)",
     lambda h, s: (h.stream_len & (s.stream_bytes - 1)) == 0),
    ("BAD_HEADER", f"desc_off or stream_off is not a multiple of {OFFSET_ALIGN} bytes",
     lambda h, s: ((h.desc_off | h.stream_off) & (OFFSET_ALIGN - 1)) == 0),
]


def header_limits(hw) -> dict:
    """The hardware values HEADER_CHECKS compare with (`hw`: golden.hw.HardwareConfig)."""
    assert hw.stream_bytes & (hw.stream_bytes - 1) == 0, "stream_bytes is a power of two"
    return {"ident": hw.ident(), "desc_max": hw.desc_max, "n_max": hw.n_max, "stream_bytes": hw.stream_bytes}


def header_failure(header: dict, hw):
    """(error name, text with the values it names) of the first header rule `header` breaks, or None."""
    limits = header_limits(hw)
    bad = _first(HEADER_CHECKS, Fields(header), Fields(limits))
    if bad is None:
        return None
    code, text = bad
    named = {**header, **limits}
    values = [f"{k} = {named[k]:#x}" if k in ("magic", "hw_ident", "ident") else f"{k} = {named[k]}"
              for k in dict.fromkeys(re.findall(r"\w+", text)) if k in named]
    return code, f"{text} ({', '.join(values)})"


# ---------------------------------------------------------------- errors
ERRORS = {
    0: ("OK", "no error"),
    1: ("BAD_HEADER", "the program header's magic, version, stream length or offset alignment is wrong"),
    2: ("HW_MISMATCH", "the program was compiled for another hardware configuration"),
    3: ("PROGRAM_SIZE", "the descriptor count is 0 or above desc_max"),
    4: ("BAD_OPCODE", "a descriptor has an unknown opcode, or one the RTL does not execute yet"),
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


# ---------------------------------------------------------------- checks
# Every check an operation must pass before it runs, in the order they apply: (error name,
# what is wrong, predicate(f, s)). `f` gives the descriptor's fields as attributes, `s` the
# machine (limits, the resolved row count `rows`, the buffer width function `W`, and state: the
# loaded table's `table_nseg` (0: none), the open decision `sel`, its `sel_n`/`sel_npkg`/`sel_kept`
# and `sel_mode` (DECIDE's mode), the package `pkg` and its width `pkg_d`, `last_sel` for STOREs of
# a selection). Predicates use
# only comparisons, + * << and the operators & | (never `and`/`or`/`not`), so the same text
# evaluates on Python ints (golden/interp.py) and builds the controller's logic
# (rtl_gen/control/checks.py): one definition of every error the hardware reports.
def _pwl_ok(f, s, in17: int):
    return ((f.act <= 2) & (f.pwl_nseg >= 1) & (f.pwl_nseg <= s.pwl_max) & (f.pwl_17 == in17)
            & (f.pwl_span <= (1 << PWL_SPAN_BITS)))


def _span(s, b, end, w):
    """Channels c0 .. end - 1 (end = c0 + w, a STEPS value) lie in buffer b."""
    return (w >= 1) & (end <= s.W(b))


CHECKS = {
    "LOAD": [
        ("BAD_SHAPE", "buf is not a token buffer", lambda f, s: f.buf <= 3),
        ("BAD_SHAPE", "channels outside the buffer", lambda f, s: _span(s, f.buf, f.c_end, f.w)),
        ("BAD_TOKENS", "rows beyond n_max", lambda f, s: f.r_end <= s.n_max),
    ],
    "STORE": [
        ("BAD_SHAPE", "address not 16-byte aligned", lambda f, s: (f.addr & 15) == 0),
        ("BAD_SHAPE", "unknown mode", lambda f, s: f.mode <= 2),
        ("BAD_SHAPE", "a selection before any decision", lambda f, s: (f.mode != STORE_SELECT) | (s.last_sel != 0)),
        ("BAD_SHAPE", "buf is not a token buffer", lambda f, s: (f.mode == STORE_SELECT) | (f.buf <= 3)),
        ("BAD_SHAPE", "channels outside the buffer",
         lambda f, s: (f.mode == STORE_SELECT) | _span(s, f.buf, f.c_end, f.w)),
        ("BAD_TOKENS", "rows beyond n_max", lambda f, s: (f.mode != STORE_ROWS) | (f.r_end <= s.n_max)),
        ("BAD_SHAPE", "tiles start at row 0", lambda f, s: (f.mode != STORE_TILES) | (f.r0 == 0)),
    ],
    "MATMUL": [
        ("BAD_SHAPE", "a_buf is not a token buffer", lambda f, s: f.a_buf <= 3),
        ("BAD_SHAPE", "o_buf is not a token buffer other than a_buf, KB, VB or SB",
         lambda f, s: (f.o_buf <= SB) & (f.o_buf != f.a_buf)),
        ("BAD_SHAPE", "input channels outside a_buf", lambda f, s: _span(s, f.a_buf, f.a_end, f.k)),
        ("BAD_SHAPE", "output channels outside o_buf", lambda f, s: _span(s, f.o_buf, f.o_end, f.m)),
        ("BAD_SHAPE", "SB takes one bare accumulator: no shift, multiplier, activation or residual",
         lambda f, s: (f.o_buf != SB) | ((f.shift == 0) & (f.mult == 1) & (f.act == ACT_NONE) & (f.res == 0))),
        ("BAD_SHAPE", "residual: a token buffer other than a_buf into a token buffer, alignments <= 32",
         lambda f, s: (f.res == 0) | ((f.r_buf <= 3) & (f.r_buf != f.a_buf) & (f.o_buf <= 3) & (f.sa <= ALIGN_MAX)
                                      & (f.sb <= ALIGN_MAX) & (f.o_end <= s.W(f.r_buf)))),
        ("BAD_SHAPE", "row 0's alignment without a residual, or above 32",
         lambda f, s: (f.row0 == 0) | ((f.res == 1) & (f.sa0 <= ALIGN_MAX) & (f.sb0 <= ALIGN_MAX))),
        ("BAD_SHAPE", "activation table fields", lambda f, s: (f.act == ACT_NONE) | _pwl_ok(f, s, 0)),
        ("NO_TABLE", "no table loaded", lambda f, s: (f.act != ACT_KEEP) | (s.table_nseg != 0)),
        ("BAD_SHAPE", "n_seg beyond the loaded table", lambda f, s: (f.act != ACT_KEEP) | (f.pwl_nseg <= s.table_nseg)),
    ],
    "LAYERNORM": [
        ("BAD_SHAPE", "buffers are not token buffers", lambda f, s: (f.i_buf <= 3) & (f.o_buf <= 3)),
        ("BAD_SHAPE", "needs two buffers, eps >= 1, at most d_max channels",
         lambda f, s: (f.i_buf != f.o_buf) & (f.eps >= 1) & (f.d <= s.d_max)),
        ("BAD_SHAPE", "channels outside the buffers",
         lambda f, s: _span(s, f.i_buf, f.i_end, f.d) & _span(s, f.o_buf, f.o_end, f.d)),
    ],
    "ATTENTION": [
        ("BAD_SHAPE", "heads x head_dim (a multiple of mac_cols) <= d_max, q_buf != o_buf token buffers",
         lambda f, s: (f.q_buf <= 3) & (f.o_buf <= 3) & (f.q_buf != f.o_buf) & (f.heads >= 1) & (f.head_dim >= 1)
         & ((f.head_dim & (s.C - 1)) == 0) & (f.width <= s.d_max)),
        ("BAD_SHAPE", "score momentum above 2^15", lambda f, s: (f.score == 0) | (f.momentum <= ONE_Q15)),
    ],
    "GMEAN": [
        ("BAD_SHAPE", "buf is not a token buffer", lambda f, s: f.buf <= 3),
        ("BAD_SHAPE", "channels outside the buffer", lambda f, s: _span(s, f.buf, f.c_end, f.w)),
        ("BAD_SHAPE", "output shift 30 + shift outside 0..62", lambda f, s: (f.shift >= -30) & (f.shift <= 32)),
        ("BAD_TOKENS", "the global mean needs at least 2 tokens", lambda f, s: s.rows >= 2),
    ],
    "DECIDE": [
        ("BAD_SHAPE", "unknown mode", lambda f, s: f.mode <= DECIDE_TOPK),
        ("BAD_SHAPE", "buffers are not token buffers",
         lambda f, s: (f.mode != DECIDE_THRESHOLD) | ((f.z_buf <= 3) & (f.w_buf <= 3))),
        ("BAD_SHAPE", "z or w channels outside the buffers",
         lambda f, s: (f.mode != DECIDE_THRESHOLD)
         | ((f.heads >= 1) & (f.z_end <= s.W(f.z_buf)) & (f.w_end <= s.W(f.w_buf)))),
        ("BAD_SHAPE", "stage beyond stages_max, or a table missing (threshold) or given (top-k)",
         lambda f, s: (f.stage < s.stages_max) & ((f.mode == DECIDE_THRESHOLD) == (f.act != ACT_NONE))),
        ("BAD_TOKENS", "fewer tokens than CLS and the package tokens", lambda f, s: s.rows >= f.n_pkg + 1),
        ("BAD_SHAPE", "top-k with package tokens", lambda f, s: (f.mode != DECIDE_TOPK) | (f.n_pkg == 0)),
        ("BAD_TOKENS", "top-k: k above the candidates (rows - 1)",
         lambda f, s: (f.mode != DECIDE_TOPK) | (f.k < s.rows)),
        ("BAD_SHAPE", "activation table fields", lambda f, s: (f.mode != DECIDE_THRESHOLD) | _pwl_ok(f, s, 1)),
        ("NO_TABLE", "no table loaded", lambda f, s: (f.act != ACT_KEEP) | (s.table_nseg != 0)),
        ("BAD_SHAPE", "n_seg beyond the loaded table", lambda f, s: (f.act != ACT_KEEP) | (f.pwl_nseg <= s.table_nseg)),
    ],
    "PACKAGE": [
        ("BAD_SHAPE", "no decision", lambda f, s: s.sel != 0),
        ("BAD_TOKENS", "rows or n_pkg differ from the decision's",
         lambda f, s: (s.sel_n == s.rows) & (s.sel_npkg == f.n_pkg)),
        ("BAD_SHAPE", "x_buf is not a token buffer", lambda f, s: f.x_buf <= 3),
        ("BAD_SHAPE", "channels outside the buffer", lambda f, s: _span(s, f.x_buf, f.d, f.d)),
        ("BAD_SHAPE", "modes norm, sum, mean need a threshold decision (its keep probabilities)",
         lambda f, s: (f.mode == PACKAGE_MODES["scores"]) | (s.sel_mode == DECIDE_THRESHOLD)),
    ],
    "COMPACT": [
        ("BAD_SHAPE", "no decision", lambda f, s: s.sel != 0),
        ("BAD_TOKENS", "rows or n_pkg differ from the decision's",
         lambda f, s: (s.sel_n == s.rows) & (s.sel_npkg == f.n_pkg)),
        ("BAD_SHAPE", "rank order needs a top-k decision; the other candidates follow only in rank order",
         lambda f, s: ((f.order == ORDER_POSITION) | (s.sel_mode == DECIDE_TOPK))
         & ((f.rest == 0) | (f.order == ORDER_RANK))),
        ("BAD_TOKENS", "the output (CLS, kept, the other candidates, packages, new package) exceeds n_max",
         lambda f, s: ((f.rest == 0) & (f.out_kept <= s.n_max + f.no_pkg))
         | ((f.rest == 1) & (f.out_all <= s.n_max + f.no_pkg))),
        ("BAD_SHAPE", "buffers are not token buffers", lambda f, s: (f.x_buf <= 3) & (f.o_buf <= 3)),
        ("BAD_SHAPE", "needs two buffers and (unless no_pkg) a package of the same width",
         lambda f, s: (f.x_buf != f.o_buf) & ((f.no_pkg == 1) | ((s.pkg != 0) & (s.pkg_d == f.d)))),
        ("BAD_SHAPE", "channels outside the buffers",
         lambda f, s: _span(s, f.x_buf, f.d, f.d) & _span(s, f.o_buf, f.d, f.d)),
    ],
    "COPY": [
        ("BAD_SHAPE", "buffers are not token buffers", lambda f, s: (f.i_buf <= 3) & (f.o_buf <= 3)),
        ("BAD_SHAPE", "channels outside the buffers",
         lambda f, s: _span(s, f.i_buf, f.i_end, f.w) & _span(s, f.o_buf, f.o_end, f.w)),
        ("BAD_TOKENS", "rows beyond n_max", lambda f, s: (f.i_r_end <= s.n_max) & (f.o_r_end <= s.n_max)),
        ("BAD_SHAPE", "within one buffer only in place (the same rows and channels)",
         lambda f, s: (f.i_buf != f.o_buf) | ((f.i_r0 == f.o_r0) & (f.i_c0 == f.o_c0))),
        ("BAD_SHAPE", "shift outside -32..32", lambda f, s: (f.shift >= -ALIGN_MAX) & (f.shift <= ALIGN_MAX)),
    ],
    "END": [],
}


# Values some CHECKS compare that take a step of their own before the checks: per operation,
# name -> value(f, s), read by the predicates as the field `f.<name>`. The controller registers
# each (rtl_gen/control/checks.py: a DSP48 product, a barrel shift or an adder, then the compare
# a cycle later); the interpreter computes them the same way. Same rules as CHECKS' predicates.
def _sum(*terms):
    """A step: the sum of descriptor fields (names) and constants, e.g. a channel span's end."""
    return lambda f, s: sum(getattr(f, t) if isinstance(t, str) else t for t in terms)


def _rows_end(r0: str):
    return lambda f, s: getattr(f, r0) + s.rows          # the row past the last one touched


_PWL_SPAN = {"pwl_span": lambda f, s: f.pwl_nseg << f.pwl_shift}       # the table's input span
_CHANNELS = {"c_end": _sum("c0", "w"), "r_end": _rows_end("r0")}
STEPS = {
    "LOAD": _CHANNELS,
    "STORE": _CHANNELS,
    "MATMUL": {**_PWL_SPAN, "a_end": _sum("a_c0", "k"), "o_end": _sum("o_c0", "m")},
    "LAYERNORM": {"i_end": _sum("i_c0", "d"), "o_end": _sum("o_c0", "d")},
    "ATTENTION": {"width": lambda f, s: f.heads * f.head_dim},
    "GMEAN": {"c_end": _sum("c0", "w")},
    "DECIDE": {**_PWL_SPAN, "z_end": lambda f, s: f.z_c0 + 2 * f.heads, "w_end": _sum("w_c0", "heads")},
    "COMPACT": {"out_kept": lambda f, s: s.sel_kept + f.n_pkg + 2, "out_all": lambda f, s: s.sel_n + 1},
    "COPY": {"i_end": _sum("i_c0", "w"), "o_end": _sum("o_c0", "w"), "i_r_end": _rows_end("i_r0"),
             "o_r_end": _rows_end("o_r0")},
}


class Fields:
    """Attribute access to a decoded descriptor (for CHECKS on Python ints)."""

    def __init__(self, d: dict):
        self.__dict__.update(d)


class Stepped:
    """`fields` (a Fields or an RTL view) with the values of STEPS[op] as further attributes;
    `step` wraps each value (the controller's register)."""

    def __init__(self, op: str, fields, state, step=lambda v: v):
        self._fields = fields
        self.__dict__.update({name: step(value(fields, state)) for name, value in STEPS.get(op, {}).items()})

    def __getattr__(self, name):
        return getattr(self._fields, name)


def first_failure(op: str, fields, state):
    """(error name, text) of the first check of `op` that fails, or None."""
    return _first(CHECKS[op], Stepped(op, fields, state), state)


def _first(checks, fields, state):
    for code, text, pred in checks:
        if not bool(pred(fields, state)):
            return code, text
    return None


def checks_text(checks) -> str:
    return "Checks, in order: " + "; ".join(f"{t} -> {c}" for c, t, _ in checks) + "."


def markdown_tables() -> str:
    """The descriptor format as Markdown (docs/accelerator.md embeds it; a test keeps them equal)."""
    out = ["| bits | field | meaning |", "|---|---|---|"]
    at = 0
    for f in COMMON:
        out.append(f"| {at}..{at + f.bits - 1} | `{f.name}` | "
                   + {"op": "opcode", "rows_n": "1: the row count is the token-count register N",
                      "rows": "row count when rows_n = 0"}[f.name] + " |")
        at += f.bits
    out.append("")
    for op in OPS.values():
        out.append(f"**{op.name}** (opcode {op.code}): {op.doc}")
        out.append("")
        if op.fields:
            out.append("| bits | field | type |")
            out.append("|---|---|---|")
            for name, (at, f) in field_offsets(op).items():
                if name in ("op", "rows_n", "rows"):
                    continue
                out.append(f"| {at}..{at + f.bits - 1} | `{name}` | {'s' if f.signed else 'u'}{f.bits} |")
            out.append("")
        checks = CHECKS.get(op.name, [])
        if checks:
            out.append(checks_text(checks))
            out.append("")
    return "\n".join(out).rstrip() + "\n"
