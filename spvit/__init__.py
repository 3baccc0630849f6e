"""spvit-accel: hardware generator for token-pruned vision transformers."""
__version__ = "0.1.0"
