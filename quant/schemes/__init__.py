"""The quantiser's side of the token-selection schemes: one module each, one registry keyed by
scheme name, as golden.selectors (see base.py for the hooks)."""
from __future__ import annotations

from .base import QuantScheme
from .dynamicvit import DynamicViTQuant
from .evit import EViTQuant
from .evovit import EvoViTQuant
from .spvit import SPViTQuant

SCHEMES: dict[str, QuantScheme] = {s.name: s for s in (QuantScheme(), SPViTQuant(), DynamicViTQuant(), EViTQuant(),
                                                       EvoViTQuant())}


def of(cfg) -> QuantScheme:
    """The quantiser's side of the scheme of model config `cfg`."""
    return SCHEMES[cfg.selector]


__all__ = ["SCHEMES", "QuantScheme", "of"]
