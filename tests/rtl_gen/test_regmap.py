"""The register map: one table; its JSON, C header and Markdown agree with it; the C header
compiles; the RTL refuses a table it has no logic for."""
import dataclasses
import gc
import json
import re
import shutil
import subprocess
import warnings

import pytest

from base.errors import ConfigError
from golden import isa
from golden.hw import HW_PRESETS, HardwareConfig
from rtl_gen.host.csr import Csr
from rtl_gen.host.regmap import (
    ID_MAGIC,
    Field,
    Reg,
    RegMap,
    c_header,
    field_cell,
    markdown,
    regmap,
    regmap_json,
    write_regmap,
)
from sim.runner import LINT_WAIVERS, write_verilog

HWS = [*HW_PRESETS.values(), HardwareConfig(name="odd", mac_rows=4, mac_cols=8, n_max=4096, d_max=4096,
                                            hidden_max=4096, axi_ports=8, axi_bits=256, desc_max=65535,
                                            pwl_max=100, stages_max=8)]
IDS = [h.name for h in HWS]
# the offsets software depends on: fixed for every configuration (KEPTi come last)
FIXED = {"ID": 0x00, "VERSION": 0x04, "HW_IDENT": 0x08, "CONFIG0": 0x0C, "CONFIG4": 0x1C, "CTRL": 0x20,
         "STATUS": 0x24, "IRQ_ENABLE": 0x28, "IRQ_STATUS": 0x2C, "PROG_BASE_LO": 0x30, "PROG_BASE_HI": 0x34,
         "ERROR_CODE": 0x38, "ERROR_INDEX": 0x3C, "CYCLES_LO": 0x40, "CYCLES_HI": 0x44, "DESC_INDEX": 0x48,
         "TOKENS": 0x4C, "KEPT0": 0x50}
CONFIG_ATTRS = {"mac_rows", "mac_cols", "n_max", "d_max", "hidden_max", "axi_ports", "axi_bits", "desc_max",
                "pwl_max", "stages_max"}


@pytest.mark.parametrize("hw", HWS, ids=IDS)
def test_table(hw):
    rm = regmap(hw)
    assert [r.offset for r in rm] == [4 * i for i in range(len(rm))]          # csr.Builder order, 4 bytes apart
    assert {n: rm[n].offset for n in FIXED} == FIXED
    assert [r.name for r in rm][FIXED["KEPT0"] // 4:] == [f"KEPT{i}" for i in range(hw.stages_max)]
    cfg = {f.name.lower(): f.const for r in rm if r.name.startswith("CONFIG") for f in r.fields}
    assert cfg == {a: getattr(hw, a) for a in CONFIG_ATTRS}
    assert rm["ID"].reset == ID_MAGIC == int.from_bytes(b"SPVA", "big")
    assert rm["HW_IDENT"].reset == hw.ident()
    assert rm["VERSION"].field("PROGRAM").const == isa.VERSION
    assert {r.name: r.access for r in rm if r.access != "RO"} == \
        {"CTRL": "WO", "IRQ_ENABLE": "RW", "IRQ_STATUS": "W1C", "PROG_BASE_LO": "RW", "PROG_BASE_HI": "RW"}


def test_field_overflow_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"HardwareConfig.desc_max = 70000 does not fit register field "
                                          r"CONFIG3.DESC_MAX \(16 bits\); use a value below 65536"):
        regmap(HardwareConfig(desc_max=70000))


