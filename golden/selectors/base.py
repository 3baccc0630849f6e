"""The token-selection interface. A scheme (none, spvit, dynamicvit, evit, evovit) is one
`Scheme` subclass in its own module, registered in `golden.selectors.SCHEMES`. The config checks,
the integer model (`golden.network.QModel`), the float twin (`golden.float_model.DeiT`) and the
MAC counts reach a scheme only through the hooks below; the class itself is the scheme with no
token selection (plain DeiT). The quantiser's side of each scheme (calibration, package
settings, checkpoint layouts, same-input decisions) is in quant/schemes/, keyed by the same name.

Both forwards run the same loop over the blocks (written once each):

    groups = [Group(all tokens of the batch)]
    for i, block in enumerate(blocks):
        groups = [h for g in groups for h in scheme.before(i, g)]   # selection before block i
        groups = [scheme.block(i, block, g) for g in groups]        # the block (+ mid-block hook)
    pooled = scheme.readout(g)                                      # CLS, or a mean of patches

Groups, token ids, the selection record and the ranking rule of every top-k are in
golden/tokens.py.

The scheme modules import torch only inside the float-twin hooks: `golden.config` validates
through them and stays light. Float modules with the authors' layouts (SPViTSelector,
DynamicViTPredictor) are therefore in golden/float_model.py.
"""
from __future__ import annotations

from base.errors import ConfigError

from ..tokens import Group, Record


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


