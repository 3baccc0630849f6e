"""Token-selector bench (shared by tests/sim/test_selector.py and `spvit simulate --target
selector`): drives SelectorEngine with jobs of one image each, collects o_sel, o_kept and o_y,
and compares every output with golden QSelector.__call__ by ==."""
from __future__ import annotations

import numpy as np

from rtl_gen.config import HW_PRESETS
from rtl_gen.mlp import tiles_of, untile
from rtl_gen.selector import MODES, SelectorEngine, SelFormats, weight_stream
from spvit import settings

from .check import mismatches
from .runner import run_stream


def static_inputs(sel, n: int, n_pkg: int) -> dict:
    """Plain inputs of the engine for a job of n tokens with n_pkg earlier packages."""
    return {"n": n, "n_pkg": n_pkg, "cap_en": int(sel.cap is not None), "cap": sel.cap or 0,
            "mode": MODES[sel.package_mode]}


def _budget(n: int, d: int, heads: int) -> int:
    """Cycles after which a job counts as hung: well above the stall-free schedule
    (rtl_gen.perf.selector_cycles, which is far smaller since the engine works on whole token
    tiles) even with random stalls on every stream, at least 150,000."""
    return max(150_000, 100_000 + 2 * n * (8 * d + 110 * heads + 100))


def run_selector(sel, jobs, n_pkg, hw=None, name="selector_mini", stall=0.2, seed=0, sim=None, tag="run",
                 engine=None):
    """jobs: token arrays [N, D] sharing N (a plain input). Runs sel's package_mode and cap.
    Returns per job (tokens, keep, score, m, kept, o_sel last flags) and the SimResult."""
    hw = hw or HW_PRESETS["mini"]
    n, d = jobs[0].shape
    assert all(x.shape == (n, d) for x in jobs)
    ns = n - 1 - n_pkg
    n_out = 1 + n_pkg + 1
    beats, words = [], []
    for x in jobs:
        beats += tiles_of(x, hw.mac_rows)
        words += weight_stream(sel)
    want_keep = [sel(x, n_pkg)[1].keep for x in jobs]
    per_out = [-(-(n_out + int(k.sum())) // hw.mac_rows) * d for k in want_keep]
    eng = engine or SelectorEngine(SelFormats.from_selector(sel), hw)
    # o_y length depends on the RTL's own kept count; collect what golden predicts and check
    # the count separately (a wrong count then shows as a kept-count mismatch, not a hang)
    try:
        res = run_stream(eng, name, {"i_x": beats, "i_w": words},
                         {"o_y": sum(per_out), "o_sel": ns * len(jobs), "o_kept": len(jobs)},
                         static=static_inputs(sel, n, n_pkg), stall=stall, seed=seed,
                         sim=sim or settings.SIM_ENGINE, tag=tag, timeout=len(jobs) * _budget(n, d, sel.heads))
    except RuntimeError as e:
        if "timeout" in str(e):
            raise AssertionError(f"selector RTL emitted fewer output beats than golden predicts (kept "
                                 f"counts {[int(k.sum()) for k in want_keep]}): its decisions differ\n{e}") from None
        raise
    outs, pos = [], 0
    for i, x in enumerate(jobs):
        sel_beats = res.outputs["o_sel"][i * ns:(i + 1) * ns]
        kept = res.outputs["o_kept"][i]
        nb = per_out[i]
        n_tok = n_out + int(want_keep[i].sum())
        toks = untile(res.outputs["o_y"][pos:pos + nb], n_tok, d, hw.mac_rows)
        pos += nb
        outs.append((toks, np.array([b["keep"] for b in sel_beats]), np.array([b["score"] for b in sel_beats]),
                     np.array([b["m"] for b in sel_beats]), kept,
                     [b["last"] for b in sel_beats]))
    return outs, res


def compare(sel, jobs, n_pkg, outs):
    """Exact comparison of every output with golden: (mismatching elements, compared elements,
    first mismatches as (what, index, RTL, golden))."""
    bad, total, first = 0, 0, []
    for i, (x, (toks, keep, score, m, kept, last)) in enumerate(zip(jobs, outs)):
        want, s = sel(x, n_pkg)
        ns = len(s.keep)
        fields = (("kept count", [kept], [int(s.keep.sum())]), ("keep", keep, s.keep), ("score", score, s.score),
                  ("m", m, s.weight), ("output tokens", toks, want),
                  ("o_sel last", last, [0] * (ns - 1) + [1] if ns else []))
        for what, got, ref in fields:
            got, ref = np.asarray(got, dtype=np.int64).ravel(), np.asarray(ref, dtype=np.int64)
            n, f = mismatches(got.reshape(ref.shape), ref)
            bad, total = bad + n, total + ref.size
            first += [(f"job {i} {what}", ix, g, w) for ix, g, w in f]
    return bad, total, first[:8]
