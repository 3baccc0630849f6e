"""Cycle model of the accelerator: the compiled program's descriptors, timed the way the RTL runs
them (tests/sim/test_accel.py test_cycle_model_matches_rtl compares it with whole-model RTL runs).

    tr = trace(img, x)                     # token counts and decisions of one image (interpreter)
    p = program_cycles(img, tr)            # per operation: start, end, cycles, MACs, bound
    p.total, p.latency_ms, p.board_efficiency

The controller runs one operation at a time (5 cycles between operations). The stream loader
walks ahead: weights go into the two-slot ring as soon as a slot is empty; tables, LayerNorm
parameters and LOAD data wait until their operation runs. The DDR delivers one merged stream beat
(axi_ports x axi_bits) per cycle, or `ddr_bytes_per_cycle` when that is lower (the board:
hw.ddr_gbps at hw.clock_mhz; AxiRam in simulation delivers a beat per cycle).

## Selector units

Cycle model of the selector units (rtl_gen gmean, decide, package, compact): cycles from an
operation's start pulse to its done pulse, without stalls (the units have no stream ports, so
these are exact; tests/sim/test_select_units.py asserts equality with the RTL). DECIDE, PACKAGE
and COMPACT depend on the decision (tiles without dropped / output tokens are skipped, the cap
search runs only when the cap binds), so they take it: `scores` are the golden scores of the
scored tokens (golden.layers.Selection.score or the interpreter's), `keep` the final keep
mask, `m` the keep probabilities.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from golden import isa, stream as gstream
from golden.hw import HardwareConfig
from golden.interp import Machine
from golden.isa import PACKAGE_MODES
from golden.layers import MEAN_RECIP_BITS, PACK_RECIP_BITS, WEIGHT_RECIP_BITS

from ..array.epilogue import LATENCY as EPI_LATENCY, SM_DEPTH, SM_SLICE
from ..array.fetch import DRAIN_STAGES, ISSUE_LATENCY
from ..array.mac import CAPTURE_DELAY, DRAIN_DELAY
from ..array.softmax import B_LAT, C_LAT, RECIP_CYCLES
from ..array.unit import DONE_DELAY
from ..buffers.load_store import LOAD_DONE_DELAY, OUT_SLICE as STORE_SLICE
from ..buffers.ports import READ_LATENCY
from ..control.checks import supported
from ..control.controller import CMD_SLICE
from ..host.dma_write import IN_SLICE as DMA_WRITE_SLICE
from ..norm.layernorm import ln_cycles
from ..primitives.arith import PIPE_REQUANT
from ..selector.compact import PIPE as COMPACT_PIPE, PLACE_STEPS as COMPACT_PLACE, START as COMPACT_START
from ..selector.decide import GROUP_READ, SUM_STAGE
from ..selector.gather import DONE_AFTER_ISSUE as GATHER_DONE, SIZE_CYCLES as GATHER_SIZE
from ..selector.gmean import pipeline_latency as gmean_pipeline
from ..selector.keepprob import PRODUCT_LATENCY as KEEP_PRODUCT
from ..selector.package import (
    CH_STAGES as PACKAGE_CH_STAGES,
    MASK_STEPS as PACKAGE_MASK,
    SCALE_LATENCY,
    START as PACKAGE_START,
    default_lanes,
)
from ..selector.store import select_cycles

GAP = 6              # done registered; READ, LATCH, STEP, RULES, CODE of the next descriptor (control/controller.py)
START = 1            # CHECK decides the start; the top registers it per unit (rtl_gen/top.py)
FETCH_SLICE = 2      # the DMA's fetch output slice: a cycle on the header's and on the program's fetch
# the last column on the MAC array's output -> done (drain, epilogue, done check)
EPI = DRAIN_STAGES + EPI_LATENCY + 1 + DONE_DELAY
ISSUE = ISSUE_LATENCY - 1                # request -> MAC beat, beyond the one cycle the model counts
# a score column on the MAC array's output -> the softmax takes it (drain, epilogue, score FIFO)
SCORE = DRAIN_STAGES + EPI_LATENCY + 2 + SM_SLICE
# a selection's last beat -> done (the slices, the writer's response; measured, mini)
SELECT_TAIL = 10 + STORE_SLICE + DMA_WRITE_SLICE
LOADER_DESC = 4      # stream loader: READ, DECODE, DISPATCH, NEXT of a descriptor
ITEM = 4             # stream loader: start, CHECK, COMMIT and end of an item
SEEN = 4             # stream loader: compute running (CHECK) -> the loader takes an item that waited for it
LOAD_WORDS = 3       # stream loader: a LOAD's size (last row, tiles, tiles x channels) before its CHECK


@dataclass
class Step:
    """One executed descriptor, as the interpreter saw it."""
    index: int
    desc: isa.Desc
    rows: int
    sel: object = None        # DECIDE / PACKAGE / COMPACT: the decision (golden/interp.py Selection)
    scores: object = None     # DECIDE: the scores


def trace(img, x) -> list[Step]:
    """The steps of one image (token counts and decisions from the interpreter)."""
    steps: list[Step] = []

    class Tracing(Machine):
        def op_decide(self, d, rows):
            super().op_decide(d, rows)
            if d["mode"] != isa.DECIDE_THRESHOLD:       # a top-k's time depends on the rows only
                return
            w = self.buf[d["w_buf"]][1:1 + len(self.sel.keep), d["w_c0"]:d["w_c0"] + d["heads"]]
            z = self.buf[d["z_buf"]][1:1 + len(self.sel.keep), d["z_c0"]:d["z_c0"] + 2 * d["heads"]]
            self._scores = (w * (z[:, 0::2] - z[:, 1::2])).sum(-1)

    def hook(i, d, m):
        steps.append(Step(i, d, d.rows_of(m.n if d.op.name != "COMPACT" else m._n_before),
                          sel=m.last, scores=getattr(m, "_scores", None)))

    m = Tracing(img.hw, img.with_input(x))
    orig = m.op_compact

    def compact(d, rows):
        m._n_before = m.n
        orig(d, rows)
    m.op_compact = compact
    m.trace = hook
    m.run()
    return steps


@dataclass
class OpTime:
    index: int
    op: str
    rows: int
    start: int
    end: int
    macs: int = 0
    bound: str = ""
    beats: int = 0            # MAC-array beats of the operation's tiles, padding included (tile_beats)

    @property
    def cycles(self) -> int:
        return self.end - self.start


@dataclass
class ProgramPerf:
    hw: HardwareConfig
    ops: list
    total: int
    fetch: int
    stream_bytes: int
    labels: dict = field(default_factory=dict)
    weight_wait: int = 0      # cycles MATMULs waited for weights (the DDR stream)

    @property
    def macs(self) -> int:
        return sum(o.macs for o in self.ops)

    @property
    def latency_ms(self) -> float:
        return self.total / (self.hw.clock_mhz * 1e3)

    @property
    def mac_utilisation(self) -> float:
        return self.macs / (self.hw.macs * self.total)

    @property
    def tile_floor(self) -> int:
        """Cycles if the MAC array only ran the padded tiles of MATMUL and ATTENTION back to back:
        no epilogue, drain, LayerNorm, selector, DDR or control time. No schedule of this array
        shape beats it; only fewer padded rows (tile shape) or a higher clock do."""
        return sum(o.beats for o in self.ops)

    def board_efficiency(self, dsp: int = 2520) -> float:
        """Useful MACs / (DSP48E2 of the board x cycles)."""
        return self.macs / (dsp * self.total)


class Loader:
    """When the stream loader delivers each item (cycles). Weight tiles take ring slots in order:
    global m-tile j goes into slot j % 2 once m-tile j - 2 has drained."""

    def __init__(self, hw: HardwareConfig, ddr_bytes_per_cycle: float | None):
        self.hw = hw
        self.bytes_per_cycle = hw.stream_bytes if ddr_bytes_per_cycle is None else \
            min(hw.stream_bytes, ddr_bytes_per_cycle)
        self.t = 0                  # the loader is free from here
        self.released: list[int] = []
        self.bytes = 0

    def item(self, nbytes: int, words: int, start: int) -> int:
        """Deliver an item of `nbytes` (whole beats) and `words` words from `start`; its end."""
        self.bytes += nbytes
        beats = nbytes / self.bytes_per_cycle
        self.t = max(self.t, start) + ITEM + int(np.ceil(max(beats, words)))
        return self.t

    def weight_tile(self, k: int) -> int:
        """Fill the next m-tile of depth k; its commit time."""
        j = len(self.released)
        free = self.released[j - 2] if j >= 2 else 0
        return self.item(gstream.tile_bytes(k, self.hw), 0, free)


class MacTimeline:
    """Tiles on the MAC array (rtl_gen/array/mac.py), in the cycles it takes beats: a tile's first
    beat waits until the shadow bank has drained the tile before the previous one (`gate`); the
    shadow bank captures a tile CAPTURE_DELAY after its last beat, not before it has drained the
    previous tile, then drains C columns from DRAIN_DELAY later (`drain_end`: the last column on
    the array's output)."""

    def __init__(self, C: int):
        self.C = C
        self.cap = self.drain_end = self.gate = -1

    def tile(self, start: int, k: int) -> int:
        """A tile of k beats offered from `start`; its last beat's cycle."""
        last = max(start, self.gate) + k - 1
        self.gate = self.drain_end
        self.cap = max(last + CAPTURE_DELAY, self.drain_end)
        self.drain_end = self.cap + DRAIN_DELAY + self.C - 1
        return last


def _matmul(hw, rows, k, m, t0, ld: Loader):
    """Issue and drain of a MATMUL from t0 (its start pulse), weights from the loader: tiles of k
    beats, one per cycle; a tile's last beat waits until the previous tile has drained (mac_cols
    columns). Returns (end, cycles it waited for weights)."""
    R, C = hw.mac_rows, hw.mac_cols
    T = -(-rows // R)
    t = t0 + 1
    mac = MacTimeline(C)
    waited = 0
    for _ in range(-(-m // C)):
        a = ld.weight_tile(k)
        waited += max(0, a + 2 - (t + 1))
        t = max(t + 1, a + 2)                   # WAIT: the slot is full (then ISSUE)
        for _ in range(T):
            t = mac.tile(t + 1 + ISSUE, k) - ISSUE
        ld.released.append(mac.drain_end)
        t += 1                                  # NEXT
    return mac.drain_end + EPI, waited


def _attention(hw, n, heads, dh, t0):
    """The S/PV interleave with the softmax ring (rtl_gen/array/attention.py, softmax_unit.py)."""
    R, C = hw.mac_rows, hw.mac_cols
    T, U = -(-n // R), -(-n // C)
    L = T * heads
    order = [("S", 0)] + ([("S", 1)] if L > 1 else [])
    for i in range(L):
        if i + 2 < L:
            order += [("P", i), ("S", i + 2)]
        else:
            order.append(("P", i))
    at = t0 + 2 + ISSUE          # the array takes beats from here
    mac = MacTimeline(C)
    key_end = -1                 # the softmax took the last score key so far
    waits = 0                    # cycles the array waited for probabilities (softmax-bound)
    a_last, b_take, b_free, c_take, c_last, p_ready = {}, {}, {}, {}, {}, {}
    for kind, i in order:
        if kind == "S":
            for u in range(U):
                last = mac.tile(at, dh)
                keys = min(C, n - u * C)
                first_key = max(mac.cap + DRAIN_DELAY + SCORE, key_end + 1)
                if u == 0 and i > 0:
                    first_key = max(first_key, b_take[i - 1] + 1)      # A holds item i-1 until B takes it
                key_end = first_key + keys - 1
                # the drain runs at most SM_DEPTH score beats ahead of the softmax (credits)
                mac.drain_end = max(mac.drain_end, key_end - SM_DEPTH + 2)
                at = last + 1
            a_last[i] = key_end
            b_take[i] = max(a_last[i] + 1, b_free.get(i - 1, 0), c_take.get(i - 1, -1) + 1, c_last.get(i - 2, -1) + 1)
            b_free[i] = b_take[i] + n + B_LAT
            c_take[i] = max(b_free[i], c_last.get(i - 1, -1) + 1)
            c_last[i] = c_take[i] + RECIP_CYCLES + n - 1
            p_ready[i] = c_last[i] + C_LAT + 1
        else:
            waits += max(0, p_ready[i] + 1 + ISSUE - at)
            at = max(at, p_ready[i] + 1 + ISSUE)
            for _ in range(dh // C):
                at = mac.tile(at, n) + 1
    return mac.drain_end + EPI, waits


def program_cycles(img, steps: list[Step], ddr_bytes_per_cycle: float | None = None) -> ProgramPerf:
    hw = img.hw
    R, W = hw.mac_rows, hw.axi_bits
    n_desc = img.manifest["descriptors"]
    beat = W // 8
    # the header's and the program's fetch, then the stream's command (each offered CMD_SLICE late)
    fetch = 26 + FETCH_SLICE + 2 * CMD_SLICE + (isa.HEADER_BYTES // beat) + n_desc * (isa.DESC_BYTES // beat) + 90
    ld = Loader(hw, ddr_bytes_per_cycle)
    ld.t = fetch + CMD_SLICE
    t = fetch
    ops = []
    wait_weights = 0
    for st in steps:
        ld.t += LOADER_DESC
        d, rows, name = st.desc, st.rows, st.desc.op.name
        if not supported(name, isa.Fields(d)):
            raise ValueError(f"descriptor {st.index} ({name}) uses an operation or mode the RTL does not execute yet "
                             f"(rtl_gen/control/checks.py RTL_SUPPORT): the cycle model times only what the RTL runs")
        c = t + 1                                   # CHECK: the controller decides the start
        s = c + START                               # the unit's start pulse
        macs = beats = 0
        bound = "compute"
        if name == "MATMUL":
            k, m = d["k"], d["m"]
            if d["act"] == isa.ACT_LOAD:
                ld.item(gstream.table_bytes(d["pwl_nseg"], hw), d["pwl_nseg"], c + SEEN)
            end, waited = _matmul(hw, rows, k, m, s, ld)
            bound = "DDR (weights)" if waited > (end - s) / 2 else "compute"
            wait_weights += waited
            macs = rows * k * m
            beats = tile_beats(hw, rows, k, m)
        elif name == "ATTENTION":
            end, waits = _attention(hw, rows, d["heads"], d["head_dim"], s)
            macs = 2 * rows * rows * d["heads"] * d["head_dim"]
            dh = d["head_dim"]
            beats = d["heads"] * (tile_beats(hw, rows, dh, rows) + tile_beats(hw, rows, rows, dh))   # S = Q K^T, P V
            bound = "softmax" if waits > (end - s) / 4 else "compute"
        elif name == "LAYERNORM":
            ld.item(gstream.ln_bytes(d["d"], hw), d["d"], c + SEEN)
            end = s + ln_cycles(d["d"], rows, hw)
            bound = "LayerNorm unit"
        elif name == "LOAD":
            words = len(gstream.tile_range(d["r0"], rows, hw)) * d["w"]
            end = ld.item(gstream.rows_bytes(d["r0"], rows, d["w"], hw), words, c + SEEN + LOAD_WORDS)
            end += 3 + LOAD_DONE_DELAY
            bound = "DDR"
        elif name == "STORE" and d["mode"] in (isa.STORE_ROWS, isa.STORE_TILES):
            n = rows * d["w"] if d["mode"] == isa.STORE_ROWS else -(-rows // R) * d["w"]
            nbytes = 2 * n if d["mode"] == isa.STORE_ROWS else 2 * R * n
            end = s + n + nbytes // beat + 19 + READ_LATENCY + STORE_SLICE + DMA_WRITE_SLICE   # a read's among them
            bound = "DDR"
        elif name == "STORE":                       # the selection: the store's beats, then the writer's
            end = s + select_cycles(hw) + SELECT_TAIL
            bound = "DDR"
        elif name == "GMEAN":
            end = s + gmean_cycles(rows, d["w"], hw)
            bound = "selector units"
        elif name == "DECIDE":
            s0 = s
            if d["act"] == isa.ACT_LOAD:
                s0 = ld.item(gstream.table_bytes(d["pwl_nseg"], hw), d["pwl_nseg"], c + SEEN) + 2 + START
            end = s0 + (topk_cycles(rows, hw) if d["mode"] == isa.DECIDE_TOPK else
                        decide_cycles(rows, d["heads"], d["n_pkg"], hw, st.scores, bool(d["cap_en"]), d["cap"]))
            bound = "selector units"
        elif name == "PACKAGE":
            end = s + package_cycles(rows, d["n_pkg"], d["d"], d["mode"], st.sel.keep, st.sel.m, hw)
            bound = "selector units"
        elif name == "COMPACT":
            end = s + (gather_cycles(rows, d, int(st.sel.keep.sum()), hw) if d["order"] == isa.ORDER_RANK else
                       compact_cycles(rows, d["n_pkg"], d["d"], st.sel.keep, hw))
            bound = "selector units"
        elif name == "COPY":
            end = s + gather_cycles(rows, d, 0, hw)
            bound = "selector units"
        else:
            end = c                                 # END: no unit starts
        ops.append(OpTime(st.index, name, rows, s, end, macs, bound, beats))
        t = end + GAP - 1
    total = t + 4
    return ProgramPerf(hw, ops, total, fetch, ld.bytes, dict(img.labels), wait_weights)


def tile_beats(hw: HardwareConfig, rows: int, k: int, m: int) -> int:
    """Beats of a rows x k by k x m product on the array: ceil(rows / mac_rows) token tiles times
    ceil(m / mac_cols) column tiles, k beats each (a partial tile costs a whole one)."""
    return -(-rows // hw.mac_rows) * -(-m // hw.mac_cols) * k


def _tiles(n: int, hw: HardwareConfig) -> int:
    return -(-n // hw.mac_rows)


def gmean_cycles(rows: int, w: int, hw: HardwareConfig) -> int:
    """Reciprocal (k + 2), then w channels of T tiles read back to back; the last channel's T
    writes and the read and the pipeline (1 + READ_LATENCY + gmean.pipeline_latency) follow."""
    t = _tiles(rows, hw)
    return MEAN_RECIP_BITS + 2 + w * t + t + 1 + READ_LATENCY + gmean_pipeline(hw)


def recip_pool_accepts(n: int, units: int, k: int = WEIGHT_RECIP_BITS) -> list[int]:
    """Accept cycle of each of n reciprocals issued in order to `units` units round robin, one
    per cycle at most (token 0 at cycle 0): a unit takes its next input k + 3 cycles after
    the previous one (k + 1 steps, result, hand-back)."""
    a = []
    for i in range(n):
        t = a[-1] + 1 if a else 0
        if i >= units:
            t = max(t, a[i - units] + k + 3)
        a.append(t)
    return a


def cap_passes(scores, cap: int, bits: int) -> int:
    """Counting passes of the cap search (rtl_gen/selector/capsearch.py): ceil(bit_length(max score) / bits)."""
    top = int(max(int(np.max(scores)), 0)).bit_length()
    return -(-top // bits)


def decide_cycles(rows: int, heads: int, n_pkg: int, hw: HardwareConfig, scores, cap_en: bool = False,
                  cap: int = 0, recips: int = 4, cap_bits: int = 3) -> int:
    """SCORE: groups (tile, head) of max(R, GROUP_READ + 1) cycles (a group's reads and their
    data) after a start of GROUP_READ + 3 cycles, the last lane's
    record SUM_STAGE + 1 cycles later (the lane datapath's depth); M: the reciprocal pool (k + 5
    + the keep probability's product, KEEP_PRODUCT, from the last accept to done); CAP in
    parallel with M when it binds: its registered start and a cycle for the first position,
    passes of ns + 3 cycles and a final pass of ns + 1 (its keep bits are written a cycle after
    their scores arrive)."""
    R = hw.mac_rows
    ns = rows - 1 - n_pkg
    groups = (ns // R + 1) * heads
    last_lane = 2 + GROUP_READ + (groups - 1) * max(R, GROUP_READ + 1) + R + SUM_STAGE - 4
    if ns == 0:                 # no candidates (the stage before kept none): SCORE only
        return last_lane + 7
    m_done = last_lane + 8 + recip_pool_accepts(ns, recips)[-1] + WEIGHT_RECIP_BITS + 5 + KEEP_PRODUCT
    scores = np.asarray(scores)
    if cap_en and int((scores >= 0).sum()) > cap:
        return max(m_done, last_lane + 10 + cap_passes(scores, cap, cap_bits) * (ns + 3) + ns + 1)
    return m_done


def package_cycles(rows: int, n_pkg: int, d: int, mode: int, keep, m, hw: HardwareConfig,
                   lanes: int | None = None) -> int:
    """PACKAGE_START cycles of sizes; per tile with scored tokens: PACKAGE_MASK cycles (the
    mask, NEXT), and (dropped tokens in it) the R weights, d words of R / lanes cycles and the
    channel pipeline's drain (PACKAGE_CH_STAGES); then the reciprocal (k + 2, norm / mean with a non-zero
    total) and the output pass (d + 3 + SCALE_LATENCY + PIPE_REQUANT)."""
    R = hw.mac_rows
    L = lanes or default_lanes(hw)
    keep = np.asarray(keep, dtype=bool)
    ns = rows - 1 - n_pkg
    dropped = np.zeros((ns // R + 1) * R, dtype=bool)
    dropped[1:1 + ns] = ~keep
    per_tile = dropped.reshape(-1, R).any(1)
    tiles = int(np.sum(np.where(per_tile, R + d * (R // L) + PACKAGE_CH_STAGES, 0) + PACKAGE_MASK))
    if mode in (PACKAGE_MODES["sum"], PACKAGE_MODES["scores"]):
        recip = 0
    else:
        total = int((~keep).sum()) if mode == PACKAGE_MODES["mean"] else int(np.asarray(m)[~keep].sum())
        recip = PACK_RECIP_BITS + 2 if total != 0 else 0
    return PACKAGE_START + tiles + recip + d + 3 + SCALE_LATENCY + PIPE_REQUANT


def compact_cycles(rows: int, n_pkg: int, d: int, keep, hw: HardwareConfig) -> int:
    """COMPACT_START cycles of sizes; per input tile: its placement (COMPACT_PLACE cycles) and
    NEXT without output tokens, else also d words of one write (two when its output tokens cross
    an output tile boundary) and the channel pipeline's drain (COMPACT_PIPE + 1); then the
    package token (d + 1)."""
    R = hw.mac_rows
    keep = np.asarray(keep, dtype=bool)
    ns = rows - 1 - n_pkg
    t = _tiles(rows, hw)
    out = np.zeros(t * R, dtype=bool)
    out[0] = True
    out[1:1 + ns] = keep
    out[1 + ns:rows] = True
    cyc, pos = 1 + COMPACT_START, 0
    for cnt in out.reshape(t, R).sum(1):
        if cnt == 0:
            cyc += COMPACT_PLACE + 1
            continue
        cyc += COMPACT_PLACE + d * (2 if pos % R + cnt > R else 1) + COMPACT_PIPE + 2
        pos += int(cnt)
    return cyc + d


def topk_cycles(rows: int, hw: HardwareConfig) -> int:
    """DECIDE top-k (rtl_gen/selector/topk.py): per candidate its score, one SB tile a cycle, its
    hits counted, its place; 1 more to finish."""
    return (rows - 1) * (_tiles(rows, hw) + 5) + TOPK_START


def gather_cycles(rows: int, d, kept: int, hw: HardwareConfig) -> int:
    """COMPACT in rank order and COPY (rtl_gen/selector/gather.py): per output row its source and
    d (COPY: w) channel words; the package token d (none with no_pkg); with `scores`, SB written
    back a tile a cycle; done at least GATHER_DONE cycles after the last word is issued
    (`tail`: the cycles from it to the end state)."""
    if "i_r0" in d:                                            # COPY: rows in order
        return rows * (d["w"] + 2) + GATHER_START + max(0, GATHER_DONE - 2)
    ranked = rows - 1 - d["n_pkg"] if d["rest"] else kept
    n_rows = 1 + ranked + d["n_pkg"]
    tail = (2 if d["no_pkg"] else 1) + (_tiles(n_rows, hw) if d.get("scores") else 0)
    return (n_rows * (d["d"] + 2) + GATHER_START + (0 if d["no_pkg"] else d["d"])
            + (_tiles(n_rows, hw) if d.get("scores") else 0) + max(0, GATHER_DONE - tail))


TOPK_START, GATHER_START = 1, 2 + GATHER_SIZE
