"""The whole accelerator (rtl_gen/top.py) from DDR, bit-exact against the interpreter (which
equals the golden model): AxiRam as DDR and an AxiLiteMaster host with random pauses on every
channel. Compared by ==: logits, kept counts (in DDR and in the KEPT registers), keep masks,
every block's tokens; the header, program and stream are read exactly once and nothing is
written outside the result region. One generated design (the mini hardware) runs several
packages, and a bad program stops with the interpreter's error code instead of hanging."""
from __future__ import annotations

import dataclasses

import pytest

from golden import isa
from golden.arith import quantize
from golden.compiler import compile_model
from golden.config import PRESETS
from golden.hw import HW_PRESETS
from quant.calibrate import calibrated_random
from sim.accel import compare_runs, run_accel

HW = HW_PRESETS["mini"]


def committed(preset: str = "mini", checkpoint: str | None = None, images: int = 8):
    """A committed model (examples/) quantised as `make demo` quantises the demo model
    (calibrated on digits:train), and `images` held-out digits."""
    from quant import DEMO_CHECKPOINT
    from quant.calibrate import calibrate, quantize_images
    from quant.data import load_data
    from quant.loaders import load_float_model
    cfg = PRESETS[preset]
    model = load_float_model(str(DEMO_CHECKPOINT if checkpoint is None else DEMO_CHECKPOINT.with_name(checkpoint)), cfg)
    xc, _ = load_data("digits:train", cfg, default_split="train").take(64).tensors()
    q = calibrate(model, xc)
    xt, labels = load_data("digits:test", cfg, default_split="test").take(images).tensors()
    return q, quantize_images(xt, q)


@pytest.fixture(scope="module")
def demo():
    """The committed demo model quantised as `make demo` does, and 8 held-out digits."""
    return committed()


def test_demo_model_bit_exact(demo, measured):
    q, x = demo
    img = compile_model(q, HW, checkpoints=True)
    runs = run_accel(img, list(x), pause=0.2, seed=1)
    c = compare_runs(img, list(x), runs)
    c.check("demo model")
    cyc = [r.cycles for r in runs]
    measured(f"accelerator (mini hardware) runs the demo model on 8 held-out digits: BIT-EXACT, {c.compared:,} "
             f"elements compared (logits, kept counts, masks, every block); "
             f"cycles per image {min(cyc):,}..{max(cyc):,} "
             f"with 20% pauses on every AXI channel; sim wall {sum(r.wall_s for r in runs):.0f} s")


@pytest.mark.parametrize("scheme", ["dynamicvit", "evit", "evovit"])
def test_scheme_model_bit_exact(scheme, measured):
    """examples/mini_<scheme>.safetensors on the same mini design, 8 held-out digits, every block's
    tokens, logits, kept counts and masks; the cycle model within 2% of the RTL (its pauses off)."""
    from rtl_gen.tools.cycles import program_cycles, trace
    q, x = committed(f"mini-{scheme}", f"mini_{scheme}.safetensors")
    img = compile_model(q, HW, checkpoints=True)
    runs = run_accel(img, list(x), pause=0.2, seed=3)
    c = compare_runs(img, list(x), runs)
    c.check(f"mini {scheme} model")
    quiet = run_accel(img, list(x[:1]), pause=0.0, seed=0)
    compare_runs(img, list(x[:1]), quiet).check(f"mini {scheme} model without pauses")
    model = program_cycles(img, trace(img, x[0])).total
    err = model / quiet[0].cycles - 1
    assert abs(err) < 0.02, f"cycle model {model} vs RTL {quiet[0].cycles} ({100 * err:+.2f}%)"
    cyc = [r.cycles for r in runs]
    measured(f"accelerator (mini hardware) runs mini_{scheme} on 8 held-out digits: BIT-EXACT, {c.compared:,} elements "
             f"(logits, kept counts, masks, every block); cycles per image {min(cyc):,}..{max(cyc):,} with 20% pauses; "
             f"cycle model {100 * err:+.2f}% of the RTL without pauses; sim wall "
             f"{sum(r.wall_s for r in runs + quiet):.0f} s")


def test_one_design_runs_other_packages(measured):
    """Other selector positions with binding caps, a first stage that keeps nothing (cap 0: the
    next stage has no candidate token), and a model without selectors, on the same generated
    hardware."""
    def capped(mode, caps, seed):
        cfg = dataclasses.replace(PRESETS["mini"], selector_blocks=(1, 3), package_mode=mode)
        q, imgs = calibrated_random(cfg, seed, 3)
        return dataclasses.replace(q, selectors={b: dataclasses.replace(s, cap=c) for (b, s), c in
                                                 zip(sorted(q.selectors.items()), caps)}), imgs
    plain = dataclasses.replace(PRESETS["mini"], selector="none", selector_blocks=(), depth=3)
    total = 0
    for q, imgs in (capped("sum", (4, 0), 2), capped("norm", (0, 2), 4), calibrated_random(plain, 3, 3)):
        img = compile_model(q, HW)
        x = list(quantize(imgs.numpy(), q.img_frac)[:2])
        runs = run_accel(img, x, pause=0.1, seed=2)
        c = compare_runs(img, x, runs)
        c.check(q.cfg.name)
        total += c.compared
    measured(f"the same mini design runs capped models (selectors before blocks 1, 3; caps 4, 0 and 0, 2: a stage "
             f"with no candidate) and a model without selectors: BIT-EXACT, {total:,} elements")


