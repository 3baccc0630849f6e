"""Errors shown to users as `spvit: error: ...` with exit status 2, one-line notices, and how
user-controlled text (file names, checkpoint keys, manifest strings) is shown in them."""
from __future__ import annotations

import signal
import sys


class UsageError(Exception):
    """Bad user input (arguments, files, data); the message names the problem and the fix."""


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and the fix (a ValueError:
    the configuration dataclasses raise it from their constructors)."""


class SimulationError(RuntimeError):
    """A simulator or its bench failed (no build, a crash, an exception in the bench): the message
    says what happened and names the log to read. `spvit` exits 2 with it, no traceback."""


class Terminated(BaseException):
    """SIGTERM arrived (raised by the handler `spvit.cli.main` installs, so that every `finally`
    and context manager runs: temporary outputs are removed). A BaseException like
    KeyboardInterrupt, so that `except Exception` does not swallow it."""


# SIGINT/SIGTERM received by the handlers `spvit.cli.main` installs. Python only prints an
# exception raised while a __del__ runs (Amaranth has such finalizers), so a Ctrl-C landing there
# would be lost; the record is not: outputs and `main` check it before they report success.
STOP_SIGNALS: list[int] = []


def raise_if_stopped() -> None:
    """Raise KeyboardInterrupt or Terminated again if a stop signal arrived and was swallowed."""
    if STOP_SIGNALS:
        raise KeyboardInterrupt() if STOP_SIGNALS[0] == signal.SIGINT else Terminated()


def _escape(c: str) -> str:
    o = ord(c)
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(c)
    return named or (f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}")


def shown(text) -> str:
    """User-controlled text (a checkpoint key, a file name, a manifest string) as it is printed:
    every character that is not printable escaped as Python writes it (`\\n`, `\\x1b`, `\\u202e`).
    Printed raw, control characters move the cursor or recolour the terminal (ANSI escapes), a
    line break starts a line that reads like `spvit: error: ...`, bidirectional overrides reorder
    what the reader sees."""
    text = str(text)
    return text if text.isprintable() else "".join(c if c.isprintable() else _escape(c) for c in text)


def printable(msg: str) -> str:
    """A message of several lines with everything but its line breaks escaped as by `shown`:
    the last line of defence of `notice`, `warning` and `spvit: error:` (text interpolated
    into a message goes through `shown`, which escapes its line breaks too)."""
    return "\n".join(map(shown, str(msg).split("\n")))


def notice(msg: str) -> None:
    """One line on stderr for something the user should know but that is not an error
    (which checkpoint wrapper was used, a default that was filled in, ...)."""
    print(f"spvit: note: {printable(msg)}", file=sys.stderr, flush=True)


def warning(msg: str) -> None:
    """One line on stderr for something that is probably wrong but does not stop the command."""
    print(f"spvit: warning: {printable(msg)}", file=sys.stderr, flush=True)
