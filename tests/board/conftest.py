"""Board directories written once per session by the command itself (spvit board): the mini
hardware (seconds) and the zcu102 preset (about a minute: its Verilog generation dominates)."""
import time

import pytest

from spvit.cli import main


@pytest.fixture(scope="session")
def mini_board(tmp_path_factory):
    out = tmp_path_factory.mktemp("board") / "mini"
    assert main(["board", "--hw", "mini", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def zcu102_board(tmp_path_factory):
    out = tmp_path_factory.mktemp("board") / "zcu102"
    t0 = time.perf_counter()
    assert main(["board", "--hw", "zcu102", "--out", str(out)]) == 0
    return out, time.perf_counter() - t0