def _desc_offset(img, i):
    return img.regions["program"][0] + i * isa.DESC_BYTES


def test_bad_programs_stop_with_an_error_code(measured):
    """Each run corrupts the program (or the DDR answers SLVERR); the accelerator must report the
    error code and descriptor index that corruption is meant to cause (the interpreter must
    agree) and accept the next START; the last run is clean and bit-exact. The header cases
    break one rule each of golden.isa.HEADER_CHECKS, the offsets by an AXI beat (16 bytes on mini)
    that is not a multiple of 64."""
    q, imgs = calibrated_random("mini", 0, 2)
    img = compile_model(q, HW)
    x = quantize(imgs.numpy(), q.img_frac)[0]
    d0 = img.regions["program"][0]
    n_desc = img.manifest["descriptors"]

    def desc(i):
        return isa.decode(img.data[d0 + i * 64:][:64])

    def patched(i, **ch):
        d = desc(i)
        f = {k: v for k, v in d.items() if k != "op"}
        f.update(ch)
        return (_desc_offset(img, i), isa.encode(d.op.name, **f))

    def header(**ch):
        return [(0, isa.encode_header(**{**hdr, **ch}))]

    mm = next(i for i, _ in img.labels if desc(i).op.name == "MATMUL" and desc(i)["act"] == isa.ACT_LOAD)
    gm = next(i for i, _ in img.labels if desc(i).op.name == "GMEAN")
    # the last descriptor that takes stream items: a stream one beat short fails there
    last_reader = max(i for i in range(n_desc) if desc(i).op.name in ("LOAD", "MATMUL", "LAYERNORM")
                      or (desc(i).op.name == "DECIDE" and desc(i)["act"] == isa.ACT_LOAD))
    hdr = isa.decode_header(img.data[:isa.HEADER_BYTES])
    assert HW.axi_bits // 8 == 16
    cases = {   # name: (pokes, (error, descriptor index))
        "bad opcode": ([(_desc_offset(img, 7), bytes([31]))], ("BAD_OPCODE", 7)),
        "k beyond the buffer": ([patched(mm, k=HW.k_max + 1)], ("BAD_SHAPE", mm)),
        "table reused before any load": ([patched(mm, act=isa.ACT_KEEP)], ("NO_TABLE", mm)),
        "global mean of one token": ([patched(gm, rows_n=0, rows=1)], ("BAD_TOKENS", gm)),
        "stream too short": (header(stream_len=hdr["stream_len"] - HW.stream_bytes), ("STREAM_SHORT", last_reader)),
        "stream too long": (header(stream_len=hdr["stream_len"] + HW.stream_bytes), ("STREAM_LEFTOVER", n_desc - 1)),
        "other hardware": (header(hw_ident=hdr["hw_ident"] ^ 1), ("HW_MISMATCH", -1)),
        "descriptors off 64 bytes": (header(desc_off=hdr["desc_off"] + 16), ("BAD_HEADER", -1)),
        "stream off 64 bytes": (header(stream_off=hdr["stream_off"] + 16), ("BAD_HEADER", -1)),
        "stream length off a beat": (header(stream_len=hdr["stream_len"] + 8), ("BAD_HEADER", -1)),
        "no END": ([(_desc_offset(img, n_desc - 1), isa.encode("GMEAN", buf=0, c0=0, w=1, rows=2))],
                   ("NO_END", n_desc)),
        "clean run": ([], ("OK", 0)),
    }
    names = list(cases)
    pokes = [cases[n][0] for n in names]
    runs = run_accel(img, [x] * len(names), pokes=pokes, pause=0.1, seed=4, timeout=2_000_000)
    assert not any(r.hung for r in runs), [n for n, r in zip(names, runs) if r.hung]
    got = {n: (r.error, r.error_index) for n, r in zip(names, runs)}
    wrong = {n: (got[n], want) for n, (_, want) in cases.items() if got[n] != want}
    assert not wrong, f"{len(wrong)} of {len(cases)} corruptions report another error (got, meant): {wrong}"
    compare_runs(img, [x] * len(names), runs, pokes=pokes).check("error paths (RTL vs interpreter)")
    # an AXI read error (SLVERR on the stream) is reported, not hung on
    s0 = img.regions["stream"][0]
    runs = run_accel(img, [x, x], poison=[[(s0 + 4096, s0 + 4112)], []], pause=0.0, seed=5, timeout=2_000_000)
    assert runs[0].error == "AXI_READ" and not runs[0].hung, (runs[0].error, runs[0].hung)
    c = compare_runs(img, [x], runs[1:])
    c.check("run after an AXI error")
    # operations and modes the interpreter runs but this RTL lacks (rtl_gen/control/checks.py RTL_SUPPORT):
    # BAD_OPCODE at the descriptor, never a hang or a silent wrong result
    at_ = next(i for i, _ in img.labels if desc(i).op.name == "ATTENTION")
    lacking = {"COMPACT without a package in position order": [(_desc_offset(img, at_), isa.encode(
                   "COMPACT", x_buf=0, o_buf=1, d=16, order=isa.ORDER_POSITION, no_pkg=1, rows=4))]}
    runs = run_accel(img, [x] * (len(lacking) + 1), pokes=list(lacking.values()) + [[]], pause=0.1, seed=6,
                     timeout=2_000_000)
    at = {"COMPACT without a package in position order": at_}
    lacked = {n: (r.error, r.error_index, r.hung) for n, r in zip(lacking, runs)}
    assert lacked == {n: ("BAD_OPCODE", at[n], False) for n in lacking}, lacked
    compare_runs(img, [x], runs[-1:]).check("run after the refused descriptors")
    measured("bad programs stop with the interpreter's error code and index, then the next run is bit-exact: "
             + ", ".join(f"{n} -> {e}@{i}" for n, (e, i) in got.items()) + "; SLVERR on the stream -> AXI_READ; "
             + ", ".join(f"{n} -> {e}@{i}" for n, (e, i, _) in lacked.items()) + " (not in this RTL yet)")


