"""The accelerator's program: compiler + interpreter equal the golden QModel forward bit for bit
(every preset, the demo model, package modes, caps), whatever the buffers held before; the same
inputs compile to the same bytes; every error code of golden/isa.py is reachable and reported
at the right descriptor."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from golden import isa
from golden.arith import quantize
from golden.compiler import compile_model
from golden.config import PRESETS
from golden.hw import HW_PRESETS, HardwareConfig
from golden.interp import Machine, read_results, run_image
from golden.tokens import Group, Record
from quant.calibrate import calibrated_random

MINI = HW_PRESETS["mini"]
SMALL = HW_PRESETS["small"]


def golden_blocks(q, x1) -> list:
    """The tokens leaving each block for one image x1 [1, ...]: QModel.run's loop of scheme hooks."""
    sch = q.cfg.scheme
    rec = Record(1, q.cfg)
    groups, out = [Group.start(q.embed(x1))], []
    for i, blk in enumerate(q.blocks):
        groups = [h for g in groups for h in sch.q_before(q, i, g, rec)]
        groups = [sch.q_block(q, i, blk, g, rec) for g in groups]
        assert len(groups) == 1
        out.append(groups[0].x[0])
    return out


def check_equal(q, img, x, junk=True):
    """The interpreter's logits, kept counts, keep masks and every block's tokens == golden's."""
    logits, kept, masks = q(x, return_masks=True)
    for i in range(len(x)):
        r = run_image(img, x[i], junk_seed=i if junk else None)
        assert np.array_equal(r.logits, logits[i]), f"image {i}: logits differ in {np.sum(r.logits != logits[i])}"
        assert np.array_equal(r.kept, kept[i]), f"image {i}: kept {r.kept} vs {kept[i]}"
        assert len(r.masks) == q.cfg.stages
        for stage, m in enumerate(r.masks):                                   # docs/selector.md, "Keep masks"
            assert np.array_equal(np.flatnonzero(m), masks[i][stage]), f"image {i} stage {stage}: keep masks differ"
        if not img.manifest["results"].get("block0"):                        # compiled without checkpoints
            continue
        assert sorted(r.checkpoints) == list(range(q.cfg.depth))
        for b, t in enumerate(golden_blocks(q, x[i:i + 1])):
            got = r.checkpoints[b]
            assert got.shape == t.shape and np.array_equal(got, t), \
                f"image {i} block {b}: tokens differ ({got.shape} vs {t.shape})"


@pytest.mark.parametrize("preset,hw", [("mini", MINI), ("spvit-deit-tiny", SMALL), ("deit-tiny", SMALL),
                                       ("spvit-deit-small", HW_PRESETS["zcu102"]),
                                       ("mini-dynamicvit", MINI), ("mini-evit", MINI), ("mini-evovit", MINI),
                                       ("dynamicvit-deit-tiny", SMALL), ("evit-deit-tiny", SMALL),
                                       ("evovit-deit-tiny", SMALL)])
def test_interpreter_equals_golden(preset, hw, measured):
    q, imgs = calibrated_random(preset, 0, 2)
    img = compile_model(q, hw, checkpoints=True)
    check_equal(q, img, quantize(imgs.numpy(), q.img_frac))
    measured(f"program {preset} on {hw.name}: {img.manifest['descriptors']} descriptors, {img.stream_len:,} stream "
             f"bytes; interpreter == golden forward (logits, kept counts, masks, every block) on 2 images")


