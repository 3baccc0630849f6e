"""`spvit board`: the board directory, checked without Vivado. The generated build.tcl and
package_ip.tcl run in tclsh with stub Vivado commands that record every call (vivado_stub.tcl),
and the recorded block design (cells, connections, widths, clock, address map) and IP register
map are compared with the hardware configuration, the register table and the wrapper's own
interface attributes (parsed from its Verilog text); the wrapper is linted with Verilator against
the core; the XDC clock is the configured clock; the zcu102 directory is byte-identical across
two runs; bad requests exit 2 and write nothing; driver.c compiles with -Wall -Werror."""
from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from golden.hw import HW_PRESETS
from rtl_gen.board.zynqmp import CSR_BASE, HP_ADDR_BITS, PART
from rtl_gen.host.regmap import ADDR_BITS, regmap
from sim.runner import LINT_WAIVERS
from spvit.cli import main
from tests.board.stubs import run_stub, wrapper_attributes

IOPLL_MHZ = 1499.985      # the stub's PS PLL (vivado_stub.tcl), as the ZCU102's IOPLL


def _board(request, name):
    if name == "mini":
        return request.getfixturevalue("mini_board"), HW_PRESETS["mini"]
    return request.getfixturevalue("zcu102_board")[0], HW_PRESETS["zcu102"]


def _files(board):
    man = json.loads((board / "manifest.json").read_text())
    return man, (board / f"{man['top']}.v").read_text()


def _props(calls, obj):
    """Properties set on `obj` by set_property (both forms), in call order."""
    out = {}
    for c in calls:
        if c[0] != "set_property" or c[-1] != obj:
            continue
        if c[1] == "-dict":
            words = c[2].split()
            out.update(zip(words[::2], words[1::2]))
        else:
            out[c[1]] = c[2]
    return out


