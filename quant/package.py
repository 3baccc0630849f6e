"""Weight packages: a directory with `manifest.json` and one binary blob `weights.bin` holding
every integer tensor of a `QModel` in the order the hardware reads it (docs/weight-layout.md).

    write_package(q, "pkg/", fp, {"method": "maxabs"}, {"checkpoint": ...})   # atomic: temp dir, then rename
    q2, manifest = load_package("pkg/", cfg)                  # bit-identical QModel

The manifest describes the model as a tree of layer records (class name, integer scalars such
as fraction bits, PWL specs) whose arrays point into the tensor table; loading rebuilds the
golden dataclasses from it, so a package needs no float checkpoint.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from golden.config import FixedPointConfig, ModelConfig
from golden.kernels import PWL, make_pwl
from golden.network import QAttention, QBlock, QLayerNorm, QLinear, QMlp, QModel
from golden.selectors import SCHEMES
from spvit import __version__ as TOOL_VERSION
from spvit.errors import UsageError

FORMAT = "spvit-weight-package"
FORMAT_VERSION = 1
BLOB = "weights.bin"
MANIFEST = "manifest.json"
ALIGN = 64                      # every tensor starts on a 64-byte boundary (zero padding)
LAYER_TYPES = {c.__name__: c for c in (QLinear, QLayerNorm, QAttention, QMlp, QBlock)
               + tuple(t for s in SCHEMES.values() for t in s.q_types)}
ACC_FIELDS = {"b", "beta"}      # stored as int64 (48-bit accumulator format); all else int16


class PackageError(UsageError):
    """A package is missing, corrupt or made for another configuration."""


# ------------------------------------------------------------------ QModel -> records
def _frac_of(obj, fname: str) -> int | None:
    if isinstance(obj, QLinear):
        return obj.w_frac if fname == "w" else obj.in_frac + obj.w_frac
    if isinstance(obj, QLayerNorm):
        return obj.g_frac if fname == "gamma" else 16 + obj.g_frac
    return None


def _encode(obj, prefix: str, tensors: list) -> dict:
    """A dataclass layer -> JSON record; arrays go to `tensors` (in field order)."""
    rec = {"type": type(obj).__name__}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        name = f"{prefix}.{f.name}"
        if isinstance(v, np.ndarray):
            rec[f.name] = {"tensor": len(tensors)}
            tensors.append((name, v, f.name in ACC_FIELDS, _frac_of(obj, f.name)))
        elif isinstance(v, PWL):
            rec[f.name] = {"pwl": v.name, "in_frac": v.in_frac, "out_frac": v.out_frac, "in_bits": v.in_bits}
        elif dataclasses.is_dataclass(v):
            rec[f.name] = _encode(v, name, tensors)
        elif v is None or isinstance(v, (int, str, np.integer)):
            rec[f.name] = v if not isinstance(v, np.integer) else int(v)
        else:
            raise TypeError(f"cannot serialise {name} of type {type(v).__name__}")
    return rec


def hardware_order(q: QModel):
    """(records, tensors) with tensors in the order the hardware reads them: patch embedding,
    CLS row, position embedding; then for each block i, the selector of block i (if any: it
    runs before the block, or inside it for EViT; parameter-free selectors have a record and
    no tensors) followed by the block; the final LayerNorm and the head."""
    tensors: list = []
    recs = {"patch": _encode(q.patch, "patch", tensors)}
    recs["cls_row"] = {"tensor": len(tensors)}
    tensors.append(("cls_row", q.cls_row, False, q.fmt["res.0"]))
    recs["pos"] = {"tensor": len(tensors)}
    tensors.append(("pos", q.pos, False, q.fmt["pos"]))
    blocks, sels = [], {}
    for i, blk in enumerate(q.blocks):
        if i in q.selectors:
            j = len(sels)
            sels[str(i)] = _encode(q.selectors[i], f"sel.{j}", tensors)
        blocks.append(_encode(blk, f"blocks.{i}", tensors))
    recs["blocks"] = blocks
    recs["selectors"] = sels
    recs["norm"] = _encode(q.norm, "norm", tensors)
    recs["head"] = _encode(q.head, "head", tensors)
    return recs, tensors


def _to_bytes(arr: np.ndarray, acc: bool, name: str) -> tuple[bytes, str]:
    a = np.asarray(arr)
    if acc:
        return np.ascontiguousarray(a, dtype="<i8").tobytes(), "<i8"
    if a.size and (a.min() < -32768 or a.max() > 32767):
        raise ValueError(f"{name} does not fit int16 (range {a.min()}..{a.max()})")
    return np.ascontiguousarray(a, dtype="<i2").tobytes(), "<i2"


def config_dict(cfg) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()}


def write_package(q: QModel, out, fp: FixedPointConfig = FixedPointConfig(), calibration: dict | None = None,
                  source: dict | None = None, force: bool = False) -> dict:
    """Write the package directory atomically (a temp dir next to `out`, then rename)."""
    out = Path(out)
    if out.exists() and not force:
        raise PackageError(f"output {str(out)!r} already exists; remove it or pass --force")
    if out.exists() and not (out / MANIFEST).is_file():
        raise PackageError(f"output {str(out)!r} exists and is not a package; refusing to replace it")
    recs, tensors = hardware_order(q)
    table, chunks, off = [], [], 0
    for name, arr, acc, frac in tensors:
        data, dtype = _to_bytes(arr, acc, name)
        pad = (-off) % ALIGN
        chunks.append(b"\0" * pad)
        off += pad
        table.append({"name": name, "offset": off, "nbytes": len(data), "dtype": dtype,
                      "shape": list(np.shape(arr)), "frac": frac, "sha256": hashlib.sha256(data).hexdigest()})
        chunks.append(data)
        off += len(data)
    blob = b"".join(chunks)
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "tool": "spvit-accel", "tool_version": TOOL_VERSION,
        "model": config_dict(q.cfg), "fixed_point": config_dict(fp),
        "calibration": calibration or {},
        "source": source or {},
        "formats": dict(sorted(q.fmt.items())),
        "layers": recs,
        "blob": {"file": BLOB, "size": len(blob), "sha256": hashlib.sha256(blob).hexdigest(), "align": ALIGN,
                 "byte_order": "little"},
        "tensors": table,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        (tmp / BLOB).write_bytes(blob)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        for f in (BLOB, MANIFEST):
            with open(tmp / f, "rb") as fh:
                os.fsync(fh.fileno())
        if out.exists():
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest


# ------------------------------------------------------------------ records -> QModel
def _decode(rec, arrays: list):
    if isinstance(rec, dict) and "tensor" in rec and len(rec) == 1:
        return arrays[rec["tensor"]]
    if isinstance(rec, dict) and "pwl" in rec:
        return make_pwl(rec["pwl"], rec["in_frac"], rec["out_frac"], rec["in_bits"])
    if isinstance(rec, dict) and "type" in rec:
        cls = LAYER_TYPES.get(rec["type"])
        if cls is None:
            raise PackageError(f"unknown layer type {rec['type']!r} in the manifest (package from a newer tool?)")
        kw = {f.name: _decode(rec[f.name], arrays) for f in dataclasses.fields(cls)}
        return cls(**kw)
    return rec


def model_config(d: dict) -> ModelConfig:
    return ModelConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def config_differences(a: ModelConfig, b: ModelConfig) -> list:
    return [f"{f.name}: package {getattr(a, f.name)!r} vs config {getattr(b, f.name)!r}"
            for f in dataclasses.fields(a) if f.name != "name" and getattr(a, f.name) != getattr(b, f.name)]


def read_manifest(path) -> dict:
    path = Path(path)
    if not path.is_dir() or not (path / MANIFEST).is_file():
        raise PackageError(f"package {str(path)!r} not found (a directory with {MANIFEST} and {BLOB}, "
                           f"written by `spvit quantize`)")
    try:
        m = json.loads((path / MANIFEST).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PackageError(f"package {str(path)!r}: {MANIFEST} is not valid JSON ({e}); re-run spvit quantize") from None
    if m.get("format") != FORMAT or m.get("format_version") != FORMAT_VERSION:
        raise PackageError(f"package {str(path)!r}: format {m.get('format')!r} version {m.get('format_version')!r} "
                           f"is not {FORMAT!r} version {FORMAT_VERSION}; re-run spvit quantize")
    return m


def load_package(path, cfg: ModelConfig | None = None) -> tuple[QModel, dict]:
    """Verify checksums (and the config, when given) and rebuild the QModel."""
    path = Path(path)
    m = read_manifest(path)
    pcfg = model_config(m["model"])
    if cfg is not None:
        diff = config_differences(pcfg, cfg)
        if diff:
            raise PackageError(f"package {str(path)!r} was made for config {pcfg.name!r}, which differs from "
                               f"{cfg.name!r}: " + "; ".join(diff) + ". Quantise the checkpoint with the "
                               "matching config (spvit quantize --config ...)")
    blob_path = path / m["blob"]["file"]
    if not blob_path.is_file():
        raise PackageError(f"package {str(path)!r}: blob {m['blob']['file']!r} is missing; re-run spvit quantize")
    blob = blob_path.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if len(blob) != m["blob"]["size"] or digest != m["blob"]["sha256"]:
        raise PackageError(f"package {str(path)!r} is corrupt: {m['blob']['file']} has sha256 {digest[:16]}... "
                           f"and {len(blob)} bytes, the manifest says {m['blob']['sha256'][:16]}... and "
                           f"{m['blob']['size']} bytes; re-run spvit quantize")
    arrays = []
    for t in m["tensors"]:
        data = blob[t["offset"]:t["offset"] + t["nbytes"]]
        if hashlib.sha256(data).hexdigest() != t["sha256"]:
            raise PackageError(f"package {str(path)!r} is corrupt: tensor {t['name']} fails its checksum")
        arrays.append(np.frombuffer(data, dtype=t["dtype"]).astype(np.int64).reshape(t["shape"]))
    L = m["layers"]
    fmt = dict(m["formats"])
    blocks = tuple(_decode(r, arrays) for r in L["blocks"])
    sels = {int(k): _decode(r, arrays) for k, r in L["selectors"].items()}
    q = QModel(pcfg, fmt, _decode(L["patch"], arrays), arrays[L["cls_row"]["tensor"]],
               arrays[L["pos"]["tensor"]], blocks, sels, _decode(L["norm"], arrays), _decode(L["head"], arrays))
    return q, m


def fixed_point_config(m: dict) -> FixedPointConfig:
    return FixedPointConfig(**m["fixed_point"])
