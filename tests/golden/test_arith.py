"""Integer primitives against Python-integer references: rounding ties, saturation at both ends,
most-negative values, exactness of wide accumulation."""
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from golden.arith import (
    ENGINES,
    INT16_MAX,
    INT16_MIN,
    MAX_K,
    PackedWeight,
    add_sat,
    bit_length,
    isqrt,
    isqrt_bitwise,
    matmul,
    recip,
    requant,
    rshift_round,
    sat,
)
from golden.compare import assert_exact

SIDES = ("golden", "reference")          # golden.compare.assert_exact's report names
ROOT = Path(__file__).resolve().parents[2]

i16 = st.integers(INT16_MIN, INT16_MAX)
i48 = st.integers(-(1 << 47), (1 << 47) - 1)


def ref_shift(x: int, s: int) -> int:
    return x << -s if s <= 0 else (x + (1 << (s - 1))) // (1 << s)   # floor((x + half) / 2^s)


def ref_requant(x: int, s: int) -> int:
    return min(max(ref_shift(x, s), INT16_MIN), INT16_MAX)


def test_rounding_ties_go_up():
    assert rshift_round(5, 1) == 3 and rshift_round(-5, 1) == -2
    assert rshift_round(3, 1) == 2 and rshift_round(-3, 1) == -1
    assert rshift_round(-4, 2) == -1 and rshift_round(-6, 2) == -1 and rshift_round(-7, 2) == -2
    assert rshift_round(7, 0) == 7 and rshift_round(7, -3) == 56


@given(i48, st.integers(-8, 40))
def test_rshift_round_matches_reference(x, s):
    assert int(rshift_round(x, s)) == ref_shift(x, s)


@given(st.lists(st.tuples(i48, st.integers(-8, 40)), min_size=1, max_size=50))
def test_rshift_round_array_shift(pairs):
    x = np.array([p[0] for p in pairs])
    s = np.array([p[1] for p in pairs])
    assert rshift_round(x, s).tolist() == [ref_shift(a, b) for a, b in pairs]


@pytest.mark.parametrize("shift", [0, 1, 2, 7, 15, 16, 31])
def test_requant_exhaustive_int16_and_wide(shift):
    x = np.arange(INT16_MIN, INT16_MAX + 1, dtype=np.int64)
    for scale in (1, 1 << 16, -(1 << 20) + 3):
        v = x * scale
        want = [ref_requant(int(a), shift) for a in v]
        assert_exact(requant(v, shift), want, f"requant(x * {scale}, {shift})", names=SIDES)


def test_saturation_both_ends_and_most_negative():
    assert requant(1 << 40, 0) == INT16_MAX and requant(-(1 << 40), 0) == INT16_MIN
    assert requant(INT16_MIN, 0) == INT16_MIN and requant(INT16_MIN * 2, 1) == INT16_MIN
    assert requant(2 * INT16_MAX + 1, 1) == INT16_MAX  # 32767.5 rounds up to 32768 -> saturates
    assert sat(-(1 << 50)) == INT16_MIN and sat(1 << 50) == INT16_MAX


@given(i16, st.integers(-4, 20), i16, st.integers(-4, 20), st.integers(-4, 20))
def test_add_sat(a, fa, b, fb, fo):
    f = max(fa, fb)
    want = ref_requant((a << (f - fa)) + (b << (f - fb)), f - fo)
    assert int(add_sat(a, fa, b, fb, fo)) == want


def _packed(w, x, engine, add=None):
    from golden.arith import use_engine
    with use_engine(engine):
        return PackedWeight(w).matmul(x, add)


def py_matmul(x, w):
    return [[sum(int(x[i][k]) * int(w[k][j]) for k in range(len(w))) for j in range(len(w[0]))]
            for i in range(len(x))]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(1, 70), st.integers(1, 6), st.integers(0, 2**31),
       st.sampled_from(["rand", "min", "max", "mixed"]))
