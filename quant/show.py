"""Pictures of what a model's token selection keeps (`spvit compare --show DIR`): one PNG per
image with the input and, for every selection stage, the patches the stage keeps, for the float
twin and the int16 golden model side by side.

They are drawn from what the comparison recorded (quant.compare.CompareResult, from
golden.tokens.Record): the ids of every stage's candidates and kept tokens. Patch position p is
token id p + 1, so a stage's kept ids are the patches it keeps; for SPViT, DynamicViT and EViT,
whose candidates are the tokens an earlier stage kept, that is already composed over the stages
before (a patch dropped at stage 0 stays greyed). Evo-ViT re-ranks all patches at every stage:
its greyed patches are that stage's placeholders. Tokens that are not patches (CLS, SPViT's
package tokens, EViT's fused tokens) are not drawn; the captions count them.

The pixels are exact: a panel is the image un-normalised with the data's mean and std (clipped
to [0, 1], 8 bits, grey images as RGB), enlarged by a whole factor (nearest) and placed without
resampling (`Figure.figimage`). A greyed patch's pixels v become round(GREY + FADE * (v - GREY));
an int16 patch whose decision differs from the float model's gets an OUTLINE frame.
"""
from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from base.outputs import MANIFEST

from .schemes import of as scheme_of

KIND = "spvit-show"           # the manifest format of a --show directory (base/outputs.py)
GREY, FADE = 128, 0.12        # a greyed pixel: round(GREY + FADE * (v - GREY)): mid grey, a trace of the content
OUTLINE = (220, 20, 60)       # frame of an int16 patch decided otherwise than by the float model
PANEL_MIN = 224               # panels are enlarged by the smallest whole factor reaching this size
DPI = 100                     # pixels per inch of the PNG: font sizes below are in points
LINE, CHAR = 15, 6.2          # pixels per caption line and per character (8 pt, on average)
MODELS = ("float", "int16")


# ------------------------------------------------------------------ pixels
def to_view(x, mean, std) -> np.ndarray:
    """A normalised image [C, S, S] -> uint8 RGB [S, S, 3] in [0, 1] * 255 (x * std + mean)."""
    x = np.asarray(x, dtype=np.float64)
    v = x * np.asarray(std, np.float64)[:, None, None] + np.asarray(mean, np.float64)[:, None, None]
    v = np.rint(np.clip(v, 0.0, 1.0) * 255).astype(np.uint8).transpose(1, 2, 0)
    return np.repeat(v, 3, axis=2) if v.shape[2] == 1 else v


def patch_keep(ids, grid: int) -> np.ndarray:
    """bool [grid, grid]: the patches among token ids `ids` (id p + 1 is patch position p, raster order)."""
    ids = np.asarray(ids, dtype=np.int64)
    keep = np.zeros(grid * grid, dtype=bool)
    keep[ids[(ids >= 1) & (ids <= grid * grid)] - 1] = True
    return keep.reshape(grid, grid)


def enlarge(img: np.ndarray, k: int) -> np.ndarray:
    """Each pixel (or patch-mask entry) becomes a k x k square."""
    return np.repeat(np.repeat(img, k, 0), k, 1)


