"""Token-selection schemes: one module each, one registry (see base.py for the interface)."""
from __future__ import annotations

from .base import Scheme
from .dynamicvit import DynamicViT
from .evit import EViT
from .evovit import EvoViT
from .spvit import SPViT

SCHEMES: dict[str, Scheme] = {s.name: s for s in (Scheme(), SPViT(), DynamicViT(), EViT(), EvoViT())}


__all__ = ["SCHEMES", "Scheme"]
