"""LayerNorm unit (rtl_gen/norm/layernorm.py) in the buffer fabric (sim/ln_bench.py) against the
interpreter's LAYERNORM (golden.interp Machine.op_layernorm), compared by ==: every word of every
token buffer, which start as random junk (rows >= `rows` and channels outside the op keep it).
Random tokens and corner cases, channel offsets, partial tiles, d = 1 .. d_max, eps and y_shift
extremes, random stalls on every stream, parameters arriving late; the stall-free cycle count
against ln_cycles; the normalising square root and the normalised-divisor reciprocal against
golden isqrt and recip."""
import dataclasses

import numpy as np
import pytest

from base import settings
from golden.arith import bit_length, isqrt, recip, requant
from golden.compare import assert_exact
from golden.hw import SMALL_HW, HardwareConfig
from golden.isa import B0, B1, B2, B3
from golden.kernels import LN_RECIP_BITS, LN_SQRT_BITS, layernorm, ln_eps_const
from rtl_gen.norm.isqrt_norm import NormIsqrt
from rtl_gen.norm.layernorm import OUT_LAT, STATS_LAT, Widths, ln_cycles, post_cycles
from rtl_gen.primitives.recip import Reciprocal
from sim.ln_bench import LnOp, run_ln
from sim.runner import run_stream

# d_max = 160 lets one small build cover both regimes: d below the per-tile chain's latency
# (post_cycles = 144: the chain paces) and above it (one tile per d cycles)
HW = HardwareConfig(name="t", mac_rows=4, mac_cols=8, n_max=40, d_max=160, hidden_max=160, axi_ports=1)
# the post lanes shared by 2 and by all 4 token rows of a tile (zcu102 shares by 2)
SHARED = {s: dataclasses.replace(HW, name=f"t{s}", ln_post_share=s) for s in (2, 4)}
EPS_MAX = (1 << 56) - 1
BETA_MAX = (1 << 47) - 1


def _tokens(rng, rows, d):
    """Random tokens of random scale (from full-range down to a few LSB)."""
    return rng.integers(-32768, 32768, (rows, d)) >> rng.integers(0, 15, (rows, 1))


def _corner_tokens(d, rng):
    toks = [np.full(d, 1234), np.zeros(d, dtype=np.int64), np.full(d, -32768), np.full(d, 32767),
            np.resize([-32768, 32767], d), np.where(np.arange(d) == 3, 32767, -5), np.resize([0, 1], d),
            np.resize([-1, 0], d), np.where(np.arange(d) == d - 1, -32768, 32767)]
    return np.concatenate([np.array(toks), _tokens(rng, 3, d)])


def _params(rng, d, g_scale=32768, b_scale=1 << 40):
    gamma = rng.integers(-g_scale, g_scale, d)
    beta = rng.integers(-b_scale, b_scale, d)
    return gamma, beta


def _op(rng, d, rows, i_buf=B0, i_c0=0, o_buf=B1, o_c0=0, eps=5, y_shift=14, x=None, params=None, eps0=0):
    x = _tokens(rng, rows, d) if x is None else x
    gamma, beta = params or _params(rng, d)
    return LnOp(dict(i_buf=i_buf, i_c0=i_c0, d=d, o_buf=o_buf, o_c0=o_c0, eps=eps, y_shift=y_shift, eps0=eps0), rows,
                x, gamma, beta)


def _ops(rng):
    D = HW.d_max
    corner = _corner_tokens(D, rng)
    g_ext, b_ext = _params(rng, 37, 1 << 15, 1 << 47)
    g_ext[:4], b_ext[:4] = [-32768, 32767, -32768, 32767], [BETA_MAX, -BETA_MAX - 1, -BETA_MAX - 1, BETA_MAX]
    return [
        _op(rng, 24, 13, i_c0=5, o_c0=17, y_shift=12),                                   # partial tile, offsets
        _op(rng, D, len(corner), B2, 0, B3, 0, eps=1, y_shift=16 + 14 - 8, x=corner,
            params=_params(rng, D, 1 << 14, 1 << 36)),                                   # corner tokens, eps = 1
        _op(rng, 1, 1, B1, D - 1, B0, 40, eps=EPS_MAX, y_shift=-16),                     # one row, d = 1, eps max
        _op(rng, 37, HW.n_max, B3, 27, B2, 0, eps=1000, y_shift=40, params=(g_ext, b_ext)),  # rows = n_max
        _op(rng, 2, 5, B0, D - 2, B3, 10, eps=EPS_MAX, y_shift=0),
        _op(rng, 131, 22, B2, 29, B1, 3, eps=77, y_shift=13),                           # d > the chain latency
        _op(rng, 64, 3, eps=ln_eps_const(1e-6, 64, 8), y_shift=16 + 12 - 10, params=_params(rng, 64, 1 << 13, 1 << 30)),
        _op(rng, 64, 9, B1, 0, B0, 0, eps=EPS_MAX, y_shift=-3),                          # negative shift: saturates
        # the CLS token's own eps (EViT, Evo-ViT): row 0 only, the other rows of its tile and later tiles keep eps
        _op(rng, 40, 22, B2, 3, B1, 0, eps=3, y_shift=12, eps0=EPS_MAX),
        _op(rng, 16, 1, B0, 0, B3, 5, eps=EPS_MAX, y_shift=14, eps0=1),
    ]


