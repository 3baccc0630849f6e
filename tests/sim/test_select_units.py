"""Selector units (rtl_gen gmean, decide, package, compact, selstore) on the buffer fabric against
the interpreter's operations (golden/interp.py Machine.op_gmean / op_decide / op_package /
op_compact / op_store STORE_SELECT) by ==: keep, m, kept count and stage, every lane of every
token tile of the written channels (rows an operation must not write keep the random junk both
sides start with), N', the stored selection bytes; and each operation's cycles against
rtl_gen.tools.cycles. One command stream per run with random stalls (sim/select_bench.py).

Small config (R = 4, n_max = 40) with non-default unit parameters (3 reciprocal units, 2 cap
bits per pass, package lanes = R): corner cases. Mini preset with the defaults: the
interpreter's buffers right before GMEAN and DECIDE of the calibrated mini model."""
import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from golden import isa
from golden.compiler import select_bytes
from golden.hw import MINI_HW, HardwareConfig
from golden.interp import Machine
from golden.isa import B0, B1, B2, B3
from golden.kernels import make_pwl
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
    r = SelectRun(hw, junk_seed=11)
    for b in (B0, B1, B2, B3):
        r.put_junk(b)
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
    r = SelectRun(hw, junk_seed=21)
    for b in (B0, B1, B2, B3):
        r.put_junk(b)
    r.put_junk(isa.SB)

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


def test_gmean():
    """rows = 2 and n_max, one channel to the whole buffer, saturated channels, B3 channels
    beyond d_max; several means in a row on the same buffer."""
    hw, rng = SMALL, np.random.default_rng(8)
    r = SelectRun(hw, junk_seed=12)
    for b in (B0, B2, B3):
        r.put_junk(b)
    cases = [(2, B0, 10, 3), (40, B3, 40, 16), (23, B0, 0, 1), (9, B2, 0, 64), (31, B0, 7, 20), (3, B3, 63, 1)]
    for i, (rows, buf, c0, w) in enumerate(cases):
        x = rng.integers(-32768, 32768, (rows, w))
        x[:, :: 3] = 32767 if i % 2 else -32768
        r.put(buf, c0, x)
        r.op(f"gmean {i}", "GMEAN", rows, buf=buf, c0=c0, w=w)
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
    r = SelectRun(MINI_HW, junk_seed=5)
    for b in (B0, B1, B2, B3):
        r.put_junk(b)
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