@pytest.mark.parametrize("name", ["mini", "zcu102"])
def test_build_tcl_block_design(request, tmp_path, name, measured):
    board, hw = _board(request, name)
    man, wrapper = _files(board)
    itf = wrapper_attributes(wrapper)
    rc, out, calls, work = run_stub(board, "build.tcl", tmp_path)
    assert rc == 0, out
    names = [c[0] for c in calls]
    # project on the ZCU102 part with its board preset
    assert ["create_project", "-force", "spvit", str(work / "vivado"), "-part", PART] in calls
    assert ["set_property", "board_part", "xilinx.com:zcu102:part0:3.4", "spvit"] in calls
    cells = {c[-1]: c[1:-1] for c in calls if c[0] == "create_bd_cell"}
    assert cells == {"zynq_ps": ["-type", "ip", "-vlnv", "xilinx.com:ip:zynq_ultra_ps_e:3.2"],
                     "spvit_0": ["-type", "module", "-reference", man["top"]],
                     "csr_interconnect": ["-type", "ip", "-vlnv", "xilinx.com:ip:smartconnect:3.2"],
                     "pl_reset": ["-type", "ip", "-vlnv", "xilinx.com:ip:proc_sys_reset:3.2"]}
    assert ["apply_bd_automation", "-rule", "xilinx.com:bd_rule:zynq_ultra_ps_e", "-config",
            'apply_board_preset "1"', "/zynq_ps"] in calls
    assert names.index("apply_bd_automation") < next(i for i, c in enumerate(calls)
                                                       if c[0] == "set_property" and c[-1] == "/zynq_ps")
    # the PS: HP0..HP{P-1} at axi_bits, the others off; HPM0 (32 bits) for the CSR; pl_clk0; IRQ0
    ps = _props(calls, "/zynq_ps")
    for p in range(4):
        assert ps[f"CONFIG.PSU__USE__S_AXI_GP{p + 2}"] == str(int(p < hw.axi_ports))
        if p < hw.axi_ports:
            assert ps[f"CONFIG.PSU__SAXIGP{p + 2}__DATA_WIDTH"] == str(hw.axi_bits)
    assert ps["CONFIG.PSU__USE__M_AXI_GP0"] == "1" and ps["CONFIG.PSU__MAXIGP0__DATA_WIDTH"] == "32"
    assert ps["CONFIG.PSU__USE__M_AXI_GP1"] == "0" and ps["CONFIG.PSU__USE__IRQ0"] == "1"
    assert float(ps["CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ"]) == hw.clock_mhz
    # the accelerator's clock takes the frequency the PS PLL makes (IP Integrator compares them)
    pl_hz = round(IOPLL_MHZ * 1e6 / round(IOPLL_MHZ / hw.clock_mhz))
    assert _props(calls, "/spvit_0/clk") == {"CONFIG.FREQ_HZ": str(pl_hz)}
    assert _props(calls, "/csr_interconnect") == {"CONFIG.NUM_SI": "1", "CONFIG.NUM_MI": "1"}
    # connections
    masters = [f"m_axi{p}" for p in range(hw.axi_ports)]
    intf = {tuple(c[1:]) for c in calls if c[0] == "connect_bd_intf_net"}
    assert intf == {("/zynq_ps/M_AXI_HPM0_FPD", "/csr_interconnect/S00_AXI"),
                    ("/csr_interconnect/M00_AXI", "/spvit_0/s_axil"),
                    *((f"/spvit_0/{m}", f"/zynq_ps/S_AXI_HP{p}_FPD") for p, m in enumerate(masters))}
    nets = [set(c[1:]) for c in calls if c[0] == "connect_bd_net"]
    assert {"/zynq_ps/pl_clk0", "/zynq_ps/maxihpm0_fpd_aclk", "/csr_interconnect/aclk", "/pl_reset/slowest_sync_clk",
            "/spvit_0/clk", *(f"/zynq_ps/saxihp{p}_fpd_aclk" for p in range(hw.axi_ports))} in nets
    assert {"/zynq_ps/pl_resetn0", "/pl_reset/ext_reset_in"} in nets
    assert {"/pl_reset/peripheral_aresetn", "/csr_interconnect/aresetn", "/spvit_0/resetn"} in nets
    assert {"/spvit_0/irq", "/zynq_ps/pl_ps_irq0"} in nets
    assert len(nets) == 4
    # every accelerator pin the TCL names is an interface the wrapper declares, of the right kind
    used = {p.split("/")[2] for c in calls if c[0] in ("connect_bd_intf_net", "connect_bd_net") for p in c[1:]
            if p.startswith("/spvit_0/")}
    assert used == set(itf) == {"clk", "resetn", "s_axil", "irq", *masters}
    assert {n: i["vlnv"].split(":")[2] for n, i in itf.items()} == \
        {"clk": "clock", "resetn": "reset", "irq": "interrupt", "s_axil": "aximm", **{m: "aximm" for m in masters}}
    # the address map: the CSR window where the generator put it, the size of the register table
    rm = regmap(hw)
    assign = [c for c in calls if c[0] == "assign_bd_address"]
    assert assign[0] == ["assign_bd_address", "-target_address_space", "/zynq_ps/Data", "-offset", f"0x{CSR_BASE:08X}",
                         "-range", f"{rm.size // 1024}K", "/spvit_0/s_axil/reg0", "-force"]
    assert assign[1] == ["assign_bd_address"]
    amap = json.loads((work / "address_map.json").read_text())
    assert int(amap["csr"]["offset"], 16) == CSR_BASE == man["csr_base"] and amap["csr"]["range"] == "4K"
    assert rm.size == man["csr_range"] == 4096 and amap["pl_clk0_hz"] == pl_hz
    assert sorted(amap["masters"]) == masters
    for p, m in enumerate(masters):
        segments = [s["segment"] for s in amap["masters"][m]]
        assert segments == [f"SEG_zynq_ps_HP{p}_DDR_LOW", f"SEG_zynq_ps_HP{p}_DDR_HIGH"]
    # validate, synthesis, implementation, reports, outputs (in this order)
    flow = ["validate_bd_design", "generate_target", "launch_runs", "launch_runs", "open_run", "report_timing_summary",
            "report_utilization", "report_utilization", "report_design_analysis", "write_hw_platform"]
    at = [names.index(flow[0])]
    for step in flow[1:]:
        at.append(names.index(step, at[-1] + 1))
    assert ["launch_runs", "impl_1", "-to_step", "write_bitstream", "-jobs", "4"] in calls
    rda = next(c for c in calls if c[0] == "report_design_analysis")
    assert "-logic_level_distribution" in rda
    for f in ("timing_summary.rpt", "utilization.rpt", "utilization_hierarchical.rpt", "logic_levels.rpt"):
        assert (work / "reports" / f).is_file(), f
    for f in ("spvit.bit", "spvit.hwh", "spvit.xsa"):
        assert (work / f).is_file(), f
    assert f"CSR base 0x{CSR_BASE:08X}, range 4K" in out and "timing met" in out
    hp_ports = ", ".join(f"{m} -> S_AXI_HP{p}_FPD" for p, m in enumerate(masters))
    measured(f"build.tcl ({name}) in tclsh with stub Vivado: {len(calls)} calls; block design zynq_ps + spvit_0 "
             f"(module {man['top']}) + csr_interconnect + pl_reset; {hp_ports} "
             f"({hw.axi_bits} bits), M_AXI_HPM0_FPD -> csr_interconnect -> s_axil at 0x{CSR_BASE:08X} (4K), "
             f"pl_clk0 {hw.clock_mhz:g} MHz (stub PS: {pl_hz} Hz), irq -> pl_ps_irq0")


