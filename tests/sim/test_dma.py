"""The AXI4 DMA (rtl_gen/host/dma.py) against cocotbext-axi AxiRam models sharing one memory, with
random pauses on every AXI channel, random back-pressure on o_stream/o_fetch and random gaps
on i_wdata (sim/tb_dma.py records; this file checks).

Per job: every byte in order (stream jobs: golden.stream.deinterleave of the memory), the AR/AW
bursts equal the burst rule (rtl_gen.host.axi.model_bursts: <= burst_max beats, no 4 KB crossing),
every requested R beat accepted and no other, nothing after done, idle at the end, the error
flags exactly when a response was not OKAY or a command was rejected; writes change exactly
the written bytes. One simulator run per configuration (SPVIT_SIM, default Icarus: it builds in
a second, Verilator in ~25 s, and the Python models dominate the run time) runs all of its
jobs in sequence, so an abort or an error is followed by further jobs on the same hardware."""
from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest

from golden.hw import HW_PRESETS, HardwareConfig
from golden.stream import deinterleave
from rtl_gen.host.axi import model_bursts
from rtl_gen.host.dma import Dma
from rtl_gen.tools.synthesis import synthesize
from sim.runner import LINT_WAIVERS, run_cocotb, write_verilog
from sim.tb_dma import QUIET

MEM = 1 << 20
PAGE = 4096
HIGH = 0x7 << 32                  # AxiRam wraps addresses modulo MEM: exercises the upper address bits


class Model:
    """Expected memory contents (the testbench fills memory from the same seed)."""

    def __init__(self, seed: int):
        self.mem = bytearray(np.random.default_rng(seed).integers(0, 256, MEM, dtype=np.uint8).tobytes())

    def read(self, addr, n, poison=(), beat=16):
        """Bytes a read of [addr, addr + n) returns: beats overlapping poison read as zeros."""
        a = addr % MEM
        out = bytearray(self.mem[a:a + n])
        for i in range(0, n, beat):
            if _hits(a + i, beat, poison):
                out[i:i + beat] = bytes(beat)
        return bytes(out)

    def write(self, addr, data, poison=(), beat=16):
        a = addr % MEM
        for i in range(0, len(data), beat):
            if not _hits(a + i, beat, poison):
                part = data[i:i + beat]
                self.mem[a + i:a + i + len(part)] = part


def _hits(a, n, poison) -> bool:
    return any(lo < a + n and a < hi for lo, hi in poison)


