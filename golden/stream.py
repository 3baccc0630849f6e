"""Byte layouts of the data stream (docs/accelerator.md, "Data stream"). Every item starts on a
stream-beat boundary (axi_ports x axi_bits / 8 bytes) and is zero-padded to whole beats; the
stream is stored in DDR interleaved over the AXI ports: beat j of the stream lies in port j % P's
slice at offset (j // P) * axi_bytes. `pack_*` build items (the compiler), `unpack_*` read them
(the interpreter), each a few lines of NumPy so that both sides are easy to check by eye.
"""
from __future__ import annotations

import numpy as np

from .hw import DoesNotFit, HardwareConfig

BIAS_WORDS = 3            # a 48-bit bias as three 16-bit words per lane (bits 0-15, 16-31, 32-47)
ENTRY_BYTES = 8           # PWL table entry (base, slope: int32 each) and LayerNorm parameter (int64)


def pad(item: bytes, hw: HardwareConfig) -> bytes:
    return item + b"\0" * (-len(item) % hw.stream_bytes)


def padded_len(nbytes: int, hw: HardwareConfig) -> int:
    return nbytes + (-nbytes % hw.stream_bytes)


def _i16(a) -> bytes:
    a = np.asarray(a, dtype=np.int64)
    if a.size and (a.min() < -32768 or a.max() > 32767):
        raise ValueError("value outside int16")
    return a.astype("<i2").tobytes()


# ---------------------------------------------------------------- weights (MATMUL)
def tile_bytes(k: int, hw: HardwareConfig) -> int:
    """Bytes of one m-tile item: 3 bias words + k weight words of mac_cols int16 lanes."""
    return padded_len((BIAS_WORDS + k) * hw.mac_cols * 2, hw)


def pack_weights(w, b, hw: HardwareConfig) -> bytes:
    """w int [M, K], b int [M] (48-bit accumulator format) -> one item per m-tile of mac_cols
    outputs (the last tile zero-padded): bias words, then word k = W[m0 + c, k] over lanes c."""
    w, b = np.asarray(w, dtype=np.int64), np.asarray(b, dtype=np.int64).reshape(-1)
    m, k = w.shape
    C = hw.mac_cols
    out = []
    for m0 in range(0, m, C):
        wt = np.zeros((C, k), dtype=np.int64)
        bt = np.zeros(C, dtype=np.int64)
        wt[:min(C, m - m0)] = w[m0:m0 + C]
        bt[:min(C, m - m0)] = b[m0:m0 + C]
        words = [((bt >> (16 * j)) & 0xFFFF) for j in range(BIAS_WORDS)]
        words = [np.where(x >= 32768, x - 65536, x) for x in words]
        out.append(pad(_i16(np.stack(words)) + _i16(wt.T), hw))
    return b"".join(out)


