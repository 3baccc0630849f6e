"""The controller's descriptor checks, built from golden/isa.py CHECKS (the interpreter
evaluates the same predicates on Python ints): for the descriptor `raw` and the machine state,
the error code of the first check that fails (0: none), in the interpreter's order."""
from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Module, Mux, Signal

from golden import isa
from golden.hw import HardwareConfig

from .decode import desc_view, op_code


def width_of(hw: HardwareConfig):
    """W(b): channels of buffer b (token buffers, KB, VB; 0 beyond)."""
    return lambda b: Mux(b == isa.B3, hw.hidden_max, Mux(b <= isa.VB, hw.d_max, 0))


def check_code(m: Module, hw: HardwareConfig, raw, state: SimpleNamespace, name: str = "check") -> Signal:
    """Comb Signal: golden.isa ERROR_CODES of the first failing check of `raw`'s operation.
    `state`: rows, table_nseg, sel, sel_n, sel_npkg, pkg, pkg_d, last_sel (Values)."""
    s = SimpleNamespace(n_max=hw.n_max, pwl_max=hw.pwl_max, stages_max=hw.stages_max, d_max=hw.d_max,
                        C=hw.mac_cols, W=width_of(hw), **vars(state))
    code = Signal(4, name=name)
    opcode = raw[:5]
    with m.Switch(opcode):
        for op, checks in isa.CHECKS.items():
            with m.Case(op_code(op)):
                f = desc_view(op, raw)
                expr = 0
                for err, _, pred in reversed(checks):        # the first failing check wins
                    expr = Mux(pred(f, s), expr, isa.ERROR_CODES[err])
                m.d.comb += code.eq(expr)
        with m.Default():
            m.d.comb += code.eq(isa.ERROR_CODES["BAD_OPCODE"])
    return code
