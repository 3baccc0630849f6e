"""Normalisation: the LayerNorm unit and its normalising square root."""
