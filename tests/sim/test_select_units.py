"""Selector units (rtl_gen gmean, decide, package, compact, selstore) on the buffer fabric against
the interpreter's operations (golden/interp.py Machine.op_gmean / op_decide / op_package /
op_compact / op_store STORE_SELECT) by ==: keep, m, kept count and stage, every lane of every
token tile of the written channels (rows an operation must not write keep the random junk both
sides start with), N', the stored selection bytes; and each operation's cycles against
rtl_gen.tools.cycles. One command stream per run with random stalls (sim/select_bench.py).

Small config (R = 4, n_max = 40) with non-default unit parameters (3 reciprocal units, 2 cap
bits per pass, package lanes = R): corner cases (SPViT's threshold decisions, DynamicViT's top-k,
EViT's fused token). Mini preset with the defaults: the
interpreter's buffers right before GMEAN and DECIDE of the calibrated mini model."""
import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from golden import isa
from golden.arith import recip
from golden.compiler import select_bytes
from golden.hw import MINI_HW, HardwareConfig
from golden.interp import Machine
from golden.isa import B0, B1, B2, B3
from golden.kernels import CLS_ATTN_FRAC, make_pwl
from golden.selectors.evit import HEAD_RECIP_BITS
from rtl_gen.primitives.arith import bit_length
from sim.select_bench import SelectBench
from sim.select_ref import SelectRun, cycle_mismatches

SMALL = HardwareConfig(name="sel-small", mac_rows=4, mac_cols=8, n_max=40, d_max=64, hidden_max=64, axi_bits=64)
SMALL_PARAMS = dict(recips=3, cap_bits=2, pk_lanes=4)
SIG = make_pwl("sigmoid", 10, 15, 17)


def pwl_fields(p) -> dict:
    return dict(act=isa.ACT_KEEP, pwl_lo=p.lo, pwl_shift=p.seg_shift, pwl_nseg=p.n_seg, pwl_ext=int(p.extend),
                pwl_frac=p.in_frac, pwl_17=1)


def selection(r, label, rows, z, w, x, *, n_pkg=0, mode="norm", cap=None, stage=0, pwl=SIG, bufs=(B0, B1),
              zw=(B3, 0, B3, None), package=True):
    """DECIDE on z [rows, 2H], w [rows, H]; then PACKAGE / COMPACT of x [rows, d] and a STORE."""
    H = w.shape[1]
    zb, zc, wb, wc = zw
    wc = 2 * H if wc is None else wc
    r.put(zb, zc, z)
    r.put(wb, wc, w)
    r.put(bufs[0], 0, x)
    d = x.shape[1]
    r.op(label, "DECIDE", rows, z_buf=zb, z_c0=zc, w_buf=wb, w_c0=wc, heads=H, n_pkg=n_pkg, stage=stage,
         cap_en=int(cap is not None), cap=cap or 0, **pwl_fields(pwl))
    r.check_selection(label)
    if package:
        r.op(label, "PACKAGE", rows, x_buf=bufs[0], d=d, n_pkg=n_pkg, mode=isa.PACKAGE_MODES[mode])
        r.op(label, "COMPACT", rows, x_buf=bufs[0], o_buf=bufs[1], d=d, n_pkg=n_pkg)
        r.check(label, bufs[1], 0, d)
    r.store(label)


def _report(bad, what):
    assert not bad, f"{what}: {len(bad)} mismatching items\n" + "\n".join(bad[:12])


def _junk_run(hw, junk_seed: int, scores: bool = False) -> SelectRun:
    """A run whose token buffers (and with `scores` the score buffer) start full of junk, so a
    unit that reads or writes a row it should not shows up in the compare."""
    r = SelectRun(hw, junk_seed=junk_seed)
    for b in (B0, B1, B2, B3) + ((isa.SB,) if scores else ()):
        r.put_junk(b)
    return r


def _run(r, name, params, seed, stall=0.25):
    bad, events, res = r.run(name, stall=stall, seed=seed, bench=SelectBench(r.hw, **params))
    _report(bad, name)
    _report(cycle_mismatches(events, r.hw, **params), f"{name} cycle model")
    return events


def _zw(rng, rows, H, zlo=-4000, zhi=4000):
    return rng.integers(zlo, zhi, (rows, 2 * H)), rng.integers(0, 32768, (rows, H))


