"""Cost per crossbar read step with ngspice, four ways.

64x64 memtransistor array (read-only cell, random states, 1 Ohm wires), K = 10 random
binary input vectors (V_read = 0.1 V):

  (a) a fresh ``ngspice -b`` subprocess per step (deck written, parsed, solved, raw read)
  (b) one NgspiceSession (shared library): circuit loaded once, ``alter`` + ``op`` per step
  (c) one analysis for all K steps: ``.dc`` batch deck (index sweep) and ``.tran`` PWL deck
  (d) a cache hit (no ngspice call, counted)

Run:  .venv/bin/python benchmarks/bench_spice_runner.py [n] [K]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from cosim.spice.cache import SpiceCache, cached_run_op  # noqa: E402
from cosim.spice.netlist import crossbar_deck, sense_vectors  # noqa: E402
from cosim.spice.ngspice import (NgspiceSession, find_ngspice, ngspice_calls, run_dc,  # noqa: E402
                                 run_op, run_tran, shared_available)


def main(n: int = 64, K: int = 10, seed: int = 0) -> dict:
    info = find_ngspice()
    print(f"threads: OMP/OPENBLAS/MKL_NUM_THREADS=1; {info.version_string}, KLU: {info.klu}, "
          f"shared library: {info.library}")
    rng = np.random.default_rng(seed)
    W = rng.uniform(0, 1, (n, n))
    X = rng.integers(0, 2, (K, n)) * 0.1
    kw = dict(states=W, r_word=1.0, r_bit=1.0)
    vec = sense_vectors(n)

    def currents(res, k=None):
        return np.array([res[v][0] if k is None else res[v][k] for v in vec])

    out = {}
    # (a) subprocess per step
    t0 = time.perf_counter()
    ref = [currents(run_op(crossbar_deck(v_word=x, **kw), vec, engine="subprocess"))
           for x in X]
    out["a_subprocess"] = (time.perf_counter() - t0) / K
    ref = np.array(ref)

    # (a') shared library, deck loaded afresh per step
    if shared_available():
        t0 = time.perf_counter()
        got = [currents(run_op(crossbar_deck(v_word=x, **kw), vec, engine="shared"))
               for x in X]
        out["a_shared_fresh"] = (time.perf_counter() - t0) / K
        out["err_shared_fresh"] = np.max(np.abs(np.array(got) - ref)) / np.abs(ref).max()

        # (b) session: load once, alter + op
        t0 = time.perf_counter()
        with NgspiceSession(crossbar_deck(v_word=X[0], **kw), vec) as s:
            t_load = time.perf_counter() - t0
            t1 = time.perf_counter()
            got = []
            for x in X:
                s.set_sources({f"vin{i}": x[i] for i in range(n)})
                got.append(currents(s.op()))
            t_steps = time.perf_counter() - t1
        out["b_session_load"] = t_load
        out["b_session_step"] = t_steps / K
        out["err_session"] = np.max(np.abs(np.array(got) - ref)) / np.abs(ref).max()

    # (c) one analysis for all K vectors
    t0 = time.perf_counter()
    dc = run_dc(crossbar_deck(batch=X, **kw), vec)
    out["c_dc_batch"] = (time.perf_counter() - t0) / K
    got = np.array([currents(dc, k) for k in range(K)])
    out["err_dc_batch"] = np.max(np.abs(got - ref)) / np.abs(ref).max()

    period = 1e-3
    times = np.arange(K) * period
    t0 = time.perf_counter()
    tr = run_tran(crossbar_deck(stimulus=(times, X), tstep=period, tstop=K * period,
                                rise_time=1e-6, **kw), vec)
    out["c_tran_batch"] = (time.perf_counter() - t0) / K
    ends = [int(np.argmin(np.abs(tr["time"] - (times[k + 1] if k + 1 < K else K * period))))
            for k in range(K)]
    got = np.array([currents(tr, e) for e in ends])
    out["err_tran_batch"] = np.max(np.abs(got - ref)) / np.abs(ref).max()
    out["tran_points"] = int(tr["time"].size)

    # (d) cache
    with tempfile.TemporaryDirectory() as d:
        cache = SpiceCache(d)
        deck = crossbar_deck(v_word=X[0], **kw)
        t0 = time.perf_counter()
        cached_run_op(deck, vec, cache=cache)
        out["d_cache_miss"] = time.perf_counter() - t0
        calls = ngspice_calls()
        t0 = time.perf_counter()
        for _ in range(K):
            cached_run_op(deck, vec, cache=cache)
        out["d_cache_hit"] = (time.perf_counter() - t0) / K
        out["d_cache_hit_calls"] = ngspice_calls() - calls

    base = out["a_subprocess"]
    print(f"\n{n}x{n} memtransistor_read array, {K} input vectors, per step:")
    rows = [("(a) fresh ngspice -b subprocess", "a_subprocess"),
            ("(a') shared library, deck reloaded", "a_shared_fresh"),
            ("(b) session: alter + op", "b_session_step"),
            ("(c) one .dc batch analysis", "c_dc_batch"),
            ("(c) one .tran PWL analysis", "c_tran_batch"),
            ("(d) cache hit", "d_cache_hit")]
    for label, key in rows:
        if key in out:
            print(f"  {label:38s} {out[key] * 1e3:10.2f} ms   x{base / out[key]:8.1f} "
                  f"faster than (a)")
    if "b_session_load" in out:
        print(f"  session load (once)                    {out['b_session_load'] * 1e3:10.2f} ms")
    print(f"  cache miss (one run + store)           {out['d_cache_miss'] * 1e3:10.2f} ms")
    print(f"  ngspice calls during {K} cache hits: {out['d_cache_hit_calls']}")
    print(f"  .tran time points: {out['tran_points']}")
    print("  max |difference| / max |I| vs (a): " + ", ".join(
        f"{k[4:]} {v:.1e}" for k, v in out.items() if k.startswith("err_")))
    return out


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    main(*args)
