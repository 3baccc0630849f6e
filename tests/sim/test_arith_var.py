"""Runtime-shift requantisation (rtl_gen/primitives/arith.py requant_uvar, requant_sv, requant_var) against
golden requant / rshift_round: every int16 value at every shift from -18 to 18 (the shift a
runtime input, 48-bit operands as in the LayerNorm output and the MAC epilogue), plus 48-bit
values at both ends, ties and the saturation threshold of every shift."""
import numpy as np
from amaranth.hdl import Module, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from base import settings
from golden.arith import requant, rshift_round
from golden.compare import assert_exact
from rtl_gen.primitives.arith import requant_sv, requant_uvar, requant_var
from sim.runner import run_stream

LANES = 32
SHIFTS = range(-18, 19)              # from 16 on every left shift saturates; from 17 every int16 rounds to 0
NARROW = 9                           # a narrow requant_uvar output: saturation on both sides
FUNCS = 4                            # uvar 16 bits, uvar NARROW bits, sv, var


class ShiftBench(wiring.Component):
    """{v: lanes x int48, s: int6} -> per lane requant_uvar(v, s) (16 and NARROW bits; s >= 0),
    requant_sv(v, s), requant_var(v, s)."""

    def __init__(self):
        lay = data.StructLayout({"v": data.ArrayLayout(signed(48), LANES), "s": signed(6)})
        super().__init__({"i_v": In(stream.Signature(lay)),
                          "o_y": Out(stream.Signature(data.ArrayLayout(signed(16), LANES * FUNCS)))})

    def elaborate(self, platform):
        m = Module()
        s = self.i_v.payload.s
        su = s.as_unsigned()[:5]
        outs = []
        for lane in range(LANES):
            v = self.i_v.payload.v[lane]
            outs += [requant_uvar(m, v, su, 16, name=f"u{lane}"), requant_uvar(m, v, su, NARROW, name=f"n{lane}"),
                     requant_sv(m, v, s, 16, name=f"s{lane}"), requant_var(m, v, s, 16, name=f"v{lane}")]
        m.d.comb += self.i_v.ready.eq(self.o_y.ready | ~self.o_y.valid)
        with m.If(self.i_v.ready):
            m.d.sync += self.o_y.valid.eq(self.i_v.valid)
            m.d.sync += [self.o_y.payload[i].eq(o) for i, o in enumerate(outs)]
        return m


def _golden(xs, s):
    """[len(xs), FUNCS] for one shift; NaN-free: -1 marks columns that do not apply (uvar, s < 0)."""
    r = requant(xs, s)
    if s < 0:
        na = np.full_like(xs, -1)
        return np.stack([na, na, r, r], 1)
    n = np.clip(rshift_round(xs, s), -(1 << NARROW - 1), (1 << NARROW - 1) - 1)
    return np.stack([r, n, r, r], 1)


def _run(xs, shifts, tag):
    beats, want = [], []
    for s in shifts:
        for b in xs.reshape(-1, LANES):
            beats.append({"v": [int(v) for v in b], "s": s})
        want.append(_golden(xs, s))
    res = run_stream(ShiftBench(), "requant_var_bench", {"i_v": beats}, {"o_y": len(beats)}, stall=0.05, seed=7,
                     sim=settings.SIM_ENGINE, tag=tag)
    got = np.array(res.outputs["o_y"]).reshape(-1, FUNCS)
    want = np.concatenate(want)
    cols = np.ones_like(want, dtype=bool)
    for i, s in enumerate(shifts):                        # uvar columns only for s >= 0
        if s < 0:
            cols[i * len(xs):(i + 1) * len(xs), :2] = False
    return np.where(cols, got, -1), want


def test_requant_runtime_shift_int16_exhaustive():
    xs = np.arange(-32768, 32768, dtype=np.int64)
    got, want = _run(xs, SHIFTS, "int16")
    assert_exact(got, want, "runtime-shift requant over int16 (columns: uvar 16 bits, uvar narrow, sv, var)")
    assert (want == -(1 << NARROW - 1)).any() and (want == 32767).any() and (want == -32768).any()


def test_requant_runtime_shift_wide():
    rng = np.random.default_rng(3)
    edge = [-(1 << 47), (1 << 47) - 1, 0, -1, 1]
    for s in range(0, 19):
        for base in ((32767 << s), (-32768 << s)):
            edge += [base + d for d in (-(1 << s), -(1 << max(s - 1, 0)), -1, 0, 1, (1 << max(s - 1, 0)) - 1)]
    xs = np.array(edge + list(rng.integers(-(1 << 47), 1 << 47, 300)) + list(rng.integers(-(1 << 30), 1 << 30, 300)),
                  dtype=np.int64)
    xs = np.clip(xs, -(1 << 47), (1 << 47) - 1)
    xs = np.concatenate([xs, np.zeros(-len(xs) % LANES, dtype=np.int64)])
    # golden shifts left in int64: left shifts of more than 15 could overflow it with 48-bit values
    got, want = _run(xs, range(-15, 19), "wide")
    assert_exact(got, want, "runtime-shift requant, 48-bit inputs")


def test_split_product_signed_operands():
    """split_product (PACKAGE's lane x weight: a signed 16-bit word by a signed 29-bit weight, two
    DSP48-sized chunks) against the exact product, operands every cycle, corners included."""
    from amaranth.hdl import Signal
    from amaranth.sim import Simulator

    from rtl_gen.primitives.arith import product_latency, split_product
    m = Module()
    a, b = Signal(signed(16)), Signal(signed(29))
    out = split_product(m, a, b, name="t")
    lat = product_latency(16, 29)
    rng = np.random.default_rng(7)
    corners_a, corners_b = [-2 ** 15, -1, 0, 1, 2 ** 15 - 1], [-2 ** 28, -1, 0, 1, 2 ** 17 - 1, 2 ** 17, 2 ** 28 - 1]
    pairs = [(x, y) for x in corners_a for y in corners_b]
    pairs += list(zip(rng.integers(-2 ** 15, 2 ** 15, 300).tolist(), rng.integers(-2 ** 28, 2 ** 28, 300).tolist()))
    got = []

    async def tb(ctx):
        for t in range(len(pairs) + lat - 1):
            if t < len(pairs):
                ctx.set(a, pairs[t][0])
                ctx.set(b, pairs[t][1])
            await ctx.tick()
            if t + 1 >= lat:
                got.append(ctx.get(out))
    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    want = [x * y for x, y in pairs]
    bad = [(i, pairs[i], g, w) for i, (g, w) in enumerate(zip(got, want)) if g != w]
    assert len(got) == len(want) and not bad, f"{len(bad)} mismatches, first {bad[:5]}"