def test_ln_unit_exact():
    rng = np.random.default_rng(8)
    ops = _ops(rng)
    got, want, _, _ = run_ln(HW, ops, "ln_unit_t", stall=0.25, seed=3)
    assert_exact(got, want, "LayerNorm unit vs interpreter (all buffer words)")
    _check_reach(ops, want)


@pytest.mark.parametrize("share", sorted(SHARED))
def test_ln_unit_shared_post_exact(share):
    """Post lanes shared between token rows (ln_post_share): the same words, with stalls, and the
    stall-free count against ln_cycles (the chain now paces at d = 160 too)."""
    hw = SHARED[share]
    rng = np.random.default_rng(8)
    ops = _ops(rng)
    got, want, _, _ = run_ln(hw, ops, f"ln_unit_t{share}", stall=0.25, seed=3 + share)
    assert_exact(got, want, f"LayerNorm unit, post shared by {share} rows, vs interpreter (all buffer words)")
    _check_reach(ops, want)
    shapes = [(24, 13), (1, 1), (64, 1), (33, 17), (160, 40), (130, 21)]
    ops = [_op(rng, d, rows) for d, rows in shapes]
    got, want, cycles, _ = run_ln(hw, ops, f"ln_unit_t{share}", stall=0.0, seed=5, all_buffers=False, tag="free")
    assert_exact(got, want, f"LayerNorm unit, post shared by {share} rows (stall-free)")
    for (d, rows), c in zip(shapes, cycles):
        mdl = ln_cycles(d, rows, hw)
        assert abs(c - mdl) <= 0.01 * c, f"d={d} rows={rows}: RTL {c} cycles, ln_cycles {mdl}"
    assert post_cycles(hw) == 1 + share * (post_cycles(HW) - 1)


def _check_reach(ops, want):
    # the vectors reach what they are meant to: constant tokens (rows 0-3 of the corner op) give
    # round(beta), which is not trivially 0; saturation at both ends; many distinct values
    c = ops[1]
    f = c.fields
    y = layernorm(c.x[:4], 0, c.gamma, f["y_shift"] - 16, c.beta, f["eps"], 0)
    beta_y = requant(np.asarray(c.beta), f["y_shift"])
    assert (y == beta_y).all() and (np.abs(beta_y) > 100).any()
    assert want.min() == -32768 and want.max() == 32767 and len(np.unique(want)) > 1000


def test_ln_unit_late_params():
    """Parameters trickle in (95% stall on i_param): each output channel waits for its own."""
    rng = np.random.default_rng(9)
    ops = [_op(rng, 24, 13, i_c0=5, o_c0=3), _op(rng, 64, 6, B1, 0, B0, 0, y_shift=10)]
    got, want, cycles, _ = run_ln(HW, ops, "ln_unit_t", stall=0.1, seed=4, port_stall={"i_param": 0.95},
                                  tag="late")
    assert_exact(got, want, "LayerNorm unit with late parameters")
    # the parameters (about 20 cycles each) paced the ops: 794 and 1548 cycles against 620 and 534
    assert all(c > ln_cycles(op.fields["d"], op.rows, HW) + 100 for c, op in zip(cycles, ops)), cycles


def test_ln_cycles_model():
    """Stall-free cycles (start -> done) equal ln_cycles: short rows, d below and above the
    per-tile chain's latency (the chain or the token stream paces), d = d_max, rows = n_max."""
    rng = np.random.default_rng(10)
    shapes = [(24, 13), (64, 40), (1, 1), (5, 40), (64, 1), (33, 17), (160, 40), (130, 21), (119, 40), (160, 4)]
    ops = [_op(rng, d, rows) for d, rows in shapes]
    got, want, cycles, _ = run_ln(HW, ops, "ln_unit_t", stall=0.0, seed=5, all_buffers=False, tag="free")
    assert_exact(got, want, "LayerNorm unit (stall-free)")
    model = [ln_cycles(d, rows, HW) for d, rows in shapes]
    for (d, rows), c, mdl in zip(shapes, cycles, model):
        assert abs(c - mdl) <= 0.01 * c, f"d={d} rows={rows}: RTL {c} cycles, ln_cycles {mdl}"
    assert 64 < post_cycles(HW) < 160
    # d > post_cycles: tiles follow each other every d cycles, T d + d + post_cycles + OUT_LAT + STATS_LAT in all
    assert cycles[6] == 10 * 160 + 160 + post_cycles(HW) + OUT_LAT + STATS_LAT


