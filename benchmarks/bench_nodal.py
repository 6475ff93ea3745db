"""Benchmark of cosim.crossbar.nodal against badcrossbar (the public reference for crossbar IR drop).

Fresh linear solve (build + factorise + solve, one input vector), square n x n arrays with
1 ohm word and bit segments, G uniform in [1e-6, 1e-4] S, V uniform in [0, 0.2] V (seed 0).
Every timed solve runs in its own child process, so that the peak resident set size
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``, which covers C/Fortran allocations too) is
that of one interpreter doing only that solve; the RSS after imports (base) and the
increment of the solve itself (peak - base) are printed as well.

badcrossbar depends on pycairo (for its plots only), which does not build without the cairo
headers; install it without dependencies plus the two it needs to compute:
``.venv/bin/pip install --no-deps badcrossbar && .venv/bin/pip install pathvalidate sortedcontainers``.
The per-step cost ``V @ M`` (M = LinearArray.transfer_matrix()) is compared with a dense
``V @ G`` of the same size.

The transfer-matrix build (fresh LinearArray(G, r, r).transfer_matrix(), G in [1e-7, 1e-5] S)
is timed for the hardware-aware-training shapes, block method (default) against the
sparse-factorisation path it replaced (forced with nodal.linear.BLOCK_MAX = 0).

    .venv/bin/python benchmarks/bench_nodal.py [--sizes 64 128 256 512] [--skip-badcrossbar]
    .venv/bin/python benchmarks/bench_nodal.py --transfer-only [--large]

``--large`` adds the 512 x 512-weight array (512 x 1024 cells, 1 ohm; issue 12 item 5), whose
marching blocks (2.1 GB) exceed the stored-block budget: the streamed march (the default)
against the sparse factorisation (forced), each in its own child process (CPU seconds and
peak RSS), and their difference.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import timeit  # noqa: E402

import numpy as np  # noqa: E402

R_SEG = 1.0


def make_case(n, seed=0):
    rng = np.random.default_rng(seed)
    G = rng.uniform(1e-6, 1e-4, size=(n, n))
    V = rng.uniform(0.0, 0.2, size=n)
    return G, V


def _rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # Linux: KiB


def child(kind, n, out, repeat):
    """Run in a fresh interpreter: time the solve, save currents, print JSON."""
    G, V = make_case(n)
    if kind == "ours":
        from cosim.crossbar import nodal

        def run():
            sol = nodal.solve(G, V, R_SEG, R_SEG)       # fresh: lines factorised + CG
            return sol.currents, sol
    else:
        import logging
        import warnings
        warnings.simplefilter("ignore")
        logging.disable(logging.CRITICAL)
        import badcrossbar

        def run():
            sol = badcrossbar.compute(V[:, None], 1.0 / G, r_i_word_line=R_SEG,
                                      r_i_bit_line=R_SEG)
            return np.asarray(sol.currents.output, dtype=float).reshape(-1), None
    base = _rss_mb()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        currents, extra = run()
        times.append(time.perf_counter() - t0)
    np.save(out, currents)
    info = {"time": min(times), "peak_mb": _rss_mb(), "base_mb": base}
    if extra is not None:
        info.update(method=extra.method, iterations=extra.iterations, residual=extra.residual)
    print(json.dumps(info))


def run_child(kind, n, tmp, repeat):
    out = pathlib.Path(tmp) / f"{kind}_{n}.npy"
    cmd = [sys.executable, __file__, "--child", kind, "--n", str(n), "--out", str(out),
           "--repeat", str(repeat)]
    env = dict(os.environ)
    root = str(pathlib.Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"{kind} n={n} failed:\n{res.stderr}")
    info = json.loads(res.stdout.strip().splitlines()[-1])
    info["currents"] = np.load(out)
    return info


def per_step(n, number=2000):
    from cosim.crossbar import nodal
    G, V = make_case(n)
    arr = nodal.LinearArray(G, R_SEG, R_SEG)
    t0 = time.perf_counter()
    M = arr.transfer_matrix()
    t_m = time.perf_counter() - t0
    ref = nodal.solve(G, V, R_SEG, R_SEG, method="direct").currents
    err = np.abs(V @ M - ref).max() / np.abs(ref).max()
    Gd = np.ascontiguousarray(G)
    t_vm = min(timeit.repeat(lambda: V @ M, number=number, repeat=7)) / number
    t_vg = min(timeit.repeat(lambda: V @ Gd, number=number, repeat=7)) / number
    return t_m, t_vm, t_vg, err


def transfer_timing(shapes=((64, 200), (100, 200), (100, 20), (128, 256), (256, 512)),
                    rs=(1.0, 10.0), repeat=3):
    """Fresh transfer_matrix() build: factorisation path (before) vs block method (after)."""
    from cosim.crossbar import nodal
    from cosim.crossbar.nodal import linear
    print("\ntransfer matrix build (fresh LinearArray(G, r, r).transfer_matrix(), "
          f"G in [1e-7, 1e-5] S, best of {repeat})")
    print(f"{'shape':>9} {'r':>5} | {'before ms':>9} {'after ms':>9} {'speedup':>7} | "
          f"{'rel diff':>8}")
    for R, C in shapes:
        G = np.random.default_rng(0).uniform(1e-7, 1e-5, size=(R, C))
        for r in rs:
            res = {}
            for name, block_max in (("before", 0), ("after", linear.BLOCK_MAX)):
                saved = linear.BLOCK_MAX
                linear.BLOCK_MAX = block_max
                try:
                    times = []
                    for _ in range(repeat):
                        t0 = time.perf_counter()
                        M = nodal.LinearArray(G, r, r).transfer_matrix()
                        times.append(time.perf_counter() - t0)
                finally:
                    linear.BLOCK_MAX = saved
                res[name] = (min(times), M)
            (tb, Mb), (ta, Ma) = res["before"], res["after"]
            diff = np.abs(Ma - Mb).max() / np.abs(Mb).max()
            print(f"{R:>4}x{C:<4} {r:5g} | {tb * 1e3:9.1f} {ta * 1e3:9.1f} {tb / ta:6.1f}x | "
                  f"{diff:8.1e}", flush=True)


_LARGE_CHILD = """
import os, resource, sys, time
for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[v] = "1"
import numpy as np
from cosim.crossbar import nodal
from cosim.crossbar.nodal import linear
R, C, r, path, out = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
if path == "sparse":
    linear.BLOCK_MAX = 0
