"""Errors shown to users as `spvit: error: ...` with exit status 2, one-line notices, and how
user-controlled text (file names, checkpoint keys, manifest strings) is shown in them."""
from __future__ import annotations

import sys


class UsageError(Exception):
    """Bad user input (arguments, files, data); the message names the problem and the fix."""


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and the fix (a ValueError:
    the configuration dataclasses raise it from their constructors)."""


class Terminated(BaseException):
    """SIGTERM arrived (raised by the handler `spvit.cli.main` installs, so that every `finally`
    and context manager runs: temporary outputs are removed). A BaseException like
    KeyboardInterrupt, so that `except Exception` does not swallow it."""


# Control characters (C0, DEL, C1), Unicode line and paragraph separators and the bidirectional
# overrides: printed raw they move the cursor, recolour the terminal (ANSI escapes), start a new
# line that reads like `spvit: error: ...`, or reorder what the reader sees.
_UNSAFE = [*range(0x20), 0x7f, *range(0x80, 0xa0), 0x2028, 0x2029, *range(0x202a, 0x202f), *range(0x2066, 0x206a)]
_ESCAPES = {c: {0x0a: "\\n", 0x0d: "\\r", 0x09: "\\t"}.get(c, f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}")
            for c in _UNSAFE}
_ESCAPES_KEEP_LINES = {c: e for c, e in _ESCAPES.items() if c != 0x0a}


def shown(text) -> str:
    """User-controlled text as it is printed: every unsafe character (above) escaped as Python
    writes it (`\\n`, `\\x1b`), so that a checkpoint key or a file name shows as one inert piece."""
    return str(text).translate(_ESCAPES)


def printable(msg: str) -> str:
    """A message of several lines with unsafe characters other than the line breaks escaped (the
    last line of defence of `notice` and `spvit: error:`; the text interpolated into a message
    goes through `shown`, which escapes its line breaks too)."""
    return str(msg).translate(_ESCAPES_KEEP_LINES)


def notice(msg: str) -> None:
    """One line on stderr for something the user should know but that is not an error
    (which checkpoint wrapper was used, a default that was filled in, ...)."""
    print(f"spvit: note: {printable(msg)}", file=sys.stderr, flush=True)


def warning(msg: str) -> None:
    """One line on stderr for something that is probably wrong but does not stop the command."""
    print(f"spvit: warning: {printable(msg)}", file=sys.stderr, flush=True)
