"""MAC array against golden.arith.matmul: exact 48-bit sums, tiles back to back, stalls."""
import numpy as np
import pytest

from golden.arith import matmul
from golden.compare import assert_exact
from rtl_gen.array.mac import MacArray
from sim.runner import run_stream


def _beats(x, w, rows, cols):
    """x [T, rows, K], w [T, cols, K] -> one beat per k of each tile."""
    out = []
    for t in range(len(x)):
        k = x.shape[-1]
        for j in range(k):
            out.append({"a": x[t, :, j].tolist(), "b": w[t, :, j].tolist(),
                        "first": int(j == 0), "last": int(j == k - 1)})
    return out


@pytest.mark.parametrize("rows,cols,k,tiles,stall", [(4, 4, 24, 5, 0.3), (8, 2, 2, 6, 0.2), (4, 4, 1, 3, 0.0),
                                                     (5, 3, 64, 2, 0.0), (2, 8, 16, 4, 0.0)])
def test_mac_array(rows, cols, k, tiles, stall):
    rng = np.random.default_rng(rows * 100 + k)
    x = rng.integers(-32768, 32768, (tiles, rows, k))
    w = rng.integers(-32768, 32768, (tiles, cols, k))
    x[0, 0, :] = -32768                      # most-negative x most-negative: largest products
    w[0, 0, :] = -32768
    w[0, 1, :] = 32767
    if tiles > 2:
        x[1] = 0                             # an all-zero tile after a large one (restart)
    res = run_stream(MacArray(rows, cols), f"mac_{rows}x{cols}", {"i_ab": _beats(x, w, rows, cols)},
                     {"o_acc": tiles * cols}, stall=stall, seed=k)
    got = np.array([b["acc"] for b in res.outputs["o_acc"]]).reshape(tiles, cols, rows).transpose(0, 2, 1)
    want = np.stack([matmul(x[t], w[t].T) for t in range(tiles)])
    assert_exact(got, want, "MAC array sums")
    assert [b["last"] for b in res.outputs["o_acc"]] == [int(c == cols - 1) for _ in range(tiles) for c in range(cols)]
    if stall == 0.0 and k >= cols:           # back-to-back tiles: one beat per cycle
        assert res.last_out - res.first_in <= tiles * k + cols + 2


def test_mac_array_k4096_extreme():
    """The longest supported dot product of most-negative operands: 4096 * 2^30 = 2^42."""
    rows, cols, k = 2, 2, 4096
    x = np.full((1, rows, k), -32768)
    w = np.full((1, cols, k), -32768)
    w[0, 1] = 32767
    res = run_stream(MacArray(rows, cols), "mac_2x2", {"i_ab": _beats(x, w, rows, cols)}, {"o_acc": cols}, stall=0.0)
    got = np.array([b["acc"] for b in res.outputs["o_acc"]]).T
    assert_exact(got, matmul(x[0], w[0].T), "MAC k=4096")
    assert got[0, 0] == 1 << 42
