"""Random pauses for every bench: a channel or stream pauses in each cycle with probability p,
independently of every other cycle, drawn from its own seeded generator (`child`).

    pause_runs(rng, p)       the process as alternating runs (paused, cycles): one draw per cycle,
                             but a consumer wakes once per run
    pause_cycles(rng, p)     the same process cycle by cycle (True: pause), for benches that
                             drive valid / ready themselves every cycle
    pause_channels(chans, rng, p, period_ns)   cocotbext-axi channels: `pause` set once per run
                             (cheaper than a per-cycle pause generator coroutine per channel)
"""
from __future__ import annotations

import itertools
import random
from typing import Iterator

import cocotb
from cocotb.triggers import Timer


def child(rng: random.Random) -> random.Random:
    """A generator of its own for one channel, seeded from the bench's generator."""
    return random.Random(rng.random())


def pause_runs(rng: random.Random, p: float) -> Iterator[tuple[bool, int | None]]:
    """(paused, cycles) runs, alternating; cycles None: for ever (p <= 0 or p >= 1). A run of
    pauses ends in each cycle with probability 1 - p, a run without pauses with probability p,
    so every cycle pauses with probability p independently (run lengths are geometric)."""
    if p <= 0 or p >= 1:
        yield p >= 1, None
        return
    paused = rng.random() < p
    while True:
        end = 1 - p if paused else p
        n = 1
        while rng.random() >= end:
            n += 1
        yield paused, n
        paused = not paused


def pause_cycles(rng: random.Random, p: float) -> Iterator[bool]:
    """The process cycle by cycle: True in a cycle that pauses."""
    for paused, n in pause_runs(rng, p):
        yield from itertools.repeat(paused) if n is None else itertools.repeat(paused, n)


async def _drive(channel, rng: random.Random, p: float, period_ns: float):
    for paused, n in pause_runs(rng, p):
        channel.pause = paused
        if n is None:
            return
        await Timer(period_ns * n, unit="ns")


def pause_channels(channels, rng: random.Random, p: float, period_ns: float) -> None:
    """Start the pause process of every cocotbext-axi channel (each seeded by `child(rng)`; a
    None channel is skipped, p = 0 leaves them unpaused)."""
    for ch in channels:
        if ch is None:
            continue
        own = child(rng)
        if p > 0:
            cocotb.start_soon(_drive(ch, own, p, period_ns))


AXI_CHANNELS = ("aw_channel", "w_channel", "b_channel", "ar_channel", "r_channel")


def axi_channels(*interfaces) -> list:
    """The AXI channels (aw, w, b, ar, r) that the given cocotbext-axi objects have."""
    return [getattr(i, name) for i in interfaces for name in AXI_CHANNELS if getattr(i, name, None) is not None]