def test_build_tcl_timing_failure_and_board_files(mini_board, tmp_path):
    """WNS < 0 (or WHS < 0): exit 1, saying so, and no bitstream; no ZCU102 board files: exit 1."""
    for env in ({"SPVIT_STUB_WNS": "-0.25"}, {"SPVIT_STUB_WHS": "-0.01"}):
        rc, out, calls, work = run_stub(mini_board, "build.tcl", tmp_path, env)
        assert rc == 1 and "FAILED: timing NOT met at 300 MHz" in out, out
        assert not (work / "spvit.bit").exists() and not (work / "spvit.hwh").exists()
        assert (work / "reports" / "timing_summary.rpt").is_file()
    rc, out, calls, work = run_stub(mini_board, "build.tcl", tmp_path, {"SPVIT_STUB_BOARD_PART": ""})
    assert rc == 1 and "no board files match *zcu102*" in out
    assert not any(c[0] == "create_bd_design" for c in calls)
    rc, out, calls, work = run_stub(mini_board, "build.tcl", tmp_path, args=["--jobs", "16"])
    assert rc == 0 and ["launch_runs", "synth_1", "-jobs", "16"] in calls
    rc, out, calls, work = run_stub(mini_board, "build.tcl", tmp_path, args=["--bogus", "1"])
    assert rc == 2 and "takes `-tclargs --jobs N`" in out


def test_other_part_and_clock(mini_board, tmp_path, capsys):
    """--part: no board preset (the user configures the PS); --clock-mhz: PS clock, wrapper
    FREQ_HZ, XDC period and the register map's hardware all follow; --rtl reuses the Verilog."""
    out = tmp_path / "b"
    assert main(["board", "--hw", "mini", "--out", str(out), "--part", "xczu7ev-ffvc1156-2-e", "--clock-mhz", "250",
                 "--rtl", str(mini_board)]) == 0
    man, wrapper = _files(out)
    assert man["part"] == "xczu7ev-ffvc1156-2-e" and man["board_part_pattern"] == "" and man["clock_hz"] == 250_000_000
    assert (out / "spvit_accel_mini.v").read_bytes() == (mini_board / "spvit_accel_mini.v").read_bytes()
    itf = wrapper_attributes(wrapper)
    assert itf["clk"]["params"]["FREQ_HZ"] == "250000000"
    assert json.loads((out / "spvit_regs.json").read_text())["hardware"]["clock_mhz"] == 250
    assert "create_clock -name clk_pl_0 -period 4.0000 " in (out / "constraints.xdc").read_text()
    rc, text, calls, work = run_stub(out, "build.tcl", tmp_path)
    assert rc == 0, text
    assert ["create_project", "-force", "spvit", str(work / "vivado"), "-part", "xczu7ev-ffvc1156-2-e"] in calls
    assert not any(c[0] in ("get_board_parts", "apply_bd_automation") for c in calls)
    assert _props(calls, "/zynq_ps")["CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ"] == "250"
    assert _props(calls, "/spvit_0/clk") == {"CONFIG.FREQ_HZ": str(round(IOPLL_MHZ * 1e6 / 6))}


@pytest.mark.parametrize("name", ["mini", "zcu102"])
def test_package_ip_register_map(request, tmp_path, name):
    board, hw = _board(request, name)
    man, wrapper = _files(board)
    rc, out, calls, work = run_stub(board, "package_ip.tcl", tmp_path)
    assert rc == 0, out
    assert "ipx::package_project" in [c[0] for c in calls]
    checked = [c[1] for c in calls if c[0] == "ipx::get_bus_interfaces"]
    assert checked == list(wrapper_attributes(wrapper))
    assert ["set_property", "range", str(regmap(hw).size), "s_axil/registers"] in calls
    assert ["set_property", "usage", "register", "s_axil/registers"] in calls
    regs = [c[1] for c in calls if c[0] == "ipx::add_register"]
    rm = regmap(hw)
    assert regs == [r.name for r in rm]
    access = {"RO": "read-only", "RW": "read-write", "W1C": "read-write", "WO": "write-only"}
    for r in rm:
        obj = f"s_axil/registers/{r.name}"
        assert _props(calls, obj) == {"address_offset": f"0x{r.offset:03X}", "size": "32", "description": r.doc}
        assert [c[1] for c in calls if c[0] == "ipx::add_field" and c[2] == obj] == [f.name for f in r.fields]
        for f in r.fields:
            want = {"bit_offset": str(f.lsb), "bit_width": str(f.bits), "access": access[r.access],
                    "description": f.doc}
            if r.access == "W1C":
                want["modified_write_value"] = "oneToClear"
            assert _props(calls, f"{obj}/{f.name}") == want, f"{r.name}.{f.name}"
    assert f"packaged spvit-accel.org:spvit:{man['top']}:1.0" in out and f"({len(rm)} registers)" in out


