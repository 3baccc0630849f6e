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
  where a file goes is refused even with --force; so is a file target that is not a regular
  file (a device such as /dev/null, a FIFO: replacing it would break the system);
- the temporary path is created in the target's directory up front: that proves the location is
  writable, and the final rename stays on one file system (atomic);
- a target inside an spvit output directory (a weight package, an RTL or image directory, a
  demo or sweep output: a directory whose manifest.json has a `format` "spvit-...") is refused: writing
  there would change that output (`compare --json PKG/manifest.json`, `export-onnx --out
  IMG/x.onnx`);
- directories created for the target are removed again if the command fails.

Concurrent commands: the target is locked from the check to the rename (`flock` on a lock
file `.NAME.spvit-lock` next to it, holding the owner's pid and command line), so a second
command writing the same target at the same time exits with status 2 naming the first instead
of replacing its output. The kernel releases the lock when its process dies, even by SIGKILL.

Temporary paths carry the owner's pid (`.NAME.spvit-tmp-PID-XXXXXXXX`, `.NAME.spvit-old-PID-...`
while a directory is being replaced). One left behind by a process that no longer runs (killed
by SIGKILL, a power cut) is removed the next time an output is written to that folder, once
its target's lock proves nobody is writing it (so are lock files nobody holds); a replaced
directory whose new version never arrived is put back.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import signal
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from .errors import UsageError, notice, raise_if_stopped, shown
from .inputs import path_kind

MANIFEST = "manifest.json"
TMP_TAG = ".spvit-tmp-"
OLD_TAG = ".spvit-old-"
LOCK_TAG = ".spvit-lock"
KIND_PREFIX = "spvit-"          # every kind of spvit output directory (package, RTL, image, demo, sweep)


