"""Masked SPViT training path and the ONNX export."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from quant.loaders import fit, read_checkpoint
from quant.onnx_export import export_onnx
from quant.train import masked_forward, spvit_loss


def test_masked_deterministic_forward_equals_float_twin(model, images):
    with torch.no_grad():
        ref = model(images)
        kept = model.last_kept
        logits, tokens, alive, fracs = masked_forward(model, images, "det")
    torch.testing.assert_close(logits, ref, atol=1e-5, rtol=1e-5)
    assert torch.equal((torch.stack(fracs, 1) * model.cfg.num_patches).round().long(), kept)
    assert len(set(kept[:, 1].tolist())) > 3        # decisions vary per image


def test_spvit_loss_trains_selectors(model, images):
    import copy
    m = copy.deepcopy(model).train()
    torch.manual_seed(0)
    with torch.no_grad():
        t_logits, t_tokens, _, _ = masked_forward(m, images[:8], "none")
    logits, tokens, alive, fracs = masked_forward(m, images[:8], "gumbel")
    loss, parts = spvit_loss(logits, torch.arange(8) % 10, t_logits, tokens, t_tokens, alive, fracs, [0.7, 0.4])
    assert set(parts) == {"ce", "kl", "distill", "ratio"} and torch.isfinite(loss)
    loss.backward()
    g = m.score_predictor[0].out_conv[0][4].weight.grad
    assert g is not None and float(g.abs().sum()) > 0
    # a very low sampling temperature makes the Gumbel decisions the deterministic ones (up to
    # tokens whose score is within float rounding of 0: the two formulas round differently)
    with torch.no_grad():
        lo = masked_forward(m.eval(), images, "gumbel", temp=1e-6)[3]
        det = masked_forward(m, images, "det")[3]
    p = model.cfg.num_patches
    diff = sum(int(((a - b) * p).abs().round().sum()) for a, b in zip(lo, det))
    assert diff <= 2, f"{diff} of {len(images) * p * len(lo)} decisions differ"


def test_onnx_export_matches_onnxruntime(tmp_path, model, images, cfg):
    ort = pytest.importorskip("onnxruntime")
    p = tmp_path / "mini.onnx"
    export_onnx(model, p)
    sess = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
    counts = set()
    with torch.no_grad():
        for i in range(8):
            x = images[i:i + 1]
            ref = model(x)
            logits, kept = sess.run(None, {"image": x.numpy()})
            np.testing.assert_allclose(logits, ref.numpy(), atol=1e-4, rtol=1e-4)
            assert np.array_equal(kept, model.last_kept[0].numpy())
            counts.add(tuple(kept))
    assert len(counts) > 2       # the graph decides per image, not a traced constant
    # ... and the ONNX file loads back as a checkpoint with the same weights
    sd = fit(read_checkpoint(p), cfg.model)
    for k, v in model.state_dict().items():
        assert torch.equal(sd[k], v), k


def test_threshold_calibration_hits_keep_targets(model, images):
    import copy

    from quant.train import calibrate_thresholds
    m = copy.deepcopy(model)
    deltas = calibrate_thresholds(m, images, [0.6, 0.3])
    assert len(deltas) == 2
    with torch.no_grad():
        m(images)
    frac = m.last_kept.float().mean(0) / m.cfg.num_patches
    assert abs(float(frac[0]) - 0.6) < 0.02 and abs(float(frac[1]) - 0.3) < 0.02, frac


def test_onnx_plain_deit_export_loads(tmp_path, cfg):
    """A timm-style export (batched 3-D Linear -> MatMul with an anonymous transposed weight
    + Add of the named bias) maps back to our names."""
    import dataclasses
    import warnings

    from golden.float_model import DeiT
    plain = dataclasses.replace(cfg.model, selector="none", selector_blocks=())
    m = DeiT(plain).eval()
    m.init_weights(seed=1)
    p = tmp_path / "deit.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Wrap(m), (torch.zeros(2, 1, 32, 32),), str(p), dynamo=False, opset_version=17)
    import onnx
    names = {i.name for i in onnx.load(str(p)).graph.initializer}
    assert any(n.startswith("onnx::MatMul") for n in names)     # the heuristic path is exercised
    sd = fit(read_checkpoint(p), plain)
    for k, v in m.state_dict().items():
        assert torch.equal(sd[k], v), k


class _Wrap(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)


def test_cli_export_onnx_then_quantize_from_onnx(tmp_path, ckpt, capsys):
    from quant.package import load_package
    from spvit.cli import main
    onnx_path = tmp_path / "m.onnx"
    assert main(["export-onnx", "--checkpoint", str(ckpt), "--config", "mini", "--out", str(onnx_path)]) == 0
    a, b = tmp_path / "a.pkg", tmp_path / "b.pkg"
    for src, out in ((ckpt, a), (onnx_path, b)):
        rc = main(["quantize", "--checkpoint", str(src), "--config", "mini", "--calib", "digits",
                   "--calib-limit", "4", "--out", str(out)])
        assert rc == 0, capsys.readouterr().err
    # the same weights through either format give the same integer blob
    assert (a / "weights.bin").read_bytes() == (b / "weights.bin").read_bytes()
    load_package(b)


def test_dynamicvit_masked_training_path():
    from golden.config import PRESETS
    from golden.random_model import random_images, random_model
    from quant.train import dynamicvit_loss
    cfg = PRESETS["mini-dynamicvit"]
    imgs = random_images(cfg, 6, seed=8)
    m = random_model(cfg, seed=8)
    with torch.no_grad():
        ref = m(imgs)
        logits, _, alive, fracs = masked_forward(m, imgs, "det")     # the inference top-k, by masking
    torch.testing.assert_close(logits, ref, atol=1e-5, rtol=1e-5)
    assert [round(float(f.mean()) * 64) for f in fracs] == [44, 31] and int(alive[:, 1:].sum(1)[0]) == 31
    with torch.no_grad():
        t_logits, t_tokens, _, _ = masked_forward(m, imgs, "none")
    logits, tokens, alive, fracs = masked_forward(m.train(), imgs, "gumbel")
    loss, parts = dynamicvit_loss(logits, torch.arange(6) % 10, t_logits, tokens, t_tokens, alive, fracs, [0.7, 0.49])
    assert set(parts) == {"ce", "kl", "distill", "ratio"} and parts["ratio"] > 0
    loss.backward()
    g = m.score_predictor[1].out_conv[4].weight.grad
    assert g is not None and float(g.abs().sum()) > 0


def test_onnx_export_refuses_other_schemes(tmp_path):
    from base.errors import UsageError
    from golden.config import PRESETS
    from golden.float_model import DeiT
    with pytest.raises(UsageError, match="ONNX export supports selector 'none' and 'spvit' \\(got 'evit'\\)"):
        export_onnx(DeiT(PRESETS["mini-evit"]), tmp_path / "x.onnx")
    assert not list(tmp_path.iterdir())
