"""Test accuracy on sklearn digits: BPTT and BP, rate coding T = 50, 100 recurrent units.

Prints accuracy and training time per rule (one thread). Spikes of the training set are drawn
anew each epoch (cosim.data.EncodedImages); the test set is one fixed draw.

    OMP_NUM_THREADS=1 python benchmarks/bench_digits.py [--epochs 60] [--rules bptt bp]
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
    from cosim.data import EncodedImages, digits_images, rate_encode
    from cosim.network import SRNN

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--rules", nargs="+", default=["bptt", "bp"])
    parser.add_argument("--neuron", default="lif", choices=["lif", "alif", "mix"])
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    args = parser.parse_args()
    (img_train, y_train), (img_test, y_test) = digits_images()
    x_test = rate_encode(img_test, 50, np.random.default_rng(12345))
    print(f"threads: OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}; digits 1437/360, rate T=50, "
          f"100 units ({args.neuron}), epochs {args.epochs}, lr {args.lr}, Adam, cosine schedule, "
          f"{args.dtype}")
    for rule in args.rules:
        kind, n_ad = ("alif", 50) if args.neuron == "mix" else (args.neuron, None)
        net = SRNN(64, 100, 10, neuron=kind, n_adaptive=n_ad, seed=args.seed, dtype=args.dtype)
        model = Model(net, rule=rule, lr=args.lr, batch_size=32, seed=args.seed)
        t0 = time.perf_counter()
        model.train(EncodedImages(img_train, T=50, seed=args.seed), y_train, epochs=args.epochs,
                    progress=False)
        elapsed = time.perf_counter() - t0
        acc = model.evaluate(x_test, y_test)
        print(f"{rule.upper():5s} test accuracy {acc:.2%}  train time {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
