"""The host driver on the RTL, not on a mock: the driver code that runs on the board (driver/,
through a SimDevice instead of PYNQ's MMIO/allocate) and the C example driver.c (through a socket)
run the committed demo model, quantised as `make demo` does, on the generated mini design in
Verilator with random pauses on every AXI channel (DDR and CSR bus). Compared by == with the
golden model (golden.network.QModel): logits, kept counts (result region and KEPT registers) and
keep masks. A corrupted program ends in the decoded error (the interpreter's code and index, the
golden message); a run waited for too briefly raises a timeout instead of hanging and can be waited
out. One simulation runs every step (one Verilator build, shared with tests/sim/test_accel.py)."""
from __future__ import annotations

import hashlib
import json
import subprocess

import numpy as np
import pytest

from driver.inputs import load_inputs
from golden import isa
from golden.compare import Comparison
from golden.compiler import Image
from golden.hw import HW_PRESETS
from golden.interp import Machine, read_results
from quant.package import compile_package
from sim.board import run_board_bench
from spvit.cli import main

pytestmark = pytest.mark.xdist_group("board-rtl")   # one worker runs the module: its bench is built once
HW = HW_PRESETS["mini"]
IMAGES = 2
BAD_DESC = 5                 # the descriptor whose opcode is corrupted
TIMEOUT_S = 20e-6            # far shorter than an image (~1.5 ms at the bench's 100 MHz clock)


def corrupted(img: Image, good_dir, out, offset: int, value: int) -> Image:
    """The image with byte `offset` replaced, written as an image directory whose manifest's sha256
    matches again (Image.save would refuse to list an unknown opcode)."""
    data = bytearray(img.data)
    data[offset] = value
    man = {**img.manifest, "sha256": hashlib.sha256(bytes(data)).hexdigest()}
    out.mkdir()
    (out / "image.bin").write_bytes(bytes(data))
    (out / "manifest.json").write_text(json.dumps(man, indent=1, sort_keys=True) + "\n")
    (out / "program.txt").write_text((good_dir / "program.txt").read_text())
    return Image.load(out)


@pytest.fixture(scope="module")
def bench(demo_package, mini_board, tmp_path_factory):
    work = tmp_path_factory.mktemp("driver")
    q, img = compile_package(str(demo_package), HW.name)
    img.save(work / "img")
    assert main(["board-inputs", "--package", str(demo_package), "--image", str(work / "img"), "--images",
                 str(IMAGES), "--out", str(work / "inputs")]) == 0
    desc = img.regions["program"][0] + BAD_DESC * isa.DESC_BYTES
    bad = {"opcode": corrupted(img, work / "img", work / "bad_opcode.img", desc, (img.data[desc] & ~31) | 31),
           "header": corrupted(img, work / "img", work / "bad_header.img", 0, img.data[0] ^ 0xFF)}
    exe = work / "driver-sim"
    subprocess.run(["gcc", "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-DSPVIT_SIM_SOCKET",
                    "-I", str(mini_board), str(mini_board / "driver.c"), "-o", str(exe)], check=True)
    inputs = str(work / "inputs")
    steps = [
        {"kind": "set", "image": str(work / "img"), "inputs": inputs, "timeout_s": 1.0},
        {"kind": "error", "image": str(work / "bad_opcode.img"), "inputs": inputs, "timeout_s": 1.0},
        {"kind": "error", "image": str(work / "bad_header.img"), "inputs": inputs, "timeout_s": 1.0},
        {"kind": "timeout", "image": str(work / "img"), "inputs": inputs, "timeout_s": TIMEOUT_S, "wait_s": 1.0},
        {"kind": "c", "socket": str(work / "c0.sock"),
         "command": [str(exe), str(work / "img" / "image.bin"), f"{inputs}/input_000.bin", str(work / "out.bin"),
                     "1000"]},
        {"kind": "c", "socket": str(work / "c1.sock"),
         "command": [str(exe), str(work / "bad_opcode.img" / "image.bin"), f"{inputs}/input_000.bin",
                     str(work / "bad.bin"), "1000"]},
    ]
    res = run_board_bench(HW, steps, pause=0.1, seed=3)
    x = load_inputs(inputs).images
    return q, img, x, bad, res["steps"], work


def check(c: Comparison, what: str):
    assert c.bad == 0, f"{what}: {c.bad} of {c.compared} elements differ; first: {c.first}"


def expected_results(q, x):
    logits, kept, masks = q(x, return_masks=True)
    return logits, kept, masks


def compare_run(c: Comparison, k: int, run: dict, want) -> None:
    logits, kept, masks = want
    c.add(f"image {k} logits", run["logits"], logits[k])
    c.add(f"image {k} kept", run["kept"], kept[k])
    c.add(f"image {k} KEPT registers", run["kept_regs"], kept[k])
    assert len(run["masks"]) == len(masks[k])
    for s, m in enumerate(run["masks"]):
        c.add(f"image {k} mask {s}", m, masks[k][s])


