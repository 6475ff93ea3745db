"""The ``cosim`` command line. The only module that parses arguments or prints."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

__all__ = ["main"]


def _cmd_demo(args) -> int:
    """Train on digits, compare ideal / compact / spice, export netlists, write a report."""
    import numpy as np

    from . import plots
    from ._io import write_json
    from .compare import compare
    from .data import EncodedImages, digits_images, rate_encode
    from .export import export_netlists
    from .model import Model
    from .network import SRNN

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    t_all = time.perf_counter()

    # 1. data and training (ideal crossbars)
    t0 = time.perf_counter()
    (img_train, y_train), (img_test, y_test) = digits_images()
    x_test = rate_encode(img_test, args.steps, np.random.default_rng(args.seed + 1))
    train_data = EncodedImages(img_train, T=args.steps, seed=args.seed)
    print(f"[1/4] data: sklearn digits, {len(y_train)} train / {len(y_test)} test, rate coding, "
          f"T = {args.steps}")
    net = SRNN(64, args.hidden, 10, neuron="alif", n_adaptive=args.hidden // 2, seed=args.seed)
    model = Model(net, rule=args.rule, lr=args.lr, batch_size=32, seed=args.seed)
    history = model.train(train_data, y_train, epochs=args.epochs, progress=not args.quiet,
                          validation=(x_test, y_test))
    timings["train"] = time.perf_counter() - t0
    accuracy = history["val_accuracy"][-1]
    model_path = model.save(out / "model.npz")
    record = net.run(x_test[:1])
    plots.spike_raster(out / "spike_raster.png", record.z[0], x=x_test[0],
                       title="SRNN on digits (ideal crossbar)", label=int(y_test[0]))
    plots.training_curves(out / "training.png", history)
    print(f"      trained {args.rule.upper()} ({args.hidden} units, half ALIF) for {args.epochs} "
          f"epochs in {timings['train']:.0f} s: test accuracy {accuracy:.1%} (ideal crossbar)")

    # 2. ideal vs compact vs spice on a few samples
    t0 = time.perf_counter()
    backends = ("ideal", "compact") if args.no_spice else ("ideal", "compact", "spice")
    print(f"[2/4] comparing {' / '.join(backends)} on {args.samples} test samples "
          f"(memtransistor arrays, {args.r} ohm segments, {args.read} read)")
    metrics = compare(model, x_test, y_test, backends=backends, samples=args.samples,
                      out=out / "compare", r_word=args.r, r_bit=args.r, read=args.read,
                      sweep=[0.0, 1.0, 10.0, 100.0, 1000.0], progress=False)
    timings["compare"] = time.perf_counter() - t0
    ref = metrics["reference"]
    for name in backends:
        agree = metrics["spikes"][name].get(f"agreement_vs_{ref}_percent")
        print(f"      {name:8s} accuracy {metrics['accuracy'][name]:.1%}" +
              (f", spikes identical to {ref} in {agree:.2f} % of entries" if agree is not None else ""))
    worst = max(e["max_rel"] for per in metrics["currents"].values()
                for name, e in per.items() if name == "compact") if "compact" != ref else None
    if worst is not None:
        print(f"      bit-line currents, compact vs {ref}: worst relative error {worst:.1e}")

    # 3. netlists for hardware engineers
    t0 = time.perf_counter()
    step = args.steps // 2
    result = export_netlists(model, out / "netlists", x_test, sample=0, step=step,
                             crossbar=None, tran=True)
    timings["netlist"] = time.perf_counter() - t0
    print(f"[3/4] wrote {len(result['decks'])} ngspice decks (.op of step {step}, sample 0) and "
          f"{len(result['tran'])} .tran replays to {out / 'netlists'}")

    # 4. summary
    timings["total"] = time.perf_counter() - t_all
    write_json(out / "metrics.json", {"test_accuracy": accuracy, "history": history,
                                      "timings_s": timings, "rule": args.rule,
                                      "epochs": args.epochs, "hidden": args.hidden,
                                      "compare": metrics})
    print(f"[4/4] done in {timings['total']:.0f} s (train {timings['train']:.0f} s, compare "
          f"{timings['compare']:.0f} s, netlists {timings['netlist']:.0f} s)")
    print(f"      model:  {model_path}")
    print(f"      report: {out / 'compare' / 'report.md'}")
    print(f"      figures: {out / 'spike_raster.png'}, {out / 'training.png'}, {out / 'compare'}/*.png")
    return 0


def _cmd_train(args) -> int:
    from . import plots
    from ._io import write_json
    from .config import build_data, build_network, load_config
    from .model import Model

    config = load_config(args.config)
    if args.epochs is not None:
        config["training"]["epochs"] = args.epochs
    out_model = Path(args.out or config["output"]["model"])
    (train, y_train), (x_test, y_test) = build_data(config["data"])
    n_in = (train.shape if hasattr(train, "sample") else train.shape)[2]
    net = build_network(config, n_in)
    tr = config["training"]
    model = Model(net, rule=tr["rule"], lr=tr["lr"], batch_size=tr["batch_size"],
                  optimizer=tr["optimizer"], rate_reg=tr["rate_reg"],
                  rate_target=tr["rate_target"], seed=config["network"]["seed"])
    t0 = time.perf_counter()
    history = model.train(train, y_train, epochs=tr["epochs"], progress=not args.quiet,
                          validation=(x_test, y_test))
    elapsed = time.perf_counter() - t0
    model.save(out_model)
    curves = plots.training_curves(out_model.with_suffix(".training.png"), history)
    write_json(out_model.with_suffix(".history.json"), {"history": history, "seconds": elapsed,
                                                         "config": config})
    print(f"trained {tr['rule'].upper()} on {config['crossbar']['backend']} crossbars for "
          f"{tr['epochs']} epochs in {elapsed:.1f} s; test accuracy "
          f"{history['val_accuracy'][-1]:.2%}")
    print(f"model: {out_model}; curves: {curves}")
    return 0


def _backend_from_args(args):
    """A crossbar backend from --backend/--r-word/... options (None: keep the saved one)."""
    if args.backend is None:
        return None
    from .config import DEFAULTS, build_crossbar, load_config

    section = dict(DEFAULTS["crossbar"], backend=args.backend)
    for key in ("r_word", "r_bit", "v_read", "read", "device_card"):
        value = getattr(args, key, None)
        if value is not None:
            section[key] = value
    return build_crossbar(load_config({"crossbar": section})["crossbar"])


def _test_data(encoding, steps, seed, n_in):
    from .config import build_data

    (_, _), (x_test, y_test) = build_data({"encoding": encoding, "T": steps, "seed": seed,
                                           "resample": True, "dataset": "digits"})
    if x_test.shape[2] != n_in:
        raise ValueError(f"the model expects {n_in} inputs but encoding {encoding!r} gives "
                         f"{x_test.shape[2]}; pass --encoding {'rows' if n_in == 8 else 'rate'}")
    return x_test, y_test


def _cmd_predict(args) -> int:
    import numpy as np

    from ._io import write_json
    from .model import Model

    model = Model.load(args.model, crossbar=_backend_from_args(args))
    net = model.network
    x_test, y_test = _test_data(args.encoding, args.steps, args.seed, net.n_in)
    if args.samples is not None:
        x_test, y_test = x_test[:args.samples], y_test[:args.samples]
    t0 = time.perf_counter()
    labels = model.predict(x_test)
    elapsed = time.perf_counter() - t0
    accuracy = float(np.mean(labels == y_test))
    backend = net.crossbar.name
    print(f"{len(labels)} digits test samples on the {backend} crossbar: accuracy {accuracy:.2%} "
          f"({elapsed:.1f} s)")
    if args.out:
        write_json(args.out, {"backend": backend, "accuracy": accuracy,
                              "predictions": labels.tolist(), "labels": y_test.tolist()})
        print(f"wrote {args.out}")
    return 0


def _physical_from_args(args):
    """A physical crossbar from the options, for commands that need circuits."""
    if args.backend in (None, "ideal") and all(getattr(args, k, None) is None for k in
                                                ("r_word", "r_bit", "v_read", "read", "device_card")):
        return None                                   # keep the saved physical backend, if any
    args.backend = "compact" if args.backend in (None, "ideal") else args.backend
    if args.read is None:
        args.read = "nonlinear"
    return _backend_from_args(args)


def _cmd_netlist(args) -> int:
    from .export import export_netlists
    from .model import Model

    model = Model.load(args.model)
    x_test, _ = _test_data(args.encoding, args.steps, args.seed, model.network.n_in)
    result = export_netlists(model, args.out, x_test, sample=args.sample, step=args.step,
                             crossbar=_physical_from_args(args), step_time=args.step_time,
                             tran=not args.no_tran)
    print(f"wrote {len(result['decks'])} .op decks to {args.out}/ (timestep {args.step} of test "
          f"sample {args.sample}), {len(result['tran'])} .tran decks to {args.out}/tran/, "
          f"expected_currents.json and manifest.json")
    for deck in result["decks"]:
        print(f"  ngspice -b {deck}")
    return 0


def _cmd_compare(args) -> int:
    from .compare import compare
    from .devices import Memtransistor
    from .model import Model

    model = Model.load(args.model)
    x_test, y_test = _test_data(args.encoding, args.steps, args.seed, model.network.n_in)
    device = Memtransistor.from_card(args.device_card) if args.device_card else None
    t0 = time.perf_counter()
    metrics = compare(model, x_test, y_test, backends=tuple(args.backends), samples=args.samples,
                      out=args.out, r_word=args.r_word, r_bit=args.r_bit, read=args.read,
                      device=device, step=args.step, sweep=args.sweep, progress=not args.quiet)
    ref = metrics["reference"]
    print(f"compared {', '.join(metrics['backends'])} on {metrics['samples']} samples in "
          f"{time.perf_counter() - t0:.1f} s (reference: {ref})")
    for name in metrics["backends"]:
        acc = metrics["accuracy"].get(name)
        agree = metrics["spikes"][name].get(f"agreement_vs_{ref}_percent")
        print(f"  {name:8s} accuracy {acc:.1%}" + (f", spikes agree with {ref}: {agree:.2f} %"
                                                   if agree is not None else ""))
    for array, per in metrics["currents"].items():
        for name, e in per.items():
            print(f"  array {array:10s} {name:8s} vs {ref}: current error max {e['max_rel']:.1e}, "
                  f"mean {e['mean_rel']:.1e}")
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def _cmd_sweep(args) -> int:
    from .model import Model
    from .sweep import format_results, parse_grid, run_sweep

    grid = parse_grid(args.grid)
    net = Model.load(args.model).network
    x_test, y_test = _test_data(args.encoding, args.steps, args.seed, net.n_in)
    if args.samples is not None:
        x_test, y_test = x_test[:args.samples], y_test[:args.samples]
    rows = run_sweep(args.model, grid, x_test, y_test, scheduler=args.scheduler,
                     workers=args.workers, store=args.out, progress=not args.quiet)
    print(format_results(rows))
    print(f"{len(rows)} points: {rows.computed} computed, {rows.reused} reused from {args.out} "
          f"in {rows.seconds:.1f} s; table: {Path(args.out) / 'results.csv'}, plot: "
          f"{Path(args.out) / 'sweep.png'}")
    return 0


def _add_backend_options(parser, default=None):
    parser.add_argument("--backend", choices=("ideal", "compact", "spice"), default=default,
                        help="crossbar backend (default: the one saved with the model)")
    parser.add_argument("--r-word", dest="r_word", type=float, help="word-line segment resistance (ohm)")
    parser.add_argument("--r-bit", dest="r_bit", type=float, help="bit-line segment resistance (ohm)")
    parser.add_argument("--v-read", dest="v_read", type=float, help="read voltage (V)")
    parser.add_argument("--read", choices=("linear", "nonlinear"), help="device read model")
    parser.add_argument("--device-card", dest="device_card", help="TOML device card")


def _add_data_options(parser):
    parser.add_argument("--encoding", choices=("rate", "rows"), default="rate")
    parser.add_argument("--steps", type=int, default=50, help="timesteps per sample (default 50)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the spike encoding")


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
    demo.add_argument("--epochs", type=int, default=60, help="training epochs (default 60)")
    demo.add_argument("--samples", type=int, default=5, help="samples compared (default 5)")
    demo.add_argument("--r", type=float, default=1.0, help="wire segment resistance, ohm (default 1)")
    demo.add_argument("--read", choices=("linear", "nonlinear"), default="linear",
                      help="device read model for the comparison (default linear)")
    demo.add_argument("--no-spice", dest="no_spice", action="store_true",
                      help="compare ideal and compact only")
    demo.add_argument("--hidden", type=int, default=100, help="recurrent units (default 100)")
    demo.add_argument("--steps", type=int, default=50, help="timesteps per sample (default 50)")
    demo.add_argument("--rule", choices=("bptt", "bp"), default="bptt")
    demo.add_argument("--lr", type=float, default=3e-3)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=_cmd_demo)

    train = sub.add_parser("train", help="train from a TOML config and save the model",
                           description="Train an SRNN from a TOML configuration (see "
                                       "cosim/config.py for every key) and save the model.")
    train.add_argument("config", help="TOML configuration file")
    train.add_argument("--out", help="model file (default: [output] model of the config)")
    train.add_argument("--epochs", type=int, help="override [training] epochs")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(func=_cmd_train)

    predict = sub.add_parser("predict", help="run a saved model on the digits test set",
                             description="Predict digits test labels with a saved model on a "
                                         "chosen crossbar backend and report the accuracy.")
    predict.add_argument("model", help="saved model (.npz)")
    _add_backend_options(predict)
    _add_data_options(predict)
    predict.add_argument("--samples", type=int, help="use only the first N test samples")
    predict.add_argument("--out", help="write predictions and accuracy to this JSON file")
    predict.set_defaults(func=_cmd_predict)

    netl = sub.add_parser("netlist", help="write ngspice decks of a saved model's arrays",
                          description="Write one ngspice deck per physical array (all tiles, all "
                                      "delay slices) with the programmed device states: .op of "
                                      "one timestep (DIR/*.cir, with expected_currents.json) and "
                                      ".tran replaying the sample (DIR/tran/*.cir).")
    netl.add_argument("model", help="saved model (.npz)")
    netl.add_argument("--out", required=True, help="output folder")
    netl.add_argument("--sample", type=int, default=0, help="test sample to replay (default 0)")
    netl.add_argument("--step", type=int, default=0, help="timestep of the .op decks (default 0)")
    netl.add_argument("--step-time", dest="step_time", type=float, default=1e-6,
                      help="seconds per timestep in the .tran decks (default 1e-6)")
    netl.add_argument("--no-tran", dest="no_tran", action="store_true", help="skip the .tran decks")
    _add_backend_options(netl)
    _add_data_options(netl)
    netl.set_defaults(func=_cmd_netlist)

    comp = sub.add_parser("compare", help="ideal vs compact vs spice on a saved model",
                          description="Run a saved model on test samples with each backend and "
                                      "write metrics.json, report.md and figures.")
    comp.add_argument("model", help="saved model (.npz)")
    comp.add_argument("--out", default="out/compare", help="report folder (default out/compare)")
    comp.add_argument("--backends", nargs="+", default=["ideal", "compact", "spice"],
                      choices=("ideal", "compact", "spice"))
    comp.add_argument("--samples", type=int, default=5, help="test samples (default 5)")
    comp.add_argument("--r-word", dest="r_word", type=float, default=1.0)
    comp.add_argument("--r-bit", dest="r_bit", type=float, default=1.0)
    comp.add_argument("--read", choices=("linear", "nonlinear"), default="linear",
                      help="device read model of the physical backends (default linear)")
    comp.add_argument("--device-card", dest="device_card", help="TOML device card")
    comp.add_argument("--step", type=int, help="step of the IR-drop maps (default T/2)")
    comp.add_argument("--sweep", type=float, nargs="+",
                      help="wire resistances (ohm) for the accuracy-vs-resistance figure")
    comp.add_argument("--quiet", action="store_true")
    _add_data_options(comp)
    comp.set_defaults(func=_cmd_compare)

    sweep = sub.add_parser("sweep", help="parameter sweeps of a saved model, local or on Dask",
                           description="Evaluate a saved model over a grid of crossbar "
                                       "parameters (r_word, r_bit, r, program_sigma, d2d_sigma, "
                                       "levels, seed, backend, read, v_read, max_array). Points "
                                       "are stored as they finish; a rerun resumes.")
    sweep.add_argument("model", help="saved model (.npz)")
    sweep.add_argument("--grid", nargs="+", required=True,
                       help="NAME=V1,V2,... or NAME=START:STOP (integers), e.g. r=0,1,10 seed=0:4")
    sweep.add_argument("--out", default="out/sweep", help="result store (default out/sweep)")
    sweep.add_argument("--scheduler", help="Dask scheduler address tcp://HOST:PORT "
                                           "(needs pip install 'cosim[dask]')")
    sweep.add_argument("--workers", type=int, help="local worker processes (default: all cores)")
    sweep.add_argument("--samples", type=int, help="use only the first N test samples")
    sweep.add_argument("--quiet", action="store_true")
    _add_data_options(sweep)
    sweep.set_defaults(func=_cmd_sweep)
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
