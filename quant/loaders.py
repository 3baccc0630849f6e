"""Checkpoint loading: an explicit registry of typed handlers, one per file format.

Each handler reads a file into a `Checkpoint` (tensors under the names in the file); `fit`
maps the authors' key names of the configured scheme onto the float twin's (timm DeiT names
plus the official selector names; golden/selectors/*: `from_checkpoint`), checks the result
against a `ModelConfig` and reports every problem by name, including a checkpoint that looks
like another scheme's; `load_float_model` returns the float twin.

    ck = read_checkpoint("deit_tiny.pth")     # picks the handler by suffix
    model = load_float_model("deit_tiny.pth", load_config("deit-tiny").model)

Never unpickles code: torch files are read with `torch.load(weights_only=True)`, after their
zip archive's CRC-32 checksums were verified (a damaged file is refused, never quantised with
whatever bytes it holds; the legacy format without checksums is refused with the one-line
conversion). Tensors must be dense, unquantised and hold data: sparse (a sparse tensor whose
indices lie outside its shape would be densified out of bounds), quantised and meta tensors
are refused with the conversion. Checkpoint keys appear in messages through base.errors.shown
(a key holding a newline or an ANSI escape cannot forge a line).
"""
from __future__ import annotations

import hashlib
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from base.errors import UsageError, notice, shown
from base.inputs import regular_file
from golden.config import PRESETS, ModelConfig
from golden.float_model import DeiT

from . import schemes

WRAPPER_KEYS = ("model", "state_dict", "model_state_dict", "model_ema", "state_dict_ema", "module")
STRIP_PREFIXES = ("module.", "_orig_mod.", "model.")   # DDP, torch.compile, Lightning
LIST_MAX = 8


class CheckpointError(UsageError):
    """A checkpoint cannot be read or does not fit the configuration."""


@dataclass(frozen=True)
class Checkpoint:
    path: str
    format: str                      # handler name
    tensors: dict                    # name -> float32 torch.Tensor (our names)
    meta: dict = field(default_factory=dict)

    def sha256(self) -> str:
        return file_sha256(self.path)


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _normalise(tensors: dict, path: str, meta: dict | None = None) -> dict:
    """Strip DDP / compile / wrapper prefixes (noted in `meta`), convert floating tensors to float32."""
    out = {}
    for k, v in tensors.items():
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"checkpoint {path!r}: entry {k!r} is a {type(v).__name__}, not a tensor; "
                                  f"save the model's state_dict (name -> tensor)")
        why = ("is a sparse tensor: save it dense (v.to_dense())" if v.layout != torch.strided else
               "is an already quantised tensor: give the float checkpoint" if v.is_quantized else
               "is a meta tensor, which holds no values: save the trained model's state_dict" if v.is_meta else None)
        if why:
            raise CheckpointError(f"checkpoint {path!r}: entry {k!r} ({str(v.layout).replace('torch.', '')}, "
                                  f"{str(v.dtype).replace('torch.', '')}) {why}; spvit reads dense float tensors")
        out[k] = v
    stripped = []
    for _ in range(len(STRIP_PREFIXES)):          # nested prefixes, e.g. module._orig_mod.
        p = next((p for p in STRIP_PREFIXES if out and all(k.startswith(p) for k in out)), None)
        if p is None:
            break
        out = {k[len(p):]: v for k, v in out.items()}
        stripped.append(p)
    if meta is not None and stripped:
        meta["stripped_prefix"] = "".join(stripped)
    return {k: (v.detach().to(torch.float32) if v.is_floating_point() else v.detach()) for k, v in out.items()}


