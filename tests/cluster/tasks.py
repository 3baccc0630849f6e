"""Module-level task functions for the executor tests (workers import them by name)."""
from __future__ import annotations

import os
import time
from pathlib import Path

from spvit.errors import UsageError


def square(x):
    """(x, x^2, pid) after a delay that makes later tasks finish first."""
    k, delay = x
    time.sleep(delay)
    return k, k * k


def die_once(arg):
    """Kills its own worker process the first time it runs (a marker file remembers it)."""
    marker, k = arg
    m = Path(marker)
    if not m.exists():
        m.write_text("died")
        os._exit(17)
    return k * 10


def always_die(_):
    os._exit(9)


def bad_input(k):
    if k == 2:
        raise UsageError(f"task {k}: bad input, fix it")
    return k