class Plan:
    """Builds the job list of one configuration and checks the records against it."""

    def __init__(self, P, W, burst_max, depth, seed):
        self.P, self.W, self.B, self.burst_max, self.depth = P, W, W // 8, burst_max, depth
        self.SB = P * self.B
        self.rng = np.random.default_rng(seed)
        self.jobs, self.expect = [], []
        self.model = Model(seed)
        self.seed = seed

    # ------------------------------------------------------------ jobs
    def read(self, addr, length, fetch=False, stall=0.3, abort_after=-1, poison=(), hold=0):
        job = {"read": {"addr": addr, "length": length, "fetch": int(fetch), "stall": stall, "abort_after": abort_after,
                        "hold": hold},
               "write": None, "poison": [list(p) for p in poison], "clear": True,
               "timeout": 8 * length // self.SB + 4000 + hold}
        self.jobs.append(job)
        self.expect.append(self._expect(job))
        return job

    def write(self, addr, length, gap=0.3, poison=(), with_read=None):
        data = self.rng.integers(0, 256, length, dtype=np.uint8).tobytes()
        w = {"addr": addr, "length": length, "data": data.hex(), "gap": gap}
        lo = (addr % MEM) - 64
        job = {"read": with_read, "write": w, "poison": [list(p) for p in poison], "clear": True,
               "readback": [max(lo, 0), lo + length + 128], "timeout": 8 * (length // self.B) + 4000}
        self.jobs.append(job)
        self.expect.append(self._expect(job))
        return job

    def _expect(self, job):
        """What the hardware must do, computed before the job changes the model."""
        e, r, w, poison = {}, job["read"], job["write"], [tuple(p) for p in job["poison"]]
        if r:
            e["read"] = self._expect_read(r, poison)
        if w:
            e["write"] = self._expect_write(w, poison)          # updates the model
            lo, hi = job["readback"]
            e["mem"] = bytes(self.model.mem[lo:hi])
        return e

    def _expect_read(self, r, poison):
        B, P, n, a = self.B, self.P, r["length"], r["addr"]
        if r["fetch"]:
            ok = a % B == 0
            beats = -(-n // B) if ok else 0
            bursts = [model_bursts(a, beats, self.W, self.burst_max)]
            data = self.model.read(a, beats * B, poison, B)
            step = B
        else:
            ok = a % B == 0 and n % self.SB == 0
            beats = n // self.SB if ok else 0
            sl = n // P
            bursts = [model_bursts(a + p * sl, beats, self.W, self.burst_max) for p in range(P)]
            hw = HardwareConfig(axi_ports=P, axi_bits=self.W)
            data = deinterleave(self.model.read(a, n, poison, B), hw) if ok else b""
            step = self.SB
        err = not ok or any(_hits((ad + i * B) % MEM, B, poison) for bl in bursts for ad, k in bl for i in range(k))
        return {"data": data, "step": step, "bursts": bursts, "error": int(err)}

    def _expect_write(self, w, poison):
        B, n, a = self.B, w["length"], w["addr"]
        ok = a % B == 0
        beats = -(-n // B) if ok else 0
        bursts = model_bursts(a, beats, self.W, self.burst_max)
        err = not ok or any(_hits((a + i * B) % MEM, B, poison) for i in range(beats))
        tail = n % B
        strb = [(1 << B) - 1] * beats
        if beats and tail:
            strb[-1] = (1 << tail) - 1
        if ok:
            self.model.write(a, bytes.fromhex(w["data"]), poison, B)
        return {"bursts": bursts, "beats": beats, "strb": strb, "error": int(err)}

    # ------------------------------------------------------------ checks
    def check(self, i, job, e, rec):
        where = f"job {i} ({_describe(job)})"
        assert not rec["timeout"], f"{where}: timed out; record {_short(rec)}"
        assert rec["rd_idle"] and rec["wr_idle"], f"{where}: not idle at the end"
        assert rec["models_idle"], f"{where}: AxiRam models still hold requests or responses"
        assert rec["extra"] == 0 and rec["late_ar"] == 0, \
            f"{where}: {rec['extra']} beats / {rec['late_ar']} ARs after done"
        assert rec["late"] == 0, f"{where}: {rec['late']} R/W/B transfers after the job reported done"
        assert max(rec["max_fill"]) <= self.depth + 1, \
            f"{where}: {rec['max_fill']} beats buffered, a FIFO holds {self.depth + 1}"
        if job["read"] and job["read"]["hold"] > 2 * self.depth:     # long enough to fill every FIFO: credits stop AR
            cap = min(self.burst_max, PAGE // self.B)
            assert min(rec["max_fill"]) > self.depth - cap, f"{where}: FIFOs filled to {rec['max_fill']} only"
        if job["read"] and job["read"]["abort_after"] > 0:
            assert rec["drained"] > 0, f"{where}: no R beat outstanding at the abort (the drain went untested)"
        if job["read"]:
            self._check_read(where, job["read"], e["read"], rec)
        else:
            assert not rec["ar"] and rec["rd_error"] == 0, f"{where}: read traffic without a read job"
        if job["write"]:
            self._check_write(where, e["write"], rec)
            got = bytes.fromhex(rec["mem"])
            assert got == e["mem"], f"{where}: memory around the write differs at {_first_diff(got, e['mem'])}"
        else:
            assert not rec["aw"] and rec["w_beats"] == 0 and rec["wr_error"] == 0, f"{where}: write traffic"

    def _check_read(self, where, r, e, rec):
        step = e["step"]
        got = b"".join(v.to_bytes(step, "little") for v in rec["out"])
        ars = [[(a, n + 1) for p, a, n in rec["ar"] if p == q] for q in range(self.P)]
        for p in range(self.P):
            assert rec["r_beats"][p] == sum(n for _, n in ars[p]), \
                f"{where}: port {p} accepted {rec['r_beats'][p]} R beats for {sum(n for _, n in ars[p])} requested"
        if r["abort_after"] >= 0:
            k = len(got) // step
            assert r["abort_after"] <= k <= r["abort_after"] + 1, f"{where}: {k} beats before the abort took effect"
            assert rec["after_abort"] == 0, f"{where}: {rec['after_abort']} beats delivered after abort"
            assert got == e["data"][:len(got)], \
                f"{where}: data before the abort differs at {_first_diff(got, e['data'])}"
            for p in range(len(e["bursts"])):
                assert ars[p] == e["bursts"][p][:len(ars[p])], f"{where}: port {p} bursts {ars[p][:4]}..."
            assert rec["rd_done"] == 0, f"{where}: done after abort"
            return
        assert len(got) == len(e["data"]), f"{where}: {len(got) // step} beats out, want {len(e['data']) // step}"
        assert got == e["data"], f"{where}: data differs at byte {_first_diff(got, e['data'])}"
        for p in range(self.P):
            want = e["bursts"][p] if p < len(e["bursts"]) else []
            assert ars[p] == want, f"{where}: port {p} bursts {ars[p][:6]} != {want[:6]}"
        assert rec["rd_done"] == 1, f"{where}: {rec['rd_done']} done pulses"
        assert rec["rd_error"] == e["error"], f"{where}: rd_error {rec['rd_error']}, want {e['error']}"

    def _check_write(self, where, e, rec):
        aws = [(a, n + 1) for a, n in rec["aw"]]
        assert aws == e["bursts"], f"{where}: AW bursts {aws[:6]} != {e['bursts'][:6]}"
        assert rec["w_sent"] == e["beats"] and rec["w_beats"] == e["beats"], \
            f"{where}: {rec['w_sent']} data beats taken, {rec['w_beats']} W beats, want {e['beats']}"
        last = [0] * e["beats"]
        at = 0
        for _, n in e["bursts"]:
            at += n
            last[at - 1] = 1
        assert rec.get("wlast", []) == last, f"{where}: WLAST pattern differs"
        assert rec.get("wstrb", []) == e["strb"], f"{where}: WSTRB differs"
        assert rec["b"] == len(e["bursts"]), f"{where}: {rec['b']} B responses for {len(e['bursts'])} bursts"
        assert rec["wr_done"] == 1, f"{where}: {rec['wr_done']} done pulses"
        assert rec["wr_error"] == e["error"], f"{where}: wr_error {rec['wr_error']}, want {e['error']}"


def _describe(job):
    r, w = job["read"], job["write"]
    parts = []
    if r:
        parts.append(f"{'fetch' if r['fetch'] else 'stream'} {r['addr']:#x}+{r['length']}"
                     + (f" abort@{r['abort_after']}" if r["abort_after"] >= 0 else ""))
    if w:
        parts.append(f"write {w['addr']:#x}+{w['length']}")
    if job["poison"]:
        parts.append(f"poison {job['poison']}")
    return ", ".join(parts)


def _short(rec):
    return {k: v for k, v in rec.items() if k not in ("out", "mem", "wstrb", "wlast")}


def _first_diff(a: bytes, b: bytes):
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return f"{i} (got {a[i]:#04x}, want {b[i]:#04x}; {len(a)} vs {len(b)} bytes)"
    return f"{n} (lengths {len(a)} vs {len(b)})"


def plan_jobs(pl: Plan) -> None:
    """Corner cases first, then long jobs; every job clears the error flags before it starts."""
    B, SB = pl.B, pl.SB
    cap = min(pl.burst_max, PAGE // B)
    bad = 4                                                   # misaligned for every beat width
    pl.read(0x10000 - SB, SB)                                 # one wide beat, ending on a page boundary
    pl.read(0x21000 - 5 * B, (3 * cap + 7) * SB)              # not a multiple of a burst, near a boundary
    pl.read(HIGH + 0x40000 + 3 * B, (6 * cap + 1) * SB)       # upper address bits; fills the FIFOs
    pl.read(0x60000, 5 * cap * SB, abort_after=cap + 17)      # abort mid-stream ...
    pl.read(0x61000 - 2 * B, (cap + 3) * SB)                  # ... then a stream works
    pl.read(0x62000, 2 * cap * SB, abort_after=0)             # abort right after the start
    pl.read(0x63000 + B, 9 * SB)
    pl.read(0x64000 + 2 * B, (pl.depth + 2 * cap + 3) * SB, hold=2 * pl.depth + 100)   # output held: every FIFO fills
    n = 2 * cap + 5                                           # RRESP error on the last port's slice
    pl.read(0x70000, n * SB, poison=[(0x70000 + (pl.P - 1) * n * B + 7 * B, 0x70000 + (pl.P - 1) * n * B + 9 * B)])
    pl.read(0x80000 - 48 if B <= 16 else 0x80000 - 64, PAGE + 64 + 16, fetch=True)   # fetch across a boundary
    pl.read(0x81000 - B, 16, fetch=True)                      # fetch of 16 bytes
    pl.read(0x82000, 2 * cap * B, fetch=True, abort_after=5)
    pl.read(0x83000, 48 * B, fetch=True, poison=[(0x83000 + 40 * B, 0x83000 + 41 * B)])
    pl.write(0x90000 - 2 * B if B <= 16 else 0x90000 - 64, PAGE + 80)            # write across a boundary
    pl.write(0xA0000 + B, 200 * 16, with_read={"addr": 0xB0000 - 3 * B, "length": (2 * cap + 9) * SB,
                                               "fetch": 0, "stall": 0.3, "abort_after": -1, "hold": 0})
    pl.write(0xC0000, 1024, poison=[(0xC0000 + 256, 0xC0000 + 256 + B)])          # BRESP error
    pl.write(0xD1000 - B, 16)                                 # one beat (two at 64 bits) below a boundary
    pl.read(0xE0000, 3 * SB + bad)                            # rejected: length
    pl.read(0xE0000 + bad, 64, fetch=True)                    # rejected: address
    pl.write(0xE0000 + bad, 64)                               # rejected: address
    pl.read(0xE1000, 0)                                       # empty: done, no error
    if B > 16:                                                # 16-byte aligned but not beat aligned: rejected
        pl.write(0xE3000 + 16, 64)
        pl.read(0xE3000 + 16, 64, fetch=True)
    pl.write(0xE4000 + 3 * B, 48)                             # 3 x 16 bytes: a cut strobe when B = 32
    pl.write(0xE5000 - 2 * B, 20)                             # 20 bytes (10 logits): the last strobe cut
    pl.write(0xE6000 - 7 * B, 4096 + 7, gap=0.5)              # odd length across a boundary
    pl.read(0xE7000 - 2 * B, 4 * B + 5, fetch=True)           # odd fetch length: rounded up to beats
    pl.read(0xE2000 - 7 * B, (cap + 5) * SB)                  # still works after all of the above


# (ports, axi_bits, burst_max, fifo_depth): the presets' 128-bit ports with P = 1, 2, 4 (P = 2
# with short bursts and a small FIFO: many bursts, credits always tight), 64-bit ports, and
# 256-bit ports (a burst is at most 128 beats there; writes of an odd number of 16-byte units).
CONFIGS = [(1, 128, 256, None), (2, 128, 16, 32), (4, 128, 256, None), (2, 64, 256, None), (1, 256, 256, None)]


@pytest.mark.parametrize("P,W,burst_max,depth", CONFIGS, ids=[f"p{c[0]}_w{c[1]}_b{c[2]}" for c in CONFIGS])
def test_dma(P, W, burst_max, depth, measured):
    hw = HardwareConfig(axi_ports=P, axi_bits=W)
    dma = Dma(hw, burst_max, depth)
    pl = Plan(P, W, burst_max, dma.depth, seed=P * 1000 + W + burst_max)
    plan_jobs(pl)
    spec = {"ports": P, "bits": W, "mem_size": MEM, "mem_seed": pl.seed, "pause": 0.3, "seed": pl.seed,
            "jobs": pl.jobs}
    res = run_cocotb(dma, f"dma_p{P}_w{W}_b{burst_max}", "sim.tb_dma", spec)     # SPVIT_SIM
    recs = res["jobs"]
    assert len(recs) == len(pl.jobs)
    for i, (job, e, rec) in enumerate(zip(pl.jobs, pl.expect, recs)):
        pl.check(i, job, e, rec)
    if os.environ.get("DMA_DEBUG"):             # per-job summary (pytest -s)
        for i, (job, rec) in enumerate(zip(pl.jobs, recs)):
            print(i, _describe(job), "cycles", rec["cycles"], "out", len(rec["out"]), "ar", len(rec["ar"]),
                  "fill", rec["max_fill"], "drained", rec["drained"], "err", rec["rd_error"], rec["wr_error"])
    cycles, wall = sum(r["cycles"] + QUIET for r in recs), sum(r["wall_s"] for r in recs)
    measured(f"dma P={P} W={W} burst_max={burst_max}: {len(recs)} jobs, {cycles} cycles, {cycles / wall:.0f} "
             f"cycles per wall second ({res['sim']}, AXI pauses 0.3, Python testbench every cycle)")


def test_dma_config_errors():
    hw = HardwareConfig(axi_ports=1, axi_bits=128)
    with pytest.raises(ValueError, match="burst_max must lie in 1..256"):
        Dma(hw, burst_max=300)
    with pytest.raises(ValueError, match="fifo_depth must be a power of two that holds a whole burst"):
        Dma(hw, burst_max=64, fifo_depth=32)
    with pytest.raises(ValueError, match="fifo_depth must be a power of two"):
        Dma(hw, burst_max=16, fifo_depth=48)


@pytest.mark.parametrize("P,W", [(4, 128), (1, 256)])
def test_dma_verilator_lint_clean(tmp_path, P, W):
    v = write_verilog(Dma(HardwareConfig(axi_ports=P, axi_bits=W)), f"dma_p{P}_w{W}", tmp_path)
    r = subprocess.run(["verilator", "--lint-only", "-Wall", *LINT_WAIVERS, str(v)], capture_output=True, text=True)
    msgs = [line for line in r.stderr.splitlines() if line.startswith("%")]
    assert r.returncode == 0 and not msgs, "\n".join(msgs[:20])


def test_dma_maps_to_block_ram(tmp_path):
    """zcu102 (4 ports of 128 bits): each port's FIFO (1024 x 128) is 4 BRAM36; no DSP, no latch."""
    hw = HW_PRESETS["zcu102"]
    v = write_verilog(Dma(hw), "dma_zcu102", tmp_path)
    res = synthesize(v, "dma_zcu102", tmp_path)
    assert res.bram36 == 4 * hw.axi_ports and res.dsp == 0 and res.latches == 0, res.as_dict()
