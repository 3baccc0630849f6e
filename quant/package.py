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
import typing
from pathlib import Path

import numpy as np

from base import __version__ as TOOL_VERSION
from base.errors import ConfigError, UsageError
from base.inputs import path_kind
from base.outputs import output_dir
from golden.compiler import check_scheme, compile_model
from golden.config import PACKAGE_MODES, FixedPointConfig, ModelConfig, config_dict, model_from_dict
from golden.hw import DoesNotFit, load_hw
from golden.kernels import PWL, PWL_FUNCS, make_pwl
from golden.layers import QAttention, QBlock, QLayerNorm, QLinear, QMlp
from golden.network import QModel

from . import schemes

FORMAT = "spvit-weight-package"
FORMAT_VERSION = 1
BLOB = "weights.bin"
MANIFEST = "manifest.json"
ALIGN = 64                      # every tensor starts on a 64-byte boundary (zero padding)
LAYER_TYPES = {c.__name__: c for c in (QLinear, QLayerNorm, QAttention, QMlp, QBlock)
               + tuple(t for s in schemes.SCHEMES.values() for t in s.q_types)}
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
    tensors.append(("cls_row", q.cls_row, False, q.cls_frac))
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


def write_package(q: QModel, out, fp: FixedPointConfig = FixedPointConfig(), calibration: dict | None = None,
                  source: dict | None = None, force: bool = False, inputs=()) -> dict:
    """Write the package directory atomically (base.outputs: a temp dir next to `out`, then
    rename; an existing directory is only replaced with `force` and only if it is a package)."""
    with output_dir(out, FORMAT, "a weight package", force=force, inputs=inputs) as tmp:
        return write_package_files(q, tmp, fp, calibration, source)


def write_package_files(q: QModel, where, fp: FixedPointConfig = FixedPointConfig(),
                        calibration: dict | None = None, source: dict | None = None) -> dict:
    """Write manifest.json and the blob into the (new, empty) directory `where`."""
    where = Path(where)
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
    (where / BLOB).write_bytes(blob)
    (where / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    for f in (BLOB, MANIFEST):
        with open(where / f, "rb") as fh:
            os.fsync(fh.fileno())
    return manifest


# ------------------------------------------------------------------ records -> QModel
DTYPES = {"<i2": 2, "<i8": 8}
FRAC_RANGE = (-64, 64)
# integer fields of the layer records and their ranges (anything else is refused)
SCALARS = {"heads": (1, 4096), "scale_mult": (1, 65535), "eps_q": (1, 1 << 62), "cls_eps_q": (1, 1 << 62),
           "cap": (0, 4096), "keep": (0, 4096), "momentum": (0, 1 << 15)}
REFRESH = "the package is damaged or was edited: re-run spvit quantize"


def _bad(path, what: str):
    return PackageError(f"package {str(path)!r}: {what}; {REFRESH}")


def _is_int(v, lo, hi) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _decode(rec, arrays: list, where: str, want=None):
    """A manifest record -> array, PWL or layer dataclass (`want`: the annotated type)."""
    if want is np.ndarray or (isinstance(rec, dict) and set(rec) == {"tensor"}):
        if not (isinstance(rec, dict) and set(rec) == {"tensor"} and _is_int(rec["tensor"], 0, len(arrays) - 1)):
            raise ValueError(f"{where} must point to a tensor (got {rec!r})")
        return arrays[rec["tensor"]]
    if want is PWL or (isinstance(rec, dict) and "pwl" in rec):
        ok = isinstance(rec, dict) and set(rec) == {"pwl", "in_frac", "out_frac", "in_bits"} and \
            isinstance(rec["pwl"], str) and rec["pwl"] in PWL_FUNCS and rec["in_bits"] in (16, 17) and \
            all(_is_int(rec[k], *FRAC_RANGE) for k in ("in_frac", "out_frac"))
        if not ok:
            raise ValueError(f"{where} is not a valid PWL record (got {rec!r})")
        return make_pwl(rec["pwl"], rec["in_frac"], rec["out_frac"], rec["in_bits"])
    if isinstance(rec, dict) and "type" in rec:
        cls = LAYER_TYPES.get(rec["type"]) if isinstance(rec["type"], str) else None
        if cls is None or (want is not None and cls is not want):
            raise ValueError(f"{where} has layer type {rec['type']!r}, expected "
                             f"{want.__name__ if want else 'one of ' + ', '.join(LAYER_TYPES)}")
        hints = typing.get_type_hints(cls)
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in rec and f.default is dataclasses.MISSING]
        if missing:
            raise ValueError(f"{where} ({cls.__name__}) lacks {missing}")
        return cls(**{f.name: _field(rec[f.name], arrays, f"{where}.{f.name}", f.name, hints[f.name])
                      for f in dataclasses.fields(cls) if f.name in rec})   # absent: the field's default
    raise ValueError(f"{where} is not a layer record (got {rec!r:.80})")


