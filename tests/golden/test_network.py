"""The integer network against the float twin (tolerances: golden vs float only), selector
semantics, determinism, and the float twin against an independent functional DeiT."""
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from golden.arith import INT16_MAX, INT16_MIN
from golden.config import PRESETS
from golden.float_model import DeiT
from golden.layers import package
from golden.random_model import random_images, random_model
from quant.calibrate import calibrate, quantize_images
from quant.selfcheck import compare, format_report
from tests.helpers import block_input


@pytest.fixture(scope="module")
def deit_tiny_spvit():
    cfg = PRESETS["spvit-deit-tiny"]
    imgs = random_images(cfg, 14, seed=1)
    model = random_model(cfg, seed=1, balance_with=imgs[:8])
    return model, calibrate(model, imgs[:8]), imgs[8:], imgs[:8]


def test_deit_tiny_with_selectors_against_float(deit_tiny_spvit, measured):
    model, q, imgs, _ = deit_tiny_spvit
    r = compare(model, q, imgs)
    measured(format_report(r, "spvit-deit-tiny, random weights, 6 test images"))
    assert min(r.block_sqnr) >= 40.0, r.block_sqnr
    assert r.logits_sqnr >= 30.0
    assert r.selector_agreement >= 0.99 and r.selector_tokens > 1000
    kept = r.kept_golden
    assert (kept[:, 0] > 20).all() and (kept[:, 0] < 176).all()     # decisions are non-trivial


def test_deit_tiny_without_selectors_against_float(measured):
    cfg = PRESETS["deit-tiny"]
    imgs = random_images(cfg, 8, seed=2)
    model = random_model(cfg, seed=2)
    r = compare(model, calibrate(model, imgs[:4]), imgs[4:])
    measured(format_report(r, "deit-tiny (no selector), random weights, 4 test images"))
    assert min(r.block_sqnr) >= 40.0 and r.logits_sqnr >= 30.0


@pytest.mark.parametrize("mode", ["norm", "sum", "mean"])
def test_mini_package_modes_against_float(mode, measured):
    cfg = dataclasses.replace(PRESETS["mini"], package_mode=mode)
    imgs = random_images(cfg, 40, seed=3)
    model = random_model(cfg, seed=3, balance_with=imgs[:16])
    r = compare(model, calibrate(model, imgs[:16]), imgs[16:])
    measured(format_report(r, f"mini, package_mode={mode}, 24 test images"))
    assert min(r.block_sqnr) >= 40.0 and r.logits_sqnr >= 30.0 and r.selector_agreement >= 0.99


def test_same_input_same_bits(deit_tiny_spvit):
    model, q, imgs, calib = deit_tiny_spvit
    x = quantize_images(imgs[:3], q)
    a, ka = q(x)
    b, kb = q(x.copy())
    c, kc = calibrate(model, calib)(x)   # rebuilt from scratch
    assert np.array_equal(a, b) and np.array_equal(ka, kb)
    assert np.array_equal(a, c) and np.array_equal(ka, kc)
    one = np.concatenate([q(x[i:i + 1])[0] for i in range(3)])        # batch-independent
    assert np.array_equal(a, one)
    for threads in (1, 2, 3):                                          # any batch split
        lt, kt = q(x, threads=threads)
        assert np.array_equal(a, lt) and np.array_equal(ka, kt)


def test_extreme_inputs_saturate_cleanly(deit_tiny_spvit):
    _, q, _, _ = deit_tiny_spvit
    shape = (2, 3, 224, 224)
    for img in (np.full(shape, INT16_MIN), np.full(shape, INT16_MAX),
                np.where(np.indices(shape).sum(0) % 2 == 0, INT16_MAX, INT16_MIN)):
        logits, kept = q(img)
        assert logits.dtype == np.int64 and logits.min() >= INT16_MIN and logits.max() <= INT16_MAX
        assert kept.shape == (2, 3)


# ------------------------------------------------------------------ selector semantics
@pytest.fixture(scope="module")
def mini():
    cfg = PRESETS["mini"]
    imgs = random_images(cfg, 12, seed=4)
    model = random_model(cfg, seed=4, balance_with=imgs[:8])
    q = calibrate(model, imgs[:8])
    x = q.embed(quantize_images(imgs[8:], q))
    return q, block_input(q, x, 2)         # tokens entering the first selector (before block 2)


