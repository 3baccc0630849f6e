"""Exact comparison of results: every element by ==, a mismatch count and the first mismatches
(sim.accel compares the RTL with the interpreter, the board driver compares a board run with the
golden model's expected results).

    c = Comparison(); c.add("image 0 logits", got, want); c.bad, c.compared, c.first
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Comparison:
    compared: int = 0
    bad: int = 0
    first: list = field(default_factory=list)

    def add(self, what, got, want):
        got, want = np.asarray(got, dtype=np.int64), np.asarray(want, dtype=np.int64)
        if got.shape != want.shape:
            self.bad += max(got.size, want.size)
            self.first.append((what, f"shape {got.shape} vs {want.shape}"))
            return
        self.compared += want.size
        diff = np.argwhere(got != want)
        self.bad += len(diff)
        for ix in diff[:max(0, 8 - len(self.first))]:
            self.first.append((what, tuple(int(v) for v in ix), int(got[tuple(ix)]), int(want[tuple(ix)])))
