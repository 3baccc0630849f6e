"""Safe outputs: every file or directory a command writes goes through here.

    with output_dir(args.out, "spvit-rtl", "an RTL directory", force=args.force,
                    inputs=[args.config]) as tmp:
        ...                          # write into tmp, a fresh directory next to the target
    # left normally: tmp is renamed to args.out; left by an error, Ctrl-C or SIGTERM: removed

Checked when the context is entered, before any work (a bad target fails at once, not after an
hour of calibration):
- a target that is an input of the command, a directory holding one, or a path inside an
  input folder (a package, an image folder) is refused;
- an existing non-empty target is refused without --force;
- a directory is only ever replaced by output of the same kind: its `manifest.json` names the
  kind (`"format"`). A directory of another kind, a file where a directory goes or a directory
  where a file goes is refused even with --force;
- the temporary path is created in the target's directory up front: that proves the location is
  writable, and the final rename stays on one file system (atomic);
- directories created for the target are removed again if the command fails.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path

from .errors import UsageError

MANIFEST = "manifest.json"
TMP_TAG = ".spvit-tmp-"
OLD_TAG = ".spvit-old-"


def dir_kind(path) -> str | None:
    """The kind of an spvit output directory: the `format` of its manifest.json, else None."""
    try:
        m = json.loads((Path(path) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return m.get("format") if isinstance(m, dict) and isinstance(m.get("format"), str) else None


@contextmanager
def signals_blocked():
    """SIGINT and SIGTERM wait until the block is left (renames and clean-up are not cut short)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def _entries(path: Path) -> str:
    names = sorted(p.name for p in path.iterdir())
    more = f", ... ({len(names)} entries)" if len(names) > 3 else ""
    return ", ".join(names[:3]) + more


class Output:
    """A target path written through a temporary sibling (see the module docstring)."""

    def __init__(self, target, *, directory: bool, kind: str | None, what: str, force: bool = False,
                 inputs=(), option: str = "--out"):
        if not str(target).strip():
            raise UsageError(f"{option} is empty: give a path")
        self.target, self.directory, self.kind, self.what = Path(target), directory, kind, what
        self.force, self.inputs, self.option = force, [i for i in inputs if i], option
        self.tmp: Path | None = None
        self.created: list[Path] = []

    @property
    def label(self) -> str:
        return f"{self.option} {str(self.target)!r}"

    def check(self) -> None:
        t, label = self.target, self.label
        res = t.resolve()
        for i in self.inputs:
            ip = Path(i).resolve()
            if _inside(ip, res):
                what = "the input" if ip == res else "a directory holding the input"
                raise UsageError(f"{label} is {what} {str(i)!r}; writing there would destroy it: "
                                 f"choose another output path")
            if ip.is_dir() and _inside(res, ip):
                raise UsageError(f"{label} lies inside the input folder {str(i)!r}; writing there would change "
                                 f"it: choose another output path")
        if not (t.exists() or t.is_symlink()):
            return
        if self.directory:
            if not t.is_dir():
                raise UsageError(f"{label} exists and is a file, but {self.what} is a directory; "
                                 f"refusing to replace the file even with --force: choose another path")
            if not any(t.iterdir()):
                return
            if not self.force:
                raise UsageError(f"{label} already exists and is not empty; pass --force to replace it "
                                 f"or choose another path")
            found = dir_kind(t)
            if found != self.kind:
                held = f"it is a {found!r} directory" if found else f"it holds {_entries(t)}"
                raise UsageError(f"{label} is not {self.what} ({held}); refusing to replace it even "
                                 f"with --force: choose another path")
        else:
            if t.is_dir():
                raise UsageError(f"{label} is a directory, but {self.what} is a file; refusing to replace "
                                 f"a directory even with --force: choose a file path")
            if t.stat().st_size > 0 and not self.force:
                raise UsageError(f"{label} already exists; pass --force to replace it or choose another path")

    def _parents(self) -> None:
        p, missing = self.target.parent, []
        while not p.exists():
            missing.append(p)
            p = p.parent
        if not p.is_dir():
            raise UsageError(f"cannot write {self.label}: {str(p)!r} is a file, not a directory")
        for d in reversed(missing):
            d.mkdir()
            self.created.append(d)

    def __enter__(self) -> Path:
        self.check()
        name = self.target.name
        try:
            self._parents()
            tmp = self.target.parent / f".{name}{TMP_TAG}{os.getpid()}-{uuid.uuid4().hex[:8]}{self.target.suffix}"
            if self.directory:
                tmp.mkdir()
            else:
                tmp.touch()
            self.tmp = tmp
        except OSError as e:
            self._cleanup()
            raise UsageError(f"cannot write {self.label}: {e.strerror or e} ({e.filename}); choose a writable "
                             f"location") from None
        return self.tmp

    def _commit(self) -> None:
        t, tmp = self.target, self.tmp
        if not self.directory:
            os.replace(tmp, t)
            return
        if t.exists() or t.is_symlink():
            old = t.parent / f".{t.name}{OLD_TAG}{uuid.uuid4().hex[:8]}"
            os.rename(t, old)
            os.rename(tmp, t)
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink()
        else:
            os.rename(tmp, t)

    def _cleanup(self) -> None:
        if self.tmp is not None:
            if self.tmp.is_dir():
                shutil.rmtree(self.tmp, ignore_errors=True)
            elif self.tmp.exists():
                self.tmp.unlink()
        for d in reversed(self.created):
            try:
                d.rmdir()
            except OSError:
                pass

    def __exit__(self, et, ev, tb) -> bool:
        with signals_blocked():
            if et is None:
                try:
                    self._commit()
                except BaseException:
                    self._cleanup()
                    raise
            else:
                self._cleanup()
        return False


def output_dir(target, kind: str, what: str, *, force: bool = False, inputs=(), option: str = "--out") -> Output:
    """A directory output of `kind` (the `format` its manifest.json will carry)."""
    return Output(target, directory=True, kind=kind, what=what, force=force, inputs=inputs, option=option)


def output_file(target, what: str, *, force: bool = False, inputs=(), option: str = "--out") -> Output:
    return Output(target, directory=False, kind=None, what=what, force=force, inputs=inputs, option=option)
