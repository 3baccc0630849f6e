"""Token-selector engine against golden (QSelector.__call__: decision, score, keep probability,
output tokens, kept count) on mini shapes: calibrated weights, random and real tokens, runtime
N and n_pkg, package modes norm / sum / mean, the top-k cap, and the corner cases all kept,
none kept, all scores tied, saturated / most-negative / constant tokens; random stalls on every
stream. One elaborated engine serves every case (N, n_pkg, cap and mode are plain inputs)."""
from dataclasses import replace

import numpy as np
import pytest

from rtl_gen.config import HW_PRESETS
from rtl_gen.selector import SelectorEngine, SelFormats, weight_stream
from sim.check import assert_exact
from sim.models import block_input
from sim.selector import run_selector

HW = HW_PRESETS["mini"]


def check(sel, jobs, n_pkg, outs, what):
    for i, (x, (toks, keep, score, m, kept, last)) in enumerate(zip(jobs, outs)):
        want, s = sel(x, n_pkg)
        w = f"{what} job {i}"
        assert kept == int(s.keep.sum()), f"{w}: kept count RTL {kept} != golden {int(s.keep.sum())}"
        assert_exact(keep.astype(np.int64), s.keep.astype(np.int64), f"{w} keep")
        assert_exact(score, s.score, f"{w} score")
        assert_exact(m, s.weight, f"{w} m")
        assert_exact(toks, want, f"{w} output tokens")
        assert last == ([0] * (len(last) - 1) + [1] if len(last) else []), f"{w}: o_sel last flags {last}"


def with_out3(sel, w=None, b=None):
    """sel with out3 weights / bias replaced (the weights travel on i_w, so one engine serves)."""
    o = sel.out3
    return replace(sel, out3=replace(o, w=o.w if w is None else w, b=o.b if b is None else b))


@pytest.fixture(scope="module")
def parts(mini_model):
    q, imgs = mini_model
    return q, q.selectors[2], block_input(q, imgs, 2), block_input(q, imgs, 2, img=1)


def test_selector_real_tokens(parts):
    """Calibrated tokens entering the first selector (N = 23 and the full 65), mode norm; the
    decisions are mixed (some kept, some dropped)."""
    q, sel, x, x1 = parts
    jobs = [x[:23], x1[:23]]
    outs, res = run_selector(sel, jobs, 0, seed=1, tag="real23")
    check(sel, jobs, 0, outs, "real N=23")
    assert 0 < outs[0][4] < 22                                  # mixed decisions
    outs, res = run_selector(sel, [x], 0, seed=2, tag="real65")
    check(sel, [x], 0, outs, "real N=65")


def test_selector_modes_cap_packages(parts):
    """sum and mean packages, earlier package tokens (n_pkg = 2), the cap, random tokens with
    saturated, most-negative and constant tokens."""
    q, sel, x, _ = parts
    rng = np.random.default_rng(5)
    xr = x[:18].copy()
    xr[3] = 32767
    xr[4] = -32768
    xr[5] = 123                                                 # constant token: LN gives beta
    xr[6, ::2], xr[6, 1::2] = 32767, -32768                     # saturating alternation
    xr[16:] = rng.integers(-4000, 4000, (2, x.shape[1]))       # two earlier package tokens
    xn = rng.integers(-6000, 6000, (18, x.shape[1]))
    for mode, cap in (("sum", None), ("mean", 3), ("norm", 4)):
        s2 = replace(sel, package_mode=mode, cap=cap)
        uncapped = [int(sel(xi, 2)[1].keep.sum()) for xi in (xr, xn)]
        assert cap is None or max(uncapped) > cap                 # the cap binds
        assert min(uncapped) < 15                                 # something is packaged
        outs, _ = run_selector(s2, [xr, xn], 2, seed=len(mode), tag=f"{mode}{cap}")
        check(s2, [xr, xn], 2, outs, f"mode {mode} cap {cap}")


