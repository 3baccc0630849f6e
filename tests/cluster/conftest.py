"""One local Ray per test session (starting one costs seconds), shared by every Ray test."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_session():
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[cluster]'")
    from base.cluster import Executor, connect_ray
    connect_ray(Executor("ray", workers=2))
    yield ray
    ray.shutdown()
