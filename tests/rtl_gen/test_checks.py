"""The controller's checks (rtl_gen/control/checks.py) give the interpreter's error code for every
descriptor and every header: descriptors of compiled programs with random fields and random
machine state, headers with fields at and beyond the limits, evaluated in Amaranth's simulator
and compared with golden.isa.first_failure / header_failure by ==. Descriptors of operations or
modes the RTL does not execute yet (rtl_gen.control.checks.RTL_SUPPORT) must give BAD_OPCODE."""
from __future__ import annotations

import dataclasses
import random
from types import SimpleNamespace

import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from golden import isa
from golden.compiler import compile_model
from golden.hw import HW_PRESETS
from quant.calibrate import calibrated_random
from rtl_gen.control.checks import REGISTERED_LATENCY, RTL_SUPPORT, check_code, header_code, supported
from rtl_gen.control.decode import header_layout

HW = HW_PRESETS["mini"]
STATE = {"rows": 13, "table_nseg": 13, "sel": 1, "sel_n": 13, "sel_npkg": 4, "sel_mode": 2, "pkg": 1, "pkg_d": 13,
         "last_sel": 1, "sel_kept": 13}


def _cases(n=2000, seed=0):
    """Random variations of the descriptors of programs of every scheme (the mini presets)."""
    descs = []
    for preset in ("mini", "mini-dynamicvit", "mini-evit", "mini-evovit"):
        q, _ = calibrated_random(preset, 0, 2)
        img = compile_model(q, HW)
        d0 = img.regions["program"][0]
        descs += [isa.decode(img.data[d0 + i * 64:][:64]) for i in range(img.manifest["descriptors"])]
    # Evo-ViT's write-back COPY appears only where two blocks' formats differ
    copy = isa.encode("COPY", i_buf=0, i_c0=0, i_r0=33, o_buf=0, o_c0=0, o_r0=33, w=64, shift=1, rows=32)
    descs.append(isa.decode(copy))
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        d = dict(rng.choice(descs))
        op = isa.OP_BY_CODE[d["op"]]
        offs = isa.field_offsets(op)
        for name in rng.sample(list(offs), rng.randint(0, 3)):
            if name == "op":
                continue
            f = offs[name][1]
            # small values are where the limits are; sometimes the whole range
            v = rng.randint(f.lo, f.hi) if rng.random() < 0.3 else rng.randint(max(f.lo, -3), min(f.hi, 300))
            d[name] = v
        st = {"rows": rng.choice([1, 2, 5, 40, 72, 100]), "table_nseg": rng.choice([0, 128, 512, 2048]),
              "sel": rng.randint(0, 1), "sel_n": rng.choice([5, 40, 72]), "sel_npkg": rng.randint(0, 3),
              "sel_mode": rng.randint(0, 1),
              "pkg": rng.randint(0, 1), "pkg_d": rng.choice([16, 64]), "last_sel": rng.randint(0, 1),
              "sel_kept": rng.choice([0, 3, 38, 70])}
        raw = isa.encode(op.name, **{k: v for k, v in d.items() if k != "op"})
        if rng.random() < 0.03:                  # an opcode no operation has (the interpreter's first check)
            code = rng.randint(max(isa.OP_BY_CODE) + 1, 31)
            out.append((bytes([raw[0] & ~31 | code]) + raw[1:], st, isa.ERROR_CODES["BAD_OPCODE"]))
            continue
        fields = isa.Fields(isa.decode(raw))
        if not supported(op.name, fields):
            out.append((raw, st, isa.ERROR_CODES["BAD_OPCODE"]))
            continue
        bad = isa.first_failure(op.name, fields, SimpleNamespace(
            n_max=HW.n_max, pwl_max=HW.pwl_max, stages_max=HW.stages_max, d_max=HW.d_max, C=HW.mac_cols,
            W=lambda b: HW.buffer_width(b) if 0 <= b <= isa.SB else 0, **st))
        out.append((raw, st, 0 if bad is None else isa.ERROR_CODES[bad[0]]))
    return out


