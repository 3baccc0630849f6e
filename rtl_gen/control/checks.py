"""The controller's checks, built from golden/isa.py's tables (the interpreter evaluates the same
predicates on Python ints): the error code of the first rule that fails (0: none), in the
interpreter's order, for a descriptor (CHECKS) and for the program header (HEADER_CHECKS)."""
from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Module, Mux, Signal, Value

from golden import isa
from golden.hw import HardwareConfig

from .decode import Opcode, common_view, desc_view

CODE_SHAPE = range(max(isa.ERRORS) + 1)


# What this RTL executes of golden.isa.OPS: per operation, None (all of it) or (what it lacks,
# predicate on the fields that holds when the descriptor avoids it). An operation missing here, or
# a descriptor the predicate refuses, gets BAD_OPCODE before any other check (no scheme's compiler
# emits what is left). docs/accelerator.md lists this table.
RTL_SUPPORT = {
    "LOAD": None, "STORE": None, "END": None,
    "MATMUL": None, "LAYERNORM": None,
    "ATTENTION": None,
    "GMEAN": None,
    "DECIDE": None,
    "PACKAGE": None,
    "COMPACT": ("no_pkg in position order", lambda f: (f.order == isa.ORDER_RANK) | (f.no_pkg == 0)),
    "COPY": None,
}


def supported(op: str, fields):
    """Whether this RTL executes the descriptor (a Value on views, a bool on golden.isa.Fields)."""
    if op not in RTL_SUPPORT:
        return False
    entry = RTL_SUPPORT[op]
    return True if entry is None else entry[1](fields)


def support_text() -> str:
    """RTL_SUPPORT as Markdown (docs/accelerator.md)."""
    rows = ["| operation | this RTL | refused with BAD_OPCODE |", "|---|---|---|"]
    for op in isa.OPS:
        e = RTL_SUPPORT.get(op, False)
        rows.append(f"| {op} | " + ("all | - |" if e is None else "not yet | every descriptor |" if e is False
                                    else f"partly | {e[0]} |"))
    return "\n".join(rows)


def width_of(hw: HardwareConfig):
    """W(b): channels of buffer b (hw.buffer_width: token buffers, KB, VB, SB; 0 beyond)."""
    return lambda b: Mux(b == isa.SB, hw.buffer_width(isa.SB), Mux(b == isa.B3, hw.hidden_max,
                                                                   Mux(b <= isa.VB, hw.d_max, 0)))


def first_failing(checks, fields, state, rule=lambda p: p):
    """A Value: the error code of the first of `checks` whose predicate fails, else 0. `rule`
    wraps each predicate (`check_code`'s registers)."""
    expr = 0
    for err, _, pred in reversed(checks):
        expr = Mux(rule(pred(fields, state)), expr, isa.ERROR_CODES[err])
    return expr


# cycles from `raw` and `state` to the code of `check_code(..., registered=True)`: golden.isa.STEPS'
# values, then the rules, each into registers
REGISTERED_LATENCY = 2


def _registered(m: Module):
    """A `first_failing` rule (or golden.isa STEPS value) wrapper: the value into a register."""
    def rule(value):
        value = Value.cast(value)
        reg = Signal(value.shape())
        m.d.sync += reg.eq(value)
        return reg
    return rule


def check_code(m: Module, hw: HardwareConfig, raw, state: SimpleNamespace, name: str = "check",
               registered: bool = False) -> Signal:
    """Comb Signal: golden.isa ERROR_CODES of the first failing check of `raw`'s operation
    (BAD_OPCODE for what RTL_SUPPORT excludes). `state`: rows, table_nseg, sel, sel_n, sel_npkg,
    sel_mode, sel_kept, pkg, pkg_d, last_sel (Values). `registered`: every rule's predicate is a
    register, and every golden.isa STEPS value a register before them, so the code answers for
    `raw` and `state` held for REGISTERED_LATENCY cycles (a step's product, the rules' arithmetic and
    the choice of the first failing one in separate cycles)."""
    s = SimpleNamespace(n_max=hw.n_max, pwl_max=hw.pwl_max, stages_max=hw.stages_max, d_max=hw.d_max,
                        C=hw.mac_cols, W=width_of(hw), **vars(state))
    rule = _registered(m) if registered else (lambda p: p)
    code = Signal(CODE_SHAPE, name=name)
    with m.Switch(common_view(raw).op):
        for op, checks in isa.CHECKS.items():
            if op not in RTL_SUPPORT:
                continue
            with m.Case(Opcode[op]):
                v = isa.Stepped(op, desc_view(op, raw), s, rule)
                m.d.comb += code.eq(Mux(rule(supported(op, v)), first_failing(checks, v, s, rule),
                                        isa.ERROR_CODES["BAD_OPCODE"]))
        with m.Default():
            m.d.comb += code.eq(isa.ERROR_CODES["BAD_OPCODE"])
    return code


def header_code(m: Module, hw: HardwareConfig, header, name: str = "header_check", registered: bool = False) -> Signal:
    """Comb Signal: the error code of the first golden.isa HEADER_CHECKS rule `header` (a view of
    rtl_gen.control.decode.header_layout) breaks, 0 if none; `registered` as in `check_code`."""
    code = Signal(CODE_SHAPE, name=name)
    m.d.comb += code.eq(first_failing(isa.HEADER_CHECKS, header, SimpleNamespace(**isa.header_limits(hw)),
                                      _registered(m) if registered else (lambda p: p)))
    return code
