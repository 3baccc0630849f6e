"""Calibration: choose per-tensor fraction bits from float activations, and build the integer
model (`golden.network.QModel`) from a float twin.

Every tensor the integer model stores is int16 with a power-of-two scale 2^-frac. For a
tensor whose calibrated magnitude is `a`, frac is the largest value with a * 2^frac <= 32767
(clamped to the configured range); `frac_overrides` in the config pins any name.
"""
from __future__ import annotations

import functools
import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from base.errors import ConfigError
from golden.arith import BIAS_LIMIT, INT16_MAX, INT16_MIN, quantize
from golden.config import PRESETS, FixedPointConfig, ModelConfig
from golden.float_model import DeiT
from golden.kernels import ln_eps_const, make_pwl
from golden.layers import QAttention, QBlock, QLayerNorm, QLinear, QMlp
from golden.network import QModel
from golden.random_model import random_images, random_model

from . import CALIBRATION_METHODS, schemes

PERCENTILE = 99.99


class Ranges:
    """Running statistics of every traced tensor: max |x|, the count of values, the exact `top`
    largest |x| (the tail that saturation clips) and a uniform random sample of |x| (at most
    `sample` values per call, at most `cap` per name) for percentiles and the MSE search."""

    def __init__(self, sample: int = 4096, seed: int = 0, cap: int = 1 << 16, top: int = 1024):
        self.maxabs: dict[str, float] = defaultdict(float)
        self.samples: dict[str, list] = defaultdict(list)
        self.rate: dict[str, float] = defaultdict(lambda: 1.0)
        self.stored: dict[str, int] = defaultdict(int)
        self.count: dict[str, int] = defaultdict(int)
        self.top: dict[str, torch.Tensor] = {}        # descending; merged from `pending` lazily
        self.thr: dict[str, float] = {}
        self.pending: dict[str, list] = defaultdict(list)
        self.pending_n: dict[str, int] = defaultdict(int)
        self.sample, self.cap, self.top_k = sample, cap, top
        self.gen = torch.Generator().manual_seed(seed)

    def __call__(self, name: str, t: torch.Tensor):
        a = t.detach().abs().flatten()
        if a.numel() == 0:
            return
        self.maxabs[name] = max(self.maxabs[name], float(a.max()))
        self.count[name] += a.numel()
        thr = self.thr.get(name)
        cand = a if thr is None else a[a > thr]        # only values that can enter the top set
        if cand.numel():
            self.pending[name].append(cand)
            self.pending_n[name] += cand.numel()
            if self.pending_n[name] > 8 * self.top_k:
                self._merge(name)
        if a.numel() > self.sample:
            a = a[torch.randint(a.numel(), (self.sample,), generator=self.gen)]
        if self.rate[name] < 1.0:   # every value seen has the same chance of being kept
            a = a[torch.rand(a.numel(), generator=self.gen) < self.rate[name]]
        self.samples[name].append(a.double())
        self.stored[name] += a.numel()
        if self.stored[name] > 2 * self.cap:
            s = torch.cat(self.samples[name])
            s = s[torch.rand(s.numel(), generator=self.gen) < 0.5]
            self.samples[name] = [s]
            self.stored[name] = s.numel()
            self.rate[name] /= 2

    def _merge(self, name: str) -> None:
        both = torch.cat(([self.top[name]] if name in self.top else []) + self.pending[name])
        self.top[name] = torch.topk(both, min(self.top_k, both.numel())).values
        self.pending[name], self.pending_n[name] = [], 0
        if len(self.top[name]) == self.top_k:
            self.thr[name] = float(self.top[name][-1])

    def largest(self, name: str) -> np.ndarray:
        """The `top` largest |x| seen (all of them if fewer), descending, float64."""
        if self.pending[name]:
            self._merge(name)
        return self.top[name].double().numpy()

    def value(self, name: str, method: str = "maxabs", pct: float = PERCENTILE) -> float:
        if method == "maxabs":
            return self.maxabs[name]
        s = torch.cat(self.samples[name])
        if s.numel() > 1 << 24:   # torch.quantile's input limit
            s = s[torch.randint(s.numel(), (1 << 24,), generator=self.gen)]
        return float(torch.quantile(s, pct / 100.0))

    def sq_error(self, name: str, f: int) -> float:
        """Estimated total squared int16 error (rounding and saturation) of the values seen at
        frac f: exact on the `top` largest values, the uniform sample of the rest scaled up to
        their count."""
        top = self.largest(name)
        s = torch.cat(self.samples[name]).numpy()
        rest = s[s < top.min()] if self.count[name] > len(top) else s[:0]
        scale = (self.count[name] - len(top)) / max(len(rest), 1)

        def err(v):
            q = np.clip(np.round(v * 2.0 ** f), INT16_MIN, INT16_MAX) * 2.0 ** -f
            return float(((q - v) ** 2).sum())
        return err(top) + scale * err(rest)

    def mse_frac(self, name: str, fp: FixedPointConfig) -> int:
        """The frac with the smallest estimated squared error, searched from the format that
        holds the calibrated maximum up to 4 bits finer (which clip the largest values); then
        `headroom_bits` coarser, as the other methods (so never finer-ranged than the errors
        justify, and never below max-abs with headroom)."""
        lo = frac_for(self.maxabs[name], fp)
        best, best_err = lo, float("inf")
        for f in range(lo, min(lo + 4, fp.frac_max) + 1):
            e = self.sq_error(name, f)
            if e < best_err:
                best, best_err = f, e
        return max(best - fp.headroom_bits, fp.frac_min)


