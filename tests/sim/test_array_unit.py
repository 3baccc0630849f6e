"""The array unit (MAC array, fetch, drain, epilogue) runs MATMUL and ATTENTION descriptors of a
compiled model bit-exactly: each test loads the interpreter's buffer state before the operation,
runs the descriptor on the RTL with random stalls on every stream, and compares every word of
the touched tiles with the interpreter's state after it (rows beyond the token count and
channels beyond the output width must keep their old values)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from base import settings
from golden import isa, stream as gstream
from golden.arith import quantize
from golden.compare import assert_exact
from golden.compiler import compile_model
from golden.hw import HardwareConfig
from quant.calibrate import calibrated_random
from sim.array_bench import ArrayDut, table_beats, weight_beats
from sim.bench import UnitBench, parse_reads, read_commands, start_command, state_commands
from sim.runner import run_stream
from sim.snapshots import capture

HW = HardwareConfig(name="t48", mac_rows=4, mac_cols=8, n_max=72, d_max=64, hidden_max=256, axi_ports=1,
                    desc_max=256)


def _vectors(preset):
    q, imgs = calibrated_random(preset, 0, 2)
    img = compile_model(q, HW)
    x = quantize(imgs.numpy(), q.img_frac)
    return {v.index: v for v in capture(img, x[0], lambda i, d: d.op.name in ("MATMUL", "ATTENTION"))}


@pytest.fixture(scope="module")
def vectors():
    return _vectors("mini")


def _labels(preset="mini"):
    q, _ = calibrated_random(preset, 0, 2)
    img = compile_model(q, HW)
    return dict(img.labels)


def pick(vectors, text, preset="mini"):
    labels = _labels(preset)
    for i, lab in labels.items():
        if lab == text:
            return vectors[i]
    raise KeyError(text)


def bench(softmax=None):
    dut = ArrayDut(HW, softmax)
    return UnitBench(HW, dut, extra={"i_w": (dut.signature.members["i_w"], dut.i_w),
                                     "i_t": (dut.signature.members["i_t"], dut.i_t)})


def run_op(v, stall=0.2, seed=0, softmax=None, name="array_unit_t48", scores=False):
    """The output buffer's touched words (RTL, interpreter) and the SimResult; with `scores`
    also SB's rows (RTL, interpreter) after an ATTENTION that captures the CLS attention."""
    d = v.desc
    out_buf, c0, width = (d["o_buf"], d["o_c0"], d["m"]) if d.op.name == "MATMUL" else (d["o_buf"], 0,
                                                                                         d["heads"] * d["head_dim"])
    C = HW.mac_cols
    w_out = min(-(-width // C) * C, HW.buffer_width(out_buf) - c0)
    loads = [d["a_buf"]] if d.op.name == "MATMUL" else [d["q_buf"], isa.KB, isa.VB]
    if d.op.name == "MATMUL" and d["res"]:
        loads.append(d["r_buf"])
    loads.append(out_buf)
    if scores:
        loads.append(isa.SB)
    cmds = state_commands(HW, v.before, which=tuple(dict.fromkeys(loads)), rows=v.rows) + [start_command(HW)]
    reads = read_commands(HW, out_buf, v.rows, c0, w_out)
    sb_reads = read_commands(HW, isa.SB, v.rows, 0, 1) if scores else []
    cmds += reads + sb_reads
    items = v.items
    tbeats, wbeats = [], []
    if d.op.name == "MATMUL":
        if d["act"] == isa.ACT_LOAD:
            n = gstream.table_bytes(d["pwl_nseg"], HW)
            tbeats = table_beats(*gstream.unpack_table(items[:n], d["pwl_nseg"]))
            items = items[n:]
        elif d["act"] == isa.ACT_KEEP:
            tbeats = table_beats(*v.table)
        wbeats = weight_beats(items, d["m"], d["k"], HW)
    # the table goes in before the operation starts (the loader's order)
    res = run_stream(bench(softmax), name, {"i_cmd": cmds, "i_w": wbeats, "i_t": tbeats},
                     {"o_rd": len(reads) + len(sb_reads)},
                     static={"desc": int.from_bytes(v.raw, "little"), "rows": v.rows},
                     stall=stall, seed=seed, sim=settings.SIM_ENGINE, tag=f"op{v.index}_s{seed}", timeout=400_000)
    got = parse_reads(HW, res.outputs["o_rd"][:len(reads)], out_buf, v.rows, c0, w_out)
    want = v.before[out_buf][:v.rows, c0:c0 + w_out].copy()
    want[:, :width] = v.after[out_buf][:v.rows, c0:c0 + width]
    if scores:
        got_sb = parse_reads(HW, res.outputs["o_rd"][len(reads):], isa.SB, v.rows, 0, 1)
        return got, want, res, (got_sb, v.after[isa.SB][:v.rows, :1])
    return got, want, res


# residual from another buffer (K=16), into KB, into VB, a table load (GELU), K=256 with the
# residual in place, a kept table on a head slice, m=2 (one partial m-tile), the multiplier
# (head means), one row (the head)
CASES = ["patch embedding + position", "block 0 k", "block 0 v", "block 0 fc1 + GELU", "block 0 fc2 + residual",
         "selector 0 (before block 2) head 1 in_fc + GELU", "selector 0 (before block 2) head 3 out3 (z)",
         "selector 0 (before block 2) head means", "head"]


@pytest.mark.parametrize("label", CASES)
def test_matmul_bit_exact(vectors, label, measured):
    v = pick(vectors, label)
    got, want, res = run_op(v, stall=0.2, seed=v.index)
    assert_exact(got, want, label)
    measured(f"array unit MATMUL '{label}' (rows {v.rows}, k {v.desc['k']}, m {v.desc['m']}): bit-exact, "
             f"{res.cycles} cycles with 20% stalls")



def test_matmul_cls_row_formats(measured):
    """EViT's residual MATMULs add token row 0 (CLS) in its own formats (`row0`: sa0, sb0, so0),
    the other rows of tile 0 and the later tiles in the block's."""
    vecs = _vectors("mini-evit")
    for label in ("block 0 proj + residual", "block 3 fc2 + residual"):
        v = pick(vecs, label, "mini-evit")
        d = v.desc
        assert d["row0"] == 1 and (d["sa0"], d["sb0"], d["so0"]) != (d["sa"], d["sb"], d["so"]), (label, d)
        got, want, res = run_op(v, stall=0.2, seed=v.index)
        assert_exact(got, want, label)
        measured(f"array unit MATMUL '{label}' of mini-evit (row0: CLS formats): bit-exact, {res.cycles} cycles")


@pytest.mark.parametrize("label", ["block 0 attention", "block 5 attention"])
def test_attention_bit_exact(vectors, label, measured):
    v = pick(vectors, label)
    got, want, res = run_op(v, stall=0.2, seed=v.index)
    assert_exact(got, want, label)
    measured(f"array unit ATTENTION '{label}' (N {v.rows}): bit-exact, {res.cycles} cycles with 20% stalls")


def _with_fields(v, sb=None, **fields):
    """An OpVector of the same descriptor with other field values (and SB's rows `sb`), its
    `after` from the interpreter's operation on that `before` state."""
    from golden.interp import Machine
    d = isa.decode(v.raw)
    f = {k: val for k, val in d.items() if k != "op"}
    f.update(fields)
    raw = isa.encode(d.op.name, **f)
    mach = Machine(HW, bytearray())
    before = {b: x.copy() for b, x in v.before.items()}
    if sb is not None:
        before[isa.SB][:len(sb), 0] = sb
    mach.buf = {b: x.copy() for b, x in before.items()}
    mach.op_attention(isa.decode(raw), v.rows)
    return dataclasses.replace(v, desc=isa.decode(raw), raw=raw, before=before, after=mach.buf)


def test_attention_score_capture(measured):
    """ATTENTION with `score`: the CLS row of the block's own softmax, summed over heads, into SB
    (rows 0..N-1) by read-modify-write from the softmax's output, besides the attention output:
    EViT's replace (t = 2^15), Evo-ViT's momentum blend (the old SB: the previous block's
    capture; then old scores of both signs up to 2^31), t = 0 (SB keeps its old scores) and a
    single head (the first head is also the last: blend and rounding on one write); 20% stalls."""
    evit, evovit = _vectors("mini-evit"), _vectors("mini-evovit")
    replace = pick(evit, "block 2 attention + CLS attention into SB", "mini-evit")
    blend = pick(evovit, "block 3 attention + CLS attention into SB", "mini-evovit")
    assert replace.desc["momentum"] == isa.ONE_Q15 and 0 < blend.desc["momentum"] < isa.ONE_Q15
    rng = np.random.default_rng(7)
    signed_old = rng.integers(-(1 << 31), 1 << 31, blend.rows)
    cases = {"EViT replace (t = 2^15)": replace, "Evo-ViT momentum": blend,
             "old scores of both signs": _with_fields(blend, sb=signed_old, momentum=20000),
             "t = 0 (old scores kept)": _with_fields(blend, momentum=0),
             "one head, t = 12345": _with_fields(replace, heads=1, head_dim=replace.desc["heads"]
                                                 * replace.desc["head_dim"], momentum=12345)}
    for k, (label, v) in enumerate(cases.items()):
        got, want, res, (got_sb, want_sb) = run_op(v, stall=0.2, seed=v.index + k, scores=True)
        assert_exact(got, want, f"{label}: attention output")
        assert_exact(got_sb, want_sb, f"{label}: SB (CLS attention)")
        assert len(np.unique(want_sb)) > v.rows // 2, label           # the keys' scores differ: a real test
        measured(f"array unit ATTENTION with score capture, {label} (N {v.rows}, t {v.desc['momentum']}): output "
                 f"and SB bit-exact, {res.cycles} cycles with 20% stalls")