def test_cycle_model_matches_rtl(demo, measured):
    """The cycle model (rtl_gen/tools/cycles.py) against RTL cycles without pauses on the demo model:
    within 3% on every image, per-operation classes printed."""
    from rtl_gen.tools.cycles import program_cycles, trace
    q, x = demo
    img = compile_model(q, HW)
    runs = run_accel(img, list(x[:3]), pause=0.0, seed=0, ops=True)
    compare_runs(img, list(x[:3]), runs).check("demo model without pauses")
    worst = 0.0
    for k, r in enumerate(runs):
        p = program_cycles(img, trace(img, x[k]))
        err = p.total / r.cycles - 1
        worst = max(worst, abs(err))
        assert abs(err) < 0.03, f"image {k}: model {p.total} vs RTL {r.cycles} ({100 * err:+.1f}%)"
    rtl = {i: e - s for i, s, e in runs[0].ops}
    by = {}
    for o in program_cycles(img, trace(img, x[0])).ops:
        a = by.setdefault(o.op, [0, 0])
        a[0] += rtl.get(o.index, 0)
        a[1] += o.cycles
    measured(f"cycle model vs RTL (demo model, mini hardware, no pauses): worst {100 * worst:.2f}% over 3 images "
             f"({runs[0].cycles:,} RTL cycles for image 0); per operation class: "
             + ", ".join(f"{k} {100 * (m / r - 1):+.1f}%" for k, (r, m) in by.items() if r))


@pytest.mark.slow
@pytest.mark.skipif(not __import__("base.settings", fromlist=["SLOW"]).SLOW,
                    reason="SPVIT_SLOW=1: a DeiT-T image on the zcu102 design (~20-40 min: Verilog, C++ build, "
                           "0.5 M cycles)")
@pytest.mark.parametrize("scheme", ["spvit", "dynamicvit", "evit", "evovit"])
def test_deit_tiny_image_on_zcu102(scheme, measured):
    """A whole DeiT-T image of each scheme the RTL runs on the board configuration: every block's
    tokens, logits, kept counts and masks bit-exact; the cycle model within 3% of the RTL (one
    Verilator build serves both)."""
    import time

    from rtl_gen.tools.cycles import program_cycles, trace
    t0 = time.time()
    hw = HW_PRESETS["zcu102"]
    q, imgs = calibrated_random(f"{scheme}-deit-tiny", 0, 2)
    img = compile_model(q, hw, checkpoints=True)
    x = quantize(imgs.numpy(), q.img_frac)[:1]
    runs = run_accel(img, list(x), pause=0.0, seed=0, timeout=40_000_000)
    c = compare_runs(img, list(x), runs)
    c.check(f"{scheme} DeiT-T on zcu102")
    model = program_cycles(img, trace(img, x[0])).total
    err = model / runs[0].cycles - 1
    assert abs(err) < 0.03, (model, runs[0].cycles)
    measured(f"DeiT-T {scheme} image on the zcu102 design: BIT-EXACT, {c.compared:,} elements (every block, logits, "
             f"kept counts, masks); {runs[0].cycles:,} cycles, cycle model {100 * err:+.2f}%; simulation "
             f"{runs[0].wall_s:.0f} s, test wall {time.time() - t0:.0f} s")
