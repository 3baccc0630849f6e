"""The golden speed benchmark runs and says which exact matmul engine ran; the scheme fidelity
benchmark prints every preset (no timing asserted: speed targets are read from benchmarks/,
never asserted in tests)."""
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


def test_scheme_fidelity_prints_every_preset():
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scheme_fidelity.py"), "--presets",
                        "mini,mini-evovit", "--seeds", "0", "--images", "4", "--flips"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    for preset in ("mini", "mini-evovit"):
        summary = [line for line in r.stdout.splitlines() if line.startswith(f"  {preset}: worst run ")]
        assert len(summary) == 1 and "pooled" in summary[0] and "runs >= 40 dB: " in summary[0], r.stdout
    runs = [line.split() for line in r.stdout.splitlines() if line.startswith("     0       4 ")]
    assert len(runs) == 2 and all(float(w[2]) > 20 for w in runs), r.stdout


def test_wider_datapath_emulation_converges_to_float():
    """8 more bits in every emulated rounding bring the logits far closer to the float twin's."""
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "wider_datapath.py"), "--presets", "mini-evit",
                        "--seeds", "0", "--images", "4", "--extra-bits", "0,8"], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines() if line.startswith("  int")]
    assert [w[0] for w in rows] == ["int16", "int24"], r.stdout
    worst = [float(w[-1].rstrip(")")) for w in rows]
    assert worst[1] > worst[0] + 20, r.stdout
