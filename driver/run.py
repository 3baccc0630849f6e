"""Run an input set on the board and check it bit for bit against the golden model's results:
the command `python -m driver` (on the board, where torch is not installed) and `spvit board-run`
(the same arguments and code).

    python -m driver --board BOARD_DIR --image IMAGE_DIR --inputs INPUT_SET [--timeout 10]
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from base.errors import UsageError
from golden import isa
from golden.compare import Comparison
from golden.compiler import Image

from .accelerator import DEFAULT_TIMEOUT_S, POLL_S, Accelerator, AcceleratorTimeout
from .board import BoardDir
from .inputs import InputSet, load_inputs


def run_set(acc: Accelerator, img: Image, inputs: InputSet, timeout_s: float = DEFAULT_TIMEOUT_S, say=print):
    """Every image of the set on the accelerator (image already loaded), compared by == with the
    expected results; prints one line per image and the result. Returns (Comparison, runs)."""
    if inputs.image_sha256 != img.manifest["sha256"]:
        raise UsageError("the input set was made for another image (its image sha256 differs); make it for this image "
                         "with spvit board-inputs --image IMAGE_DIR")
    mhz = float(acc.regs.hardware["clock_mhz"])
    c, runs = Comparison(got_name="accelerator", want_name="golden model"), []
    for k, x in enumerate(inputs.images):
        r = acc.run(x, timeout_s)
        runs.append(r)
        res = r.results
        c.add(f"image {k} logits", res.logits, inputs.logits[k])
        c.add(f"image {k} kept", res.kept, inputs.kept[k])
        c.add(f"image {k} KEPT registers", r.kept_regs, inputs.kept[k])
        for s, mask in enumerate(res.masks):
            c.add(f"image {k} mask {s}", np.flatnonzero(mask), inputs.masks[k][s])
        say(f"  image {k}: {r.cycles:,} cycles ({r.cycles / (mhz * 1e3):.3f} ms at {mhz:g} MHz), kept {r.kept_regs}, "
            f"class {int(np.argmax(res.logits))}")
    say(f"result: {'BIT-EXACT' if c.bad == 0 else 'MISMATCH'}: {c.bad} of {c.compared:,} elements differ (logits, "
        f"kept counts, KEPT registers, keep masks) against the golden model")
    for f in c.first:
        say("  " + f)
    return c, runs


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--board", required=True, help="board directory (spvit board --out DIR, after build.tcl ran)")
    p.add_argument("--image", required=True, help="image directory (spvit compile --hw of the board's hardware)")
    p.add_argument("--inputs", required=True, help="input set (spvit board-inputs --image IMAGE --out DIR)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per image (default %(default)g)")
    p.add_argument("--poll-ms", type=float, default=POLL_S * 1e3, help="STATUS polling interval (default %(default)g)")
    p.add_argument("--no-download", action="store_true", help="the bitstream is already programmed")


def run_command(args) -> int:
    """0: bit-exact; 1: a mismatch, an error code or a timeout; UsageError for bad input."""
    if not (0 < args.timeout <= 3600 and 0 < args.poll_ms <= 1000):
        raise UsageError(f"--timeout must lie in (0, 3600] s and --poll-ms in (0, 1000] (got {args.timeout:g}, "
                         f"{args.poll_ms:g})")
    board = BoardDir(args.board)
    img = Image.load(args.image)
    inputs = load_inputs(args.inputs)
    acc = board.open_pynq(download=not args.no_download, poll_s=args.poll_ms / 1e3)
    hw = img.hw
    print(f"{img.manifest['model']['name']} on the ZCU102 ({hw.name}: {hw.mac_rows}x{hw.mac_cols} MACs), "
          f"{len(inputs)} image(s) of {inputs.source}", flush=True)
    acc.load(img)
    try:
        c, _ = run_set(acc, img, inputs, args.timeout)
    except (isa.ProgramError, AcceleratorTimeout) as e:
        print(f"error: {e}")
        return 1
    finally:
        acc.close()
    return 1 if c.bad else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m driver", description="run an input set on the SPViT accelerator of "
                                "a ZCU102 (PYNQ) and check it bit for bit against the golden model")
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return run_command(args)
    except UsageError as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 2
