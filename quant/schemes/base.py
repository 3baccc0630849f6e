"""The quantiser's side of a token-selection scheme. A scheme (none, spvit, dynamicvit, evit,
evovit) is one `QuantScheme` subclass in its own module, registered in `quant.schemes.SCHEMES`
under the name of its golden side (`golden.selectors.SCHEMES`: config rules, MAC counts, the
float twin and the integer model). This side holds what only the quantiser needs: calibration
(quant/calibrate.py), packages (quant/package.py), checkpoint loaders (quant/loaders.py) and the
same-input decision report (quant/selfcheck.py, quant/compare.py) and the words of the decision
pictures (quant/show.py). The class itself is the scheme with no token selection (plain DeiT).

Hooks that get a config or a model reach the golden scheme as `cfg.scheme` (`model.cfg.scheme`).
Torch is imported inside the hooks that need it: quant.package (and so `spvit --help`) stays
light.
"""
from __future__ import annotations

from golden.selectors import SCHEMES as GOLDEN_SCHEMES


class QuantScheme:
    """No token selection: a plain DeiT. Subclasses override what their scheme changes."""
    name = "none"
    q_types: tuple = ()     # golden dataclasses a package may hold for this scheme's selectors

    @property
    def golden(self):
        """The golden side of the scheme (title, counts, float and integer hooks)."""
        return GOLDEN_SCHEMES[self.name]

    # ---- calibration (quant/calibrate.py)
    def quantize(self, model, fmt: dict, qz) -> dict:
        """{block index: golden selector object}; `qz` makes integer layers (quant.calibrate.Quantiser).
        Here for selectors without tensors (EViT, Evo-ViT): each is its settings (`q_settings`)."""
        return {b: self.q_types[0](**kw) for b, kw in self.q_settings(model.cfg, fmt).items()}

    def q_settings(self, cfg, fmt: dict) -> dict:
        """{block: {field: value}}: the non-tensor fields of each golden selector object that
        follow from the config and the formats (quant/package.py checks a package against them)."""
        return {}

    # ---- same-input decisions (quant/selfcheck.py, quant/compare.py)
    def agreement_inputs(self, model, io, stage: int) -> list:
        """Float token tensors [b, n, C] that stage `stage`'s decision reads, from the recorded
        block inputs `io[i]` (one tensor per block call). [] when the decision depends on more
        than the tokens (Evo-ViT's running score)."""
        return []

    def f_decide(self, model, stage: int, x):
        """Float decision on tokens x [b, n, C]: (keep [b, m] bool, score [b, m] float)."""
        raise NotImplementedError

    def q_decide(self, q, stage: int, x):
        """Integer decision on tokens x [b, n, C] int16: (keep [b, m] bool, score [b, m] float)."""
        raise NotImplementedError

    # ---- pictures of the decisions (quant/show.py)
    kept_as = "kept"            # what a stage's kept patches do
    dropped_as = "discarded"    # what its other candidates become (when it makes no token of them)
    made_token = ""             # the token a stage may make of the candidates it drops ("package", "fused")
    legend = "no token selection: every block runs on all patch tokens, so there is nothing to grey"

    def stage_place(self, cfg, stage: int) -> str:
        """Where stage `stage` decides, for a picture's column header."""
        b = cfg.selector_blocks[stage]
        return f"inside block {b}" if self.golden.where == "inside" else f"before block {b}"

    def makes_token(self, cfg, stage: int) -> bool:
        """Whether stage `stage` appends a `made_token` (of the candidates it did not keep)."""
        return False

    # ---- checkpoints (quant/loaders.py)
    def detect(self, keys: set) -> str | None:
        """Evidence (a key name) that a state_dict was made for this scheme, or None."""
        return None

    def infer(self, shapes: dict, depth: int, tensors: dict | None = None) -> dict | None:
        """The config fields a state_dict made for this scheme reveals (names in '_guessed'
        are guesses), or None if it was not made for this scheme. `shapes`: name -> shape;
        `tensors` (optional): the tensors themselves, for what only their values tell."""
        return None

    @staticmethod
    def spaced(n: int, depth: int) -> tuple:
        """n stages evenly spaced over the depth (the official 3, 6, 9 of 12)."""
        return tuple(round(depth * (j + 1) / (n + 1)) for j in range(n))

    def from_checkpoint(self, tensors: dict) -> tuple[dict, list]:
        """Map the authors' key names onto the twin's; returns (tensors, notes)."""
        return tensors, []

    def to_authors(self, tensors: dict) -> dict:
        """The inverse map (for writing a checkpoint in the authors' layout)."""
        return tensors
