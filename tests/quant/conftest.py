"""Shared fixtures: a small random SPViT model of the `mini` preset (selectors balanced so that
about half of the tokens are kept), saved in every checkpoint format, and a package of it."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from golden.config import load_config
from golden.random_model import random_images, random_model
from quant.calibrate import calibrate
from quant.package import write_package

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def cfg():
    return load_config("mini")


@pytest.fixture(scope="session")
def images(cfg):
    return random_images(cfg.model, 24, seed=3)


@pytest.fixture(scope="session")
def model(cfg, images):
    torch.manual_seed(0)
    return random_model(cfg.model, seed=0, balance_with=images[:8])


@pytest.fixture(scope="session")
def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory, state):
    """The model as .safetensors."""
    p = tmp_path_factory.mktemp("ckpt") / "mini.safetensors"
    save_file(state, str(p))
    return p


@pytest.fixture(scope="session")
def qmodel(model, images, cfg):
    return calibrate(model, images[:8], cfg.fixed_point)


@pytest.fixture(scope="session")
def package(tmp_path_factory, qmodel, cfg):
    p = tmp_path_factory.mktemp("pkg") / "mini.pkg"
    write_package(qmodel, p, cfg.fixed_point, {"method": "maxabs"}, {"checkpoint": "fixture"})
    return p
