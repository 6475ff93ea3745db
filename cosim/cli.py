"""The ``cosim`` command line. The only module that parses arguments or prints."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

__all__ = ["main"]


def _cmd_demo(args) -> int:
    import numpy as np

    from . import plots
    from ._io import write_json
    from .data import EncodedImages, digits_images, rate_encode
    from .model import Model
    from .network import SRNN

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    t0 = time.perf_counter()
    (img_train, y_train), (img_test, y_test) = digits_images()
    x_test = rate_encode(img_test, args.steps, np.random.default_rng(args.seed + 1))
    train_data = EncodedImages(img_train, T=args.steps, seed=args.seed)
    print(f"data: sklearn digits, {len(y_train)} train / {len(y_test)} test, rate coding, "
          f"T = {args.steps}")

    net = SRNN(64, args.hidden, 10, neuron="alif", n_adaptive=args.hidden // 2, seed=args.seed)
    model = Model(net, rule=args.rule, lr=args.lr, batch_size=32, seed=args.seed)
    history = model.train(train_data, y_train, epochs=args.epochs, progress=not args.quiet,
                          validation=(x_test, y_test))
    timings["train_s"] = time.perf_counter() - t0
    accuracy = history["val_accuracy"][-1]
    print(f"trained {args.rule.upper()} for {args.epochs} epochs in {timings['train_s']:.1f} s: "
          f"test accuracy {accuracy:.1%} (ideal crossbar)")

    model_path = model.save(out / "model.npz")
    record = net.run(x_test[:1])
    raster = plots.spike_raster(out / "spike_raster.png", record.z[0], x=x_test[0],
                                title="SRNN on digits (ideal crossbar)", label=int(y_test[0]))
    curves = plots.training_curves(out / "training.png", history)
    write_json(out / "metrics.json", {"test_accuracy": accuracy, "history": history,
                                      "timings_s": timings, "rule": args.rule,
                                      "epochs": args.epochs, "hidden": args.hidden})
    print(f"wrote {model_path}, {raster}, {curves}, {out / 'metrics.json'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cosim",
        description="Co-simulate spiking recurrent networks on memtransistor crossbar arrays.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    demo = sub.add_parser("demo", help="end-to-end run on the bundled digits",
                          description="Train an SRNN on sklearn's digits and write a report.")
    demo.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    demo.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    demo.add_argument("--hidden", type=int, default=100, help="recurrent units (default 100)")
    demo.add_argument("--steps", type=int, default=50, help="timesteps per sample (default 50)")
    demo.add_argument("--rule", choices=("bptt", "bp"), default="bptt")
    demo.add_argument("--lr", type=float, default=3e-3)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=_cmd_demo)
    return parser


def _version():
    from . import __version__
    return f"cosim {__version__}"


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .errors import CosimError

    try:
        return args.func(args)
    except (CosimError, ValueError, TypeError, FileNotFoundError) as exc:
        print(f"cosim {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