G = np.random.default_rng(0).uniform(1e-7, 1e-5, size=(R, C))
t0 = time.process_time()
M = nodal.LinearArray(G, r, r).transfer_matrix()
cpu = time.process_time() - t0
np.save(out, M)
print(cpu, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def large_transfer(R=512, C=1024, r=1.0):
    """Transfer-matrix build of an array whose blocks do not fit: streamed vs sparse."""
    print(f"\nlarge transfer matrix: {R}x{C} cells, {r:g} ohm, G in [1e-7, 1e-5] S (each path in "
          f"its own process; blocks would take {8 * R * R * C / 2 ** 30:.1f} GiB)")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for path in ("streamed", "sparse"):
            out = os.path.join(tmp, f"{path}.npy")
            done = subprocess.run([sys.executable, "-c", _LARGE_CHILD, str(R), str(C), str(r),
                                   path, out], capture_output=True, text=True, check=True)
            cpu, peak = (float(x) for x in done.stdout.split())
            results[path] = (cpu, peak, np.load(out))
            print(f"   {path:9s} {cpu:7.1f} s CPU, peak RSS {peak:7.0f} MB", flush=True)
    (ts, ps, Ms), (tf, pf, Mf) = results["streamed"], results["sparse"]
    print(f"   streamed / sparse: {tf / ts:.1f}x faster, {pf / ps:.1f}x less memory; max relative "
          f"difference {np.abs(Ms - Mf).max() / np.abs(Mf).max():.1e} (the sparse "
          f"factorisation loses digits where G << 1/r)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    ap.add_argument("--skip-badcrossbar", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--transfer-only", action="store_true",
                    help="only the transfer-matrix build timing")
    ap.add_argument("--large", action="store_true",
                    help="also the 512x1024-cell transfer matrix: streamed vs sparse (~75 s)")
    ap.add_argument("--child", choices=["ours", "badcrossbar"], help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.n, args.out, args.repeat)
        return
    if args.transfer_only:
        transfer_timing(repeat=args.repeat)
        if args.large:
            large_transfer()
        return

    print("threads: " + ", ".join(f"{v}={os.environ[v]}" for v in
                                  ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")))
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, "
          f"{os.cpu_count()} cpus; {R_SEG:g} ohm segments, G in [1e-6, 1e-4] S, V in [0, 0.2] V")
    print("\nfresh linear solve (build + factorise + solve, one input vector); time = best of "
          f"{args.repeat}, peak = max RSS of a child process doing only that solve")
    head = (f"{'n':>5} | {'ours s':>8} {'peak MB':>8} {'(base)':>7} {'it':>3} {'resid':>8} | "
            f"{'badx s':>7} {'peak MB':>8} {'(base)':>7} | {'speedup':>7} {'mem x':>6} "
            f"{'incr x':>7} | {'max rel diff':>12}")
    print(head)
    print("-" * len(head))
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            ours = run_child("ours", n, tmp, args.repeat)
            line = (f"{n:>5} | {ours['time']:8.4f} {ours['peak_mb']:8.0f} {ours['base_mb']:7.0f} "
                    f"{ours['iterations']:>3} {ours['residual']:8.1e} | ")
            if args.skip_badcrossbar:
                print(line + "(badcrossbar skipped)")
                continue
            bx = run_child("badcrossbar", n, tmp, args.repeat if n < 512 else 1)
            diff = np.abs(ours["currents"] - bx["currents"]).max() / np.abs(bx["currents"]).max()
            print(line + f"{bx['time']:7.3f} {bx['peak_mb']:8.0f} {bx['base_mb']:7.0f} | "
                  f"{bx['time'] / ours['time']:6.1f}x {bx['peak_mb'] / ours['peak_mb']:5.1f}x "
                  f"{(bx['peak_mb'] - bx['base_mb']) / max(ours['peak_mb'] - ours['base_mb'], 1):6.1f}x"
                  f" | {diff:12.2e}", flush=True)

    print("\nper timestep with a programmed array: V @ M (M = transfer_matrix()) vs dense V @ G")
    print(f"{'n':>5} | {'M build s':>9} | {'V@M us':>8} {'V@G us':>8} {'ratio':>6} | "
          f"{'rel err V@M':>11}")
    for n in (128, 256):
        t_m, t_vm, t_vg, err = per_step(n)
        print(f"{n:>5} | {t_m:9.3f} | {t_vm * 1e6:8.2f} {t_vg * 1e6:8.2f} {t_vm / t_vg:6.2f} | "
              f"{err:11.1e}", flush=True)

    transfer_timing(repeat=args.repeat)
    if args.large:
        large_transfer()


if __name__ == "__main__":
    main()
