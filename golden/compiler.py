"""Compiler: a quantised model (golden.network.QModel) and a hardware configuration -> a DDR
image (header, descriptors, data stream, result buffers) that the accelerator and the
interpreter (golden/interp.py) execute. docs/accelerator.md describes the format.

    img = compile_model(q, HW_PRESETS["mini"])      # deterministic: same inputs, same bytes
    img.data, img.manifest, img.regions

Buffer roles: the token stream X lives in B0 or B1 (a selector's COMPACT writes the next X into
a free buffer), the other two of B0..B2 hold LayerNorm outputs, Q, attention outputs and the
selector's per-head features; B3 holds image patches, the MLP hidden layer, the selector's
logits z and head weights w, and the classifier logits; SB holds one 48-bit score per token row
(DynamicViT's predictor score, EViT's and Evo-ViT's CLS attention). Evo-ViT's placeholders wait
in X's rows beyond N (1 + the slow-path tokens) while the blocks run on the first N.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from base.errors import UsageError
from base.outputs import output_dir

from . import isa, stream
from .arith import recip
from .config import config_dict, model_from_dict
from .hw import DoesNotFit, HardwareConfig
from .isa import ACT_KEEP, ACT_LOAD, ACT_NONE, B0, B1, B2, B3, KB, SB, VB
from .kernels import CLS_ATTN_FRAC, PROB_FRAC
from .selectors import SCHEMES
from .selectors.evit import HEAD_RECIP_BITS

IMAGE_FORMAT = "spvit-ddr-image"
IMAGE_VERSION = 1
ALIGN = 4096


@dataclass
class Builder:
    """Collects descriptors and stream items in program order."""
    hw: HardwareConfig
    descs: list = field(default_factory=list)
    items: list = field(default_factory=list)
    labels: list = field(default_factory=list)     # (descriptor index, text) for the listing
    stream_len: int = 0
    marks: dict = field(default_factory=dict)      # name -> (logical stream offset, bytes)

    def op(self, name: str, label: str, *items: bytes, **fields) -> int:
        isa.encode(name, **fields)                  # range check now; encoded once addresses are known
        self.descs.append((name, fields))
        self.labels.append((len(self.descs) - 1, label))
        for it in items:
            assert len(it) % self.hw.stream_bytes == 0
            self.items.append(it)
            self.stream_len += len(it)
        return len(self.descs) - 1

    def mark(self, name: str, nbytes: int) -> None:
        self.marks[name] = (self.stream_len, nbytes)


def _rows(n: int | None) -> dict:
    return {"rows_n": 1} if n is None else {"rows": n}


def _pwl_fields(p, act: int) -> dict:
    if p.n_seg << p.seg_shift > 1 << isa.PWL_SPAN_BITS:
        raise DoesNotFit(f"{p.name} table (in_frac {p.in_frac}, out_frac {p.out_frac}) spans "
                         f"{p.n_seg << p.seg_shift} input LSBs, more than the hardware's 2^{isa.PWL_SPAN_BITS}")
    return {"act": act, "pwl_lo": p.lo, "pwl_shift": p.seg_shift, "pwl_nseg": p.n_seg, "pwl_ext": int(p.extend),
            "pwl_frac": p.in_frac, "pwl_17": int(p.in_bits == 17)}


class Tables:
    """Which activation table the hardware holds: a MATMUL whose table equals the current one
    reuses it (ACT_KEEP); otherwise the table goes into the stream (ACT_LOAD)."""

    def __init__(self, hw: HardwareConfig):
        self.hw, self.current = hw, None

    def use(self, p) -> tuple[int, list]:
        """(act field, stream items) of an operation that applies PWL `p` (None: no table)."""
        if p is None:
            return ACT_NONE, []
        key = (p.name, p.in_frac, p.out_frac, p.in_bits)
        if key == self.current:
            return ACT_KEEP, []
        self.current = key
        return ACT_LOAD, [stream.pack_table(p, self.hw)]


def _add_sat_fields(fa: int, fb: int, fo: int) -> dict:
    """add_sat(a, fa, b, fb, fo) as the epilogue's shifts: sa = f - fa, sb = f - fb, so = f - fo."""
    f = max(fa, fb)
    return {"sa": f - fa, "sb": f - fb, "so": f - fo}


