import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
_venv_bin = ROOT / ".venv" / "bin"
if _venv_bin.is_dir() and not os.environ.get("PATH", "").startswith(str(_venv_bin)):
    os.environ["PATH"] = f"{_venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"

import pytest  # noqa: E402

_MEASURED: list[str] = []


@pytest.fixture
def measured():
    """Record a measured figure; all of them are printed in a 'measured' section at the end."""
    return _MEASURED.append


def pytest_terminal_summary(terminalreporter):
    if _MEASURED:
        terminalreporter.section("measured")
        for line in _MEASURED:
            terminalreporter.write_line(line)
