"""Run controller: header and descriptor fetch, then the descriptors one by one (golden/interp.py
Machine.run is the reference, including the order of checks and error codes).

    IDLE -> HEADER (fetch 64 bytes, check) -> PROGRAM (fetch n_desc descriptors into the program
    memory) -> start the stream reader and the stream loader -> per descriptor: READ, CHECK
    (rtl_gen/control/checks.py), START the unit, WAIT for done, update the state -> END (the stream must
    be consumed exactly) -> FINISH.
Errors (a failing check, an AXI error response, the stream loader starved at this descriptor)
record ERROR_CODE / ERROR_INDEX, reset the units, abort the DMA and finish: the run never hangs
on a bad program.
"""
from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden import isa
from golden.hw import HardwareConfig

from .checks import check_code
from .decode import desc_view, op_code

ERR = isa.ERROR_CODES


def rd_cmd_layout() -> data.StructLayout:
    return data.StructLayout({"addr": 64, "length": 32, "fetch": 1})


class Controller(wiring.Component):
    def __init__(self, hw: HardwareConfig):
        self.hw = hw
        W = hw.axi_bits
        cnt = range(hw.n_max + 1)
        super().__init__({
            # CSR
            "csr_start": In(1), "prog_base": In(64), "busy": Out(1), "finish": Out(1),
            "error_code": Out(range(max(isa.ERRORS) + 1)), "error_index": Out(32), "ci": Out(range(hw.desc_max + 1)),
            "n": Out(cnt), "kept": Out(data.ArrayLayout(range(hw.n_max + 1), hw.stages_max)),
            # DMA
            "rd_cmd": Out(stream.Signature(rd_cmd_layout())), "i_fetch": In(stream.Signature(W)),
            "rd_idle": In(1), "rd_error": In(1), "wr_idle": In(1), "wr_error": In(1), "abort": Out(1), "clear": Out(1),
            # program memory (port A)
            "pm_addr": Out(range(hw.desc_max)), "pm_wdata": Out(isa.DESC_BITS), "pm_wen": Out(1), "pm_ren": Out(1),
            "pm_rdata": In(isa.DESC_BITS),
            # stream loader
            "ld_start": Out(1), "ld_total": Out(32), "ld_stop": Out(1), "ld_li": In(range(hw.desc_max + 1)),
            "ld_at_end": In(1), "ld_consumed": In(32), "ld_error": In(1), "ld_table_ok": In(1), "ci_run": Out(1),
            # operation units
            "desc": Out(isa.DESC_BITS), "rows": Out(cnt), "op_start": Out(1), "op_done": In(1),
            "unit_reset": Out(1), "is_store": Out(1),
            "kept_count": In(cnt),                    # DECIDE's kept count (valid at its done)
        })

    def elaborate(self, platform):
        m = Module()
        hw = self.hw
        W = hw.axi_bits
        rec = Signal(isa.DESC_BITS)                   # a fetched 64-byte record (header or descriptor)
        nbeat = Signal(range(isa.DESC_BITS // W + 1))
        hdr = {k: Signal(32, name=f"hdr_{k}") for k in isa.HEADER_FIELDS}
        i = Signal(range(hw.desc_max + 1))
        self.kept_last = Signal(range(hw.n_max + 1))
        state = SimpleNamespace(rows=Signal(range(8192)), table_nseg=Signal(13), sel=Signal(), sel_n=Signal(range(8192)),
                                sel_npkg=Signal(4), pkg=Signal(), pkg_d=Signal(13), last_sel=Signal(),
                                sel_kept=self.kept_last)
        rows_field = desc_view("END", self.desc)
        m.d.comb += state.rows.eq(Mux(rows_field.rows_n, self.n, rows_field.rows))
        code = check_code(m, hw, self.desc, state)
        m.d.comb += self.rows.eq(state.rows)
        op = self.desc[:5]
        err = Signal(range(max(isa.ERRORS) + 1))
        err_at = Signal(32)
        m.d.comb += [self.error_code.eq(err), self.error_index.eq(err_at), self.ci.eq(i), self.ld_total.eq(
            hdr["stream_len"] >> (hw.stream_bytes.bit_length() - 1))]

        def fail(what, at):
            """Statements recording an error: `what` an error name or a code Value."""
            return [err.eq(ERR[what] if isinstance(what, str) else what), err_at.eq(at)]

        # fetched beats -> 512-bit records (first beat in the low bits)
        take_beat = self.i_fetch.valid & self.i_fetch.ready
        with m.If(take_beat):
            m.d.sync += [rec.word_select(nbeat, W).eq(self.i_fetch.payload), nbeat.eq(nbeat + 1)]
        rec_done = nbeat == isa.DESC_BITS // W

        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.csr_start):
                    m.d.sync += [err.eq(0), err_at.eq(0), i.eq(0), nbeat.eq(0), self.clear.eq(1),
                                 state.table_nseg.eq(0), state.sel.eq(0), state.pkg.eq(0), state.last_sel.eq(0)]
                    m.d.sync += [k.eq(0) for k in self.kept]
                    m.next = "HDR_CMD"
            with m.State("HDR_CMD"):
                m.d.sync += self.clear.eq(0)
                m.d.comb += [self.rd_cmd.valid.eq(1), self.rd_cmd.payload.addr.eq(self.prog_base),
                             self.rd_cmd.payload.length.eq(isa.HEADER_BYTES), self.rd_cmd.payload.fetch.eq(1)]
                with m.If(self.rd_cmd.ready):
                    m.next = "HDR"
            with m.State("HDR"):
                m.d.comb += self.i_fetch.ready.eq(~rec_done)
                with m.If(rec_done & self.rd_idle):
                    m.d.sync += [s.eq(rec.word_select(k, 32)) for k, s in enumerate(hdr.values())]
                    m.d.sync += nbeat.eq(0)
                    m.next = "HDR_CHECK"
                with m.Elif(self.rd_error):
                    m.d.sync += fail("AXI_READ", -1)
                    m.next = "ABORT"
            with m.State("HDR_CHECK"):
                self._header_checks(m, hdr, fail)
            with m.State("PROG_CMD"):
                m.d.comb += [self.rd_cmd.valid.eq(1), self.rd_cmd.payload.addr.eq(self.prog_base + hdr["desc_off"]),
                             self.rd_cmd.payload.length.eq(hdr["n_desc"] << 6), self.rd_cmd.payload.fetch.eq(1)]
                with m.If(self.rd_cmd.ready):
                    m.next = "PROG"
            with m.State("PROG"):
                m.d.comb += [self.i_fetch.ready.eq(~rec_done), self.pm_addr.eq(i), self.pm_wdata.eq(rec),
                             self.pm_wen.eq(rec_done)]
                with m.If(rec_done):
                    m.d.sync += [nbeat.eq(0), i.eq(i + 1)]
                    with m.If(i == hdr["n_desc"] - 1):
                        m.next = "STREAM_CMD"
                with m.If(self.rd_error):
                    m.d.sync += fail("AXI_READ", -1)
                    m.next = "ABORT"
            with m.State("STREAM_CMD"):
                m.d.comb += [self.rd_cmd.valid.eq(hdr["stream_len"] != 0),
                             self.rd_cmd.payload.addr.eq(self.prog_base + hdr["stream_off"]),
                             self.rd_cmd.payload.length.eq(hdr["stream_len"]), self.rd_cmd.payload.fetch.eq(0)]
                with m.If(self.rd_cmd.ready | (hdr["stream_len"] == 0)):
                    m.d.comb += self.ld_start.eq(1)
                    m.d.sync += [i.eq(0), self.n.eq(hdr["n_tokens"])]
                    m.next = "READ"
            self._run(m, i, hdr, code, op, state, fail)
            with m.State("ABORT"):                 # let a STORE finish its write, then reset the rest
                sent = Signal()                    # the DMA's abort is a pulse
                m.d.sync += sent.eq(1)
                m.d.comb += [self.abort.eq(~sent), self.ld_stop.eq(1), self.unit_reset.eq(~self.is_store)]
                with m.If(self.rd_idle & self.wr_idle & ~self.is_store):
                    m.next = "FINISH"
                with m.If(self.is_store & self.op_done):
                    m.d.sync += self.is_store.eq(0)
            with m.State("FINISH"):
                m.d.comb += [self.finish.eq(1), self.ld_stop.eq(1)]
                m.d.sync += sent.eq(0)
                m.next = "IDLE"
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        return m

    def _header_checks(self, m, hdr, fail):
        hw = self.hw
        align = hw.axi_bits // 8
        with m.If((hdr["magic"] != isa.MAGIC) | (hdr["version"] != isa.VERSION)):
            m.d.sync += fail("BAD_HEADER", -1)
            m.next = "ABORT"
        with m.Elif(hdr["hw_ident"] != hw.ident()):
            m.d.sync += fail("HW_MISMATCH", -1)
            m.next = "ABORT"
        with m.Elif((hdr["n_desc"] == 0) | (hdr["n_desc"] > hw.desc_max)):
            m.d.sync += fail("PROGRAM_SIZE", -1)
            m.next = "ABORT"
        with m.Elif((hdr["n_tokens"] == 0) | (hdr["n_tokens"] > hw.n_max)):
            m.d.sync += fail("BAD_TOKENS", -1)
            m.next = "ABORT"
        with m.Elif((hdr["stream_len"] & (hw.stream_bytes - 1)) | (hdr["desc_off"] & (align - 1))
                    | (hdr["stream_off"] & (align - 1))):
            m.d.sync += fail("BAD_HEADER", -1)
            m.next = "ABORT"
        with m.Else():
            m.next = "PROG_CMD"

    def _run(self, m, i, hdr, code, op, state, fail):
        hw = self.hw
        with m.State("READ"):
            with m.If(i == hdr["n_desc"]):
                m.d.sync += fail("NO_END", i)
                m.next = "ABORT"
            with m.Else():
                m.d.comb += [self.pm_addr.eq(i), self.pm_ren.eq(1)]
                m.next = "LATCH"
        with m.State("LATCH"):
            m.d.sync += self.desc.eq(self.pm_rdata)
            m.next = "CHECK"
        with m.State("CHECK"):
            loader_short = self.ld_error & (self.ld_li == i)
            dc = desc_view("DECIDE", self.desc)
            with m.If(op == op_code("END")):
                with m.If(self.ld_at_end):
                    with m.If(self.ld_consumed != self.ld_total):
                        m.d.sync += fail("STREAM_LEFTOVER", i)
                        m.next = "ABORT"
                    with m.Elif(self.rd_idle & self.wr_idle):
                        m.next = "FINISH"
            with m.Elif(code == ERR["BAD_OPCODE"]):
                m.d.sync += fail("BAD_OPCODE", i)
                m.next = "ABORT"
            with m.Elif((state.rows == 0) | (state.rows > hw.n_max)):
                m.d.sync += fail("BAD_TOKENS", i)
                m.next = "ABORT"
            with m.Elif(code != 0):
                m.d.sync += fail(code, i)
                m.next = "ABORT"
            with m.Elif(loader_short):
                m.d.sync += fail("STREAM_SHORT", i)
                m.next = "ABORT"
            with m.Elif((op == op_code("DECIDE")) & (dc.act == isa.ACT_LOAD) & ~(self.ld_table_ok & (self.ld_li == i))):
                m.d.comb += self.ci_run.eq(1)                 # let the loader bring the table first
            with m.Else():
                m.d.comb += [self.op_start.eq(1), self.ci_run.eq(1)]
                m.d.sync += self.is_store.eq(op == op_code("STORE"))
                m.next = "WAIT"
        with m.State("WAIT"):
            m.d.comb += self.ci_run.eq(1)
            with m.If(self.op_done):
                m.d.sync += [i.eq(i + 1), self.is_store.eq(0)] + self._after(op, state)
                m.next = "READ"
            with m.Elif(self.ld_error & (self.ld_li == i)):
                m.d.sync += fail("STREAM_SHORT", i)
                m.next = "ABORT"
            with m.Elif(self.rd_error):
                m.d.sync += fail("AXI_READ", i)
                m.next = "ABORT"
            with m.Elif(self.wr_error):
                m.d.sync += fail("AXI_WRITE", i)
                m.next = "ABORT"

    def _after(self, op, state):
        """State updates at the end of an operation (golden/interp.py)."""
        mm, dc, pk, cp = (desc_view(n, self.desc) for n in ("MATMUL", "DECIDE", "PACKAGE", "COMPACT"))
        is_ = {n: op == op_code(n) for n in ("MATMUL", "DECIDE", "PACKAGE", "COMPACT")}
        out = [state.table_nseg.eq(Mux(is_["MATMUL"] & (mm.act == isa.ACT_LOAD), mm.pwl_nseg,
                                       Mux(is_["DECIDE"] & (dc.act == isa.ACT_LOAD), dc.pwl_nseg, state.table_nseg))),
               state.sel.eq(Mux(is_["DECIDE"], 1, Mux(is_["COMPACT"], 0, state.sel))),
               state.sel_n.eq(Mux(is_["DECIDE"], state.rows, state.sel_n)),
               state.sel_npkg.eq(Mux(is_["DECIDE"], dc.n_pkg, state.sel_npkg)),
               state.last_sel.eq(state.last_sel | is_["DECIDE"]),
               state.pkg.eq(Mux(is_["PACKAGE"], 1, Mux(is_["COMPACT"] | is_["DECIDE"], 0, state.pkg))),
               state.pkg_d.eq(Mux(is_["PACKAGE"], pk.d, state.pkg_d)),
               self.n.eq(Mux(is_["COMPACT"], 2 + self.kept_last + cp.n_pkg, self.n)),
               self.kept_last.eq(Mux(is_["DECIDE"], self.kept_count, self.kept_last))]
        for s_ in range(self.hw.stages_max):
            out.append(self.kept[s_].eq(Mux(is_["DECIDE"] & (dc.stage == s_), self.kept_count, self.kept[s_])))
        return out