# the schemes Lowering has a program for (docs/accelerator.md, "What each scheme compiles to")
LOWERED = ("none", "spvit", "dynamicvit", "evit", "evovit")


def check_scheme(cfg) -> None:
    """The first refusal of compile_model and `spvit compile`: a token-selection scheme the
    compiler has no program for (before any shape: a user of such a scheme is told that first)."""
    if cfg.selector not in LOWERED:
        raise DoesNotFit(f"token selection {cfg.selector!r} (model {cfg.name}) has no accelerator program yet; the "
                         f"compiler lowers " + ", ".join(n for n in SCHEMES if n in LOWERED) + " models")


class Lowering:
    """A QModel as descriptors, block by block: `lower` calls the scheme's hooks `before_<scheme>`
    (a selection before block i), `block` (whose `mid_<scheme>` hook selects inside it) and
    `readout_<scheme>` (what the final LayerNorm reads); each emits the operations the golden
    scheme computes, in its order (docs/accelerator.md, "What each scheme compiles to")."""

    def __init__(self, q, hw: HardwareConfig, checkpoints: bool):
        check_scheme(q.cfg)
        hw.check(q.cfg)
        self.q, self.hw, self.b = q, hw, Builder(hw)
        self.tables = Tables(hw)
        self.checkpoints = checkpoints
        self.results: dict = {}
        self.res_off = 0                # result buffers, offsets relative to the results region
        self.parked = None              # Evo-ViT: (slow-path tokens k, format) while placeholders wait

    def result(self, name: str, nbytes: int) -> int:
        off = self.res_off
        self.results[name] = (off, nbytes)
        self.res_off += nbytes + (-nbytes % 64)
        return off

    @staticmethod
    def others(x) -> tuple:
        """The two of B0..B2 that do not hold the token stream x."""
        y, z = [b for b in (B0, B1, B2) if b != x][:2]
        return y, z

    # ------------------------------------------------------------ operations
    def matmul(self, label, a, a_c0, o, o_c0, w, bias, shift, rows=None, mult=1, act=None, res=None, res0=None):
        """o[:, o_c0:+M] = epilogue(a[:, a_c0:+K] @ w.T + bias); res = (r_buf, fa, fb, fo); res0 =
        (fa0, fo0): token row 0's formats in the residual add (the CLS token's own format)."""
        w = np.asarray(w, dtype=np.int64)
        m, k = w.shape
        mode, items = self.tables.use(act)
        items.append(stream.pack_weights(w, np.broadcast_to(np.asarray(bias, dtype=np.int64).reshape(-1), (m,)),
                                         self.hw))
        f = dict(a_buf=a, a_c0=a_c0, k=k, m=m, o_buf=o, o_c0=o_c0, shift=shift, mult=mult, **_rows(rows))
        if act is not None:
            f.update(_pwl_fields(act, mode))
        if res is not None:
            r_buf, fa, fb, fo = res
            f.update(res=1, r_buf=r_buf, **_add_sat_fields(fa, fb, fo))
            if res0 is not None:
                f.update(row0=1, **{k + "0": v for k, v in _add_sat_fields(res0[0], fb, res0[1]).items()})
        return self.b.op("MATMUL", label, *items, **f)

    def linear(self, label, lin, a, a_c0, o, o_c0, rows=None, act=None, res=None, res0=None, head=None):
        w, bias = lin.w, lin.b
        if head is not None:
            w, bias = w[head], np.asarray(bias)[head]
        return self.matmul(label, a, a_c0, o, o_c0, w, bias, lin.shift, rows, act=act, res=res, res0=res0)

    def layernorm(self, label, ln, i, i_c0, o, o_c0, rows=None, head=None):
        g, beta = np.asarray(ln.gamma), np.asarray(ln.beta)
        if head is not None:
            g, beta = g[head], beta[head]
        g, beta = g.reshape(-1), np.broadcast_to(beta.reshape(-1), g.reshape(-1).shape)
        return self.b.op("LAYERNORM", label, stream.pack_ln(g, beta, self.hw), i_buf=i, i_c0=i_c0, d=len(g),
                         o_buf=o, o_c0=o_c0, eps=ln.eps_q, y_shift=16 + ln.g_frac - ln.out_frac,
                         eps0=ln.cls_eps_q or 0, **_rows(rows))

    def load(self, label, buf, c0, x, r0, mark=None):
        x = np.asarray(x, dtype=np.int64)
        item = stream.pack_rows(x, r0, self.hw)
        if mark:
            self.b.mark(mark, len(item))
        return self.b.op("LOAD", label, item, buf=buf, c0=c0, w=x.shape[1], r0=r0, rows=len(x))

    def store_selection(self, label, stage):
        off = self.result(f"select{stage}", select_bytes(self.hw))
        self.b.op("STORE", f"{label} kept count and mask", mode=isa.STORE_SELECT, addr=off, rows=1)

    def top_k(self, label, stage, k, rows=None):
        """DECIDE mode top-k over the score buffer's candidate rows 1..rows-1."""
        self.b.op("DECIDE", f"{label} top {k}", mode=isa.DECIDE_TOPK, k=k, stage=stage, **_rows(rows))

    # ------------------------------------------------------------ the model
    def embed(self):
        q, cfg = self.q, self.q.cfg
        P, d = cfg.num_patches, cfg.embed_dim
        self.load("input patches", B3, 0, np.zeros((P, cfg.patch_dim), dtype=np.int64), 1, mark="input")
        self.load("position embedding", B1, 0, q.pos, 1)
        self.linear("patch embedding + position", q.patch, B3, 0, B0, 0,
                    res=(B1, q.fmt["pos"], q.patch.out_frac, q.fmt["res.0"]))
        self.load("CLS token", B0, 0, np.asarray(q.cls_row).reshape(1, d), 0)
        return B0

    def block(self, i, blk, x):
        y, z = self.others(x)
        a, d, p = blk.attn, self.q.cfg.embed_dim, f"block {i}"
        cls = blk.cls_in is not None                    # the CLS token in its own formats (row 0)
        self.layernorm(f"{p} norm1", blk.norm1, x, 0, y, 0)
        self.linear(f"{p} q", a.q, y, 0, z, 0)
        self.linear(f"{p} k", a.k, y, 0, KB, 0)
        self.linear(f"{p} v", a.v, y, 0, VB, 0)
        t = self.score_momentum(i)
        self.b.op("ATTENTION", f"{p} attention" + ("" if t is None else " + CLS attention into SB"), q_buf=z,
                  o_buf=y, heads=a.heads, head_dim=d // a.heads, s_shift=a.q.out_frac + a.k.out_frac + 15 - a.s_frac,
                  scale=a.scale_mult, s_frac=a.s_frac, o_shift=PROB_FRAC + a.v.out_frac - a.o_frac,
                  score=int(t is not None), momentum=t or 0, rows_n=1)
        self.linear(f"{p} proj + residual", a.proj, y, 0, x, 0, res=(x, blk.in_frac, a.proj.out_frac, blk.mid_frac),
                    res0=(blk.cls_in, blk.cls_mid) if cls else None)
        mid = getattr(self, f"mid_{self.q.cfg.selector}", None)
        if mid is not None:
            x = mid(i, x)
            y = self.others(x)[0]
        self.layernorm(f"{p} norm2", blk.norm2, x, 0, y, 0)
        self.linear(f"{p} fc1 + GELU", blk.mlp.fc1, y, 0, B3, 0, act=blk.mlp.act)
        self.linear(f"{p} fc2 + residual", blk.mlp.fc2, B3, 0, x, 0,
                    res=(x, blk.mid_frac, blk.mlp.fc2.out_frac, blk.out_frac),
                    res0=(blk.cls_mid, blk.cls_out) if cls else None)
        if self.checkpoints:
            off = self.result(f"block{i}", len(stream.tile_range(0, self.hw.n_max, self.hw)) * d * self.hw.mac_rows * 2)
            self.b.op("STORE", f"{p} checkpoint", mode=isa.STORE_TILES, buf=x, c0=0, w=d, r0=0, addr=off, rows_n=1)
        return x

    def score_momentum(self, i) -> int | None:
        """t of ATTENTION's score capture in block i (None: no capture), from the scheme's hook
        `score_<scheme>`."""
        hook = getattr(self, f"score_{self.q.cfg.selector}", None)
        return None if hook is None else hook(i)

    # ---- SPViT: per-head scoring MLPs and head branch, DECIDE threshold, PACKAGE, COMPACT
    def before_spvit(self, block, stage, sel, x):
        y, z = self.others(x)
        h_n, d = sel.heads, self.q.cfg.embed_dim
        dh = d // h_n
        p = f"selector {stage} (before block {block})"
        for h in range(h_n):
            self.layernorm(f"{p} head {h} LayerNorm", sel.in_ln, x, h * dh, y, h * dh, head=h)
        for h in range(h_n):
            self.linear(f"{p} head {h} in_fc + GELU", sel.in_fc, y, h * dh, z, h * dh, act=sel.in_act, head=h)
        for h in range(h_n):
            self.b.op("GMEAN", f"{p} head {h} global mean", buf=z, c0=h * dh + dh // 2, w=dh // 2, rows_n=1)
        for h in range(h_n):
            self.linear(f"{p} head {h} out1 + GELU", sel.out1, z, h * dh, y, h * dh, act=sel.act1, head=h)
        for h in range(h_n):
            self.linear(f"{p} head {h} out2 + GELU", sel.out2, y, h * dh, z, h * dh, act=sel.act2, head=h)
        for h in range(h_n):
            self.linear(f"{p} head {h} out3 (z)", sel.out3, z, h * dh, B3, 2 * h, head=h)
        ones = np.kron(np.eye(h_n, dtype=np.int64), np.ones((1, dh), dtype=np.int64))        # [H, D]
        mult, shift = round((1 << 15) / dh), 15
        while mult % 2 == 0 and shift > 0:     # a power-of-two factor is a shift (same value)
            mult, shift = mult // 2, shift - 1
        self.matmul(f"{p} head means", x, 0, y, 0, ones, np.zeros(h_n, dtype=np.int64), shift, mult=mult)
        self.linear(f"{p} se1 + GELU", sel.se1, y, 0, z, 0, act=sel.se_act)
        self.linear(f"{p} se2 + sigmoid (w)", sel.se2, z, 0, B3, 2 * h_n, act=sel.se_sig)
        mode, items = self.tables.use(sel.d_sig)
        cap = sel.cap
        self.b.op("DECIDE", f"{p} decision", *items, z_buf=B3, z_c0=0, w_buf=B3, w_c0=2 * h_n, heads=h_n,
                  n_pkg=stage, cap_en=int(cap is not None), cap=0 if cap is None else min(cap, self.hw.n_max),
                  stage=stage, rows_n=1, **_pwl_fields(sel.d_sig, mode))
        self.b.op("PACKAGE", f"{p} package token", x_buf=x, d=d, n_pkg=stage, mode=isa.PACKAGE_MODES[sel.package_mode],
                  rows_n=1)
        self.b.op("COMPACT", f"{p} compaction", x_buf=x, o_buf=y, d=d, n_pkg=stage, rows_n=1)
        self.store_selection(p, stage)
        return y

    # ---- DynamicViT: the predictor MLP on the MAC array, its folded score row into SB, top-k
    def before_dynamicvit(self, block, stage, sel, x):
        y, z = self.others(x)
        d, p = self.q.cfg.embed_dim, f"predictor {stage} (before block {block})"
        self.layernorm(f"{p} LayerNorm", sel.in_ln, x, 0, y, 0)
        self.linear(f"{p} in_fc + GELU", sel.in_fc, y, 0, z, 0, act=sel.in_act)
        self.b.op("GMEAN", f"{p} global mean", buf=z, c0=d // 2, w=d - d // 2, rows_n=1)
        self.linear(f"{p} out1 + GELU", sel.out1, z, 0, y, 0, act=sel.act1)
        self.linear(f"{p} out2 + GELU", sel.out2, y, 0, z, 0, act=sel.act2)
        self.matmul(f"{p} score (folded keep - drop row) into SB", z, 0, SB, 0, sel.score.w, sel.score.b, 0)
        self.top_k(p, stage, sel.keep)
        self.b.op("COMPACT", f"{p} compaction (CLS, kept by score)", x_buf=x, o_buf=y, d=d, order=isa.ORDER_RANK,
                  no_pkg=1, rows_n=1)
        self.store_selection(p, stage)
        return y

    # ---- EViT: inside block i, after the attention residual (its CLS attention is in SB)
    def score_evit(self, i) -> int | None:
        """A selection block's CLS attention replaces the score."""
        return isa.ONE_Q15 if i in self.q.cfg.selector_blocks else None

    def mid_evit(self, i, x):
        cfg = self.q.cfg
        if i not in cfg.selector_blocks:
            return x
        stage = cfg.selector_blocks.index(i)
        entering, k, _ = cfg.scheme.counts(cfg)[stage]
        sel, d, p = self.q.selectors[i], cfg.embed_dim, f"block {i} EViT stage {stage}"
        self.top_k(p, stage, k)
        if k < entering:                                # keeping all prunes nothing: the order stays
            y = self.others(x)[0]
            if sel.fuse:
                self.b.op("PACKAGE", f"{p} fused token (score-weighted)", x_buf=x, d=d,
                          mode=isa.PACKAGE_MODES["scores"], mult=recip(sel.heads, HEAD_RECIP_BITS),
                          shift=HEAD_RECIP_BITS + CLS_ATTN_FRAC, rows_n=1)
            self.b.op("COMPACT", f"{p} compaction (CLS, kept by score" + (", fused)" if sel.fuse else ")"), x_buf=x,
                      o_buf=y, d=d, order=isa.ORDER_RANK, no_pkg=int(not sel.fuse), rows_n=1)
            x = y
        self.store_selection(p, stage)
        return x

    # ---- Evo-ViT: re-rank at each stage start; placeholders wait behind the slow path
    def score_evovit(self, i) -> int | None:
        """From block b_0 - 1 on: replaced before b_0, then blended with the stage's momentum."""
        cfg, sch = self.q.cfg, self.q.cfg.scheme
        if not sch.has_mid(cfg, i):
            return None
        s = sch.stage_of(cfg, i)
        return isa.ONE_Q15 if s < 0 else self.q.selectors[cfg.selector_blocks[s]].momentum

    def before_evovit(self, block, stage, sel, x):
        cfg = self.q.cfg
        P, d, p = cfg.num_patches, cfg.embed_dim, f"Evo-ViT stage {stage} (block {block})"
        self.write_back(p, x, self.q.blocks[block].in_frac)
        y = self.others(x)[0]
        self.top_k(p, stage, sel.keep, rows=1 + P)
        self.b.op("COMPACT", f"{p} re-rank (CLS, slow path, placeholders; scores alike)", x_buf=x, o_buf=y, d=d,
                  order=isa.ORDER_RANK, rest=1, no_pkg=1, scores=1, rows=1 + P)
        self.store_selection(p, stage)
        self.parked = (sel.keep, self.q.blocks[block].in_frac)
        return y

    def write_back(self, label, x, frac):
        """Evo-ViT: the placeholders (rows 1 + k .. P of x, at the format of their stage's start)
        converted to the token format `frac`, behind the slow path again."""
        if self.parked is None:
            return
        k, pf = self.parked
        P = self.q.cfg.num_patches
        if P > k and pf != frac:
            self.b.op("COPY", f"{label} placeholders to the current format", i_buf=x, i_r0=1 + k, o_buf=x, o_r0=1 + k,
                      w=self.q.cfg.embed_dim, shift=pf - frac, rows=P - k)
        self.parked = None

    def readout_evovit(self, x):
        q, cfg = self.q, self.q.cfg
        f = q.blocks[-1].out_frac
        self.write_back("readout", x, f)
        self.b.op("GMEAN", "mean of the patch tokens (pool)", buf=x, c0=0, w=cfg.embed_dim, shift=f - q.fmt["pool"],
                  rows=1 + cfg.num_patches)
        return x

    def head(self, x):
        q, cfg = self.q, self.q.cfg
        y = self.others(x)[0]
        self.layernorm("final norm (CLS)" if cfg.scheme.readout_fmt(cfg) != "pool" else "final norm (pool)",
                       q.norm, x, 0, y, 0, rows=1)
        self.linear("head", q.head, y, 0, B3, 0, rows=1)
        off = self.result("logits", 2 * cfg.num_classes)
        self.b.op("STORE", "logits", mode=isa.STORE_ROWS, buf=B3, c0=0, w=cfg.num_classes, r0=0, rows=1, addr=off)
        self.b.op("END", "end")

    def lower(self):
        cfg = self.q.cfg
        before = getattr(self, f"before_{cfg.selector}", None)
        readout = getattr(self, f"readout_{cfg.selector}", None)
        x = self.embed()
        for i, blk in enumerate(self.q.blocks):
            if before is not None and i in self.q.selectors:
                x = before(i, cfg.selector_blocks.index(i), self.q.selectors[i], x)
            x = self.block(i, blk, x)
        if readout is not None:
            x = readout(x)
        self.head(x)
        return self.b


def select_bytes(hw: HardwareConfig) -> int:
    """STORE of a selection: kept count (u32), scored count (u32), 8 bytes reserved, then one
    bit per scored token (bit i of byte i // 8: scored token i, i.e. token 1 + i, kept)."""
    return 16 + -(-hw.n_max // 128) * 16


@dataclass
class Image:
    hw: HardwareConfig
    cfg: object
    data: bytes
    regions: dict
    labels: list
    manifest: dict

    @property
    def stream_len(self) -> int:
        return self.regions["stream"][1]

    def input_runs(self, img_q):
        """(DDR offset, bytes) writes that place an int16 image [in_chans, H, W] (already
        quantised to the model's input format) into the input region."""
        rows = patches(img_q, self.cfg)
        item = stream.pack_rows(rows, 1, self.hw)
        off, n = self.manifest["input"]["stream_offset"], self.manifest["input"]["bytes"]
        assert len(item) == n
        s0 = self.regions["stream"][0]
        return [(s0 + o, b) for o, b in stream.physical_runs(off, item, self.stream_len, self.hw)]

    def with_input(self, img_q) -> bytearray:
        ddr = bytearray(self.data)
        for off, b in self.input_runs(img_q):
            ddr[off:off + len(b)] = b
        return ddr

    def save(self, out, force: bool = False, inputs=()) -> None:
        """Write the image directory: image.bin, manifest.json, program.txt (atomic, base.outputs)."""
        with output_dir(out, IMAGE_FORMAT, "an image directory", force=force, inputs=inputs) as tmp:
            (tmp / "image.bin").write_bytes(self.data)
            (tmp / "manifest.json").write_text(json.dumps(self.manifest, indent=1, sort_keys=True) + "\n")
            (tmp / "program.txt").write_text(listing(self) + "\n")

    @classmethod
    def load(cls, path) -> "Image":
        """An image directory written by `spvit compile` (checked against its manifest's hash)."""
        p = Path(path)
        try:
            man = json.loads((p / "manifest.json").read_text())
            data = (p / "image.bin").read_bytes()
            lines = (p / "program.txt").read_text().splitlines()
        except (OSError, ValueError) as e:
            raise UsageError(f"{str(path)!r} is not an image written by `spvit compile` ({e}); compile one with "
                             f"spvit compile --package PKG --out {path}") from None
        if not isinstance(man, dict) or man.get("format") != IMAGE_FORMAT \
                or hashlib.sha256(data).hexdigest() != man.get("sha256"):
            raise UsageError(f"image {str(path)!r} is corrupt or of another format (its sha256 or format differs from "
                             f"its manifest); compile it again")
        try:
            hw = HardwareConfig(**man["hardware"])
            cfg = model_from_dict(man["model"])
            regions = {k: (v["offset"], v["bytes"]) for k, v in man["regions"].items()}
        except (KeyError, TypeError, ValueError) as e:
            raise UsageError(f"image {str(path)!r} has a malformed manifest ({e}); compile it again") from None
        labels = [(i, line[17:]) for i, line in enumerate(lines)]
        return cls(hw, cfg, data, regions, labels, man)


def patches(img_q, cfg):
    """int16 image [in_chans, H, W] -> patch rows [num_patches, in_chans p p] (channel-major
    within a patch, patches in raster order), as golden.network.QModel.embed."""
    img = np.asarray(img_q, dtype=np.int64)
    ch, hh, ww = img.shape
    p = cfg.patch_size
    x = img.reshape(ch, hh // p, p, ww // p, p).transpose(1, 3, 0, 2, 4)
    return x.reshape((hh // p) * (ww // p), ch * p * p)


def compile_model(q, hw: HardwareConfig, checkpoints: bool = False, source: dict | None = None) -> Image:
    low = Lowering(q, hw, checkpoints)
    b = low.lower()
    if len(b.descs) > hw.desc_max:
        raise DoesNotFit(f"the program of {q.cfg.name} has {len(b.descs)} descriptors, more than desc_max "
                         f"{hw.desc_max} of hardware {hw.name}; {hw.advice(q.cfg, len(b.descs))}")
    desc_off = isa.HEADER_BYTES
    stream_off = _align(desc_off + len(b.descs) * isa.DESC_BYTES)
    logical = b"".join(b.items)
    res_off = _align(stream_off + len(logical))
    size = _align(res_off + max(low.res_off, 64))
    header = isa.encode_header(magic=isa.MAGIC, version=isa.VERSION, hw_ident=hw.ident(), n_desc=len(b.descs),
                               desc_off=desc_off, stream_off=stream_off, stream_len=len(logical),
                               n_tokens=q.cfg.num_tokens)
    data = bytearray(size)
    data[0:isa.HEADER_BYTES] = header
    descs = [isa.encode(name, **({**f, "addr": f["addr"] + res_off} if name == "STORE" else f)) for name, f in b.descs]
    data[desc_off:desc_off + len(descs) * isa.DESC_BYTES] = b"".join(descs)
    data[stream_off:stream_off + len(logical)] = stream.interleave(logical, hw)
    regions = {"header": (0, isa.HEADER_BYTES), "program": (desc_off, len(b.descs) * isa.DESC_BYTES),
               "stream": (stream_off, len(logical)), "results": (res_off, size - res_off)}
    results = {k: {"offset": res_off + o, "bytes": n} for k, (o, n) in low.results.items()}
    in_off, in_len = b.marks["input"]
    manifest = {
        "format": IMAGE_FORMAT, "format_version": IMAGE_VERSION,
        "hardware": hw.as_dict(), "hw_ident": hw.ident(), "model": config_dict(q.cfg),
        "descriptors": len(b.descs), "size": size,
        "regions": {k: {"offset": o, "bytes": n} for k, (o, n) in regions.items()},
        "input": {"stream_offset": in_off, "bytes": in_len, "format_frac": q.img_frac,
                  "layout": "token tiles of rows 1..num_patches, see docs/accelerator.md#input"},
        "results": results, "stages": q.cfg.stages, "classes": q.cfg.num_classes, "logits_frac": q.fmt["logits"],
        "source": source or {},
        "sha256": hashlib.sha256(bytes(data)).hexdigest(),
    }
    return Image(hw, q.cfg, bytes(data), regions, b.labels, manifest)


def _align(n: int) -> int:
    return n + (-n % ALIGN)


def listing(img: Image) -> str:
    """One line per descriptor: index, opcode, label (for `spvit compile --list`)."""
    out = []
    for i, label in img.labels:
        raw = img.data[img.regions["program"][0] + i * isa.DESC_BYTES:][:isa.DESC_BYTES]
        out.append(f"{i:4d}  {isa.decode(raw).op.name:9s}  {label}")
    return "\n".join(out)