@pytest.mark.parametrize("preset,changes", [
    ("mini-evit", {"keep_rate": (1.0,)}),                          # k = N - 1: prunes nothing, no fused token
    ("mini-evit", {"keep_rate": (0.3, 1.0), "fuse_token": False}),
    ("mini-evit", {"selector_blocks": (0, 1, 5), "keep_rate": (0.9,)}),   # the fused token is a candidate again
    ("mini-evovit", {"selector_blocks": (2, 3), "score_momentum": 1.0}),  # stages back to back
    ("mini-evovit", {"selector_blocks": (1, 5), "keep_rate": (0.9, 0.1), "score_momentum": 0.0}),
    ("mini-dynamicvit", {"selector_blocks": (1, 2, 5), "keep_rate": (0.5, 0.2, 0.02)}),   # one token left
])
def test_scheme_corner_cases(preset, changes):
    cfg = dataclasses.replace(PRESETS[preset], **changes)
    q, imgs = calibrated_random(cfg, 1, 2)
    img = compile_model(q, MINI, checkpoints=True)
    check_equal(q, img, quantize(imgs.numpy(), q.img_frac))


def test_evovit_write_back_converts_the_placeholders():
    """Evo-ViT DeiT-T, seed 2: the placeholders of the last stage (format of block 8's input) are
    put back in the last block's output format by a COPY before the pooled mean."""
    q, imgs = calibrated_random("evovit-deit-tiny", 2, 2)
    assert q.blocks[8].in_frac != q.blocks[-1].out_frac
    img = compile_model(q, SMALL, checkpoints=True)
    assert any("placeholders to the current format" in label for _, label in img.labels)
    check_equal(q, img, quantize(imgs.numpy(), q.img_frac))


@pytest.mark.slow
@pytest.mark.skipif(not __import__("base.settings", fromlist=["SLOW"]).SLOW,
                    reason="SPVIT_SLOW=1: the DeiT-S presets of DynamicViT, EViT and Evo-ViT on zcu102 (~1-2 min each)")
@pytest.mark.parametrize("preset", ["dynamicvit-deit-small", "evit-deit-small", "evovit-deit-small"])
def test_interpreter_equals_golden_deit_small(preset, measured):
    test_interpreter_equals_golden(preset, HW_PRESETS["zcu102"], measured)


@pytest.mark.parametrize("mode,cap", [("sum", None), ("mean", None), ("norm", (20, 5)), ("norm", (0,)),
                                      ("sum", (0, 3))])
def test_package_modes_and_caps(mode, cap):
    """Caps bind (cap 0: nothing kept, so the next stage scores no token at all)."""
    cfg = dataclasses.replace(PRESETS["mini"], package_mode=mode)
    q, imgs = calibrated_random(cfg, 1, 3)
    if cap:
        caps = {b: cap[min(s, len(cap) - 1)] for s, b in enumerate(sorted(q.selectors))}
        q = dataclasses.replace(q, selectors={b: dataclasses.replace(s, cap=caps[b]) for b, s in q.selectors.items()})
    img = compile_model(q, MINI)
    check_equal(q, img, quantize(imgs.numpy(), q.img_frac))


@pytest.mark.parametrize("preset,weights", [("mini", None), ("mini-dynamicvit", "mini_dynamicvit.safetensors"),
                                             ("mini-evit", "mini_evit.safetensors"),
                                             ("mini-evovit", "mini_evovit.safetensors")])
def test_committed_model_program(preset, weights):
    """The demo model and the committed scheme models (examples/) on 8 held-out digits."""
    from quant import DEMO_CHECKPOINT
    from quant.calibrate import calibrate
    from quant.data import load_data
    from quant.loaders import load_float_model
    cfg = PRESETS[preset]
    path = DEMO_CHECKPOINT if weights is None else DEMO_CHECKPOINT.with_name(weights)
    model = load_float_model(str(path), cfg)
    x, _ = load_data("digits:train", cfg, default_split="train").take(32).tensors()
    q = calibrate(model, x)
    test, _ = load_data("digits:test", cfg, default_split="test").take(8).tensors()
    img = compile_model(q, MINI, checkpoints=True)
    check_equal(q, img, quantize(test.numpy(), q.img_frac))


def test_same_inputs_same_bytes():
    q, _ = calibrated_random("mini", 0, 2)
    a, b = compile_model(q, MINI), compile_model(q, MINI)
    assert a.data == b.data and a.manifest == b.manifest


