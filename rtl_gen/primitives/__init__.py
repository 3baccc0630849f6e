"""Primitives every unit builds on: rounding and saturation (mirrored once from golden/arith.py),
reciprocal, square roots, exp, piecewise-linear evaluation, block RAM, FIFOs, the gearbox and
the stall-together pipeline."""