def _field(v, arrays, where: str, name: str, tp):
    if tp is int or tp == (int | None):
        if v is None and tp is not int:
            return None
        lo, hi = SCALARS.get(name, FRAC_RANGE)
        if not _is_int(v, lo, hi):
            raise ValueError(f"{where} must be an integer in [{lo}, {hi}] (got {v!r})")
        return v
    if tp is bool:
        if not isinstance(v, bool):
            raise ValueError(f"{where} must be true or false (got {v!r})")
        return v
    if tp is str:
        if not isinstance(v, str) or v not in PACKAGE_MODES:
            raise ValueError(f"{where} must be one of {PACKAGE_MODES} (got {v!r})")
        return v
    return _decode(v, arrays, where, tp)


def model_config(d: dict) -> ModelConfig:
    return model_from_dict(d)


def package_config(m: dict, path) -> ModelConfig:
    """The model config a manifest records; an invalid one is the package's fault."""
    try:
        return model_config(m["model"])
    except (ConfigError, KeyError, TypeError) as e:
        raise _bad(path, f"the model config in its {MANIFEST} is invalid ({e})") from None


def config_differences(a, b, prefix: str = "") -> list:
    """'field: package A vs config B' for every field (nested ones as preprocess.mean) in which
    the package's config `a` and the given config `b` differ; the names do not count."""
    out = []
    for f in dataclasses.fields(a):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if f.name == "name" or va == vb:
            continue
        if dataclasses.is_dataclass(va) and type(va) is type(vb):
            out += config_differences(va, vb, f"{prefix}{f.name}.")
        else:
            out.append(f"{prefix}{f.name}: package {va!r} vs config {vb!r}")
    return out


