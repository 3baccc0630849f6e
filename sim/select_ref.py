"""Reference side of the selector-unit bench: every command of a sim.select_bench.Session is
mirrored on a golden.interp.Machine (whose buffers start with the same random junk the bench
writes), and every output the RTL must produce is recorded; `SelectRun.run` simulates and
compares by == (mismatch counts and first mismatches per item)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from base import settings
from golden import isa
from golden.arith import quantize
from golden.compare import Comparison
from golden.compiler import compile_model, select_bytes
from golden.hw import HardwareConfig
from golden.interp import Machine
from rtl_gen.selector.store import beats
from rtl_gen.tools import cycles as cycle_model

from .runner import run_stream
from .select_bench import SB_SLICES, SelectBench, Session, region, scores_of, store_bytes


@dataclass
class Op:
    label: str
    name: str
    rows: int
    fields: dict
    sel: object              # the interpreter's Selection the op made or used
    scores: object = None    # DECIDE: the scores


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

    def put_scores(self, scores):
        """Rows 0.. of the score buffer SB (the golden one too); the other rows keep the junk."""
        sb = self.mach.buf[isa.SB]
        sb[:len(scores), 0] = np.asarray(scores, dtype=np.int64)
        self.s.write_scores(sb[:self.rows_all, 0])

    def put_junk(self, buf: int, c0: int = 0, w: int | None = None):
        """Write the golden buffer's current contents (the junk) of channels c0.. to the RTL."""
        if buf == isa.SB:
            self.s.write_scores(self.mach.buf[isa.SB][:self.rows_all, 0])
            return
        w = self.hw.buffer_width(buf) - c0 if w is None else w
        self.s.write_region(buf, self.mach.buf[buf][:self.rows_all, c0:c0 + w], c0)

    def table(self, base, slope):
        self.mach.table = (np.asarray(base, dtype=np.int64).copy(), np.asarray(slope, dtype=np.int64).copy())
        self.s.table(base, slope)

    def op(self, label: str, name: str, rows: int, **fields):
        d = isa.decode(isa.encode(name, rows=rows, **fields))
        before = self.mach.sel
        scores = self.scores(d, rows) if name == "DECIDE" and d["mode"] == isa.DECIDE_THRESHOLD else None
        getattr(self.mach, "op_" + name.lower())(d, rows)
        self.s.op(name, rows, **fields)
        want = {"op": isa.OPS[name].code}
        if name == "DECIDE":
            want.update(kept_stb=1, kept=self.mach.kept[fields.get("stage", 0)], stage=fields.get("stage", 0))
        if name == "COMPACT":
            want.update(n_stb=1, n_out=self.mach.n)
        self.expect.append(("o_ev", 1, f"{label}: {name} event", want))
        self.ops.append(Op(label, name, rows, dict(fields), self.mach.sel if name != "COMPACT" else before, scores))

    def scores(self, d, rows):
        """sum_h w_h (z0_h - z1_h) of the scored tokens (what the cycle model of DECIDE needs)."""
        h, ns = d["heads"], rows - 1 - d["n_pkg"]
        z = self.mach.buf[d["z_buf"]][1:1 + ns, d["z_c0"]:d["z_c0"] + 2 * h]
        w = self.mach.buf[d["w_buf"]][1:1 + ns, d["w_c0"]:d["w_c0"] + h]
        return (w * (z[:, 0::2] - z[:, 1::2])).sum(-1)

    def check(self, label: str, buf: int, c0: int, w: int):
        """Read back every token tile of channels c0..c0+w-1 (all lanes: rows an operation must
        not write still hold the junk)."""
        self.s.read_region(buf, self.hw.tiles, c0, w)
        self.expect.append(("o_rd", self.hw.tiles * w, f"{label}: {isa.BUFFER_NAMES[buf]} channels {c0}..{c0 + w - 1}",
                            self.mach.buf[buf][:self.rows_all, c0:c0 + w].copy()))

    def check_scores(self, label: str):
        """Read back every tile of the score buffer SB."""
        self.s.read_scores(self.hw.tiles)
        self.expect.append(("o_rd", self.hw.tiles * SB_SLICES, f"{label}: SB", self.mach.buf[isa.SB][:self.rows_all, 0]
                            .copy()))

    def check_selection(self, label: str):
        s = self.mach.last
        self.s.read_m(range(1, 1 + len(s.keep)))
        m = None if s.m is None else s.m.copy()                # a top-k decision has no keep probabilities
        what = "keep" if m is None else "m and keep"
        self.expect.append(("o_m", len(s.keep), f"{label}: {what}", (m, s.keep.copy())))

    def store(self, label: str):
        d = isa.decode(isa.encode("STORE", mode=isa.STORE_SELECT, addr=0, rows=1))
        self.mach.op_store(d, 1)
        self.s.store()
        self.expect.append(("o_st", beats(self.hw), f"{label}: STORE of the selection",
                            bytes(self.mach.ddr[:select_bytes(self.hw)])))

    # ------------------------------------------------------------ run and compare
    def run(self, name: str, stall: float = 0.2, seed: int = 0, tag: str = "run", bench=None):
        """Simulate; returns (report lines of mismatching items, events [(label, op, cycles)], SimResult)."""
        res = run_stream(bench or SelectBench(self.hw), name, {"i_cmd": self.s.cmds}, self.s.counts(), stall=stall,
                         seed=seed, sim=settings.SIM_ENGINE, tag=tag, timeout=50 * len(self.s.cmds) + 2_000_000,
                         drain=100)
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
            if stream_name == "o_rd" and want.ndim == 1:
                g, w = scores_of(got, self.hw.tiles, R), want
            elif stream_name == "o_rd":
                g, w = region(got, self.hw.tiles, want.shape[1], R), want
            elif stream_name == "o_m":
                g = np.array([[b["m"], b["keep"]] for b in got], dtype=np.int64).reshape(-1, 2)
                w = np.stack([g[:, 0] if want[0] is None else want[0], want[1].astype(np.int64)], 1)
            else:
                g = np.frombuffer(store_bytes(got, self.hw, len(want)), dtype=np.uint8)
                w = np.frombuffer(want, dtype=np.uint8)
                if got[-1]["last"] != 1 or any(b["last"] for b in got[:-1]):
                    bad.append(f"{label}: last flags {[b['last'] for b in got]}")
            c = Comparison()
            if c.add(label, g, w):
                bad.append(f"{label}: {c.summary()}")
        if res.consumed.get("i_cmd") != len(self.s.cmds):
            bad.append(f"consumed {res.consumed} of {len(self.s.cmds)} commands")
        if any(res.extra.values()):
            bad.append(f"output beats past the expected ones: {res.extra}")
        return bad, events, res


