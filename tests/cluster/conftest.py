"""One local Ray per test session (starting one costs seconds), shared by every Ray test."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def ray_session():
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[cluster]'")
    from base.cluster import Executor, connect_ray
    connect_ray(Executor("ray", workers=2))
    yield ray
    ray.shutdown()


@pytest.hookimpl(tryfirst=True)        # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items):
    """Under `pytest -n` (pytest-xdist, `--dist loadgroup` as `make test` runs it) the tests of
    this folder share one worker: one local Ray at a time, started once."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.xdist_group("ray"))
