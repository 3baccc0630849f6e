"""A formal AXI4 slave: attached to a master port in a harness (rtl_gen/host/dma_formal.py), it
drives free responses that keep the slave's rules (Assume) and asserts the master's rules.

    slave = FormalSlave(bits=64, burst_max=16, write=True)     # its `axi` member connects to
    wiring.connect(m, dut.m_axi0, slave.axi)                    # a master port (rtl_gen/host/axi.py)

Master rules, asserted (AMBA AXI4, IHI 0022; A3.2.1 handshake, A3.4.1 burst rules):
  AR, AW, W  once VALID is high it stays high, with every payload signal unchanged, until READY
  AR, AW     INCR bursts (the only type the DMA issues: the length and 4 KB rules below are INCR's),
             AxSIZE at most the data bus width, AxLEN + 1 <= burst_max (AXI4: 256), the burst
             never crosses a 4 KB boundary, ID 0 (the DMA's one ID: every response is in order)
  W          WLAST exactly on beat AWLEN + 1 of each burst, in AW order; AXI4 lets write data
             come before its address, so a W burst is compared with its AW whichever comes first
             (one burst chosen freely by the solver, `AnyConst`: a proof for it is one for all)
Slave rules, assumed:
  R          RVALID only for an accepted AR (after its handshake), ARLEN + 1 beats in AR order
             with RLAST on the last; at most `outstanding` bursts in flight (ARREADY low when
             full, as a real slave may); RVALID and payload held until RREADY; RID 0
  B          BVALID only after both the AW handshake and the last W beat of that burst (A3.3.1);
             held until BREADY; BID 0
READY, RDATA, RRESP and BRESP are otherwise free. Counters for a harness's end-of-job checks:
ar_beats / r_beats (AR lengths accepted, R beats taken) and aw_beats / w_beats likewise.
`bursts=False` leaves out the WLAST check: it relates counters to the master's queued lengths,
so it holds only from the reset state (bounded proofs), while the other master rules are
inductive on their own (k-induction proves them for all time).
"""
from __future__ import annotations

from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Assert, Assume, Module, Mux, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from ..tools.formal import hold_until_ready
from . import axi

COUNT_BITS = 16                 # transfers counted in a bounded proof (far beyond its depth)


