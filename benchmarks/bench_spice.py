"""Spice backend: agreement with Compact, per-timestep cost vs a fresh `ngspice -b` per step,
cache hits, and identical spike rasters of a trained digits SRNN.

    OMP_NUM_THREADS=1 python benchmarks/bench_spice.py [--skip-raster] [--workers K] [--parts 1,4]

1. Agreement: 16×16 to 64×64 random weights (physical arrays R × 2C), random binary inputs,
   1 Ω and 10 Ω segments, linear and memtransistor (nonlinear) reads: max relative
   difference of the bit-line currents, Spice vs Compact.
2. Cost per timestep, 64×64 weights, 50 steps of one input vector each:
   (a) a fresh deck written and run with `ngspice -b` per step (the naive way, measured on
       5 steps), (b) the Spice backend, linear read (one .dc batch gives the transfer matrix,
       then a matvec per step), (c) the Spice backend, nonlinear read, all steps of a
       feed-forward layer in one .dc sweep of the array's loaded circuit, (d) nonlinear
       read, one call per step (a recurrent layer: a one-point sweep of the same loaded
       circuit per step), (e) the same run again on a new backend object: disk-cache hits,
       counting ngspice calls.
4. Samples over worker processes: an SRNN on Spice arrays (nonlinear read, no cache) runs
   independent samples in this process and over K workers (``map_in_processes``, one ngspice
   per worker, each loading its own circuits); cost per timestep against fresh
   ``ngspice -b`` decks of all its arrays: the ratio in one process and with K workers.
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
                s = Spice(r_word=r, r_bit=r, read=read, cache=cache)
                s.program(W)
                i_s = s.bitline_currents(x)
                i_c = []
                for pattern in x:   # each from the default start (no warm start)
                    c = Compact(r_word=r, r_bit=r, read=read)
                    c.program(W)
                    i_c.append(c.bitline_currents(pattern))
                i_c = np.array(i_c)
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
                                  ("(c) Spice, nonlinear read, all steps in one .dc sweep", "nonlinear", False),
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


def _cpu(children=False):
    """CPU seconds (user + system) of this process (all threads), and of its finished
    children if asked."""
    import resource
    own = resource.getrusage(resource.RUSAGE_SELF)
    out = own.ru_utime + own.ru_stime
    if children:
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        out += kids.ru_utime + kids.ru_stime
    return out


def ngspice_accounting(deck):
    """ngspice's own accounting (``.options acct``) of one fresh ``ngspice -b`` run of a
    deck: {name: value} of its timing lines (seconds) and its Newton iteration count."""
    import re
    import subprocess

    from cosim.spice import ngspice
    from cosim.spice.results import strip_end
    from cosim.spice.safety import resolve_deck

    text = strip_end(resolve_deck(deck)) + "\n.options acct\n.end\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "deck.cir")
        with open(path, "w") as fh:
            fh.write(text)
        out = subprocess.run([ngspice.find_ngspice().executable, "-b", path], cwd=tmp,
                             capture_output=True, text=True, timeout=600).stdout
    found = {}
    for key in ("Subckt and Param expansion time", "Netlist parsing time", "Total iterations",
                "Total analysis time (seconds)", "Matrix load time", "Matrix reorder time",
                "Matrix factor time", "Matrix solve time", "Total elapsed time (seconds)"):
        m = re.search(re.escape(key) + r"\s*=\s*([0-9.eE+-]+)", out)
        if m:
            found[key] = float(m.group(1))
    return found


def pool(cache_dir, workers=2, samples=4, steps=20, naive_steps=3):
    """Independent samples of a Spice-backed SRNN over worker processes (one ngspice each).

    The naive cost is measured in the same run, on ``naive_steps`` steps before and as many
    after the in-process run (median), so a change of the machine's load during the run
    shows in the spread printed beside it.
    """
    from cosim.crossbar import Spice
    from cosim.crossbar.spice import array_deck
    from cosim.executors import map_in_processes
    from cosim.export import physical_arrays
    from cosim.network import SRNN
    from cosim.spice import ngspice
    from cosim.spice.netlist import sense_vectors

    rng = np.random.default_rng(3)
    x = (rng.random((samples, steps, 64)) < 0.3).astype(float)
    net = SRNN(64, 32, 10, neuron="alif", n_adaptive=16, seed=0,
               crossbar=Spice(read="nonlinear", cache=False))
    arrays = physical_arrays(net)
    print(f"4. SRNN(64, 32, 10) on Spice arrays, nonlinear read, no cache: {samples} samples x "
          f"{steps} steps, in this process and over {workers} worker processes; "
          f"load average {os.getloadavg()[0]:.2f}")

    def naive_step(k):
        """Every array of one step as a fresh deck in `ngspice -b` (the naive way):
        (wall seconds, CPU seconds of this process and its children)."""
        pick = np.random.default_rng(100 + k)
        t0, c0 = time.perf_counter(), _cpu(children=True)
        for name, matrix, delay, rows, cols, backend in arrays:
            n = rows.stop - rows.start
            spikes = x[0, k % steps, :n] if matrix == "in" else (pick.random(n) < 0.3)
            deck = array_deck(backend, v_word=backend.v_read * spikes.astype(float))
            ngspice.run_op(deck, sense_vectors(backend.states.shape[1]), engine="subprocess")
        return time.perf_counter() - t0, _cpu(children=True) - c0

    before = [naive_step(k) for k in range(naive_steps)]
    t0, c0 = time.perf_counter(), _cpu(children=True)
    for k in range(samples):
        net.run(x[k:k + 1])
    here = (time.perf_counter() - t0) / (samples * steps)
    here_cpu = (_cpu(children=True) - c0) / (samples * steps)
    after = [naive_step(naive_steps + k) for k in range(naive_steps)]
    naive, naive_cpu = (float(np.median([b[i] for b in before + after])) for i in (0, 1))
    print(f"   fresh decks of the {len(arrays)} arrays in `ngspice -b`: {naive * 1e3:8.1f} ms per "
          f"step (median of {2 * naive_steps}; before {np.median([b[0] for b in before]) * 1e3:.0f}"
          f", after {np.median([b[0] for b in after]) * 1e3:.0f} ms); CPU {naive_cpu * 1e3:.1f} ms")
    print(f"   in this process:        {here * 1e3:8.1f} ms per step ({naive / here:5.1f}x faster "
          f"than fresh decks); CPU {here_cpu * 1e3:.1f} ms ({naive_cpu / here_cpu:5.1f}x less "
          f"CPU: the ratio a busy machine disturbs least)")
    # a fresh copy of the arrays: no pattern seen above is in its in-memory cache
    fresh = net.with_crossbar(Spice(read="nonlinear", cache=False))
    t0 = time.perf_counter()
    map_in_processes(fresh.run, [x[k:k + 1] for k in range(samples)], workers=workers)
    there = (time.perf_counter() - t0) / (samples * steps)
    print(f"   {workers} worker processes:     {there * 1e3:8.1f} ms per step ({naive / there:5.1f}x "
          f"faster than fresh decks; {here / there:.2f}x the single process, start-up included)")
    # where a nonlinear read's time goes inside ngspice: its own accounting of one fresh
    # run of the largest array's deck (one operating point)
    name, matrix, delay, rows, cols, backend = max(arrays, key=lambda a: a[5].states.size)
    n = rows.stop - rows.start
    deck = array_deck(backend, v_word=backend.v_read * x[0, 0, :n])
    acct = ngspice_accounting(deck)
    iterations = acct.get("Total iterations", float("nan"))
    load = acct.get("Matrix load time", float("nan"))
    print(f"   ngspice's accounting of one fresh run of the {name!r} deck "
          f"({backend.states.shape[0]} x {backend.states.shape[1]} cells): elapsed "
          f"{acct.get('Total elapsed time (seconds)', float('nan')) * 1e3:.0f} ms, of which "
          f"subcircuit/parameter expansion "
          f"{acct.get('Subckt and Param expansion time', float('nan')) * 1e3:.0f} ms and the "
          f"operating point {acct.get('Total analysis time (seconds)', float('nan')) * 1e3:.0f}"
          f" ms: {iterations:.0f} Newton iterations, per iteration {load / iterations * 1e3:.1f}"
          f" ms loading the cells' B-sources "
          f"({load / iterations / backend.states.size * 1e6:.2f} us per cell), "
          f"{acct.get('Matrix factor time', float('nan')) / iterations * 1e3:.1f} ms factor, "
          f"{acct.get('Matrix solve time', float('nan')) / iterations * 1e3:.2f} ms solve; "
          f"reorder {acct.get('Matrix reorder time', float('nan')) * 1e3:.0f} ms once")
    print(f"   load average at the end {os.getloadavg()[0]:.2f}")


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
    parser.add_argument("--parts", default="1,2,3,4", help="parts to run (default 1,2,3,4)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes in part 4")
    args = parser.parse_args()
    info = find_ngspice()
    print(f"threads: OMP/OPENBLAS/MKL_NUM_THREADS={os.environ['OMP_NUM_THREADS']}; ngspice "
          f"{info.version}, KLU {info.klu}; {os.cpu_count()} CPUs")
    parts = {p.strip() for p in args.parts.split(",")}
    with tempfile.TemporaryDirectory() as tmp:
        if "1" in parts:
            agreement(tmp)
        if "2" in parts:
            per_step_cost(tmp)
        if "4" in parts:
            pool(tmp, workers=args.workers)
        if "3" in parts and not args.skip_raster:
            raster(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
