"""Compact backend per-step cost and nonlinear reads.

1. Linear read, programmed 128×128 and 256×256 weight arrays (differential: 2C physical
   columns), 1 Ω segments: time of one timestep (batch of one input vector) through
   ``Compact`` vs a dense numpy matvec of the same (R × C) size. Goal: ≤ 2×.
2. Nonlinear read (memtransistor I-V at the local node voltages), 64×64 weights, 1 Ω, 100
   random binary input patterns, one per call: time per step (cold: every pattern new;
   warm: repeated patterns served by the cache) and the worst KCL residual, recomputed
   independently. Batched reads (many patterns per call): ``bench_nonlinear.py``.

    OMP_NUM_THREADS=1 python benchmarks/bench_compact.py
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import sys  # noqa: E402
import time  # noqa: E402
import timeit  # noqa: E402

import numpy as np  # noqa: E402


def per_step(n, repeats=20000):
    from cosim.crossbar import Compact

    rng = np.random.default_rng(0)
    W = rng.normal(size=(n, n))
    xb = Compact(r_word=1.0, r_bit=1.0)
    t0 = time.perf_counter()
    xb.program(W)
    xb.weight_map()
    t_prog = time.perf_counter() - t0
    x = (rng.random((1, n)) < 0.5).astype(float)
    forward = xb.forward
    ours = min(timeit.repeat(lambda: forward(x), number=repeats, repeat=5)) / repeats
    dense = min(timeit.repeat(lambda: x @ W, number=repeats, repeat=5)) / repeats
    print(f"linear read {n}x{n}: program+map {t_prog:.2f} s; per step {ours * 1e6:.2f} us vs "
          f"dense matvec {dense * 1e6:.2f} us: ratio {ours / dense:.2f} (goal <= 2)")


def nonlinear(n=64, patterns=100):
    from cosim.crossbar import Compact, nodal

    rng = np.random.default_rng(1)
    W = rng.normal(size=(n, n))
    xb = Compact(r_word=1.0, r_bit=1.0, read="nonlinear")
    xb.program(W)
    x = (rng.random((patterns, n)) < 0.5).astype(float)
    t0 = time.perf_counter()
    for k in range(patterns):
        xb.forward(x[k:k + 1])
    cold = (time.perf_counter() - t0) / patterns
    t0 = time.perf_counter()
    for k in range(patterns):
        xb.forward(x[k:k + 1])
    warm = (time.perf_counter() - t0) / patterns
    device, states = xb.array_device, xb.states
    cell = lambda vw, vb: device.current_terminals(vw, xb.v_gate, vb, states)  # noqa: E731
    worst = 0.0
    for k in range(0, patterns, 10):
        sol = xb.solution(x[k])
        res = nodal.kcl_residual(cell, xb.v_read * x[k], 1.0, 1.0, None, sol.bit_voltages,
                                 relative=True, word_drops=sol.word_drops)
        worst = max(worst, np.abs(res).max())
    print(f"nonlinear read {n}x{n} ({n}x{2 * n} devices), {patterns} patterns one per call "
          f"(a recurrent layer, batch 1): {cold * 1e3:.1f} ms/step cold (Newton with line "
          f"sweeps), {warm * 1e6:.1f} us/step from the cache; worst KCL residual {worst:.1e} "
          f"(relative to the largest branch current, from the word drops); {xb.stats}")
    print("    (all patterns of one call are solved together: benchmarks/bench_nonlinear.py)")


def main():
    print(f"threads: OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
    for n in (128, 256):
        per_step(n)
    nonlinear()
    return 0


if __name__ == "__main__":
    sys.exit(main())