def test_driver_runs_the_demo_digits_bit_exact(bench, measured):
    q, img, x, bad, steps, work = bench
    step = steps[0]
    want = expected_results(q, x)
    c = Comparison()
    assert len(step["runs"]) == IMAGES
    for k, run in enumerate(step["runs"]):
        compare_run(c, k, run, want)
    check(c, "driver on the RTL vs golden.network.QModel")
    assert c.compared > 0 and step["bad"] == 0 and step["compared"] == c.compared
    assert step["lines"][-1].startswith(f"result: BIT-EXACT: 0 of {c.compared:,} elements differ")
    assert all(r["cycles"] > 10_000 for r in step["runs"])
    hdr = isa.decode_header(img.data[:isa.HEADER_BYTES])
    c = Comparison()
    c.add("bytes read (header, program, stream)", [step["reads"][k] for k in ("header", "program", "stream")],
          [IMAGES * n for n in (isa.HEADER_BYTES, hdr["n_desc"] * isa.DESC_BYTES, hdr["stream_len"])])
    c.add("bytes written outside the result region", [step["writes_outside"]], [0])
    check(c, "DDR accesses of the driver's runs")
    measured("board driver on the mini RTL (Verilator, pauses 0.1 on every AXI channel), as `python -m driver` "
             "prints it:\n    " + "\n    ".join(step["lines"]))
    measured(f"driver vs golden QModel on the RTL: BIT-EXACT, {step['compared']} elements (logits, kept, KEPT "
             f"registers, masks) over {IMAGES} digits; header, program and stream read once per run, nothing written "
             f"outside the result region; cycles {[r['cycles'] for r in step['runs']]}")


def interpreted_error(img: Image, x) -> isa.ProgramError:
    with pytest.raises(isa.ProgramError) as e:
        Machine(img.hw, img.with_input(x)).run()
    return e.value


@pytest.mark.parametrize("which,step", [("opcode", 1), ("header", 2)])
def test_bad_program_raises_the_decoded_error(bench, which, step):
    q, img, x, bad, steps, work = bench
    got = steps[step]["error"]
    want = interpreted_error(bad[which], x[0])
    assert got is not None, f"the corrupted program ({which}) ran to the end: {steps[step]}"
    assert (got["name"], got["index"]) == (want.name, want.index)
    assert (want.name, want.index) == (("BAD_OPCODE", BAD_DESC) if which == "opcode" else ("BAD_HEADER", -1))
    assert got["message"] == str(isa.ProgramError(want.name, want.index)) == \
        f"{want.name} at descriptor {want.index}: {isa.ERRORS[want.code][1]}"


def test_timeout_does_not_hang_and_the_run_can_be_waited_out(bench):
    q, img, x, bad, steps, work = bench
    t = steps[3]
    assert t["timeout"] and t["timeout"].startswith(f"no end of the run after {TIMEOUT_S:g} s: the accelerator is at "
                                                    f"descriptor")
    assert TIMEOUT_S <= t["waited_s"] < TIMEOUT_S + 2e-3, t["waited_s"]
    assert t["busy"] and t["busy"].startswith("the accelerator is busy")
    c = Comparison()
    compare_run(c, 0, t["run"], expected_results(q, x[:1]))
    check(c, "the run after the timeout")


def test_c_example_on_the_rtl(bench):
    """driver.c (the simulation-socket build of the same file as the UIO build) runs image 0 and
    writes the result region; decoded, it equals the golden model. The corrupted program ends with
    exit status 3 and the golden message."""
    q, img, x, bad, steps, work = bench
    ok, fail = steps[4], steps[5]
    assert ok["rc"] == 0, ok["output"]
    logits, kept, masks = expected_results(q, x[:1])
    line = ok["output"].strip().splitlines()[-1]
    assert line.startswith("done: ") and line.endswith("KEPT " + " ".join(
        str(v) for v in [*kept[0], *[0] * (HW.stages_max - len(kept[0]))])), line
    lo, n = img.regions["results"]
    region = (work / "out.bin").read_bytes()
    assert len(region) == n
    res = read_results(img.manifest, region, base=-lo)
    c = Comparison()
    c.add("C logits", res.logits, logits[0])
    c.add("C kept", res.kept, kept[0])
    for s, m in enumerate(res.masks):
        c.add(f"C mask {s}", np.flatnonzero(m), masks[0][s])
    check(c, "driver.c on the RTL vs golden")
    want = interpreted_error(bad["opcode"], x[0])
    assert fail["rc"] == 3 and fail["output"].strip() == str(isa.ProgramError(want.name, want.index)), fail
    assert not (work / "bad.bin").exists()
