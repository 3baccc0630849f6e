"""Selector units (docs/selector-units.md): GMEAN, DECIDE (with its cap search and keep
probabilities), PACKAGE, COMPACT, the selection state they share and the STORE of a selection."""