def frac_for(a: float, fp: FixedPointConfig = FixedPointConfig()) -> int:
    """Largest frac with a * 2^frac <= 32767, clamped to [frac_min, frac_max]."""
    if not math.isfinite(a):
        raise ValueError(f"cannot choose a format for a non-finite range ({a})")
    f = fp.frac_max if a <= 0 else math.floor(math.log2(INT16_MAX / a))
    return int(min(max(f, fp.frac_min), fp.frac_max))


@torch.no_grad()
def collect_ranges(model: DeiT, images: torch.Tensor, batch: int = 16) -> Ranges:
    model.eval()
    r = Ranges()
    for i in range(0, len(images), batch):
        x = images[i:i + batch]
        r("img", x)
        model(x, trace=r)
    return r


def choose_formats(ranges: Ranges, fp: FixedPointConfig = FixedPointConfig(), method: str = "maxabs") -> dict:
    """Fraction bits per traced tensor: 'maxabs' and 'percentile' (the 99.99th percentile of
    |x|) leave `headroom_bits` above the calibrated range; 'mse' minimises the estimated
    quantisation error (Ranges.mse_frac), then leaves the same headroom. `fp.frac_overrides`
    pins names (unknown names are an error)."""
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be one of {CALIBRATION_METHODS} (got {method!r})")
    if method == "mse":
        fmt = {k: ranges.mse_frac(k, fp) for k in ranges.maxabs}
    else:
        fmt = {k: frac_for(ranges.value(k, method) * 2 ** fp.headroom_bits, fp) for k in ranges.maxabs}
    unknown = sorted(set(fp.frac_overrides) - set(fmt))
    if unknown:
        near = sorted(k for k in fmt if k.split(".")[-1] in {u.split(".")[-1] for u in unknown})[:6]
        raise ConfigError(f"frac_overrides name(s) {unknown} are not tensors of this model; valid names look "
                          f"like {near or sorted(fmt)[:6]} (see the formats in a package manifest)")
    fmt.update(fp.frac_overrides)
    return fmt


# ------------------------------------------------------------------ float twin -> QModel
def _t(x: torch.Tensor) -> np.ndarray:
    return x.detach().double().cpu().numpy()


def _wfrac(w: np.ndarray, fp: FixedPointConfig) -> int:
    return frac_for(float(np.abs(w).max()), fp)


def _bias(b: np.ndarray | None, frac: int, shape) -> np.ndarray:
    if b is None:
        return np.zeros(shape, dtype=np.int64)
    return quantize(b, frac, bits=47).clip(-BIAS_LIMIT + 1, BIAS_LIMIT - 1)


def qlinear(w, b, in_frac: int, out_frac: int, fp: FixedPointConfig) -> QLinear:
    """w float [..., out, in], b float [..., out] or None."""
    wf = _wfrac(w, fp)
    bq = _bias(b, in_frac + wf, w.shape[:-1])
    if bq.ndim > 1:
        bq = bq[..., None, :]   # stacked per-head layers broadcast over tokens
    return QLinear(quantize(w, wf), bq, wf, in_frac, out_frac)


def qlayernorm(gamma, beta, eps: float, in_frac: int, out_frac: int, fp: FixedPointConfig,
               cls_frac: int | None = None) -> QLayerNorm:
    """`cls_frac`: the format of token row 0 (the CLS token) when it has its own."""
    gf = _wfrac(gamma, fp)
    bq = _bias(beta, 16 + gf, gamma.shape)
    if bq.ndim > 1:
        bq = bq[..., None, :]
        gamma = gamma[..., None, :]
    c = gamma.shape[-1]
    return QLayerNorm(quantize(gamma, gf), bq, gf, ln_eps_const(eps, c, in_frac), in_frac, out_frac,
                      None if cls_frac is None else ln_eps_const(eps, c, cls_frac))


def _lin(m: torch.nn.Linear):
    return _t(m.weight), (None if m.bias is None else _t(m.bias))


