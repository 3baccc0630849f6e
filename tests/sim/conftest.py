import pytest

from sim.models import calibrated


@pytest.fixture(scope="session")
def mini_model():
    return calibrated("mini")