@pytest.mark.parametrize("hw", HWS, ids=IDS)
def test_json_agrees(hw):
    doc = json.loads(regmap_json(hw))
    assert doc["hardware"] == hw.as_dict() and doc["hw_ident"] == hw.ident() and doc["magic"] == ID_MAGIC
    assert {int(c): e["name"] for c, e in doc["errors"].items()} == {c: n for c, (n, _) in isa.ERRORS.items()}
    rm = regmap(hw)
    assert [r["name"] for r in doc["registers"]] == [r.name for r in rm]
    for got, r in zip(doc["registers"], rm):
        assert (got["offset"], got["access"], got["reset"]) == (r.offset, r.access, r.reset), r.name
        assert [(f["name"], f["lsb"], f["bits"], f.get("value")) for f in got["fields"]] == \
            [(f.name, f.lsb, f.bits, f.const) for f in r.fields], r.name


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")
@pytest.mark.parametrize("hw", HWS, ids=IDS)
def test_c_header_compiles_and_agrees(hw, tmp_path):
    """gcc -fsyntax-only on a file that checks every macro against the table with _Static_assert."""
    rm = regmap(hw)
    text = c_header(hw)
    assert f"ident 0x{hw.ident():08x}" in text and f"mac_rows={hw.mac_rows}" in text
    checks = ["SPVIT_MAGIC == 0x53505641u", f"SPVIT_NUM_REGS == {len(rm)}u", f"SPVIT_STAGES_MAX == {hw.stages_max}u",
              "SPVIT_ERROR_INDEX_HEADER == 0xFFFFFFFFu"]
    checks += [f"SPVIT_ERR_{n} == {c}u" for c, (n, _) in isa.ERRORS.items()]
    for r in rm:
        checks.append(f"SPVIT_{r.name}_OFFSET == {r.offset}u")
        if r.is_const:
            checks.append(f"SPVIT_{r.name}_VALUE == {r.reset}u")
        for f in r.fields:
            checks += [f"SPVIT_{r.name}_{f.name}_SHIFT == {f.lsb}u", f"SPVIT_{r.name}_{f.name}_MASK == {f.mask}u"]
    checks += [f"SPVIT_KEPT_OFFSET({i}) == {rm[f'KEPT{i}'].offset}u" for i in range(hw.stages_max)]
    (tmp_path / "spvit_regs.h").write_text(text)
    src = tmp_path / "check.c"
    src.write_text('#include "spvit_regs.h"\n#include "spvit_regs.h"\n'      # twice: the include guard
                   + "".join(f'_Static_assert({c}, "{c}");\n' for c in checks))
    r = subprocess.run(["gcc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only", str(src)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[:3000]
    assert len(re.findall(r"^#define SPVIT_\w+_OFFSET ", text, re.M)) == len(rm)


@pytest.mark.parametrize("hw", HWS, ids=IDS)
def test_markdown_agrees(hw):
    rm = regmap(hw)
    rows = [line.split(" | ") for line in markdown(hw).splitlines() if re.match(r"\| 0x[0-9a-f]{3} \|", line)]
    assert len(rows) == len(rm)
    for row, r in zip(rows, rm):
        assert (int(row[0][2:], 16), row[1], row[2]) == (r.offset, r.name, r.access)
        assert [c.split(": ")[0] for c in row[3].split("<br>")] == [field_cell(f) for f in r.fields]


def test_write_regmap(tmp_path):
    hw = HW_PRESETS["zcu102"]
    paths = write_regmap(hw, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spvit_regs.h", "spvit_regs.json", "spvit_regs.md"]
    assert [p.read_text() for p in paths] == [regmap_json(hw), c_header(hw), markdown(hw)]


def test_rtl_rejects_a_table_it_cannot_implement():
    """The decode is generated from the table; a register without logic behind it is an error."""
    from amaranth.back import rtlil
    hw = HW_PRESETS["mini"]
    rm = regmap(hw)
    extra = dataclasses.replace(Reg("SPARE", "RO", "no logic", (Field("X", 0, 8, "x"),)), offset=4 * len(rm))
    csr = Csr(hw)
    csr.map = RegMap(hw, rm.regs + (extra,))
    with warnings.catch_warnings():       # the half-built module is garbage: no "never used" warnings
        warnings.simplefilter("ignore")
        with pytest.raises(AssertionError, match="RO field sources") as err:
            rtlil.convert(csr)
        del err
        gc.collect()


@pytest.mark.parametrize("hw", [HW_PRESETS["mini"], HWS[-1]], ids=["mini", "odd"])
def test_csr_verilator_lint_clean(hw, tmp_path):
    v = write_verilog(Csr(hw), "spvit_csr", tmp_path)
    r = subprocess.run(["verilator", "--lint-only", "-Wall", *LINT_WAIVERS, str(v)], capture_output=True, text=True)
    msgs = [line for line in r.stderr.splitlines() if line.startswith("%")]
    assert r.returncode == 0 and not msgs, "\n".join(msgs[:20])