def _unwrap(obj, path: str, meta: dict):
    """The state_dict inside a training checkpoint ({"model": ..., "epoch": ...}, possibly
    nested); the keys taken go to meta["wrapper"]."""
    keys = []
    while isinstance(obj, dict) and obj and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        key = next((k for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
        if key is None or len(keys) > 3:
            raise CheckpointError(
                f"checkpoint {path!r} is a dict without a state_dict: expected tensors, or one of the keys "
                f"{list(WRAPPER_KEYS)} holding them (found keys {sorted(map(str, obj))[:LIST_MAX]})")
        if not keys:
            meta["other_keys"] = sorted(str(k) for k in obj if k != key)
        keys.append(key)
        obj = obj[key]
    if keys:
        meta["wrapper"] = ".".join(keys)
    return obj


def _reason(e) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return next((line for line in lines if "GLOBAL" in line or "Unsupported" in line),
                lines[0] if lines else repr(e))


# ------------------------------------------------------------------ handlers
@dataclass(frozen=True)
class TorchHandler:
    """`.pth` / `.pt` / `.bin`: a bare state_dict or one wrapped as {"model": state_dict, ...}."""
    name: str = "torch"
    suffixes: tuple = (".pth", ".pt", ".bin", ".ckpt")

    def load(self, path: str) -> Checkpoint:
        _verify_archive(path)
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            if "GLOBAL" not in str(e) and "global" not in str(e):   # not a refused class: a broken file
                raise CheckpointError(f"cannot read checkpoint {path!r} as a torch file (corrupt or not a "
                                      f"checkpoint; the unpickler says: {_reason(e)})") from None
            detail = _reason(e)
            raise CheckpointError(
                f"checkpoint {path!r} needs arbitrary unpickling, which spvit refuses because it can run code "
                f"({detail}). If you trust the file, convert it once to a plain state_dict, e.g.\n"
                f"  python -c \"import torch; c = torch.load('{path}', weights_only=False); "
                f"torch.save(c.get('model', c) if isinstance(c, dict) else c.state_dict(), 'converted.pth')\"\n"
                f"or save it as .safetensors, then pass the converted file") from None
        except Exception as e:  # not a torch file, truncated zip, ...
            raise CheckpointError(f"cannot read checkpoint {path!r} as a torch file: {e}") from None
        meta = {}
        obj = _unwrap(obj, path, meta)
        if not isinstance(obj, dict):
            raise CheckpointError(f"checkpoint {path!r} holds a {type(obj).__name__}, not a state_dict; "
                                  f"save model.state_dict() instead")
        return Checkpoint(path, self.name, _normalise(obj, path, meta), meta)


def _verify_archive(path: str) -> None:
    """A torch file's zip archive with every member's CRC-32 checked; the legacy format (torch
    < 1.6: a bare pickle stream, no checksums) is refused with the conversion."""
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            legacy = f.read(2) == b"\x80\x02"           # pickle protocol 2: torch.save before 1.6
        if legacy:
            raise CheckpointError(
                f"checkpoint {path!r} is in torch's legacy format (saved by torch < 1.6 or with "
                f"_use_new_zipfile_serialization=False), which has no checksums, so a damaged file would be "
                f"quantised unnoticed; convert it once and pass the converted file:\n"
                f"  python -c \"import torch; torch.save(torch.load('{path}', weights_only=True), 'converted.pth')\"")
        raise CheckpointError(f"cannot read checkpoint {path!r} as a torch file: it is neither a zip archive "
                              f"(torch.save) nor a legacy torch pickle; corrupt, truncated or not a checkpoint")
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, OSError, EOFError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path!r} is a damaged zip archive ({e}); "
                              f"copy or download it again") from None
    if bad is not None:
        raise CheckpointError(f"checkpoint {path!r} is corrupt: its member {shown(bad)!r} fails its CRC-32 check "
                              f"(damaged on disk or in transfer); copy or download it again")


@dataclass(frozen=True)
class SafetensorsHandler:
    name: str = "safetensors"
    suffixes: tuple = (".safetensors",)

    def load(self, path: str) -> Checkpoint:
        from safetensors import SafetensorError, safe_open
        try:
            with safe_open(path, framework="pt") as f:
                tensors = {k: f.get_tensor(k) for k in f.keys()}
                meta = dict(f.metadata() or {})
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"cannot read checkpoint {path!r} as safetensors: {e}") from None
        return Checkpoint(path, self.name, _normalise(tensors, path, meta), meta)


