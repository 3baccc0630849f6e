"""Subcommands of the golden model: `spvit info`."""
from __future__ import annotations

import dataclasses

from base.errors import UsageError
from golden.config import load_config
from golden.macs import block_params, count, embed_macs, head_macs, selector_params, total_macs, total_params

from ..cli_types import keep_rates, spec


def cmd_info(args) -> int:
    cfg = load_config(args.config)
    m = cfg.model
    keep = args.keep
    if keep and not m.stages:
        raise UsageError(f"--keep given, but model {m.name} has no token selectors (selector = {m.selector!r}); "
                         f"drop --keep or use a model with selectors")
    try:
        runs = [("unpruned", dict(unpruned=True))]
        if keep:
            runs.append(("keep " + ",".join(f"{k:g}" for k in keep), dict(keep=keep)))
        elif m.stages and not m.scheme.adaptive:
            runs.append((f"{m.selector}, as configured (keep_rate {', '.join(f'{r:g}' for r in m.keep_rate)})", {}))
        rows_by_run = [(label, count(m, **kw), total_macs(m, **kw)) for label, kw in runs]
    except ValueError as e:
        raise UsageError(str(e)) from None
    print(f"model {m.name}")
    for f in dataclasses.fields(m):
        print(f"  {f.name:16s} {getattr(m, f.name)}")
    print(f"  {'head_dim':16s} {m.head_dim}\n  {'tokens':16s} {m.num_tokens}")
    print("fixed point")
    for f in dataclasses.fields(cfg.fixed_point):
        print(f"  {f.name:16s} {getattr(cfg.fixed_point, f.name)}")
    print(f"parameters: {total_params(m):,} ({total_params(m) / 1e6:.2f} M); per block {block_params(m):,}"
          + (f"; per selector {selector_params(m):,}" if m.stages and selector_params(m) else ""))
    print(f"MACs (spvit.txt Table 1 per block): patch embed {embed_macs(m) / 1e6:.2f} M, "
          f"head {head_macs(m) / 1e6:.3f} M")
    for label, rows, tot in rows_by_run:
        print(f"{label}:")
        print(f"  {'block':>5s} {'tokens':>6s} {'block MMAC':>11s} {'selector MMAC':>14s}")
        for r in rows:
            sel = f"{r.selector_macs / 1e6:14.2f}" if r.selector_macs else f"{'':14s}"
            tok = f"{r.tokens:6d}" if r.mlp_tokens in (0, r.tokens) else f"{r.tokens}>{r.mlp_tokens}"
            print(f"  {r.index:5d} {tok:>6s} {r.macs / 1e6:11.2f} {sel}")
        print(f"  total {tot / 1e9:.3f} GMAC")
    return 0


def register(sub) -> None:
    p = sub.add_parser("info", help="model configuration, parameters and MACs per block")
    p.add_argument("--config", default="deit-small", type=spec, help="preset name or TOML file (default deit-small)")
    p.add_argument("--keep", type=keep_rates, help="cumulative keep rates per selector stage, e.g. 0.7,0.5,0.3 "
                   "(adaptive selectors: spvit; the others keep the counts their config sets)")
    p.set_defaults(func=cmd_info)
