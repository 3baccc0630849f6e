"""Exact comparison, the one element-compare of the project (RTL against golden in sim/, a board
run against the golden model in the driver): == on every element, a report with
the mismatch count and the first mismatches (index, RTL value, golden value). A shape mismatch
is a mismatch of every element of the larger side.

    assert_exact(rtl, golden, "softmax unit")      # one array: raises AssertionError with the report
    c = Comparison()                               # several named arrays in one report
    c.add("image 0 logits", rtl, golden); c.fail("image 1", "hung"); c.check("demo model")
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FIRST = 8                     # mismatches a report lists


@dataclass
class Comparison:
    """`compared` elements, `bad` of them differ; `first`: the first FIRST mismatches as text.
    `got_name` / `want_name` name the two sides in the report (RTL against golden by default)."""
    compared: int = 0
    bad: int = 0
    first: list = field(default_factory=list)
    got_name: str = "RTL"
    want_name: str = "golden"

    def add(self, what: str, got, want) -> int:
        """Compare one array (any shape) by ==; returns its number of mismatching elements."""
        got, want = np.asarray(got, dtype=np.int64), np.asarray(want, dtype=np.int64)
        if got.shape != want.shape:
            return self.fail(what, f"shape {self.got_name} {got.shape} != {self.want_name} {want.shape}",
                             max(got.size, want.size))
        self.compared += want.size
        diff = np.argwhere(got != want)
        self.bad += len(diff)
        for ix in diff[:max(0, FIRST - len(self.first))]:
            ix = tuple(int(i) for i in ix)
            self.first.append(f"{what} at {ix}: {self.got_name} {int(got[ix])} != {self.want_name} {int(want[ix])}")
        return len(diff)

    def fail(self, what: str, problem: str, count: int = 1) -> int:
        """A mismatch that is no element comparison (a hang, a shape): `count` elements, all bad."""
        self.compared += count
        self.bad += count
        if len(self.first) < FIRST:
            self.first.append(f"{what}: {problem}")
        return count

    @property
    def ok(self) -> bool:
        return self.bad == 0

    def summary(self) -> str:
        return (f"{self.bad} of {self.compared} elements differ from {self.want_name}; first mismatches:\n"
                + "\n".join(f"  {f}" for f in self.first))

    def check(self, what: str = "output") -> None:
        """Raise AssertionError with the report unless every element matched."""
        if self.bad:
            raise AssertionError(f"{what}: {self.summary()}")


def assert_exact(got, want, what: str = "output", names: tuple[str, str] = ("RTL", "golden")) -> None:
    """`got` == `want` on every element, else AssertionError with the mismatch report."""
    c = Comparison(got_name=names[0], want_name=names[1])
    c.add(what, got, want)
    c.check(what)
