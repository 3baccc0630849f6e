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


def block_input(q, imgs, i: int, img: int = 0):
    """int16 tokens [N, C] entering block i for image `img` (golden forward, no selector)."""
    from golden.arith import quantize
    x = q.embed(quantize(imgs[img:img + 1].numpy(), q.img_frac))
    for j in range(i):
        x = q.blocks[j](x)
    return x[0]


def selector_input(q, imgs, block: int, img: int = 0):
    """(int16 tokens [N, C] entering the selector before block `block`, earlier package tokens
    n_pkg) for image `img`: the golden forward with the earlier selectors applied."""
    from golden.arith import quantize
    from golden.tokens import Group, Record
    sch = q.cfg.scheme
    g = Group.start(q.embed(quantize(imgs[img:img + 1].numpy(), q.img_frac)))
    rec = Record(1, q.cfg)
    for j in range(block):
        g = sch.q_before(q, j, g, rec)[0]
        g = sch.q_block(q, j, q.blocks[j], g, rec)
    return g.x[0], sum(1 for b in q.selectors if b < block)
