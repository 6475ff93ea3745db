"""Unsupervised STDP (Diehl & Cook style) on sklearn digits: test accuracy and training time.

Images (8×8, 64 inputs) are rate coded with p = max_rate·pixel per step for T steps; the
training set gets a fresh spike draw every epoch (cosim.data.EncodedImages-like), labels are
assigned on the training set, accuracy is measured on the 360 test images (one fixed draw).
One thread.

    python benchmarks/bench_stdp.py [--epochs 2] [--n-exc 100] [--T 100] [--max-rate 0.5]
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402


class _Resampled:
    """A fresh Bernoulli draw of the training images for each epoch (seeded)."""

    def __init__(self, images, T, max_rate, seed):
        self.images, self.T, self.max_rate, self.seed = images, T, max_rate, seed
        self.shape = (images.shape[0], T, images.shape[1])

    def sample(self, epoch):
        from cosim.data import rate_encode
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, int(epoch)]))
        return rate_encode(self.images, self.T, rng, self.max_rate)


def main():
    from cosim.data import digits_images, rate_encode
    from cosim.learning.stdp import DiehlCook

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--n-exc", type=int, default=100)
    parser.add_argument("--T", type=int, default=100)
    parser.add_argument("--max-rate", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--crossbar", default="ideal")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args()

    (img_train, y_train), (img_test, y_test) = digits_images()
    train = _Resampled(img_train, args.T, args.max_rate, args.seed)
    rng = np.random.default_rng(np.random.SeedSequence([args.seed, 10_000]))
    x_test = rate_encode(img_test, args.T, rng, args.max_rate)
    x_assign = train.sample(0)

    model = DiehlCook(n_exc=args.n_exc, crossbar=args.crossbar, seed=args.seed)
    t0 = time.perf_counter()
    model.fit(train, epochs=args.epochs, progress=args.progress)
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.assign_labels(x_assign, y_train)
    acc_train = float(np.mean(model.predict(x_assign) == y_train))
    acc_test = model.evaluate(x_test, y_test)
    t_eval = time.perf_counter() - t0

    settings = {k: (v if not hasattr(v, "to_dict") else v.to_dict())
                for k, v in model.get_params().items()}
    settings["stdp"] = (model.stdp or DiehlCook.DEFAULT_STDP).to_dict()
    print("settings:", json.dumps({"epochs": args.epochs, "T": args.T,
                                   "max_rate": args.max_rate, **settings}))
    print(f"train samples {len(y_train)}, test samples {len(y_test)}, "
          f"unassigned units {int(np.sum(model.labels_ < 0))}/{model.n_exc}")
    print(f"train time {t_train:.1f} s ({t_train / args.epochs:.1f} s/epoch), "
          f"label assignment + evaluation {t_eval:.1f} s")
    print(f"train accuracy {acc_train:.4f}")
    print(f"test accuracy  {acc_test:.4f}")


if __name__ == "__main__":
    main()