@dataclass(frozen=True)
class OnnxHandler:
    """ONNX graph: initialisers (and Constant / Identity outputs) named like our parameters are
    taken as they are; an anonymous MatMul weight followed by an Add of `X.bias` is `X.weight` transposed
    (how exporters lay out nn.Linear on 3-D inputs); Gemm with transB=1 is taken directly."""
    name: str = "onnx"
    suffixes: tuple = (".onnx",)

    def load(self, path: str) -> Checkpoint:
        try:
            import onnx
            from onnx import numpy_helper
        except ImportError:
            raise CheckpointError("ONNX checkpoints need the onnx package: pip install -e '.[data]'") from None
        try:
            g = onnx.load(path).graph
        except Exception as e:
            raise CheckpointError(f"cannot read checkpoint {path!r} as ONNX: {e}") from None
        consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        for n in g.node:
            if n.op_type == "Constant":
                for a in n.attribute:
                    if a.name == "value":
                        consts[n.output[0]] = numpy_helper.to_array(a.t)
        for n in g.node:   # exporters share equal initialisers through Identity nodes named after each parameter
            if n.op_type == "Identity" and n.input[0] in consts:
                consts[n.output[0]] = consts[n.input[0]]
        ours = re.compile(r"^(.*\.)?(weight|bias|cls_token|pos_embed)$")
        tensors = {k: v for k, v in consts.items() if ours.match(k) and "::" not in k}
        consumers = {}
        for n in g.node:
            for i in n.input:
                consumers.setdefault(i, []).append(n)
        for n in g.node:
            if n.op_type == "MatMul" and n.input[1] in consts and n.input[1] not in tensors:
                for c in consumers.get(n.output[0], []):
                    bias = next((i for i in c.input if i.endswith(".bias") and i in consts), None) \
                        if c.op_type == "Add" else None
                    if bias is not None:
                        tensors.setdefault(bias[:-5] + ".weight", consts[n.input[1]].T.copy())
            if n.op_type == "Gemm" and len(n.input) > 2 and n.input[2].endswith(".bias"):
                tb = next((a.i for a in n.attribute if a.name == "transB"), 0)
                w = consts.get(n.input[1])
                if w is not None:
                    tensors.setdefault(n.input[2][:-5] + ".weight", w if tb else w.T.copy())
        if not tensors:
            raise CheckpointError(f"ONNX file {path!r} has no initialisers with parameter names "
                                  f"(export with export_params=True and keep the module names)")
        return Checkpoint(path, self.name, _normalise({k: torch.from_numpy(np.array(v)) for k, v in tensors.items()},
                                                      path), {"onnx_initialisers": len(consts)})


HANDLERS = {h.name: h for h in (TorchHandler(), SafetensorsHandler(), OnnxHandler())}


def handler_for(path: str):
    suf = Path(path).suffix.lower()
    for h in HANDLERS.values():
        if suf in h.suffixes:
            return h
    known = ", ".join(s for h in HANDLERS.values() for s in h.suffixes)
    raise CheckpointError(f"unknown checkpoint type {suf or '(no suffix)'!r} for {path!r}; supported: {known}")


def checked_path(path) -> str:
    """`path` if it names a regular file of a known checkpoint type (cheap: `spvit quantize`
    checks it before claiming its output); else a CheckpointError naming what it is."""
    path = str(path)
    regular_file(path, "checkpoint", error=CheckpointError)
    handler_for(path)
    return path


def read_checkpoint(path) -> Checkpoint:
    path = checked_path(path)
    return handler_for(path).load(path)


