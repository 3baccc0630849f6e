"""The integer layers: linear, LayerNorm, attention, MLP, the DeiT block and the SPViT token
selector, bit-exact, int16 activations (golden/network.py puts them together into QModel; the
token-selection schemes in golden/selectors/ build on them).

Every tensor carries its own number of fraction bits (per-tensor power-of-two scales chosen
by calibration, see quant/calibrate.py). Each Q-object below holds integer parameters and the
formats of its input and output, and is called like a torch module: `y = layer(x)`.
Semantics of the selector: docs/selector.md. Rules of the arithmetic: docs/arithmetic.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .arith import (
    PackedWeight,
    add_sat,
    as_int,
    dequantize,
    matmul,
    quantize,
    recip,
    requant,
    requant_mul,
    round_bias,
    rshift_round,
    shift_sat_,
)
from .kernels import PROB_FRAC, PWL, cls_attention, layernorm, softmax


# ------------------------------------------------------------------ layers
@dataclass(frozen=True, eq=False)
class QLinear:
    """y = sat16(round((x @ w.T + b) / 2^(in_frac + w_frac - out_frac))). `w` is int16
    [..., out, in] (a leading axis stacks per-head copies), `b` is in the accumulator format
    (frac in_frac + w_frac, |b| < 2^46) with shape broadcastable to the output."""
    w: np.ndarray
    b: np.ndarray
    w_frac: int
    in_frac: int
    out_frac: int

    @cached_property
    def w_t(self):
        w_t = np.swapaxes(self.w, -1, -2)
        return PackedWeight(w_t) if w_t.ndim == 2 else np.ascontiguousarray(w_t).astype(np.float64)

    @property
    def shift(self) -> int:
        return self.in_frac + self.w_frac - self.out_frac

    @cached_property
    def b_round(self) -> np.ndarray:
        return self.b + round_bias(self.shift)

    def acc(self, x) -> np.ndarray:
        return matmul(x, self.w_t) + self.b

    def __call__(self, x) -> np.ndarray:
        """= requant(x @ w.T + b, shift), with the bias and rounding folded into one pass."""
        w = self.w_t
        if isinstance(w, PackedWeight) and self.b_round.ndim == 1 and self.b_round.shape[0] == w.n:
            acc = w.matmul(x, self.b_round)
        else:
            acc = matmul(x, w)
            acc += self.b_round
        return shift_sat_(acc, self.shift)


@dataclass(frozen=True, eq=False)
class QLayerNorm:
    gamma: np.ndarray   # int16 [..., C], frac g_frac
    beta: np.ndarray    # accumulator format, frac 16 + g_frac
    g_frac: int
    eps_q: int          # eps in the units of C^2 var (kernels.ln_eps_const)
    in_frac: int
    out_frac: int
    cls_eps_q: int | None = None    # eps of token row 0 when the CLS token has its own format (QBlock)

    def __call__(self, x) -> np.ndarray:
        eps = self.eps_q
        if self.cls_eps_q is not None:          # x [..., N, C]: row 0 is the CLS token
            eps = np.where(np.arange(np.shape(x)[-2]) == 0, self.cls_eps_q, self.eps_q)[:, None]
        return layernorm(x, self.in_frac, self.gamma, self.g_frac, self.beta, eps, self.out_frac)


@dataclass(frozen=True, eq=False)
class QAttention:
    q: QLinear
    k: QLinear
    v: QLinear
    proj: QLinear
    heads: int
    scale_mult: int     # round(head_dim^-0.5 * 2^15); 4096 (= 2^-3 exactly) for head_dim 64
    s_frac: int         # scores
    o_frac: int         # A.V output (heads concatenated)

    def __call__(self, x) -> np.ndarray:
        return self.attend(x)[0]

    def attend(self, x) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(output, the softmax probabilities P [..., H, N, N] int16 Q15, the CLS attention
        A [..., N]): A_j = sum_h of the CLS row of the same softmax rounded to 23 fraction bits
        (kernels.cls_attention; < H 2^23 + 1), the score EViT and Evo-ViT rank by."""
        *lead, n, c = x.shape
        dh = c // self.heads

        def split(t):  # [..., N, C] -> [..., H, N, dh]
            return np.swapaxes(t.reshape(*lead, n, self.heads, dh), -2, -3)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        acc = matmul(q, np.swapaxes(k, -1, -2))
        shift = self.q.out_frac + self.k.out_frac + 15 - self.s_frac
        m = self.scale_mult
        if m & (m - 1) == 0:        # a power of two (head_dim 64: 2^-3): the same value, one pass less
            shift -= m.bit_length() - 1
            acc += round_bias(shift)
            s = shift_sat_(acc, shift)
        else:
            s = requant_mul(acc, m, shift)
        p = softmax(s, self.s_frac)
        o = requant(matmul(p, v), PROB_FRAC + self.v.out_frac - self.o_frac)
        o = np.swapaxes(o, -2, -3).reshape(*lead, n, c)
        return self.proj(o), p, cls_attention(s[..., 0, :], self.s_frac).sum(-2)