def model_cycles(op: Op, hw: HardwareConfig, recips: int = 4, cap_bits: int = 3, pk_lanes: int | None = None) -> int:
    """rtl_gen.tools.cycles's count for one operation of a run."""
    f, rows = op.fields, op.rows
    if op.name == "GMEAN":
        return cycle_model.gmean_cycles(rows, f["w"], hw)
    if op.name == "DECIDE" and f.get("mode") == isa.DECIDE_TOPK:
        return cycle_model.topk_cycles(rows, hw)
    if op.name == "COMPACT" and f.get("order") == isa.ORDER_RANK:
        return cycle_model.gather_cycles(rows, {"n_pkg": 0, "rest": 0, "no_pkg": 0, **f}, int(op.sel.keep.sum()), hw)
    if op.name == "COPY":
        return cycle_model.gather_cycles(rows, {"i_c0": 0, "o_c0": 0, "shift": 0, **f}, 0, hw)
    if op.name == "DECIDE":
        return cycle_model.decide_cycles(rows, f["heads"], f.get("n_pkg", 0), hw, op.scores, bool(f.get("cap_en")),
                                     f.get("cap", 0), recips, cap_bits)
    if op.name == "PACKAGE":
        return cycle_model.package_cycles(rows, f.get("n_pkg", 0), f["d"], f.get("mode", 0), op.sel.keep, op.sel.m, hw,
                                      pk_lanes)
    return cycle_model.compact_cycles(rows, f.get("n_pkg", 0), f["d"], op.sel.keep, hw)


def cycle_mismatches(events, hw: HardwareConfig, **params) -> list[str]:
    out = []
    for op, cycles in events:
        want = model_cycles(op, hw, **params)
        if cycles != want:
            out.append(f"{op.label} {op.name} rows {op.rows}: RTL {cycles} cycles, model {want}")
    return out


