"""The golden speed benchmark runs and says which exact matmul engine ran (no timing asserted:
speed targets are read from benchmarks/, never asserted in tests)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_golden_speed_prints_the_engine():
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "golden_speed.py"),
                        "--config", "mini", "--batch", "2", "--repeats", "1"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    engines = [line for line in lines if line.strip().startswith("matmul engine: auto: ")]
    assert len(engines) == 2 and "shape(s)" in engines[0] and "ms" in engines[0], r.stdout
    assert lines[-1].startswith("golden/float32 speed ratio: ")
