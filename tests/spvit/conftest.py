"""The quantiser's fixtures (a small random `mini` model, its checkpoint and package) for the
command-line tests here."""
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("_quant_fixtures", Path(__file__).parents[1] / "quant" / "conftest.py")
_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)
cfg, images, model, state, ckpt, qmodel, package = (_mod.cfg, _mod.images, _mod.model, _mod.state, _mod.ckpt,
                                                     _mod.qmodel, _mod.package)
