"""cocotb bench of the board driver: the host driver (driver/) runs unchanged against the whole
accelerator (rtl_gen/top.py), run by sim.board.run_board_bench. The bench gives the driver what a
board gives it: DDR (AxiRam, random pauses on every channel), the CSR bus (AxiLiteMaster, paused
too) and the interrupt line, as a SimDevice (sim/board_device.py); the driver's synchronous code
runs in a thread started with cocotb's `bridge`. The C example (driver.c built with
-DSPVIT_SIM_SOCKET) runs against the same simulation through a Unix socket this bench serves.

Spec (JSON, SPVIT_TB_VECTORS): {"regmap": path of spvit_regs.json, "base": first buffer address,
"mem_size", "ports", "pause", "seed", "steps": [...]}, each step one of
    {"kind": "set", "image": dir, "inputs": dir, "timeout_s"}       driver.run.run_set, as on the board
    {"kind": "error", "image": dir, "inputs": dir, "timeout_s"}     a run that should end with an error code
    {"kind": "timeout", "image": dir, "inputs": dir, "timeout_s", "wait_s"}
                     a run waited for too briefly (AcceleratorTimeout), started again while busy
                     (AcceleratorBusy), then waited out
    {"kind": "c", "command": [driver, args...], "socket": path}    driver.c through the socket
Result (SPVIT_TB_RESULTS): {"steps": [one dict per step]}.
"""
from __future__ import annotations

import os
import socket
import subprocess

import cocotb
import numpy as np
from cocotb.task import bridge

from driver.accelerator import Accelerator, AcceleratorBusy, AcceleratorTimeout
from driver.inputs import load_inputs
from driver.regs import RegisterMap
from driver.run import run_set
from golden import isa
from golden.compiler import Image
from sim.board_device import SimDevice
from sim.tb_accel import AccelTB
from sim.tb_io import tb_results, tb_spec


def run_json(r) -> dict:
    res = r.results
    return {"logits": res.logits.tolist(), "kept": res.kept.tolist(),
            "masks": [np.flatnonzero(m).tolist() for m in res.masks], "cycles": r.cycles, "kept_regs": r.kept_regs,
            "seconds": r.seconds}


def error_json(e: isa.ProgramError) -> dict:
    return {"name": e.name, "index": e.index, "message": str(e)}


def step_set(acc, dev, step) -> dict:
    """run_set, with the accelerator's DDR accesses counted per region of the image (the header,
    program and stream are each read once per run; nothing is written outside the result region)."""
    img = acc.load(step["image"])
    mem, base = dev.tb.mem, acc.buffer.physical_address
    mem.regions = {k: (base + lo, base + lo + n) for k, (lo, n) in img.regions.items() if k != "results"}
    lo, n = img.regions["results"]
    mem.results = (base + lo, base + lo + n)
    mem.reset_counts()
    mem.counting = True
    lines = []
    c, runs = run_set(acc, img, load_inputs(step["inputs"]), step["timeout_s"], say=lines.append)
    mem.counting = False
    return {"lines": lines, "bad": c.bad, "compared": c.compared, "runs": [run_json(r) for r in runs],
            "reads": dict(mem.reads), "writes_outside": mem.writes_outside}


def step_error(acc, dev, step) -> dict:
    acc.load(Image.load(step["image"]))
    x = load_inputs(step["inputs"]).images[0]
    try:
        return {"run": run_json(acc.run(x, step["timeout_s"])), "error": None}
    except isa.ProgramError as e:
        return {"error": error_json(e)}


def step_timeout(acc, dev, step) -> dict:
    acc.load(step["image"])
    x = load_inputs(step["inputs"]).images[0]
    acc.start(x)
    t0 = dev.now()
    out = {}
    try:
        acc.wait(step["timeout_s"])
        out["timeout"] = None
    except AcceleratorTimeout as e:
        out["timeout"], out["waited_s"] = str(e), dev.now() - t0
    try:
        acc.start(x)
        out["busy"] = None
    except AcceleratorBusy as e:
        out["busy"] = str(e)
    out["run"] = run_json(acc.wait(step["wait_s"]))
    return out


def step_c(acc, dev, step) -> dict:
    """Serve driver.c's requests (one line each, one line answered; rtl_gen/board/c/driver.c)."""
    path = step["socket"]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as srv:
        srv.bind(path)
        srv.listen(1)
        srv.settimeout(60)
        proc = subprocess.Popen(step["command"], env={**os.environ, "SPVIT_SIM_SOCKET": path}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        buf, requests = None, 0
        try:
            conn, _ = srv.accept()
        except OSError:
            proc.kill()
            return {"rc": None, "output": proc.communicate()[0], "requests": 0}
        with conn, conn.makefile("rb") as rd, conn.makefile("wb") as wr:
            for line in rd:
                requests += 1
                op, *a = line.decode().split()
                n = [int(v) for v in a] if op != "M" else [int(a[0])]
                if op == "R":
                    reply = str(dev.read32(n[0]))
                elif op == "W":
                    dev.write32(n[0], n[1])
                    reply = "ok"
                elif op == "A":
                    buf = dev.allocate(n[0])
                    reply = str(buf.physical_address)
                elif op == "M":
                    buf.write(n[0], bytes.fromhex(a[1]))
                    reply = "ok"
                elif op == "G":
                    reply = buf.read(n[0], n[1]).hex()
                elif op == "I":
                    reply = str(int(dev.wait_interrupt(n[0] / 1e3)))
                else:
                    reply = "ok" if op == "Q" else f"error: unknown request {op}"
                wr.write(reply.encode() + b"\n")
                wr.flush()
                if op == "Q":
                    break
        output = proc.communicate(timeout=60)[0]
    return {"rc": proc.returncode, "output": output, "requests": requests}


STEPS = {"set": step_set, "error": step_error, "timeout": step_timeout, "c": step_c}


def scenario(dev, spec) -> dict:
    """The driver's side, in a thread: every step with one Accelerator (as a board process would)."""
    acc = Accelerator(dev, RegisterMap.load(spec["regmap"]))
    return {"steps": [STEPS[step["kind"]](acc, dev, step) for step in spec["steps"]]}


@cocotb.test()
async def board_test(dut):
    spec = tb_spec()
    tb = AccelTB(dut, {**spec, "regions": {}, "results": [0, 0], "regs": {}})
    await tb.reset()
    tb_results(await bridge(scenario)(SimDevice(tb, spec["base"]), spec))
