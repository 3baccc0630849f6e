"""The two ends of a bench's file interface (sim/runner.py run_bench): the spec comes in as JSON
at SPVIT_TB_VECTORS, results leave as JSON at SPVIT_TB_RESULTS, written whole (temp, rename)."""
from __future__ import annotations

import json
import os


def tb_spec() -> dict:
    with open(os.environ["SPVIT_TB_VECTORS"]) as f:
        return json.load(f)


def tb_results(res: dict) -> None:
    path = os.environ["SPVIT_TB_RESULTS"]
    with open(path + ".tmp", "w") as f:
        json.dump(res, f)
    os.replace(path + ".tmp", path)