def dir_kind(path) -> str | None:
    """The kind of an spvit output directory: the `format` of its manifest.json, else None."""
    try:
        m = json.loads((Path(path) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return m.get("format") if isinstance(m, dict) and isinstance(m.get("format"), str) else None


def enclosing_output(path) -> tuple[Path, str] | None:
    """(directory, kind) of the nearest spvit output directory (its manifest's format is
    `spvit-...`) that holds `path` (not `path` itself), else None."""
    for d in Path(path).resolve().parents:
        kind = dir_kind(d)
        if kind and kind.startswith(KIND_PREFIX):
            return d, kind
    return None


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
    names = sorted(shown(p.name) for p in path.iterdir())
    more = f", ... ({len(names)} entries)" if len(names) > 3 else ""
    return ", ".join(names[:3]) + more


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:          # another user's process
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


# ------------------------------------------------------------------ the lock of a target
class TargetLock:
    """An exclusive lock on writing `target`: flock on `.NAME.spvit-lock` in the target's
    directory, which records the holder (pid, start time, command line) for the message a
    second writer gets. Released, and the file removed, by `release`; a dead holder's lock is
    released by the kernel, and its file is reused."""

    def __init__(self, target: Path):
        self.path = target.parent / f".{target.name}{LOCK_TAG}"
        self.fd: int | None = None

    def acquire(self) -> str | None:
        """Take the lock: None, or a description of the process holding it."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                return holder
            except OSError as e:
                if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    os.close(fd)
                    raise
                self.fd = fd             # a file system without locks: proceed unlocked
                return None
            try:                         # the previous holder may have removed the file meanwhile
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        cmd = " ".join([Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]])
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}, started {time.strftime('%H:%M:%S')}: {cmd}\n".encode())
        self.fd = fd
        return None

    def release(self) -> None:
        if self.fd is not None:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            os.close(self.fd)
            self.fd = None


def _holder(fd: int) -> str:
    for _ in range(20):                  # the holder writes its line right after taking the lock
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        if text:
            return shown(text)
        time.sleep(0.01)
    return "another process"


def clean_stale(folder: Path, own: Path | None = None) -> None:
    """Remove the temporary paths in `folder` left by spvit processes that no longer run (pid in
    the name gone, and the target's lock free: no other host is writing it either) and their
    lock files; put back a directory whose replacement never arrived. `own`: a target whose
    lock the caller holds."""
    try:
        names = [n for n in os.listdir(folder) if n.startswith(".") and (TMP_TAG in n or OLD_TAG in n
                                                                        or n.endswith(LOCK_TAG))]
    except OSError:
        return
    for name in names:
        if name.endswith(LOCK_TAG):
            tag, target, pid = LOCK_TAG, name[1:-len(LOCK_TAG)], ""
        else:
            tag = TMP_TAG if TMP_TAG in name else OLD_TAG
            target, _, rest = name[1:].rpartition(tag)
            pid = rest.partition("-")[0]
            if not pid.isdigit() or _alive(int(pid)):
                continue
        target_path = folder / target
        if not target or (target_path == own and tag == LOCK_TAG):
            continue
        lock = None
        if target_path != own:
            lock = TargetLock(target_path)
            try:
                if lock.acquire() is not None:
                    continue
            except OSError:
                continue
        try:
            stale = folder / name
            if tag == OLD_TAG and not (target_path.exists() or target_path.is_symlink()):
                os.rename(stale, target_path)
                notice(f"put back {shown(target_path)}: an spvit command (pid {pid}) was killed while replacing it")
            elif tag != LOCK_TAG:
                _remove(stale)
        except OSError:
            pass
        finally:
            if lock is not None:
                lock.release()                    # removes a stale lock file too


# ------------------------------------------------------------------ outputs
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
        self.lock: TargetLock | None = None

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
        holder = enclosing_output(t)
        if holder:
            raise UsageError(f"{label} lies inside {str(holder[0])!r}, a {holder[1]!r} directory written by spvit; "
                             f"writing there would change it: choose a path outside it")
        if not (t.exists() or t.is_symlink()):
            return
        if self.directory:
            if not t.is_dir():
                raise UsageError(f"{label} exists and is {path_kind(t) or 'a file'}, but {self.what} is a directory; "
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
            kind = path_kind(t)
            if kind not in (None, "missing"):            # /dev/null, a FIFO: never replaced by a file
                raise UsageError(f"{label} is {kind}; refusing to replace it with {self.what} even with --force: "
                                 f"choose a file path")
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
            try:
                d.mkdir()
            except FileExistsError:      # made by a command writing next to ours just now
                continue
            self.created.append(d)

    def __enter__(self) -> Path:
        self.check()                       # fail fast, before creating anything
        name = self.target.name
        try:
            self._parents()
            self.lock = TargetLock(self.target)
            holder = self.lock.acquire()
            if holder is not None:
                self.lock = None
                raise UsageError(f"{self.label} is being written by another spvit command ({holder}); wait for it "
                                 f"to finish or choose another path")
            self.check()                   # again under the lock: the other writer may have finished
            clean_stale(self.target.parent, own=self.target)
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
        except BaseException:
            self._cleanup()
            raise
        return self.tmp

    def _commit(self) -> None:
        t, tmp = self.target, self.tmp
        if not self.directory:
            os.replace(tmp, t)
            return
        if t.exists() or t.is_symlink():
            old = t.parent / f".{t.name}{OLD_TAG}{os.getpid()}-{uuid.uuid4().hex[:8]}"
            os.rename(t, old)
            os.rename(tmp, t)
            _remove(old)
        else:
            os.rename(tmp, t)

    def _cleanup(self) -> None:
        if self.tmp is not None:
            _remove(self.tmp)
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        for d in reversed(self.created):
            try:
                d.rmdir()
            except OSError:
                pass

    def __exit__(self, et, ev, tb) -> bool:
        with signals_blocked():
            if et is None:
                try:
                    raise_if_stopped()   # a stop signal that Python swallowed: no output either
                    self._commit()
                except BaseException:
                    self._cleanup()
                    raise
                self.tmp = None
                self.created = []
            self._cleanup()
        return False


def output_dir(target, kind: str, what: str, *, force: bool = False, inputs=(), option: str = "--out") -> Output:
    """A directory output of `kind` (the `format` its manifest.json will carry)."""
    return Output(target, directory=True, kind=kind, what=what, force=force, inputs=inputs, option=option)


def output_file(target, what: str, *, force: bool = False, inputs=(), option: str = "--out") -> Output:
    return Output(target, directory=False, kind=None, what=what, force=force, inputs=inputs, option=option)


# ------------------------------------------------------------------ caches shared by processes
class CacheLock:
    """An exclusive lock on one entry of a cache folder that concurrent processes share
    (Verilator builds, Yosys results): a second process waits in `acquire`, then finds the first
    one's result instead of building into the same files. Blocking, unlike TargetLock; the lock
    file stays (removing it would race with a waiter). A context manager; `release` may come
    early."""

    def __init__(self, folder: Path, name: str = "build"):
        self.path = folder / f".{name}{LOCK_TAG}"
        self.file = None

    def __enter__(self) -> "CacheLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX)
        except OSError as e:             # a file system without locks: proceed unlocked
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                self.release()
                raise
        return self

    def release(self) -> None:
        if self.file is not None:
            self.file.close()            # closing drops the flock
            self.file = None

    def __exit__(self, *exc) -> None:
        self.release()


def replace_text(path: Path, text: str) -> Path:
    """Write `text` to `path` through a temporary file of this process: a reader sees the old
    or the new text, never a mix, also when several processes write the same path at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{TMP_TAG}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
