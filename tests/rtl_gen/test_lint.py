"""Verilator --lint-only -Wall is clean on the generated accelerator apart from the documented
waivers; Yosys synth_xilinx maps the MAC array's multipliers to DSP48E2, no latches."""
import subprocess

from golden.hw import HW_PRESETS
from rtl_gen.array.mac import MacArray
from rtl_gen.tools.synthesis import synthesize
from rtl_gen.top import Accelerator
from sim.runner import LINT_WAIVERS, write_verilog


def test_verilator_lint_clean(tmp_path):
    """The whole mini top (every unit inside)."""
    v = write_verilog(Accelerator(HW_PRESETS["mini"]), "spvit_accel_mini", tmp_path)
    r = subprocess.run(["verilator", "--lint-only", "-Wall", *LINT_WAIVERS, str(v)], capture_output=True, text=True)
    msgs = [line for line in r.stderr.splitlines() if line.startswith("%")]
    assert r.returncode == 0 and not msgs, "\n".join(msgs[:20])


def test_mac_array_maps_to_dsp48e2(tmp_path):
    v = write_verilog(MacArray(2, 3), "mac_2x3", tmp_path)
    res = synthesize(v, "mac_2x3", tmp_path)
    assert res.dsp == 6, res.cells
    assert res.latches == 0
    if res.tool == "native":                # Debian's yosys: ABC maps the adders' logic to LUTs
        assert res.lut and res.lut > 0, res.cells
        # -family xc7 packs each accumulator into its DSP (post-adder, Z mux, P register) and the
        # operand registers into its A/B registers: the only flip-flops left are the shadow bank's
        # 6 x 48, the output column register's 2 x 48 + last, and the control (column counter,
        # valid/first/last, the capture decision)
        packed = synthesize(v, "mac_2x3", tmp_path / "xc7", family="xc7")
        assert packed.dsp == 6 and packed.ff <= 6 * 48 + 2 * 48 + 1 + 16, packed.cells
        assert not any(k.startswith("CARRY") for k in packed.cells), packed.cells


def test_distributed_ram_counts_its_luts(tmp_path):
    """A shallow, wide memory maps to distributed RAM; its LUTs count toward the LUT total (Vivado's
    CLB LUTs: logic + memory), a RAM64M8 as the eight LUTs of its SLICEM."""
    import pytest

    from rtl_gen.primitives.ram import Ram
    from rtl_gen.tools.synthesis import lut_sites
    assert lut_sites({"RAM64M8": 3, "RAM32M16": 1, "SRLC32E": 2, "LUT6": 10, "RAMB36E2": 4}) == 34
    with pytest.raises(RuntimeError, match="RAM999X1Q"):
        lut_sites({"RAM999X1Q": 1})
    v = write_verilog(Ram(16, 42, 8), "vb_like", tmp_path)           # the value banks' shape, 8 lanes
    res = synthesize(v, "vb_like", tmp_path)
    assert res.bram36 == 0 and res.lutram > 0 and res.lut_mem >= 8 * res.cells.get("RAM64M8", 0) > 0, res.cells
