"""The bottom layer: errors shown to users, settings read from the environment (once), safe
output handling and the task executor. Every other package (golden, quant, rtl_gen, sim, the
`spvit` command line) may import it; it imports none of them."""
from pathlib import Path

__version__ = "0.1.0"
ROOT = Path(__file__).resolve().parents[1]          # the project root (golden/, quant/, ..., examples/)