def quantize_tokens(x, frac: int, cls_frac: int | None = None) -> np.ndarray:
    """Float tokens [..., N, C] -> int16 at `frac`, row 0 (the CLS token) at `cls_frac` when
    it has its own format (QBlock): how a float block input enters the integer model."""
    out = quantize(x, frac)
    if cls_frac is not None:
        out[..., 0, :] = quantize(np.asarray(x)[..., 0, :], cls_frac)
    return out


def dequantize_tokens(q, frac: int, cls_frac: int | None = None) -> np.ndarray:
    """The inverse of quantize_tokens: int16 tokens [..., N, C] -> float."""
    out = dequantize(q, frac)
    if cls_frac is not None:
        out[..., 0, :] = dequantize(np.asarray(q)[..., 0, :], cls_frac)
    return out


@dataclass(frozen=True, eq=False)
class QMlp:
    fc1: QLinear
    act: PWL
    fc2: QLinear

    def __call__(self, x) -> np.ndarray:
        return self.fc2(self.act(self.fc1(x)))


@dataclass(frozen=True, eq=False)
class QBlock:
    """x1 = x + Attn(LN1(x)), out = x1 + MLP(LN2(x1)) on the residual stream (formats in_frac,
    mid_frac, out_frac). With `cls_in` given (schemes whose decisions read the CLS token's
    attention: EViT, Evo-ViT) the CLS token, row 0, has its own formats cls_in, cls_mid,
    cls_out in the residual stream: it is much smaller than the patch tokens that set the
    stream's format (docs/arithmetic.md, "CLS token format")."""
    norm1: QLayerNorm
    attn: QAttention
    norm2: QLayerNorm
    mlp: QMlp
    in_frac: int
    mid_frac: int
    out_frac: int
    cls_in: int | None = None
    cls_mid: int | None = None
    cls_out: int | None = None

    def __call__(self, x, mid=None) -> np.ndarray:
        """`mid(x1, A) -> x1`: a scheme's hook on the attention residual x1 (at mid_frac) and
        the CLS attention A [..., N] (QAttention.attend), before the MLP (EViT selects there)."""
        if mid is None:
            x1 = self.residual(x, self.attn(self.norm1(x)), self.in_frac, self.cls_in, self.attn.proj.out_frac,
                               self.mid_frac, self.cls_mid)
        else:
            o, _, a = self.attn.attend(self.norm1(x))
            x1 = mid(self.residual(x, o, self.in_frac, self.cls_in, self.attn.proj.out_frac, self.mid_frac,
                                   self.cls_mid), a)
        return self.residual(x1, self.mlp(self.norm2(x1)), self.mid_frac, self.cls_mid, self.mlp.fc2.out_frac,
                             self.out_frac, self.cls_out)

    @staticmethod
    def residual(x, y, fx: int, cx, fy: int, fo: int, co) -> np.ndarray:
        """add_sat(x, fx, y, fy, fo) [..., N, C]; row 0 from format cx to co when given."""
        out = add_sat(x, fx, y, fy, fo)
        if cx is not None:
            out[..., :1, :] = add_sat(np.asarray(x)[..., :1, :], cx, y[..., :1, :], fy, co)
        return out


# ------------------------------------------------------------------ SPViT selector
MEAN_RECIP_BITS = 30     # global feature: mean = round(sum * floor(2^30 / count) / 2^30)
WEIGHT_RECIP_BITS = 36   # keep probability: m = round(num * floor(2^36 / den) / 2^36)
PACK_RECIP_BITS = 46     # package 'norm'/'mean': P = round(acc * floor(2^46 / sum m) / 2^46)


@dataclass(frozen=True)
class Selection:
    """What one selector stage decided for one image (indices into its input tokens)."""
    keep: np.ndarray       # bool [n_scored]: decision of each scored (patch) token
    score: np.ndarray      # int64 [n_scored]: sum_h w_h (z0_h - z1_h), frac 15 + z_frac
    weight: np.ndarray     # int64 [n_scored]: keep probability m, Q15
    order: np.ndarray      # int64 [n_out]: input index of each output token (-1: new package)