def test_selection_corners():
    """Mixed, all kept, none kept, every score tied at 0, caps that bind (0, at ties, deep
    thresholds), saturated logits and weights, all weights 0, ns = 1, rows = n_max, earlier
    packages, each package mode, partial tiles, z and w in other buffers / offsets, 16 heads, a
    table that extends its last segment (signed outputs, sum mode)."""
    hw, rng = SMALL, np.random.default_rng(7)
    r = _junk_run(hw, 11)
    r.table(SIG.base, SIG.slope)

    def x(rows, d=32):
        return rng.integers(-32768, 32768, (rows, d))

    z, w = _zw(rng, 23, 4)
    selection(r, "mixed", 23, z, w, x(23), n_pkg=1, stage=1)

    def big(rows, H, s):
        return np.tile([s * 30000, -s * 30000], (rows, H))

    xs = x(17, 64)
    xs[2], xs[3], xs[5, ::2] = 32767, -32768, -32768                # saturated tokens
    w17 = rng.integers(0, 32768, (17, 2))
    selection(r, "all kept, sum", 17, big(17, 2, 1), w17, xs, mode="sum", bufs=(B2, B0))
    selection(r, "all kept, cap 5, mean", 17, big(17, 2, 1), w17, xs, mode="mean", cap=5, stage=2)
    selection(r, "all kept, cap 0", 17, big(17, 2, 1), w17, xs, cap=0, n_pkg=2, bufs=(B1, B2))
    for mode in ("norm", "mean", "sum"):
        selection(r, f"none kept, {mode}", 30, big(30, 3, -1), rng.integers(0, 32768, (30, 3)), x(30, 24),
                  n_pkg=2, mode=mode)
    zt = np.repeat(rng.integers(-9000, 9000, (21, 2)), 2, axis=1)     # z0 == z1 in every head
    wt = rng.integers(0, 32768, (21, 2))
    selection(r, "ties", 21, zt, wt, x(21))
    selection(r, "ties, cap 7", 21, zt, wt, x(21), cap=7, mode="sum")
    # one head, w = 1: scores are the logit differences, few distinct values -> ties at the threshold
    dz = rng.choice([-2, 0, 1, 1, 2, 2, 2, 3, 5], 33)
    zc = np.stack([dz, np.zeros_like(dz)], 1)
    for cap in (1, 3, 4, 6, 9, 12):
        selection(r, f"threshold ties, cap {cap}", 33, zc, np.ones((33, 1), dtype=np.int64), x(33, 8), cap=cap,
                  package=cap in (4, 12), n_pkg=cap % 3)
    sat = rng.choice([32767, -32768], (19, 8))
    wsat = rng.choice([0, 32767, 1], (19, 4))
    selection(r, "saturated", 19, sat, wsat, x(19), mode="sum")
    selection(r, "saturated, cap 4", 19, sat, wsat, x(19), cap=4)
    selection(r, "weights 0", 15, *(_zw(rng, 15, 3)[0], np.zeros((15, 3), dtype=np.int64)), x(15), mode="norm")
    selection(r, "ns 1", 2, *_zw(rng, 2, 2), x(2))
    selection(r, "ns 1, 3 packages", 5, *_zw(rng, 5, 2), x(5), n_pkg=3, mode="mean")
    selection(r, "ns 0 (the stage before kept none)", 1, *_zw(rng, 1, 2), x(1), cap=2)
    selection(r, "ns 0, 2 packages", 3, *_zw(rng, 3, 2), x(3), n_pkg=2, mode="mean", stage=1)
    z40, w40 = _zw(rng, 40, 4, -300, 200)
    selection(r, "rows n_max", 40, z40, w40, x(40, 64), n_pkg=3, bufs=(B1, B0))
    selection(r, "rows n_max, cap 12", 40, z40, w40, x(40, 64), n_pkg=3, cap=12, mode="mean")
    selection(r, "z in B2, offsets", 26, *_zw(rng, 26, 3), x(26, 16), zw=(B2, 5, B3, 40), bufs=(B1, B0))
    selection(r, "16 heads", 13, *_zw(rng, 13, 16, -200, 200), x(13), n_pkg=1, cap=3)
    zb, wb = rng.integers(-32768, 32768, (37, 8)), rng.integers(0, 32768, (37, 4))
    selection(r, "deep cap search", 37, zb, wb, x(37, 40), cap=9, n_pkg=1)
    gelu = make_pwl("gelu", 9, 12, 17)
    r.table(gelu.base, gelu.slope)
    selection(r, "extending table", 29, *_zw(rng, 29, 3), x(29), pwl=gelu, mode="sum", cap=11)
    r.table(SIG.base, SIG.slope)
    selection(r, "after the table change", 11, *_zw(rng, 11, 2), x(11))
    events = _run(r, "selbench_small", SMALL_PARAMS, seed=3)
    kept = {op.label: int(op.sel.keep.sum()) for op, _ in events if op.name == "DECIDE"}
    assert kept["all kept, sum"] == 16 and kept["all kept, cap 5, mean"] == 5 and kept["all kept, cap 0"] == 0
    assert kept["none kept, norm"] == 0 and kept["ties"] == 20 and kept["ties, cap 7"] == 7
    assert kept["ns 0 (the stage before kept none)"] == 0 and kept["ns 0, 2 packages"] == 0
    assert 0 < kept["mixed"] < 21 and 0 < kept["rows n_max"] < 36 and kept["rows n_max, cap 12"] == 12