def with_bias(sel, keep_bias):
    """Selector whose every head's logits are z = (keep_bias, 0) LSBs regardless of the input."""
    o3 = sel.out3
    w = np.zeros_like(o3.w)
    b = np.zeros_like(o3.b)
    b[..., 0] = keep_bias * 2 ** o3.shift
    return dataclasses.replace(sel, out3=dataclasses.replace(o3, w=w, b=b))


def test_selector_order_cls_and_package(mini):
    q, x = mini
    sel = q.selectors[2]
    out, s = sel(x[0], n_pkg=0)
    kept = np.flatnonzero(s.keep)
    assert s.order[0] == 0 and s.order[-1] == -1
    assert list(s.order[1:-1]) == list(1 + kept)                      # original order
    assert np.array_equal(out[0], x[0, 0]) and np.array_equal(out[1:-1], x[0, 1 + kept])
    assert np.array_equal(out[-1], package(x[0, 1:][~s.keep], s.weight[~s.keep], "norm"))
    # a second stage keeps the earlier package token as an always-kept token before the new one
    out2, s2 = q.selectors[4](out, n_pkg=1)
    assert len(s2.keep) == len(out) - 2
    assert np.array_equal(out2[-2], out[-1]) and s2.order[-2] == len(out) - 1


def test_selector_all_kept_none_kept_and_ties(mini):
    q, x = mini
    sel = q.selectors[2]
    n = x.shape[1] - 1
    out, s = with_bias(sel, 1 << 12)(x[0], 0)                          # everything kept
    assert s.keep.all() and len(out) == n + 2 and not out[-1].any()    # zero package token
    out, s = with_bias(sel, -(1 << 12))(x[0], 0)                       # nothing kept
    assert not s.keep.any() and len(out) == 2 and np.array_equal(out[0], x[0, 0])
    out, s = with_bias(sel, 0)(x[0], 0)                                # every score ties at 0
    assert (s.score == 0).all() and s.keep.all()


def test_selector_cap_ties_to_lower_index(mini):
    q, x = mini
    tie = dataclasses.replace(with_bias(q.selectors[2], 0), cap=5)
    _, s = tie(x[0], 0)
    assert list(np.flatnonzero(s.keep)) == [0, 1, 2, 3, 4]
    capped = dataclasses.replace(q.selectors[2], cap=3)
    _, free = q.selectors[2](x[1], 0)
    _, s = capped(x[1], 0)
    best = sorted(np.flatnonzero(free.keep), key=lambda i: (-free.score[i], i))[:3]
    assert sorted(np.flatnonzero(s.keep)) == sorted(best)


def test_package_modes_exact():
    t = np.array([[100, -200], [300, 400], [INT16_MIN, INT16_MAX]])
    m = np.array([1 << 14, 1 << 15, 0])                                # 0.5, 1.0, 0.0 (Q15)
    assert package(t, m, "sum").tolist() == [350, 300]                  # 0.5 t0 + t1
    assert package(t, m, "norm").tolist() == [233, 200]                 # (0.5 t0 + t1) / 1.5, rounded
    assert package(t, m, "mean").tolist() == [-10789, 10989]           # rounded means of the 3 rows
    assert package(t[:0], m[:0], "norm").tolist() == [0, 0]