@dataclass(frozen=True)
class Quantiser:
    """What a scheme's `quantize` (quant/schemes/) uses to build integer layers."""
    fp: FixedPointConfig = FixedPointConfig()

    array = staticmethod(_t)

    def linear(self, w, b, in_frac: int, out_frac: int) -> QLinear:
        return qlinear(w, b, in_frac, out_frac, self.fp)

    def layernorm(self, gamma, beta, eps: float, in_frac: int, out_frac: int) -> QLayerNorm:
        return qlayernorm(gamma, beta, eps, in_frac, out_frac, self.fp)


def to_qmodel(model: DeiT, fmt: dict, fp: FixedPointConfig = FixedPointConfig()) -> QModel:
    """Quantise a float twin with the given formats (tensor name -> frac)."""
    cfg = model.cfg
    c = cfg.embed_dim
    sd = {k: _t(v) for k, v in model.state_dict().items()}
    pw = sd["patch_embed.proj.weight"].reshape(c, -1)
    patch = qlinear(pw, sd["patch_embed.proj.bias"], fmt["img"], fmt["patch"], fp)
    pos = sd["pos_embed"][0]
    cls = (lambda name: fmt[name + ".cls"]) if cfg.scheme.cls_format else (lambda name: None)
    cls_row = quantize(sd["cls_token"][0, 0] + pos[0], fmt["res.0.cls" if cfg.scheme.cls_format else "res.0"])
    blocks = []
    for i, blk in enumerate(model.blocks):
        p = f"blocks.{i}."
        fin, fmid, fout = fmt[f"res.{i}"], fmt[p + "mid"], fmt[f"res.{i + 1}"]
        cin, cmid, cout = cls(f"res.{i}"), cls(p + "mid"), cls(f"res.{i + 1}")
        wq, bq = _lin(blk.attn.qkv)
        ln1 = qlayernorm(_t(blk.norm1.weight), _t(blk.norm1.bias), blk.norm1.eps, fin, fmt[p + "ln1"], fp, cin)
        q, k, v = (qlinear(wq[j * c:(j + 1) * c], bq[j * c:(j + 1) * c], fmt[p + "ln1"], fmt[p + n], fp)
                   for j, n in enumerate("qkv"))
        proj = qlinear(*_lin(blk.attn.proj), fmt[p + "o"], fmt[p + "proj"], fp)
        attn = QAttention(q, k, v, proj, cfg.num_heads, round(blk.attn.scale * (1 << 15)), fmt[p + "s"], fmt[p + "o"])
        ln2 = qlayernorm(_t(blk.norm2.weight), _t(blk.norm2.bias), blk.norm2.eps, fmid, fmt[p + "ln2"], fp, cmid)
        fc1 = qlinear(*_lin(blk.mlp.fc1), fmt[p + "ln2"], fmt[p + "h"], fp)
        fc2 = qlinear(*_lin(blk.mlp.fc2), fmt[p + "g"], fmt[p + "fc2"], fp)
        mlp = QMlp(fc1, make_pwl("gelu", fmt[p + "h"], fmt[p + "g"]), fc2)
        blocks.append(QBlock(ln1, attn, ln2, mlp, fin, fmid, fout, cin, cmid, cout))
    selectors = schemes.of(cfg).quantize(model, fmt, Quantiser(fp))
    norm = qlayernorm(sd["norm.weight"], sd["norm.bias"], model.norm.eps, fmt[cfg.scheme.readout_fmt(cfg)],
                      fmt["norm"], fp)
    head = qlinear(sd["head.weight"], sd["head.bias"], fmt["norm"], fmt["logits"], fp)
    pos_q = quantize(pos[1:], fmt["pos"])
    return QModel(cfg, dict(fmt), patch, cls_row, pos_q, tuple(blocks), selectors, norm, head)


def calibrate(model: DeiT, images: torch.Tensor, fp: FixedPointConfig = FixedPointConfig(),
              method: str = "maxabs") -> QModel:
    """Float twin + calibration images -> integer model."""
    fmt = choose_formats(collect_ranges(model, images), fp, method)
    return to_qmodel(model, fmt, fp)


def quantize_images(images: torch.Tensor, q: QModel) -> np.ndarray:
    return quantize(_t(images), q.img_frac)


@functools.lru_cache(maxsize=None)
def calibrated_random(preset: str | ModelConfig = "mini", seed: int = 0, n_img: int = 8) -> tuple[QModel, torch.Tensor]:
    """(QModel, float images): a random float twin (golden.random_model, its decisions made
    non-trivial on the images) calibrated on `n_img` random images, so weights and formats are
    realistic without a checkpoint: for `spvit report` and `spvit regress`, benches and tests.
    `preset`: a preset name or a ModelConfig. Cached: the same arguments give the same objects."""
    cfg = PRESETS[preset] if isinstance(preset, str) else preset
    imgs = random_images(cfg, n_img, seed)
    return calibrate(random_model(cfg, seed, imgs), imgs), imgs


__all__ = ["Ranges", "frac_for", "collect_ranges", "choose_formats", "to_qmodel", "calibrate",
           "quantize_images", "calibrated_random"]