def topk(r, label, rows, scores, x, k, *, stage=0, bufs=(B0, B1), rest=0):
    """DECIDE top-k of `scores` (rows 0..rows-1 of SB), COMPACT in rank order without a package
    (DynamicViT; `rest`: every candidate follows, Evo-ViT's parked rows), STORE of the selection."""
    r.put_scores(scores)
    r.put(bufs[0], 0, x)
    r.op(label, "DECIDE", rows, mode=isa.DECIDE_TOPK, k=k, stage=stage)
    r.check_selection(label)
    r.op(label, "COMPACT", rows, x_buf=bufs[0], o_buf=bufs[1], d=x.shape[1], order=isa.ORDER_RANK, no_pkg=1, rest=rest)
    r.check(label, bufs[1], 0, x.shape[1])
    r.store(label)


def test_topk_corners():
    """DynamicViT's selection: top-k of the score buffer and the rank-order compaction against
    the interpreter: mixed 48-bit scores (most negative and largest included), k = N - 1 (prunes
    nothing, the order still changes), k = 0, ties everywhere (lower row first), ties across the
    k boundary, rows = n_max, ns = 1 and 0, partial tiles, every candidate in rank order (rest),
    stages back to back on the compacted output."""
    hw, rng = SMALL, np.random.default_rng(17)
    r = _junk_run(hw, 21, scores=True)

    def x(rows, d=24):
        return rng.integers(-32768, 32768, (rows, d))

    big = 1 << (isa.SCORE_BITS - 1)
    s = rng.integers(-big, big, 23)
    s[3], s[7] = -big, big - 1
    topk(r, "mixed", 23, s, x(23), 9)
    topk(r, "k = N - 1", 23, s, x(23), 22, stage=1, bufs=(B2, B0))
    topk(r, "k = 0", 14, s[:14], x(14), 0)
    topk(r, "all tied", 19, np.full(19, 12345), x(19), 6)
    tied = rng.choice([-5, 0, 3, 3, 7], 31)
    for k in (1, 4, 13, 30):
        topk(r, f"ties across the boundary, k {k}", 31, tied, x(31, 16), k, stage=k % 3)
    topk(r, "rows n_max", 40, rng.integers(-1000, 1000, 40), x(40, 64), 27, bufs=(B1, B3))
    topk(r, "ns 1", 2, np.array([5, -3]), x(2), 1)
    topk(r, "ns 1, k 0", 2, np.array([5, -3]), x(2), 0)
    topk(r, "ns 0", 1, np.array([0]), x(1), 0)
    topk(r, "rest in rank order", 29, tied[:29], x(29), 11, rest=1)
    xs = x(26, 32)
    topk(r, "stage 0", 26, rng.integers(-big, big, 26), xs, 17, bufs=(B0, B1))
    s2 = rng.integers(-9, 9, 18)
    r.put_scores(s2)
    r.op("stage 1 on its output", "DECIDE", 18, mode=isa.DECIDE_TOPK, k=12, stage=1)
    r.check_selection("stage 1 on its output")
    r.op("stage 1 on its output", "COMPACT", 18, x_buf=B1, o_buf=B2, d=32, order=isa.ORDER_RANK, no_pkg=1)
    r.check("stage 1 on its output", B2, 0, 32)
    r.store("stage 1 on its output")
    events = _run(r, "selbench_small", SMALL_PARAMS, seed=9)
    kept = {op.label: int(op.sel.keep.sum()) for op, _ in events if op.name == "DECIDE"}
    assert kept["k = N - 1"] == 22 and kept["k = 0"] == 0 and kept["all tied"] == 6 and kept["ns 0"] == 0