def read_manifest(path) -> dict:
    """The manifest of a package directory, its structure checked (not yet the blob)."""
    path = Path(path)
    if not path.is_dir() or not (path / MANIFEST).is_file():
        kind = path_kind(path)
        found = "not found" if kind in ("missing", "a directory") else f"is {kind or 'a file'}, not a package"
        raise PackageError(f"package {str(path)!r} {found} (a directory with {MANIFEST} and {BLOB}, "
                           f"written by `spvit quantize`)")
    try:
        m = json.loads((path / MANIFEST).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PackageError(f"package {str(path)!r}: {MANIFEST} is not valid JSON ({e}); "
                           f"re-run spvit quantize") from None
    except OSError as e:
        raise PackageError(f"package {str(path)!r}: cannot read {MANIFEST} ({e.strerror})") from None
    if not isinstance(m, dict):
        raise _bad(path, f"{MANIFEST} holds a JSON {type(m).__name__}, not an object")
    if m.get("format") != FORMAT or m.get("format_version") != FORMAT_VERSION:
        raise PackageError(f"package {str(path)!r}: format {m.get('format')!r} version {m.get('format_version')!r} "
                           f"is not {FORMAT!r} version {FORMAT_VERSION}; re-run spvit quantize")
    _check_structure(m, path)
    return m


def _check_structure(m: dict, path) -> None:
    want = {"model": dict, "fixed_point": dict, "formats": dict, "layers": dict, "blob": dict, "tensors": list}
    for k in ("calibration", "source"):                   # optional, informative
        if not isinstance(m.get(k, {}), dict):
            raise _bad(path, f"{k!r} in {MANIFEST} must be a JSON object")
    for k, t in want.items():
        if not isinstance(m.get(k), t):
            raise _bad(path, f"{MANIFEST} lacks {k!r}" if k not in m else
                       f"{k!r} in {MANIFEST} must be a JSON {'object' if t is dict else 'array'}")
    b = m["blob"]
    if not (isinstance(b.get("file"), str) and b["file"] == Path(b["file"]).name and not b["file"].startswith(".")
            and _is_int(b.get("size"), 0, 1 << 40) and isinstance(b.get("sha256"), str)):
        raise _bad(path, f"'blob' in {MANIFEST} must name a file in the package with its size and sha256")
    for k, v in m["formats"].items():
        if not _is_int(v, *FRAC_RANGE):
            raise _bad(path, f"format {k!r} must be an integer number of fraction bits (got {v!r})")
    for i, t in enumerate(m["tensors"]):
        ok = isinstance(t, dict) and isinstance(t.get("name"), str) and isinstance(t.get("dtype"), str) and \
            t["dtype"] in DTYPES and \
            _is_int(t.get("offset"), 0, b["size"]) and _is_int(t.get("nbytes"), 0, b["size"]) and \
            isinstance(t.get("sha256"), str) and isinstance(t.get("shape"), list) and len(t["shape"]) <= 4 and \
            all(_is_int(d, 0, 1 << 24) for d in t["shape"])
        if not ok:
            raise _bad(path, f"tensor record {i} in {MANIFEST} is malformed (needs name, dtype {'/'.join(DTYPES)}, "
                             f"offset, nbytes, shape, sha256)")
        if int(np.prod(t["shape"])) * DTYPES[t["dtype"]] != t["nbytes"] or t["offset"] + t["nbytes"] > b["size"]:
            raise _bad(path, f"tensor {t['name']!r}: shape {t['shape']} of {t['dtype']} does not match its "
                             f"{t['nbytes']} bytes at offset {t['offset']} of a {b['size']}-byte blob")
    L = m["layers"]
    for k in ("patch", "cls_row", "pos", "norm", "head", "blocks", "selectors"):
        if k not in L:
            raise _bad(path, f"'layers' in {MANIFEST} lacks {k!r}")
    if not isinstance(L["blocks"], list) or not isinstance(L["selectors"], dict):
        raise _bad(path, "'layers.blocks' must be a list and 'layers.selectors' an object")


def load_package(path, cfg: ModelConfig | None = None) -> tuple[QModel, dict]:
    """Verify the manifest, checksums (and the config, when given) and rebuild the QModel; a
    package that does not run on a test image is refused."""
    path = Path(path)
    m = read_manifest(path)
    pcfg = package_config(m, path)
    if cfg is not None:
        diff = config_differences(pcfg, cfg)
        if diff:
            raise PackageError(f"package {str(path)!r} was made for a model that differs from config "
                               f"{cfg.name!r} in " + "; ".join(diff) + ". Quantise the checkpoint with the "
                               "matching config (spvit quantize --config ...), or leave --config out to use the "
                               "package's own")
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
    try:
        q = _rebuild(pcfg, m, arrays)
        _smoke_test(q)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, ZeroDivisionError, OverflowError) as e:
        raise _bad(path, f"its layers do not fit together ({str(e)[:300]})") from None
    return q, m


