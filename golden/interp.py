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
from types import SimpleNamespace

import numpy as np

from . import isa, stream
from .arith import add_shifted, matmul, recip, requant, rshift_round
from .config import model_from_dict
from .hw import HardwareConfig
from .isa import (
    ACT_LOAD,
    ACT_NONE,
    DECIDE_TOPK,
    KB,
    ONE_Q15,
    ORDER_RANK,
    SB,
    STORE_ROWS,
    STORE_SELECT,
    TOKEN_BUFFERS,
    VB,
    ProgramError,
)
from .kernels import PWL, cls_attention, layernorm, softmax
from .layers import MEAN_RECIP_BITS, WEIGHT_RECIP_BITS, package

MODES = {v: k for k, v in isa.PACKAGE_MODES.items()}


@dataclass
class Selection:
    n: int                  # tokens entering the selector
    n_pkg: int
    keep: np.ndarray        # bool [ns]: the decision of each candidate (rows 1..ns)
    m: np.ndarray | None    # keep probabilities, Q15 [ns] (threshold decisions)
    mode: int = isa.DECIDE_THRESHOLD
    rank: np.ndarray | None = None   # top-k: the candidates by score descending, ties to the lower row
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
        rows[KB], rows[VB], rows[SB] = hw.key_tiles * hw.mac_cols, hw.tiles * hw.mac_rows, hw.n_max
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
        bad = isa.header_failure(hd, hw)
        if bad:
            self.fail(*bad)
        self.n = hd["n_tokens"]
        s0, slen = self.base + hd["stream_off"], hd["stream_len"]
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
            bad = isa.first_failure(d.op.name, isa.Fields(d), self.state(rows))
            if bad:
                self.fail(*bad)
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

    # ------------------------------------------------------------ checks (golden/isa.py CHECKS)
    def state(self, rows: int) -> SimpleNamespace:
        hw, sel = self.hw, self.sel
        return SimpleNamespace(
            rows=rows, n_max=hw.n_max, pwl_max=hw.pwl_max, stages_max=hw.stages_max, d_max=hw.d_max, C=hw.mac_cols,
            W=lambda b: hw.buffer_width(b) if 0 <= b <= SB else 0,
            table_nseg=0 if self.table is None else len(self.table[0]),
            sel=int(sel is not None), sel_n=sel.n if sel else 0, sel_npkg=sel.n_pkg if sel else 0,
            sel_mode=sel.mode if sel else 0,
            sel_kept=int(sel.keep.sum()) if sel else 0,
            pkg=int(sel is not None and sel.pkg is not None), pkg_d=len(sel.pkg) if sel and sel.pkg is not None else 0,
            last_sel=int(self.last is not None))

    def pwl(self, d, in_bits: int) -> PWL:
        """The descriptor's activation (ACT_LOAD: a table from the stream), None without one."""
        act = d["act"]
        if act == ACT_NONE:
            return None
        if act == ACT_LOAD:
            self.table = stream.unpack_table(self.take(d["pwl_nseg"] * stream.ENTRY_BYTES), d["pwl_nseg"])
        base, slope = self.table
        return PWL("table", d["pwl_frac"], 0, in_bits, d["pwl_lo"], d["pwl_shift"], d["pwl_nseg"], bool(d["pwl_ext"]),
                   base[:d["pwl_nseg"]], slope[:d["pwl_nseg"]])

    # ------------------------------------------------------------ operations
    def op_load(self, d, rows):
        raw = self.take(stream.rows_bytes(d["r0"], rows, d["w"], self.hw))
        self.buf[d["buf"]][d["r0"]:d["r0"] + rows, d["c0"]:d["c0"] + d["w"]] = \
            stream.unpack_rows(raw, d["r0"], rows, d["w"], self.hw)

    def op_store(self, d, rows):
        if d["mode"] == STORE_SELECT:
            s = self.last
            bits = np.zeros(-(-self.hw.n_max // 128) * 128, dtype=np.uint8)
            bits[:len(s.keep)] = s.keep
            raw = (np.array([int(s.keep.sum()), len(s.keep), 0, 0], dtype="<u4").tobytes()
                   + np.packbits(bits, bitorder="little").tobytes())
        else:
            x = self.buf[d["buf"]][:, d["c0"]:d["c0"] + d["w"]]
            if d["mode"] == STORE_ROWS:
                raw = x[d["r0"]:d["r0"] + rows].astype("<i2").tobytes()
            else:
                raw = stream.pack_rows(x[:rows], 0, self.hw)[:len(stream.tile_range(0, rows, self.hw)) * d["w"]
                                                              * self.hw.mac_rows * 2]
        at = self.base + d["addr"]
        self.ddr[at:at + len(raw)] = raw

    def op_matmul(self, d, rows):
        hw = self.hw
        a, o, k, m = d["a_buf"], d["o_buf"], d["k"], d["m"]
        act = self.pwl(d, 16)
        w, b = stream.unpack_weights(self.take(-(-m // hw.mac_cols) * stream.tile_bytes(k, hw)), m, k, hw)
        x = self.buf[a][:rows, d["a_c0"]:d["a_c0"] + k]
        if o == SB:                                 # the bare 48-bit accumulator (one column)
            self.buf[SB][:rows, :1] = matmul(x, w.T) + b
            return
        y = requant((matmul(x, w.T) + b) * d["mult"], d["shift"])
        if act is not None:
            y = act.evaluate(y)
        if d["res"]:
            r = self.buf[d["r_buf"]][:rows, d["o_c0"]:d["o_c0"] + m]
            out = add_shifted(r, d["sa"], y, d["sb"], d["so"])
            if d["row0"]:                           # token row 0 (CLS) in its own formats
                out[0] = add_shifted(r[0], d["sa0"], y[0], d["sb0"], d["so0"])
            y = out
        self.buf[o][:rows, d["o_c0"]:d["o_c0"] + m] = y

    def op_layernorm(self, d, rows):
        i, o, c = d["i_buf"], d["o_buf"], d["d"]
        g, beta = stream.unpack_ln(self.take(c * stream.ENTRY_BYTES), c)
        x = self.buf[i][:rows, d["i_c0"]:d["i_c0"] + c]
        eps = d["eps"] if d["eps0"] == 0 else np.where(np.arange(rows) == 0, d["eps0"], d["eps"])[:, None]
        self.buf[o][:rows, d["o_c0"]:d["o_c0"] + c] = layernorm(x, 0, g, d["y_shift"] - 16, beta, eps, 0)

    def op_attention(self, d, rows):
        qb, ob, h_n, dh = d["q_buf"], d["o_buf"], d["heads"], d["head_dim"]
        n = rows
        a = 0
        for h in range(h_n):
            c = slice(h * dh, (h + 1) * dh)
            acc = matmul(self.buf[qb][:n, c], self.buf[KB][:n, c].T)
            s = requant(acc * d["scale"], d["s_shift"])
            p = softmax(s, d["s_frac"])
            self.buf[ob][:n, c] = requant(matmul(p, self.buf[VB][:n, c]), d["o_shift"])
            if d["score"]:
                a = a + cls_attention(s[0], d["s_frac"])
        if d["score"]:                              # the running score (EViT: t = 2^15, replaced)
            t, old = d["momentum"], self.buf[SB][:n, 0]
            self.buf[SB][:n, 0] = rshift_round((ONE_Q15 - t) * old + t * a, 15)

    def op_gmean(self, d, rows):
        b, c0, w = d["buf"], d["c0"], d["w"]
        x = self.buf[b]
        s = x[1:rows, c0:c0 + w].sum(0)
        x[:rows, c0:c0 + w] = requant(s * recip(rows - 1, MEAN_RECIP_BITS), MEAN_RECIP_BITS + d["shift"])

    def op_decide(self, d, rows):
        if d["mode"] == DECIDE_TOPK:
            scores = self.buf[SB][1:rows, 0]
            rank = np.argsort(-scores, kind="stable")               # score descending, ties to the lower row
            keep = np.zeros(rows - 1, dtype=bool)
            keep[rank[:d["k"]]] = True
            self.sel = self.last = Selection(rows, 0, keep, None, DECIDE_TOPK, rank)
            self.kept[d["stage"]] = d["k"]
            return
        h_n, n_pkg = d["heads"], d["n_pkg"]
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

    def op_package(self, d, rows):
        s = self.sel
        x = self.buf[d["x_buf"]][1:1 + len(s.keep), :d["d"]]
        if MODES[d["mode"]] == "scores":           # weights: the dropped tokens' scores (EViT's fused token)
            w = np.where(s.keep, 0, self.buf[SB][1:1 + len(s.keep), 0])
            s.pkg = requant((w[:, None] * x).sum(0) * d["mult"], d["shift"])
        else:
            s.pkg = package(x[~s.keep], s.m[~s.keep], MODES[d["mode"]])

    def op_compact(self, d, rows):
        s = self.sel
        xb, ob, c = d["x_buf"], d["o_buf"], d["d"]
        ns, kept = len(s.keep), int(s.keep.sum())
        if d["order"] == ORDER_RANK:                # [CLS, kept by rank, (the other candidates by rank), packages]
            cand = s.rank if d["rest"] else s.rank[:kept]
        else:
            cand = np.flatnonzero(s.keep)
        order = np.concatenate([[0], 1 + cand, np.arange(1 + ns, rows)]).astype(np.int64)
        self.buf[ob][:len(order), :c] = self.buf[xb][order, :c]
        if d["scores"]:
            self.buf[SB][:len(order)] = self.buf[SB][order]
        if not d["no_pkg"]:
            self.buf[ob][len(order), :c] = s.pkg
        self.n = 1 + kept + d["n_pkg"] + 1 - d["no_pkg"]
        self.sel = None

    def op_copy(self, d, rows):
        w = d["w"]
        x = self.buf[d["i_buf"]][d["i_r0"]:d["i_r0"] + rows, d["i_c0"]:d["i_c0"] + w]
        self.buf[d["o_buf"]][d["o_r0"]:d["o_r0"] + rows, d["o_c0"]:d["o_c0"] + w] = requant(x, d["shift"])


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
    cfg = model_from_dict(manifest["model"])
    for i, n in enumerate(block_tokens(cfg, kept)):
        e = r.get(f"block{i}")
        if e is not None:
            raw = bytes(ddr[base + e["offset"]:][:e["bytes"]])
            ckpt[i] = stream.unpack_rows(raw, 0, n, cfg.embed_dim, hw)
    return Results(logits, np.array(kept, dtype=np.int64), masks, ckpt)


def block_tokens(cfg, kept) -> list[int]:
    """Tokens leaving each block (the rows of its checkpoint), given the kept counts per stage:
    SPViT's follow from them (CLS, kept, a package token per stage so far); the other schemes
    keep the counts their config sets (golden.selectors: schedule, the MLP's tokens)."""
    if not cfg.scheme.adaptive:
        return [mlp for _, mlp in cfg.scheme.schedule(cfg)]
    n, out = cfg.num_tokens, []
    for i in range(cfg.depth):
        if i in cfg.selector_blocks:
            s = cfg.selector_blocks.index(i)
            n = 2 + kept[s] + s
        out.append(n)
    return out


def run_image(img, img_q, junk_seed=None) -> Results:
    """Interpret a compiled image (golden.compiler.Image) on one quantised input image."""
    m = Machine(img.hw, img.with_input(img_q), junk_seed=junk_seed).run()
    return read_results(img.manifest, m.ddr)