# ------------------------------------------------------------------ float twin = timm's DeiT
def functional_deit(sd, cfg, img):
    """An independent DeiT forward written from timm's definition, reading the state_dict."""
    c, h = cfg.embed_dim, cfg.num_heads
    x = F.conv2d(img, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=cfg.patch_size)
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([sd["cls_token"].expand(len(x), -1, -1), x], 1) + sd["pos_embed"]
    for i in range(cfg.depth):
        p = f"blocks.{i}."
        y = F.layer_norm(x, (c,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], 1e-6)
        qkv = F.linear(y, sd[p + "attn.qkv.weight"], sd[p + "attn.qkv.bias"])
        q, k, v = qkv.reshape(len(x), -1, 3, h, c // h).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(x.shape)
        x = x + F.linear(a, sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
        y = F.layer_norm(x, (c,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], 1e-6)
        y = F.gelu(F.linear(y, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"]))
        x = x + F.linear(y, sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"])
    x = F.layer_norm(x, (c,), sd["norm.weight"], sd["norm.bias"], 1e-6)
    return F.linear(x[:, 0], sd["head.weight"], sd["head.bias"])


def test_float_twin_is_timm_deit():
    cfg = PRESETS["deit-tiny"]
    model = random_model(cfg, seed=5)
    with torch.no_grad():
        for p in model.parameters():                 # non-trivial LayerNorm affine and biases
            p.add_(0.02 * torch.randn_like(p))
        img = random_images(cfg, 2, seed=5)
        want = functional_deit(model.state_dict(), cfg, img)
        assert torch.allclose(model(img), want, atol=1e-5, rtol=1e-4)
    names = set(model.state_dict())
    assert {"cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.11.attn.qkv.bias",
            "blocks.0.mlp.fc2.weight", "norm.bias", "head.weight"} <= names


def test_spvit_state_dict_names():
    names = set(DeiT(PRESETS["spvit-deit-tiny"]).state_dict())
    for want in ("score_predictor.0.in_conv.2.0.weight", "score_predictor.2.in_conv.0.1.bias",
                 "score_predictor.1.out_conv.1.4.weight", "score_predictor.0.senet.0.weight",
                 "score_predictor.2.senet.2.bias"):
        assert want in names


@pytest.mark.parametrize("mult", [4096, 8192, 5793])
def test_attention_score_scaling_equals_requant_mul(mult):
    """The power-of-two shortcut for the head_dim^-0.5 scale gives requant_mul's bits."""
    from golden.arith import requant_mul
    from golden.layers import QAttention, QLinear
    rng = np.random.default_rng(mult)
    c, h, n = 32, 2, 9
    eye = QLinear(np.eye(c, dtype=np.int64) * (1 << 14), np.zeros(c, dtype=np.int64), 14, 10, 10)
    att = QAttention(eye, eye, eye, eye, h, mult, s_frac=9, o_frac=10)
    x = rng.integers(INT16_MIN, INT16_MAX + 1, (2, n, c))
    x[0, 0] = INT16_MIN
    q = np.swapaxes(x.reshape(2, n, h, c // h), 1, 2)
    want_s = requant_mul(np.einsum("bhnd,bhmd->bhnm", q, q), mult, 10 + 10 + 15 - 9)
    from golden.arith import requant
    from golden.kernels import softmax
    p = softmax(want_s, 9)
    o = requant(np.einsum("bhnm,bhmd->bhnd", p, q), 15 + 10 - 10)
    want = np.swapaxes(o, 1, 2).reshape(2, n, c)
    assert np.array_equal(att(x), want)


def test_keep_masks(deit_tiny_spvit):
    """return_masks: per image and stage the indices of the kept scored tokens, equal to the
    selectors' decisions replayed stage by stage, independent of the thread split; the plain
    call still returns (logits, kept)."""
    model, q, imgs, _ = deit_tiny_spvit
    x = quantize_images(imgs[:4], q)
    logits, kept = q(x, threads=1)
    l2, k2, masks = q(x, threads=2, return_masks=True)
    assert np.array_equal(logits, l2) and np.array_equal(kept, k2)
    assert len(masks) == 4 and all(len(m) == 3 for m in masks)
    for i in range(4):                                   # replay image i through the selectors
        t = q.embed(x[i:i + 1])[0]
        stage = 0
        for b, blk in enumerate(q.blocks):
            if b in q.selectors:
                t, sel = q.selectors[b](t, stage)
                assert np.array_equal(masks[i][stage], np.flatnonzero(sel.keep))
                assert len(masks[i][stage]) == kept[i, stage] and masks[i][stage].dtype == np.int64
                stage += 1
            t = blk(t[None])[0]
    assert len({tuple(m[0]) for m in masks}) > 1          # images decide differently
    model(imgs[:4])
    assert [len(m) for m in model.last_masks] == [3] * 4
    assert [[len(s) for s in m] for m in model.last_masks] == model.last_kept.tolist()
