"""Exact operation-level test vectors from the interpreter: run a compiled image and keep, for
chosen descriptors, the machine state right before and right after the operation, the stream
bytes it consumed and the activation table it found. A unit bench loads the `before` state,
runs the descriptor and must produce the `after` state (golden/interp.py is the reference)."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from golden import isa
from golden.interp import Machine


@dataclass
class OpVector:
    index: int
    desc: isa.Desc
    raw: bytes                 # the descriptor's 64 bytes
    rows: int
    n: int                     # token-count register before the op
    before: dict               # buffer id -> int64 array (copies)
    after: dict
    items: bytes               # stream bytes the op consumed
    table: tuple | None        # (base, slope) loaded before the op
    sel_before: object = None
    sel_after: object = None
    n_after: int = 0


def capture(img, img_q, want, junk_seed: int = 1) -> list[OpVector]:
    """`want(index, desc) -> bool` selects descriptors; returns their OpVectors in order."""
    ddr = img.with_input(img_q)
    d0 = img.regions["program"][0]
    raws = [bytes(ddr[d0 + i * isa.DESC_BYTES:][:isa.DESC_BYTES]) for i in range(img.manifest["descriptors"])]
    state = {}
    out = []

    class Probe(Machine):
        def __getattribute__(self, name):
            if name.startswith("op_"):
                fn = object.__getattribute__(self, name)

                def wrapped(d, rows):
                    i = self.index
                    keep = want(i, d)
                    if keep:
                        state.update(before={b: v.copy() for b, v in self.buf.items()}, cursor=self.cursor,
                                     table=None if self.table is None else tuple(np.copy(t) for t in self.table),
                                     n=self.n, sel=copy.deepcopy(self.sel))
                    fn(d, rows)
                    if keep:
                        out.append(OpVector(i, d, raws[i], rows, state["n"], state["before"],
                                            {b: v.copy() for b, v in self.buf.items()},
                                            self.stream[state["cursor"]:self.cursor], state["table"],
                                            state["sel"], copy.deepcopy(self.sel), self.n))
                return wrapped
            return object.__getattribute__(self, name)

    Probe(img.hw, ddr, junk_seed=junk_seed).run()
    return out
