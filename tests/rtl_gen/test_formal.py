"""Formal properties (docs/rtl.md, "Formal properties"): the AXI4 master rules at the DMA's ports
and the stream handshakes inside the DMA and the array unit, proven with yosys-smtbmc + Yices
(k-induction where the properties are inductive, bounded model checking from reset for the
rest), and for every kind of property a broken variant of the unit that the check catches."""
from __future__ import annotations

from unittest import mock

import pytest
from amaranth.hdl import Mux, Signal

from golden.hw import HardwareConfig
from golden.isa import ONE_Q15
from rtl_gen.array import score_capture
from rtl_gen.array.epilogue import Epilogue
from rtl_gen.array.fetch import Fetch
from rtl_gen.array.mac import MacArray
from rtl_gen.array.score_capture_formal import ScoreCaptureFormal
from rtl_gen.array.unit import ArrayUnit
from rtl_gen.array.unit_formal import ArrayUnitFormal
from rtl_gen.host import axi
from rtl_gen.host.dma import Dma
from rtl_gen.host.dma_formal import DmaFormal
from rtl_gen.host.dma_read import DmaReader, ReadEngine
from rtl_gen.host.dma_write import DmaWriter
from rtl_gen.primitives.fifo import RamFifo
from rtl_gen.tools import formal

DMA_HW = HardwareConfig(axi_ports=2, axi_bits=64)
ARRAY_HW = HardwareConfig(mac_rows=2, mac_cols=8, n_max=8, d_max=8, hidden_max=8, pwl_max=8, desc_max=16)
INDUCTION_K = 3             # k of the k-induction proofs
DMA_DEPTH = 10              # BMC cycles from reset: a short read job and a short write job complete
ARRAY_DEPTH = 6             # BMC cycles from reset: requests, MAC beats, tile info, a drained column
CAPTURE_DEPTH = 2 * (score_capture.LATENCY + 1)   # a key's two heads, LATENCY + 1 apart, and its last write


def small_dma(**kw) -> Dma:
    return Dma(DMA_HW, burst_max=2, fifo_depth=2, **kw)


def caught(result, rule: str) -> bool:
    """The check failed, and on `rule` (the end of an assertion's message: any port or part)."""
    return not result.passed and any(msg.endswith(rule) for msg in result.failed)


def check(result, proof: str):
    outcome = "passed" if result.passed else "FAILED"
    print(f"{proof}: {result.mode} {outcome} in {result.seconds:.1f} s ({result.solver})")
    assert result.passed, f"{proof}: {result.failed}"


# ------------------------------------------------------------------------------------ proofs

def test_dma_axi_rules_for_all_time(tmp_path):
    """Handshakes, INCR, size, ARLEN/AWLEN <= 256, no 4 KB crossing, ID 0: every cycle
    (k-induction), at the full AXI4 burst length."""
    check(formal.prove(DmaFormal(DMA_HW, scope="ports"), INDUCTION_K, tmp_path, induction=True), "DMA ports")


def test_dma_all_rules_from_reset(tmp_path):
    """Also WLAST / W beats against AWLEN, R and W beats owed at idle, rule 2 on every stream."""
    check(formal.prove(DmaFormal(DMA_HW, dma=small_dma()), DMA_DEPTH, tmp_path), "DMA all")


def test_array_streams_for_all_time(tmp_path):
    check(formal.prove(ArrayUnitFormal(ARRAY_HW, scope="inductive"), INDUCTION_K, tmp_path, induction=True),
          "array unit streams")


def test_array_streams_from_reset(tmp_path):
    """Includes the streams without back-pressure (tile info, divisors), from reset."""
    check(formal.prove(ArrayUnitFormal(ARRAY_HW), ARRAY_DEPTH, tmp_path), "array unit all streams")