@pytest.mark.parametrize("name", ["mini", "zcu102"])
def test_wrapper_interfaces_match_the_ports(request, name):
    """Each interface's parameters agree with its ports' widths and the configuration; the clock
    names every bus and the reset; the reset is active low, the interrupt level high."""
    board, hw = _board(request, name)
    man, wrapper = _files(board)
    itf = wrapper_attributes(wrapper)
    masters = [f"m_axi{p}" for p in range(hw.axi_ports)]
    clk = itf["clk"]["params"]
    assert clk == {"XIL_INTERFACENAME": "clk", "ASSOCIATED_BUSIF": ":".join(["s_axil", *masters]),
                   "ASSOCIATED_RESET": "resetn", "FREQ_HZ": str(round(hw.clock_mhz * 1e6))}
    assert itf["resetn"]["params"]["POLARITY"] == "ACTIVE_LOW" and itf["irq"]["params"]["SENSITIVITY"] == "LEVEL_HIGH"
    assert itf["resetn"]["ports"] == {"RST": ("resetn", "input", 1)}
    assert itf["irq"]["ports"] == {"INTERRUPT": ("irq", "output", 1)}
    lite = itf["s_axil"]
    assert lite["params"]["PROTOCOL"] == "AXI4LITE" and int(lite["params"]["ADDR_WIDTH"]) == ADDR_BITS
    assert lite["ports"]["AWADDR"][2] == lite["ports"]["ARADDR"][2] == ADDR_BITS
    assert lite["ports"]["WDATA"][2] == lite["ports"]["RDATA"][2] == int(lite["params"]["DATA_WIDTH"]) == 32
    for p, m in enumerate(masters):
        a = itf[m]
        pr, ports = a["params"], a["ports"]
        assert pr["PROTOCOL"] == "AXI4" and int(pr["DATA_WIDTH"]) == hw.axi_bits == ports["RDATA"][2]
        assert int(pr["ADDR_WIDTH"]) == HP_ADDR_BITS == ports["ARADDR"][2]
        assert int(pr["ID_WIDTH"]) == ports["ARID"][2] == ports["RID"][2]
        assert pr["READ_WRITE_MODE"] == ("READ_WRITE" if p == 0 else "READ_ONLY")
        assert ("WDATA" in ports) == (p == 0) and (ports["WDATA"][2] == hw.axi_bits if p == 0 else True)
        assert ports["ARVALID"][1] == "output" and ports["ARREADY"][1] == "input" and ports["RDATA"][1] == "input"
        assert {"ARLOCK", "ARQOS", "ARLEN", "ARSIZE", "ARBURST", "ARCACHE", "ARPROT", "RLAST", "RRESP"} <= set(ports)


def _port_header(verilog: str, module: str) -> str:
    """The module's port declarations only (a black box with the real core's ports)."""
    body = verilog[verilog.index(f"module {module}("):]
    body = body[:body.index("endmodule")]
    header = body[:body.index(";") + 1]
    decls = re.findall(r"^\s*(?:input|output)\b[^;]*;", body, re.M)
    return "\n".join(["// verilator lint_off UNDRIVEN", header, *decls, "endmodule", ""])   # a black box drives nothing


@pytest.mark.parametrize("name", ["mini", "zcu102"])
def test_wrapper_lints_against_the_core(request, tmp_path, name):
    """Verilator --lint-only -Wall: mini with the whole core, zcu102 with the core's own port
    declarations as a black box (the whole zcu102 core takes a minute to lint; its body is
    linted by tests/rtl_gen/test_lint.py on mini)."""
    board, hw = _board(request, name)
    man, _ = _files(board)
    core = board / f"{man['core']}.v"
    if name == "zcu102":
        core = tmp_path / "core_ports.v"
        core.write_text(_port_header((board / f"{man['core']}.v").read_text(), man["core"]))
    r = subprocess.run(["verilator", "--lint-only", "-Wall", *LINT_WAIVERS, str(core), str(board / f"{man['top']}.v"),
                        "--top-module", man["top"]], capture_output=True, text=True, timeout=600)
    msgs = [line for line in r.stderr.splitlines() if line.startswith("%")]
    assert r.returncode == 0 and not msgs, "\n".join(msgs[:20])