def test_image_save_load_keeps_the_model_config(tmp_path):
    """The image manifest records the model as packages do (golden.config.config_dict) and
    Image.load reads it back with the same type-checked conversion, [preprocess] included."""
    from base.errors import UsageError
    from golden.compiler import Image
    from golden.config import Preprocess
    cfg = dataclasses.replace(PRESETS["mini"], name="mnist-like", preprocess=Preprocess(
        mean=(0.1307,), std=(0.3081,), crop_mode="none", pad=2))
    q, _ = calibrated_random(cfg, 0, 2)
    img = compile_model(q, MINI)
    img.save(tmp_path / "i.img")
    back = Image.load(tmp_path / "i.img")
    assert back.cfg == cfg and back.data == img.data and back.hw == MINI
    m = json.loads((tmp_path / "i.img" / "manifest.json").read_text())
    m["model"]["preprocess"]["pad"] = "two"
    (tmp_path / "i.img" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(UsageError, match=r"malformed manifest \(pad in \[model.preprocess\] must be an integer"):
        Image.load(tmp_path / "i.img")


def test_oversized_model_is_refused():
    q, _ = calibrated_random("spvit-deit-tiny", 0, 2)
    with pytest.raises(ValueError, match="hardware mini cannot run .*embed_dim 192 > d_max 64"):
        compile_model(q, MINI)


# ---------------------------------------------------------------- error paths
@pytest.fixture(scope="module")
def mini_image():
    q, imgs = calibrated_random("mini", 0, 2)
    img = compile_model(q, MINI)
    return img, quantize(imgs.numpy(), q.img_frac)[0]


def _desc_at(img, i):
    return img.regions["program"][0] + i * isa.DESC_BYTES


def _find(img, op, pred=lambda d: True):
    for i, _ in img.labels:
        d = isa.decode(img.data[_desc_at(img, i):][:isa.DESC_BYTES])
        if d.op.name == op and pred(d):
            return i, d
    raise KeyError(op)


def _patch(ddr, img, i, op, **changes):
    d = isa.decode(bytes(ddr[_desc_at(img, i):][:isa.DESC_BYTES]))
    fields = {k: v for k, v in d.items() if k != "op"}
    fields.update(changes)
    ddr[_desc_at(img, i):_desc_at(img, i) + isa.DESC_BYTES] = isa.encode(op, **fields)


def _run(ddr, hw=MINI):
    with pytest.raises(isa.ProgramError) as e:
        Machine(hw, ddr).run()
    return e.value


def _header(ddr, **changes):
    h = isa.decode_header(bytes(ddr[:isa.HEADER_BYTES]))
    h.update(changes)
    ddr[:isa.HEADER_BYTES] = isa.encode_header(**h)


def test_errors_header(mini_image):
    """Every rule of golden.isa.HEADER_CHECKS, and the first broken rule wins when several are."""
    img, x = mini_image
    h = isa.decode_header(bytes(img.data[:isa.HEADER_BYTES]))
    assert MINI.axi_bits // 8 == 16 and h["desc_off"] % 64 == 0 and h["stream_off"] % 64 == 0
    for change, code in [({"magic": 0}, "BAD_HEADER"), ({"version": 9}, "BAD_HEADER"), ({"n_desc": 0}, "PROGRAM_SIZE"),
                         ({"n_desc": MINI.desc_max + 1}, "PROGRAM_SIZE"), ({"n_tokens": 0}, "BAD_TOKENS"),
                         ({"n_tokens": MINI.n_max + 1}, "BAD_TOKENS"),
                         ({"stream_len": h["stream_len"] + 8}, "BAD_HEADER"),
                         ({"desc_off": h["desc_off"] + 16}, "BAD_HEADER"),       # an AXI beat, not 64 bytes
                         ({"stream_off": h["stream_off"] + 32}, "BAD_HEADER"),
                         ({"desc_off": 1, "stream_off": 3}, "BAD_HEADER"),
                         ({"magic": 0, "n_desc": 0}, "BAD_HEADER"),
                         ({"n_desc": 0, "n_tokens": 0, "desc_off": 8}, "PROGRAM_SIZE"),
                         ({"n_tokens": 0, "stream_len": 1}, "BAD_TOKENS"),
                         ({"stream_len": 1, "desc_off": 8}, "BAD_HEADER")]:
        ddr = img.with_input(x)
        _header(ddr, **change)
        e = _run(ddr)
        assert (e.name, e.index) == (code, -1), change
    ddr = img.with_input(x)
    _header(ddr, desc_off=h["desc_off"] + 16)
    assert f"desc_off = {h['desc_off'] + 16}" in str(_run(ddr)), "the message names the field and its value"
    other = dataclasses.replace(MINI, n_max=MINI.n_max + 8)
    assert _run(img.with_input(x), other).name == "HW_MISMATCH"


def test_errors_descriptors(mini_image):
    img, x = mini_image
    i_mm, d_mm = _find(img, "MATMUL", lambda d: d["act"] == isa.ACT_LOAD)
    cases = [
        (i_mm, "MATMUL", {"k": MINI.k_max + 1}, "BAD_SHAPE"),
        (i_mm, "MATMUL", {"o_buf": d_mm["a_buf"]}, "BAD_SHAPE"),
        (i_mm, "MATMUL", {"act": isa.ACT_KEEP}, "NO_TABLE"),
        (i_mm, "MATMUL", {"pwl_nseg": MINI.pwl_max + 1}, "BAD_SHAPE"),
        (i_mm, "MATMUL", {"rows_n": 0, "rows": 0}, "BAD_TOKENS"),
        (i_mm, "MATMUL", {"rows_n": 0, "rows": MINI.n_max + 1}, "BAD_TOKENS"),
        (_find(img, "LAYERNORM")[0], "LAYERNORM", {"eps": 0}, "BAD_SHAPE"),
        (_find(img, "ATTENTION")[0], "ATTENTION", {"head_dim": 12}, "BAD_SHAPE"),
        (_find(img, "GMEAN")[0], "GMEAN", {"rows_n": 0, "rows": 1}, "BAD_TOKENS"),
        (_find(img, "DECIDE")[0], "DECIDE", {"stage": MINI.stages_max}, "BAD_SHAPE"),
        (_find(img, "DECIDE")[0], "DECIDE", {"n_pkg": 15, "rows_n": 0, "rows": 15}, "BAD_TOKENS"),
        (_find(img, "PACKAGE")[0], "PACKAGE", {"n_pkg": 3}, "BAD_TOKENS"),
        (_find(img, "COMPACT")[0], "COMPACT", {"d": 32}, "BAD_SHAPE"),
        (_find(img, "STORE")[0], "STORE", {"addr": 8}, "BAD_SHAPE"),
        (_find(img, "LOAD")[0], "LOAD", {"buf": isa.KB}, "BAD_SHAPE"),
    ]
    for i, op, change, code in cases:
        ddr = img.with_input(x)
        _patch(ddr, img, i, op, **change)
        e = _run(ddr)
        assert (e.name, e.index) == (code, i), (op, change, e)
    ddr = img.with_input(x)
    ddr[_desc_at(img, 5)] = 31                                 # unknown opcode
    assert (_run(ddr).name, _run(ddr).index) == ("BAD_OPCODE", 5)


def test_errors_of_the_scheme_operations(mini_image):
    """The checks of the operations DynamicViT, EViT and Evo-ViT use, each reached at its descriptor."""
    spvit_img, _ = mini_image
    i_cp = _find(spvit_img, "COMPACT")[0]
    progs = {}
    for preset in ("mini-dynamicvit", "mini-evit"):
        q, imgs = calibrated_random(preset, 0, 1)
        progs[preset] = compile_model(q, MINI), quantize(imgs.numpy(), q.img_frac)[0]
    dv, ev = progs["mini-dynamicvit"][0], progs["mini-evit"][0]
    i_sb, _ = _find(dv, "MATMUL", lambda d: d["o_buf"] == isa.SB)
    i_dk, _ = _find(dv, "DECIDE")
    i_at, _ = _find(ev, "ATTENTION", lambda d: d["score"] == 1)
    i_pk, _ = _find(ev, "PACKAGE")
    i_cr, _ = _find(ev, "COMPACT")
    i_gm, _ = _find(dv, "GMEAN")
    i_res, _ = _find(ev, "MATMUL", lambda d: d["row0"] == 1)
    cases = [
        ("mini", i_cp, "COMPACT", {"order": isa.ORDER_RANK}, "BAD_SHAPE"),          # rank order after a threshold
        ("mini-dynamicvit", i_sb, "MATMUL", {"shift": 3}, "BAD_SHAPE"),            # SB takes the bare accumulator
        ("mini-dynamicvit", i_dk, "DECIDE", {"k": MINI.n_max}, "BAD_TOKENS"),      # k above the candidates
        ("mini-dynamicvit", i_dk, "DECIDE", {"mode": 2}, "BAD_SHAPE"),
        ("mini-dynamicvit", i_dk, "DECIDE", {"n_pkg": 1}, "BAD_SHAPE"),
        ("mini-dynamicvit", i_gm, "GMEAN", {"shift": -31}, "BAD_SHAPE"),
        ("mini-evit", i_at, "ATTENTION", {"momentum": isa.ONE_Q15 + 1}, "BAD_SHAPE"),
        ("mini-evit", i_pk, "PACKAGE", {"mode": isa.PACKAGE_MODES["norm"]}, "BAD_SHAPE"),   # needs keep probabilities
        ("mini-evit", i_cr, "COMPACT", {"rest": 1, "order": isa.ORDER_POSITION}, "BAD_SHAPE"),
        ("mini-evit", i_res, "MATMUL", {"sa0": isa.ALIGN_MAX + 1}, "BAD_SHAPE"),
    ]
    for preset, i, op, change, code in cases:
        img, x = (spvit_img, mini_image[1]) if preset == "mini" else progs[preset]
        ddr = img.with_input(x)
        _patch(ddr, img, i, op, **change)
        e = _run(ddr)
        assert (e.name, e.index) == (code, i), (preset, op, change, e)
    ddr = dv.with_input(progs["mini-dynamicvit"][1])                 # COPY: in place only within one buffer
    ddr[_desc_at(dv, i_gm):_desc_at(dv, i_gm) + isa.DESC_BYTES] = isa.encode(
        "COPY", i_buf=0, i_c0=0, i_r0=1, o_buf=0, o_c0=0, o_r0=2, w=8, shift=0, rows=3)
    assert (_run(ddr).name, _run(ddr).index) == ("BAD_SHAPE", i_gm)


def test_errors_stream_and_end(mini_image):
    img, x = mini_image
    sb = MINI.stream_bytes
    ddr = img.with_input(x)
    _header(ddr, stream_len=img.stream_len - sb)
    assert _run(ddr).name == "STREAM_SHORT"
    ddr = img.with_input(x)
    _header(ddr, stream_len=img.stream_len + sb)
    e = _run(ddr)
    assert (e.name, e.index) == ("STREAM_LEFTOVER", img.manifest["descriptors"] - 1)
    ddr = img.with_input(x)
    end, _ = _find(img, "END")
    _patch(ddr, img, end, "GMEAN", buf=0, c0=0, w=1, rows=2)   # the last descriptor is no longer END
    e = _run(ddr)
    assert (e.name, e.index) == ("NO_END", img.manifest["descriptors"])
    r = read_results(img.manifest, Machine(MINI, img.with_input(x)).run().ddr)
    assert len(r.logits) == 10


def test_hardware_config_messages():
    with pytest.raises(Exception, match=r"mac_rows must divide mac_cols \(8 % 16 != 0\)"):
        HardwareConfig(mac_rows=16, mac_cols=8)
    with pytest.raises(Exception, match="hidden_max must be at least d_max"):
        HardwareConfig(d_max=512, hidden_max=256)