def fused(r, label, rows, scores, x, k, *, stage=0, bufs=(B0, B1), heads=4):
    """EViT's selection: DECIDE top-k of `scores` (SB rows 0..rows-1), PACKAGE mode scores (the
    fused token: the dropped candidates weighed by their SB scores, requant(sum S_i x_i
    recip(H, 20), 43)), COMPACT in rank order with the fused token appended last."""
    r.put_scores(scores)
    r.put(bufs[0], 0, x)
    d = x.shape[1]
    r.op(label, "DECIDE", rows, mode=isa.DECIDE_TOPK, k=k, stage=stage)
    r.check_selection(label)
    r.op(label, "PACKAGE", rows, x_buf=bufs[0], d=d, mode=isa.PACKAGE_MODES["scores"],
         mult=recip(heads, HEAD_RECIP_BITS), shift=HEAD_RECIP_BITS + CLS_ATTN_FRAC)
    r.op(label, "COMPACT", rows, x_buf=bufs[0], o_buf=bufs[1], d=d, order=isa.ORDER_RANK)
    r.check(label, bufs[1], 0, d)
    r.store(label)


def test_fused_token_corners():
    """EViT's fused token (PACKAGE mode scores after a top-k DECIDE) and the rank-order
    compaction with it appended, against the interpreter: CLS attention sums of 4 and 31 heads
    (the largest score 31 x 2^23), int16 extremes in the tokens, weights summing to 2^31.6, far
    beyond EViT's (H 2^23; the package saturates, rtl_gen/selector/package.py), k = N - 1
    (one candidate fused), k = N - 2, k = 0 (every candidate fused), ties across the k boundary,
    all scores 0 (the fused token is 0), rows = n_max, a fused token that survives the next stage
    as an ordinary candidate (stages back to back on the compacted output, its score the
    largest), the cycle model exact."""
    hw, rng = SMALL, np.random.default_rng(23)
    r = _junk_run(hw, 5, scores=True)

    def x(rows, d=24, lo=-32768):
        return rng.integers(lo, 32768, (rows, d))

    def cls(rows, heads):                                   # sum over heads of 23-bit probabilities
        p = rng.dirichlet(np.full(rows, 0.3), heads)
        return np.round(p * (1 << CLS_ATTN_FRAC)).astype(np.int64).sum(0)

    fused(r, "4 heads", 23, cls(23, 4), x(23), 9)
    big = np.full(17, 31 << CLS_ATTN_FRAC)                 # 31 heads, all on these tokens
    fused(r, "31 heads, largest scores, extreme tokens", 17, big, np.where(x(17) > 0, 32767, -32768), 5, heads=31,
          bufs=(B2, B0))
    fused(r, "one positive side saturates", 17, big, np.full((17, 24), 32767), 3, heads=31)
    s = cls(21, 4)
    fused(r, "k = N - 1 (nothing fused)", 21, s, x(21), 20, stage=1)
    fused(r, "k = N - 2 (one fused)", 21, s, x(21), 19, stage=2)
    fused(r, "k = 0 (every candidate fused)", 21, s, x(21), 0)
    tied = rng.choice([0, 1 << 20, 1 << 20, 3 << 21], 31)
    fused(r, "ties across the boundary", 31, tied, x(31, 16), 11)
    fused(r, "all scores 0", 13, np.zeros(13, dtype=np.int64), x(13), 4)
    fused(r, "rows n_max", 40, cls(40, 4), x(40, 64), 27, bufs=(B1, B3))
    # stage 0 then stage 1 on its output: the fused token (row 1 + k) is a candidate with the top score
    fused(r, "stage 0", 26, cls(26, 4), x(26, 32), 17, bufs=(B0, B1))
    s1 = cls(19, 4)
    s1[18] = s1.max() + 1
    r.put_scores(s1)
    r.op("stage 1 (the fused token a candidate)", "DECIDE", 19, mode=isa.DECIDE_TOPK, k=12, stage=1)
    r.check_selection("stage 1 (the fused token a candidate)")
    r.op("stage 1 (the fused token a candidate)", "PACKAGE", 19, x_buf=B1, d=32, mode=isa.PACKAGE_MODES["scores"],
         mult=recip(4, HEAD_RECIP_BITS), shift=HEAD_RECIP_BITS + CLS_ATTN_FRAC)
    r.op("stage 1 (the fused token a candidate)", "COMPACT", 19, x_buf=B1, o_buf=B2, d=32, order=isa.ORDER_RANK)
    r.check("stage 1 (the fused token a candidate)", B2, 0, 32)
    r.store("stage 1 (the fused token a candidate)")
    events = _run(r, "selbench_small", SMALL_PARAMS, seed=11)
    kept = {op.label: op.sel for op, _ in events if op.name == "DECIDE"}
    assert kept["stage 1 (the fused token a candidate)"].rank[0] == 17      # the fused token ranks first
    assert r.mach.n == 1 + 12 + 1


