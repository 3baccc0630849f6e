"""Input sets for a board: images already quantised to the model's input format, with the golden
model's results for them, so a board without torch can run them and check its results bit for
bit (`spvit board-inputs` writes a set on a PC, `python -m driver` / `spvit board-run` reads it).

A set is a directory:
    manifest.json    format spvit-board-inputs, the image's sha256, the data source, counts
    inputs.npz       images int16 [N, C, H, W]; expected logits [N, classes], kept [N, stages],
                     keep masks as the kept candidates' indices (mask_index, cut by mask_count [N, stages])
    input_NNN.bin    image NNN for the C example driver.c (format below)

The C example's input file (little-endian u32 words): magic "SPVI", version 1, the result
region's offset and length in the image, the number of runs, then each run: offset, length,
bytes. A run is a piece of the image's input region (golden.compiler.Image.input_runs).
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from base.errors import UsageError
from golden.compiler import Image

INPUTS_FORMAT = "spvit-board-inputs"
C_INPUT_MAGIC = 0x49565053          # b"SPVI"
C_INPUT_VERSION = 1


@dataclass
class InputSet:
    images: np.ndarray           # int16 [N, C, H, W]
    logits: np.ndarray           # expected, [N, classes]
    kept: np.ndarray             # expected, [N, stages]
    masks: list                  # expected, per image per stage: indices of the kept candidates
    image_sha256: str
    source: str

    def __len__(self) -> int:
        return len(self.images)


def c_input(img: Image, x) -> bytes:
    """The C example's input file for image x (module docstring)."""
    runs = img.input_runs(x)
    lo, n = img.regions["results"]
    out = [struct.pack("<5I", C_INPUT_MAGIC, C_INPUT_VERSION, lo, n, len(runs))]
    for offset, data in runs:
        out.append(struct.pack("<2I", offset, len(data)) + bytes(data))
    return b"".join(out)


def write_inputs(out: Path, img: Image, images, logits, kept, masks, source: str) -> list[str]:
    """Write a set into the (empty, temporary) directory `out`; the file names."""
    images = np.asarray(images)
    counts = np.array([[len(m) for m in per_image] for per_image in masks], dtype=np.int64).reshape(len(images), -1)
    index = np.concatenate([np.asarray(m, dtype=np.int64) for per_image in masks for m in per_image] or
                           [np.zeros(0, dtype=np.int64)])
    np.savez(out / "inputs.npz", images=images.astype(np.int16), logits=np.asarray(logits, dtype=np.int64),
             kept=np.asarray(kept, dtype=np.int64).reshape(len(images), -1), mask_index=index, mask_count=counts)
    files = ["inputs.npz"]
    for k, x in enumerate(images):
        name = f"input_{k:03d}.bin"
        (out / name).write_bytes(c_input(img, x))
        files.append(name)
    manifest = {"format": INPUTS_FORMAT, "image_sha256": img.manifest["sha256"], "model": img.manifest["model"]["name"],
                "hardware": img.hw.name, "source": source, "images": len(images), "stages": img.manifest["stages"],
                "classes": img.manifest["classes"], "files": files}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return files


def load_inputs(path) -> InputSet:
    p = Path(path)
    try:
        man = json.loads((p / "manifest.json").read_text())
        with np.load(p / "inputs.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("images", "logits", "kept", "mask_index", "mask_count")}
    except (OSError, ValueError, KeyError) as e:
        raise UsageError(f"{str(path)!r} is not an input set ({e}); write one with spvit board-inputs") from None
    if man.get("format") != INPUTS_FORMAT:
        raise UsageError(f"{str(path)!r} is not an input set (format {man.get('format')!r}); write one with "
                         f"spvit board-inputs")
    counts, index = arrays["mask_count"], arrays["mask_index"]
    cuts = np.cumsum(counts.reshape(-1))[:-1] if counts.size else []
    flat = np.split(index, cuts) if counts.size else []
    stages = counts.shape[1] if counts.ndim == 2 else 0
    masks = [flat[k * stages:(k + 1) * stages] for k in range(len(arrays["images"]))]
    return InputSet(arrays["images"].astype(np.int64), arrays["logits"], arrays["kept"], masks, man["image_sha256"],
                    man.get("source", ""))
