"""`spvit` command line, the top layer: the subcommands live in spvit/commands/ (one module per
layer they drive, each with a `register(sub)`; the registry below); errors in user input exit with status 2
and a message that names the problem and the fix.

Exit status: 0 success, 1 a simulation mismatch, 2 bad input (`spvit: error: ...`, argparse
usage errors) or a failed simulator (`spvit: error: ...` naming its log), 130 Ctrl-C, 143 SIGTERM
(one line each; temporary outputs are removed, see base/outputs.py), 141 stdout closed early
(`spvit info | head -1`)."""
from __future__ import annotations

import argparse
import importlib
import os
import re
import signal
import sys
import threading
import warnings
from contextlib import contextmanager

from amaranth.hdl import UnusedElaboratable

from base import errors, settings
from base.errors import ConfigError, SimulationError, Terminated, UsageError, printable, raise_if_stopped, shown
from golden.arith import set_engine

# modules that add subcommands, in the order they appear in --help
COMMAND_MODULES = ("model", "quant", "rtl", "sim", "board", "cluster")


class Parser(argparse.ArgumentParser):
    """argparse's parser, except that a value that starts like a negative number is a value,
    not an option: `--keep -0.1,0.5` reaches --keep's range check (argparse alone takes only
    plain numbers such as -1 or -.5 for values and reports "expected one argument"). No option
    of spvit starts with a digit, so nothing is lost. Subcommand parsers are of this class too.
    Its usage errors show what the user typed through base.errors.shown."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self._negative_number_matcher = re.compile(r"^-\.?\d")

    def error(self, message: str):
        super().error(shown(message))            # it quotes what the user typed


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="spvit", description="SPViT accelerator generator: golden model, "
                                "quantiser, RTL generation and simulation.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"spvit.commands.{name}").register(sub)
    return p


@contextmanager
def _stop_signals_raise():
    """SIGTERM raises Terminated and SIGINT KeyboardInterrupt in the main thread, so clean-up
    code runs; each is also recorded (base.errors.STOP_SIGNALS), as an exception raised inside a
    __del__ is swallowed by Python. An ignored SIGINT (nohup) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum, frame):
        errors.STOP_SIGNALS.append(signum)
        raise KeyboardInterrupt() if signum == signal.SIGINT else Terminated()
    errors.STOP_SIGNALS.clear()
    handled = [signal.SIGTERM] + [signal.SIGINT] * (signal.getsignal(signal.SIGINT) is not signal.SIG_IGN)
    old = {s: signal.signal(s, on_signal) for s in handled}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        errors.STOP_SIGNALS.clear()       # the record is this call's: a later call in the process starts clean


def _silence_stdout() -> None:
    """After a broken pipe: later writes (and the flush at exit) go to /dev/null."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _stopped() -> None:
    """A stopped command leaves half-built designs behind: Amaranth would warn at exit about
    every one it had not elaborated yet, after our one-line message."""
    warnings.filterwarnings("ignore", message=r".* created but never used")


def _fail(msg: str) -> None:
    try:
        print(f"spvit: {printable(msg)}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _stopped_command() -> None:
    """A command stopped by an error or a signal may leave Amaranth components built but never
    elaborated; each would print an UnusedElaboratable warning when it is collected (Amaranth
    silences them itself only after an uncaught exception), burying the one-line message."""
    warnings.simplefilter("ignore", UnusedElaboratable)


def main(argv: list[str] | None = None) -> int:
    with _stop_signals_raise():
        try:
            settings.check()                  # a bad SPVIT_* value is a usage error too
            set_engine(settings.MATMUL)
            try:
                args = build_parser().parse_args(argv)
            except SystemExit as e:           # usage errors (2) and --help (0)
                return e.code if isinstance(e.code, int) else 2
            try:
                rc = int(args.func(args) or 0)
                raise_if_stopped()
            except BaseException:
                _stopped_command()
                raise
            sys.stdout.flush()
            return rc
        except (UsageError, ConfigError, SimulationError) as e:
            _fail(f"error: {e}")
            return 2
        except FileNotFoundError as e:
            _fail(f"error: {e.strerror or e}: {e.filename}; check the path")
            return 2
        except BrokenPipeError:
            _silence_stdout()
            return 141
        except OSError as e:                   # disk full, permissions, ...
            _fail(f"error: {e.strerror or e}" + (f": {e.filename}" if e.filename else "")
                  + "; nothing was written")
            return 2
        except KeyboardInterrupt:
            _stopped()
            _fail("interrupted (Ctrl-C); stopped, temporary output removed")
            return 130
        except Terminated:
            _stopped()
            _fail("terminated (SIGTERM); stopped, temporary output removed")
            return 143


if __name__ == "__main__":
    sys.exit(main())
