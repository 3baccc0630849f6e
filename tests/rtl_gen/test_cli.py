"""spvit generate / compile / run / report: outputs, determinism, refusals with exit status 2."""
import json

from spvit.cli import main


def test_generate_is_deterministic_and_safe(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["generate", "--hw", "mini", "--out", str(a)]) == 0
    assert main(["generate", "--hw", "mini", "--out", str(b)]) == 0
    files = sorted(p.name for p in a.iterdir())
    assert files == ["manifest.json", "spvit_accel_mini.v", "spvit_regs.h", "spvit_regs.json", "spvit_regs.md"]
    for f in files:
        if f != "manifest.json":
            assert (a / f).read_bytes() == (b / f).read_bytes(), f
    man = json.loads((a / "manifest.json").read_text())
    assert man["format"] == "spvit-rtl" and man["hardware"]["mac_rows"] == 8 and "m_axi0" in man["ports"]
    v = (a / "spvit_accel_mini.v").read_text()
    assert "module spvit_accel_mini(" in v and "module spvit_ram " in v and "m_axi0__araddr" in v
    capsys.readouterr()
    assert main(["generate", "--hw", "mini", "--out", str(a)]) == 2          # exists: needs --force
    assert "--force" in capsys.readouterr().err
    assert main(["generate", "--hw", "mini", "--out", str(a), "--force"]) == 0