def test_evovit_rerank_and_copy():
    """Evo-ViT's selection units against the interpreter: the re-rank (top-k, then COMPACT in rank
    order with every candidate following and the score buffer permuted alike: `scores`), on the
    whole buffer (rows = n_max) and partial tiles, k = N - 1, k = 0, ties, stages back to back
    (the permuted SB ranked again); COPY of rows in place with output shifts (-32: every nonzero
    value saturates; 32: all round to 0 or -1 / 0; 1, -2, 0), between buffers at other row and
    channel offsets (lanes move between tiles), one row, rows up to n_max; every SB tile and
    every lane of the written channels compared (the rows COPY must not write keep the junk)."""
    hw, rng = SMALL, np.random.default_rng(29)
    r = _junk_run(hw, 6, scores=True)

    def x(rows, d=24):
        return rng.integers(-32768, 32768, (rows, d))

    def rerank(label, rows, scores, k, bufs=(B0, B1), d=24, stage=0):
        if scores is not None:
            r.put_scores(scores)
            r.put(bufs[0], 0, x(rows, d))
        r.op(label, "DECIDE", rows, mode=isa.DECIDE_TOPK, k=k, stage=stage)
        r.check_selection(label)
        r.op(label, "COMPACT", rows, x_buf=bufs[0], o_buf=bufs[1], d=d, order=isa.ORDER_RANK, rest=1, no_pkg=1,
             scores=1)
        r.check(label, bufs[1], 0, d)
        r.check_scores(label)
        r.store(label)

    cls = rng.integers(0, 31 << 23, 40)
    rerank("rows n_max", 40, cls, 27, d=64)
    rerank("again on its output (the permuted scores)", 40, None, 13, bufs=(B1, B2), d=64, stage=1)
    rerank("partial tiles", 23, rng.integers(0, 1 << 28, 23), 9)
    rerank("k = N - 1", 23, rng.integers(0, 1 << 28, 23), 22, bufs=(B2, B0))
    rerank("k = 0", 17, rng.integers(0, 1 << 28, 17), 0)
    rerank("ties", 31, rng.choice([0, 5, 5, 1 << 27], 31), 11, bufs=(B1, B3))
    big = np.full((40, 64), 32767)
    big[::2] = -32768
    r.put(B0, 0, np.where(rng.random((40, 64)) < 0.5, big, x(40, 64)))
    copies = [("in place, shift 1", dict(i_buf=B0, i_c0=0, i_r0=7, o_buf=B0, o_c0=0, o_r0=7, w=64, shift=1), 30),
              ("in place, shift -2 (saturates)", dict(i_buf=B0, i_c0=3, i_r0=0, o_buf=B0, o_c0=3, o_r0=0, w=20,
                                                      shift=-2), 40),
              ("in place, shift -32", dict(i_buf=B0, i_c0=10, i_r0=13, o_buf=B0, o_c0=10, o_r0=13, w=5, shift=-32), 9),
              ("in place, shift 32", dict(i_buf=B0, i_c0=40, i_r0=2, o_buf=B0, o_c0=40, o_r0=2, w=8, shift=32), 21),
              ("to B2 at other rows and channels", dict(i_buf=B0, i_c0=5, i_r0=3, o_buf=B2, o_c0=17, o_r0=10, w=30,
                                                        shift=0), 29),
              ("one row, shift 3", dict(i_buf=B0, i_c0=0, i_r0=39, o_buf=B3, o_c0=60, o_r0=0, w=4, shift=3), 1)]
    for label, f, rows in copies:
        r.op(label, "COPY", rows, **f)
        r.check(label, f["o_buf"], 0, hw.buffer_width(f["o_buf"]))
    _run(r, "selbench_small", SMALL_PARAMS, seed=13)


