"""Input paths: what a file argument may be, checked in one place.

    regular_file(path, "checkpoint")    # the path, or a UsageError saying what it is instead

A directory, a named pipe, a device (`/dev/zero` never ends), a socket or a missing path given
where a file is read is refused with a message that names what the path is, before anything
opens it; an empty string is refused too (Path('') would be the current folder).
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import UsageError

KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
         (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def path_kind(path) -> str | None:
    """What `path` is when it is not a regular file ("a directory", "a named pipe (FIFO)", ...,
    "missing"); None for a regular file (symbolic links followed)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except NotADirectoryError:
        return "missing"
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in KINDS if test(mode)), "not a regular file")


def regular_file(path, what: str, fix: str = "", error=UsageError) -> Path:
    """`path` as a Path if it names a regular file; else `error` (a UsageError or a ConfigError)
    saying what `path` is instead, followed by `fix` (how to get a right one)."""
    text = str(path)
    if not text.strip():
        raise error(f"{what} is an empty string; give a file path" + (f" ({fix})" if fix else ""))
    kind = path_kind(text)
    if kind is None:
        return Path(text)
    tail = f"; {fix}" if fix else ""
    if kind == "missing":
        raise error(f"{what} {text!r} does not exist{tail}")
    raise error(f"{what} {text!r} is {kind}{tail or ', not a file'}")