def test_matmul_engines_equal_python_ints(m, k, n, seed, kind):
    rng = np.random.default_rng(seed)
    if kind == "rand":
        x, w = rng.integers(INT16_MIN, INT16_MAX + 1, (m, k)), rng.integers(INT16_MIN, INT16_MAX + 1, (k, n))
    elif kind == "min":
        x, w = np.full((m, k), INT16_MIN), np.full((k, n), INT16_MIN)
    elif kind == "max":
        x, w = np.full((m, k), INT16_MAX), np.full((k, n), INT16_MIN)
    else:
        x = rng.choice([INT16_MIN, INT16_MAX, 0, -1, 1], (m, k))
        w = rng.choice([INT16_MIN, INT16_MAX, 0, -1, 1], (k, n))
    want = py_matmul(x.tolist(), w.tolist())
    assert matmul(x, w).tolist() == want
    assert all(_packed(w, x, e).tolist() == want for e in ENGINES)


@pytest.mark.parametrize("k", [64, 192, 197, 384, 768, 1536, MAX_K])
def test_matmul_exact_at_deit_depths_worst_case(k):
    """Every dot-product depth DeiT-T/S uses (head_dim 64, tokens 197, embed 192/384, patch 768,
    hidden 768/1536) and the 4096 limit, at the worst case: all products 2^30 add to K 2^30,
    still exact (< 2^53 for float64, < 2^47 for the 48-bit accumulator)."""
    assert k * (1 << 30) < (1 << 53) and k * (1 << 30) + (1 << 46) < (1 << 47)
    x = np.full((3, k), INT16_MIN)
    w = np.full((k, 2), INT16_MIN)
    w[:, 1] = INT16_MAX
    want = [[k * (1 << 30), -k * (1 << 15) * INT16_MAX]] * 3
    assert matmul(x, w).tolist() == want
    assert all(_packed(w, x, e).tolist() == want for e in ENGINES)
    rng = np.random.default_rng(k)
    x = rng.integers(INT16_MIN, INT16_MAX + 1, (4, k))
    w = rng.integers(INT16_MIN, INT16_MAX + 1, (k, 3))
    want = py_matmul(x.tolist(), w.tolist())
    assert matmul(x, w).tolist() == want and all(_packed(w, x, e).tolist() == want for e in ENGINES)


def test_matmul_rejects_too_deep():
    with pytest.raises(ValueError, match="exceeds 4096"):
        matmul(np.zeros((1, MAX_K + 1)), np.zeros((MAX_K + 1, 1)))


@given(st.integers(1, (1 << 40)), st.integers(1, 62))
def test_recip(d, k):
    assert int(recip(d, k)) == (1 << k) // d


def test_recip_rejects_zero():
    with pytest.raises(ValueError):
        recip(0, 10)


@given(st.integers(0, (1 << 62) - 1))
def test_isqrt_exact(n):
    assert int(isqrt(n)) == math.isqrt(n) == isqrt_bitwise(n)


def test_isqrt_small_and_near_squares():
    n = np.arange(0, 5000)
    assert isqrt(n).tolist() == [math.isqrt(int(v)) for v in n]
    r = np.array([1, 2, 3, 1 << 20, (1 << 31) - 1, (1 << 31) - 2], dtype=np.int64)
    for v in (r * r - 1, r * r, r * r + 1):
        v = v[v < (1 << 62)]
        assert isqrt(v).tolist() == [math.isqrt(int(a)) for a in v]
        assert [isqrt_bitwise(int(a)) for a in v] == [math.isqrt(int(a)) for a in v]