def greyed(img: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """img uint8 [S, S, 3] with the patches not in `keep` [grid, grid] greyed (module docstring)."""
    grey = np.rint(GREY + FADE * (img.astype(np.float64) - GREY)).astype(np.uint8)
    return np.where(enlarge(keep, img.shape[0] // keep.shape[0])[..., None], img, grey)


def outlined(img: np.ndarray, mark: np.ndarray, width: int) -> np.ndarray:
    """img with a frame `width` pixels wide inside each patch of `mark` [grid, grid]."""
    out = img.copy()
    p = img.shape[0] // mark.shape[0]
    for r, c in zip(*np.nonzero(mark)):
        tile = out[r * p:(r + 1) * p, c * p:(c + 1) * p]
        tile[:width], tile[-width:], tile[:, :width], tile[:, -width:] = OUTLINE, OUTLINE, OUTLINE, OUTLINE
    return out


def scale_for(img_size: int) -> int:
    """The whole enlargement factor of a panel."""
    return max(1, -(-PANEL_MIN // img_size))


# ------------------------------------------------------------------ what each panel says
@dataclass
class StagePanel:
    keep: np.ndarray          # bool [grid, grid]: patches kept at this stage
    lines: list               # caption lines
    differ: int = 0           # patches decided otherwise than by the float model (int16 panels)


def _tag(made: str, stage: int) -> str:
    """The short name of the token made at `stage`: p0 (package), f1 (fused), ..."""
    return f"{made[:1]}{stage}"


def _patches(ids, num_patches: int, made: str) -> str:
    """'(n patches + f0, f1)': the patches and the made tokens (id num_patches + 1 + t) among `ids`."""
    ids = np.asarray(ids)
    n = int((ids <= num_patches).sum())
    tags = ", ".join(_tag(made, t - num_patches - 1) for t in ids if t > num_patches)
    return f"  ({n} patch{'' if n == 1 else 'es'} + {tags})"


def stage_panel(cfg, stage: int, cand, kept) -> StagePanel:
    """One model's decision at one stage: candidates' and kept tokens' ids (golden.tokens.Record)."""
    sch, P = scheme_of(cfg), cfg.num_patches
    cand, kept = np.asarray(cand), np.asarray(kept)
    dropped = np.setdiff1d(cand, kept)
    noun = "patches" if (cand <= P).all() else "tokens"
    lines = [f"{len(kept)} of {len(cand)} {noun} {sch.kept_as}"]
    if (kept > P).any():
        lines.append(_patches(kept, P, sch.made_token))
    if sch.makes_token(cfg, stage):
        lines.append(f"{len(dropped)} dropped \u2192 {sch.made_token} token {_tag(sch.made_token, stage)}")
    else:
        lines.append(f"{len(dropped)} {sch.dropped_as}")
    if (dropped > P).any():
        lines.append(_patches(dropped, P, sch.made_token))
    return StagePanel(patch_keep(kept, cfg.img_size // cfg.patch_size), lines)


def image_panels(r, cfg, i: int) -> dict:
    """{model: [StagePanel per stage]} of image `i` of a CompareResult, the int16 panels with the
    patches whose decision differs from the float model's."""
    out = {"float": [stage_panel(cfg, s, r.cand_ids_float[i][s], r.kept_ids_float[i][s]) for s in range(cfg.stages)],
           "int16": [stage_panel(cfg, s, r.cand_ids_int[i][s], r.kept_ids_int[i][s]) for s in range(cfg.stages)]}
    for f, q in zip(out["float"], out["int16"]):
        q.differ = int((f.keep != q.keep).sum())
    return out


# ------------------------------------------------------------------ the figure
@dataclass(frozen=True)
class Layout:
    """Pixel geometry of a picture (x from the left, y from the top)."""
    panel: int                # panel side in pixels
    stages: int
    margin: int = 14
    header: int = 48
    column_title: int = 22
    caption: int = 48         # caption lines under a panel
    row_label: int = 26
    legend: int = 58
    min_column: int = 250     # captions need about this width

    @property
    def column(self) -> int:
        return max(self.panel, self.min_column)

    @property
    def stage_x0(self) -> int:
        return self.margin + self.column + self.margin + self.row_label

    @property
    def width(self) -> int:
        return self.stage_x0 + max(self.stages, 2) * (self.column + self.margin)

    @property
    def body(self) -> int:
        """Height of the panels and their captions (the input alone for a model without stages)."""
        return self.column_title + 2 * (self.panel + self.caption) if self.stages else self.panel + self.caption

    @property
    def height(self) -> int:
        return self.margin + self.header + self.body + (self.legend if self.stages else self.margin)

    def input_xy(self) -> tuple[int, int]:
        """Top-left corner of the input panel (centred on the two rows)."""
        top = self.margin + self.header + (self.body - self.panel - self.caption) // 2
        return self.margin + (self.column - self.panel) // 2, top

    def stage_xy(self, row: int, stage: int) -> tuple[int, int]:
        """Top-left corner of the panel of model row `row` (0 float, 1 int16) at stage `stage`."""
        x = self.stage_x0 + stage * (self.column + self.margin) + (self.column - self.panel) // 2
        return x, self.margin + self.header + self.column_title + row * (self.panel + self.caption)


def _wrap(lines: list, width: int) -> list:
    return [w for line in lines for w in textwrap.wrap(line, int(width / CHAR), subsequent_indent="  ")]


def layout(cfg, panels: dict) -> Layout:
    """The geometry of the picture of one image: captions as tall as the longest one needs."""
    panel = cfg.img_size * scale_for(cfg.img_size)
    lines = max((len(_wrap(p.lines, max(panel, Layout.min_column))) for ps in panels.values() for p in ps), default=0)
    return Layout(panel=panel, stages=cfg.stages, caption=6 + LINE * (lines + 1))   # + the int16 comparison line


def render(path, view: np.ndarray, cfg, panels: dict, header: list) -> Layout:
    """Write the PNG of one image: `view` uint8 [S, S, 3], `panels` from image_panels."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sch = scheme_of(cfg)
    k, grid = scale_for(cfg.img_size), cfg.img_size // cfg.patch_size
    lay = layout(cfg, panels)
    fig = plt.figure(figsize=(lay.width / DPI, lay.height / DPI), dpi=DPI)
    fig.patch.set_facecolor("white")

    def text(x, y, s, **kw):     # pixels from the top-left corner
        fig.text(x / lay.width, 1 - y / lay.height, s, va="top", **kw)

    def image(x, y, a):
        fig.figimage(a, xo=x, yo=lay.height - y - a.shape[0], origin="upper")

    text(lay.margin, lay.margin, header[0], fontsize=11, weight="bold")
    text(lay.margin, lay.margin + 20, header[1], fontsize=9)
    x, y = lay.input_xy()
    image(x, y, enlarge(view, k))
    text(x, y + lay.panel + 4, f"input ({cfg.img_size}x{cfg.img_size}, {grid}x{grid} patches\n"
         f"of {cfg.patch_size} px), un-normalised", fontsize=8)
    if not cfg.stages:
        text(lay.stage_x0, y, textwrap.fill(f"{sch.golden.title}: {sch.legend}.", 48), fontsize=10)
    for s in range(cfg.stages):
        x, y = lay.stage_xy(0, s)
        text(x, y - lay.column_title + 4, f"stage {s}: {sch.stage_place(cfg, s)}", fontsize=9, weight="bold")
        for row, m in enumerate(MODELS):
            p = panels[m][s]
            x, y = lay.stage_xy(row, s)
            a = enlarge(greyed(view, p.keep), k)
            if p.differ:
                a = outlined(a, p.keep != panels["float"][s].keep, max(1, cfg.patch_size * k // 16))
            image(x, y, a)
            lines = _wrap(p.lines, lay.column)
            text(x, y + lay.panel + 4, "\n".join(lines), fontsize=8, linespacing=LINE * 72 / (8 * DPI))
            if m == "int16":
                same = ("same patches as float" if not p.differ else
                        f"{p.differ} patch{'es' if p.differ > 1 else ''} decided unlike float (outlined)")
                text(x, y + lay.panel + 4 + LINE * len(lines), same, fontsize=8,
                     color=np.array(OUTLINE) / 255 if p.differ else "dimgray")
    if cfg.stages:
        for row, m in enumerate(MODELS):
            _, y = lay.stage_xy(row, 0)
            text(lay.stage_x0 - lay.row_label, y + lay.panel // 2 + 20, m, fontsize=10, weight="bold", rotation=90)
        legend = textwrap.fill(f"{sch.golden.title}: {sch.legend}. CLS is not drawn.", int(lay.width / CHAR) - 6)
        text(lay.margin, lay.height - lay.legend + 8, legend, fontsize=8, color="dimgray")
    fig.savefig(path, dpi=DPI, format="png", facecolor="white")
    plt.close(fig)
    return lay


def _class(data, k: int) -> str:
    """The name of class k (a model may know more classes than an image folder has subfolders)."""
    return data.classes[k] if k < len(data.classes) else f"class {k}"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)) or "_"


def file_name(index: int, label: str, images: int) -> str:
    """Deterministic: image index (zero-padded to the count) and label."""
    return f"image_{index:0{max(3, len(str(images - 1)))}d}_label_{_safe(label)}.png"


def write_pictures(r, data, cfg, count: int, where) -> dict:
    """PNGs of the first `count` compared images into the (new, empty) directory `where`, and
    its manifest; returns the manifest."""
    where = Path(where)
    mean, std = data.normalisation()
    sch = scheme_of(cfg)
    records = []
    for i in range(count):
        label = data.classes[int(r.labels[i])]
        pf, pq = (_class(data, int(lg[i].argmax())) for lg in (r.logits_float, r.logits_int))
        name = file_name(i, label, count)
        item = r.items[i] if len(r.items[i]) <= 80 else "..." + r.items[i][-77:]
        header = [f"{sch.golden.title} ({cfg.name}), image {i}: {item}",
                  f"label {label}; predicted: float {pf}, int16 {pq}"]
        panels = image_panels(r, cfg, i) if cfg.stages else {}
        lay = render(where / name, to_view(data.load(i).numpy(), mean, std), cfg, panels, header)
        records.append({"file": name, "index": i, "item": r.items[i], "label": label, "float_pred": pf,
                        "int_pred": pq, **{f"kept_{m}": [int(p.keep.sum()) for p in panels.get(m, [])]
                                           for m in MODELS},
                        "differ": [p.differ for p in panels.get("int16", [])], "size": [lay.width, lay.height],
                        "panel": lay.panel, "input_at": list(lay.input_xy()),
                        **{f"{m}_at": [list(lay.stage_xy(row, s)) for s in range(cfg.stages)]
                           for row, m in enumerate(MODELS)}})
    man = {"format": KIND, "model": cfg.name, "selector": cfg.selector, "images": records,
           "about": "per image: the input and each selection stage's kept patches (greyed: not kept), float and "
                    "int16 (docs/quantization.md, Pictures of the decisions); kept_*: kept patches per stage; "
                    "differ: patches int16 decided otherwise than float per stage; size: the PNG's width and "
                    "height; *_at: top-left corners (x, y from the top-left, pixels) of the square panels of side "
                    "`panel`: the input, and per stage the float and int16 panels"}
    (where / MANIFEST).write_text(json.dumps(man, indent=1) + "\n")
    return man
