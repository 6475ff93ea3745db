"""Cost of energy accounting on a linear-read inference (issue 14; goal: < 20 % overhead).

A demo-like SRNN (64 inputs, 100 ALIF/LIF units, 10 outputs, compact arrays with 1 ohm
segments, linear read) runs the 360-sample digits-sized batch of T = 50 rate-coded steps:

* inference: program the arrays (transfer matrices) + ``net.run(x)``;
* with energy: the same + ``net.run(x, energy=True)`` (power quadratic forms built once per
  programmed array, then one quadratic form per array over all reads).

Both timed from freshly programmed arrays (best of 3).  Prints the ratio and the energy
figures (J per inference, fJ per SOP, TOPS/W).

    python benchmarks/bench_energy.py
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import time  # noqa: E402

import numpy as np  # noqa: E402


def build(r_driver=0.0, r_sense=0.0):
    from cosim.crossbar import Compact
    from cosim.network import SRNN

    xb = Compact(r_word=1.0, r_bit=1.0, r_driver=r_driver, r_sense=r_sense)
    return SRNN(64, 100, 10, neuron="alif", n_adaptive=50, seed=0, crossbar=xb)


def timed(energy, x, **kw):
    best = np.inf
    for _ in range(3):
        net = build(**kw)
        t0 = time.perf_counter()
        record = net.run(x, energy=energy)
        best = min(best, time.perf_counter() - t0)
    return best, record


def main():
    print(f"threads: OMP/OPENBLAS/MKL_NUM_THREADS = {os.environ['OMP_NUM_THREADS']}")
    rng = np.random.default_rng(0)
    x = (rng.random((360, 50, 64)) < 0.15).astype(float)
    for kw in ({}, {"r_driver": 100.0, "r_sense": 100.0}):
        plain, _ = timed(False, x, **kw)
        with_energy, record = timed(True, x, **kw)
        report = record.extras["energy"]
        print(f"{kw or 'ideal periphery'}: inference {plain:.3f} s, with energy "
              f"{with_energy:.3f} s: overhead {with_energy / plain - 1:+.1%} (goal < 20 %)")
        s = report.summary()
        print(f"  energy per inference {s['energy_per_inference_J']:.3e} J, "
              f"{s['joules_per_sop'] * 1e15:.3f} fJ/SOP, {s['tops_per_watt']:.1f} TOPS/W, "
              f"{s['sop_per_inference']:.0f} SOP per inference")


if __name__ == "__main__":
    main()
