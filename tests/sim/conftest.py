import pytest

from quant.calibrate import calibrated_random


@pytest.fixture(scope="session")
def mini_model():
    return calibrated_random("mini")
