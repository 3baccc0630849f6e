"""Cycle model of the selector units (rtl_gen gmean, decide, package, compact): cycles from an
operation's start pulse to its done pulse, without stalls (the units have no stream ports, so
these are exact; tests/sim/test_select_units.py asserts equality with the RTL). DECIDE, PACKAGE
and COMPACT depend on the decision (tiles without dropped / output tokens are skipped, the cap
search runs only when the cap binds), so they take it: `scores` are the golden scores of the
scored tokens (golden.network.Selection.score or the interpreter's), `keep` the final keep
mask, `m` the keep probabilities.
"""
from __future__ import annotations

import numpy as np

from golden.hw import HardwareConfig
from golden.isa import PACKAGE_MODES
from golden.network import MEAN_RECIP_BITS, PACK_RECIP_BITS, WEIGHT_RECIP_BITS

from .package import default_lanes


def _tiles(n: int, hw: HardwareConfig) -> int:
    return -(-n // hw.mac_rows)


def gmean_cycles(rows: int, w: int, hw: HardwareConfig) -> int:
    """Reciprocal (k + 2), then w channels of T tiles read back to back; the last channel's T
    writes and the pipeline (4) follow."""
    t = _tiles(rows, hw)
    return MEAN_RECIP_BITS + 2 + w * t + t + 4


def recip_pool_accepts(n: int, units: int, k: int = WEIGHT_RECIP_BITS) -> list[int]:
    """Accept cycle of each of n reciprocals issued in order to `units` units round robin, one
    per cycle at most (token 0 at cycle 0): a unit takes its next input k + 3 cycles after
    the previous one (k + 1 steps, result, hand-back)."""
    a = []
    for i in range(n):
        t = a[-1] + 1 if a else 0
        if i >= units:
            t = max(t, a[i - units] + k + 3)
        a.append(t)
    return a


def cap_passes(scores, cap: int, bits: int) -> int:
    """Counting passes of the cap search (rtl_gen/capsearch.py): ceil(bit_length(max score) / bits)."""
    top = int(max(int(np.max(scores)), 0)).bit_length()
    return -(-top // bits)


def decide_cycles(rows: int, heads: int, n_pkg: int, hw: HardwareConfig, scores, cap_en: bool = False,
                  cap: int = 0, recips: int = 4, cap_bits: int = 3) -> int:
    """SCORE: groups (tile, head) of max(R, 4) cycles after a 6-cycle start, the last lane's
    record 5 cycles later; M: the reciprocal pool (k + 5 from the last accept to done); CAP in
    parallel with M when it binds: passes of ns + 2 cycles and a final pass of ns."""
    R = hw.mac_rows
    ns = rows - 1 - n_pkg
    groups = (ns // R + 1) * heads
    last_lane = 5 + (groups - 1) * max(R, 4) + R
    if ns == 0:                 # no candidates (the stage before kept none): SCORE only
        return last_lane + 7
    m_done = last_lane + 8 + recip_pool_accepts(ns, recips)[-1] + WEIGHT_RECIP_BITS + 5
    scores = np.asarray(scores)
    if cap_en and int((scores >= 0).sum()) > cap:
        return max(m_done, last_lane + 8 + cap_passes(scores, cap, cap_bits) * (ns + 2) + ns)
    return m_done


def package_cycles(rows: int, n_pkg: int, d: int, mode: int, keep, m, hw: HardwareConfig,
                   lanes: int | None = None) -> int:
    """Per tile with scored tokens: 3 cycles, or (dropped tokens in it) the R weights, d words
    of R / lanes cycles and 8 more; then the reciprocal (k + 2, norm / mean with a non-zero
    total) and the output pass (d + 4)."""
    R = hw.mac_rows
    L = lanes or default_lanes(hw)
    keep = np.asarray(keep, dtype=bool)
    ns = rows - 1 - n_pkg
    dropped = np.zeros((ns // R + 1) * R, dtype=bool)
    dropped[1:1 + ns] = ~keep
    per_tile = dropped.reshape(-1, R).any(1)
    tiles = int(np.sum(np.where(per_tile, R + d * (R // L) + 8, 3)))
    total = int((~keep).sum()) if mode == PACKAGE_MODES["mean"] else int(np.asarray(m)[~keep].sum())
    recip = PACK_RECIP_BITS + 2 if mode != PACKAGE_MODES["sum"] and total != 0 else 0
    return tiles + recip + d + 4


def compact_cycles(rows: int, n_pkg: int, d: int, keep, hw: HardwareConfig) -> int:
    """Per input tile: 3 cycles without output tokens, else d words of one write (two when its
    output tokens cross an output tile boundary) and 6 more; then the package token (d + 1)."""
    R = hw.mac_rows
    keep = np.asarray(keep, dtype=bool)
    ns = rows - 1 - n_pkg
    t = _tiles(rows, hw)
    out = np.zeros(t * R, dtype=bool)
    out[0] = True
    out[1:1 + ns] = keep
    out[1 + ns:rows] = True
    cyc, pos = 1, 0
    for cnt in out.reshape(t, R).sum(1):
        if cnt == 0:
            cyc += 3
            continue
        cyc += d * (2 if pos % R + cnt > R else 1) + 6
        pos += int(cnt)
    return cyc + d
