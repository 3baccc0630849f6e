"""Exact comparison: == on every element, reporting mismatch count and the first mismatches."""
from __future__ import annotations

import numpy as np


def mismatches(got, want):
    got, want = np.asarray(got, dtype=np.int64), np.asarray(want, dtype=np.int64)
    if got.shape != want.shape:
        raise AssertionError(f"shape mismatch: RTL {got.shape} vs golden {want.shape}")
    bad = np.argwhere(got != want)
    return len(bad), [(tuple(int(i) for i in ix), int(got[tuple(ix)]), int(want[tuple(ix)])) for ix in bad[:8]]


def assert_exact(got, want, what: str = "output") -> None:
    n, first = mismatches(got, want)
    if n:
        total = np.asarray(want).size
        rows = "\n".join(f"  at {ix}: RTL {g} != golden {w}" for ix, g, w in first)
        raise AssertionError(f"{what}: {n} of {total} elements differ from golden; first mismatches:\n{rows}")
