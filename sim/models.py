"""Calibrated integer models for benches, tests and `spvit simulate` (no checkpoint needed)."""
from __future__ import annotations

import functools


@functools.lru_cache(maxsize=None)
def calibrated(preset="mini", seed: int = 0, n_img: int = 8):
    """(QModel, float images): a random float twin (golden.random_model) calibrated by
    quant.calibrate, so weights and formats are realistic. `preset`: a name or a ModelConfig."""
    from golden.config import PRESETS
    from golden.random_model import random_images, random_model
    from quant.calibrate import calibrate
    cfg = PRESETS[preset] if isinstance(preset, str) else preset
    imgs = random_images(cfg, n_img, seed)
    return calibrate(random_model(cfg, seed, imgs), imgs), imgs

