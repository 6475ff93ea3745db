"""Cost of energy accounting on a linear-read inference (issue 14; goal: < 20 % overhead).

The demo's network (64 inputs, 100 ALIF/LIF units half adaptive, 10 outputs) on compact
arrays (1 ohm segments, linear read; ideal periphery and r_driver = r_sense = 100 ohm) runs
the 360-sample digits test set, rate coded over T = 50 steps as ``cosim demo`` codes it:

* inference: program fresh arrays + ``net.run(x)``;
* with energy: the same + ``net.run(x, energy=True)`` (the source power of every read of
  every array, evaluated after the run: ``cosim.energy.inference_energy``).

The accounting costs a fixed number of flops per read whatever the spikes (dense triangular
products), but the trained demo model spikes 20x more than an untrained one, so both are
measured: ``trained`` is the demo network trained with the demo's settings (BPTT, lr 3e-3,
batch 32, seed 0) for ``--epochs`` epochs on the ideal crossbar (5 epochs reach the spike
density of the 60-epoch demo model, ~30 %), or the model file given with ``--model``
(e.g. ``out/demo/model.npz``); ``untrained`` is its initialisation.

Timing: CPU time of this process (one BLAS thread, so it is the work done; wall time on a
shared machine also counts the other processes).  The headline: in each of ``--repeats``
rounds (after one warm-up), fresh arrays run x (the inference) and then
``inference_energy`` evaluates that run's energy, exactly what ``run(x, energy=True)`` adds
after the run, source forms of the fresh arrays included; overhead = median accounting /
median inference.  Also printed: the end-to-end check, alternating pairs of ``run(x)`` and
``run(x, energy=True)`` on fresh arrays, ratio of the medians; on this shared VM single
inferences scatter by +-20 %, several times the accounting, so these pairs scatter too.
And the machine load (1-minute load average) before and after.

    python benchmarks/bench_energy.py [--model out/demo/model.npz] [--epochs 5] [--repeats 7]
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

GOAL = 0.20


def networks(model_path, epochs):
    """{name: ideal SRNN}: the trained demo network and its initialisation."""
    from cosim.data import EncodedImages, digits_images
    from cosim.model import Model
    from cosim.network import SRNN

    def demo_net():
        return SRNN(64, 100, 10, neuron="alif", n_adaptive=50, seed=0)

    out = {}
    if model_path:
        out[f"trained ({model_path})"] = Model.load(model_path).network
    else:
        (img_train, y_train), _ = digits_images()
        net = demo_net()
        t0 = time.perf_counter()
        Model(net, rule="bptt", lr=3e-3, batch_size=32, seed=0).train(
            EncodedImages(img_train, T=50, seed=0), y_train, epochs=epochs)
        print(f"trained the demo network for {epochs} epochs in {time.perf_counter() - t0:.0f} s")
        out[f"trained ({epochs} epochs)"] = net
    out["untrained"] = demo_net()
    return out


def timed(net, crossbar, x, energy):
    """(CPU s, wall s, record) of programming fresh arrays and running x."""
    fresh = net.with_crossbar(crossbar())
    c0, w0 = time.process_time(), time.perf_counter()
    record = fresh.run(x, energy=energy)
    return time.process_time() - c0, time.perf_counter() - w0, record


def split(net, crossbar, x, repeats):
    """(inference CPU s, accounting CPU s) per round, and the last report: fresh arrays run x,
    then inference_energy of that run (what run(x, energy=True) adds)."""
    from cosim.energy import inference_energy

    out = []
    for _ in range(repeats + 1):                       # the first round warms up
        fresh = net.with_crossbar(crossbar())
        c0 = time.process_time()
        record = fresh.run(x)
        c1 = time.process_time()
        report = inference_energy(fresh, x, record)
        out.append((c1 - c0, time.process_time() - c1))
    return np.array(out[1:]), report, float(record.z.mean())


def pairs(net, crossbar, x, repeats):
    """CPU s of run(x) and run(x, energy=True), alternating, after one warm-up pair."""
    timed(net, crossbar, x, False)
    timed(net, crossbar, x, True)
    plain, energy = [], []
    for k in range(repeats):
        for with_energy in ((False, True) if k % 2 == 0 else (True, False)):
            (energy if with_energy else plain).append(timed(net, crossbar, x, with_energy)[0])
    return np.array(plain), np.array(energy)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a saved model (default: train one)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    from cosim.crossbar import Compact
    from cosim.data import digits_images, rate_encode

    print(f"threads: OMP/OPENBLAS/MKL_NUM_THREADS = {os.environ['OMP_NUM_THREADS']}")
    load_before = os.getloadavg()
    _, (img_test, _) = digits_images()
    x = rate_encode(img_test, 50, np.random.default_rng(1))          # as cosim demo (seed 0)
    print(f"data: digits test set {x.shape} (samples, steps, inputs), input spike density "
          f"{np.count_nonzero(x) / x.size:.1%}")
    crossbars = {"ideal periphery": lambda: Compact(r_word=1.0, r_bit=1.0),
                 "r_driver = r_sense = 100 ohm": lambda: Compact(r_word=1.0, r_bit=1.0,
                                                                 r_driver=100.0,
                                                                 r_sense=100.0)}
    worst = 0.0
    for net_name, net in networks(args.model, args.epochs).items():
        for xb_name, crossbar in crossbars.items():
            rounds, report, density = split(net, crossbar, x, args.repeats)
            ratio = np.median(rounds[:, 1]) / np.median(rounds[:, 0])
            worst = max(worst, ratio)
            plain, energy = pairs(net, crossbar, x, args.repeats)
            print(f"{net_name}, {xb_name} (recurrent spike density {density:.1%}):")
            print(f"  CPU ms, inference: {' '.join(f'{v * 1e3:.1f}' for v in rounds[:, 0])}")
            print(f"  CPU ms, accounting: {' '.join(f'{v * 1e3:.1f}' for v in rounds[:, 1])}")
            print(f"  overhead: {ratio:+.1%} (median accounting {np.median(rounds[:, 1]) * 1e3:.1f}"
                  f" ms / median inference {np.median(rounds[:, 0]) * 1e3:.1f} ms; per round "
                  f"{np.min(rounds[:, 1] / rounds[:, 0]):+.1%} .. "
                  f"{np.max(rounds[:, 1] / rounds[:, 0]):+.1%}; goal < {GOAL:.0%})")
            print(f"  end to end, run(x) vs run(x, energy=True), medians of {args.repeats} "
                  f"alternating pairs: {np.median(plain) * 1e3:.1f} vs "
                  f"{np.median(energy) * 1e3:.1f} ms CPU, "
                  f"{np.median(energy) / np.median(plain) - 1:+.1%}")
            s = report.summary()
            print(f"  energy per inference {s['energy_per_inference_J']:.3e} J, "
                  f"{s['joules_per_sop'] * 1e15:.3f} fJ/SOP, {s['tops_per_watt']:.0f} TOPS/W, "
                  f"{s['sop_per_inference']:.0f} SOP per inference")
    load_after = os.getloadavg()
    print(f"load average (1, 5, 15 min): before {load_before[0]:.2f} {load_before[1]:.2f} "
          f"{load_before[2]:.2f}, after {load_after[0]:.2f} {load_after[1]:.2f} "
          f"{load_after[2]:.2f}")
    print(f"largest overhead (CPU, median accounting / median inference): {worst:+.1%} "
          f"({'meets' if worst < GOAL else 'misses'} the goal < {GOAL:.0%})")


if __name__ == "__main__":
    main()
