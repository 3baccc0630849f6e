"""AXI4 master signatures and the INCR burst rule shared by the DMA (rtl_gen/dma*.py).

Members are flat, named as in the AXI4 specification, master side (requests Out, responses
In). A component member `m_axi0` of this signature becomes the Verilog ports `m_axi0__araddr`,
`m_axi0__arvalid`, ... (Amaranth joins member names with "__"), so cocotbext-axi finds them with

    AxiBus.from_prefix(dut, "m_axi0", bus_separator="__")          # read + write port
    AxiReadBus.from_prefix(dut, "m_axi1", bus_separator="__")      # read-only port

cocotbext-axi requires the ID signals (arid/rid, awid/bid); the DMA drives every ID with 0
(all reads of a port complete in order), ARCACHE/AWCACHE with 0b0011 (normal non-cacheable
bufferable) and ARPROT/AWPROT with 0. ARLOCK, ARQOS, ARREGION and the USER signals are absent
(tie them to 0 at the interconnect).
"""
from __future__ import annotations

from amaranth.hdl import Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

ADDR_BITS = 64
CHANNELS = ("aw", "ar", "w", "r", "b")   # member name prefixes (two-letter ones first): the
                                        # members of channel c are named c..., its handshake cvalid, cready
PAGE = 4096                 # an INCR burst never crosses a 4 KB boundary
BURST_MAX = 256             # AXI4 INCR: at most 256 beats
INCR = 0b01
CACHE = 0b0011
OKAY = 0b00


def read_members(bits: int, id_bits: int = 1) -> dict:
    return {
        "arid": Out(id_bits), "araddr": Out(ADDR_BITS), "arlen": Out(8), "arsize": Out(3), "arburst": Out(2),
        "arcache": Out(4), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
        "rid": In(id_bits), "rdata": In(bits), "rresp": In(2), "rlast": In(1), "rvalid": In(1), "rready": Out(1),
    }


def write_members(bits: int, id_bits: int = 1) -> dict:
    return {
        "awid": Out(id_bits), "awaddr": Out(ADDR_BITS), "awlen": Out(8), "awsize": Out(3), "awburst": Out(2),
        "awcache": Out(4), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
        "wdata": Out(bits), "wstrb": Out(bits // 8), "wlast": Out(1), "wvalid": Out(1), "wready": In(1),
        "bid": In(id_bits), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
    }


def read_signature(bits: int, id_bits: int = 1) -> wiring.Signature:
    return wiring.Signature(read_members(bits, id_bits))


def write_signature(bits: int, id_bits: int = 1) -> wiring.Signature:
    return wiring.Signature(write_members(bits, id_bits))


def master_signature(bits: int, write: bool, id_bits: int = 1) -> wiring.Signature:
    """One AXI4 master port: the read channels, and the write channels if `write`."""
    return wiring.Signature({**read_members(bits, id_bits), **(write_members(bits, id_bits) if write else {})})


def connect_members(m, src, dst, names) -> None:
    """Wire members `names` of two ports with the same direction convention (outputs of `src`
    drive `dst`, inputs of `dst` drive `src`): a sub-interface of a wider port."""
    for n in names:
        flow = src.signature.members[n].flow
        a, b = getattr(src, n), getattr(dst, n)
        m.d.comb += (b.eq(a) if flow == Out else a.eq(b))


def reject(obj, msg: str):
    """Raise ValueError(msg) from a component's constructor without Amaranth's warning about
    an unused elaboratable."""
    obj._MustUse__used = True
    raise ValueError(msg)


def log2(n: int) -> int:
    assert n > 0 and n & (n - 1) == 0, n
    return n.bit_length() - 1


def burst_cap(bits: int, burst_max: int) -> int:
    """Most beats of one burst: burst_max, the AXI4 limit, and one 4 KB page."""
    return min(burst_max, BURST_MAX, PAGE // (bits // 8))


def burst_beats(m, addr, left, bits: int, burst_max: int, name: str):
    """Beats of the next INCR burst from beat-aligned `addr` with `left` beats to go:
    min(left, burst_cap, beats to the next 4 KB boundary). A comb Signal."""
    sh, cap = log2(bits // 8), burst_cap(bits, burst_max)
    page_beats = PAGE >> sh
    to_page = Signal(range(page_beats + 1), name=f"{name}_to_page")
    m.d.comb += to_page.eq(page_beats - addr[sh:12])
    lim = Signal(range(cap + 1), name=f"{name}_lim")
    m.d.comb += lim.eq(Mux(to_page < cap, to_page, cap))
    n = Signal(range(cap + 1), name=name)
    m.d.comb += n.eq(Mux(left < lim, left, lim))
    return n


def model_bursts(addr: int, beats: int, bits: int, burst_max: int = BURST_MAX) -> list[tuple[int, int]]:
    """Python model of the burst split: [(address, beats), ...] (tests compare AR/AW with it)."""
    out, b, cap = [], bits // 8, burst_cap(bits, burst_max)
    while beats:
        n = min(beats, cap, (PAGE - addr % PAGE) // b)
        out.append((addr, n))
        addr, beats = addr + n * b, beats - n
    return out