# ------------------------------------------------------------------ the interface
class Scheme:
    """No token selection: a plain DeiT. Subclasses override what their scheme changes."""
    name = "none"
    title = "DeiT"
    where = "none"          # "before": selection before block b; "inside": in block b, after the attention
    adaptive = False        # the kept count depends on the image (SPViT) rather than the config
    hardware = True         # the generated RTL runs it (spvit run/report/regress); golden/compiler.py lowers
                            # every scheme it lists in LOWERED, and the RTL refuses what it lacks (BAD_OPCODE)
    cls_format = False      # the CLS token has its own formats in the residual stream (its decisions read
                            # the CLS token's attention; golden.layers.QBlock, docs/arithmetic.md)

    # ---- configuration (called from ModelConfig.__post_init__)
    def check(self, cfg) -> None:
        check(not cfg.selector_blocks, f"selector_blocks {cfg.selector_blocks} given but selector is 'none'; "
              f"set selector = 'spvit' (or another scheme) or selector_blocks = []")
        self.check_unused(cfg)

    def check_unused(self, cfg, keep_rate=True, keep_cap=True, package=True, fuse=True, momentum=True) -> None:
        """Fields that belong to other schemes must keep their defaults."""
        s = cfg.selector
        if keep_rate:
            check(not cfg.keep_rate, f"keep_rate is not used by selector {s!r}; remove it"
                  + (" (SPViT keeps an adaptive number of tokens; bound it with keep_cap)" if s == "spvit" else ""))
        if keep_cap:
            check(not cfg.keep_cap, f"keep_cap applies to selector 'spvit' only (got selector {s!r}); remove it"
                  + ("" if s == "none" else f" ({s} keeps a fixed number of tokens set by keep_rate)"))
        if package:
            check(cfg.package_mode == "norm",
                  f"package_mode applies to selector 'spvit' only (got selector {s!r}); remove it")
        if fuse:
            check(cfg.fuse_token is None, f"fuse_token applies to selector 'evit' only (got selector {s!r}); remove it")
        if momentum:
            check(cfg.score_momentum is None,
                  f"score_momentum applies to selector 'evovit' only (got selector {s!r}); remove it")

    def check_blocks(self, cfg, lo: int, what: str) -> None:
        sb = cfg.selector_blocks
        check(len(sb) > 0, f"selector {cfg.selector!r} needs selector_blocks (e.g. [3, 6, 9])")
        check(list(sb) == sorted(set(sb)), f"selector_blocks must be strictly increasing (got {list(sb)})")
        check(lo <= sb[0] and sb[-1] < cfg.depth,
              f"selector_blocks must lie in {lo}..depth-1 = {lo}..{cfg.depth - 1} (got {list(sb)}); "
              f"for {cfg.selector} they are {what}")

    def check_rates(self, cfg) -> tuple:
        """keep_rate: one value for every stage or one per stage, each in (0, 1]."""
        kr, s = cfg.keep_rate, cfg.stages
        check(len(kr) > 0, f"selector {cfg.selector!r} needs keep_rate (e.g. [0.7])")
        check(len(kr) in (1, s), f"keep_rate needs 1 or {s} entries, one per stage (got {len(kr)})")
        check(all(0.0 < r <= 1.0 for r in kr), f"keep_rate entries must lie in (0, 1] (got {list(kr)})")
        return self.rates(cfg)

    @staticmethod
    def rates(cfg) -> tuple:
        """keep_rate per stage (one value applies to every stage)."""
        kr = cfg.keep_rate
        return kr if len(kr) == cfg.stages else kr * cfg.stages

    # ---- the accelerator (golden/hw.py, golden/compiler.py)
    def extra_tokens(self, cfg) -> int:
        """Tokens a forward holds beyond CLS and the patch tokens (SPViT's package tokens)."""
        return 0

    def misfits(self, cfg, hw) -> list:
        """Reasons besides the backbone's shapes why hardware `hw` cannot run the scheme."""
        return []

    # ---- counts (golden/macs.py)
    def schedule(self, cfg, keep=None) -> list:
        """(attention tokens, MLP tokens) per block. `keep` (cumulative kept fractions per stage)
        is only for adaptive schemes."""
        if keep is not None:
            raise ValueError(f"--keep sets the keep rates of adaptive selectors (spvit); selector "
                             f"{cfg.selector!r} keeps "
                             + ("every token" if cfg.selector == "none" else
                                "a fixed number of tokens per stage (keep_rate in the config)"))
        return [(cfg.num_tokens, cfg.num_tokens)] * cfg.depth

    def selector_macs(self, cfg, stage: int, n_in: int, n_out: int) -> int:
        """MACs of stage `stage` with n_in tokens entering and n_out leaving (CLS included)."""
        return 0

    def selector_params(self, cfg) -> int:
        return 0

    # ---- float twin (golden/float_model.py)
    def build(self, model) -> None:
        """Add the scheme's modules to the float twin (state_dict names = the authors' names)."""

    def f_before(self, model, i, g: Group, rec: Record, trace) -> list:
        return [g]

    def has_mid(self, cfg, i: int) -> bool:
        """Whether block i calls the scheme between its attention residual and its MLP."""
        return False

    def f_block(self, model, i, blk, g: Group, rec: Record, trace) -> Group:
        mid = (lambda x1, a: self.f_mid(model, i, g, x1, a, rec, trace)) if self.has_mid(model.cfg, i) else None
        g.x = blk(g.x, trace, f"blocks.{i}.", mid)
        return g

    def f_mid(self, model, i, g: Group, x1, a, rec: Record, trace):
        """x1 [b, n, C]: the attention residual; a [b, H, n, n]: attention probabilities."""
        return x1

    def f_readout(self, model, g: Group, trace):
        """(vector for the final LayerNorm [b, C], final tokens [b, n, C])."""
        return g.x[:, 0], g.x

    def f_select(self, model, stage: int, x, trace=None):
        """One image x [N, C] through a 'before' selector: (output tokens, keep [candidates])."""
        raise NotImplementedError(f"selector {model.cfg.selector!r} has no standalone selection step")

    def randomize(self, model, images) -> None:
        """Make a randomly initialised twin's decisions non-trivial (golden/random_model.py)."""

    # ---- integer model (golden/network.py)
    def q_before(self, q, i, g: Group, rec: Record) -> list:
        return [g]

    def q_block(self, q, i, blk, g: Group, rec: Record | None, force=None) -> Group:
        """`force`: the order of a mid-block selection to replay instead of deciding."""
        if self.has_mid(q.cfg, i):
            g.x = blk(g.x, mid=lambda x1, a: self.q_mid(q, i, g, x1, a, rec, force))
        else:
            g.x = blk(g.x)
        return g

    def q_mid(self, q, i, g: Group, x1, a, rec: Record | None, force=None):
        """x1 int16 [b, n, C] at the block's mid_frac; a [b, n]: the CLS attention
        (golden.layers.QAttention.attend: the CLS row summed over heads, 23 fraction bits)."""
        return x1

    def q_readout(self, q, g: Group):
        return g.x[:, 0], g.x

    def score_unit(self, q, stage: int) -> float | None:
        """One integer score (golden.tokens.Record.scores) of stage `stage` in the float twin's
        score units; None if the scheme records no scores. For reports, never the integer path."""
        return None

    def readout_fmt(self, cfg) -> str:
        """The traced name of the tensor the final LayerNorm reads."""
        return f"res.{cfg.depth}.cls" if self.cls_format else f"res.{cfg.depth}"