@pytest.mark.skipif(not settings.SLOW, reason="SPVIT_SLOW=1: the small preset (R = 16, d_max = 384)")
def test_ln_unit_small_preset():
    """DeiT shapes on the small preset (d = 192 and 384, 197 rows): exact with stalls, and the
    stall-free count against ln_cycles (here d > the chain latency, so one tile per d cycles)."""
    hw = SMALL_HW
    rng = np.random.default_rng(11)
    ops = [_op(rng, 384, 197, B0, 0, B1, 0, eps=ln_eps_const(1e-6, 384, 9), y_shift=17),
           _op(rng, 192, 197, B1, 192, B2, 100, eps=3, y_shift=15)]
    got, want, _, _ = run_ln(hw, ops, "ln_unit_small", stall=0.2, seed=6, all_buffers=False)
    assert_exact(got, want, "LayerNorm unit (small preset)")
    got, want, cycles, _ = run_ln(hw, ops, "ln_unit_small", stall=0.0, seed=7, all_buffers=False, tag="free")
    assert_exact(got, want, "LayerNorm unit (small preset, stall-free)")
    for op, c in zip(ops, cycles):
        d, rows = op.fields["d"], op.rows
        mdl = ln_cycles(d, rows, hw)
        assert abs(c - mdl) <= 0.01 * c, f"d={d} rows={rows}: RTL {c}, ln_cycles {mdl}"
        assert c < -(-rows // hw.mac_rows) * d + d + post_cycles(hw) + 20        # tiles stream at one per d


def test_ln_reciprocal():
    """floor(2^62 / r) for r in [2^30, 2^31) in 33 steps, against golden recip."""
    rng = np.random.default_rng(12)
    lo, hi = 1 << 30, 1 << 31
    xs = [lo, lo + 1, lo + 2, hi - 1, hi - 2, (lo + hi) // 2, 1518500249, 1518500250] + \
        [int(v) for v in rng.integers(lo, hi, 200)]
    dut = Reciprocal(LN_SQRT_BITS // 2, LN_RECIP_BITS, LN_SQRT_BITS // 2 - 1)
    res = run_stream(dut, "recip_norm_62", {"i_d": xs}, {"o_q": len(xs)}, stall=0.3, seed=1)
    assert_exact(np.array(res.outputs["o_q"], dtype=np.int64), recip(np.array(xs), LN_RECIP_BITS), "recip 2^62")
    assert res.outputs["o_q"][0] == 1 << 32


def test_ln_norm_isqrt():
    """r = isqrt(V << 2k), k = (62 - bitlen V) // 2, and 46 - k, for V over its whole range
    (every bit length, eps up to 2^56), four lanes in lock step."""
    vb = Widths(HW).v
    rng = np.random.default_rng(13)
    top = (1 << vb) - 1
    vs = [1, 2, 3, 4, 5, 7, 8, top, top - 1, 1 << (vb - 1), (1 << 56) - 1, 1 << 56, (1 << 60) // 3 % (1 << vb)]
    vs += [int(rng.integers(1 << b, 1 << (b + 1))) if b < 62 else 1 for b in range(vb)]
    vs += [int(v) for v in rng.integers(1, top, 40, dtype=np.int64)]
    vs += [1] * (-len(vs) % 4)
    dut = NormIsqrt(vb, 4)
    res = run_stream(dut, "isqrt_norm", {"i_v": np.array(vs).reshape(-1, 4).tolist()}, {"o_r": len(vs) // 4},
                     stall=0.3, seed=3)
    v = np.array(vs, dtype=np.int64)
    k = (LN_SQRT_BITS - bit_length(v)) // 2
    got_r = np.array([b["r"] for b in res.outputs["o_r"]]).ravel()
    got_z = np.array([b["zsh"] for b in res.outputs["o_r"]]).ravel()
    assert_exact(got_r, isqrt(v << (2 * k)), "normalised isqrt")
    assert_exact(got_z, LN_RECIP_BITS - 16 - k, "46 - k")
