"""Sweep throughput: points per second on 1 and 2 local workers and a 2-worker Dask cluster.

The same grid (wire resistance r × seed, with programming variability so that every seed
is a different chip; compact backend, linear read) is evaluated on a small trained SRNN
with each executor; the results must be identical, and the throughput is printed.

* "1 worker": in this process.
* "2 workers": ``concurrent.futures.ProcessPoolExecutor`` (spawn); the time includes
  starting the pool, as a user sees it.
* "Dask by address" / "Dask Client": ``dask.distributed.LocalCluster(n_workers=2,
  processes=True)`` on the loopback interface, given to the sweep by its address (the sweep
  makes its own client, as ``cosim sweep --scheduler`` does) or as a ``Client``; cluster
  start-up is printed separately (a cluster is long-lived), shipping the model and data is
  included.

    python benchmarks/bench_sweep.py [--points-r 4] [--seeds 4] [--samples 400]
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402


def task(n, steps, n_in, n_classes, seed):
    """Each class makes its own group of input channels fire often."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    x = (rng.random((n, steps, n_in)) < 0.03).astype(float)
    width = n_in // n_classes
    for c in range(n_classes):
        rows = y == c
        x[rows, :, c * width:(c + 1) * width] = rng.random((rows.sum(), steps, width)) < 0.4
    return x, y


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points-r", type=int, default=4, help="wire resistances (default 4)")
    parser.add_argument("--seeds", type=int, default=4, help="seeds per resistance (default 4)")
    parser.add_argument("--samples", type=int, default=400, help="test samples (default 400)")
    parser.add_argument("--steps", type=int, default=40, help="timesteps (default 40)")
    parser.add_argument("--hidden", type=int, default=128, help="recurrent units (default 128)")
    args = parser.parse_args()

    from cosim import SRNN, Model
    from cosim.sweep import run_sweep

    n_in, n_classes = 16, 4
    x, y = task(200, args.steps, n_in, n_classes, seed=0)
    model = Model(SRNN(n_in, args.hidden, n_classes, neuron="lif", seed=0), lr=0.01,
                  batch_size=32)
    t0 = time.perf_counter()
    model.train(x, y, epochs=3, progress=False)
    x_test, y_test = task(args.samples, args.steps, n_in, n_classes, seed=1)
    print(f"model: SRNN({n_in}, {args.hidden}, {n_classes}) LIF, trained 3 epochs in "
          f"{time.perf_counter() - t0:.1f} s; ideal test accuracy "
          f"{model.evaluate(x_test, y_test):.3f} on {args.samples} samples × {args.steps} steps")

    grid = {"r": [float(v) for v in np.round(np.logspace(-1, 2.5, args.points_r), 3)],
            "program_sigma": [0.1], "seed": list(range(args.seeds))}
    n_points = args.points_r * args.seeds
    print(f"grid: r = {grid['r']} Ω × seed 0..{args.seeds - 1}, program_sigma 0.1, compact "
          f"linear read: {n_points} points; {os.cpu_count()} CPUs")

    def strip(rows):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    with tempfile.TemporaryDirectory() as tmp:
        path = model.save(Path(tmp) / "bench.npz")
        timings = {}

        t0 = time.perf_counter()
        serial = run_sweep(path, grid, x_test, y_test, workers=1)
        timings["1 worker (in-process)"] = time.perf_counter() - t0
        per_point = {"1 worker (in-process)": np.mean([r["seconds"] for r in serial])}

        t0 = time.perf_counter()
        pooled = run_sweep(path, grid, x_test, y_test, workers=2)
        timings["2 workers (process pool, incl. start)"] = time.perf_counter() - t0
        per_point["2 workers (process pool, incl. start)"] = np.mean([r["seconds"] for r in pooled])
        assert strip(pooled) == strip(serial), "process pool results differ"

        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            print("dask.distributed not installed: LocalCluster skipped (pip install 'cosim[dask]')")
        else:
            t0 = time.perf_counter()
            with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                              host="127.0.0.1", dashboard_address=None) as cluster:
                start = time.perf_counter() - t0
                # by address, as `cosim sweep --scheduler tcp://...` does (its own client)
                t0 = time.perf_counter()
                by_address = run_sweep(path, grid, x_test, y_test,
                                       scheduler=cluster.scheduler_address)
                timings["Dask by address (2 workers)"] = time.perf_counter() - t0
                with Client(cluster) as client:
                    t0 = time.perf_counter()
                    on_dask = run_sweep(path, grid, x_test, y_test, scheduler=client)
                    timings["Dask Client (2 workers)"] = time.perf_counter() - t0
            per_point["Dask by address (2 workers)"] = np.mean([r["seconds"] for r in by_address])
            per_point["Dask Client (2 workers)"] = np.mean([r["seconds"] for r in on_dask])
            print(f"LocalCluster start-up: {start:.2f} s (not counted)")
            assert strip(on_dask) == strip(serial), "Dask results differ"
            assert strip(by_address) == strip(serial), "Dask (by address) results differ"

    print(f"threads: OMP/OPENBLAS/MKL_NUM_THREADS = {os.environ['OMP_NUM_THREADS']}; "
          f"cores: {os.cpu_count()}; load average: {os.getloadavg()[0]:.2f}")
    print(f"{'executor':40s} {'wall (s)':>9s} {'points/s':>9s} {'speed-up':>9s} "
          f"{'ms/point':>9s}")
    base = timings["1 worker (in-process)"]
    for name, seconds in timings.items():
        print(f"{name:40s} {seconds:9.2f} {n_points / seconds:9.2f} {base / seconds:9.2f} "
              f"{per_point[name] * 1e3:9.0f}")
    print("(ms/point: mean evaluation time of one point inside its worker)")
    print("results identical on every executor: yes")


if __name__ == "__main__":
    main()
