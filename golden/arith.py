"""Integer primitives: the one place where rounding, saturation and widths are defined.

Every function takes and returns numpy int64 arrays (or Python ints) holding integers; no
float enters the integer path except in `matmul`, where float64 BLAS is used as an exact
integer engine (proved in `matmul`'s docstring and tested), as is int8 BLAS; which engine
multiplies by a constant weight is chosen per machine (`ENGINES`). The RTL mirrors these functions
one to one (`rtl_gen/primitives/arith.py`). The rules are stated in docs/arithmetic.md.
"""
from __future__ import annotations

import threading
import time

import numpy as np

from base.errors import notice

WORD = 16
INT16_MIN = -(1 << 15)
INT16_MAX = (1 << 15) - 1
ACC_BITS = 48
BIAS_LIMIT = 1 << 46  # |bias| < 2^46 so that bias + 4096 * 2^30 < 2^47 fits a 48-bit accumulator
MAX_K = 4096          # longest dot product supported (see matmul)


def as_int(x) -> np.ndarray:
    return np.asarray(x, dtype=np.int64)


def sat(x, bits: int = WORD) -> np.ndarray:
    """Saturate to a signed `bits`-bit range."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return np.clip(as_int(x), lo, hi)


def rshift_round(x, s) -> np.ndarray:
    """Shift right by s with round-half-up: floor((x + 2^(s-1)) / 2^s); s <= 0 shifts left
    exactly. Ties go toward +infinity (-2.5 -> -2, 2.5 -> 3). `s` may be an array."""
    x = as_int(x)
    s = as_int(s)
    if s.ndim == 0:
        s = int(s)
        if s <= 0:
            return x << -s
        return (x + (1 << (s - 1))) >> s
    pos = np.maximum(s, 0)
    half = np.where(pos > 0, np.left_shift(1, np.maximum(pos - 1, 0)), 0)
    return np.where(s > 0, (x + half) >> pos, x << np.maximum(-s, 0))


def requant(acc, shift) -> np.ndarray:
    """Accumulator -> int16: round-half-up shift right by `shift`, then saturate."""
    return sat(rshift_round(acc, shift))


def round_bias(shift: int) -> int:
    """The constant that round-half-up adds before a right shift by `shift`."""
    return 1 << (shift - 1) if shift > 0 else 0


def shift_sat_(acc: np.ndarray, shift: int) -> np.ndarray:
    """In place on a fresh int64 array that already holds `round_bias(shift)`: shift, saturate.
    `shift_sat_(x + round_bias(s), s) == requant(x, s)`; used on hot paths to save passes."""
    if shift > 0:
        acc >>= shift
    elif shift < 0:
        acc <<= -shift
    return np.clip(acc, INT16_MIN, INT16_MAX, out=acc)


def requant_mul(acc, mult: int, shift: int) -> np.ndarray:
    """Requantise acc * mult (mult an unsigned 16-bit constant) by `shift`."""
    return requant(as_int(acc) * int(mult), shift)


def add_sat(a, fa: int, b, fb: int, fo: int) -> np.ndarray:
    """Saturating add of a (frac fa) and b (frac fb) into int16 with frac fo. Both operands are
    aligned exactly to frac max(fa, fb) (at most 16 + 32 bits), summed, then requantised."""
    f = max(fa, fb)
    return add_shifted(a, f - fa, b, f - fb, f - fo)


def add_shifted(a, sa: int, b, sb: int, so: int) -> np.ndarray:
    """add_sat in the form the hardware takes it: requant((a << sa) + (b << sb), so), with
    sa, sb >= 0 the exact alignments and so the output shift (`add_sat` with f = max(fa, fb):
    sa = f - fa, sb = f - fb, so = f - fo)."""
    return requant((as_int(a) << sa) + (as_int(b) << sb), so)


def matmul(x, w_t) -> np.ndarray:
    """Exact integer x @ w_t for int16-range operands and K <= 4096 (int64 result).

    Width: each product is at most 2^30 in magnitude, so any sum of at most 4096 of them is
    below 2^42; with a bias below 2^46 the 48-bit accumulator never overflows (< 2^47).

    Engines (all exact, tested equal to integer arithmetic): a 2-D `PackedWeight` (a constant
    weight) runs on the engine chosen for the machine (`ENGINES`, below); anything else runs
    float64 BLAS (through torch, so that one thread setting governs every engine), which is
    exact because every partial sum is an integer below 2^42 < 2^53, whatever order the BLAS
    adds in."""
    if isinstance(w_t, PackedWeight):
        return w_t.matmul(x)
    import torch
    x = np.asarray(x)
    w_t = np.asarray(w_t)
    if x.shape[-1] > MAX_K:
        raise ValueError(f"matmul depth {x.shape[-1]} exceeds {MAX_K}")
    xf = torch.from_numpy(x.astype(np.float64, copy=False))
    wf = torch.from_numpy(w_t.astype(np.float64, copy=False))
    return torch.matmul(xf, wf).numpy().astype(np.int64)   # torch's BLAS follows torch's threads


def _split8(v: np.ndarray):
    """v = 256 * hi + lo + 128 with hi, lo int8 (v in the int16 range)."""
    v = v.astype(np.int16, copy=False)
    return (v >> 8).astype(np.int8), ((v & 255) - 128).astype(np.int8)


# ------------------------------------------------------------------ engines for constant weights
# Which exact engine multiplies by a constant weight is a property of the machine: int8 GEMMs
# (torch._int_mm) are fast only with int8 dot-product instructions (AVX512-VNNI, AVX-VNNI, ARM
# i8mm); without them they run ~20x slower than float BLAS, and float64 BLAS wins. By default
# ("auto") the first product of each shape class (rows rounded to a power of two, K, N) times
# every engine on its real operands and keeps the fastest for the rest of the process.
# `set_engine` (the CLI passes SPVIT_MATMUL, base/settings.py) or `use_engine` forces one; the
# golden model itself reads no environment.
#
# No engine is trusted unchecked: the first product of each shape class on an engine is compared
# with the exact integer product (numpy int64, on up to CHECK_ROWS rows). An engine that differs
# (oneDNN's int8 kernel without VNNI saturates its int16 intermediates: ONEDNN_MAX_CPU_ISA=AVX2
# reproduces it; whether it saturates depends on the operands) is reported once and from then on
# replaced by an engine that is exact, in the last resort the int64 reference itself ("int64":
# exact, slow).
ENGINES = ("int8", "float64")
CHECK_ROWS = 64
_default = ["auto"]                # the engine set_engine chose (one-element list: set in place)
_forced: list = []                 # stack of engines forced by use_engine (innermost last)
_choice: dict = {}                 # (rows bucket, K, N) -> engine, in "auto" mode
_timings: dict = {}                # (rows bucket, K, N) -> {engine: seconds} of the choice
_exact: dict = {}                  # (engine, rows bucket, K, N) -> equal to the integer product there
_warned: set = set()               # engines reported as wrong
_instead: dict = {}                # (forced engine, rows bucket, K, N) -> the engine used: it, or an exact one
_lock = threading.Lock()


def _valid(name: str) -> str:
    if name not in ENGINES + ("auto",):
        raise ValueError(f"matmul engine must be one of {ENGINES + ('auto',)} (got {name!r})")
    return name


def set_engine(name: str) -> None:
    """The engine of every later product outside `use_engine` blocks ("auto": time and choose)."""
    _default[0] = _valid(name)


class use_engine:
    """Force one engine (or "auto") inside a `with` block, e.g. in tests and benchmarks."""

    def __init__(self, name: str):
        self.name = _valid(name)

    def __enter__(self):
        _forced.append(self.name)
        return self

    def __exit__(self, *exc):
        _forced.pop()
        return False


def forced_engine() -> str | None:
    """The engine forced by use_engine or set_engine, None in "auto" mode."""
    name = _forced[-1] if _forced else _default[0]
    return None if name == "auto" else name


def engine_report() -> str:
    """Which engine ran: the forced one, or the choices made so far in "auto" mode; and where
    an engine was replaced because it was wrong."""
    f = forced_engine()
    wrong = sorted({e for (e, *_), ok in _exact.items() if not ok})
    note = f"; wrong on this machine, replaced where checked: {', '.join(wrong)}" if wrong else ""
    if f:
        return f"{f} (forced{' by set_engine, SPVIT_MATMUL in the CLI' if not _forced else ''}{note})"
    if not _choice:
        return "auto (no constant-weight product yet)"
    used = {}
    for key, e in sorted(_choice.items()):
        used.setdefault(e, []).append(key)
    return "auto: " + ", ".join(f"{e} on {len(k)} shape(s)" for e, k in sorted(used.items())) + \
        " (first-use timing; " + "; ".join(f"K={k} N={n} rows<{1 << r}: " + " ".join(
            f"{e} {t * 1e3:.2f} ms" for e, t in _timings[(r, k, n)].items()) for r, k, n in sorted(_choice)[:3]) + \
        (" ..." if len(_choice) > 3 else "") + note + ")"


class PackedWeight:
    """A constant int16 matrix w_t [K, N] with its operands for each engine, built on first use.

    int8: x = 256 a + b + 128 and w = 256 c + d + 128 (a, b, c, d int8) give
    x @ w = 2^16 ac + 2^8 (ad + bc) + bd + 128 (rowsum x + colsum w) - 2^14 K.
    Three int8 GEMMs with int32 results: ac and bd sum K products below 2^14 (< 2^26), and
    [a b] @ [d; c] sums 2K of them (< 2^27), so none can overflow.
    float64: one GEMM (and the added vector in the same pass, torch.addmm); every partial sum is
    an integer below 2^42 + 2^47 < 2^53, exact in any order."""

    def __init__(self, w_t):
        w_t = as_int(w_t)
        if w_t.ndim != 2 or w_t.shape[0] > MAX_K:
            raise ValueError(f"PackedWeight needs a [K <= {MAX_K}, N] matrix (got {w_t.shape})")
        if w_t.size and (w_t.min() < INT16_MIN or w_t.max() > INT16_MAX):
            raise ValueError("PackedWeight needs int16-range weights")
        self.k, self.n = w_t.shape
        self.w16 = np.ascontiguousarray(w_t, dtype=np.int16)
        self._ops: dict = {}

    def operands(self, engine: str):
        ops = self._ops.get(engine)
        if ops is None:
            import torch
            if engine == "int8":
                c, d = (torch.from_numpy(np.ascontiguousarray(t)) for t in _split8(self.w16))
                colsum = self.w16.sum(0, dtype=np.int64) * 128 - (self.k << 14)
                ops = (c, d, torch.cat([d, c], 0), colsum)
            else:
                ops = torch.from_numpy(self.w16.astype(np.float64))
            self._ops[engine] = ops
        return ops

    def matmul(self, x, add=None) -> np.ndarray:
        """x @ w_t (+ `add`, an int64 vector broadcast over rows, folded into the same pass)."""
        x = as_int(x)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.k)
        if x2.shape[0] == 0:
            return np.zeros((*lead, self.n), dtype=np.int64)
        forced = forced_engine()
        engine = self._checked(forced, x2) if forced else self._choose(x2)
        return _ENGINE_FNS[engine](self, x2, add).reshape(*lead, self.n)

    def _key(self, x2) -> tuple:
        return x2.shape[0].bit_length(), self.k, self.n

    def _reference(self, x2):
        """(rows, their exact integer product): up to CHECK_ROWS evenly spaced rows of x2 (rows
        of a product are independent, so these outputs are checked whole)."""
        rows = np.unique(np.linspace(0, len(x2) - 1, min(len(x2), CHECK_ROWS)).round().astype(np.int64))
        return rows, x2[rows] @ self.w16.astype(np.int64)      # |sum| < 2^42: exact in int64

    def _verify(self, engine: str, x2, out, rows, ref) -> bool:
        """Is `out` (engine's product on x2) exact on the checked rows? Report a wrong engine once."""
        wrong = int(np.count_nonzero(out[rows] != ref))
        ok = wrong == 0 and engine not in _warned           # wrong once: never trusted again
        _exact[(engine, *self._key(x2))] = ok
        if not ok and engine not in _warned:
            _warned.add(engine)
            why = "; oneDNN's int8 kernel without VNNI instructions saturates" if engine == "int8" else ""
            notice(f"the golden model's matmul engine {engine} gives wrong products on this machine ({wrong} of "
                   f"{ref.size} checked elements of a {x2.shape[0]}x{self.k}x{self.n} product differ from the exact "
                   f"integer product{why}); using an exact engine instead")
        return ok

    def _fallback(self, x2, rows, ref, skip: str) -> str:
        """An engine exact on this shape class other than `skip`; in the last resort int64."""
        for e in ENGINES:
            if e == skip or e in _warned:
                continue
            if (e, *self._key(x2)) not in _exact:
                self._verify(e, x2, _ENGINE_FNS[e](self, x2, None), rows, ref)
            if _exact[(e, *self._key(x2))]:
                return e
        return "int64"

    def _checked(self, engine: str, x2) -> str:
        """`engine` (forced) if it is exact on x2's shape class, else an engine that is."""
        key = (engine, *self._key(x2))
        use = _instead.get(key)
        if use is None:
            with _lock:
                if key not in _instead:
                    rows, ref = self._reference(x2)
                    ok = self._verify(engine, x2, _ENGINE_FNS[engine](self, x2, None), rows, ref)
                    _instead[key] = engine if ok else self._fallback(x2, rows, ref, engine)
                use = _instead[key]
        return use

    def _choose(self, x2) -> str:
        key = self._key(x2)
        engine = _choice.get(key)
        if engine is not None:
            return engine
        with _lock:
            if key not in _choice:
                rows, ref = self._reference(x2)
                good = [e for e in ENGINES if e not in _warned
                        and self._verify(e, x2, _ENGINE_FNS[e](self, x2, None), rows, ref)]
                times = dict.fromkeys(good, float("inf"))
                for _ in range(3 if len(good) > 1 else 0):          # interleaved: load changes hit all
                    for e in good:
                        t = time.perf_counter()
                        _ENGINE_FNS[e](self, x2, None)
                        times[e] = min(times[e], time.perf_counter() - t)
                _timings[key] = times
                _choice[key] = min(times, key=times.get) if good else "int64"
            return _choice[key]


def _mm_int8(pw: PackedWeight, x2, add):
    import torch
    c, d, dc, colsum = pw.operands("int8")
    a, b = _split8(x2)
    ab = torch.from_numpy(np.concatenate([a, b], 1))
    out = torch._int_mm(torch.from_numpy(a), c).numpy().astype(np.int64)
    out <<= 8
    out += torch._int_mm(ab, dc).numpy()
    out <<= 8
    out += torch._int_mm(torch.from_numpy(b), d).numpy()
    out += x2.sum(1, keepdims=True) * 128
    out += colsum if add is None else colsum + add
    return out


def _mm_float64(pw: PackedWeight, x2, add):
    import torch
    w = pw.operands("float64")
    xf = torch.from_numpy(x2.astype(np.float64))
    if add is None:
        out = torch.matmul(xf, w)
    else:
        out = torch.addmm(torch.from_numpy(np.asarray(add, dtype=np.float64)), xf, w)
    return out.numpy().astype(np.int64)


def _mm_int64(pw: PackedWeight, x2, add):
    """The exact reference (numpy's integer GEMM, no BLAS): the engine of last resort."""
    out = x2 @ pw.w16.astype(np.int64)
    return out if add is None else out + np.asarray(add, dtype=np.int64)


_ENGINE_FNS = {"int8": _mm_int8, "float64": _mm_float64, "int64": _mm_int64}


def linear(x, w_t, b, shift: int) -> np.ndarray:
    """int16 out = requant(x @ w_t + b, shift); b is in the accumulator format."""
    return requant(matmul(x, w_t) + as_int(b), shift)


def recip(d, k: int) -> np.ndarray:
    """floor(2^k / d) for integer d >= 1: the reciprocal unit (a restoring divider in RTL)."""
    d = as_int(d)
    if np.any(d < 1):
        raise ValueError("recip needs d >= 1")
    return (np.int64(1) << k) // d if k < 63 else np.array([(1 << k) // int(v) for v in d.ravel()]).reshape(d.shape)


def isqrt(n) -> np.ndarray:
    """Exact floor(sqrt(n)) for 0 <= n < 2^62 (vectorised). Equal by definition to the
    digit-by-digit algorithm the RTL runs (`isqrt_bitwise`)."""
    n = as_int(n)
    r = np.floor(np.sqrt(n.astype(np.float64))).astype(np.int64)
    for _ in range(2):  # float64 rounding puts r within 1 of the answer
        r = np.where(r * r > n, r - 1, r)
        r = np.where((r + 1) * (r + 1) <= n, r + 1, r)
    return r


def isqrt_bitwise(n: int, bits: int = 62) -> int:
    """Restoring digit-by-digit square root, one result bit per step (the RTL algorithm)."""
    rem, root = 0, 0
    for i in range(bits // 2 - 1, -1, -1):
        rem = (rem << 2) | ((n >> (2 * i)) & 3)
        trial = (root << 2) | 1
        root <<= 1
        if rem >= trial:
            rem -= trial
            root |= 1
    return root


def bit_length(n) -> np.ndarray:
    """Number of significant bits of n >= 0 (a leading-zero counter in RTL)."""
    n = as_int(n)
    out = np.zeros(n.shape, dtype=np.int64)
    v = n.copy()
    for s in (32, 16, 8, 4, 2, 1):
        m = v >= (np.int64(1) << s)
        out += np.where(m, s, 0)
        v = np.where(m, v >> s, v)
    return out + (v > 0)


def quantize(x_float, frac: int, bits: int = WORD) -> np.ndarray:
    """Float -> integer at the boundary only (inputs, weights): nearest (ties to even), saturate."""
    return sat(np.round(np.asarray(x_float, dtype=np.float64) * 2.0 ** frac), bits)


def dequantize(q, frac: int) -> np.ndarray:
    return np.asarray(q, dtype=np.float64) * 2.0 ** -frac
