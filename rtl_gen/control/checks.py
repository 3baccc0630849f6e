"""The controller's checks, built from golden/isa.py's tables (the interpreter evaluates the same
predicates on Python ints): the error code of the first rule that fails (0: none), in the
interpreter's order, for a descriptor (CHECKS) and for the program header (HEADER_CHECKS)."""
from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Module, Mux, Signal

from golden import isa
from golden.hw import HardwareConfig

from .decode import Opcode, common_view, desc_view

CODE_SHAPE = range(max(isa.ERRORS) + 1)


def width_of(hw: HardwareConfig):
    """W(b): channels of buffer b (token buffers, KB, VB; 0 beyond)."""
    return lambda b: Mux(b == isa.B3, hw.hidden_max, Mux(b <= isa.VB, hw.d_max, 0))


def first_failing(checks, fields, state):
    """A Value: the error code of the first of `checks` whose predicate fails, else 0."""
    expr = 0
    for err, _, pred in reversed(checks):
        expr = Mux(pred(fields, state), expr, isa.ERROR_CODES[err])
    return expr


def check_code(m: Module, hw: HardwareConfig, raw, state: SimpleNamespace, name: str = "check") -> Signal:
    """Comb Signal: golden.isa ERROR_CODES of the first failing check of `raw`'s operation.
    `state`: rows, table_nseg, sel, sel_n, sel_npkg, pkg, pkg_d, last_sel (Values)."""
    s = SimpleNamespace(n_max=hw.n_max, pwl_max=hw.pwl_max, stages_max=hw.stages_max, d_max=hw.d_max,
                        C=hw.mac_cols, W=width_of(hw), **vars(state))
    code = Signal(CODE_SHAPE, name=name)
    with m.Switch(common_view(raw).op):
        for op, checks in isa.CHECKS.items():
            with m.Case(Opcode[op]):
                m.d.comb += code.eq(first_failing(checks, desc_view(op, raw), s))
        with m.Default():
            m.d.comb += code.eq(isa.ERROR_CODES["BAD_OPCODE"])
    return code


def header_code(m: Module, hw: HardwareConfig, header, name: str = "header_check") -> Signal:
    """Comb Signal: the error code of the first golden.isa HEADER_CHECKS rule `header` (a view of
    rtl_gen.control.decode.header_layout) breaks, 0 if none."""
    code = Signal(CODE_SHAPE, name=name)
    m.d.comb += code.eq(first_failing(isa.HEADER_CHECKS, header, SimpleNamespace(**isa.header_limits(hw))))
    return code
