"""Rounding and saturation, mirrored once from golden/arith.py. Every rtl_gen component builds
its requantisation from these functions (tests/sim/test_arith_var.py and test_requant.py check
them exhaustively over int16 against golden).

    sat(v, bits)            clamp a signed value to `bits` bits           = golden.arith.sat
    rshift_round(v, s)      (v + 2^(s-1)) >> s, s <= 0 shifts left        = golden.arith.rshift_round
    requant_uvar(m, v, s, bits) sat(rshift_round(v, s), bits), runtime unsigned s >= 0 (pruned shifter)
    requant_var(m, v, s)    requant with a runtime signed shift (s < 0 shifts left)
    requant_sv(m, v, s, bits) requant_var on one pruned right shifter (a fifth of its LUTs)
    requant(v, s, bits)     sat(rshift_round(v, s))                       = golden.arith.requant
    split_product(m, a, b)  a x b pipelined: one DSP48E2 per partial product, one adder a stage
    partial_products(m, a, b) its registered partial products (the caller adds them in its next stage)
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.isa import ALIGN_MAX

from .pipe import stall_pipeline

WORD = 16
ACC_BITS = 48


def sat(v, bits: int = WORD) -> Value:
    """Signed `v` clamped to [-2^(bits-1), 2^(bits-1) - 1], as a signed(bits) value."""
    v = Value.cast(v)
    if not v.shape().signed:
        hi = (1 << (bits - 1)) - 1
        return Mux(v > hi, hi, v)[:bits].as_signed()
    if v.shape().width <= bits:
        return v
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return Mux(v > hi, Const(hi, signed(bits)), Mux(v < lo, Const(lo, signed(bits)), v))[:bits].as_signed()


def rshift_round(v, s: int) -> Value:
    """Round-half-up shift right by the constant s (ties toward +inf); s <= 0 shifts left."""
    v = Value.cast(v)
    if s <= 0:
        return v << -s
    return (v + (1 << (s - 1))) >> s


def requant_uvar(m, v, s, bits: int = WORD, name: str = "ru", stage=None, cuts: int = 1) -> Value:
    """sat(rshift_round(v, s), bits) for a runtime unsigned shift s (= golden requant with a
    `bits`-bit result). Computed as F = floor(2 v / 2^s), clamped to bits + 1 bits, then
    sat((F + 1) >> 1, bits): floor((floor(2 v / 2^s) + 1) / 2) = floor((v + 2^(s-1)) / 2^s) for
    s >= 1 and (2 v + 1) >> 1 = v for s = 0; clamping F first changes no saturated result
    (F <= -2^bits gives -2^(bits-1) either way, F >= 2^bits - 1 gives 2^(bits-1) - 1).

    The shifter is a log shifter, most significant shift bit first, that drops the top bits no
    later stage can bring into the bits + 1 output window (after the 2^j stage it keeps
    bits + 2^j bits), noting whether the dropped bits were a plain sign extension: if not, F is
    out of range and saturates. About half the LUTs of a full-width shifter and a wide compare.
    The rounding add saturates only at F = 2^bits - 1, so it needs no compare after the adder.

    `stage`: None (all combinational) or a function that registers a list of values and returns
    the registered copies; it is called after the upper half of the shifter and before the
    rounding (three register stages, PIPE_REQUANT); with `cuts` > 1, at `cuts` even places in
    the shifter (PIPE_REQUANT + cuts - 1 registers). Returns a Signal of signed(bits) (the last
    stage's result, combinational)."""
    v = Value.cast(v)
    s = Value.cast(s).as_unsigned()
    cut = stage or (lambda values: values)
    cur = Signal(signed(len(v) + 2), name=f"{name}_x2")
    m.d.comb += cur.eq(v << 1)                                   # 2 v
    fits = Signal(name=f"{name}_fits0")
    m.d.comb += fits.eq(1)
    sign = v[-1] if v.shape().signed else Const(0, 1)
    steps = list(reversed(range(len(s))))
    places = {(len(steps) * (i + 1) + cuts) // (cuts + 1) for i in range(cuts)}    # one: the middle
    for n, j in enumerate(steps):
        if n in places:                                          # the cuts in the shifter
            cur, fits, s, sign = cut([cur, fits, s, sign])
        keep = min(len(cur), bits + (1 << j))
        nxt = Signal(signed(keep), name=f"{name}_s{j}")
        sh = Signal(signed(len(cur)), name=f"{name}_m{j}")
        m.d.comb += sh.eq(Mux(s[j], cur >> (1 << j), cur))
        if keep < len(cur):
            top = sh[keep - 1:]
            ok = Signal(name=f"{name}_ok{j}")
            m.d.comb += ok.eq(fits & (top.all() | ~top.any()))
            fits = ok
        m.d.comb += nxt.eq(sh[:keep])
        cur = nxt
    lo, hi = Const(-(1 << bits), signed(bits + 1)), Const((1 << bits) - 1, signed(bits + 1))
    f = Signal(signed(bits + 1), name=f"{name}_f")
    m.d.comb += f.eq(Mux(fits, cur, Mux(sign, lo, hi)))
    (f,) = cut([f])
    out = Signal(signed(bits), name=name)
    top = Const((1 << (bits - 1)) - 1, signed(bits))
    m.d.comb += out.eq(Mux(f == hi, top, ((f + 1) >> 1)[:bits].as_signed()))
    return out


PIPE_REQUANT = 2         # register stages `stage` inserts into requant_uvar / requant_sv
DSP_A, DSP_B = 24, 17    # operand chunks of one DSP48E2 product (27 x 18 two's complement)


def _chunks(bits: int, size: int) -> list:
    return list(range(0, bits, size))


def product_latency(a_bits: int, b_bits: int) -> int:
    """Cycles from split_product's operands to its product."""
    return 1 + tree_latency(len(_chunks(a_bits, DSP_A)) * len(_chunks(b_bits, DSP_B)))


def _register(m, value, name: str, en=None) -> Signal:
    r = Signal(Value.cast(value).shape(), name=name)
    if en is None:
        m.d.sync += r.eq(value)
    else:
        with m.If(en):
            m.d.sync += r.eq(value)
    return r


def _registered_tree(m, terms: list, name: str, en=None) -> tuple:
    """Sum of (value, weight 2^shift) terms by registered pairwise adders, one adder a stage
    (ceil(log2(len(terms))) stages; registers under `en` when given); the sum as (value, shift)."""
    level = 0
    while len(terms) > 1:
        nxt = []
        for k in range(0, len(terms), 2):
            pair = sorted(terms[k:k + 2], key=lambda t: t[1])
            low = pair[0][1]
            total = sum(v << (sh - low) for v, sh in pair)
            nxt.append((_register(m, total, f"{name}_s{level}_{k // 2}", en), low))
        terms, level = nxt, level + 1
    return terms[0]


def tree_latency(n: int) -> int:
    """Cycles of pipe_sum over n values."""
    return (n - 1).bit_length()


def pipe_sum(m, values, name: str = "ps", en=None) -> Value:
    """Sum of `values` by registered pairwise adders, one adder a stage: the sum of the values of
    cycle t is the value returned at t + tree_latency(len(values)) (`en`: registers move only
    while it is high, a stall-together pipeline)."""
    return _registered_tree(m, [(Value.cast(v), 0) for v in values], name, en)[0]


def partial_products(m, a, b, name: str = "pp", en=None) -> list:
    """The partial products of a x b (either signed or unsigned) by DSP_A x DSP_B-bit chunks
    (one DSP48E2 each; the top chunk of a signed operand signed), each registered: a list of
    (register, its weight 2^shift) whose weighted sum is a x b of the cycle before."""
    a, b = Value.cast(a), Value.cast(b)
    terms = []
    for i in _chunks(len(a), DSP_A):
        ai = a[i:i + DSP_A]
        ai = ai.as_signed() if a.shape().signed and i + DSP_A >= len(a) else ai
        for j in _chunks(len(b), DSP_B):
            bj = b[j:j + DSP_B]
            bj = bj.as_signed() if b.shape().signed and j + DSP_B >= len(b) else bj
            terms.append((_register(m, ai * bj, f"{name}_p{len(terms)}", en), i + j))
    return terms


def split_product(m, a, b, name: str = "sp", en=None) -> Value:
    """a x b (either signed or unsigned) as a pipeline: the partial products registered, then
    summed pairwise by registered adders, one adder a stage. The product of the operands
    of cycle t is the value returned at t + product_latency(len(a), len(b)); the pipeline takes
    new operands every cycle (`en`: every cycle it is high, a stall-together pipeline)."""
    value, shift = _registered_tree(m, partial_products(m, a, b, name, en), name, en)
    return value << shift


def pipe_stage(m, en=None, name: str = "p", attrs=None):
    """A `stage` function for the pipelined primitives: registers each value (under `en` when
    given: a stall-together pipeline) and returns the registered copies. `attrs`: of every
    register (`{"max_fanout": N}` where lanes share a value: Yosys merges their equal registers
    into one that drives every lane)."""
    count = [0]

    def stage(values):
        out = []
        for x in values:
            x = Value.cast(x)
            r = Signal(x.shape(), name=f"{name}{count[0]}", attrs=attrs or {})
            count[0] += 1
            if en is None:
                m.d.sync += r.eq(x)
            else:
                with m.If(en):
                    m.d.sync += r.eq(x)
            out.append(r)
        return out
    return stage


def requant_sv_shift(m, s, width: int, bits: int = WORD, name: str = "rs", stage=None) -> Signal:
    """The right shift requant_sv applies to v << bits for a signed shift s and a `width`-bit v:
    s + bits clamped to [0, width + 2 bits + 2] (a pipeline may compute it a stage early;
    `stage`: a pipe_stage between the add and the clamp)."""
    s = Value.cast(s).as_signed()
    lim = width + 2 * bits + 2                          # beyond: every v rounds to 0
    t = Signal(signed(len(s) + 2), name=f"{name}_t")
    sh = Signal(range(lim + 1), name=f"{name}_sh")
    m.d.comb += t.eq(s + bits)
    if stage is not None:
        (t,) = stage([t])
    m.d.comb += sh.eq(Mux(t < 0, 0, Mux(t > lim, lim, t)))
    return sh


def requant_sv(m, v, s, bits: int = WORD, name: str = "rs", stage=None, shift=None, cuts: int = 1) -> Value:
    """requant with a runtime *signed* shift s (s < 0 shifts left), = requant_var, on one right
    shifter: v << bits shifted right by s + bits (clamped at 0: any left shift of `bits` or
    more saturates every v != 0 and keeps 0). `stage`: as requant_uvar; `shift`: the shift
    already computed by requant_sv_shift (then s is unused)."""
    v = Value.cast(v)
    sh = requant_sv_shift(m, s, len(v), bits, name) if shift is None else shift
    return requant_uvar(m, v << bits, sh, bits, name, stage, cuts)


def requant(v, s: int, bits: int = WORD) -> Value:
    return sat(rshift_round(v, s), bits)


class _LaneMap(wiring.Component):
    """`lanes` inputs in, `lanes` int results out: `self.lane(x)` on every lane, one register
    stage (primitives/pipe.stall_pipeline). Subclasses name the input stream (`i_name`) and
    define `lane`."""

    def __init__(self, i_name: str, in_shape, lanes: int, out_bits: int):
        self.i_name, self.lanes = i_name, lanes
        super().__init__({
            i_name: In(stream.Signature(data.ArrayLayout(in_shape, lanes))),
            "o_y": Out(stream.Signature(data.ArrayLayout(signed(out_bits), lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        i = getattr(self, self.i_name)
        en, _ = stall_pipeline(m, i, self.o_y, 1)
        with m.If(en):
            m.d.sync += [self.o_y.payload[j].eq(self.lane(i.payload[j])) for j in range(self.lanes)]
        return m


class Requantiser(_LaneMap):
    """`lanes` accumulators in, `lanes` int16 out: requant(acc, shift), one register stage.

    i_acc: stream of ArrayLayout(signed(in_bits), lanes); o_y: ArrayLayout(signed(16), lanes)."""

    def __init__(self, in_bits: int, shift: int, lanes: int = 1, out_bits: int = WORD):
        self.in_bits, self.shift, self.out_bits = in_bits, shift, out_bits
        super().__init__("i_acc", signed(in_bits), lanes, out_bits)

    def lane(self, acc) -> Value:
        return requant(acc, self.shift, self.out_bits)


def add_sat(a, fa: int, b, fb: int, fo: int, bits: int = WORD) -> Value:
    """Saturating add of a (frac fa) and b (frac fb) into `bits` bits with frac fo: both
    aligned exactly to frac max(fa, fb), summed, then requantised (= golden.arith.add_sat)."""
    f = max(fa, fb)
    return requant((Value.cast(a) << (f - fa)) + (Value.cast(b) << (f - fb)), f - fo, bits)


class AddSat(_LaneMap):
    """`lanes` pairs in ({a, b} int16 each), add_sat(a, fa, b, fb, fo) out; one register stage."""

    def __init__(self, fa: int, fb: int, fo: int, lanes: int = 1):
        self.fa, self.fb, self.fo = fa, fb, fo
        super().__init__("i_ab", data.StructLayout({"a": signed(WORD), "b": signed(WORD)}), lanes, WORD)

    def lane(self, pair) -> Value:
        return add_sat(pair.a, self.fa, pair.b, self.fb, self.fo)


def requant_var(m, v, s, bits: int = WORD, name: str = "rq") -> Value:
    """sat(rshift_round(v, s)) with a runtime *signed* shift s (golden.arith.requant with an
    array shift). Right shifts are clamped at width(v) + 1 and left shifts at `bits`: beyond
    those every result is 0 (right) or saturated / 0 (left) anyway, so the value equals golden
    for every s. Returns a comb Signal of signed(bits)."""
    v = Value.cast(v)
    s = Value.cast(s).as_signed()
    w = len(v)
    sr = Signal(range(w + 2), name=f"{name}_sr")
    sl = Signal(range(bits + 1), name=f"{name}_sl")
    m.d.comb += [sr.eq(Mux(s <= 0, 0, Mux(s > w + 1, w + 1, s))),
                 sl.eq(Mux(s >= 0, 0, Mux(-s > bits, bits, -s)))]
    half = Mux(sr == 0, 0, (Const(1, w + 2) << sr) >> 1)
    right = Signal(signed(w + 2), name=f"{name}_r")
    m.d.comb += right.eq((v.as_signed() + half) >> sr)
    out = Signal(signed(bits), name=name)
    m.d.comb += out.eq(sat(right << sl, bits))
    return out


def add_shifted(m, a, sa, b, sb, so, bits: int = WORD, name: str = "as") -> Value:
    """golden.arith.add_shifted: requant((a << sa) + (b << sb), so) with runtime shifts
    (sa, sb <= golden.isa.ALIGN_MAX unsigned alignments of int16 operands, so signed)."""
    s = Signal(signed(WORD + ALIGN_MAX + 2), name=f"{name}_sum")
    m.d.comb += s.eq((Value.cast(a).as_signed() << sa) + (Value.cast(b).as_signed() << sb))
    return requant_sv(m, s, so, bits, name)


def bit_length(m, v, name: str = "bitlen") -> Value:
    """Bit length of an unsigned value (0 for 0; golden.arith.bit_length), returned as a comb
    Signal: the index of the highest set bit as a balanced tree of halves (log depth; a priority
    chain of If would be len(v) muxes deep), plus one."""
    v = Value.cast(v)

    def highest(bits):
        """(any bit set, index of the highest set bit) of `bits`."""
        if len(bits) == 1:
            return bits[0], Const(0, 1)
        half = 1 << (len(bits) - 1).bit_length() - 1          # the low part: a power of two
        lo_any, lo_at = highest(bits[:half])
        hi_any, hi_at = highest(bits[half:])
        return lo_any | hi_any, Mux(hi_any, half | hi_at, lo_at)

    out = Signal(range(len(v) + 1), name=name)
    found, at = highest(v)
    m.d.comb += out.eq(Mux(found, at + 1, 0))
    return out


def tree_sum(values, name: str, m) -> Value:
    """Sum of `values` as a balanced adder tree (log depth; Python's sum() builds a chain), as a
    comb Signal."""
    values = [Value.cast(v) for v in values]
    while len(values) > 1:
        values = [values[i] + values[i + 1] if i + 1 < len(values) else values[i] for i in range(0, len(values), 2)]
    out = Signal(values[0].shape(), name=name)
    m.d.comb += out.eq(values[0])
    return out


def thermometer(value, n: int, up: bool = True) -> Value:
    """n bits, bit r = r >= value (`up`) or r <= value: a lane mask from a lane number (the
    lanes that are always set take no compare: Verilator flags a constant comparison)."""
    value = Value.cast(value)
    edge = n - 1 if up else 0
    return Cat((r >= value if up else r <= value) if r != edge else Const(1, 1) for r in range(n))