@given(st.integers(0, (1 << 63) - 1))
def test_bit_length(n):
    assert int(bit_length(n)) == n.bit_length()


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31), st.integers(-3, 30), st.booleans(), st.sampled_from(ENGINES + ("auto",)))
def test_qlinear_fused_path_equals_requant_of_exact_product(seed, shift, stacked, engine):
    from golden.arith import use_engine
    from golden.layers import QLinear
    rng = np.random.default_rng(seed)
    lead = (3,) if stacked else ()
    if seed % 3 == 0:
        w = rng.choice([INT16_MIN, INT16_MAX, 0, -1], (*lead, 5, 7))
    else:
        w = rng.integers(INT16_MIN, INT16_MAX + 1, (*lead, 5, 7))
    b = rng.integers(-(1 << 45), 1 << 45, (*lead, 1, 5) if stacked else (5,))
    x = rng.integers(INT16_MIN, INT16_MAX + 1, (*lead, 4, 7))
    layer = QLinear(w, b, w_frac=shift, in_frac=0, out_frac=0)
    exact = np.einsum("...nk,...ok->...no", x.astype(object), w.astype(object)) + b.astype(object)
    want = np.vectorize(lambda v: ref_requant(int(v), shift), otypes=[object])(exact)
    with use_engine(engine):
        got = layer(x)
    assert_exact(got, want.astype(np.int64), f"QLinear on {engine}", names=SIDES)


# every matmul of a DeiT-S block and of the model: (rows, depth, columns)
DEIT_S_SHAPES = [(196, 768, 384),          # patch embedding
                 (197, 384, 384),          # q, k, v (each), proj
                 (197, 64, 197),           # Q.K^T per head
                 (197, 197, 64),           # A.V per head
                 (197, 384, 1536),         # fc1
                 (197, 1536, 384),         # fc2
                 (1, 384, 1000)]           # head


@pytest.mark.parametrize("m,k,n", DEIT_S_SHAPES)
def test_matmul_exact_for_every_deit_s_shape(m, k, n):
    """Both engines equal numpy's int64 matmul (plain integer arithmetic, no BLAS; no overflow
    since |sum| <= 2^42) on full DeiT-S shapes with extreme and random values."""
    rng = np.random.default_rng(m * k + n)
    x = rng.integers(INT16_MIN, INT16_MAX + 1, (m, k))
    w = rng.integers(INT16_MIN, INT16_MAX + 1, (k, n))
    x[0] = INT16_MIN
    w[:, 0] = INT16_MIN
    want = x @ w                                   # int64 dtype: exact integer arithmetic
    assert_exact(matmul(x, w), want, "float64 (activations)", names=SIDES)
    bias = rng.integers(-(1 << 46) + 1, 1 << 46, n)
    for e in ENGINES:                              # with and without the bias folded in
        assert_exact(_packed(w, x, e), want, e, names=SIDES)
        assert_exact(_packed(w, x, e, bias), want + bias, f"{e} with bias", names=SIDES)
    assert want[0, 0] == k * (1 << 30)


def test_engine_choice_per_machine(monkeypatch):
    """auto: the first product of a shape class times every engine on the real operands, checks
    they agree and keeps the fastest; use_engine / SPVIT_MATMUL force one."""
    import golden.arith as A
    monkeypatch.setattr(A, "_choice", {})
    monkeypatch.setattr(A, "_timings", {})
    rng = np.random.default_rng(0)
    w = rng.integers(INT16_MIN, INT16_MAX + 1, (96, 40))
    x = rng.integers(INT16_MIN, INT16_MAX + 1, (50, 96))
    with A.use_engine("auto"):
        got = PackedWeight(w).matmul(x)
        assert (x @ w == got).all()
        key = (50 .bit_length(), 96, 40)
        assert A._choice[key] in ENGINES and set(A._timings[key]) == set(ENGINES)
        assert "auto: " in A.engine_report() and "K=96 N=40" in A.engine_report()
        A._choice[key] = "float64"                    # the cached choice is used from then on
        calls = []
        monkeypatch.setitem(A._ENGINE_FNS, "float64", lambda pw, x2, add: calls.append(1) or x2 @ pw.w16)
        PackedWeight(w).matmul(x[:40])               # same bucket (32..63 rows)
        assert calls == [1]
    with A.use_engine("int8"):
        assert A.engine_report() == "int8 (forced)"
    with pytest.raises(ValueError, match="matmul engine must be one of"):
        A.use_engine("int4")


@pytest.fixture
def fresh_engines(monkeypatch):
    """The engine choices, checks and reports of golden.arith as in a new process."""
    import golden.arith as A
    for name in ("_choice", "_timings", "_exact", "_instead"):
        monkeypatch.setattr(A, name, {})
    monkeypatch.setattr(A, "_warned", set())
    return A


