"""Helpers of the board tests: the stub-Vivado runner and a parser of the wrapper's attributes."""
import json
import re
import subprocess
from pathlib import Path

STUB = Path(__file__).parent / "vivado_stub.tcl"


def run_stub(board: Path, script: str, tmp: Path, env=None, args=()):
    """Run `script` of a board directory (copied to tmp) in tclsh with the stub Vivado; returns
    (exit status, output, calls as lists of strings, the copy's path)."""
    work = tmp / f"run-{script}-{len(list(tmp.iterdir()))}"
    subprocess.run(["cp", "-r", str(board), str(work)], check=True)
    log = work / "calls.jsonl"
    r = subprocess.run(["tclsh", str(STUB), str(work / script), str(log), *args], capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", **(env or {})}, timeout=120)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return r.returncode, r.stdout + r.stderr, calls, work


def wrapper_attributes(text: str) -> dict:
    """Interface name -> {"vlnv", "params", "ports": {logical: (port, direction, width)}} parsed
    from the wrapper's Verilog text alone (independent of rtl_gen/board/wrapper.py)."""
    out = {}
    decl = re.compile(r'\(\* X_INTERFACE_INFO = "(\S+) (\S+) (\S+)" \*\)\s*'
                      r'(?:\(\* X_INTERFACE_PARAMETER = "([^"]*)" \*\)\s*)?'
                      r'(input|output)\s+wire\s+(?:\[(\d+):0\]\s+)?(\w+)')
    for vlnv, name, logical, params, direction, msb, port in decl.findall(text):
        itf = out.setdefault(name, {"vlnv": vlnv, "params": {}, "ports": {}})
        if params:
            pairs = [p.strip().split(" ", 1) for p in params.split(",")]
            itf["params"].update({k: v for k, v in pairs})
        itf["ports"][logical] = (port, direction, int(msb) + 1 if msb else 1)
    return out
