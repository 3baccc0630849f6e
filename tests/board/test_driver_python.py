"""The host driver runs on a board's own Python: PYNQ 3.x images ship Python 3.10, so every
module the driver imports must run on 3.10 (vermin reads the minimum version off the source),
and importing it must load neither torch nor Amaranth."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = ("import json, sys, driver.run; "
         "print(json.dumps(sorted(m.__file__ for n, m in sys.modules.items() "
         "if n.split('.')[0] in ('driver', 'golden', 'base') and getattr(m, '__file__', None))))")


def _driver_modules() -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE + "; print(json.dumps(sorted(sys.modules)))"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    files, loaded = json.loads(out[0]), json.loads(out[1])
    heavy = [m for m in loaded if m.split(".")[0] in ("torch", "amaranth", "cocotb")]
    assert not heavy, f"importing the driver loads {heavy[:5]}"
    return files


def test_driver_runs_on_python_3_10():
    files = _driver_modules()
    assert any(f.endswith("driver/run.py") for f in files) and any(f.endswith("golden/config.py") for f in files)
    r = subprocess.run([str(Path(sys.executable).with_name("vermin")), "--no-tips", "--violations", "-t=3.10-", *files],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"a module the driver imports needs a Python newer than 3.10:\n{r.stdout}{r.stderr}"
