"""Run controller: header and descriptor fetch, then the descriptors one by one (golden/interp.py
Machine.run is the reference, including the order of checks and error codes).

    IDLE -> HEADER (fetch 64 bytes, check: golden.isa.HEADER_CHECKS) -> PROGRAM (fetch n_desc
    descriptors into the program memory) -> start the stream reader and the stream loader -> per
    descriptor: READ, CHECK (golden.isa.CHECKS via rtl_gen/control/checks.py), START the unit, WAIT
    for done, update the state -> END (the stream must be consumed exactly) -> FINISH.
Errors (a failing check, an AXI error response, the stream loader starved at this descriptor)
record ERROR_CODE / ERROR_INDEX, reset the units, abort the DMA and finish: the run never hangs
on a bad program.

Ports, by what they connect to:
    csr      In(core_port)        the CSR block: start, prog_base; busy, finish, error, live state
    rd_cmd   Out(stream)          DMA read commands (header, program: fetch jobs; the data stream)
    i_fetch  In(stream)           fetched beats (header and descriptors)
    dma      In(dma_status)       DMA abort / clear; idle and error flags
    prog     Out(rw_port)         program memory port A (written by the fetch, read per descriptor)
    loader   Out(loader_port)     the stream loader
    units    Out(dispatch_port)   the operation units (top.py starts the one of the opcode)
"""
from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from golden import isa
from golden.hw import HardwareConfig

from ..host.csr import core_port
from ..host.dma import dma_status
from ..host.dma_read import read_cmd_layout
from ..primitives.ram import rw_port
from .checks import CODE_SHAPE, check_code, header_code
from .decode import Opcode, common_view, desc_view, header_layout
from .stream_loader import loader_port

ERR = isa.ERROR_CODES
HEADER_INDEX = -1                 # ERROR_INDEX of a header error (0xFFFFFFFF)
CMD_SLICE = 1                     # a read command is offered from registers: a cycle after its state


def dispatch_port(hw: HardwareConfig) -> wiring.Signature:
    """Run controller -> the operation units, directions as the controller sees them."""
    count = range(hw.n_max + 1)
    return wiring.Signature({
        "desc": Out(isa.DESC_BITS), "rows": Out(count),   # the running descriptor, its resolved row count
        "start": Out(1), "reset": Out(1),                 # start the descriptor's unit (top.py registers it
                                                           # per unit: the unit starts a cycle later); reset every unit
        "done": In(1),                                     # the unit finished
        "kept_count": In(count),                           # DECIDE's kept count (valid at its done)
    })


