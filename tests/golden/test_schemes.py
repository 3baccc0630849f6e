"""DynamicViT, EViT and Evo-ViT: the float twin against independent functional forwards written
from the authors' definitions (evaluation mode), golden vs float on DeiT-T shapes, and the
integer selection rules (order, ties, counts, fused token, running score, placeholders)."""
import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from golden.arith import INT16_MAX, INT16_MIN, add_sat, requant
from golden.config import PRESETS
from golden.kernels import CLS_ATTN_FRAC, PROB_FRAC
from golden.random_model import random_images, random_model
from golden.selectors import SCHEMES
from golden.selectors.evit import HEAD_RECIP_BITS, QEViTSelector
from golden.selectors.evovit import blend
from golden.tokens import Group, Record, rank_desc
from quant import schemes
from quant.calibrate import calibrate, quantize_images
from quant.selfcheck import compare, format_report, logits_and_flips, pooled_sqnr
from tests.helpers import block_input

SCHEME_NAMES = ("dynamicvit", "evit", "evovit")
torch.set_num_threads(1)     # small models: torch's thread pool only adds contention on a shared machine


# ------------------------------------------------------------------ independent functional forwards
def _attention(x, sd, p, heads):
    """timm attention on x [B, N, C] from a state_dict with timm names: (output, probabilities)."""
    b, n, c = x.shape
    qkv = F.linear(x, sd[p + "attn.qkv.weight"], sd[p + "attn.qkv.bias"]).reshape(b, n, 3, heads, c // heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)
    a = ((q @ k.transpose(-2, -1)) * (c // heads) ** -0.5).softmax(-1)
    return F.linear((a @ v).transpose(1, 2).reshape(b, n, c), sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"]), a


def _mlp(x, sd, p):
    c = x.shape[-1]
    h = F.layer_norm(x, (c,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], 1e-6)
    return F.linear(F.gelu(F.linear(h, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"])),
                    sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"])


def _embed(sd, cfg, img):
    x = F.conv2d(img, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=cfg.patch_size)
    x = x.flatten(2).transpose(1, 2)
    return torch.cat([sd["cls_token"].expand(len(x), -1, -1), x], 1) + sd["pos_embed"]


def _gather(x, idx):
    return torch.gather(x, 1, idx[..., None].expand(-1, -1, x.shape[-1]))


def functional_dynamicvit(sd, cfg, img):
    """models/dyvit.py, eval: PredictorLG on x[:, 1:]; score = log-probability of keeping
    (output 0); keep int(P * rho^(s+1)) by argsort (descending; stable for ties); CLS head."""
    c, rho = cfg.embed_dim, cfg.keep_rate[0]
    x = _embed(sd, cfg, img)
    ids = torch.arange(x.shape[1]).expand(len(x), -1)
    kept = []
    for i in range(cfg.depth):
        if i in cfg.selector_blocks:
            s = cfg.selector_blocks.index(i)
            p = f"score_predictor.{s}."
            t = F.layer_norm(x[:, 1:], (c,), sd[p + "in_conv.0.weight"], sd[p + "in_conv.0.bias"], 1e-5)
            t = F.gelu(F.linear(t, sd[p + "in_conv.1.weight"], sd[p + "in_conv.1.bias"]))
            t = torch.cat([t[..., : c // 2], t[..., c // 2:].mean(1, keepdim=True).expand(-1, t.shape[1], -1)], -1)
            for j in (0, 2):
                t = F.gelu(F.linear(t, sd[p + f"out_conv.{j}.weight"], sd[p + f"out_conv.{j}.bias"]))
            logp = F.log_softmax(F.linear(t, sd[p + "out_conv.4.weight"], sd[p + "out_conv.4.bias"]), -1)
            k = int(cfg.num_patches * rho ** (s + 1))
            keep = torch.argsort(logp[..., 0], dim=1, descending=True, stable=True)[:, :k]
            now = torch.cat([torch.zeros(len(x), 1, dtype=torch.long), keep + 1], 1)
            x, ids = _gather(x, now), torch.gather(ids, 1, now)
            kept.append(ids[:, 1:])
        p = f"blocks.{i}."
        x = x + _attention(F.layer_norm(x, (c,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], 1e-6), sd, p,
                           cfg.num_heads)[0]
        x = x + _mlp(x, sd, p)
    x = F.layer_norm(x, (c,), sd["norm.weight"], sd["norm.bias"], 1e-6)
    return F.linear(x[:, 0], sd["head.weight"], sd["head.bias"]), kept


def functional_evit(sd, cfg, img):
    """evit.py, eval: in the drop blocks, after the attention residual, topk(sorted) of the CLS
    attention averaged over heads, left = ceil(rate * (N - 1)); the rest fused as sum a_i x_i."""
    c = cfg.embed_dim
    x = _embed(sd, cfg, img)
    ids = torch.arange(x.shape[1]).expand(len(x), -1)
    kept = []
    for i in range(cfg.depth):
        p = f"blocks.{i}."
        y = F.layer_norm(x, (c,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], 1e-6)
        o, a = _attention(y, sd, p, cfg.num_heads)
        x = x + o
        if i in cfg.selector_blocks:
            s = cfg.selector_blocks.index(i)
            n = x.shape[1]
            left = math.ceil(cfg.keep_rate[0] * (n - 1))
            if left < n - 1:
                cls = a[:, :, 0, 1:].mean(1)
                _, idx = torch.topk(cls, left, dim=1, largest=True, sorted=True)
                mask = torch.ones_like(cls, dtype=torch.bool).scatter(1, idx, False)
                compl = torch.stack([torch.nonzero(m).squeeze(1) for m in mask])
                extra = (_gather(x[:, 1:], compl) * torch.gather(cls, 1, compl)[..., None]).sum(1, keepdim=True)
                kept.append(torch.gather(ids[:, 1:], 1, idx))
                x = torch.cat([x[:, :1], _gather(x[:, 1:], idx), extra], 1)
                ids = torch.cat([ids[:, :1], kept[-1], torch.full((len(x), 1), cfg.num_patches + 1 + s)], 1)
            else:
                kept.append(ids[:, 1:])
        x = x + _mlp(x, sd, p)
    x = F.layer_norm(x, (c,), sd["norm.weight"], sd["norm.bias"], 1e-6)
    return F.linear(x[:, 0], sd["head.weight"], sd["head.bias"]), kept


def functional_evovit(sd, cfg, img):
    """deit/evo_deit.py, eval, reading the authors' key layout (qks.i.qk, vs.i.v, norms.i,
    projs.i): cls_attn = sum over heads of the CLS row, blended (1 - t) old + t new with
    tradeoff 1 before the first stage and 0.5 after; at a stage start sort all patch tokens by
    cls_attn (descending, stable), x = x_[:, :N_ + 1]; only the top tokens' scores update; at
    a stage end x_[:, :N_ + 1] = x. Output head(norm(mean of the patch tokens))."""
    c, h = cfg.embed_dim, cfg.num_heads
    starts = list(cfg.selector_blocks)
    ends = [b - 1 for b in starts[1:]] + [cfg.depth - 1]
    x = _embed(sd, cfg, img)
    ids = torch.arange(x.shape[1]).expand(len(x), -1).clone()
    cls_attn, x_, n_, kept = None, None, None, []
    for i in range(cfg.depth):
        if i in starts:
            n_ = int(cfg.num_patches * cfg.keep_rate[0])
            cls_attn, idx = torch.sort(cls_attn, dim=1, descending=True, stable=True)
            x = torch.cat([x[:, :1], _gather(x[:, 1:], idx)], 1)
            ids = torch.cat([ids[:, :1], torch.gather(ids[:, 1:], 1, idx)], 1)
            kept.append(ids[:, 1:1 + n_])
            x_ = x
            x = x_[:, :n_ + 1]
        t = 1.0 if i < starts[0] else 0.5
        y = F.layer_norm(x, (c,), sd[f"norms.{i}.weight"], sd[f"norms.{i}.bias"], 1e-6)
        b, n, _ = y.shape
        qk = F.linear(y, sd[f"qks.{i}.qk.weight"], sd[f"qks.{i}.qk.bias"])
        qk = qk.reshape(b, n, 2, h, -1).permute(2, 0, 3, 1, 4)
        v = F.linear(y, sd[f"vs.{i}.v.weight"], sd[f"vs.{i}.v.bias"]).reshape(b, n, h, -1).transpose(1, 2)
        a = ((qk[0] @ qk[1].transpose(-2, -1)) * (c // h) ** -0.5).softmax(-1)
        new = a[:, :, 0, 1:].sum(1)
        if cls_attn is None or i < starts[0]:
            cls_attn = new if cls_attn is None else (1 - t) * cls_attn + t * new
        else:
            cls_attn = torch.cat([(1 - t) * cls_attn[:, :n_] + t * new, cls_attn[:, n_:]], 1)
        x = x + F.linear((a @ v).transpose(1, 2).reshape(b, n, c), sd[f"projs.{i}.weight"], sd[f"projs.{i}.bias"])
        x = x + _mlp(x, sd, f"blocks.{i}.")
        if i in ends:
            x = torch.cat([x, x_[:, n_ + 1:]], 1)
    x = F.layer_norm(x[:, 1:].mean(1), (c,), sd["norm.weight"], sd["norm.bias"], 1e-6)
    return F.linear(x, sd["head.weight"], sd["head.bias"]), kept


FUNCTIONAL = {"dynamicvit": functional_dynamicvit, "evit": functional_evit, "evovit": functional_evovit}


@pytest.mark.parametrize("name", SCHEME_NAMES)
@pytest.mark.parametrize("preset", ["mini", "deit-tiny"])
def test_float_twin_matches_authors_definition(name, preset):
    cfg = PRESETS[f"{name}-{preset}" if preset != "mini" else f"mini-{name}"]
    imgs = random_images(cfg, 3, seed=11)
    model = random_model(cfg, seed=11, balance_with=imgs)
    with torch.no_grad():
        for prm in model.parameters():                 # non-trivial LayerNorm affine and biases
            prm.add_(0.02 * torch.randn_like(prm))
        logits = model(imgs)
        sd = model.state_dict()
        if name == "evovit":
            sd = schemes.of(cfg).to_authors(sd)          # the functional forward reads the authors' names
            assert "qks.0.qk.weight" in sd and "blocks.0.attn.qkv.weight" not in sd
        want, kept = FUNCTIONAL[name](sd, cfg, imgs)
    torch.testing.assert_close(logits, want, atol=1e-5, rtol=0)
    rec = model.last_record
    for s, ids in enumerate(kept):                      # the same tokens kept at every stage
        mine = [set(np.flatnonzero(rec.alive[r, s])) for r in range(len(imgs))]
        assert mine == [set(row.tolist()) for row in ids], f"stage {s}"
    assert len({frozenset(m) for m in mine}) == len(imgs)       # decisions depend on the image


# ------------------------------------------------------------------ golden vs float, DeiT-T shapes
@pytest.mark.parametrize("name", SCHEME_NAMES)
def test_deit_tiny_golden_against_float(name, measured):
    cfg = PRESETS[f"{name}-deit-tiny"]
    imgs = random_images(cfg, 14, seed=1)
    model = random_model(cfg, seed=1, balance_with=imgs[:8])
    r = compare(model, calibrate(model, imgs[:8]), imgs[8:])
    measured(format_report(r, f"{cfg.name}, random weights, 8 calibration and 6 test images"))
    assert min(r.block_sqnr) >= 40.0, r.block_sqnr
    assert r.logits_sqnr >= 40.0                       # one seed; over five: test_deit_tiny_fidelity_over_seeds
    assert r.decision_agreement >= 0.99 and r.decision_tokens > 1000
    if name != "evovit":                                # Evo-ViT's decision reads the running score
        assert r.selector_agreement >= 0.99 and r.selector_tokens > 1000
    assert (r.kept_golden == r.kept_float).all()
    assert list(r.kept_golden[0]) == {"dynamicvit": [137, 96, 67], "evit": [138, 98, 70], "evovit": [98, 98]}[name]


FIDELITY_SEEDS = (0, 1, 2, 3, 4)      # spvit check's models, 16 test images each (80 per scheme)
FIDELITY_IMAGES = 16


@pytest.fixture(scope="module")
def fidelity():
    """Per scheme (EViT, Evo-ViT) and seed: quant.selfcheck.Fidelity of `spvit check --config
    <scheme>-deit-tiny --seed s --images 16` (both forwards only; ~3 s per seed)."""
    runs = {}

    def get(name):
        if name not in runs:
            cfg = PRESETS[f"{name}-deit-tiny"]
            runs[name] = []
            for seed in FIDELITY_SEEDS:
                imgs = random_images(cfg, 8 + FIDELITY_IMAGES, seed=seed)
                model = random_model(cfg, seed=seed, balance_with=imgs[:8])
                runs[name].append(logits_and_flips(model, calibrate(model, imgs[:8]), imgs[8:]))
        return runs[name]
    return get


FIDELITY = pytest.mark.xdist_group("deit-tiny-fidelity")   # one worker: the runs are computed once


@FIDELITY
@pytest.mark.parametrize("name", ["evit", "evovit"])
def test_deit_tiny_fidelity_over_seeds(name, fidelity, measured):
    """The int16 error on DeiT-T shapes over five seeds: images that decide as the float model
    are far above 40 dB at every seed; an image that keeps another token does so only at a near
    tie (the pair's float scores closer than a few rms errors of the integer scores, never equal
    integer scores ranked by position); such flips are rare; pooled over the 80 images the logits
    SQNR is >= 40 dB (docs/arithmetic.md, "EViT and Evo-ViT: decision flips")."""
    runs = fidelity(name)
    flips = [f for r in runs for f in r.flips]
    measured(f"{name}-deit-tiny, seeds {FIDELITY_SEEDS}, {FIDELITY_IMAGES} images each: logits SQNR " +
             ", ".join(f"{r.logits_sqnr:.1f}" for r in runs) + f" dB, pooled {pooled_sqnr(runs):.1f} dB; "
             f"images with a flip {len(flips)} of {len(runs) * FIDELITY_IMAGES}; without a flip " +
             ", ".join(f"{r.flip_free_sqnr:.1f}" for r in runs) + " dB")
    assert all(r.flip_free_sqnr >= 55.0 for r in runs), [r.flip_free_sqnr for r in runs]
    for f in flips:
        assert f.pairs and not f.integer_tie, f.describe()
        assert all(gap < 5 * f.score_error for _, _, gap, _ in f.pairs), f.describe()
    assert len(flips) <= 0.15 * len(runs) * FIDELITY_IMAGES        # measured 6 (EViT), 5 (Evo-ViT) of 80
    assert pooled_sqnr(runs) >= 40.0


@FIDELITY
@pytest.mark.parametrize("name", ["evit", pytest.param("evovit", marks=pytest.mark.xfail(
    strict=True, reason="one or two near-tie flips in 16 images cost Evo-ViT 28-33 dB each: seed 0 gives 38.6 dB "
                        "(docs/arithmetic.md, 'EViT and Evo-ViT: decision flips')"))])
def test_deit_tiny_logits_40db_every_seed(name, fidelity):
    """Issue 18's target, >= 40 dB at every seed (16 images each). Evo-ViT misses it: a strict
    xfail, so that meeting it fails here until the mark is removed."""
    assert min(r.logits_sqnr for r in fidelity(name)) >= 40.0, [round(r.logits_sqnr, 1) for r in fidelity(name)]


@pytest.mark.parametrize("name", SCHEME_NAMES)
def test_batch_split_and_repeat_same_bits(name):
    cfg = PRESETS[f"mini-{name}"]
    imgs = random_images(cfg, 13, seed=5)
    model = random_model(cfg, seed=5, balance_with=imgs[:8])
    q = calibrate(model, imgs[:8])
    x = quantize_images(imgs[8:], q)
    a, ka, ra = q(x, threads=1, return_record=True)
    for threads in (2, 3):
        b, kb, rb = q(x.copy(), threads=threads, return_record=True)
        assert np.array_equal(a, b) and np.array_equal(ka, kb) and np.array_equal(ra.alive, rb.alive)
    one = np.concatenate([q(x[i:i + 1])[0] for i in range(len(x))])
    assert np.array_equal(a, one)


@pytest.mark.parametrize("preset", ["mini", "mini-dynamicvit", "mini-evit", "mini-evovit"])
def test_keep_masks_every_scheme(preset):
    """docs/selector.md, "Keep masks": per image and stage the sorted indices of the kept tokens
    among the stage's candidates in their order there (stage 0: the patch tokens in raster
    order), the candidates of a later stage as the table there says, the same masks from
    QModel.forward(return_masks), the record and any thread split; the float twin's
    DeiT.last_masks have the same form. The top-k schemes record the scores they ranked."""
    cfg = PRESETS[preset]
    imgs = random_images(cfg, 12, seed=3)
    model = random_model(cfg, seed=3, balance_with=imgs[:8])
    q = calibrate(model, imgs[:8])
    x = quantize_images(imgs[8:], q)
    logits, kept, rec, masks = q(x, threads=1, return_record=True, return_masks=True)
    l2, k2, m2 = q(x, threads=2, return_masks=True)
    assert np.array_equal(logits, l2) and np.array_equal(kept, k2) and masks is rec.masks
    assert all(np.array_equal(a, b) for i in range(len(x)) for a, b in zip(masks[i], m2[i]))
    p = cfg.num_patches
    for i in range(len(x)):
        assert len(masks[i]) == cfg.stages
        for s in range(cfg.stages):
            m, cand, ids = masks[i][s], rec.cand_ids[i][s], rec.kept_ids(i, s)
            assert m.dtype == np.int64 and len(m) == kept[i, s] and (np.diff(m) > 0).all()
            assert np.array_equal(ids, cand[m]) and set(ids) == set(np.flatnonzero(rec.alive[i, s]))
            assert sorted(cand) == sorted(np.flatnonzero(rec.cand[i, s]))
            if s == 0:
                assert cand.tolist() == list(range(1, p + 1))
                continue
            prev = rec.kept_ids(i, s - 1)
            if preset == "mini":                       # kept tokens stay in order: masks compose
                assert cand.tolist() == prev.tolist()
                pos = m
                for t in reversed(range(s)):           # pos = masks[0][masks[1][...]]
                    pos = masks[i][t][pos]
                assert (ids - 1).tolist() == pos.tolist()
            elif preset == "mini-dynamicvit":          # the kept tokens, in descending score
                assert sorted(cand) == sorted(prev)
            elif preset == "mini-evit":                # the kept tokens, then the stage's fused token
                assert sorted(cand[:-1]) == sorted(prev) and cand[-1] == p + 1 + (s - 1)
            else:                                      # Evo-ViT: all patch tokens, the slow path first
                assert sorted(cand) == list(range(1, p + 1)) and sorted(cand[:len(prev)]) == sorted(prev)
    if preset != "mini":
        assert len({tuple(masks[i][0]) for i in range(len(x))}) > 1      # images decide differently
    model(imgs[8:])
    assert [[len(mm) for mm in im] for im in model.last_masks] == model.last_kept.tolist()
    assert model.last_masks is model.last_record.masks
    for r in (rec, model.last_record):         # the recorded scores are the ones the top-k ranked
        for i in range(len(x)):
            for s in range(cfg.stages):
                score = r.scores[i][s]
                if preset == "mini":               # SPViT decides by thresholds: no scores recorded
                    assert score is None
                    continue
                assert len(score) == len(r.cand_ids[i][s])
                assert sorted(rank_desc(score)[:len(r.masks[i][s])].tolist()) == r.masks[i][s].tolist()


def test_extreme_inputs(measured):
    for name in SCHEME_NAMES:
        cfg = PRESETS[f"mini-{name}"]
        imgs = random_images(cfg, 8, seed=6)
        q = calibrate(random_model(cfg, seed=6, balance_with=imgs), imgs)
        shape = (2, 1, 32, 32)
        for img in (np.full(shape, INT16_MIN), np.full(shape, INT16_MAX),
                    np.where(np.indices(shape).sum(0) % 2 == 0, INT16_MAX, INT16_MIN)):
            logits, kept = q(img)
            assert logits.min() >= INT16_MIN and logits.max() <= INT16_MAX and kept.shape == (2, cfg.stages)


# ------------------------------------------------------------------ registries
def test_every_scheme_has_both_sides():
    """golden.selectors (model, twin, counts) and quant.schemes (calibration, packages,
    checkpoints) hold the same schemes under the same names; each quant side's layer types are
    the golden objects its calibration makes."""
    assert list(schemes.SCHEMES) == list(SCHEMES)
    for name, sch in schemes.SCHEMES.items():
        assert sch.name == name and sch.golden is SCHEMES[name]
    assert schemes.SCHEMES["none"].q_types == () and all(s.q_types for n, s in schemes.SCHEMES.items() if n != "none")


# ------------------------------------------------------------------ counts
def test_keep_counts():
    dv, ev, eo = (SCHEMES[n] for n in SCHEME_NAMES)
    assert dv.counts(PRESETS["dynamicvit-deit-small"]) == [137, 96, 67]       # int(196 * 0.7^s)
    assert [n for n, _, _ in ev.counts(PRESETS["evit-deit-small"])] + [ev.counts(PRESETS["evit-deit-small"])[-1][2]] \
        == [196, 139, 99, 71]                                                  # the authors' 196 -> 139 -> 99 -> 71
    assert eo.counts(PRESETS["evovit-deit-small"]) == [98, 98]
    nofuse = dataclasses.replace(PRESETS["evit-deit-tiny"], fuse_token=False)
    assert [c[2] for c in ev.counts(nofuse)] == [138, 97, 68]
    full = dataclasses.replace(PRESETS["evit-deit-tiny"], keep_rate=(1.0,))
    assert ev.counts(full) == [(196, 196, 196)] * 3                            # nothing pruned, no fused token
    assert dv.counts(dataclasses.replace(PRESETS["mini-dynamicvit"], keep_rate=(0.9, 0.5))) == [57, 32]


# ------------------------------------------------------------------ the ranking rule
def test_rank_ties_go_to_the_lower_position():
    s = np.array([[5, 7, 7, 1, 7], [0, 0, 0, 0, 0]])
    assert rank_desc(s).tolist() == [[1, 2, 4, 0, 3], [0, 1, 2, 3, 4]]
    assert rank_desc(torch.tensor(s, dtype=torch.float32)).tolist() == [[1, 2, 4, 0, 3], [0, 1, 2, 3, 4]]


@pytest.fixture(scope="module")
def mini_q():
    out = {}
    for name in SCHEME_NAMES:
        cfg = PRESETS[f"mini-{name}"]
        imgs = random_images(cfg, 10, seed=4)
        model = random_model(cfg, seed=4, balance_with=imgs[:8])
        q = calibrate(model, imgs[:8])
        out[name] = (q, q.embed(quantize_images(imgs[8:], q)))
    return out


def test_dynamicvit_order_ties_and_count(mini_q):
    q, x = mini_q["dynamicvit"]
    x = block_input(q, x, 2)
    sel = q.selectors[2]
    out, order, s = sel(x)
    assert out.shape == (2, 1 + 44, 64) and (order[:, 0] == 0).all()
    assert np.array_equal(out[:, 0], x[:, 0])                                  # CLS first, unchanged
    assert all((np.diff(s[r, order[r, 1:] - 1]) <= 0).all() for r in range(2))   # descending score
    assert np.array_equal(out, np.take_along_axis(x, order[..., None], 1))
    flat = dataclasses.replace(sel, score=dataclasses.replace(sel.score, w=0 * sel.score.w, b=0 * sel.score.b))
    _, order, s = flat(x)                                                      # every score ties
    assert (s == 0).all() and order[:, 1:].tolist() == [list(range(1, 45))] * 2
    one = dataclasses.replace(sel, keep=1)
    assert one(x)[0].shape == (2, 2, 64)


def _qevit_reference(x1, a, keep, heads):
    """The fused token by Python integers (exact), the ranking by sorted()."""
    out = []
    for r in range(len(x1)):
        s = [int(v) for v in a[r, 1:]]
        order = sorted(range(len(s)), key=lambda i: (-s[i], i))
        drop = order[keep:]
        rec = (1 << HEAD_RECIP_BITS) // heads
        acc = [sum(s[i] * int(x1[r, 1 + i, ch]) for i in drop) for ch in range(x1.shape[-1])]
        shift = HEAD_RECIP_BITS + CLS_ATTN_FRAC
        fused = [max(INT16_MIN, min(INT16_MAX, (v * rec + (1 << (shift - 1))) >> shift)) for v in acc]
        out.append(([0] + [1 + i for i in order[:keep]], fused))
    return out


def test_evit_selection_fused_token_exact():
    rng = np.random.default_rng(0)
    b, h, n, c = 3, 3, 12, 8
    x1 = rng.integers(INT16_MIN, INT16_MAX + 1, (b, n, c))
    x1[0] = INT16_MIN                                                          # most negative everywhere
    logits = rng.normal(0, 2, (b, n))
    a = np.round(np.exp(logits) / np.exp(logits).sum(-1, keepdims=True) * h * (1 << CLS_ATTN_FRAC)).astype(np.int64)
    a[1, 1:] = 100                                                             # every score ties
    a[2, 2:6] = h << CLS_ATTN_FRAC                                             # the largest scores (all heads 1.0)
    sel = QEViTSelector(keep=5, fuse=True, heads=h)
    out, order, s = sel(x1, a)
    for r, (o, fused) in enumerate(_qevit_reference(x1, a, 5, h)):
        assert order[r, :-1].tolist() == o and order[r, -1] == -1
        assert out[r, -1].tolist() == fused
        assert np.array_equal(out[r, :-1], x1[r, o])
    assert order[1, 1:6].tolist() == [1, 2, 3, 4, 5]                           # ties: lower positions first
    y, o2, _ = QEViTSelector(keep=5, fuse=False, heads=h)(x1, a)
    assert y.shape == (b, 6, c) and np.array_equal(o2, order[:, :-1])
    y, o3, _ = QEViTSelector(keep=n - 1, fuse=True, heads=h)(x1, a)            # keep all: no fused token
    assert np.array_equal(y, x1) and o3.shape == (b, n)
    forced = order.copy()
    forced[:, 1:6] = forced[:, 1:6][:, ::-1]
    y, o4, _ = sel(x1, a, force=forced)                                        # a replayed choice
    assert np.array_equal(o4[:, 1:6], forced[:, 1:6]) and np.array_equal(y[:, -1], out[:, -1])


def test_evit_takes_the_blocks_own_softmax(mini_q):
    """The score is the CLS row of the block's own softmax (the E R products of golden.kernels
    softmax_product, rounded to 23 fraction bits instead of 15), summed over heads."""
    q, x = mini_q["evit"]
    x = block_input(q, x, 2)
    blk, sel = q.blocks[2], q.selectors[2]
    scores = []
    out = blk(x, mid=lambda x1, a: scores.append(a) or sel(x1, a)[0])
    g = Group.start(x)
    assert np.array_equal(q.cfg.scheme.q_block(q, 2, blk, g, Record(2, q.cfg)).x, out)
    o, p, a = blk.attn.attend(blk.norm1(x))
    assert np.array_equal(scores[0], a)
    assert np.abs((a >> (CLS_ATTN_FRAC - PROB_FRAC)) - p[:, :, 0].sum(1)).max() <= q.cfg.num_heads
    assert out.shape[1] == 1 + 45 + 1 and (g.ids[:, -1] == 65).all()


def test_cls_token_format(mini_q):
    """EViT and Evo-ViT give the CLS token (row 0) its own formats in the residual stream
    (golden.layers.QBlock): CLS formats equal to the stream's give the plain block bit for bit;
    otherwise row 0 goes through LN1 / LN2 with eps in its own units and through both residual
    adds from cls_in to cls_mid to cls_out, also where it saturates. DeiT, SPViT and DynamicViT
    have none (their results: tests/golden/test_unchanged_schemes.py)."""
    from golden.kernels import layernorm
    q, x = mini_q["evovit"]
    assert q.cfg.scheme.cls_format and all(b.cls_in is not None for b in q.blocks)
    assert q.cls_frac == q.blocks[0].cls_in == q.fmt["res.0.cls"] and q.fmt["res.0.cls"] > q.fmt["res.0"]
    blk = q.blocks[1]
    x = block_input(q, x, 1)
    plain = dataclasses.replace(blk, cls_in=None, cls_mid=None, cls_out=None,
                                norm1=dataclasses.replace(blk.norm1, cls_eps_q=None),
                                norm2=dataclasses.replace(blk.norm2, cls_eps_q=None))
    same = dataclasses.replace(blk, cls_in=blk.in_frac, cls_mid=blk.mid_frac, cls_out=blk.out_frac,
                               norm1=dataclasses.replace(blk.norm1, cls_eps_q=blk.norm1.eps_q),
                               norm2=dataclasses.replace(blk.norm2, cls_eps_q=blk.norm2.eps_q))
    assert np.array_equal(same(x), plain(x))
    x = x.copy()
    x[1, 0] = np.where(np.arange(x.shape[-1]) % 2, INT16_MAX, INT16_MIN)        # a saturated CLS token
    y = blk(x)
    ln = blk.norm1
    h0 = layernorm(x[:, :1], 0, ln.gamma, ln.g_frac, ln.beta, ln.cls_eps_q, ln.out_frac)
    assert np.array_equal(blk.norm1(x)[:, :1], h0)
    assert np.array_equal(blk.norm1(x)[:, 1:], plain.norm1(x)[:, 1:])
    o = blk.attn(blk.norm1(x))
    x1 = blk.residual(x, o, blk.in_frac, blk.cls_in, blk.attn.proj.out_frac, blk.mid_frac, blk.cls_mid)
    assert np.array_equal(x1[:, 0], add_sat(x[:, 0], blk.cls_in, o[:, 0], blk.attn.proj.out_frac, blk.cls_mid))
    assert np.array_equal(x1[:, 1:], add_sat(x[:, 1:], blk.in_frac, o[:, 1:], blk.attn.proj.out_frac, blk.mid_frac))
    f2 = blk.mlp(blk.norm2(x1))
    assert np.array_equal(y[:, 0], add_sat(x1[:, 0], blk.cls_mid, f2[:, 0], blk.mlp.fc2.out_frac, blk.cls_out))
    assert np.array_equal(y[:, 1:], add_sat(x1[:, 1:], blk.mid_frac, f2[:, 1:], blk.mlp.fc2.out_frac, blk.out_frac))
    assert INT16_MIN <= y.min() and y.max() <= INT16_MAX


def test_evovit_score_blend_exact():
    old, new = np.array([100, 101, -3, 7]), np.array([50, 50, 4, 7])
    assert blend(None, new, 1 << 14).tolist() == new.tolist()
    assert blend(old, new, 1 << 15).tolist() == new.tolist()                  # tradeoff 1: replace
    assert blend(old, new, 1 << 14).tolist() == [75, 76, 1, 7]                # halves round up
    assert blend(old, new, 0).tolist() == old.tolist()


def test_evovit_placeholders_frozen_and_put_back(mini_q):
    q, x = mini_q["evovit"]
    sch = q.cfg.scheme
    rec = Record(len(x), q.cfg)
    g = Group.start(x)
    for i in range(2):
        g = sch.q_block(q, i, q.blocks[i], sch.q_before(q, i, g, rec)[0], rec)
    score = g.state["score"].copy()
    g = sch.q_before(q, 2, g, rec)[0]                                          # stage 0: top 32 of 64
    assert g.x.shape[1] == 33 and g.state["parked"].shape[1] == 32
    order = rank_desc(score)
    assert np.array_equal(g.ids[:, 1:], 1 + order[:, :32]) and np.array_equal(g.state["park_ids"], 1 + order[:, 32:])
    parked, pf = g.state["parked"].copy(), g.state["park_frac"]
    for i in (2, 3):
        g = sch.q_block(q, i, q.blocks[i], g, rec)
    assert np.array_equal(g.state["parked"], parked)                           # frozen
    g = sch.q_before(q, 4, g, rec)[0]                                          # stage 1: merged, re-ranked
    merged_ids = set(g.ids[0, 1:]) | set(g.state["park_ids"][0])
    assert merged_ids == set(range(1, 65))
    back = {int(t): row for t, row in zip(g.state["park_ids"][0], g.state["parked"][0])}
    back.update({int(t): row for t, row in zip(g.ids[0, 1:], g.x[0, 1:])})
    f = q.blocks[4].in_frac
    for t, row in zip(1 + order[0, 32:], parked[0]):                           # put back, only re-formatted
        assert np.array_equal(back[int(t)], requant(row, pf - f))
    assert (rec.kept[:, :2] == 32).all()