@pytest.mark.parametrize("momentum", [0, 1 << 14, ONE_Q15])
def test_score_capture_leaves_golden_score(tmp_path, momentum):
    """EViT (t = 2^15), Evo-ViT (t = 2^14) and a score kept as it is (t = 0): one or two heads
    through the block RAM's read-modify-write."""
    check(formal.prove(ScoreCaptureFormal(ARRAY_HW, momentum), CAPTURE_DEPTH, tmp_path),
          f"score capture, t = {momentum}")


def test_no_valid_follows_ready(tmp_path):
    """Stream rule 3 on every stream inside the DMA and the array unit."""
    assert formal.ready_to_valid(small_dma(), tmp_path / "dma") == []
    assert formal.ready_to_valid(ArrayUnit(ARRAY_HW), tmp_path / "array") == []


# ------------------------------------------------------------------------- broken variants
# Each subclass re-drives one signal after the unit's own logic (the last assignment wins).

def withdrawing(unit, handshake):
    """`unit` with a valid that drops while its ready is low: handshake(self) -> (valid, ready)."""
    class Withdrawing(unit):
        def elaborate(self, platform):
            m = super().elaborate(platform)
            valid, ready = handshake(self)
            with m.If(valid & ~ready):
                m.d.sync += valid.eq(0)
            return m
    return Withdrawing


WithdrawnAr = withdrawing(ReadEngine, lambda e: (e.axi.arvalid, e.axi.arready))
LeakyFifo = withdrawing(RamFifo, lambda f: (f.o.valid, f.o.ready))
DroppingMac = withdrawing(MacArray, lambda a: (a.o_acc.valid, a.o_acc.ready))


class MovingAw(DmaWriter):
    def elaborate(self, platform):
        m = super().elaborate(platform)
        with m.If(self.axi.awvalid & ~self.axi.awready):
            m.d.sync += self.axi.awaddr.eq(self.axi.awaddr + 8)
        return m


class BlinkingW(DmaWriter):
    def elaborate(self, platform):
        m = super().elaborate(platform)
        blink = Signal()
        m.d.sync += blink.eq(~blink)
        w = m.submodules.w_slice.o              # offered every other cycle, taken only when offered
        m.d.comb += [self.axi.wvalid.eq(w.valid & blink), w.ready.eq(self.axi.wready & blink)]
        return m


class NoWlast(DmaWriter):
    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += self.axi.wlast.eq(0)
        return m


class EarlyWriteIdle(DmaWriter):
    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += self.idle.eq(1)
        return m


class EarlyReadIdle(DmaReader):
    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += self.idle.eq(~self.o_stream.valid & ~self.o_fetch.valid)
        return m


BURST_BEATS = axi.burst_beats


def no_page_limit(m, addr, left, bits, burst_max, name):
    n = Signal(range(axi.burst_cap(bits, burst_max) + 1), name=name)
    m.d.comb += n.eq(Mux(left < burst_max, left, burst_max))
    return n


def one_too_long(m, addr, left, bits, burst_max, name):
    return BURST_BEATS(m, addr, left, bits, burst_max + 1, name)       # still within the 4 KB page


class PoppingFetch(Fetch):
    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += m.submodules.fifo.o.ready.eq(1)       # pops its operand FIFO while the array stalls
        return m


class ReadyFirstEpilogue(Epilogue):
    def _write(self, m, t, before, y):
        super()._write(m, t, before, y)
        m.d.comb += self.o_s.valid.eq(self._sm_out.o.valid & self.o_s.ready)