@dataclass(frozen=True, eq=False)
class QSelector:
    """Per-head scoring MLPs and head branch (spvit.txt Sec. 4.2), deterministic decision,
    package token (Sec. 4.3). Per-head layers are stacked on a leading head axis."""
    in_ln: QLayerNorm        # [H, 1, dh], eps 1e-5
    in_fc: QLinear           # [H, dh, dh]
    in_act: PWL
    out1: QLinear            # [H, dh/2, dh]
    act1: PWL
    out2: QLinear            # [H, dh/4, dh/2]
    act2: PWL
    out3: QLinear            # [H, 2, dh/4]
    se1: QLinear             # [H/2, H]
    se_act: PWL
    se2: QLinear             # [H, H/2]
    se_sig: PWL              # head weights w, Q15
    d_sig: PWL               # keep probability of one head: sigmoid(z0 - z1), 17-bit input, Q15
    heads: int
    res_frac: int            # format of the token stream (input and output)
    package_mode: str
    cap: int | None

    def scores(self, x, n_pkg: int):
        """z [H, n_scored, 2] and head weights w [n_scored, H] for tokens x[1 : N - n_pkg]."""
        n, c = x.shape
        h, dh = self.heads, c // self.heads
        cand = x[1:]                                                  # patches + earlier packages
        ns = n - 1 - n_pkg
        xh = np.swapaxes(cand.reshape(n - 1, h, dh), 0, 1)            # [H, n-1, dh]
        f = self.in_act(self.in_fc(self.in_ln(xh)))                   # [H, n-1, dh]
        cnt = n - 1
        glob = rshift_round(f[:, :, dh // 2:].sum(1, keepdims=True) * recip(cnt, MEAN_RECIP_BITS),
                            MEAN_RECIP_BITS)                          # [H, 1, dh/2], frac of f
        feat = np.concatenate([f[:, :ns, : dh // 2], np.broadcast_to(glob, (h, ns, dh // 2))], -1)
        z = self.out3(self.act2(self.out2(self.act1(self.out1(feat)))))   # [H, ns, 2]
        xbar = mean_channels(cand[:ns].reshape(ns, h, dh), self.res_frac)  # [ns, H], res_frac
        w = self.se_sig(self.se2(self.se_act(self.se1(xbar))))              # [ns, H], Q15
        return z, w

    def __call__(self, x, n_pkg: int) -> tuple[np.ndarray, Selection]:
        """One image: x int16 [N, C] = [CLS, patches..., packages (n_pkg)]. Returns the output
        tokens [CLS, kept patches (input order), earlier packages, new package]."""
        x = as_int(x)
        n = x.shape[0]
        z, w = self.scores(x, n_pkg)
        d = (z[:, :, 0] - z[:, :, 1]).T                               # [ns, H], 17-bit
        score = (w * d).sum(-1)                                       # < 2^35
        keep = score >= 0
        if self.cap is not None and keep.sum() > self.cap:
            rank = np.lexsort((np.arange(len(score)), -score))          # score desc, index asc
            top = np.zeros_like(keep)
            top[rank[: self.cap]] = True
            keep = keep & top
        num = (w * self.d_sig(d)).sum(-1)                             # < 2^34
        den = np.maximum(w.sum(-1), 1)                                # < 2^19
        m = rshift_round(num * recip(den, WEIGHT_RECIP_BITS), WEIGHT_RECIP_BITS)   # Q15
        pkg = package(x[1:1 + len(keep)][~keep], m[~keep], self.package_mode)
        ns = len(keep)
        kept = 1 + np.flatnonzero(keep)
        order = np.concatenate([[0], kept, np.arange(1 + ns, n), [-1]]).astype(np.int64)
        out = np.concatenate([x[order[:-1]], pkg[None]], 0)
        return out, Selection(keep, score, m, order)


def mean_channels(x, frac: int) -> np.ndarray:
    """Mean over the last axis (dh channels): sum * round(2^15 / dh) / 2^15 (exact for dh a
    power of two), kept at the input format."""
    dh = x.shape[-1]
    return requant_mul(as_int(x).sum(-1), round((1 << 15) / dh), 15)


def package(tokens, m, mode: str) -> np.ndarray:
    """Fuse dropped tokens (int16 [Q, C]) with keep probabilities m (Q15) into one token at the
    same format. 'sum': sum m_i n_i; 'norm': sum m_i n_i / sum m_i (spvit.txt Eq. 8);
    'mean': plain mean. No dropped token gives the zero token."""
    tokens = as_int(tokens)
    c = tokens.shape[-1]
    if len(tokens) == 0:
        return np.zeros(c, dtype=np.int64)
    mf = 0 if mode == "mean" else 15                                  # fraction bits of m
    if mode == "mean":
        m = np.ones(len(tokens), dtype=np.int64)
    acc = matmul(m[None], tokens)[0]                                  # frac mf + res, < 2^42
    if mode == "sum":
        return requant(acc, mf)
    total = int(m.sum())                                              # < 2^27
    if total == 0:
        return np.zeros(c, dtype=np.int64)
    return requant(acc * recip(total, PACK_RECIP_BITS), PACK_RECIP_BITS)   # m's scale cancels; < 2^61


# ------------------------------------------------------------------ the whole model