@pytest.mark.parametrize("registered", [False, True])
def test_rtl_checks_equal_interpreter(registered, measured):
    """Comb, and with every rule and step registered (the controller's: the code REGISTERED_LATENCY
    cycles later)."""
    m = Module()
    raw = Signal(isa.DESC_BITS)
    st = SimpleNamespace(**{k: Signal(range(8192), name=k) for k in STATE})
    code = check_code(m, HW, raw, st, registered=registered)
    cases = _cases()
    seen = set()
    bad = []

    async def bench(ctx):
        for r, s, want in cases:
            ctx.set(raw, int.from_bytes(r, "little"))
            for k, v in s.items():
                ctx.set(getattr(st, k), v)
            if registered:
                await ctx.tick().repeat(REGISTERED_LATENCY)
            got = ctx.get(code)
            seen.add(want)
            if got != want:
                bad.append((isa.decode(r), s, got, want))

    sim = Simulator(m)
    if registered:
        sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert not bad, f"{len(bad)} of {len(cases)} differ; first: {bad[:3]}"
    assert {0, 4, 5, 6, 7} <= seen, f"cases reach too few codes: {seen}"
    wide = [d for d in map(isa.decode, (r for r, _, _ in cases)) if d["op"] == isa.OPS["ATTENTION"].code
            and d["heads"] >= 1 and d["head_dim"] % HW.mac_cols == 0 and d["heads"] * d["head_dim"] > HW.d_max]
    assert wide, "no case reaches ATTENTION's heads x head_dim step (golden.isa.STEPS)"
    refused = [isa.OP_BY_CODE[r[0] & 31].name for r, _, want in cases
               if want == isa.ERROR_CODES["BAD_OPCODE"] and r[0] & 31 in isa.OP_BY_CODE]
    assert set(RTL_SUPPORT) <= set(isa.OPS) and "COMPACT" in refused, \
        "operations and modes the RTL lacks reach the controller (and get BAD_OPCODE)"
    measured(f"controller checks{' (registered rules)' if registered else ''} == interpreter checks on "
             f"{len(cases)} random descriptors "
             f"(codes seen: {sorted(isa.ERRORS[c][0] for c in seen)}; {len(refused)} of operations or modes the RTL "
             f"lacks: BAD_OPCODE)")