# ------------------------------------------------------------------ real inputs
@dataclass
class StageSnapshot:
    """One selector stage of a compiled model's run: the interpreter's state right before its
    first GMEAN and right before its DECIDE, and the stage's descriptors."""
    stage: int
    hw: HardwareConfig
    before_gmean: tuple          # (buffers, table, n)
    before_decide: tuple
    descs: dict                  # op name -> list of decoded descriptors
    table: tuple                 # the d_sig table DECIDE loads (base, slope)

    @staticmethod
    def _fields(d) -> dict:
        return {k: v for k, v in d.items() if k not in ("op", "rows", "rows_n")}

    def _load(self, r: SelectRun, state, regions):
        for buf, c0, w in regions:
            r.put(buf, c0, state[0][buf][:r.rows_all, c0:c0 + w])

    def replay(self, r: SelectRun, label: str, variants: bool = True):
        g = self.descs["GMEAN"]
        n = self.before_gmean[2]
        self._load(r, self.before_gmean, [(g[0]["buf"], 0, self.hw.d_max)])
        for i, d in enumerate(g):
            r.op(f"{label} head {i}", "GMEAN", n, **self._fields(d))
        r.check(label, g[0]["buf"], 0, self.hw.d_max)
        dec, pk, cp = self.descs["DECIDE"][0], self.descs["PACKAGE"][0], self.descs["COMPACT"][0]
        n = self.before_decide[2]
        h = dec["heads"]
        self._load(r, self.before_decide, [(dec["z_buf"], dec["z_c0"], 2 * h), (dec["w_buf"], dec["w_c0"], h),
                                           (pk["x_buf"], 0, pk["d"])])
        r.table(*self.table)
        runs = [(label, dec, pk)]
        if variants:
            bufs = self.before_decide[0]
            z = bufs[dec["z_buf"]][1:n - dec["n_pkg"], dec["z_c0"]:dec["z_c0"] + 2 * h]
            w = bufs[dec["w_buf"]][1:n - dec["n_pkg"], dec["w_c0"]:dec["w_c0"] + h]
            kept0 = int(((w * (z[:, 0::2] - z[:, 1::2])).sum(-1) >= 0).sum())
            runs += [(f"{label} variant sum", dec, {**pk, "mode": isa.PACKAGE_MODES["sum"]}),
                     (f"{label} variant mean, cap", {**dec, "cap_en": 1, "cap": max(kept0 - 3, 0)},
                      {**pk, "mode": isa.PACKAGE_MODES["mean"]})]
        for lab, dd, pp in runs:
            r.op(lab, "DECIDE", n, **{**self._fields(dd), "act": isa.ACT_KEEP})
            r.check_selection(lab)
            r.op(lab, "PACKAGE", n, **self._fields(pp))
            r.op(lab, "COMPACT", n, **self._fields(cp))
            r.check(lab, cp["o_buf"], 0, cp["d"])
            r.store(lab)


def selector_snapshots(q, hw: HardwareConfig, imgs, img: int = 0) -> list[StageSnapshot]:
    """Run the compiled model q on image `img` in the interpreter and keep, per selector stage,
    the state before its first GMEAN and before its DECIDE."""
    image = compile_model(q, hw)
    ddr = image.with_input(quantize(imgs[img].numpy(), q.img_frac))
    p0 = image.regions["program"][0]
    descs = [isa.decode(bytes(image.data[p0 + i * isa.DESC_BYTES:][:isa.DESC_BYTES]))
             for i in range(image.manifest["descriptors"])]
    names = [d.op.name for d in descs]
    stages = []                                  # per stage: {name: [indices]}
    for i, nm in enumerate(names):
        if nm == "GMEAN" and (i == 0 or names[i - 1] != "GMEAN"):
            stages.append({})
        if stages and nm in ("GMEAN", "DECIDE", "PACKAGE", "COMPACT") and "COMPACT" not in stages[-1]:
            stages[-1].setdefault(nm, []).append(i)
    want = {s["GMEAN"][0] - 1: ("g", k) for k, s in enumerate(stages)}
    want.update({s["DECIDE"][0] - 1: ("d", k) for k, s in enumerate(stages)})
    want.update({s["DECIDE"][0]: ("t", k) for k, s in enumerate(stages)})
    snaps = {}

    def trace(index, desc, mach):
        if index in want:
            table = None if mach.table is None else (mach.table[0].copy(), mach.table[1].copy())
            snaps[want[index]] = ({b: a.copy() for b, a in mach.buf.items()}, table, mach.n)
    Machine(hw, ddr, trace=trace).run()
    return [StageSnapshot(k, hw, snaps[("g", k)], snaps[("d", k)], {nm: [descs[i] for i in ix] for nm, ix in s.items()},
                          snaps[("t", k)][1]) for k, s in enumerate(stages)]
