"""argparse `type=` functions that check ranges at parse time, for every subcommand.

    p.add_argument("--images", type=int_in(1, 512), default=8)
    p.add_argument("--stall", type=float_in(0, 1, hi_open=True), default=0.0)
    p.add_argument("--keep", type=keep_rates)

A value out of range ends in argparse's usage message and exit status 2 before any work:
`spvit check: error: argument --images: must be an integer in 1..512 (got 0)`.
"""
from __future__ import annotations

import argparse
import math

from base.cluster import LOCAL

SEED_MAX = 2 ** 32 - 1


def int_in(lo: int | None = None, hi: int | None = None):
    """An integer in [lo, hi] (None: unbounded)."""
    rng = f"{'' if lo is None else lo}..{'' if hi is None else hi}"

    def parse(text: str) -> int:
        try:
            v = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer in {rng} (got {text!r})") from None
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"must be an integer in {rng} (got {v})")
        return v
    parse.__name__ = "integer"
    return parse


def float_in(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False):
    """A finite number in the interval lo..hi (ends open or closed)."""
    rng = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number in {rng} (got {text!r})") from None
        ok = math.isfinite(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
        if not ok:
            raise argparse.ArgumentTypeError(f"must be a number in {rng} (got {text})")
        return v
    parse.__name__ = "number"
    return parse


positive_int = int_in(1)
nonneg_int = int_in(0)
seed = int_in(0, SEED_MAX)


def keep_rates(text: str) -> tuple[float, ...]:
    """Cumulative keep rates per selector stage, e.g. 0.7,0.5,0.3: each in [0, 1], not increasing.
    (Their count is checked against the model's selector stages once the config is known.)"""
    try:
        rates = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes comma-separated fractions such as 0.7,0.5,0.3 "
                                         f"(got {text!r})") from None
    if not all(math.isfinite(r) and 0 <= r <= 1 for r in rates):
        raise argparse.ArgumentTypeError(f"rates must lie in [0, 1] (got {text})")
    if any(b > a for a, b in zip(rates, rates[1:])):
        raise argparse.ArgumentTypeError(f"rates are cumulative and must not increase (got {text})")
    return rates


def suffix(ext: str):
    """A path that ends in `ext` (e.g. '.json')."""
    def parse(text: str) -> str:
        if not text.strip() or not text.lower().endswith(ext):
            raise argparse.ArgumentTypeError(f"must name a {ext} file (got {text!r})")
        return text
    parse.__name__ = f"{ext} path"
    return parse


def not_empty(kind: str):
    """A non-empty value (an empty path would be the current folder), e.g. kind "a path"."""
    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"must be {kind} (got an empty string)")
        return text
    parse.__name__ = kind
    return parse


path = not_empty("a path")
spec = not_empty("a preset name or a .toml file")
data_source = not_empty("an image folder or digits[:split]")


def executor_arguments(p, default_workers: str = "the CPU count") -> None:
    """--ray [ADDRESS], --workers N, --retries N, --no-progress on an argparse parser."""
    p.add_argument("--ray", nargs="?", const=LOCAL, metavar="ADDRESS",
                   help="run the tasks on Ray: alone, join RAY_ADDRESS if set, else start a local Ray; with an "
                        "ADDRESS (host:port of `ray start --head`, or ray://host:10001), join that cluster")
    p.add_argument("--workers", type=int_in(0, 1024), default=None,
                   help=f"local processes (default {default_workers}; 1: in this process); with --ray: CPUs of "
                        f"the local Ray it starts")
    p.add_argument("--retries", type=nonneg_int, default=2,
                   help="times a task whose worker died is run again (default 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