def test_gmean():
    """rows = 2 and n_max, one channel to the whole buffer, saturated channels, B3 channels
    beyond d_max; several means in a row on the same buffer; output shifts (Evo-ViT's pooled
    readout in another format): -30 (the mean scaled by 2^30, saturated), -3, 1, 5, 32 (every
    mean rounds to 0 or -0)."""
    hw, rng = SMALL, np.random.default_rng(8)
    r = SelectRun(hw, junk_seed=12)
    for b in (B0, B2, B3):
        r.put_junk(b)
    cases = [(2, B0, 10, 3, 0), (40, B3, 40, 16, 0), (23, B0, 0, 1, 0), (9, B2, 0, 64, 0), (31, B0, 7, 20, 0),
             (3, B3, 63, 1, 0), (17, B0, 0, 24, -3), (40, B2, 0, 64, 1), (6, B3, 5, 30, 5), (12, B0, 3, 9, -30),
             (25, B2, 8, 12, 32), (33, B0, 0, 64, -1)]
    for i, (rows, buf, c0, w, shift) in enumerate(cases):
        x = rng.integers(-32768, 32768, (rows, w)) >> (3 if shift < 0 else 0)
        x[:, :: 3] = 32767 if i % 2 else -32768
        r.put(buf, c0, x)
        r.op(f"gmean {i} shift {shift}", "GMEAN", rows, buf=buf, c0=c0, w=w, shift=shift)
        if i == 4:
            r.op(f"gmean {i} again", "GMEAN", rows - 5, buf=buf, c0=c0 + 2, w=w - 4)
        r.check(f"gmean {i}", buf, 0, hw.buffer_width(buf))
    _run(r, "selbench_small", SMALL_PARAMS, seed=4)


def test_bit_length():
    """rtl_gen.primitives.arith.bit_length (the cap search's start) against int.bit_length."""
    m = Module()
    v = Signal(38)
    n = bit_length(m, v)
    vals = [0, 1, 2, 3, (1 << 37) - 1, 1 << 37, 1 << 36]
    vals += [int(x) for x in np.random.default_rng(1).integers(0, 1 << 37, 300)]
    got = []

    async def tb(ctx):
        for x in vals:
            ctx.set(v, x)
            got.append(ctx.get(n))
    sim = Simulator(m)
    sim.add_testbench(tb)
    sim.run()
    assert got == [x.bit_length() for x in vals]


@pytest.fixture(scope="module")
def mini_snapshots(mini_model):
    from sim.select_ref import selector_snapshots
    q, imgs = mini_model
    return [selector_snapshots(q, MINI_HW, imgs, i) for i in (0, 1)]


def test_mini_real(mini_snapshots, measured):
    """The calibrated mini model (R = 8, default unit parameters) on two images: both stages'
    GMEANs, DECIDE, PACKAGE, COMPACT and STORE from the interpreter's buffers right before them,
    then the same decisions with sum / mean packages and a cap that binds."""
    r = _junk_run(MINI_HW, 5)
    for i, snaps in enumerate(mini_snapshots):
        for s in snaps:
            s.replay(r, f"image {i} stage {s.stage}")
    events = _run(r, "selbench_mini", {}, seed=6)
    for op, cyc in events:
        if op.name != "GMEAN" and op.label.startswith("image 0 stage 0") and "variant" not in op.label:
            measured(f"mini stage 0 {op.name} N={op.rows}: {cyc} cycles")
    kept = [int(op.sel.keep.sum()) for op, _ in events if op.name == "DECIDE"]
    assert any(0 < k < 60 for k in kept)


