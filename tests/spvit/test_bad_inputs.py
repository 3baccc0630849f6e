"""The bad inputs of issue 15, each ending in a clear `spvit: error: ...` with exit status 2 (no
traceback, nothing written) or, where the input is fine but unusual, in a note or warning.
Their paths are also in the fuzz test's pools (test_fuzz_cli.py)."""
from __future__ import annotations

import re

import pytest

from spvit.cli import main
from tests.helpers import BAD_HW_NAME

MINI_DESC = 124          # descriptors of the mini model's program (golden/compiler.py)
NAME_RULE = (f"name must be letters, digits, '_' and '-' (at most 64, not starting with '-'): it names the Verilog "
             f"module spvit_accel_NAME and its file (got {BAD_HW_NAME!r})")
QUANTIZE = ["quantize", "--config", "mini", "--calib", "digits", "--calib-limit", "2", "--out", "{w}/o.pkg",
            "--checkpoint"]

CASES = [
    # 1. tracebacks before
    (["report", "--config", "mini,{d}/hw_desc.toml"],
     f"mini does not run on hardware hw_desc: the program of mini has {MINI_DESC} descriptors, more than desc_max 10 "
     f"of hardware hw_desc; to run it, use the hardware preset mini, or set desc_max = {MINI_DESC} in the [hardware] "
     f"table of hardware hw_desc"),
    (["compile", "--package", "{pkg}", "--hw", "{d}/hw_desc.toml", "--out", "{w}/i.img"],
     f"package '{{pkg}}': the program of mini has {MINI_DESC} descriptors, more than desc_max 10 of hardware hw_desc"),
    (QUANTIZE + ["{d}/sparse.pth"], "checkpoint '{d}/sparse.pth': entry 'norm.weight' (sparse_coo, float32) is a "
                                     "sparse tensor: save it dense (v.to_dense()); spvit reads dense float tensors"),
    (["generate", "--hw", "{d}/hw_name.toml", "--out", "{w}/rtl"], f"hardware file '{{d}}/hw_name.toml': {NAME_RULE}"),
    (["report", "--config", "mini,{d}/hw_name.toml"], f"hardware file '{{d}}/hw_name.toml': {NAME_RULE}"),
    (["compile", "--package", "{pkg}", "--hw", "{d}/hw_name.toml", "--out", "{w}/i.img"],
     f"hardware file '{{d}}/hw_name.toml': {NAME_RULE}"),
    # 2. silent wrong results before (the edited image: tests/rtl_gen/test_cli.py)
    (QUANTIZE + ["{d}/crc.pth"], "checkpoint '{d}/crc.pth' is corrupt: its member 'good/data/"),
    (QUANTIZE + ["{d}/legacy.pth"], "checkpoint '{d}/legacy.pth' is in torch's legacy format (saved by torch < 1.6 "
                                     "or with _use_new_zipfile_serialization=False), which has no checksums"),
    # 3. lost data before
    (["export-onnx", "--checkpoint", "{d}/good.pth", "--config", "mini", "--out", "{pkg}/manifest.json", "--force"],
     "argument --out: must name a .onnx file (got '{pkg}/manifest.json')"),
    (["export-onnx", "--checkpoint", "{d}/good.pth", "--config", "mini", "--out", "{w}/notes.md"],
     "argument --out: must name a .onnx file (got '{w}/notes.md')"),
    (["export-onnx", "--checkpoint", "{d}/good.pth", "--config", "mini", "--out", "{pkg}/x.onnx", "--force"],
     "--out '{pkg}/x.onnx' lies inside '{pkg}', a 'spvit-weight-package' directory written by spvit; writing there "
     "would change it: choose a path outside it"),
    # 4. misleading file-system messages before
    (QUANTIZE + ["{d}/dir.pth"], "checkpoint '{d}/dir.pth' is a directory, not a file"),
    (QUANTIZE + ["{d}/fifo.pth"], "checkpoint '{d}/fifo.pth' is a named pipe (FIFO), not a file"),
    (QUANTIZE + ["/dev/zero"], "checkpoint '/dev/zero' is a character device, not a file"),
    (["info", "--config", ""], "argument --config: must be a preset name or a .toml file (got an empty string)"),
    (["quantize", "--checkpoint", "{d}/good.pth", "--config", "mini", "--calib", "", "--out", "{w}/o.pkg"],
     "argument --calib: must be an image folder or digits[:split] (got an empty string)"),
    (["report", "--config", "mini", "--keep", "-0.1,0.5"], "argument --keep: rates must lie in [0, 1] (got -0.1,0.5)"),
    (["quantize", "--checkpoint", "{d}/good.pth", "--config", "mini", "--calib", "/proc/self", "--out", "{w}/o.pkg"],
     "data folder '/proc/self' is on a proc file system, which holds system information, not images"),
    (QUANTIZE + ["{d}/forged-key.pth"], "unexpected keys (1): evil\\n\\x1b[31mspvit: error: forged"),
    # 5. advice computed from the model
    (["report", "--config", "{d}/hd32.toml,zcu102"],
     'hardware zcu102 cannot run hd32: head_dim 32 is not a multiple of mac_cols 64; to run it, use the hardware '
     'preset small, or set mac_cols = 32 in a hardware TOML on top of [hardware] preset = "zcu102"'),
    (["compile", "--package", "{pkg}", "--hw", "{d}/cols32.toml", "--out", "{w}/i.img"],
     "hardware cols32 cannot run mini: head_dim 16 is not a multiple of mac_cols 32; to run it, use the hardware "
     "preset mini, or set mac_rows = 16, mac_cols = 16 in the [hardware] table of hardware cols32"),
    (["run", "--package", "{pkg}", "--hw", "{d}/cols32.toml"],               # refused before any simulation
     "hardware cols32 cannot run mini: head_dim 16 is not a multiple of mac_cols 32; to run it, use the hardware "
     "preset mini, or set mac_rows = 16, mac_cols = 16 in the [hardware] table of hardware cols32"),
    (["report", "--config", "{d}/base768.toml,zcu102"],
     'hardware zcu102 cannot run base768: embed_dim 768 > d_max 384; MLP hidden width 3072 > hidden_max 1536; to run '
     'it, set d_max = 768, hidden_max = 3072 in a hardware TOML on top of [hardware] preset = "zcu102"'),
]