class FormalSlave(wiring.Component):
    def __init__(self, bits: int, burst_max: int = axi.BURST_MAX, write: bool = True, id_bits: int = 1,
                 outstanding: int = 4, name: str = "m_axi", bursts: bool = True):
        self.bits, self.burst_max, self.write, self.outstanding, self.name = bits, burst_max, write, outstanding, name
        self.bursts = bursts
        self.port = axi.master_signature(bits, write, id_bits)
        super().__init__({"axi": In(self.port),
                          **{k: Out(COUNT_BITS) for k in ("ar_beats", "r_beats", "aw_beats", "w_beats")}})

    def elaborate(self, platform):
        m = Module()
        ax = self.axi
        for n, member in self.port.members.items():
            if member.flow == In:                               # a response: the slave's to drive
                m.d.comb += getattr(ax, n).eq(AnySeq(member.shape))
        self._address(m, "AR", "ar")
        self._read_data(m)
        if self.write:
            self._address(m, "AW", "aw")
            aw_count, w_bursts = Signal(COUNT_BITS), Signal(COUNT_BITS)    # AW handshakes, W bursts ended
            m.d.sync += [aw_count.eq(aw_count + self._fire("aw")), w_bursts.eq(w_bursts + (self._fire("w") & ax.wlast))]
            self._write_data(m, aw_count, w_bursts)
            self._write_response(m, aw_count, w_bursts)
        return m

    def _fire(self, ch: str):
        return getattr(self.axi, f"{ch}valid") & getattr(self.axi, f"{ch}ready")

    def _address(self, m, name, ch):
        """AR or AW: the handshake and the burst rules (asserted); the beats accepted."""
        ax, what = self.axi, f"{self.name} {name}"
        f = {k: getattr(ax, f"{ch}{k}") for k in ("id", "addr", "len", "size", "burst", "cache", "prot")}
        valid = getattr(ax, f"{ch}valid")
        hold_until_ready(m, valid, getattr(ax, f"{ch}ready"), list(f.values()), what)
        start = Signal(12, name=f"{ch}_page_start")                   # first byte's page offset, size-aligned
        end = Signal(17, name=f"{ch}_page_end")                       # one past the last byte
        m.d.comb += [start.eq(f["addr"][:12] >> f["size"] << f["size"]), end.eq(start + ((f["len"] + 1) << f["size"]))]
        with m.If(valid):
            m.d.comb += [
                Assert(f["burst"] == axi.INCR, f"{what}: INCR burst"),
                Assert(f["size"] <= axi.log2(self.bits // 8), f"{what}: size within the data bus"),
                Assert(f["len"] < self.burst_max, f"{what}: LEN + 1 at most burst_max"),
                Assert(end <= axi.PAGE, f"{what}: burst crosses a 4 KB boundary"),
                Assert(f["id"] == 0, f"{what}: ID 0"),
            ]
        beats = getattr(self, f"{ch}_beats")
        with m.If(self._fire(ch)):
            m.d.sync += beats.eq(beats + f["len"] + 1)

    def _read_data(self, m):
        """R: the beats of accepted ARs, in order, RLAST on each burst's last (assumed)."""
        ax, what = self.axi, f"{self.name} R"
        m.submodules.ar_lens = lens = fifo.SyncFIFO(width=8, depth=self.outstanding)
        beat = Signal(8)
        r_fire = self._fire("r")
        m.d.comb += [lens.w_en.eq(self._fire("ar")), lens.w_data.eq(ax.arlen),
                     lens.r_en.eq(r_fire & ax.rlast),
                     Assume(~ax.arready | lens.w_rdy), Assume(ax.rid == 0)]
        with m.If(ax.rvalid):
            m.d.comb += [Assume(lens.r_rdy), Assume(ax.rlast == (beat == lens.r_data))]
        with m.If(r_fire):
            m.d.sync += [beat.eq(Mux(ax.rlast, 0, beat + 1)), self.r_beats.eq(self.r_beats + 1)]
        hold_until_ready(m, ax.rvalid, ax.rready, [ax.rdata, ax.rresp, ax.rlast, ax.rid], what, Assume)

    def _write_data(self, m, aw_count, w_bursts):
        """W: held until WREADY; WLAST on beat AWLEN + 1 of the burst with the same index."""
        ax, what = self.axi, f"{self.name} W"
        hold_until_ready(m, ax.wvalid, ax.wready, [ax.wdata, ax.wstrb, ax.wlast], what)
        aw_fire, w_fire = self._fire("aw"), self._fire("w")
        w_beat = Signal(9)                                              # beats of the current W burst
        with m.If(w_fire):
            m.d.sync += [w_beat.eq(Mux(ax.wlast, 0, w_beat + 1)), self.w_beats.eq(self.w_beats + 1)]
        if not self.bursts:
            return
        # the tracked burst: its AW length (once known) and, if W ended first, its W length
        pick = Signal(COUNT_BITS)
        m.d.comb += pick.eq(AnyConst(COUNT_BITS))
        aw_len, aw_known, w_len, w_known = Signal(9), Signal(), Signal(9), Signal()
        aw_now = aw_fire & (aw_count == pick)
        known = aw_known | aw_now
        length = Mux(aw_known, aw_len, ax.awlen + 1)
        with m.If(aw_now):
            m.d.sync += [aw_len.eq(ax.awlen + 1), aw_known.eq(1)]
            with m.If(w_known):
                m.d.comb += Assert(w_len == ax.awlen + 1, f"{what}: WLAST on beat AWLEN + 1")
            with m.Elif(w_bursts == pick):
                m.d.comb += Assert(w_beat < ax.awlen + 1, f"{what}: more beats than AWLEN + 1")
        with m.If(w_fire & (w_bursts == pick)):
            with m.If(known):
                m.d.comb += Assert(ax.wlast == (w_beat + 1 == length), f"{what}: WLAST on beat AWLEN + 1")
            with m.Elif(ax.wlast):
                m.d.sync += [w_len.eq(w_beat + 1), w_known.eq(1)]

    def _write_response(self, m, aw_count, w_bursts):
        """B: only for a burst whose address and last data beat have both been accepted."""
        ax, what = self.axi, f"{self.name} B"
        b_count = Signal(COUNT_BITS)
        m.d.sync += b_count.eq(b_count + self._fire("b"))
        with m.If(ax.bvalid):
            m.d.comb += [Assume(b_count < aw_count), Assume(b_count < w_bursts)]
        m.d.comb += Assume(ax.bid == 0)
        hold_until_ready(m, ax.bvalid, ax.bready, [ax.bresp, ax.bid], what, Assume)