def test_lint_clean(tmp_path):
    """Verilator --lint-only -Wall is clean on the bench (Buffers + the five units) apart from
    the documented waivers."""
    import subprocess

    from sim.runner import LINT_WAIVERS, write_verilog
    v = write_verilog(SelectBench(SMALL, **SMALL_PARAMS), "selbench_lint", tmp_path)
    r = subprocess.run(["verilator", "--lint-only", "-Wall", *LINT_WAIVERS, str(v)], capture_output=True, text=True)
    msgs = [line for line in r.stderr.splitlines() if line.startswith("%")]
    assert r.returncode == 0 and not msgs, "\n".join(msgs[:20])


@pytest.mark.parametrize("R,W,n_max", [(4, 256, 40), (32, 128, 200), (8, 64, 129), (16, 256, 300)])
def test_store_layouts(R, W, n_max):
    """The bytes of a STORE of the selection for other beat widths, tile sizes and n_max (a mask
    longer than one 128-bit block, a region that ends inside a 256-bit beat): random masks, all
    kept, none kept, ns = 1 and ns = n_max - 1, against Machine.op_store (Icarus)."""
    from golden.interp import Selection
    from rtl_gen.selector.store import beats
    from sim.runner import run_stream
    from sim.select_bench import StoreBench, store_bytes
    hw = HardwareConfig(name="store", mac_rows=R, mac_cols=max(8, R), n_max=n_max, d_max=64, hidden_max=64,
                        axi_bits=W)
    rng = np.random.default_rng(R * W + n_max)
    cmds, want = [], []
    for ns in (n_max - 1, 1, 17, n_max // 2, n_max - 1, n_max - 2):
        keep = rng.random(ns) < rng.choice([0.0, 0.3, 0.8, 1.0])
        full = np.zeros(hw.tiles * R, dtype=int)
        full[1:1 + ns] = keep
        full[1 + ns:] = rng.integers(0, 2, len(full) - 1 - ns)         # state past ns must not show
        for t in range(hw.tiles):
            bits = int(sum(int(b) << i for i, b in enumerate(full[t * R:(t + 1) * R])))
            cmds.append({"store": 0, "tile": t, "keep": bits, "ns": 0, "kept": 0})
        cmds.append({"store": 1, "tile": 0, "keep": 0, "ns": ns, "kept": int(keep.sum())})
        mach = Machine(hw, bytearray(select_bytes(hw)))
        mach.last = Selection(ns + 1, 0, keep, np.zeros(ns, dtype=np.int64))
        mach.op_store(isa.decode(isa.encode("STORE", mode=isa.STORE_SELECT, addr=0, rows=1)), 1)
        want.append(bytes(mach.ddr[:select_bytes(hw)]))
    nb = beats(hw)
    res = run_stream(StoreBench(hw), f"selstore_{R}_{W}_{n_max}", {"i_cmd": cmds}, {"o_st": nb * len(want)},
                     stall=0.3, seed=R, drain=50)
    for i, w in enumerate(want):
        got = res.outputs["o_st"][i * nb:(i + 1) * nb]
        assert [b["last"] for b in got] == [0] * (nb - 1) + [1]
        from golden.compare import assert_exact
        assert_exact(np.frombuffer(store_bytes(got, hw, len(w)), dtype=np.uint8), np.frombuffer(w, dtype=np.uint8),
                     f"STORE bytes, case {i}")
    assert res.consumed["i_cmd"] == len(cmds) and res.extra == {"o_st": 0}


def test_pack_lanes_exhaustive():
    """COMPACT's packing network (rtl_gen.selector.compact.pack_lanes) for R = 8: every lane mask and every
    output offset puts the k-th selected lane at output lane (offset + k) mod R."""
    from rtl_gen.selector.compact import pack_lanes
    R, w = 8, 4
    m = Module()
    word, mask, off = Signal(R * w), Signal(R), Signal(3)
    out = pack_lanes(m, word, mask, off, R, w)
    src = sum(i << (w * i) for i in range(R))                    # lane i holds the value i
    bad = []

    async def tb(ctx):
        ctx.set(word, src)
        for mk in range(1 << R):
            for o in range(R):
                ctx.set(mask, mk)
                ctx.set(off, o)
                v = ctx.get(out)
                sel = [i for i in range(R) if mk >> i & 1]
                got = [(v >> (w * ((o + k) % R))) & (2 ** w - 1) for k in range(len(sel))]
                if got != sel:
                    bad.append((mk, o, got, sel))
    sim = Simulator(m)
    sim.add_testbench(tb)
    sim.run()
    assert not bad, bad[:5]
