"""Errors shown to users as `spvit: error: ...` with exit status 2, and one-line notices."""
from __future__ import annotations

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


def notice(msg: str) -> None:
    """One line on stderr for something the user should know but that is not an error
    (which checkpoint wrapper was used, a default that was filled in, ...)."""
    print(f"spvit: note: {msg}", file=sys.stderr, flush=True)
