"""Spice backend: agreement with Compact, per-timestep cost vs a fresh `ngspice -b` per step,
cache hits, and identical spike rasters of a trained digits SRNN.

    OMP_NUM_THREADS=1 python benchmarks/bench_spice.py [--skip-raster]

1. Agreement: 16×16 to 64×64 random weights (physical arrays R × 2C), random binary inputs,
   1 Ω and 10 Ω segments, linear and memtransistor (nonlinear) reads: max relative
   difference of the bit-line currents, Spice vs Compact.
2. Cost per timestep, 64×64 weights, 50 steps of one input vector each:
   (a) a fresh deck written and run with `ngspice -b` per step (the naive way, measured on
       5 steps), (b) the Spice backend, linear read (one .dc batch gives the transfer matrix,
       then a matvec per step), (c) the Spice backend, nonlinear read, all steps of a
       feed-forward layer in one .dc analysis, (d) nonlinear read, one call per step (a
       recurrent layer: one circuit loaded in ngspice, sources altered, op rerun), (e) the same run again on a new backend object: disk-cache hits,
       counting ngspice calls.
3. Raster: a small digits SRNN trained with BPTT, 5 test samples × 50 steps, nonlinear read,
   1 Ω segments: spike rasters of Compact and Spice compared entry by entry.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402


def agreement(cache):
    from cosim.crossbar import Compact, Spice

    print("1. Spice vs Compact, max relative difference of bit-line currents")
    for n in (16, 32, 64):
        for r in (1.0, 10.0):
            row = []
            for read in ("linear", "nonlinear"):
                rng = np.random.default_rng(n * 10 + int(r))
                W = rng.normal(size=(n, n))
                x = (rng.random((5, n)) < 0.5).astype(float)
                c = Compact(r_word=r, r_bit=r, read=read)
                s = Spice(r_word=r, r_bit=r, read=read, cache=cache)
                c.program(W)
                s.program(W)
                i_c, i_s = c.bitline_currents(x), s.bitline_currents(x)
                row.append(f"{read} {np.abs(i_s - i_c).max() / np.abs(i_c).max():.1e}")
            print(f"   {n:3d}x{n:<3d} (x{2 * n} devices) r = {r:4.1f} ohm: " + ", ".join(row))


def per_step_cost(cache_dir):
    from cosim.crossbar import Spice
    from cosim.crossbar.spice import array_deck
    from cosim.spice import ngspice
    from cosim.spice.cache import SpiceCache
    from cosim.spice.netlist import sense_vectors

    n, steps = 64, 50
    rng = np.random.default_rng(7)
    W = rng.normal(size=(n, n))
    x = (rng.random((steps, n)) < 0.5).astype(float)
    print(f"2. cost per timestep, {n}x{n} weights ({n}x{2 * n} devices), {steps} steps, 1 ohm")

    ref = Spice(read="nonlinear", cache=False)
    ref.program(W)
    names = sense_vectors(2 * n)
    t0 = time.perf_counter()
    naive_steps = 5
    for t in range(naive_steps):
        deck = array_deck(ref, v_word=ref.v_read * x[t], read="nonlinear")
        ngspice.run_op(deck, names, engine="subprocess")
    naive = (time.perf_counter() - t0) / naive_steps
    print(f"   (a) fresh deck + `ngspice -b` per step (memtransistor cells): {naive * 1e3:8.1f} ms/step")

    results = {}
    for label, read, per_step in [("(b) Spice, linear read (transfer matrix, then matvec)", "linear", False),
                                  ("(c) Spice, nonlinear read, all steps in one .dc", "nonlinear", False),
                                  ("(d) Spice, nonlinear read, one call per step (loaded circuit)", "nonlinear", True)]:
        cache = SpiceCache(tempfile.mkdtemp(dir=cache_dir))
        xb = Spice(read=read, cache=cache)
        xb.program(W)
        t0 = time.perf_counter()
        if per_step:
            for t in range(steps):
                xb(x[t:t + 1])
        else:
            xb(x)
        per = (time.perf_counter() - t0) / steps
        results[label] = (per, cache, read, per_step)
        print(f"   {label:55s} {per * 1e3:8.1f} ms/step  ({naive / per:6.1f}x faster than (a))")

    per, cache, read, per_step = results["(d) Spice, nonlinear read, one call per step (loaded circuit)"]
    calls = ngspice.ngspice_calls()
    xb = Spice(read=read, cache=cache)
    xb.program(W)
    t0 = time.perf_counter()
    for t in range(steps):
        xb(x[t:t + 1])
    hit = (time.perf_counter() - t0) / steps
    print(f"   (e) same run, new backend, disk cache: {hit * 1e3:.2f} ms/step, "
          f"ngspice calls made: {ngspice.ngspice_calls() - calls}")


def raster(cache):
    from cosim import Model
    from cosim.crossbar import Compact, Spice
    from cosim.data import load_digits
    from cosim.network import SRNN

    (x_train, y_train), (x_test, y_test) = load_digits(T=50, seed=0)
    net = SRNN(64, 32, 10, neuron="alif", n_adaptive=16, seed=0)
    model = Model(net, lr=3e-3)
    model.train(x_train, y_train, epochs=10, progress=False)
    print(f"3. raster: SRNN(64, 32, 10) trained 10 epochs (test accuracy {model.evaluate(x_test, y_test):.1%}), "
          f"5 test samples x 50 steps, nonlinear read, 1 ohm")
    runs = {}
    for name, backend in [("compact", Compact(read="nonlinear")), ("spice", Spice(read="nonlinear", cache=cache))]:
        t0 = time.perf_counter()
        runs[name] = net.with_crossbar(backend).run(x_test[:5])
        print(f"   {name:8s} {time.perf_counter() - t0:6.1f} s, {int(runs[name].z.sum())} spikes")
    same = runs["compact"].z == runs["spice"].z
    print(f"   rasters identical: {bool(same.all())} ({100 * same.mean():.3f} % of "
          f"{same.size} entries); max |y| difference "
          f"{np.abs(runs['compact'].y - runs['spice'].y).max():.1e}")


def main():
    from cosim.spice.ngspice import find_ngspice

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip-raster", action="store_true")
    args = parser.parse_args()
    info = find_ngspice()
    print(f"threads: OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}; ngspice {info.version}, "
          f"KLU {info.klu}")
    with tempfile.TemporaryDirectory() as tmp:
        agreement(tmp)
        per_step_cost(tmp)
        if not args.skip_raster:
            raster(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
