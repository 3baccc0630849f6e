"""Interpreter of the accelerator's program (docs/accelerator.md): executes the descriptors of a
DDR image the way the hardware does, integer-only, with the golden primitives. It must equal
golden.network.QModel.forward bit for bit (tests), and the RTL must equal it (sim/), so any
mismatch is either a compiler or a hardware bug.

    m = Machine(hw, ddr)            # ddr: bytearray holding the image at `base`
    m.run()                         # raises isa.ProgramError where the hardware stops with an error
    read_results(manifest, m.ddr)   # logits, kept counts and keep masks

Buffers are modelled logically, [token, channel]; the hardware's tile layout is a detail of the
RTL. Only rows that an operation defines are written, as in the hardware (lane write enables),
so values in other rows never reach a result; `junk_seed` fills every buffer with random values
first to prove it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import isa, stream
from .arith import add_shifted, matmul, recip, requant, rshift_round
from .hw import HardwareConfig
from .isa import (ACT_KEEP, ACT_LOAD, ACT_NONE, B3, KB, STORE_ROWS, STORE_SELECT, STORE_TILES, TOKEN_BUFFERS, VB,
                  ProgramError)
from .kernels import PWL, layernorm, softmax
from .network import MEAN_RECIP_BITS, WEIGHT_RECIP_BITS, package

MODES = {v: k for k, v in isa.PACKAGE_MODES.items()}


@dataclass
class Selection:
    n: int                  # tokens entering the selector
    n_pkg: int
    keep: np.ndarray        # bool [ns]
    m: np.ndarray           # keep probabilities, Q15 [ns]
    pkg: np.ndarray | None = None


@dataclass
class Machine:
    hw: HardwareConfig
    ddr: bytearray
    base: int = 0
    junk_seed: int | None = None
    trace: object = None            # callable(index, desc, machine) after every descriptor
    n: int = 0                      # the token-count register
    kept: list = field(default_factory=list)
    table: PWL | None = None
    sel: Selection | None = None      # the decision PACKAGE and COMPACT work on (cleared by COMPACT)
    last: Selection | None = None     # the latest decision (STORE of a selection)
    index: int = 0

    def __post_init__(self):
        hw = self.hw
        rows = {b: hw.tiles * hw.mac_rows for b in TOKEN_BUFFERS}
        rows[KB], rows[VB] = hw.key_tiles * hw.mac_cols, hw.tiles * hw.mac_rows
        rng = np.random.default_rng(self.junk_seed)
        self.buf = {b: (rng.integers(-32768, 32768, (r, hw.buffer_width(b))) if self.junk_seed is not None
                        else np.zeros((r, hw.buffer_width(b)), dtype=np.int64)) for b, r in rows.items()}
        self.kept = [0] * hw.stages_max

    # ------------------------------------------------------------ program
    def fail(self, code: str, detail: str = ""):
        raise ProgramError(code, self.index, detail)

    def run(self) -> "Machine":
        hw = self.hw
        hd = isa.decode_header(bytes(self.ddr[self.base:self.base + isa.HEADER_BYTES]))
        self.index = -1
        if hd["magic"] != isa.MAGIC or hd["version"] != isa.VERSION:
            self.fail("BAD_HEADER", f"magic {hd['magic']:#x} version {hd['version']}")
        if hd["hw_ident"] != hw.ident():
            self.fail("HW_MISMATCH", f"program for hardware {hd['hw_ident']:#010x}, this is {hw.ident():#010x}")
        if not 1 <= hd["n_desc"] <= hw.desc_max:
            self.fail("PROGRAM_SIZE", f"{hd['n_desc']} descriptors (1..{hw.desc_max})")
        if not 1 <= hd["n_tokens"] <= hw.n_max:
            self.fail("BAD_TOKENS", f"initial token count {hd['n_tokens']} (1..{hw.n_max})")
        self.n = hd["n_tokens"]
        s0, slen = self.base + hd["stream_off"], hd["stream_len"]
        if slen % hw.stream_bytes:
            self.fail("BAD_HEADER", f"stream length {slen} is not a multiple of {hw.stream_bytes} bytes")
        self.stream = stream.deinterleave(bytes(self.ddr[s0:s0 + slen]), hw)
        self.cursor = 0
        d0 = self.base + hd["desc_off"]
        for self.index in range(hd["n_desc"]):
            raw = bytes(self.ddr[d0 + self.index * isa.DESC_BYTES:][:isa.DESC_BYTES])
            d = isa.decode(raw)
            if d["op"] not in isa.OP_BY_CODE:
                self.fail("BAD_OPCODE", f"opcode {d['op']}")
            if d.op.name == "END":
                if self.cursor != len(self.stream):
                    self.fail("STREAM_LEFTOVER", f"{len(self.stream) - self.cursor} bytes unread")
                return self
            rows = d.rows_of(self.n)
            if not 1 <= rows <= hw.n_max:
                self.fail("BAD_TOKENS", f"{rows} rows (1..{hw.n_max})")
            getattr(self, "op_" + d.op.name.lower())(d, rows)
            if self.trace:
                self.trace(self.index, d, self)
        self.index = hd["n_desc"]
        self.fail("NO_END")

    def take(self, nbytes: int) -> bytes:
        """The next stream item of `nbytes` (padded to whole stream beats)."""
        n = stream.padded_len(nbytes, self.hw)
        if self.cursor + n > len(self.stream):
            self.fail("STREAM_SHORT", f"needs {n} bytes at stream offset {self.cursor}, {len(self.stream)} in all")
        out = self.stream[self.cursor:self.cursor + n]
        self.cursor += n
        return out

    # ------------------------------------------------------------ checks
    def token_buf(self, b: int, what: str):
        if b not in TOKEN_BUFFERS:
            self.fail("BAD_SHAPE", f"{what} = {b} is not a token buffer (0..3)")

    def span(self, b: int, c0: int, w: int, what: str):
        if w < 1 or c0 + w > self.hw.buffer_width(b):
            self.fail("BAD_SHAPE", f"{what}: channels {c0}..{c0 + w - 1} of {isa.BUFFER_NAMES[b]} "
                      f"(width {self.hw.buffer_width(b)})")

    def pwl(self, d, in_bits: int) -> PWL:
        """The descriptor's activation (ACT_LOAD: a table from the stream), None without one."""
        act = d["act"]
        if act == ACT_NONE:
            return None
        if act not in (ACT_LOAD, ACT_KEEP) or not 1 <= d["pwl_nseg"] <= self.hw.pwl_max \
                or d["pwl_17"] != (in_bits == 17):
            self.fail("BAD_SHAPE", f"activation fields act {act}, n_seg {d['pwl_nseg']}")
        if act == ACT_LOAD:
            self.table = stream.unpack_table(self.take(d["pwl_nseg"] * stream.ENTRY_BYTES), d["pwl_nseg"])
        elif self.table is None:
            self.fail("NO_TABLE")
        base, slope = self.table
        if len(base) < d["pwl_nseg"]:
            self.fail("BAD_SHAPE", f"n_seg {d['pwl_nseg']} exceeds the loaded table ({len(base)})")
        return PWL("table", d["pwl_frac"], 0, in_bits, d["pwl_lo"], d["pwl_shift"], d["pwl_nseg"], bool(d["pwl_ext"]),
                   base[:d["pwl_nseg"]], slope[:d["pwl_nseg"]])

    # ------------------------------------------------------------ operations
    def op_load(self, d, rows):
        self.token_buf(d["buf"], "buf")
        self.span(d["buf"], d["c0"], d["w"], "LOAD")
        if d["r0"] + rows > self.hw.n_max:
            self.fail("BAD_TOKENS", f"rows {d['r0']}..{d['r0'] + rows - 1} (n_max {self.hw.n_max})")
        raw = self.take(stream.rows_bytes(d["r0"], rows, d["w"], self.hw))
        self.buf[d["buf"]][d["r0"]:d["r0"] + rows, d["c0"]:d["c0"] + d["w"]] = \
            stream.unpack_rows(raw, d["r0"], rows, d["w"], self.hw)

    def op_store(self, d, rows):
        if d["addr"] % 16:
            self.fail("BAD_SHAPE", f"STORE address {d['addr']:#x} is not 16-byte aligned")
        at = self.base + d["addr"]
        if d["mode"] == STORE_SELECT:
            if self.last is None:
                self.fail("BAD_SHAPE", "STORE of a selection before any decision")
            s = self.last
            bits = np.zeros(-(-self.hw.n_max // 128) * 128, dtype=np.uint8)
            bits[:len(s.keep)] = s.keep
            raw = (np.array([int(s.keep.sum()), len(s.keep), 0, 0], dtype="<u4").tobytes()
                   + np.packbits(bits, bitorder="little").tobytes())
        elif d["mode"] in (STORE_ROWS, STORE_TILES):
            self.token_buf(d["buf"], "buf")
            self.span(d["buf"], d["c0"], d["w"], "STORE")
            x = self.buf[d["buf"]][:, d["c0"]:d["c0"] + d["w"]]
            if d["mode"] == STORE_ROWS:
                if d["r0"] + rows > self.hw.n_max:
                    self.fail("BAD_TOKENS", f"rows {d['r0']}..{d['r0'] + rows - 1}")
                raw = x[d["r0"]:d["r0"] + rows].astype("<i2").tobytes()
            else:
                if d["r0"]:
                    self.fail("BAD_SHAPE", "STORE of tiles starts at row 0")
                raw = stream.pack_rows(x[:rows], 0, self.hw)[:len(stream.tile_range(0, rows, self.hw)) * d["w"]
                                                              * self.hw.mac_rows * 2]
        else:
            self.fail("BAD_SHAPE", f"STORE mode {d['mode']}")
        self.ddr[at:at + len(raw)] = raw

    def op_matmul(self, d, rows):
        hw = self.hw
        a, o, k, m = d["a_buf"], d["o_buf"], d["k"], d["m"]
        self.token_buf(a, "a_buf")
        if o > VB or o == a:
            self.fail("BAD_SHAPE", f"o_buf {o} (a token buffer other than a_buf, KB or VB)")
        self.span(a, d["a_c0"], k, "MATMUL input")
        self.span(o, d["o_c0"], m, "MATMUL output")
        if d["res"]:
            self.token_buf(d["r_buf"], "r_buf")
            if d["r_buf"] == a or o not in TOKEN_BUFFERS or max(d["sa"], d["sb"]) > isa.ALIGN_MAX:
                self.fail("BAD_SHAPE", "the residual comes from a token buffer other than a_buf into a token buffer, "
                          f"aligned by at most {isa.ALIGN_MAX} bits")
            self.span(d["r_buf"], d["o_c0"], m, "MATMUL residual")
        act = self.pwl(d, 16)
        w, b = stream.unpack_weights(self.take(-(-m // hw.mac_cols) * stream.tile_bytes(k, hw)), m, k, hw)
        x = self.buf[a][:rows, d["a_c0"]:d["a_c0"] + k]
        y = requant((matmul(x, w.T) + b) * d["mult"], d["shift"])
        if act is not None:
            y = act.evaluate(y)
        out = self.buf[o][:rows, d["o_c0"]:d["o_c0"] + m]
        if d["res"]:
            r = self.buf[d["r_buf"]][:rows, d["o_c0"]:d["o_c0"] + m]
            y = add_shifted(r, d["sa"], y, d["sb"], d["so"])
        out[...] = y

    def op_layernorm(self, d, rows):
        i, o, c = d["i_buf"], d["o_buf"], d["d"]
        self.token_buf(i, "i_buf")
        self.token_buf(o, "o_buf")
        if i == o or d["eps"] < 1 or c > self.hw.d_max:
            self.fail("BAD_SHAPE", f"LayerNorm needs two different buffers, eps >= 1 and at most d_max = "
                      f"{self.hw.d_max} channels")
        self.span(i, d["i_c0"], c, "LayerNorm input")
        self.span(o, d["o_c0"], c, "LayerNorm output")
        g, beta = stream.unpack_ln(self.take(c * stream.ENTRY_BYTES), c)
        x = self.buf[i][:rows, d["i_c0"]:d["i_c0"] + c]
        self.buf[o][:rows, d["o_c0"]:d["o_c0"] + c] = layernorm(x, 0, g, d["y_shift"] - 16, beta, d["eps"], 0)

    def op_attention(self, d, rows):
        hw = self.hw
        qb, ob, h_n, dh = d["q_buf"], d["o_buf"], d["heads"], d["head_dim"]
        self.token_buf(qb, "q_buf")
        self.token_buf(ob, "o_buf")
        if qb == ob or h_n < 1 or dh < 1 or dh % hw.mac_cols or h_n * dh > hw.d_max:
            self.fail("BAD_SHAPE", f"attention: {h_n} heads of {dh} (head_dim a multiple of {hw.mac_cols}, "
                      f"heads x head_dim <= {hw.d_max}, q_buf != o_buf)")
        n = rows
        for h in range(h_n):
            c = slice(h * dh, (h + 1) * dh)
            acc = matmul(self.buf[qb][:n, c], self.buf[KB][:n, c].T)
            s = requant(acc * d["scale"], d["s_shift"])
            p = softmax(s, d["s_frac"])
            self.buf[ob][:n, c] = requant(matmul(p, self.buf[VB][:n, c]), d["o_shift"])

    def op_gmean(self, d, rows):
        b, c0, w = d["buf"], d["c0"], d["w"]
        self.token_buf(b, "buf")
        self.span(b, c0, w, "GMEAN")
        if rows < 2:
            self.fail("BAD_TOKENS", "the global mean needs at least 2 tokens")
        x = self.buf[b]
        s = x[1:rows, c0:c0 + w].sum(0)
        x[:rows, c0:c0 + w] = rshift_round(s * recip(rows - 1, MEAN_RECIP_BITS), MEAN_RECIP_BITS)

    def op_decide(self, d, rows):
        h_n, n_pkg = d["heads"], d["n_pkg"]
        self.token_buf(d["z_buf"], "z_buf")
        self.token_buf(d["w_buf"], "w_buf")
        self.span(d["z_buf"], d["z_c0"], 2 * h_n, "DECIDE z")
        self.span(d["w_buf"], d["w_c0"], h_n, "DECIDE w")
        if d["stage"] >= self.hw.stages_max or d["act"] == ACT_NONE:
            self.fail("BAD_SHAPE", f"stage {d['stage']} (stages_max {self.hw.stages_max}), act {d['act']}")
        if rows < n_pkg + 2:
            self.fail("BAD_TOKENS", f"{rows} tokens with {n_pkg} package tokens leave no token to score")
        d_sig = self.pwl(d, 17)
        ns = rows - 1 - n_pkg
        zb = self.buf[d["z_buf"]][1:1 + ns, d["z_c0"]:d["z_c0"] + 2 * h_n]
        w = self.buf[d["w_buf"]][1:1 + ns, d["w_c0"]:d["w_c0"] + h_n]
        dz = zb[:, 0::2] - zb[:, 1::2]                                        # [ns, H], 17-bit
        score = (w * dz).sum(-1)
        keep = score >= 0
        if d["cap_en"] and keep.sum() > d["cap"]:
            rank = np.lexsort((np.arange(ns), -score))
            top = np.zeros(ns, dtype=bool)
            top[rank[:d["cap"]]] = True
            keep &= top
        num = (w * d_sig.evaluate(dz)).sum(-1)
        den = np.maximum(w.sum(-1), 1)
        m = rshift_round(num * recip(den, WEIGHT_RECIP_BITS), WEIGHT_RECIP_BITS)
        self.sel = self.last = Selection(rows, n_pkg, keep, m)
        self.kept[d["stage"]] = int(keep.sum())

    def selection(self, d, rows) -> Selection:
        s = self.sel
        if s is None:
            self.fail("BAD_SHAPE", f"{d.op.name} without a decision")
        if s.n != rows or s.n_pkg != d["n_pkg"]:
            self.fail("BAD_TOKENS", f"{d.op.name} of {rows} tokens / {d['n_pkg']} packages after a decision on "
                      f"{s.n} / {s.n_pkg}")
        return s

    def op_package(self, d, rows):
        s = self.selection(d, rows)
        self.token_buf(d["x_buf"], "x_buf")
        self.span(d["x_buf"], 0, d["d"], "PACKAGE")
        if d["mode"] not in MODES:
            self.fail("BAD_SHAPE", f"package mode {d['mode']}")
        x = self.buf[d["x_buf"]][1:1 + len(s.keep), :d["d"]]
        s.pkg = package(x[~s.keep], s.m[~s.keep], MODES[d["mode"]])

    def op_compact(self, d, rows):
        s = self.selection(d, rows)
        xb, ob, c = d["x_buf"], d["o_buf"], d["d"]
        self.token_buf(xb, "x_buf")
        self.token_buf(ob, "o_buf")
        if xb == ob or s.pkg is None or len(s.pkg) != c:
            self.fail("BAD_SHAPE", "COMPACT needs two different buffers and a PACKAGE of the same width")
        self.span(xb, 0, c, "COMPACT")
        self.span(ob, 0, c, "COMPACT")
        ns = len(s.keep)
        order = np.concatenate([[0], 1 + np.flatnonzero(s.keep), np.arange(1 + ns, rows)]).astype(np.int64)
        x = self.buf[xb]
        out = self.buf[ob]
        out[:len(order), :c] = x[order, :c]
        out[len(order), :c] = s.pkg
        self.n = len(order) + 1
        self.sel = None


# ---------------------------------------------------------------- results
@dataclass
class Results:
    logits: np.ndarray             # int16 [classes]
    kept: np.ndarray               # [stages]
    masks: list                    # per stage: bool [scored tokens]
    checkpoints: dict              # block index -> int16 [tokens in that block's output, D]


def read_results(manifest: dict, ddr, base: int = 0, tokens: list | None = None) -> Results:
    """Results of a finished run from DDR. `tokens`: tokens leaving each block (to unpack
    checkpoints; they follow from the kept counts)."""
    from .hw import HardwareConfig
    hw = HardwareConfig(**manifest["hardware"])
    r = manifest["results"]
    lo = r["logits"]
    logits = np.frombuffer(bytes(ddr[base + lo["offset"]:][:lo["bytes"]]), dtype="<i2").astype(np.int64)
    kept, masks = [], []
    for s in range(manifest["stages"]):
        e = r[f"select{s}"]
        raw = bytes(ddr[base + e["offset"]:][:e["bytes"]])
        k, ns = np.frombuffer(raw[:8], dtype="<u4")
        bits = np.unpackbits(np.frombuffer(raw[16:], dtype=np.uint8), bitorder="little")[:ns].astype(bool)
        kept.append(int(k))
        masks.append(bits)
    ckpt = {}
    model = manifest["model"]
    n = model_tokens(model)
    d = model["embed_dim"]
    stage = 0
    for i in range(model["depth"]):
        if stage < len(kept) and i == model["selector_blocks"][stage]:
            n = 2 + kept[stage] + stage
            stage += 1
        e = r.get(f"block{i}")
        if e is not None:
            raw = bytes(ddr[base + e["offset"]:][:e["bytes"]])
            ckpt[i] = stream.unpack_rows(raw, 0, n, d, hw)
    return Results(logits, np.array(kept, dtype=np.int64), masks, ckpt)


def model_tokens(model: dict) -> int:
    return (model["img_size"] // model["patch_size"]) ** 2 + 1


def run_image(img, img_q, junk_seed=None) -> Results:
    """Interpret a compiled image (golden.compiler.Image) on one quantised input image."""
    m = Machine(img.hw, img.with_input(img_q), junk_seed=junk_seed).run()
    return read_results(img.manifest, m.ddr)