def test_generate_refuses_other_directories(tmp_path, demo_package, capsys):
    before = sorted(p.name for p in demo_package.iterdir())
    assert main(["generate", "--hw", "mini", "--out", str(demo_package), "--force"]) == 2
    assert sorted(p.name for p in demo_package.iterdir()) == before
    bad = tmp_path / "hw.toml"
    bad.write_text("[hardware]\nmac_rows = 'eight'\n")
    assert main(["generate", "--hw", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "mac_rows in [hardware] must be an integer (got the string 'eight')" in capsys.readouterr().err
    assert main(["generate", "--hw", "zcu", "--out", str(tmp_path / "x")]) == 2
    assert "unknown hardware 'zcu'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_compile_and_refuse_oversized(tmp_path, demo_package, capsys):
    out = tmp_path / "img"
    assert main(["compile", "--package", str(demo_package), "--hw", "mini", "--out", str(out)]) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["format"] == "spvit-ddr-image" and man["hardware"]["name"] == "mini"
    assert (out / "program.txt").read_text().splitlines()[0].split()[1] == "LOAD"
    out2 = tmp_path / "img2"
    assert main(["compile", "--package", str(demo_package), "--hw", "mini", "--out", str(out2)]) == 0
    assert (out / "image.bin").read_bytes() == (out2 / "image.bin").read_bytes()
    # a DeiT-T package does not fit the mini hardware: refused with the reasons, nothing written
    from golden.config import PRESETS
    from quant.calibrate import calibrated_random
    from quant.package import write_package
    q, _ = calibrated_random(PRESETS["spvit-deit-tiny"], 0, 2)
    big = tmp_path / "deit_t.pkg"
    write_package(q, big)
    capsys.readouterr()
    assert main(["compile", "--package", str(big), "--hw", "mini", "--out", str(tmp_path / "no")]) == 2
    err = capsys.readouterr().err
    assert "hardware mini cannot run spvit-deit-tiny: embed_dim 192 > d_max 64" in err
    assert ('to run it, use the hardware preset small or zcu102, or set n_max = 200, d_max = 192, hidden_max = 1008 '
            'in a hardware TOML on top of [hardware] preset = "mini"') in err
    assert not (tmp_path / "no").exists()


def test_report(capsys):
    assert main(["report", "--config", "spvit-deit-tiny,zcu102"]) == 0
    out = capsys.readouterr().out
    assert "MATMUL" in out and "board DSP efficiency" in out and "DDR" in out and "ms at 300 MHz" in out
    assert main(["report", "--config", "spvit-deit-tiny,mini"]) == 2
    assert "cannot run spvit-deit-tiny" in capsys.readouterr().err


def test_run_bit_exact(demo_package, capsys):
    """Two held-out digits through the generated mini top (the build is shared with tests/sim)."""
    assert main(["run", "--package", str(demo_package), "--hw", "mini", "--images", "2", "--pause", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "result: BIT-EXACT: 0 of" in out and "elements differ from the package's golden model" in out
    assert "image 1:" in out and "the cycle model, which assumes no pauses, gives" in out


def test_run_edited_image_is_a_mismatch(tmp_path, demo_package, capsys):
    """An image whose stream bytes were edited and whose manifest hash was recomputed runs on the
    RTL exactly as its interpreter says, but not as the package's golden model: MISMATCH (exit
    1), located as an image that does not match its package (not a hardware bug)."""
    import hashlib
    img = tmp_path / "i.img"
    assert main(["compile", "--package", str(demo_package), "--hw", "mini", "--out", str(img)]) == 0
    man = json.loads((img / "manifest.json").read_text())
    data = bytearray((img / "image.bin").read_bytes())
    s0, n = man["regions"]["stream"]["offset"], man["regions"]["stream"]["bytes"]
    off = s0 + n - 64                                  # the head's weights, far from the input
    assert off - s0 >= man["input"]["stream_offset"] + man["input"]["bytes"]
    data[off] ^= 0x55
    data[off + 1] ^= 0x55
    (img / "image.bin").write_bytes(bytes(data))
    man["sha256"] = hashlib.sha256(bytes(data)).hexdigest()
    (img / "manifest.json").write_text(json.dumps(man))
    capsys.readouterr()
    rc = main(["run", "--image", str(img), "--package", str(demo_package), "--images", "1", "--pause", "0.1"])
    out = capsys.readouterr().out
    assert rc == 1, out
    assert "result: MISMATCH: 1 of " in out and "elements differ from the package's golden model" in out
    assert "0 of " in out.split("golden model", 1)[1].split("from the image's program")[0], out      # RTL == program
    assert ("the RTL ran the image's program faithfully (RTL == interpreter), but that program does not compute "
            "the package's golden model") in out
    assert "image 0 logits at (0,): RTL " in out and " != golden model " in out, out


def test_compile_builds_every_scheme_and_checks_the_scheme_before_the_shapes(tmp_path, capsys, monkeypatch):
    """`spvit compile` builds DynamicViT, EViT and Evo-ViT images (the interpreter runs them:
    tests/golden/test_program.py); a scheme the compiler cannot lower is refused before any
    shape, also for a model that does not fit the hardware either (issue 18, item 3)."""
    import dataclasses

    import golden.compiler
    from golden.config import PRESETS
    from quant.calibrate import calibrated_random
    from quant.package import write_package
    q, _ = calibrated_random(PRESETS["mini-dynamicvit"], 0, 2)
    write_package(q, tmp_path / "dv.pkg")
    assert main(["compile", "--package", str(tmp_path / "dv.pkg"), "--hw", "mini", "--out", str(tmp_path / "img")]) == 0
    assert (tmp_path / "img" / "manifest.json").exists()
    wide = dataclasses.replace(PRESETS["mini-evit"], embed_dim=128)        # embed_dim 128 > d_max 64 of mini
    q, _ = calibrated_random(wide, 0, 2)
    write_package(q, tmp_path / "wide.pkg")
    compile_wide = ["compile", "--package", str(tmp_path / "wide.pkg"), "--hw", "mini", "--out", str(tmp_path / "no")]
    capsys.readouterr()
    assert main(compile_wide) == 2
    assert "embed_dim 128 > d_max 64" in capsys.readouterr().err
    # spvit run: a scheme the RTL would not run (every one runs now: EViT's flag turned off here)
    # is refused before the shapes (and before any simulator build)
    from golden.selectors.evit import EViT
    monkeypatch.setattr(EViT, "hardware", False)
    assert main(["run", "--package", str(tmp_path / "wide.pkg"), "--hw", "mini"]) == 2
    err = capsys.readouterr().err
    assert "token selection 'evit' (model mini-evit) has no hardware yet" in err and "d_max" not in err, err
    monkeypatch.setattr(golden.compiler, "LOWERED", ("none", "spvit"))
    assert main(compile_wide) == 2
    err = capsys.readouterr().err
    assert "token selection 'evit' (model mini-evit) has no accelerator program yet" in err, err
    assert "d_max" not in err and "Traceback" not in err
    assert not (tmp_path / "no").exists()