@pytest.mark.parametrize("argv,msg", CASES, ids=[f"{i}-{c[0][0]}" for i, c in enumerate(CASES)])
def test_bad_input_exits_2_with_the_reason(argv, msg, bad_inputs, package, tmp_path, capsys):
    fill = {"d": str(bad_inputs), "pkg": str(package), "w": str(tmp_path)}
    rc = main([a.format(**fill) for a in argv])
    out, err = capsys.readouterr()
    assert rc == 2, (out, err)
    assert msg.format(**fill) in err and "Traceback" not in err, err
    lines = err.splitlines()
    assert sum(line.startswith(("spvit: error:", "spvit ")) and "error:" in line for line in lines) == 1, err
    assert "\x1b" not in err and list(tmp_path.iterdir()) == [], err


def test_forged_key_stays_on_its_line(bad_inputs, tmp_path, capsys):
    """A checkpoint key with a newline and an ANSI escape is printed escaped: one error line,
    no terminal control reaches the user."""
    assert main([a.format(w=tmp_path) for a in QUANTIZE] + [str(bad_inputs / "forged-key.pth")]) == 2
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if re.match(r"\s*spvit: error", line)] == [err.splitlines()[0]]
    assert "\x1b" not in err and "evil\\n\\x1b[31m" in err


def test_folder_unlike_the_model_input_is_announced(bad_inputs, tmp_path, capsys):
    """A model TOML without [preprocess] on a folder of 28x28 grey images: the preprocessing
    applied is printed, with a warning that the images are not 32x32; the images taken by
    --calib-limit are named."""
    rc = main(["quantize", "--checkpoint", str(bad_inputs / "good.pth"), "--config", str(bad_inputs / "mnist.toml"),
               "--calib", str(bad_inputs / "mnist"), "--calib-limit", "3", "--out", str(tmp_path / "p.pkg")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert (f"spvit: note: images of {bad_inputs / 'mnist'} become inputs by the default preprocessing (no "
            f"[preprocess] in config 'mnist'): convert to grey, resize the shorter side to 36 (bicubic), crop the "
            f"centre 32x32, scale to [0, 1], subtract mean 0.5, divide by std 0.5") in err
    assert (f"spvit: warning: the images of {bad_inputs / 'mnist'} do not look like the input of mnist: they are "
            f"28x28 pixels, the model takes 32x32") in err
    assert f"calibrated on 3 images of {bad_inputs / 'mnist'} (3 of 4, evenly spaced: a/0.png, b/0.png, b/1.png)" in out


def test_images_taken_are_named():
    """`--images N` (and --calib-limit, --limit) take N evenly spaced images and say which."""
    import argparse
    from types import SimpleNamespace

    from golden.config import PRESETS
    from spvit.commands.sim import input_images
    q = SimpleNamespace(cfg=PRESETS["mini"], img_frac=10)
    x, source = input_images(argparse.Namespace(data="digits:test", seed=0), q, 3)
    assert len(x) == 3 and source == "digits:test (3 of 600, evenly spaced: 0, 300, 599)"
    _, source = input_images(argparse.Namespace(data="digits:test", seed=0), q, 20)
    assert source == "digits:test (20 of 600, evenly spaced: 0, 32, 63, 95, 126, 158, ..., 599)"
