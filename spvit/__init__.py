"""spvit-accel: hardware generator for token-pruned vision transformers (the `spvit` command
line; the layers below it: sim -> rtl_gen -> golden, quant -> golden, everything -> base)."""
from base import __version__  # noqa: F401
