"""The CSR block (rtl_gen/host/csr.py) under cocotbext-axi's AXI4-Lite master with random pauses on
every channel; the bench (sim/tb_csr.py) plays the core. A few seconds on Icarus."""
import pytest

from golden.hw import HW_PRESETS, HardwareConfig
from rtl_gen.host.csr import Csr
from sim.runner import run_bench

TESTS = ("identity_and_reset_values", "writes_rw_ro_and_unmapped", "runs_status_and_irq", "cycle_counter_latch")
# mini; and a configuration with every selector stage and values that differ from the presets
ODD_HW = HardwareConfig(name="odd", mac_rows=4, mac_cols=8, n_max=4096, d_max=4096, hidden_max=4096, axi_ports=8,
                        axi_bits=256, desc_max=65535, pwl_max=100, stages_max=8)


@pytest.mark.parametrize("hw,seed", [(HW_PRESETS["mini"], 1), (ODD_HW, 2)], ids=["mini", "odd"])
def test_csr(hw, seed):
    res = run_bench(Csr(hw), f"spvit_csr_{hw.name}", "sim.tb_csr", {"hw": hw.as_dict(), "seed": seed, "pause": 0.3},
                    seed=seed, sim="icarus")
    assert set(TESTS) <= set(res), f"cocotb tests that did not report: {set(TESTS) - set(res)}"
    total = {k: sum(r.get(k, 0) for r in res.values() if isinstance(r, dict)) for k in
             ("aw_first", "w_first", "aw_w_together", "reads", "writes", "unmapped")}
    assert total["aw_first"] and total["w_first"] and total["aw_w_together"], f"AW/W orders not all seen: {total}"
    assert total["reads"] > 100 and total["writes"] > 30, total
    assert res["runs_status_and_irq"]["starts"] == res["runs_status_and_irq"]["runs"] == 4
    assert res["cycle_counter_latch"]["straddled"] >= 3
