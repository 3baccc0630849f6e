"""The subcommands of `spvit`, one module per layer they drive, each with a `register(sub)`
(spvit/cli.py lists them in --help order)."""
