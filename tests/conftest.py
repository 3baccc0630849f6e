import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
_venv_bin = ROOT / ".venv" / "bin"
if _venv_bin.is_dir() and not os.environ.get("PATH", "").startswith(str(_venv_bin)):
    os.environ["PATH"] = f"{_venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"