def _headers(n=600, seed=1):
    """The mini program's header with 0..3 fields set to values near the limits (or random)."""
    q, _ = calibrated_random("mini", 0, 2)
    good = isa.decode_header(compile_model(q, HW).data[:isa.HEADER_BYTES])
    near = {"magic": [isa.MAGIC, isa.MAGIC ^ 1, 0], "version": [isa.VERSION, 0, 2],
            "hw_ident": [HW.ident(), HW.ident() ^ 8],
            "n_desc": [0, 1, HW.desc_max, HW.desc_max + 1], "n_tokens": [0, 1, HW.n_max, HW.n_max + 1],
            "stream_len": [0, HW.stream_bytes, good["stream_len"] + 1, good["stream_len"] + HW.stream_bytes // 2],
            "desc_off": [64, 80, 96, 1, 4096 + 32], "stream_off": [4096, 4096 + 16, 4096 + 64, 2]}
    rng = random.Random(seed)
    out = [dict(good)]
    for _ in range(n):
        h = dict(good)
        for k in rng.sample(isa.HEADER_FIELDS, rng.randint(0, 3)):
            h[k] = rng.choice(near[k]) if rng.random() < 0.8 else rng.getrandbits(32)
        out.append(h)
    return out


@pytest.mark.parametrize("registered", [False, True])
def test_rtl_header_checks_equal_interpreter(registered, measured):
    """The controller's header check (golden.isa.HEADER_CHECKS built into logic) gives the
    interpreter's code on headers breaking 0..3 rules at once, so the order of rules matters;
    comb and with the rules registered."""
    m = Module()
    header = Signal(header_layout())
    code = header_code(m, HW, header, registered=registered)
    cases = [(h, isa.header_failure(h, HW)) for h in _headers()]
    cases = [(h, 0 if bad is None else isa.ERROR_CODES[bad[0]]) for h, bad in cases]
    seen, bad = set(), []

    async def bench(ctx):
        for h, want in cases:
            ctx.set(header.as_value(), int.from_bytes(isa.encode_header(**h)[:32], "little"))
            if registered:
                await ctx.tick().repeat(REGISTERED_LATENCY)
            got = ctx.get(code)
            seen.add(want)
            if got != want:
                bad.append((h, got, want))

    sim = Simulator(m)
    if registered:
        sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert not bad, f"{len(bad)} of {len(cases)} differ; first: {bad[:3]}"
    want_codes = {0} | {isa.ERROR_CODES[c] for c, _, _ in isa.HEADER_CHECKS}
    assert seen == want_codes, f"cases reach too few codes: {seen}"
    measured(f"controller header check == interpreter on {len(cases)} headers (codes seen: "
             f"{sorted(isa.ERRORS[c][0] for c in seen)})")


def test_cycle_model_times_only_what_the_rtl_runs():
    """rtl_gen/tools/cycles.py times the programs of every scheme, and refuses a program with a
    mode RTL_SUPPORT excludes (DynamicViT's COMPACT turned into position order without a
    package) rather than timing it as zero cycles."""
    import pytest

    from golden.arith import quantize
    from rtl_gen.tools.cycles import program_cycles, trace
    for preset in ("mini", "mini-dynamicvit", "mini-evit", "mini-evovit"):
        q, imgs = calibrated_random(preset, 0, 1)
        img = compile_model(q, HW)
        x = quantize(imgs.numpy(), q.img_frac)[0]
        assert program_cycles(img, trace(img, x)).total > 0
    d0, data = img.regions["program"][0], bytearray(img.data)
    for i, _ in img.labels:
        d = isa.decode(data[d0 + i * 64:][:64])
        if d.op.name == "COMPACT":
            f = {k: v for k, v in d.items() if k != "op"}
            data[d0 + i * 64:d0 + (i + 1) * 64] = isa.encode("COMPACT", **{**f, "order": isa.ORDER_POSITION, "rest": 0,
                                                                          "scores": 0, "no_pkg": 1})
            break
    img = dataclasses.replace(img, data=bytes(data))
    unsupported = r"descriptor \d+ \(COMPACT\) uses an operation or mode the RTL does not"
    with pytest.raises(ValueError, match=unsupported):
        program_cycles(img, trace(img, x))


def test_tile_floor_counts_padded_tiles():
    """ProgramPerf.tile_floor (benchmarks/latency.py's floor) is the padded tiles' beats: a partial
    token tile costs a whole one, so it lies between the MACs / array size and every operation's
    modeled cycles."""
    from golden.arith import quantize
    from golden.hw import HW_PRESETS
    from rtl_gen.tools.cycles import program_cycles, tile_beats, trace
    zcu = HW_PRESETS["zcu102"]
    assert tile_beats(zcu, 71, 384, 1536) == 3 * 24 * 384 and tile_beats(zcu, 64, 384, 1536) == 2 * 24 * 384
    q, imgs = calibrated_random("mini", 0, 1)
    img = compile_model(q, HW)
    perf = program_cycles(img, trace(img, quantize(imgs.numpy(), q.img_frac)[0]))
    arrays = [o for o in perf.ops if o.op in ("MATMUL", "ATTENTION")]
    assert arrays and all(o.macs <= o.beats * HW.macs and o.beats <= o.cycles for o in arrays)
    assert any(o.macs < o.beats * HW.macs for o in arrays)            # the demo model pads some tile
    assert perf.macs / HW.macs <= perf.tile_floor < perf.total
