"""No data loss: every writing command refuses existing targets without --force, never replaces
a directory of another kind or an input, checks writability before the work, and leaves no
temporary output behind on errors, Ctrl-C or SIGTERM."""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from base import errors
from base.errors import UsageError
from base.outputs import TMP_TAG, output_dir, output_file
from spvit import cli
from spvit.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _tree(root: Path) -> dict:
    """Every file under root with its bytes (hidden files included)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _no_temp(root: Path):
    left = [p for p in root.rglob("*") if TMP_TAG in p.name or ".spvit-old-" in p.name]
    assert not left, left


# ------------------------------------------------------------------ the module
def test_output_dir_commits_and_refuses(tmp_path):
    out = tmp_path / "a" / "b" / "o"
    with output_dir(out, "k", "a k directory") as tmp:
        (tmp / "manifest.json").write_text(json.dumps({"format": "k"}))
        (tmp / "x").write_text("1")
        assert not out.exists()
    assert (out / "x").read_text() == "1"
    with pytest.raises(UsageError, match="already exists and is not empty; pass --force"):
        with output_dir(out, "k", "a k directory"):
            pass
    with output_dir(out, "k", "a k directory", force=True) as tmp:       # same kind: replaced
        (tmp / "manifest.json").write_text(json.dumps({"format": "k"}))
    assert not (out / "x").exists()
    refused = r"is not a j directory \(it is a 'k' directory\); refusing to replace it even"
    with pytest.raises(UsageError, match=refused):
        with output_dir(out, "j", "a j directory", force=True):
            pass
    _no_temp(tmp_path)


def test_failure_removes_temp_and_created_parents(tmp_path):
    out = tmp_path / "new" / "deeper" / "o"
    with pytest.raises(RuntimeError):
        with output_dir(out, "k", "a k directory") as tmp:
            (tmp / "half").write_text("written")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    f = tmp_path / "f.json"
    f.write_text("keep")
    with pytest.raises(KeyboardInterrupt):
        with output_file(f, "a file", force=True) as tmp:
            tmp.write_text("new")
            raise KeyboardInterrupt
    assert f.read_text() == "keep" and [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_inputs_and_other_kinds_are_never_replaced(tmp_path):
    ck = tmp_path / "m.pth"
    ck.write_bytes(b"weights")
    with pytest.raises(UsageError, match="is the input .*m.pth'; writing there would destroy it"):
        with output_file(ck, "an ONNX file", force=True, inputs=[ck]):
            pass
    with pytest.raises(UsageError, match="is a directory holding the input"):
        with output_dir(tmp_path, "k", "a k directory", force=True, inputs=[ck]):
            pass
    pkg = tmp_path / "p.pkg"
    pkg.mkdir()
    (pkg / "manifest.json").write_text("{}")
    with pytest.raises(UsageError, match="lies inside the input folder .*p.pkg'; writing there would change it"):
        with output_file(pkg / "manifest.json", "a JSON report", force=True, inputs=[pkg]):
            pass
    assert (pkg / "manifest.json").read_text() == "{}"
    with pytest.raises(UsageError, match="exists and is a file, but a k directory is a directory"):
        with output_dir(ck, "k", "a k directory", force=True):
            pass
    with pytest.raises(UsageError, match="is a directory, but a file is a file"):
        with output_file(tmp_path, "a file", force=True):
            pass
    assert ck.read_bytes() == b"weights"


def _read_only_dir(tmp_path) -> Path:
    if os.geteuid() != 0:
        d = tmp_path / "ro"
        d.mkdir()
        d.chmod(0o555)
        return d
    if not os.access("/sys", os.W_OK) or not _writable("/sys"):     # root: a read-only mount
        return Path("/sys")
    pytest.skip("no read-only location available")


def _writable(d) -> bool:
    try:
        Path(d, ".spvit-probe").mkdir()
    except OSError:
        return False
    Path(d, ".spvit-probe").rmdir()
    return True


def test_read_only_target_fails_before_the_work(tmp_path, ckpt, monkeypatch, capsys):
    import quant.calibrate
    ro = _read_only_dir(tmp_path)
    called = []
    monkeypatch.setattr(quant.calibrate, "calibrate", lambda *a, **k: called.append(1))
    rc = main(["quantize", "--checkpoint", str(ckpt), "--config", "mini", "--calib", "digits",
               "--out", str(ro / "pkg")])
    err = capsys.readouterr().err
    assert rc == 2 and f"cannot write --out '{ro / 'pkg'}'" in err and "choose a writable location" in err
    assert called == []                                  # refused before calibration
    rc = main(["compare", "--checkpoint", str(ckpt), "--package", "nowhere", "--data", "digits",
               "--json", str(ro / "r.json")])
    assert rc == 2 and "cannot write --json" in capsys.readouterr().err


# ------------------------------------------------------------------ the commands
def test_export_onnx_never_destroys_the_checkpoint(tmp_path, ckpt, capsys):
    import shutil
    ck = tmp_path / "m.safetensors"
    shutil.copy(ckpt, ck)
    before = ck.read_bytes()
    for extra in ([], ["--force"]):
        rc = main(["export-onnx", "--checkpoint", str(ck), "--config", "mini", "--out", str(ck), *extra])
        assert rc == 2 and f"argument --out: must name a .onnx file (got '{ck}')" in capsys.readouterr().err
    assert ck.read_bytes() == before
    onnx_in = tmp_path / "m.onnx"                    # an ONNX checkpoint is an input like any other
    onnx_in.write_bytes(before)
    rc = main(["export-onnx", "--checkpoint", str(onnx_in), "--config", "mini", "--out", str(onnx_in), "--force"])
    assert rc == 2 and "is the input" in capsys.readouterr().err and onnx_in.read_bytes() == before
    other = tmp_path / "old.onnx"
    other.write_bytes(b"previous export")
    rc = main(["export-onnx", "--checkpoint", str(ck), "--config", "mini", "--out", str(other)])
    assert rc == 2 and "already exists; pass --force" in capsys.readouterr().err
    assert other.read_bytes() == b"previous export"
    assert main(["export-onnx", "--checkpoint", str(ck), "--config", "mini", "--out", str(other), "--force"]) == 0
    assert other.read_bytes()[:16] != b"previous export"
    _no_temp(tmp_path)


def test_generate_never_writes_into_a_package(tmp_path, package, capsys):
    import shutil
    pkg = tmp_path / "p.pkg"
    shutil.copytree(package, pkg)
    before = _tree(pkg)
    for extra in ([], ["--force"]):
        rc = main(["generate", "--hw", "mini", "--out", str(pkg), *extra])
        err = capsys.readouterr().err
        assert rc == 2, err
    assert "is not an RTL directory (it is a 'spvit-weight-package' directory)" in err
    assert _tree(pkg) == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("x")
    assert main(["generate", "--hw", "mini", "--out", str(mine)]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert _tree(mine) == {"notes.txt": b"x"}
    hw = tmp_path / "hw.toml"                                  # its own hardware file is an input
    hw.write_text('[hardware]\npreset = "mini"\n')
    assert main(["generate", "--hw", str(hw), "--out", str(hw), "--force"]) == 2
    assert "is the input" in capsys.readouterr().err and hw.read_text() == '[hardware]\npreset = "mini"\n'
    _no_temp(tmp_path)


class _Stop(Exception):
    pass


def test_demo_replaces_only_an_earlier_demo(tmp_path, monkeypatch, capsys):
    """`make demo` passes --force and runs twice: an earlier demo output (kind spvit-demo) may be
    replaced; the output is claimed before any work, and an interrupted demo leaves the old one."""
    import spvit.commands.sim

    def stop(args):
        assert TMP_TAG in args.out                              # writing into the temporary directory
        raise _Stop()
    monkeypatch.setattr(spvit.commands.sim, "cmd_quantize", stop)
    old = tmp_path / "demo"
    old.mkdir()
    (old / "manifest.json").write_text(json.dumps({"format": "spvit-demo", "files": []}))
    (old / "compare.json").write_text("{}")
    before = _tree(old)
    with pytest.raises(_Stop):
        main(["demo", "--out", str(old), "--force"])
    assert _tree(old) == before
    with pytest.raises(_Stop):
        main(["demo", "--out", str(tmp_path / "new" / "demo")])
    assert not (tmp_path / "new").exists()
    _no_temp(tmp_path)


def test_demo_and_quantize_refuse_foreign_directories(tmp_path, ckpt, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("x")
    assert main(["demo", "--out", str(mine)]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert main(["demo", "--out", str(mine), "--force"]) == 2
    assert "is not a demo output directory" in capsys.readouterr().err
    data = tmp_path / "data"
    (data / "a").mkdir(parents=True)
    rc = main(["quantize", "--checkpoint", str(ckpt), "--config", "mini", "--calib", str(data), "--out", str(data),
               "--force"])
    assert rc == 2 and "is the input" in capsys.readouterr().err
    assert _tree(mine) == {"thesis.tex": b"x"} and data.is_dir()


def test_compare_outputs_need_force(tmp_path, ckpt, package, capsys):
    js = tmp_path / "r.json"
    js.write_text("{}")
    rc = main(["compare", "--checkpoint", str(ckpt), "--package", str(package), "--data", "digits", "--limit", "2",
               "--json", str(js), "--no-progress"])
    assert rc == 2 and "--json" in capsys.readouterr().err and js.read_text() == "{}"
    rc = main(["compare", "--checkpoint", str(ckpt), "--package", str(package), "--data", "digits", "--limit", "2",
               "--json", str(js), "--no-progress", "--force", "--sqnr-images", "1"])
    assert rc == 0 and json.loads(js.read_text())["images"] == 2
    import shutil
    pkg = tmp_path / "p.pkg"
    shutil.copytree(package, pkg)
    before = _tree(pkg)
    rc = main(["compare", "--checkpoint", str(ckpt), "--package", str(pkg), "--data", "digits", "--limit", "2",
               "--json", str(pkg / "manifest.json"), "--force"])
    assert rc == 2 and "lies inside the input folder" in capsys.readouterr().err and _tree(pkg) == before
    _no_temp(tmp_path)


# ------------------------------------------------------------------ signals, pipes
def _wait_until(ready, p) -> None:
    t0 = time.time()
    while not ready():
        assert p.poll() is None and time.time() - t0 < 120, p.communicate()
        time.sleep(0.05)


def _generating(folder: Path):
    """`spvit generate --hw mini --out folder/rtl` in a process, once its temporary output exists."""
    p = _spvit(["generate", "--hw", "mini", "--out", str(folder / "rtl")])
    _wait_until(lambda: any(TMP_TAG in q.name for q in folder.iterdir()), p)
    return p


def _sigint_default():
    """A test process may run with SIGINT ignored (a pytest-xdist worker after Ray), which a child
    inherits; a user's shell gives spvit the default."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _spvit(args, cwd=ROOT, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT), SPVIT_THREADS="2")
    return subprocess.Popen([sys.executable, "-m", "spvit.cli", *args], cwd=cwd, env=env, preexec_fn=_sigint_default,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.parametrize("sig,code,word", [(signal.SIGTERM, 143, "terminated (SIGTERM)"),
                                           (signal.SIGINT, 130, "interrupted (Ctrl-C)")])
def test_signal_during_generate_cleans_up(tmp_path, sig, code, word):
    p = _generating(tmp_path)
    time.sleep(1.5)                                     # into the work (Verilog conversion, ~15 s)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == code, err
    assert err.strip() == f"spvit: {word}; stopped, temporary output removed", err
    assert list(tmp_path.iterdir()) == []


class _SignalInFinalizer:
    """Sends this process SIGINT from its __del__: the handler's KeyboardInterrupt is raised inside
    the finalizer, where Python only prints it (as with Amaranth's finalizers during generate)."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_ctrl_c_swallowed_by_a_finalizer_still_stops(tmp_path, monkeypatch, capsys):
    target = tmp_path / "out.json"

    def command(args):
        with output_file(target, "a test output") as tmp:
            tmp.write_text("{}")
            _SignalInFinalizer()                        # collected at once
            assert True                                 # the command goes on: the exception was swallowed
        return 0
    parser = argparse.ArgumentParser(prog="spvit")
    parser.set_defaults(func=command)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    old = signal.signal(signal.SIGINT, signal.default_int_handler)     # as in a user's shell
    try:
        assert main([]) == 130
    finally:
        signal.signal(signal.SIGINT, old)
    assert capsys.readouterr().err.strip().endswith("spvit: interrupted (Ctrl-C); stopped, temporary output removed")
    assert list(tmp_path.iterdir()) == []
    assert errors.STOP_SIGNALS == []      # the record ends with the call: later outputs in this process are not stopped
    with output_file(target, "a test output") as tmp:
        tmp.write_text("{}")
    assert target.read_text() == "{}"


def test_closed_stdout_is_not_a_traceback():
    p = _spvit(["info", "--config", "deit-small"])
    p.stdout.close()                                   # the reader went away (`| head -1`)
    err = p.stderr.read()
    p.wait(timeout=60)
    assert p.returncode == 141 and err == "", err


# ------------------------------------------------------------------ concurrency, stale temporaries
def _dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_concurrent_writer_is_refused_naming_the_first(tmp_path, ckpt, capsys):
    """While one command holds the target (here: this process, inside output_dir), a second
    `spvit quantize --out` of the same target exits 2 naming the first, before any work, and
    leaves the first one's output alone; once the first is done, the target is free again."""
    out = tmp_path / "p.pkg"
    with output_dir(out, "spvit-weight-package", "a weight package") as tmp:
        (tmp / "manifest.json").write_text(json.dumps({"format": "spvit-weight-package"}))
        rc = main(["quantize", "--checkpoint", str(ckpt), "--config", "mini", "--calib", "digits", "--calib-limit",
                   "2", "--out", str(out), "--force"])
        err = capsys.readouterr().err
        assert rc == 2
        assert f"--out '{out}' is being written by another spvit command (pid {os.getpid()}, started " in err
        assert "wait for it to finish or choose another path" in err, err
        assert tmp.is_dir()
    assert json.loads((out / "manifest.json").read_text()) == {"format": "spvit-weight-package"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.pkg"]          # lock file gone
    assert main(["quantize", "--checkpoint", str(ckpt), "--config", "mini", "--calib", "digits", "--calib-limit",
                 "2", "--out", str(out), "--force"]) == 0


def test_two_quantize_processes_at_once(tmp_path, ckpt):
    """The issue's race: two `spvit quantize --out X` at the same time. The first is held in its
    calibration until the second has finished (no timing luck involved); the second exits 2
    naming the first; the first's package is the one left, complete."""
    out, go = tmp_path / "x.pkg", tmp_path / "go"
    args = ["quantize", "--checkpoint", str(ckpt), "--config", "mini", "--calib", "digits", "--out", str(out),
            "--calib-limit"]
    held = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        import quant.calibrate
        real = quant.calibrate.calibrate
        def calibrate(*a, **k):
            while not Path({str(go)!r}).exists():
                time.sleep(0.05)
            return real(*a, **k)
        quant.calibrate.calibrate = calibrate
        from spvit.cli import main
        sys.argv = ["spvit", *sys.argv[1:]]
        sys.exit(main(sys.argv[1:]))
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT), SPVIT_THREADS="2")
    first = subprocess.Popen([sys.executable, "-c", held, *args, "8"], cwd=tmp_path, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lock = tmp_path / ".x.pkg.spvit-lock"
    _wait_until(lambda: lock.exists() and lock.read_text(), first)
    second = _spvit(args + ["2"], cwd=tmp_path)
    _, err2 = second.communicate(timeout=120)
    go.touch()
    out1, err1 = first.communicate(timeout=300)
    assert second.returncode == 2, err2
    assert err2 == (f"spvit: error: --out '{out}' is being written by another spvit command (pid {first.pid}, started "
                    f"{lock_started(err2)}: spvit {' '.join(args)} 8); wait for it to finish or choose another "
                    f"path\n"), err2
    assert first.returncode == 0 and "calibrated on 8 images" in out1, err1
    assert json.loads((out / "manifest.json").read_text())["calibration"]["images"] == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["go", "x.pkg"]


def lock_started(err: str) -> str:
    return err.split(", started ", 1)[1][:8]


def test_sigkill_leftovers_are_cleaned(tmp_path):
    """SIGKILL leaves the temporary directory and the lock file; the next output written to that
    folder removes them (their process is gone and nobody holds the lock), and a directory
    whose replacement never arrived is put back."""
    p = _generating(tmp_path)
    p.kill()
    p.wait()
    left = sorted(q.name for q in tmp_path.iterdir())
    assert len(left) == 2 and left[0] == ".rtl.spvit-lock" and left[1].startswith(f".rtl{TMP_TAG}{p.pid}-"), left
    dead = _dead_pid()
    old = tmp_path / f".pkg.spvit-old-{dead}-0123abcd"         # killed between the two renames
    old.mkdir()
    (old / "manifest.json").write_text(json.dumps({"format": "spvit-weight-package"}))
    mine = tmp_path / f".notes.txt{TMP_TAG}{os.getpid()}-0123abcd.txt"     # a live process's: kept
    mine.write_text("in progress")
    with output_file(tmp_path / "other.json", "a JSON report") as tmp:
        tmp.write_text("{}")
    names = sorted(q.name for q in tmp_path.iterdir())
    assert names == [mine.name, "other.json", "pkg"], names
    assert json.loads((tmp_path / "pkg" / "manifest.json").read_text())["format"] == "spvit-weight-package"


def test_no_output_inside_an_spvit_directory(tmp_path, package, capsys):
    """A package, image or RTL directory is never written into, whether or not it is an input of
    the command (`compare --json` of another package, `export-onnx --out IMG/x.onnx`), and a file
    target that is a device or a FIFO is never replaced."""
    import shutil
    pkg = tmp_path / "p.pkg"
    shutil.copytree(package, pkg)
    img = tmp_path / "i.img"
    img.mkdir()
    (img / "manifest.json").write_text(json.dumps({"format": "spvit-ddr-image"}))
    before = _tree(tmp_path)
    for target, kind in ((pkg / "notes" / "r.json", "spvit-weight-package"), (img / "x.onnx", "spvit-ddr-image")):
        with pytest.raises(UsageError, match=f"lies inside '{target.parent if kind == 'spvit-ddr-image' else pkg}', "
                                             f"a '{kind}' directory written by spvit; writing there would change it"):
            with output_file(target, "a file", force=True):
                pass
    with pytest.raises(UsageError, match="is a character device; refusing to replace it with a JSON report even"):
        with output_file("/dev/null", "a JSON report", force=True):
            pass
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match=r"is a named pipe \(FIFO\); refusing to replace it"):
        with output_file(fifo, "a JSON report", force=True):
            pass
    fifo.unlink()
    assert _tree(tmp_path) == before