# ------------------------------------------------------------------ fitting a config
def infer_config(tensors: dict) -> dict:
    """The model fields a state_dict reveals. `num_heads` only from SPViT selectors (a plain
    timm state_dict does not store it): otherwise a guess of head_dim 64 (else 32, 16, 8),
    marked in '_guessed'. `selector_blocks` are never stored: the scheme's guess (golden/selectors/*:
    `infer`), marked too. A scheme without parameters (EViT) cannot be told from plain DeiT."""
    out, guessed = {}, []
    shp = {k: tuple(v.shape) for k, v in tensors.items()}
    if "patch_embed.proj.weight" in shp and len(shp["patch_embed.proj.weight"]) == 4:
        c, ch, p, _ = shp["patch_embed.proj.weight"]
        out.update(embed_dim=c, in_chans=ch, patch_size=p)
        if "pos_embed" in shp:
            side = round((shp["pos_embed"][1] - 1) ** 0.5)
            if side * side == shp["pos_embed"][1] - 1:
                out["img_size"] = side * p
    blocks = {int(m.group(1)) for k in shp if (m := re.match(r"blocks\.(\d+)\.", k))}
    if blocks:
        out["depth"] = max(blocks) + 1
    if "blocks.0.mlp.fc1.weight" in shp and "embed_dim" in out:
        out["mlp_ratio"] = shp["blocks.0.mlp.fc1.weight"][0] / out["embed_dim"]
    if "head.weight" in shp:
        out["num_classes"] = shp["head.weight"][0]
    for sch in schemes.SCHEMES.values():
        found = sch.infer(shp, out.get("depth", 12), tensors)
        if found:
            guessed += found.pop("_guessed", [])
            out.update(found)
            break
    else:
        out.update(selector="none", selector_blocks=())
    if "num_heads" not in out and "embed_dim" in out:
        # only SPViT's per-head predictors store the head count: head_dim 64 if it divides, else 32, 16, 8
        c = out["embed_dim"]
        out["num_heads"] = next((c // hd for hd in (64, 32, 16, 8) if c % hd == 0), 1)
        guessed.append("num_heads")
    out["_guessed"] = guessed
    return out


STRUCTURAL = ("img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads", "mlp_ratio",
              "num_classes", "selector", "selector_blocks", "keep_rate", "package_mode")


def _preset_fits(p: ModelConfig, fields: dict, guessed) -> bool:
    """Does preset p have every revealed field (guesses other than num_heads are not held against it)?"""
    for k, v in fields.items():
        if k == "selector_blocks" and fields.get("selector") != "none":
            continue
        if k in guessed and k != "num_heads":
            continue
        if _differs(getattr(p, k), v):
            return False
    return True


def suggest_config(inferred: dict) -> str:
    """A preset name or a TOML snippet matching what the checkpoint reveals (num_heads always
    spelled out; guesses marked)."""
    fields = {k: v for k, v in inferred.items() if k in STRUCTURAL}
    guessed = inferred.get("_guessed", ())
    for name, p in PRESETS.items():
        if _preset_fits(p, fields, guessed) and (fields.get("selector") == "none" or
                                                  tuple(p.selector_blocks) == tuple(fields.get("selector_blocks", ()))):
            return f"--config {name}"
    lines = ["a TOML file such as", "  [model]"]
    for k, v in fields.items():
        if isinstance(v, tuple):
            v = list(v)
        val = f'"{v}"' if isinstance(v, str) else v
        note = "   # guessed: check" if k in guessed else ""
        if k == "package_mode" and v == "sum":
            note = "   # official SPViT layout (heads share one module): trained with the summed package token"
        lines.append(f"  {k} = {val}{note}")
    return "\n".join(lines)


def _names(names, n=LIST_MAX) -> str:
    names = sorted(map(shown, names))
    more = f", ... ({len(names) - n} more)" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def fit(ck: Checkpoint, cfg: ModelConfig, model: DeiT | None = None) -> dict:
    """Check the checkpoint against the config; return the state_dict to load or raise a
    CheckpointError listing every problem (config mismatch with the config that would fit,
    missing keys, unexpected keys, shape mismatches with both shapes, NaN / Inf)."""
    expected = {k: tuple(v.shape) for k, v in (model or DeiT(cfg)).state_dict().items()}
    got, _ = schemes.of(cfg).from_checkpoint(ck.tensors)
    missing = set(expected) - set(got)
    unexpected = set(got) - set(expected)
    shapes = [f"{shown(k)}: checkpoint {list(got[k].shape)} vs model {list(expected[k])}"
              for k in sorted(set(expected) & set(got)) if tuple(got[k].shape) != expected[k]]
    problems = []
    if missing or unexpected or shapes:
        other = looks_like(ck.tensors)
        if other and other[0] != cfg.selector:
            sch, evidence = schemes.SCHEMES[other[0]].golden, other[1]
            fits = [n for n, p in PRESETS.items() if p.selector == other[0]]
            problems.append(f"the checkpoint looks like one made for {sch.title} ({shown(evidence)}), "
                            f"but config {cfg.name!r} has selector {cfg.selector!r}: use a {other[0]} config"
                            + (f" (presets: {', '.join(fits)})" if fits else ""))
        elif other is None and cfg.scheme.selector_params(cfg) and missing:
            problems.append(f"the checkpoint has no {cfg.scheme.title} selector weights (a plain DeiT or EViT "
                            f"checkpoint?): config {cfg.name!r} needs them; use a deit-* or evit-* config for it")
        inferred = infer_config(ck.tensors)
        diff = [f"{k} {inferred[k]!r} in the checkpoint vs {getattr(cfg, k)!r} in the config"
                for k in STRUCTURAL if k in inferred and k not in inferred["_guessed"]
                and _differs(inferred[k], getattr(cfg, k))]
        if diff:
            problems.append(f"config {cfg.name!r} does not fit the checkpoint: " + "; ".join(diff)
                            + f".\n  A config that fits: {suggest_config(inferred)}")
        if shapes:
            problems.append(f"shape mismatch ({len(shapes)}): " + "; ".join(shapes[:LIST_MAX])
                            + (f"; ... ({len(shapes) - LIST_MAX} more)" if len(shapes) > LIST_MAX else ""))
        if missing:
            problems.append(f"missing keys ({len(missing)}): {_names(missing)}")
        if unexpected:
            hint = ""
            if {"dist_token", "head_dist.weight"} & unexpected:
                hint = (" (a distilled DeiT: its dist_token / head_dist are not supported; "
                        "use the non-distilled release)")
            problems.append(f"unexpected keys ({len(unexpected)}): {_names(unexpected)}{hint}")
    ints = sorted(f"{shown(k)} ({str(got[k].dtype).replace('torch.', '')})" for k in set(expected) & set(got)
                  if not got[k].is_floating_point())
    if ints:
        problems.append(f"{len(ints)} tensor(s) are not floating point: {', '.join(ints[:LIST_MAX])}"
                        + (f", ... ({len(ints) - LIST_MAX} more)" if len(ints) > LIST_MAX else "")
                        + "; spvit quantises float weights (float32, float16, bfloat16): give the float "
                        "checkpoint, not an integer or already quantised one")
    bad = []
    for k in sorted(set(expected) & set(got)):
        t = got[k]
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad.append(f"{shown(k)} ({int(torch.isnan(t).sum())} NaN, {int(torch.isinf(t).sum())} Inf)")
    if bad:
        problems.append(f"non-finite weights in {len(bad)} tensor(s): {', '.join(bad[:LIST_MAX])}; "
                        f"the checkpoint is broken (diverged training or a bad conversion)")
    if problems:
        raise CheckpointError(f"checkpoint {ck.path!r} ({ck.format}) cannot be loaded into config "
                              f"{cfg.name!r}:\n  " + "\n  ".join(problems))
    return {k: got[k] for k in expected}


def looks_like(tensors: dict) -> tuple[str, str] | None:
    """(scheme, the key that gives it away) for a state_dict with selector weights or the
    authors' key layout of a scheme; None for timm DeiT keys (plain DeiT or EViT)."""
    keys = set(tensors)
    for name, sch in schemes.SCHEMES.items():
        ev = sch.detect(keys)
        if ev:
            return name, ev
    return None


def _differs(a, b) -> bool:
    if isinstance(a, (tuple, list)) or isinstance(b, (tuple, list)):
        return tuple(a) != tuple(b)
    return a != b


def load_float_model(path, cfg: ModelConfig) -> DeiT:
    """Read, check and load a checkpoint into the float twin (eval mode). One-line notices say
    which wrapper key and key prefix were used, and that a checkpoint without selectors does
    not store its head count."""
    ck = read_checkpoint(path)
    model = DeiT(cfg)
    model.load_state_dict(fit(ck, cfg, model), strict=True)
    if ck.meta.get("wrapper") or ck.meta.get("stripped_prefix"):
        parts = []
        if ck.meta.get("wrapper"):
            other = ck.meta.get("other_keys", [])
            parts.append(f"using the state_dict under {ck.meta['wrapper']!r}"
                         + (f" (not used: {_names(other)})" if other else ""))
        if ck.meta.get("stripped_prefix"):
            parts.append(f"key prefix {ck.meta['stripped_prefix']!r} stripped")
        notice(f"checkpoint {shown(path)}: " + "; ".join(parts))
    if "num_heads" in infer_config(ck.tensors)["_guessed"]:       # only SPViT's predictors store it
        notice(f"checkpoint {shown(path)} does not store the head count; using num_heads = {cfg.num_heads} (head_dim "
               f"{cfg.head_dim}) from config {cfg.name!r}: set num_heads if the model was trained with another")
    return model.eval()