DMA_MUTANTS = {
    "m_axi0 AR: valid withdrawn before ready": ("rtl_gen.host.dma_read.ReadEngine", WithdrawnAr),
    "m_axi0 AW: payload changed before ready": ("rtl_gen.host.dma.DmaWriter", MovingAw),
    "m_axi0 W: valid withdrawn before ready": ("rtl_gen.host.dma.DmaWriter", BlinkingW),
    "m_axi0 W: WLAST on beat AWLEN + 1": ("rtl_gen.host.dma.DmaWriter", NoWlast),
    "m_axi0: write side idle with W beats owed": ("rtl_gen.host.dma.DmaWriter", EarlyWriteIdle),
    # any port: the solver reports whichever engine's R beats it leaves owed first
    ": read side idle with R beats owed": ("rtl_gen.host.dma.DmaReader", EarlyReadIdle),
    ".o: valid withdrawn before ready": ("rtl_gen.host.dma_read.RamFifo", LeakyFifo),  # the FIFO or its engine
}
BURST_MUTANTS = {
    "burst crosses a 4 KB boundary": no_page_limit,           # AR or AW, whichever the solver finds first
    "LEN + 1 at most burst_max": one_too_long,
}
ARRAY_MUTANTS = {
    "dut.mac.o_acc: valid withdrawn before ready": ("rtl_gen.array.unit.MacArray", DroppingMac),
    "dut.fetch.o_ab: payload changed before ready": ("rtl_gen.array.unit.Fetch", PoppingFetch),
}


@pytest.mark.parametrize("fails", list(DMA_MUTANTS))
def test_dma_mutant_caught(tmp_path, fails):
    target, mutant = DMA_MUTANTS[fails]
    with mock.patch(target, mutant):            # some parts are made at construction, some at elaboration
        r = formal.prove(DmaFormal(DMA_HW, dma=small_dma()), DMA_DEPTH, tmp_path)
    assert caught(r, fails), r.failed


@pytest.mark.parametrize("fails", list(BURST_MUTANTS))
def test_burst_mutant_caught(tmp_path, fails):
    with mock.patch.object(axi, "burst_beats", BURST_MUTANTS[fails]):
        r = formal.prove(DmaFormal(DMA_HW, scope="ports", dma=Dma(DMA_HW, burst_max=16)), 6, tmp_path)
    assert caught(r, fails), r.failed


# connected ports carry the same stream and each end has the stream's assertions: the solver may
# report a broken handshake under either name (which one depends on the netlist)
ARRAY_CONNECTED = {"dut.fetch.o_ab": "dut.mac.i_ab", "dut.mac.o_acc": "dut.drain.i_acc"}


@pytest.mark.parametrize("fails", list(ARRAY_MUTANTS))
def test_array_mutant_caught(tmp_path, fails):
    target, mutant = ARRAY_MUTANTS[fails]
    with mock.patch(target, mutant):            # the array unit makes its parts when elaborated
        r = formal.prove(ArrayUnitFormal(ARRAY_HW, scope="inductive"), INDUCTION_K, tmp_path, induction=True)
    ends = [fails] + [fails.replace(a, b) for a, b in ARRAY_CONNECTED.items() if fails.startswith(a)]
    assert any(caught(r, end) for end in ends), r.failed


def test_score_capture_mutants_caught(tmp_path):
    """The old score weighed by 2^15 - t - 1, and a key sent again LATENCY cycles after its last
    probability (its read meets its own pending write)."""
    final = "score capture: final score differs from golden's formula"
    with mock.patch.object(score_capture, "ONE_Q15", ONE_Q15 - 1):
        assert caught(formal.prove(ScoreCaptureFormal(ARRAY_HW, 1 << 14), CAPTURE_DEPTH, tmp_path / "weight"), final)
    too_soon = ScoreCaptureFormal(ARRAY_HW, 1 << 14, gap=score_capture.LATENCY)
    assert caught(formal.prove(too_soon, CAPTURE_DEPTH, tmp_path / "gap"), final)


def test_valid_follows_ready_caught(tmp_path):
    with mock.patch("rtl_gen.array.unit.Epilogue", ReadyFirstEpilogue):
        assert formal.ready_to_valid(ArrayUnit(ARRAY_HW), tmp_path) == ["epi.o_s", "att.i_s", "att.softmax.i_s"]