def unpack_weights(raw: bytes, m: int, k: int, hw: HardwareConfig):
    C = hw.mac_cols
    tiles = -(-m // C)
    tb = tile_bytes(k, hw)
    ws, bs = [], []
    for t in range(tiles):
        a = np.frombuffer(raw[t * tb:t * tb + (BIAS_WORDS + k) * C * 2], dtype="<i2").astype(np.int64).reshape(-1, C)
        bias = (a[0] & 0xFFFF) | ((a[1] & 0xFFFF) << 16) | (a[2] << 32)
        ws.append(a[BIAS_WORDS:].T)
        bs.append(bias)
    return np.concatenate(ws)[:m], np.concatenate(bs)[:m]


# ---------------------------------------------------------------- PWL tables
TABLE_BASE_BITS = 32      # |base| < 2^31
TABLE_SLOPE_BITS = 27     # |slope| < 2^26: slope x d is one 27 x 18 DSP48E2 product


def pack_table(pwl, hw: HardwareConfig) -> bytes:
    base, slope = np.asarray(pwl.base, dtype=np.int64), np.asarray(pwl.slope, dtype=np.int64)
    if np.abs(base).max() >= 1 << (TABLE_BASE_BITS - 1) or np.abs(slope).max() >= 1 << (TABLE_SLOPE_BITS - 1):
        raise DoesNotFit(f"{pwl.name} table (in_frac {pwl.in_frac}, out_frac {pwl.out_frac}) has entries wider than "
                         f"the hardware table (base {TABLE_BASE_BITS}, slope {TABLE_SLOPE_BITS} bits)")
    return pad(np.stack([base, slope], 1).astype("<i4").tobytes(), hw)


def unpack_table(raw: bytes, n_seg: int):
    a = np.frombuffer(raw[:n_seg * ENTRY_BYTES], dtype="<i4").astype(np.int64).reshape(n_seg, 2)
    return a[:, 0].copy(), a[:, 1].copy()


def table_bytes(n_seg: int, hw: HardwareConfig) -> int:
    return padded_len(n_seg * ENTRY_BYTES, hw)


# ---------------------------------------------------------------- LayerNorm parameters
def pack_ln(gamma, beta, hw: HardwareConfig) -> bytes:
    """Per channel one int64: gamma (int16) in bits 0-15, beta (48-bit) in bits 16-63."""
    g, b = np.asarray(gamma, dtype=np.int64).reshape(-1), np.asarray(beta, dtype=np.int64).reshape(-1)
    return pad(((b << 16) | (g & 0xFFFF)).astype("<i8").tobytes(), hw)


def unpack_ln(raw: bytes, d: int):
    a = np.frombuffer(raw[:d * ENTRY_BYTES], dtype="<i8").astype(np.int64)
    g = a & 0xFFFF
    return np.where(g >= 32768, g - 65536, g), a >> 16


def ln_bytes(d: int, hw: HardwareConfig) -> int:
    return padded_len(d * ENTRY_BYTES, hw)


# ---------------------------------------------------------------- token tiles (LOAD, STORE tiles)
def tile_range(r0: int, rows: int, hw: HardwareConfig) -> range:
    return range(r0 // hw.mac_rows, (r0 + rows - 1) // hw.mac_rows + 1)


def pack_rows(x, r0: int, hw: HardwareConfig) -> bytes:
    """Rows r0 .. r0 + len(x) - 1 of a [rows, w] matrix as token-tile words: for each covering
    tile t, for each channel c, mac_rows int16 lanes (lane r = row t R + r; rows outside the
    range are zero)."""
    x = np.asarray(x, dtype=np.int64)
    rows, w = x.shape
    R = hw.mac_rows
    tiles = tile_range(r0, rows, hw)
    full = np.zeros((len(tiles) * R, w), dtype=np.int64)
    off = r0 - tiles[0] * R
    full[off:off + rows] = x
    return pad(_i16(full.reshape(len(tiles), R, w).transpose(0, 2, 1)), hw)


def unpack_rows(raw: bytes, r0: int, rows: int, w: int, hw: HardwareConfig):
    R = hw.mac_rows
    tiles = tile_range(r0, rows, hw)
    a = np.frombuffer(raw[:len(tiles) * w * R * 2], dtype="<i2").astype(np.int64)
    full = a.reshape(len(tiles), w, R).transpose(0, 2, 1).reshape(-1, w)
    off = r0 - tiles[0] * R
    return full[off:off + rows]


def rows_bytes(r0: int, rows: int, w: int, hw: HardwareConfig) -> int:
    return padded_len(len(tile_range(r0, rows, hw)) * w * hw.mac_rows * 2, hw)


# ---------------------------------------------------------------- port interleaving
def interleave(stream: bytes, hw: HardwareConfig) -> bytes:
    """Logical stream -> its DDR image: P slices, slice p holding beats p, p + P, ..."""
    P, a = hw.axi_ports, hw.axi_bits // 8
    if P == 1:
        return stream
    beats = np.frombuffer(stream, dtype=np.uint8).reshape(-1, P, a)
    return beats.transpose(1, 0, 2).tobytes()


def deinterleave(raw: bytes, hw: HardwareConfig) -> bytes:
    P, a = hw.axi_ports, hw.axi_bits // 8
    if P == 1:
        return bytes(raw)
    slices = np.frombuffer(raw, dtype=np.uint8).reshape(P, -1, a)
    return slices.transpose(1, 0, 2).tobytes()


def physical_runs(logical_off: int, data: bytes, stream_len: int, hw: HardwareConfig):
    """(offset within the stream region, bytes) runs that write `data` at logical stream offset
    `logical_off` (a beat-aligned item): one contiguous run per port."""
    P, a = hw.axi_ports, hw.axi_bits // 8
    if logical_off % hw.stream_bytes or len(data) % hw.stream_bytes:
        raise ValueError("items start and end on stream-beat boundaries")
    if P == 1:
        return [(logical_off, bytes(data))]
    part = np.frombuffer(data, dtype=np.uint8).reshape(-1, P, a)
    slice_len = stream_len // P
    first = logical_off // hw.stream_bytes * a
    return [(p * slice_len + first, part[:, p].tobytes()) for p in range(P)]
