"""`spvit` command line. Each package contributes its subcommands through a `register(sub)`
function in its `cli` module (the registry below); errors in user input exit with status 2
and a message that names the problem and the fix."""
from __future__ import annotations

import argparse
import importlib
import sys

from .errors import UsageError

# package modules that add subcommands, in the order they appear in --help
COMMAND_MODULES = ("golden.cli", "quant.cli", "rtl_gen.cli", "rtl_gen.sweep", "sim.regress")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spvit", description="SPViT accelerator generator: golden model, "
                                "quantiser, RTL generation and simulation.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue
            raise
        mod.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from golden.config import ConfigError
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UsageError, ConfigError, FileNotFoundError) as e:
        print(f"spvit: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
