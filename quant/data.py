"""Evaluation and calibration data: an image folder (one subfolder per class) or `digits`.

`digits` is scikit-learn's bundled 8x8 digits (1797 images, no download), upsampled to the
config's resolution. Its split is fixed: a permutation with seed 0, the first 600 images held
out (`digits:test`), the other 1197 for training and calibration (`digits:train`). Pixels are
scaled to [0, 1] and normalised with mean 0.5 and std 0.5 (so the background is -1).

An image folder gets the model config's preprocessing (`golden.config.Preprocess`, timm's
pretrained_cfg names; the default is DeiT's evaluation transform: resize the shorter side to
img_size / 0.875 (bicubic), centre crop img_size, scale to [0, 1], normalise with the ImageNet
mean and std, or 0.5 / 0.5 for one-channel models), computed with Pillow and numpy the way
torchvision's Resize / CenterCrop / Normalize compute it. `digits` keeps its own fixed
preprocessing (above).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from golden.config import ModelConfig, Preprocess
from base.errors import UsageError, notice

DIGITS_HELD_OUT = 600
DIGITS_SEED = 0
DIGITS_MEAN, DIGITS_STD = 0.5, 0.5     # digits' fixed normalisation (whatever the config's [preprocess])
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


@dataclass(frozen=True)
class Dataset:
    """Labelled images, loaded lazily in batches. `load(i)` gives one normalised float image
    [in_chans, S, S]; `classes` are the class names in label order."""
    name: str
    classes: tuple
    labels: np.ndarray
    items: tuple          # per image: a path (folder) or an index into `array` (digits)
    cfg: ModelConfig
    array: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, i: int) -> torch.Tensor:
        if self.array is not None:
            return self.array[self.items[i]]
        return load_image(self.items[i], self.cfg)

    def normalisation(self) -> tuple[tuple, tuple]:
        """(mean, std) per channel that `load` normalised with: x = (pixel in [0, 1] - mean) / std."""
        if self.array is not None:
            return (DIGITS_MEAN,) * self.cfg.in_chans, (DIGITS_STD,) * self.cfg.in_chans
        return self.cfg.preprocess.stats(self.cfg.in_chans)

    def item_name(self, i: int) -> str:
        """The image's file path, or `digits:<split>[k]` (k: index within the split)."""
        if self.array is not None:
            return f"{self.name.split(' ')[0]}[{self.items[i]}]"
        return str(self.items[i])

    def take(self, n: int | None) -> "Dataset":
        """n images spread evenly over the dataset (an image folder is sorted by class, so the
        first n would cover only the first classes); all of them when n is None or too big."""
        if n is None or n >= len(self):
            return self
        idx = np.linspace(0, len(self) - 1, n).round().astype(int)
        return Dataset(f"{self.name} ({n} of {len(self)}, evenly spaced)", self.classes, self.labels[idx],
                       tuple(self.items[i] for i in idx), self.cfg, self.array)

    def batches(self, batch: int, limit: int | None = None):
        """Yields (images [b, C, S, S] float32, labels [b] int64)."""
        n = len(self) if limit is None else min(limit, len(self))
        for s in range(0, n, batch):
            idx = range(s, min(s + batch, n))
            yield torch.stack([self.load(i) for i in idx]), torch.as_tensor(self.labels[s:s + len(idx)])

    def tensors(self, limit: int | None = None):
        imgs, labels = zip(*self.batches(256, limit)) if len(self) else ((), ())
        if not imgs:
            raise UsageError(f"data {self.name!r} has no images")
        return torch.cat(imgs), torch.cat(labels)


def load_data(spec: str, cfg: ModelConfig, default_split: str = "test") -> Dataset:
    """`digits`, `digits:train`, `digits:test`, `digits:all`, or an image-folder path."""
    spec = str(spec)
    if spec == "digits" or spec.startswith("digits:"):
        split = spec.partition(":")[2]
        if spec.endswith(":") and not split:
            raise UsageError(f"{spec!r} names no split: use digits:train, digits:test or digits:all "
                             f"(plain `digits` means digits:{default_split} here)")
        if cfg.preprocess != Preprocess():
            notice(f"{spec} has its own fixed preprocessing (8x8 digits upsampled, mean {DIGITS_MEAN:g}, std {DIGITS_STD:g}); "
                   f"the config's [preprocess] applies to image folders")
        return digits(cfg, split or default_split)
    return image_folder(spec, cfg)


