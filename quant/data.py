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
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from base.errors import UsageError, notice, shown, warning
from golden.config import ModelConfig, Preprocess

DIGITS_HELD_OUT = 600
DIGITS_SEED = 0
DIGITS_MEAN, DIGITS_STD = 0.5, 0.5     # digits' fixed normalisation (whatever the config's [preprocess])
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
# Listing an image folder is bounded (a mistyped path such as / or /proc/self must not walk the
# whole file system): folders on system file systems are refused, symbolic links to folders
# below a class folder are not followed, and a folder deeper than WALK_DEPTH below a class
# folder, more than WALK_ENTRIES entries (ImageNet's training set has 1.28 M) or more than
# WALK_SECONDS of listing end in an error.
WALK_DEPTH = 8
WALK_ENTRIES = 4_000_000
WALK_SECONDS = 120
SYSTEM_FS = {"proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs",
             "configfs", "pstore", "bpf", "fusectl", "mqueue", "hugetlbfs", "binfmt_misc", "efivarfs", "nsfs",
             "rpc_pipefs", "autofs"}
SHOWN_ITEMS = 8          # `take` names at most this many of the images it took


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
        names = [str(self.items[i]) if self.array is not None else shown(os.path.relpath(self.items[i], self.name))
                 for i in idx]
        if len(names) > SHOWN_ITEMS:
            names = names[:SHOWN_ITEMS - 2] + ["...", names[-1]]
        return Dataset(f"{self.name} ({n} of {len(self)}, evenly spaced: {', '.join(names)})", self.classes,
                       self.labels[idx], tuple(self.items[i] for i in idx), self.cfg, self.array)

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
    if not spec.strip():
        raise UsageError("data is an empty string; give an image folder or digits[:train|:test|:all]")
    if spec == "digits" or spec.startswith("digits:"):
        split = spec.partition(":")[2]
        if spec.endswith(":") and not split:
            raise UsageError(f"{spec!r} names no split: use digits:train, digits:test or digits:all "
                             f"(plain `digits` means digits:{default_split} here)")
        if cfg.preprocess != Preprocess():
            notice(f"{spec} has its own fixed preprocessing "
                   f"(8x8 digits upsampled, mean {DIGITS_MEAN:g}, std {DIGITS_STD:g}); "
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
    _not_system(root, root)
    try:
        classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as e:
        raise UsageError(f"cannot list data folder {str(root)!r}: {e.strerror or e}") from None
    if not classes:
        raise UsageError(f"data folder {str(root)!r} has no class subfolders: put the images of each "
                         f"class in their own subfolder (root/<class>/<image>.jpg)")
    items, labels = [], []
    walk = _Walk(root)
    for k, c in enumerate(classes):
        _not_system(root / c, root)
        for f in sorted(walk.images(root / c)):
            items.append(f)
            labels.append(k)
    if not items:
        raise UsageError(f"data folder {str(root)!r} has {len(classes)} class subfolder(s) but no images "
                         f"(looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    if len(classes) > cfg.num_classes:
        raise UsageError(f"data folder {str(root)!r} has {len(classes)} classes but the config "
                         f"{cfg.name!r} has num_classes={cfg.num_classes}")
    data = Dataset(str(root), tuple(classes), np.array(labels, dtype=np.int64), tuple(items), cfg)
    _announce_preprocessing(data)
    return data


def _mount_type(path: Path) -> str:
    """The file system type of the mount holding `path` (/proc/self/mountinfo; '' if unknown)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return ""
    best, kind = "", ""
    p = str(path)
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) < 5 or not right:
            continue
        mount = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])      # \040: a space
        if (p == mount or p.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best):
            best, kind = mount, right.split()[0]
    return kind


def _not_system(folder: Path, root: Path) -> None:
    kind = _mount_type(folder.resolve())
    if kind in SYSTEM_FS:
        where = ("" if folder == root
                 else f" (its class folder {shown(folder.name)!r} leads to {str(folder.resolve())!r})")
        raise UsageError(f"data folder {str(root)!r}{where} is on a {kind} file system, which holds system "
                         f"information, not images: give an image folder with one subfolder per class, or `digits`")


class _Walk:
    """Image files below class folders, listed within the bounds above (WALK_*)."""

    def __init__(self, root: Path):
        self.root, self.entries, self.t0 = root, 0, time.monotonic()

    def images(self, folder: Path, depth: int = 0) -> list:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except FileNotFoundError:
            return []
        except OSError as e:
            raise UsageError(f"cannot list {str(folder)!r} in data folder {str(self.root)!r}: {e.strerror or e}; "
                             f"fix its permissions or remove it") from None
        self.entries += len(entries)
        if self.entries > WALK_ENTRIES or time.monotonic() - self.t0 > WALK_SECONDS:
            raise UsageError(f"data folder {str(self.root)!r} holds more than {min(self.entries, WALK_ENTRIES):,} "
                             f"entries (listed for {time.monotonic() - self.t0:.0f} s, limits {WALK_ENTRIES:,} entries "
                             f"and {WALK_SECONDS} s): is it the right folder? Give a folder with one subfolder of "
                             f"images per class")
        out = []
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=False):
                    if depth == WALK_DEPTH:
                        raise UsageError(f"data folder {str(self.root)!r} has folders more than {WALK_DEPTH} levels "
                                         f"below a class folder ({shown(e.path)!r}): is it the right folder? Give a "
                                         f"folder with one subfolder of images per class")
                    out += self.images(Path(e.path), depth + 1)
                elif e.is_file() and Path(e.name).suffix.lower() in IMAGE_SUFFIXES:
                    out.append(Path(e.path))
            except OSError:                 # vanished or unreadable while listed
                continue
        return out


def _announce_preprocessing(data: Dataset) -> None:
    """Say how the folder's images become inputs when the model config sets no [preprocess]
    (the default is DeiT's transform), and warn when the images do not look like the model's
    input: other channels or another size than img_size (judged on a few evenly spaced files)."""
    cfg = data.cfg
    if cfg.preprocess != Preprocess():
        return
    from PIL import Image
    notice(f"images of {data.name} become inputs by the default preprocessing (no [preprocess] in config "
           f"{cfg.name!r}): {cfg.preprocess.describe(cfg.in_chans, cfg.img_size)}")
    sizes, modes = set(), set()
    for i in np.linspace(0, len(data) - 1, min(len(data), 8)).round().astype(int):
        try:
            with Image.open(data.items[i]) as im:          # reads the header only
                sizes.add(im.size)
                modes.add(im.mode)
        except Exception:                                  # noqa: BLE001 - reported when the image is loaded
            continue
    grey = {"1", "L", "I", "I;16", "F", "LA"}
    chans = {1 if m in grey else 3 for m in modes}
    odd = []
    if chans and chans != {cfg.in_chans}:
        odd.append(f"they have {' or '.join(map(str, sorted(chans)))} channel(s) ({', '.join(sorted(modes))}), the "
                   f"model takes {cfg.in_chans}")
    if sizes and sizes != {(cfg.img_size, cfg.img_size)}:
        shown_sizes = ", ".join(f"{w}x{h}" for w, h in sorted(sizes)[:4]) + (", ..." if len(sizes) > 4 else "")
        odd.append(f"they are {shown_sizes} pixels, the model takes {cfg.img_size}x{cfg.img_size}")
    if odd:
        warning(f"the images of {data.name} do not look like the input of {cfg.name}: {'; '.join(odd)}. If the model "
                f"was trained on them with another transform (e.g. the whole image resized: crop_pct = 1.0), give it "
                f"in a [preprocess] table of the model TOML (golden.config.Preprocess)")


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