@pytest.mark.parametrize("name", ["mini", "zcu102"])
def test_xdc_clock_is_the_configured_clock(request, name):
    board, hw = _board(request, name)
    xdc = (board / "constraints.xdc").read_text()
    clocks = re.findall(r"^create_clock -name (\S+) -period ([\d.]+) "
                        r"\[get_pins -hierarchical \{\*PS8_i/PLCLK\[0\]\}\]$", xdc, re.M)
    assert len(clocks) == 1 and clocks[0][0] == "clk_pl_0"
    assert abs(1000 / float(clocks[0][1]) - hw.clock_mhz) < 1e-3 * hw.clock_mhz
    assert [line for line in xdc.splitlines() if line and not line.startswith("#")] == [xdc.splitlines()[-1]]


def test_zcu102_directory_is_byte_identical(zcu102_board, tmp_path, measured):
    first, seconds = zcu102_board
    again = tmp_path / "again"
    t0 = time.perf_counter()
    assert main(["board", "--hw", "zcu102", "--out", str(again)]) == 0
    second = time.perf_counter() - t0
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in again.iterdir())
    assert names == sorted(["README.md", "build.tcl", "constraints.xdc", "driver.c", "manifest.json", "package_ip.tcl",
                            "spvit_accel_zcu102.v", "spvit_accel_zcu102_top.v", "spvit_regs.h", "spvit_regs.json",
                            "spvit_regs.md"])
    differ = [n for n in names if (first / n).read_bytes() != (again / n).read_bytes()]
    assert not differ, f"differ between two runs: {differ}"
    measured(f"spvit board --hw zcu102: {seconds:.0f} s and {second:.0f} s (two runs, {len(names)} files, "
             f"byte-identical)")


def _board_cli(args, capsys):
    rc = main(["board", *args])
    return rc, capsys.readouterr().err


def test_refusals(tmp_path, mini_board, capsys):
    out = tmp_path / "x"
    toml = tmp_path / "wide.toml"
    toml.write_text("[hardware]\npreset = 'mini'\naxi_bits = 256\n")
    rc, err = _board_cli(["--hw", str(toml), "--out", str(out)], capsys)
    assert rc == 2 and "HP ports are at most 128 bits wide; use axi_bits = 128" in err
    toml.write_text("[hardware]\npreset = 'mini'\naxi_ports = 8\n")
    rc, err = _board_cli(["--hw", str(toml), "--out", str(out)], capsys)
    assert rc == 2 and "has 4 HP ports (S_AXI_HP0..3_FPD); use axi_ports <= 4" in err
    rc, err = _board_cli(["--hw", "mini", "--out", str(out), "--part", "xc7z020clg400-1"], capsys)
    assert rc == 2 and "is not a Zynq UltraScale+ MPSoC part" in err
    rc, err = _board_cli(["--hw", "mini", "--out", str(out), "--clock-mhz", "900"], capsys)
    assert rc == 2 and "--clock-mhz: must be a number in [10, 500]" in err
    rc, err = _board_cli(["--hw", "small", "--out", str(out), "--rtl", str(mini_board)], capsys)
    assert rc == 2 and "holds the Verilog of other hardware ('mini'" in err
    assert not out.exists()
    before = {p.name: p.read_bytes() for p in mini_board.iterdir()}
    rc, err = _board_cli(["--hw", "mini", "--out", str(mini_board)], capsys)
    assert rc == 2 and "--force" in err
    assert {p.name: p.read_bytes() for p in mini_board.iterdir()} == before


@pytest.mark.parametrize("name", ["mini", "zcu102"])
def test_driver_c_compiles(request, tmp_path, name):
    """driver.c with the generated header, -Wall -Wextra -Werror: the Linux UIO build and the
    simulation-socket build (which tests/board/test_driver_rtl.py runs against the RTL)."""
    board, _ = _board(request, name)
    for flags, exe in (([], "driver-uio"), (["-DSPVIT_SIM_SOCKET"], "driver-sim")):
        r = subprocess.run(["gcc", "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", *flags, "-I", str(board),
                            str(board / "driver.c"), "-o", str(tmp_path / exe)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        usage = subprocess.run([str(tmp_path / exe)], capture_output=True, text=True)
        assert usage.returncode == 1 and "usage:" in usage.stderr