# ------------------------------------------------------------------ digits
def digits_arrays(split: str):
    """8x8 digit images (float, 0..16) and labels of a split of the fixed partition."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise UsageError("`digits` needs scikit-learn: pip install -e '.[data]'") from None
    d = load_digits()
    perm = np.random.RandomState(DIGITS_SEED).permutation(len(d.target))
    parts = {"test": perm[:DIGITS_HELD_OUT], "train": perm[DIGITS_HELD_OUT:], "all": np.arange(len(d.target))}
    if split not in parts:
        raise UsageError(f"unknown digits split {split!r}: use digits:train, digits:test or digits:all")
    idx = parts[split]
    return d.images[idx].astype(np.float32), d.target[idx].astype(np.int64)


def digits_images(raw: np.ndarray, cfg: ModelConfig) -> torch.Tensor:
    """[N, 8, 8] (0..16) -> normalised [N, in_chans, S, S] (bilinear upsampling)."""
    x = torch.from_numpy(raw / 16.0).float()[:, None]
    x = torch.nn.functional.interpolate(x, size=(cfg.img_size, cfg.img_size), mode="bilinear",
                                        align_corners=False)
    x = (x - DIGITS_MEAN) / DIGITS_STD
    return x.expand(-1, cfg.in_chans, -1, -1).contiguous()


def digits(cfg: ModelConfig, split: str = "test") -> Dataset:
    raw, labels = digits_arrays(split)
    if cfg.num_classes < 10:
        raise UsageError(f"digits has 10 classes but the config {cfg.name!r} has num_classes={cfg.num_classes}")
    arr = digits_images(raw, cfg)
    return Dataset(f"digits:{split}", tuple(str(i) for i in range(10)), labels, tuple(range(len(labels))), cfg, arr)


# ------------------------------------------------------------------ image folder
def image_folder(path: str | Path, cfg: ModelConfig) -> Dataset:
    root = Path(path)
    if not root.exists():
        raise UsageError(f"data folder {str(root)!r} does not exist (give an image folder with one "
                         f"subfolder per class, or `digits`)")
    if not root.is_dir():
        raise UsageError(f"data {str(root)!r} is not a folder: give an image folder with one subfolder "
                         f"per class, or `digits`")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise UsageError(f"data folder {str(root)!r} has no class subfolders: put the images of each "
                         f"class in their own subfolder (root/<class>/<image>.jpg)")
    items, labels = [], []
    for k, c in enumerate(classes):
        for f in sorted((root / c).rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                items.append(f)
                labels.append(k)
    if not items:
        raise UsageError(f"data folder {str(root)!r} has {len(classes)} class subfolder(s) but no images "
                         f"(looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    if len(classes) > cfg.num_classes:
        raise UsageError(f"data folder {str(root)!r} has {len(classes)} classes but the config "
                         f"{cfg.name!r} has num_classes={cfg.num_classes}")
    return Dataset(str(root), tuple(classes), np.array(labels, dtype=np.int64), tuple(items), cfg)


def load_image(path: Path, cfg: ModelConfig) -> torch.Tensor:
    """One image file -> normalised float tensor [in_chans, S, S] (cfg.preprocess)."""
    from PIL import Image, UnidentifiedImageError
    if cfg.in_chans not in (1, 3):
        raise UsageError(f"image folders need in_chans 1 or 3 (config has {cfg.in_chans})")
    pp = cfg.preprocess
    try:
        with Image.open(path) as im:
            im = transform(im.convert("RGB" if cfg.in_chans == 3 else "L"), cfg.img_size, pp)
            a = np.asarray(im, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise UsageError(f"cannot read image {str(path)!r}: {e}; remove or replace the file") from None
    mean, std = pp.stats(cfg.in_chans)      # = Dataset.normalisation() of an image folder
    a = (a.reshape(*a.shape[:2], -1) - np.array(mean, np.float32)) / np.array(std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))


def transform(im, size: int, pp: Preprocess):
    """Pad, resize and centre-crop a PIL image to size x size (see golden.config.Preprocess)."""
    from PIL import Image, ImageOps
    fill = pp.fill if im.mode == "L" else (pp.fill,) * 3
    if pp.pad:
        im = ImageOps.expand(im, border=pp.pad, fill=fill)
    if pp.crop_mode != "none":
        scale = math.floor(size / pp.crop_pct)
        w, h = im.size
        if pp.crop_mode == "squash":
            new = (scale, scale)
        elif w <= h:
            new = (scale, int(scale * h / w))
        else:
            new = (int(scale * w / h), scale)
        if new != im.size:
            im = im.resize(new, getattr(Image.Resampling, pp.interpolation.upper()))
    return _center_crop_or_pad(im, size, fill)


def _center_crop_or_pad(im, s: int, fill):
    """torchvision's CenterCrop: pad (fill) where the image is smaller, then crop the centre
    (offsets rounded as torchvision rounds them)."""
    from PIL import Image
    w, h = im.size
    if w < s or h < s:
        out = Image.new(im.mode, (max(w, s), max(h, s)), fill)
        out.paste(im, ((max(w, s) - w) // 2, (max(h, s) - h) // 2))
        im, (w, h) = out, out.size
    if (w, h) == (s, s):
        return im
    left, top = int(round((w - s) / 2.0)), int(round((h - s) / 2.0))
    return im.crop((left, top, left + s, top + s))