class Controller(wiring.Component):
    def __init__(self, hw: HardwareConfig):
        self.hw = hw
        super().__init__({
            "csr": In(core_port(hw)),
            "rd_cmd": Out(stream.Signature(read_cmd_layout())), "i_fetch": In(stream.Signature(hw.axi_bits)),
            "dma": In(dma_status()),
            "prog": Out(rw_port(isa.DESC_BITS, hw.desc_max)),
            "loader": Out(loader_port(hw)),
            "units": Out(dispatch_port(hw)),
        })

    def elaborate(self, platform):
        m = Module()
        run = self._registers(m)
        self._collect_records(m, run)
        with m.FSM() as fsm:
            self._start(m, run)
            self._fetch_header(m, run)
            self._fetch_program(m, run)
            self._execute(m, run)
            self._stop(m, run)
        fsm.state.attrs["max_fanout"] = 16           # decoded by the enables of every register
        # the loader's stop (its reset) from a register: a cycle after ABORT or FINISH begins
        stop = Signal(attrs={"max_fanout": 16})
        m.d.sync += stop.eq(fsm.ongoing("ABORT") | fsm.ongoing("FINISH"))
        m.d.comb += self.loader.stop.eq(stop)
        # busy from a register (the CSR block's start and counters hang off it; its own `running`
        # covers the cycles before, and busy may outlast finish)
        busy = Signal(name="busy")
        m.d.sync += busy.eq(~fsm.ongoing("IDLE"))
        m.d.comb += self.csr.busy.eq(busy)
        # the loader's start (and the units' and the ring's reset with it) a cycle after the data
        # stream's command is taken, from a register: the DMA's ready ran through this FSM into
        # the loader's
        m.d.sync += self.loader.start.eq(run.stream_start)
        # the read commands are offered from registers (CMD_SLICE): the DMA's ready clears the
        # offer and, for the stream's, starts the loader; it does not reach the FSM
        with m.If(self.rd_cmd.valid & self.rd_cmd.ready):
            m.d.sync += self.rd_cmd.valid.eq(0)
            with m.If(~self.rd_cmd.payload.fetch):
                m.d.comb += run.stream_start.eq(1)
        return m

    def _registers(self, m):
        """The run's registers and the checks on them (golden/interp.py Machine's state)."""
        hw, units = self.hw, self.units
        run = SimpleNamespace(
            record=Signal(isa.DESC_BITS),                    # a fetched 64-byte record (header or descriptor)
            stream_start=Signal(),                           # the data stream's command is taken
            beats=Signal(range(isa.DESC_BITS // hw.axi_bits + 1)),   # its beats so far
            header=Signal(header_layout()),
            index=Signal(range(hw.desc_max + 1)),            # the descriptor being fetched or executed
            tokens=Signal(range(hw.n_max + 1)),              # the token-count register N
            error=Signal(CODE_SHAPE), error_at=Signal(32),
            fetching=Signal(),                               # in HDR or PROG: fetched beats are taken
            in_header=Signal(attrs={"max_fanout": 16}),     # in HDR: the header follows the record
            is_store=Signal(),                               # the running unit is STORE (finishes on abort)
            abort_sent=Signal(),                             # the DMA's abort is a pulse
            # READ's registered decision to latch: LATCH's load of all 512 descriptor bits is
            # enabled by a replicated register, not by the FSM's decode
            latch=Signal(attrs={"max_fanout": 16}),
            last_desc=Signal(32))                            # the header's n_desc - 1, from a register
        run.record_done = run.beats == isa.DESC_BITS // hw.axi_bits
        m.d.sync += [run.latch.eq(0), run.last_desc.eq(run.header.n_desc - 1)]
        # the program memory's address and data whatever the state (PROG's wen, READ's ren gate
        # them): no state decode in front of 512 data bits
        m.d.comb += [self.prog.addr.eq(run.index), self.prog.wdata.eq(run.record)]
        with m.If(run.in_header):                           # complete when HDR ends
            m.d.sync += run.header.eq(run.record[:len(run.header.as_value())])
        with m.If(run.latch):
            m.d.sync += units.desc.eq(self.prog.rdata)
        units.desc.attrs["max_fanout"] = 16                  # every check's and every unit's field
        m.d.comb += self.i_fetch.ready.eq(run.fetching & ~run.record_done)   # from registers, not the FSM
        # the check state (golden.isa CHECKS `s`); sel_kept: the latest DECIDE's kept count
        run.state = SimpleNamespace(
            rows=Signal(range(8192)), table_nseg=Signal(13), sel=Signal(), sel_n=Signal(range(8192)),
            sel_npkg=Signal(4), sel_mode=Signal(2), pkg=Signal(), pkg_d=Signal(13), last_sel=Signal(),
            sel_kept=Signal(range(hw.n_max + 1)))
        common = common_view(units.desc)
        run.op = common.op
        # the opcode's decodes from registers (a cycle after LATCH; read from CHECK on): every
        # state update at the end of an operation hangs on them
        run.is_ = {n: Signal(name=f"is_{n.lower()}", attrs={"max_fanout": 16})
                   for n in ("MATMUL", "DECIDE", "PACKAGE", "COMPACT", "STORE", "END")}
        m.d.sync += [v.eq(run.op == Opcode[n]) for n, v in run.is_.items()]
        m.d.comb += run.state.rows.eq(Mux(common.rows_n, run.tokens, common.rows))
        # the checks of the latched descriptor: steps, rules and their code registered (STEP, RULES, CODE)
        run.check = Signal(CODE_SHAPE)
        m.d.sync += run.check.eq(check_code(m, hw, units.desc, run.state, registered=True))
        # the units' done, registered: it selects every state update (`_after`); the kept count
        # it comes with holds until the next DECIDE starts
        run.done = Signal()
        m.d.sync += run.done.eq(units.done)
        run.bad_rows = Signal()
        m.d.sync += run.bad_rows.eq((run.state.rows == 0) | (run.state.rows > hw.n_max))
        run.header_check = Signal(CODE_SHAPE)         # HDR_RULES, HDR_CODE as for descriptors
        m.d.sync += run.header_check.eq(header_code(m, hw, run.header, registered=True))
        # the units' row count from a register (they read it from start, four cycles after LATCH)
        m.d.sync += units.rows.eq(run.state.rows)
        units.rows.attrs["max_fanout"] = 16
        m.d.comb += [self.csr.error_code.eq(run.error), self.csr.error_index.eq(run.error_at),
                     self.csr.desc_index.eq(run.index), self.csr.tokens.eq(run.tokens),
                     self.loader.desc_index.eq(run.index), self.loader.tokens.eq(run.tokens),
                     self.loader.total.eq(run.header.stream_len >> (hw.stream_bytes.bit_length() - 1))]
        return run

    @staticmethod
    def _fail(run, what, at):
        """Statements recording an error: `what` an error name or a code Value, `at` its index."""
        return [run.error.eq(ERR[what] if isinstance(what, str) else what), run.error_at.eq(at)]

    def _collect_records(self, m, run):
        """Fetched beats -> 512-bit records (first beat in the low bits). A beat goes into its word
        while it is offered (it holds there until taken, and `beats` moves only then; once the
        record is complete the word index is past its end), so the record's enables do not wait
        for the FSM's ready."""
        W = self.hw.axi_bits
        with m.If(self.i_fetch.valid):
            m.d.sync += run.record.word_select(run.beats, W).eq(self.i_fetch.payload)
        with m.If(self.i_fetch.valid & self.i_fetch.ready):
            m.d.sync += run.beats.eq(run.beats + 1)

    def _start(self, m, run):
        with m.State("IDLE"):
            with m.If(self.csr.start):
                s = run.state
                m.d.sync += [run.error.eq(0), run.error_at.eq(0), run.index.eq(0), run.beats.eq(0),
                             self.dma.clear.eq(1), s.table_nseg.eq(0), s.sel.eq(0), s.pkg.eq(0), s.last_sel.eq(0)]
                m.d.sync += [k.eq(0) for k in self.csr.kept]
                m.next = "HDR_CMD"

    def _read_cmd(self, addr, length, fetch):
        """Offer a read command (from registers, from the next cycle until the DMA takes it):
        `length` bytes at prog_base + `addr`, a fetch job or the stream."""
        cmd = self.rd_cmd.payload
        return [self.rd_cmd.valid.eq(1), cmd.addr.eq(self.csr.prog_base + addr), cmd.length.eq(length),
                cmd.fetch.eq(fetch)]

    def _fetch_header(self, m, run):
        """HDR_CMD, HDR: fetch the 64-byte header; HDR_RULES, HDR_CODE, HDR_CHECK: golden.isa.HEADER_CHECKS."""
        with m.State("HDR_CMD"):
            m.d.sync += [self.dma.clear.eq(0), *self._read_cmd(0, isa.HEADER_BYTES, 1),
                         run.fetching.eq(1), run.in_header.eq(1)]
            m.next = "HDR"
        with m.State("HDR"):
            with m.If(run.record_done & self.dma.rd_idle):
                m.d.sync += [run.in_header.eq(0), run.beats.eq(0), run.fetching.eq(0)]
                m.next = "HDR_RULES"
            with m.Elif(self.dma.rd_error):
                m.d.sync += [*self._fail(run, "AXI_READ", HEADER_INDEX), run.fetching.eq(0), run.in_header.eq(0)]
                m.next = "ABORT"
        with m.State("HDR_RULES"):
            m.next = "HDR_CODE"
        with m.State("HDR_CODE"):
            m.next = "HDR_CHECK"
        with m.State("HDR_CHECK"):
            with m.If(run.header_check != 0):
                m.d.sync += self._fail(run, run.header_check, HEADER_INDEX)
                m.next = "ABORT"
            with m.Else():
                m.next = "PROG_CMD"

    def _fetch_program(self, m, run):
        """PROG_CMD, PROG: the descriptors into the program memory; STREAM_CMD: start the data
        stream and the stream loader."""
        hdr = run.header
        with m.State("PROG_CMD"):
            m.d.sync += [*self._read_cmd(hdr.desc_off, hdr.n_desc * isa.DESC_BYTES, 1), run.fetching.eq(1)]
            m.next = "PROG"
        with m.State("PROG"):
            m.d.comb += self.prog.wen.eq(run.record_done)
            with m.If(run.record_done):
                m.d.sync += [run.beats.eq(0), run.index.eq(run.index + 1)]
                with m.If(run.index == run.last_desc):
                    m.d.sync += run.fetching.eq(0)
                    m.next = "STREAM_CMD"
            with m.If(self.dma.rd_error):
                m.d.sync += [*self._fail(run, "AXI_READ", HEADER_INDEX), run.fetching.eq(0)]
                m.next = "ABORT"
        with m.State("STREAM_CMD"):
            with m.If(hdr.stream_len == 0):
                m.d.comb += run.stream_start.eq(1)
            with m.Else():
                m.d.sync += self._read_cmd(hdr.stream_off, hdr.stream_len, 0)
            m.d.sync += [run.index.eq(0), run.tokens.eq(hdr.n_tokens)]
            m.next = "READ"

    def _execute(self, m, run):
        """READ, LATCH: the next descriptor from the program memory; STEP, RULES, CODE: its checks
        (check_code's REGISTERED_LATENCY, then the code registered); CHECK, WAIT: run it."""
        with m.State("READ"):
            with m.If(run.index == run.header.n_desc):
                m.d.sync += self._fail(run, "NO_END", run.index)
                m.next = "ABORT"
            with m.Else():
                m.d.comb += self.prog.ren.eq(1)
                m.d.sync += run.latch.eq(1)
                m.next = "LATCH"
        with m.State("LATCH"):                     # `latch` loads the descriptor
            m.next = "STEP"
        with m.State("STEP"):                      # golden.isa STEPS (ATTENTION's heads x head_dim)
            m.next = "RULES"
        with m.State("RULES"):
            m.next = "CODE"
        with m.State("CODE"):
            m.next = "CHECK"
        with m.State("CHECK"):
            self._check_and_start(m, run)
        with m.State("WAIT"):
            self._wait(m, run)

    def _check_and_start(self, m, run):
        """END: finish once the loader has consumed the stream exactly; any other descriptor: its
        checks in the interpreter's order, then start its unit."""
        ld, i = self.loader, run.index
        loader_here = ld.stream_index == i
        needs_table = run.is_["DECIDE"] & (desc_view("DECIDE", self.units.desc).act == isa.ACT_LOAD)
        # the loader may bring this descriptor's items once its own checks pass, from registers
        # only (not from the loader's index compares below: they would run into the loader's
        # registers through this FSM); a starved loader stops the run a cycle later anyway
        m.d.comb += ld.running.eq(~run.is_["END"] & (run.check == 0) & ~run.bad_rows)
        with m.If(run.is_["END"]):
            with m.If(ld.at_end):
                with m.If(ld.consumed != ld.total):
                    m.d.sync += self._fail(run, "STREAM_LEFTOVER", i)
                    m.next = "ABORT"
                with m.Elif(self.dma.rd_idle & self.dma.wr_idle):
                    m.next = "FINISH"
        with m.Elif(run.check == ERR["BAD_OPCODE"]):
            m.d.sync += self._fail(run, "BAD_OPCODE", i)
            m.next = "ABORT"
        with m.Elif(run.bad_rows):
            m.d.sync += self._fail(run, "BAD_TOKENS", i)
            m.next = "ABORT"
        with m.Elif(run.check != 0):
            m.d.sync += self._fail(run, run.check, i)
            m.next = "ABORT"
        with m.Elif(ld.error & loader_here):
            m.d.sync += self._fail(run, "STREAM_SHORT", i)
            m.next = "ABORT"
        with m.Elif(needs_table & ~(ld.table_ok & loader_here)):
            pass                                         # the loader brings the table first
        with m.Else():
            m.d.comb += self.units.start.eq(1)
            m.d.sync += run.is_store.eq(run.is_["STORE"])
            m.next = "WAIT"

    def _wait(self, m, run):
        ld, i = self.loader, run.index
        m.d.comb += ld.running.eq(1)
        with m.If(run.done):
            m.d.sync += [i.eq(i + 1), run.is_store.eq(0)] + self._after(run)
            m.next = "READ"
        with m.Elif(ld.error & (ld.stream_index == i)):
            m.d.sync += self._fail(run, "STREAM_SHORT", i)
            m.next = "ABORT"
        with m.Elif(self.dma.rd_error):
            m.d.sync += self._fail(run, "AXI_READ", i)
            m.next = "ABORT"
        with m.Elif(self.dma.wr_error):
            m.d.sync += self._fail(run, "AXI_WRITE", i)
            m.next = "ABORT"

    def _after(self, run):
        """State updates at the end of an operation (golden/interp.py)."""
        desc, s, is_ = self.units.desc, run.state, run.is_
        mm, dc, pk, cp = (desc_view(n, desc) for n in ("MATMUL", "DECIDE", "PACKAGE", "COMPACT"))
        kept_count = self.units.kept_count
        out = [s.table_nseg.eq(Mux(is_["MATMUL"] & (mm.act == isa.ACT_LOAD), mm.pwl_nseg,
                                   Mux(is_["DECIDE"] & (dc.act == isa.ACT_LOAD), dc.pwl_nseg, s.table_nseg))),
               s.sel.eq(Mux(is_["DECIDE"], 1, Mux(is_["COMPACT"], 0, s.sel))),
               s.sel_n.eq(Mux(is_["DECIDE"], s.rows, s.sel_n)),
               s.sel_npkg.eq(Mux(is_["DECIDE"], dc.n_pkg, s.sel_npkg)),
               s.sel_mode.eq(Mux(is_["DECIDE"], dc.mode, s.sel_mode)),
               s.last_sel.eq(s.last_sel | is_["DECIDE"]),
               s.pkg.eq(Mux(is_["PACKAGE"], 1, Mux(is_["COMPACT"] | is_["DECIDE"], 0, s.pkg))),
               s.pkg_d.eq(Mux(is_["PACKAGE"], pk.d, s.pkg_d)),
               run.tokens.eq(Mux(is_["COMPACT"], 2 + s.sel_kept + cp.n_pkg - cp.no_pkg, run.tokens)),
               s.sel_kept.eq(Mux(is_["DECIDE"], kept_count, s.sel_kept))]
        for stage, kept in enumerate(self.csr.kept):
            out.append(kept.eq(Mux(is_["DECIDE"] & (dc.stage == stage), kept_count, kept)))
        return out

    def _stop(self, m, run):
        """ABORT: let a STORE finish its write, reset the rest, wait for the DMA; FINISH."""
        with m.State("ABORT"):
            m.d.sync += [run.abort_sent.eq(1), self.rd_cmd.valid.eq(0)]      # a stream command not taken
            m.d.comb += [self.dma.rd_abort.eq(~run.abort_sent), self.units.reset.eq(~run.is_store)]
            with m.If(self.dma.rd_idle & self.dma.wr_idle & ~run.is_store):
                m.next = "FINISH"
            with m.If(run.is_store & run.done):
                m.d.sync += run.is_store.eq(0)
        with m.State("FINISH"):
            m.d.comb += self.csr.finish.eq(1)
            m.d.sync += run.abort_sent.eq(0)
            m.next = "IDLE"
