"""Deck size per cell against the 120-byte limit, and the cost of writing decks.

For memtransistor arrays of several sizes (random states, 1 Ohm wires) and for the
resistor cells of a linear read, writes the ``.op`` deck, the ``.tran`` deck (50 random
binary steps) and the ``.dc`` batch deck (10 patterns) and prints bytes per cell (whole
deck / (R*C)) next to the limit, and the time to write each deck.  With ``--vary`` the
states come with per-cell ``g_max`` and ``v_th`` (device-to-device spread), the largest
per-cell line.

Run:  .venv/bin/python benchmarks/bench_spice_decks.py [--vary]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from cosim.spice.netlist import crossbar_deck  # noqa: E402

LIMIT = 120  # bytes per cell


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vary", action="store_true", help="per-cell g_max and v_th")
    args = parser.parse_args()
    print("threads: OMP/OPENBLAS/MKL_NUM_THREADS=1")
    print(f"{'array':>9s} {'cells':>6s} {'deck':>5s} {'bytes':>10s} {'B/cell':>7s} "
          f"{'limit':>6s} {'write ms':>9s}")
    worst = 0.0
    for R, C in ((16, 32), (64, 32), (100, 200), (128, 128)):
        rng = np.random.default_rng(R * C)
        W = rng.uniform(0, 1, (R, C))
        params = {}
        if args.vary:
            params = {"g_max": 1e-5 * rng.lognormal(0, 0.05, (R, C)),
                      "v_th": 0.5 + 0.01 * rng.normal(size=(R, C))}
        T = 50
        spikes = rng.integers(0, 2, (T, R)) * 0.1
        common = dict(r_word=1.0, r_bit=1.0)
        decks = {
            "op": dict(states=W, device_params=params, v_word=spikes[0], **common),
            "tran": dict(states=W, device_params=params, stimulus=(np.arange(T) * 1e-6, spikes),
                         tstep=5e-8, tstop=T * 1e-6, **common),
            "dc": dict(states=W, device_params=params, batch=spikes[:10], **common),
            "R op": dict(conductances=1e-5 * W + 1e-7, v_word=spikes[0], **common),
        }
        for kind, kw in decks.items():
            t0 = time.perf_counter()
            text = crossbar_deck(**kw)
            dt = time.perf_counter() - t0
            size = len(text.encode())
            per = size / (R * C)
            worst = max(worst, per)
            print(f"{R:>4d}x{C:<4d} {R * C:>6d} {kind:>5s} {size:>10d} {per:>7.1f} "
                  f"{LIMIT:>6d} {1e3 * dt:>9.1f}")
    print(f"worst {worst:.1f} bytes/cell = {worst / LIMIT:.2f} x the {LIMIT}-byte limit")


if __name__ == "__main__":
    main()
