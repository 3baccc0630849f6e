"""The PYNQ side of the driver, as far as it can be checked without a board: PynqDevice's
translation to pynq's Overlay / MMIO / allocate (against a stand-in `pynq` module that records
calls and answers the identity registers from the register map; it proves the calls, not the
board), the CSR base read from the address_map.json that build.tcl writes (here: from the stub
Vivado run), and the board commands' refusals without pynq. The driver's behaviour is checked on
the RTL in test_driver_rtl.py."""
from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest

from driver import BoardDir, parse_size
from rtl_gen.board.zynqmp import CSR_BASE
from spvit.cli import main
from tests.board.stubs import run_stub


class FakeBuffer(np.ndarray):
    calls: list

    def flush(self):
        self.calls.append("flush")

    def invalidate(self):
        self.calls.append("invalidate")

    def freebuffer(self):
        self.calls.append("free")


def fake_pynq(regs_json: dict, log: list):
    consts = {r["offset"]: r["reset"] for r in regs_json["registers"] if r["access"] == "RO"}
    m = types.ModuleType("pynq")

    class Overlay:
        def __init__(self, path, download=True):
            log.append(("Overlay", path, download))
            self.ip_dict = {"spvit_0": {"phys_addr": 0xB000_0000, "addr_range": 0x1000}}

    class MMIO:
        def __init__(self, base, length):
            log.append(("MMIO", base, length))

        def read(self, offset):
            return consts.get(offset, 0)

        def write(self, offset, value):
            log.append(("write", offset, value))

    def allocate(shape, dtype):
        buf = np.zeros(shape, dtype=dtype).view(FakeBuffer)
        buf.calls, buf.device_address = log, 0x7000_0000
        log.append(("allocate", shape))
        return buf

    m.Overlay, m.MMIO, m.allocate = Overlay, MMIO, allocate
    return m


def test_pynq_device_calls(mini_board, tmp_path, demo_package, monkeypatch):
    rc, out, calls, work = run_stub(mini_board, "build.tcl", tmp_path)       # writes address_map.json, spvit.bit/.hwh
    assert rc == 0, out
    board = BoardDir(work)
    assert board.address_map["csr_base"] == CSR_BASE and board.address_map["csr_range"] == 4096
    regs_json = json.loads((work / "spvit_regs.json").read_text())
    log = []
    monkeypatch.setitem(sys.modules, "pynq", fake_pynq(regs_json, log))
    acc = board.open_pynq()
    assert log[:2] == [("Overlay", str(work / "spvit.bit"), True), ("MMIO", CSR_BASE, 4096)]
    assert main(["compile", "--package", str(demo_package), "--hw", "mini", "--out", str(tmp_path / "img")]) == 0
    img = acc.load(tmp_path / "img")
    buf = acc.buffer.array
    assert bytes(buf) == img.data and log[-1] == "flush" and ("allocate", (len(img.data),)) in log
    x = np.zeros((img.cfg.in_chans, img.cfg.img_size, img.cfg.img_size), dtype=np.int64)
    del log[:]
    acc.start(x)
    writes = [(o, v) for kind, o, v in (e for e in log if isinstance(e, tuple) and e[0] == "write")]
    off = acc.regs.offset
    assert writes == [(off("IRQ_STATUS"), 1), (off("PROG_BASE_LO"), 0x7000_0000), (off("PROG_BASE_HI"), 0),
                      (off("IRQ_ENABLE"), 1), (off("CTRL"), 1)]
    assert "flush" in log and bytes(buf[img.regions["results"][0]:]) == bytes(img.regions["results"][1])
    # without address_map.json the CSR window comes from the overlay's ip_dict (the .hwh)
    (work / "address_map.json").unlink()
    del log[:]
    BoardDir(work).open_pynq(download=False)
    assert log[:2] == [("Overlay", str(work / "spvit.bit"), False), ("MMIO", 0xB000_0000, 0x1000)]


def test_parse_size():
    assert [parse_size(v) for v in ("0x00A0000000", "4096", "4K", "2G", "32G")] == \
        [0xA000_0000, 4096, 4096, 2 << 30, 32 << 30]
    with pytest.raises(ValueError):
        parse_size("4Q")


def test_board_run_without_pynq_or_board(mini_board, demo_package, tmp_path, capsys, monkeypatch):
    """`spvit board-run` and `python -m driver` check every input before touching hardware, and
    without pynq (a PC) end with exit 2 and a message, not a traceback."""
    from driver.run import main as driver_main
    rc, out, calls, work = run_stub(mini_board, "build.tcl", tmp_path)
    img, inputs = tmp_path / "img", tmp_path / "inputs"
    assert main(["compile", "--package", str(demo_package), "--hw", "mini", "--out", str(img)]) == 0
    assert main(["board-inputs", "--package", str(demo_package), "--image", str(img), "--images", "1",
                 "--out", str(inputs)]) == 0
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "pynq", None)          # as on a PC: import pynq fails
    args = ["--board", str(work), "--image", str(img), "--inputs", str(inputs)]
    assert main(["board-run", *args]) == 2
    assert "the pynq package is not installed" in capsys.readouterr().err
    assert driver_main(args) == 2
    assert "python -m driver: error: the pynq package is not installed" in capsys.readouterr().err
    bad = [("--board", str(tmp_path)), ("--image", str(inputs)), ("--inputs", str(img))]
    for opt, value in bad:
        argv = [a if a != dict(zip(args[::2], args[1::2]))[opt] else value for a in args]
        assert main(["board-run", *argv]) == 2, opt
        assert "spvit: error:" in capsys.readouterr().err
    assert main(["board-run", *args, "--timeout", "0"]) == 2
    assert "--timeout must lie in (0, 3600]" in capsys.readouterr().err