def test_wrong_engine_is_replaced_never_trusted(fresh_engines, monkeypatch, capsys):
    """An engine that differs from the exact integer product (as oneDNN's int8 kernel without
    VNNI does) is reported once and not used again, chosen ("auto") or forced; with no exact
    engine left, numpy's int64 product is used. Never an exception, never a wrong result."""
    A = fresh_engines
    rng = np.random.default_rng(1)
    w = rng.integers(INT16_MIN, INT16_MAX + 1, (24, 8))
    x = rng.integers(INT16_MIN, INT16_MAX + 1, (5, 24))
    monkeypatch.setitem(A._ENGINE_FNS, "float64", lambda pw, x2, add: x2 @ pw.w16.astype(np.int64) + 1)
    with A.use_engine("auto"):
        assert (PackedWeight(w).matmul(x) == x @ w).all()
        assert A._choice[A.PackedWeight(w)._key(x)] == "int8"
        assert (PackedWeight(w[:, :4]).matmul(x[:2]) == x[:2] @ w[:, :4]).all()     # another shape class
    err = capsys.readouterr().err
    assert err.count("spvit: note: the golden model's matmul engine float64 gives wrong products") == 1, err
    assert "(40 of 40 checked elements of a 5x24x8 product differ from the exact integer product)" in err
    with A.use_engine("float64"):                    # forced: replaced where it is wrong
        assert (PackedWeight(w).matmul(x) == x @ w).all()
        assert "wrong on this machine, replaced where checked: float64" in A.engine_report()
    monkeypatch.setitem(A._ENGINE_FNS, "int8", lambda pw, x2, add: x2 @ pw.w16.astype(np.int64) - 1)
    for mode in ("auto", "int8"):                    # nothing exact left: the int64 reference
        with A.use_engine(mode):
            bias = rng.integers(-1000, 1000, 8)
            assert (PackedWeight(w).matmul(x[:1], bias) == x[:1] @ w + bias).all()
    assert capsys.readouterr().err.count("matmul engine int8 gives wrong products") == 1


def test_golden_model_under_onednn_avx2_is_exact(measured):
    """ONEDNN_MAX_CPU_ISA=AVX2 (read by oneDNN when torch loads: a new process) makes torch's
    int8 GEMM saturate as on a machine without VNNI; the golden model notices, says so once and
    stays exact (equal to numpy's int64 product, and to float64 BLAS, exact by proof), with the
    engine chosen ("auto") and then forced (SPVIT_MATMUL=int8), and `spvit check` runs through."""
    script = textwrap.dedent("""
        import numpy as np
        from golden.arith import PackedWeight, set_engine, use_engine
        from quant.calibrate import calibrated_random, quantize_images
        from spvit.cli import main
        rng = np.random.default_rng(0)
        w = rng.integers(-2 ** 15, 2 ** 15, (192, 64))
        x = rng.integers(-2 ** 15, 2 ** 15, (100, 192))
        q, imgs = calibrated_random("mini", 0, 3)
        xq = quantize_images(imgs, q)
        with use_engine("float64"):
            want = q(xq)[0]
        for engine in ("auto", "int8"):
            set_engine(engine)
            assert (PackedWeight(w).matmul(x) == x @ w).all(), engine
            assert (q(xq)[0] == want).all(), engine
            print("exact", engine)
        assert main(["check", "--images", "2", "--calib", "2"]) == 0
    """)
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert r.stdout.startswith("exact auto\nexact int8\n") and "top-1 agreement" in r.stdout, r.stdout
    notes = r.stderr.count("matmul engine int8 gives wrong products")
    assert notes <= 1, r.stderr
    measured(f"ONEDNN_MAX_CPU_ISA=AVX2: golden model exact (auto, SPVIT_MATMUL=int8, spvit check); torch._int_mm "
             f"{'wrong on this machine, reported once and replaced' if notes else 'exact on this machine'}")
