"""Reference side of the selector-unit bench: every command of a sim.select_bench.Session is
mirrored on a golden.interp.Machine (whose buffers start with the same random junk the bench
writes), and every output the RTL must produce is recorded; `SelectRun.run` simulates and
compares by == (mismatch counts and first mismatches per item)."""
from __future__ import annotations

import numpy as np

from golden import isa
from golden.compiler import select_bytes
from golden.hw import HardwareConfig
from golden.interp import Machine
from spvit import settings

from .check import mismatches
from .runner import run_stream
from .select_bench import SelectBench, Session, region, store_bytes


class SelectRun:
    def __init__(self, hw: HardwareConfig, junk_seed: int = 0):
        self.hw = hw
        self.mach = Machine(hw, bytearray(select_bytes(hw)), junk_seed=junk_seed)
        self.s = Session(hw)
        self.expect = []              # (stream, count, label, want)
        self.ops = []                 # (label, name, rows, fields, selection before the op)

    @property
    def rows_all(self) -> int:
        return self.hw.tiles * self.hw.mac_rows

    def put(self, buf: int, c0: int, x):
        """Rows 0.. of x [n, w] into channels c0.. of buf (the golden buffer too); the whole
        token tiles are written, rows past n keep the junk."""
        x = np.asarray(x, dtype=np.int64)
        self.mach.buf[buf][:len(x), c0:c0 + x.shape[1]] = x
        self.s.write_region(buf, self.mach.buf[buf][:self.rows_all, c0:c0 + x.shape[1]], c0)

    def put_junk(self, buf: int, c0: int, w: int):
        self.s.write_region(buf, self.mach.buf[buf][:self.rows_all, c0:c0 + w], c0)

    def table(self, base, slope):
        self.mach.table = (np.asarray(base, dtype=np.int64).copy(), np.asarray(slope, dtype=np.int64).copy())
        self.s.table(base, slope)

    def op(self, label: str, name: str, rows: int, **fields):
        d = isa.decode(isa.encode(name, rows=rows, **fields))
        before = self.mach.sel
        getattr(self.mach, "op_" + name.lower())(d, rows)
        self.s.op(name, rows, **fields)
        want = {"op": isa.OPS[name].code}
        if name == "DECIDE":
            want.update(kept_stb=1, kept=self.mach.kept[fields.get("stage", 0)], stage=fields.get("stage", 0))
        if name == "COMPACT":
            want.update(n_stb=1, n_out=self.mach.n)
        self.expect.append(("o_ev", 1, f"{label}: {name} event", want))
        self.ops.append((label, name, rows, dict(fields), self.mach.sel if name != "COMPACT" else before))

    def check(self, label: str, buf: int, c0: int, w: int):
        """Read back every token tile of channels c0..c0+w-1 (all lanes: rows an operation must
        not write still hold the junk)."""
        self.s.read_region(buf, self.hw.tiles, c0, w)
        self.expect.append(("o_rd", self.hw.tiles * w, f"{label}: {isa.BUFFER_NAMES[buf]} channels {c0}..{c0 + w - 1}",
                            self.mach.buf[buf][:self.rows_all, c0:c0 + w].copy()))

    def check_selection(self, label: str):
        s = self.mach.last
        self.s.read_m(range(1, 1 + len(s.keep)))
        self.expect.append(("o_m", len(s.keep), f"{label}: m and keep", (s.m.copy(), s.keep.copy())))

    def store(self, label: str):
        d = isa.decode(isa.encode("STORE", mode=isa.STORE_SELECT, addr=0, rows=1))
        self.mach.op_store(d, 1)
        self.s.store()
        from rtl_gen.selstore import beats
        self.expect.append(("o_st", beats(self.hw), f"{label}: STORE of the selection",
                            bytes(self.mach.ddr[:select_bytes(self.hw)])))

    # ------------------------------------------------------------ run and compare
    def run(self, name: str, stall: float = 0.2, seed: int = 0, tag: str = "run", bench=None):
        """Simulate; returns (report lines of mismatching items, events [(label, op, cycles)], SimResult)."""
        res = run_stream(bench or SelectBench(self.hw), name, {"i_cmd": self.s.cmds}, self.s.counts(), stall=stall,
                         seed=seed, sim=settings.SIM_ENGINE, tag=tag, timeout=50 * len(self.s.cmds) + 2_000_000)
        bad, events = [], []
        pos = {k: 0 for k in res.outputs}
        ops = iter(self.ops)
        R = self.hw.mac_rows
        for stream_name, n, label, want in self.expect:
            got = res.outputs[stream_name][pos[stream_name]:pos[stream_name] + n]
            pos[stream_name] += n
            if stream_name == "o_ev":
                ev = got[0]
                events.append((next(ops), ev["cycles"]))
                diff = {k: (ev[k], v) for k, v in want.items() if ev[k] != v}
                if diff:
                    bad.append(f"{label}: RTL != golden {diff}")
                continue
            if stream_name == "o_rd":
                g, w = region(got, self.hw.tiles, want.shape[1], R), want
            elif stream_name == "o_m":
                g = np.array([[b["m"], b["keep"]] for b in got])
                w = np.stack([want[0], want[1].astype(np.int64)], 1)
            else:
                g = np.frombuffer(store_bytes(got, self.hw, len(want)), dtype=np.uint8)
                w = np.frombuffer(want, dtype=np.uint8)
                if got[-1]["last"] != 1 or any(b["last"] for b in got[:-1]):
                    bad.append(f"{label}: last flags {[b['last'] for b in got]}")
            nbad, first = mismatches(g, w)
            if nbad:
                bad.append(f"{label}: {nbad} of {np.asarray(w).size} differ; first (index, RTL, golden): {first[:5]}")
        if res.consumed is not None and res.consumed.get("i_cmd") != len(self.s.cmds):
            bad.append(f"consumed {res.consumed} of {len(self.s.cmds)} commands")
        return bad, events, res