def _rebuild(cfg: ModelConfig, m: dict, arrays: list) -> QModel:
    L = m["layers"]
    fmt = dict(m["formats"])
    need = ["img", "pos", "logits"] + [f"res.{i}" for i in range(cfg.depth + 1)]
    missing = [k for k in need if k not in fmt]
    if missing:
        raise ValueError(f"formats lack {missing[:4]}")
    if len(L["blocks"]) != cfg.depth:
        raise ValueError(f"{len(L['blocks'])} blocks, but the model config has depth {cfg.depth}")
    want = set(cfg.selector_blocks) if cfg.stages else set()
    if {str(b) for b in want} != set(L["selectors"]):
        raise ValueError(f"selectors before blocks {sorted(L['selectors'])}, but the model config has "
                         f"{sorted(want)}")
    blocks = tuple(_decode(r, arrays, f"blocks.{i}", QBlock) for i, r in enumerate(L["blocks"]))
    sels = {int(k): _selector(cfg, fmt, int(k), r, arrays) for k, r in L["selectors"].items()}
    return QModel(cfg, fmt,
                  _decode(L["patch"], arrays, "patch", QLinear),
                  _decode(L["cls_row"], arrays, "cls_row", np.ndarray),
                  _decode(L["pos"], arrays, "pos", np.ndarray), blocks, sels,
                  _decode(L["norm"], arrays, "norm", QLayerNorm),
                  _decode(L["head"], arrays, "head", QLinear))


def _selector(cfg: ModelConfig, fmt: dict, block: int, rec, arrays: list):
    """The record of the selector of `block`: a layer type of the config's scheme whose settings
    (kept counts, heads, modes, formats) are the ones the config gives."""
    sch = schemes.of(cfg)
    where = f"selectors.{block}"
    types = {t.__name__: t for t in sch.q_types}
    if not (isinstance(rec, dict) and isinstance(rec.get("type"), str) and rec["type"] in types):
        found = rec.get("type") if isinstance(rec, dict) else rec
        raise ValueError(f"{where} has layer type {found!r}, expected {' or '.join(types)} (selector {cfg.selector!r})")
    sel = _decode(rec, arrays, where, types[rec["type"]])
    want = sch.q_settings(cfg, fmt).get(block, {})
    bad = [f"{k} {getattr(sel, k)!r} (the config gives {v!r})" for k, v in want.items() if getattr(sel, k) != v]
    if bad:
        raise ValueError(f"{where} does not match the model config: " + ", ".join(bad))
    return sel


def _smoke_test(q: QModel) -> None:
    """One forward on a mid-grey and a striped image: every layer's shapes and formats meet."""
    c = q.cfg
    img = np.zeros((2, c.in_chans, c.img_size, c.img_size), dtype=np.int64)
    img[1, :, ::2] = 1 << min(max(q.img_frac, 0), 14)
    logits, kept = q(img, threads=1)
    if logits.shape != (2, c.num_classes):
        raise ValueError(f"the head gives {logits.shape[-1]} logits, the config {c.num_classes} classes")


# ---------------------------------------------------------------- package -> DDR image (spvit compile)
def compile_package(package: str, hw_spec: str | None, checkpoints: bool = False, check_model=None):
    """(QModel, golden.compiler.Image) of a package for a hardware configuration. The scheme is
    checked before the shapes: the compiler's (golden.compiler.check_scheme), then the caller's
    `check_model(cfg)` (spvit run: whether the RTL runs the scheme)."""
    q, man = load_package(package)
    try:
        check_scheme(q.cfg)
    except ValueError as e:
        raise UsageError(f"cannot compile {package!r}: {e}") from None
    if check_model is not None:
        check_model(q.cfg)
    hw = load_hw(hw_spec, q.cfg)
    try:
        img = compile_model(q, hw, checkpoints=checkpoints,
                            source={"package": str(package), "package_sha256": man["blob"]["sha256"]})
    except DoesNotFit as e:
        raise UsageError(f"package {package!r}: {e}") from None
    return q, img
