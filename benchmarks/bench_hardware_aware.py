"""Hardware-aware training through the IR drop vs ideal training, digits, 100 LIF units.

For each wire resistance r (r_word = r_bit = r) prints: the accuracy of the network trained
on ideal arrays and deployed on Compact arrays at r, the accuracy of hardware-aware training
on those arrays (forward pass through the arrays with IR drop, exact gradients through the
wires and the mapping, arrays reprogrammed after every update), both on the full test set
(360), against the reference of the ideal-trained network on ideal arrays; and the time per
training epoch of each (full training set, 1437 images). Targets (issue 13): hardware-aware
within 1 point of the reference at 100 ohm, 3 points at 300 ohm, 0.5 point at 1 ohm; time
per epoch of linear-read hardware-aware training <= 3x ideal training.

Settings are the README's (bench_digits.py): rate coding T=50, fresh spikes every epoch,
Adam, batch 32, lr 3e-3, cosine schedule, seed 0. ``--init ideal`` (default) starts the
hardware-aware run from the ideal-trained weights (fine-tuning for ``--hw-epochs`` at
``--hw-lr``); ``--init scratch`` trains from the same initial weights as the ideal run.

    OMP_NUM_THREADS=1 python benchmarks/bench_hardware_aware.py [--epochs 150] [--hw-epochs 10]
        [--r 1 10 100 300] [--init ideal|scratch] [--read linear|nonlinear] [--quick K]

``--quick K`` times K epochs only (no accuracies): for each r, K epochs of ideal training and
then K epochs of hardware-aware training from the same weights, back to back, so that each
ratio compares two runs under the same machine load.
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

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=150, help="ideal training epochs")
    parser.add_argument("--hw-epochs", type=int, default=10, help="hardware-aware epochs")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--hw-lr", type=float, default=1e-3,
                        help="hardware-aware learning rate with --init ideal")
    parser.add_argument("--r", type=float, nargs="+", default=[100.0, 300.0, 10.0, 1.0],
                        help="wire segment resistances (ohm)")
    parser.add_argument("--init", default="ideal", choices=["ideal", "scratch"])
    parser.add_argument("--read", default="linear", choices=["linear", "nonlinear"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", type=int, default=0, metavar="K",
                        help="time K epochs of each (ideal, then hardware-aware per r), no "
                             "accuracies")
    args = parser.parse_args()
    (img_train, y_train), (img_test, y_test) = digits_images()
    x_test = rate_encode(img_test, 50, np.random.default_rng(12345))
    print(f"threads: OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}; digits "
          f"{len(y_train)}/{len(y_test)}, rate T=50, 100 LIF units, BPTT, Adam, batch 32, cosine; "
          f"ideal: {args.epochs} epochs at lr {args.lr}; hardware-aware ({args.read} read, "
          f"init {args.init}): {args.hw_epochs} epochs at lr "
          f"{args.hw_lr if args.init == 'ideal' else args.lr}", flush=True)

    def train(net, lr, epochs, seed):
        model = Model(net, rule="bptt", lr=lr, batch_size=32, seed=seed)
        t0 = time.perf_counter()
        model.train(EncodedImages(img_train, T=50, seed=seed), y_train, epochs=epochs,
                    progress=False)
        return model, (time.perf_counter() - t0) / epochs

    def accuracy(net):
        return float(np.mean(Model(net).predict(x_test) == y_test))

    if args.quick:
        return quick(args, train, img_train.shape, SRNN, Compact)
    ideal = SRNN(64, 100, 10, neuron="lif", seed=args.seed)
    initial = ideal.weights
    _, ideal_epoch = train(ideal, args.lr, args.epochs, args.seed)
    reference = accuracy(ideal)
    print(f"ideal-trained on ideal arrays: {reference:.2%} ({ideal_epoch:.2f} s/epoch)",
          flush=True)

    rows = []
    for r in args.r:
        def array():
            return Compact(r_word=r, r_bit=r, read=args.read)
        deployed = accuracy(ideal.with_crossbar(array()))
        if args.init == "ideal":
            net, lr, seed = ideal.with_crossbar(array()), args.hw_lr, args.seed + 1
        else:
            net = SRNN(64, 100, 10, neuron="lif", seed=args.seed, crossbar=array())
            net.set_weights(initial)
            lr, seed = args.lr, args.seed
        _, hw_epoch = train(net, lr, args.hw_epochs, seed)
        aware = accuracy(net)
        rows.append((r, deployed, aware, hw_epoch))
        print(f"r = {r:g} ohm: ideal-trained deployed {deployed:.2%}, hardware-aware {aware:.2%} "
              f"({hw_epoch:.2f} s/epoch, {hw_epoch / ideal_epoch:.1f}x ideal)", flush=True)

    print(f"\nreference (ideal-trained, ideal arrays): {reference:.2%}; ideal training "
          f"{ideal_epoch:.2f} s/epoch")
    print("| r (ohm) | ideal-trained, deployed | hardware-aware | hw-aware - reference | "
          "s/epoch ideal | s/epoch hw-aware | ratio |")
    print("|---|---|---|---|---|---|---|")
    for r, deployed, aware, hw_epoch in rows:
        print(f"| {r:g} | {deployed:.2%} | {aware:.2%} | {100 * (aware - reference):+.2f} pt | "
              f"{ideal_epoch:.2f} | {hw_epoch:.2f} | {hw_epoch / ideal_epoch:.1f}x |")
    return 0


def quick(args, train, shape, SRNN, Compact):
    """Seconds per epoch, ideal and hardware-aware, measured back to back for every r."""
    print(f"quick timing: {args.quick} epoch(s) each, {shape[0]} training images", flush=True)
    rows = []
    for r in args.r:
        ideal = SRNN(64, 100, 10, neuron="lif", seed=args.seed)
        _, ideal_epoch = train(ideal, args.lr, args.quick, args.seed)
        net = ideal.with_crossbar(Compact(r_word=r, r_bit=r, read=args.read))
        _, hw_epoch = train(net, args.hw_lr, args.quick, args.seed + 1)
        rows.append((r, ideal_epoch, hw_epoch))
        print(f"r = {r:g} ohm: ideal {ideal_epoch:.2f} s/epoch, hardware-aware {hw_epoch:.2f} "
              f"s/epoch ({hw_epoch / ideal_epoch:.1f}x)", flush=True)
    print("| r (ohm) | s/epoch ideal | s/epoch hw-aware | ratio |")
    print("|---|---|---|---|")
    for r, ideal_epoch, hw_epoch in rows:
        print(f"| {r:g} | {ideal_epoch:.2f} | {hw_epoch:.2f} | {hw_epoch / ideal_epoch:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