def test_selector_all_kept_none_kept_ties(parts):
    """out3 biases force z0 >> z1 (all kept, then a cap of 4), z0 << z1 (none kept: every token
    goes into the package), and zero out3 weights and biases (z0 == z1: every score ties at 0,
    all kept; the cap then keeps the lowest indices)."""
    q, sel, x, _ = parts
    o = sel.out3
    big = np.zeros_like(np.asarray(o.b))
    big[..., 0], big[..., 1] = 1 << 40, -(1 << 40)
    jobs = [x[:12], x[30:42]]
    keep_all = with_out3(sel, b=big)
    drop_all = with_out3(sel, b=-big)
    tie = with_out3(sel, w=np.zeros_like(o.w), b=np.zeros_like(o.b))
    cases = [("all kept", keep_all, 12), ("all kept, cap 4", replace(keep_all, cap=4), 4),
             ("none kept", drop_all, 0), ("none kept, sum", replace(drop_all, package_mode="sum"), 0),
             ("ties", tie, 11), ("ties, cap 5", replace(tie, cap=5), 5), ("cap 0", replace(tie, cap=0), 0)]
    for i, (what, s2, n_keep) in enumerate(cases):
        n_pkg = 1 if i % 2 else 0
        outs, _ = run_selector(s2, jobs, n_pkg, seed=10 + i, tag=f"corner{i}")
        check(s2, jobs, n_pkg, outs, what)
        want = min(n_keep, 12 - 1 - n_pkg)
        assert all(o[4] == want for o in outs), what
    _, s = tie(x[:12], 0)
    assert (s.score == 0).all()


def test_selector_smallest_jobs(parts):
    """N = 2 (one candidate, one scored token) and N = 4 with three earlier packages (no scored
    token: no o_sel beat, the new package is the zero token)."""
    q, sel, x, _ = parts
    for n, n_pkg in ((2, 0), (4, 3)):
        jobs = [x[:n], x[40:40 + n]]
        outs, _ = run_selector(sel, jobs, n_pkg, seed=n, tag=f"small{n}_{n_pkg}")
        check(sel, jobs, n_pkg, outs, f"N={n} n_pkg={n_pkg}")


def test_selector_other_lanes(parts):
    """Two output lanes per MAC pass and a LayerNorm over the whole token tile (mini's defaults:
    4 output lanes, LayerNorm in two passes of 2 lanes; there se1 and out3 fill only part of a
    pass). N = 16 (whole token tiles) with one earlier package in sum mode, and all kept at
    N = 13 (14 output tokens: the last output tile is partly filled)."""
    q, sel, x, x1 = parts
    eng = SelectorEngine(SelFormats.from_selector(sel), HW, lanes_out=2, lanes_ln=4)
    s2 = replace(sel, package_mode="sum")
    jobs = [x[:16], x1[:16]]
    outs, _ = run_selector(s2, jobs, 1, seed=21, tag="q2_n16", name="selector_mini_q2", engine=eng)
    check(s2, jobs, 1, outs, "lanes_out 2, N=16")
    big = np.zeros_like(np.asarray(sel.out3.b))
    big[..., 0], big[..., 1] = 1 << 40, -(1 << 40)
    keep_all = with_out3(sel, b=big)
    jobs = [x[:13], x1[20:33]]
    outs, _ = run_selector(keep_all, jobs, 0, seed=22, tag="q2_all", name="selector_mini_q2", engine=eng)
    check(keep_all, jobs, 0, outs, "lanes_out 2, all kept")
    assert all(o[4] == 12 for o in outs)


def test_selector_dsp_estimate():
    """selector_dsp counts R x Q MAC lanes, the LayerNorm lanes and the per-lane units; the zcu102
    selector stays within the ~600 DSP48E2 left beside the block."""
    from golden.config import PRESETS
    from rtl_gen.selector import selector_dsp
    cfg = PRESETS["spvit-deit-tiny"]
    f = SelFormats(cfg.num_heads, cfg.head_dim, 0, 0, 1, 0, (0,) * 6, (None,) * 6, None)
    zcu = HW_PRESETS["zcu102"]
    assert selector_dsp(f, zcu) <= 600
    assert selector_dsp(f, zcu, 16) - selector_dsp(f, zcu, 8) == zcu.mac_rows * 8
    assert selector_dsp(f, zcu, 16, 16) - selector_dsp(f, zcu, 16, 8) == 8 * 18


def test_selector_lint_clean(tmp_path, mini_model):
    """Verilator --lint-only -Wall is clean apart from the documented waivers."""
    import subprocess
    from sim.runner import LINT_WAIVERS, write_verilog
    q, _ = mini_model
    v = write_verilog(SelectorEngine(SelFormats.from_selector(q.selectors[2]), HW), "spvit_selector", tmp_path)
    r = subprocess.run(["verilator", "--lint-only", "-Wall", *LINT_WAIVERS, str(v)], capture_output=True, text=True)
    msgs = [l for l in r.stderr.splitlines() if l.startswith("%")]
    assert r.returncode == 0 and not msgs, "\n".join(msgs[:20])


def test_weight_stream_length(parts):
    """The word count documented in docs/rtl.md."""
    q, sel, _, _ = parts
    f = SelFormats.from_selector(sel)
    h, dh = f.heads, f.head_dim
    assert len(weight_stream(sel)) == h * (1 + 11 * dh // 4) + h + max(h // 2, 1) + 3 * (5 * h + 2) == 252
