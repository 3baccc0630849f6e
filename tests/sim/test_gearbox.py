"""primitives/gearbox.Gearbox narrowing (in_bits > out_bits), registered and in place: every
input word leaves as its out-bit slices, low bits first, in order, by ==, with random gaps on
the input and random backpressure on the output; every word consumed, nothing extra."""
import random

import pytest
from amaranth.sim import Simulator

from rtl_gen.primitives.gearbox import Gearbox


@pytest.mark.parametrize("in_place", [False, True])
def test_narrowing_in_order_under_backpressure(in_place):
    IN, OUT, N = 64, 16, 40
    rng = random.Random(3)
    words = [rng.getrandbits(IN) for _ in range(N - 2)] + [0, 2 ** IN - 1]
    want = [(w >> (OUT * k)) & (2 ** OUT - 1) for w in words for k in range(IN // OUT)]
    dut = Gearbox(IN, OUT, in_place=in_place)
    got, taken = [], [0]

    async def source(ctx):
        for w in words:
            while rng.random() < 0.3:                       # a gap before the word
                ctx.set(dut.i.valid, 0)
                await ctx.tick()
            ctx.set(dut.i.payload, w)                       # held until taken
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            taken[0] += 1
        ctx.set(dut.i.valid, 0)

    async def sink(ctx):
        for _ in range(len(want) * 4 + 200):
            ready = rng.random() < 0.6
            ctx.set(dut.o.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid and ready:
                got.append(payload)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    bad = [(i, g, w) for i, (g, w) in enumerate(zip(got, want)) if g != w]
    assert not bad and len(got) == len(want), \
        f"{len(bad)} mismatches (first {bad[:3]}), {len(got)} words out of {len(want)}"
    assert taken[0] == N
