"""Hardware-aware training on Compact arrays vs ideal training, digits, 100 units.

Trains the same SRNN (seed, data, schedule) twice with BPTT: once on ideal crossbars and once
on Compact memtransistor arrays with wire resistance (forward pass through the arrays with IR
drop, straight-through backward pass through the effective weights, arrays reprogrammed after
every update). Prints both test accuracies (each evaluated on the backend it was trained on,
plus the ideal model deployed on the Compact arrays) and the difference. Goal: within 1 point.

    OMP_NUM_THREADS=1 python benchmarks/bench_hardware_aware.py [--epochs 150] [--r 1.0]
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402


def main():
    from cosim import Model
    from cosim.crossbar import Compact
    from cosim.data import EncodedImages, digits_images, rate_encode
    from cosim.network import SRNN

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--r", type=float, default=1.0, help="wire segment resistance (ohm)")
    parser.add_argument("--read", default="linear", choices=["linear", "nonlinear"])
    args = parser.parse_args()
    (img_train, y_train), (img_test, y_test) = digits_images()
    x_test = rate_encode(img_test, 50, np.random.default_rng(12345))
    print(f"threads: OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}; digits, rate T=50, 100 LIF "
          f"units, BPTT, {args.epochs} epochs, Compact r_word = r_bit = {args.r} ohm, {args.read} read")
    results = {}
    for label, crossbar in [("ideal", "ideal"),
                            ("compact", Compact(r_word=args.r, r_bit=args.r, read=args.read))]:
        net = SRNN(64, 100, 10, neuron="lif", seed=0, crossbar=crossbar)
        model = Model(net, rule="bptt", lr=3e-3, batch_size=32, seed=0)
        t0 = time.perf_counter()
        model.train(EncodedImages(img_train, T=50, seed=0), y_train, epochs=args.epochs,
                    progress=False)
        elapsed = time.perf_counter() - t0
        results[label] = model.evaluate(x_test, y_test)
        print(f"trained on {label:8s}: test accuracy on {label} arrays {results[label]:.2%} "
              f"({elapsed:.0f} s, {elapsed / args.epochs:.2f} s/epoch)")
        if label == "ideal":
            deployed = net.with_crossbar(Compact(r_word=args.r, r_bit=args.r, read=args.read))
            acc = float(np.mean(deployed.run(x_test).logits.argmax(1) == y_test))
            print(f"ideal-trained model deployed on the Compact arrays: {acc:.2%}")
    gap = 100 * (results["ideal"] - results["compact"])
    print(f"hardware-aware vs ideal: {gap:+.2f} points (goal: within 1 point)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
