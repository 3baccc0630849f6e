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

from base import settings  # noqa: E402
from golden.arith import set_engine  # noqa: E402

settings.check()                     # as spvit.cli.main does: a bad SPVIT_* value stops the run
set_engine(settings.MATMUL)          # and SPVIT_MATMUL reaches the golden model

_MEASURED: list[str] = []


@pytest.fixture(scope="session")
def demo_package(tmp_path_factory):
    """The committed demo model quantised as `make demo` does (digits, maxabs), on 32 images."""
    from quant import DEMO_CHECKPOINT
    from spvit.cli import main
    out = tmp_path_factory.mktemp("pkg") / "mini_digits.pkg"
    assert main(["quantize", "--checkpoint", str(DEMO_CHECKPOINT), "--config", "mini", "--calib", "digits:train",
                 "--calib-limit", "32", "--out", str(out)]) == 0
    return out


@pytest.fixture
def measured(request):
    """Record a measured figure; all of them are printed in a 'measured' section at the end. They
    travel with the test's report, so figures of pytest-xdist workers reach that section too."""
    return lambda line: request.node.user_properties.append(("measured", line))


def pytest_runtest_logreport(report):
    if report.when == "teardown":        # the teardown report carries every figure of the test
        _MEASURED.extend(v for k, v in report.user_properties if k == "measured")


def pytest_terminal_summary(terminalreporter):
    if _MEASURED:
        terminalreporter.section("measured")
        for line in _MEASURED:
            terminalreporter.write_line(line)
