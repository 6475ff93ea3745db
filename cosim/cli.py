"""The ``cosim`` command line: the only module that parses arguments, prints or draws progress.

Every command checks its inputs and output paths before any work starts, reports progress
through the library's callbacks (bars on a terminal, plain periodic lines otherwise), writes
a ``run.json`` of how it was run next to its outputs, and turns every error into one line on
stderr and a non-zero exit (2: bad input or an unusable file; 1: an internal error; 130:
interrupted). ``--debug`` shows the traceback instead.

Over 500 lines on purpose: it is the one module that prints, so the six commands, their
shared options, the progress display, the output-path checks and the sweep-grid syntax
(``r-word=0,1 seed=0:3``) and table live together; the library below it never prints.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["main", "build_parser", "parse_grid", "format_results"]

log = logging.getLogger("cosim")

#: defaults shared by every command (one default per concept)
DEFAULT_STEPS = 50
DEFAULT_READ = "linear"
DEFAULT_R = 1.0
DEFAULT_SPICE_SAMPLES = 10
PROGRESS_PERIOD = 10.0          # seconds between two plain progress lines (not a terminal)
MAX_COUNT = 10**9               # any count beyond this is a typo, not a request
EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 2, 1, 130


# ------------------------------------------------------------------------------ progress

class Progress:
    """The progress callback ``progress(desc, done, total, **info)`` of the library.

    On a terminal: one tqdm bar per ``desc``. Otherwise (a log file, a pipe): a plain line
    ``desc: done/total (pct %)`` at most every ``PROGRESS_PERIOD`` seconds and at the end.
    ``enabled=False`` (``--quiet``) shows nothing.
    """

    def __init__(self, enabled=True, stream=None, period=PROGRESS_PERIOD):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.period = period
        self._bars, self._last = {}, {}

    def __call__(self, desc, done, total, **info):
        if not self.enabled:
            return
        if self.tty:
            from tqdm.auto import tqdm
            bar = self._bars.get(desc)
            if bar is None:
                bar = self._bars[desc] = tqdm(total=total, desc=desc, file=self.stream,
                                              leave=True)
            bar.update(done - bar.n)
            if info:
                bar.set_postfix(**{k: f"{v:.4g}" if isinstance(v, float) else v
                                   for k, v in info.items()})
            if done >= total:
                bar.close()
                del self._bars[desc]
            return
        now = time.monotonic()
        first = desc not in self._last
        if done >= total or first or now - self._last[desc] >= self.period:
            self._last[desc] = now
            extra = "".join(f", {k} {v:.4g}" if isinstance(v, float) else f", {k} {v}"
                            for k, v in info.items())
            pct = 100.0 * done / total if total else 100.0
            print(f"{desc}: {done}/{total} ({pct:.0f} %){extra}", file=self.stream, flush=True)
            if done >= total:
                del self._last[desc]

    def close(self):
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()


# ------------------------------------------------------------------------------ paths

def _empty(option, path):
    from .errors import OutputPathError
    if path is None or not str(path).strip():
        raise OutputPathError(f"{option}: the path is empty; give a file or folder name")


def _first_existing(path: Path) -> Path:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


#: folders this run created for its outputs; removed again if the run fails leaving them empty
_created: list = []


def _remove_empty_created():
    for folder in reversed(_created):
        try:
            for sub in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                sub.rmdir()                 # only empty folders go; a file stops it
            folder.rmdir()
        except OSError:
            pass
    _created.clear()


def _probe(option, folder: Path, shown):
    """Write and remove a small file in ``folder``: a read-only or full disk fails now."""
    from . import _io
    from .errors import OutputPathError

    probe = folder / f".cosim-probe-{os.getpid()}"
    try:
        if not folder.exists():
            top = folder
            while not top.parent.exists():
                top = top.parent
            folder.mkdir(parents=True, exist_ok=True)
            _created.append(top)
        _io.write_bytes(probe, b"cosim write check\n")
        probe.unlink()
    except OSError as exc:
        raise OutputPathError(f"{option} {shown}: cannot write there "
                              f"({exc.strerror or exc})") from None


def output_dir(option, path) -> Path:
    """Check an output folder before the work: creatable and writable (it is created)."""
    from .errors import OutputPathError

    _empty(option, path)
    folder = Path(path)
    existing = _first_existing(folder)
    if existing.exists() and not existing.is_dir():
        what = "is a file" if existing == folder else f"lies under the file {existing}"
        raise OutputPathError(f"{option} {folder}: {what}, not a folder")
    _probe(option, folder, folder)
    return folder


def output_file(option, path) -> Path:
    """Check an output file before the work: not a folder, its folder writable."""
    from .errors import OutputPathError

    _empty(option, path)
    target = Path(path)
    if target.is_dir():
        raise OutputPathError(f"{option} {target}: is an existing folder; give a file name")
    if target.exists() and not target.is_file():
        raise OutputPathError(f"{option} {target}: exists and is not a regular file")
    existing = _first_existing(target.parent)
    if existing.exists() and not existing.is_dir():
        raise OutputPathError(f"{option} {target}: lies under the file {existing}, not a folder")
    _probe(option, target.parent, target)
    return target


# ------------------------------------------------------------------------------ run.json

def _git_commit():
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        proc = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=5, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = proc.stdout.strip()
    return commit if proc.returncode == 0 and len(commit) == 40 else None


def _ngspice_version():
    try:
        from .spice.ngspice import find_ngspice
        info = find_ngspice()
        return getattr(info, "version_string", None) or f"ngspice-{info.version}"
    except Exception:          # noqa: BLE001  ngspice is optional: record its absence
        return None


def _device_card_sha256(card):
    from .devices.memtransistor import DEFAULT_CARD

    path = Path(card) if card else DEFAULT_CARD
    try:
        return {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    except OSError:
        return {"path": str(path), "sha256": None}


def run_info(args, seeds: dict) -> dict:
    """What reproduces this run: versions, commit, command line, seeds, device-card hash."""
    import numpy
    import scipy

    from . import __version__
    return {"cosim_version": __version__, "git_commit": _git_commit(),
            "python": platform.python_version(), "numpy": numpy.__version__,
            "scipy": scipy.__version__, "ngspice": _ngspice_version(),
            "platform": platform.platform(), "command": args.command,
            "command_line": ["cosim", *args.argv], "seeds": seeds,
            "device_card": _device_card_sha256(getattr(args, "device_card", None)),
            "data": getattr(args, "data", None) or "sklearn digits",
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(args.started))}


def write_run_json(path, args, seeds):
    from ._io import write_json
    return write_json(path, run_info(args, seeds))


# ------------------------------------------------------------------------------ data

def _test_data(args, n_in, model_steps=None):
    """(x_test, y_test) for a model with ``n_in`` inputs: --data FILE or encoded digits.

    The digits are encoded with ``--steps`` timesteps, by default the T the model was trained
    with (``model_steps``), else :data:`DEFAULT_STEPS`.
    """
    if args.data:
        from .data import load_npz
        _, (x_test, y_test) = load_npz(args.data, n_in=n_in)
    else:
        from .config import build_data

        (_, _), (x_test, y_test) = build_data({"encoding": args.encoding,
                                               "T": args.steps or model_steps or DEFAULT_STEPS,
                                               "seed": args.seed, "resample": True,
                                               "dataset": "digits", "path": ""})
        if x_test.shape[2] != n_in:
            fits = {64: "--encoding rate", 8: "--encoding rows"}.get(n_in)
            raise ValueError(f"the model expects {n_in} inputs but --encoding {args.encoding} "
                             f"gives {x_test.shape[2]}; pass "
                             + (f"{fits} or " if fits else "") + "--data FILE.npz")
    samples = getattr(args, "samples", None)
    if samples is not None:
        x_test, y_test = x_test[:samples], y_test[:samples]
    return x_test, y_test


def _data_name(args):
    return args.data if args.data else "digits test"


# ------------------------------------------------------------------------------ backends

def _physical_given(args) -> dict:
    """The options given that set a parameter of the physical arrays (dest -> value)."""
    names = ("r_word", "r_bit", "v_read", "read", "device_card", *PERIPHERY_DESTS)
    return {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}


def _backend_from_args(args, name=None, current=None):
    """A crossbar backend from --backend/--r-word/... (None: keep the model's own).

    ``current`` is the model's saved backend: when it is physical and ``name`` is a physical
    backend (or not given), the options change only what they name and every other
    parameter (wires, periphery, variability, tiles) stays the model's, also when compact
    arrays are solved by spice or back. Otherwise the backend is built from the defaults
    and the options.
    """
    from .crossbar import BACKENDS, from_spec, to_spec

    given = _physical_given(args)
    name = name or getattr(args, "backend", None)
    inner = getattr(current, "inner", current)
    if name is None:
        if not given:
            return None
        if inner is None or inner.name == "ideal":
            option = "--" + next(iter(given)).replace("_", "-")
            raise ValueError(f"{option} sets a parameter of physical arrays but the model's "
                             f"crossbar is ideal; add --backend compact (or spice)")
        name = inner.name
    if inner is not None and inner.name != "ideal" and name != "ideal":
        spec = to_spec(current)
        array = spec.get("inner", spec)
        accepted = BACKENDS[name].param_names()
        array["name"] = name
        array["params"] = params = {k: v for k, v in array["params"].items() if k in accepted}
        card = given.pop("device_card", None)
        if card is not None:
            from .devices import Memtransistor
            params["device"] = Memtransistor.from_card(card)
        params.update(given)
        return from_spec(spec, where="the model's crossbar with the command-line options")
    from .config import DEFAULTS, build_crossbar, load_config

    section = dict(DEFAULTS["crossbar"], backend=name, read=DEFAULT_READ)
    section.update(given)                       # the options given win (--read among them)
    return build_crossbar(load_config({"crossbar": section})["crossbar"])


# ------------------------------------------------------------------------------ commands

def _cmd_demo(args, progress) -> int:
    """Train on digits, compare ideal / compact / spice, export netlists, write a report."""
    import numpy as np

    from ._io import write_json
    from .compare import compare
    from .data import EncodedImages, digits_images, rate_encode
    from .export import export_netlists
    from .model import Model
    from .network import SRNN

    out = output_dir("--out", args.out)
    write_run_json(out / "run.json", args, {"seed": args.seed})
    timings = {}
    t_all = time.perf_counter()

    # 1. data and training (ideal crossbars)
    t0 = time.perf_counter()
    (img_train, y_train), (img_test, y_test) = digits_images()
    x_test = rate_encode(img_test, args.steps, np.random.default_rng(args.seed + 1))
    train_data = EncodedImages(img_train, T=args.steps, seed=args.seed)
    print(f"[1/4] data: sklearn digits, {len(y_train)} train / {len(y_test)} test, rate coding, "
          f"T = {args.steps}", flush=True)
    net = SRNN(64, args.hidden, 10, neuron="alif", n_adaptive=args.hidden // 2, seed=args.seed)
    model = Model(net, rule=args.rule, lr=args.lr, batch_size=32, seed=args.seed)
    history = model.train(train_data, y_train, epochs=args.epochs, progress=progress,
                          validation=(x_test, y_test))
    timings["train"] = time.perf_counter() - t0
    accuracy = history["val_accuracy"][-1]
    model_path = model.save(out / "model.npz")
    from . import plots            # matplotlib: imported only once there is something to draw
    record = net.run(x_test[:1])
    plots.spike_raster(out / "spike_raster.png", record.z[0], x=x_test[0],
                       title="SRNN on digits (ideal crossbar)", label=int(y_test[0]))
    plots.training_curves(out / "training.png", history)
    print(f"      trained {args.rule.upper()} ({args.hidden} units, half ALIF) for {args.epochs} "
          f"epochs in {timings['train']:.0f} s: test accuracy {accuracy:.1%} on "
          f"{len(y_test)} samples (ideal crossbar)", flush=True)

    # 2. ideal vs compact (whole test set) vs spice (N samples)
    t0 = time.perf_counter()
    backends = ("ideal", "compact") if args.no_spice else ("ideal", "compact", "spice")
    print(f"[2/4] comparing {' / '.join(backends)} (memtransistor arrays, r_word "
          f"{args.r_word} ohm, r_bit {args.r_bit} ohm, {args.read} read): ideal and compact on "
          f"{len(y_test) if args.samples is None else args.samples} test samples"
          + ("" if args.no_spice else f", spice on {args.spice_samples}"), flush=True)
    metrics = compare(model, x_test, y_test, backends=backends, samples=args.samples,
                      spice_samples=args.spice_samples, out=out / "compare",
                      r_word=args.r_word, r_bit=args.r_bit, read=args.read,
                      sweep=[0.0, 1.0, 10.0, 100.0, 1000.0], progress=progress)
    timings["compare"] = time.perf_counter() - t0
    _print_compare(metrics)

    # 3. netlists for hardware engineers
    t0 = time.perf_counter()
    step = args.steps // 2
    print("[3/4] writing ngspice decks ...", flush=True)
    result = export_netlists(model, out / "netlists", x_test, sample=0, step=step,
                             crossbar=_netlist_crossbar(model, args), tran=True)
    timings["netlist"] = time.perf_counter() - t0
    print(f"      wrote {len(result['decks'])} ngspice decks (.op of step {step}, sample 0) and "
          f"{len(result['tran'])} .tran replays to {out / 'netlists'}", flush=True)

    # 4. summary
    timings["total"] = time.perf_counter() - t_all
    write_json(out / "metrics.json", {"test_accuracy": accuracy, "test_samples": len(y_test),
                                      "history": history, "timings_s": timings,
                                      "rule": args.rule, "epochs": args.epochs,
                                      "hidden": args.hidden, "compare": metrics})
    print(f"[4/4] done in {timings['total']:.0f} s (train {timings['train']:.0f} s, compare "
          f"{timings['compare']:.0f} s, netlists {timings['netlist']:.0f} s)")
    print(f"      model:  {model_path}")
    print(f"      report: {out / 'compare' / 'report.md'}")
    print(f"      figures: {out / 'spike_raster.png'}, {out / 'training.png'}, "
          f"{out / 'compare'}/*.png")
    return 0


def _cmd_train(args, progress) -> int:
    from ._io import write_json
    from .config import build_data, build_network, load_config
    from .model import Model

    config = load_config(args.config)
    if args.epochs is not None:
        config["training"]["epochs"] = args.epochs
    if args.data:
        config["data"]["path"] = args.data
    out_model = output_file("--out" if args.out else "[output] model",
                            args.out if args.out is not None else config["output"]["model"])
    (train, y_train), (x_test, y_test) = build_data(config["data"])
    n_in = train.shape[2]
    n_out = int(max(y_train.max(), y_test.max())) + 1 if config["data"]["path"] else 10
    net = build_network(config, n_in, n_out=n_out)
    tr = config["training"]
    model = Model(net, rule=tr["rule"], lr=tr["lr"], batch_size=tr["batch_size"],
                  optimizer=tr["optimizer"], rate_reg=tr["rate_reg"],
                  rate_target=tr["rate_target"], seed=config["network"]["seed"])
    t0 = time.perf_counter()
    history = model.train(train, y_train, epochs=tr["epochs"], progress=progress,
                          validation=(x_test, y_test))
    elapsed = time.perf_counter() - t0
    model.save(out_model)
    from . import plots            # matplotlib: imported only once there is something to draw
    curves = plots.training_curves(out_model.with_suffix(".training.png"), history)
    write_json(out_model.with_suffix(".history.json"), {"history": history, "seconds": elapsed,
                                                         "config": config})
    write_run_json(out_model.with_suffix(".run.json"), args,
                   {"network": config["network"]["seed"], "data": config["data"]["seed"],
                    "crossbar": config["crossbar"]["seed"]})
    print(f"trained {tr['rule'].upper()} on {config['crossbar']['backend']} crossbars for "
          f"{tr['epochs']} epochs in {elapsed:.1f} s; test accuracy "
          f"{history['val_accuracy'][-1]:.2%} on {len(y_test)} samples")
    print(f"model: {out_model}; curves: {curves}")
    return 0


def _cmd_predict(args, progress) -> int:
    import numpy as np

    from ._io import write_json
    from .model import Model
    from .stats import accuracy_summary, format_accuracy

    out = output_file("--out", args.out) if args.out is not None else None
    model = Model.load(args.model)
    chosen = _backend_from_args(args, current=model.network.crossbar)
    if chosen is not None:
        model = Model.load(args.model, crossbar=chosen)
    net = model.network
    x_test, y_test = _test_data(args, net.n_in, model.steps)
    t0 = time.perf_counter()
    energy = None
    if net.crossbar.name == "ideal":
        labels = model.predict(x_test, progress=progress)
    else:                          # physical arrays: the same reads also give the energy
        from .energy import predict_with_energy
        labels, energy = predict_with_energy(net, x_test, progress=progress)
    elapsed = time.perf_counter() - t0
    summary = accuracy_summary(int(np.sum(labels == y_test)), len(labels))
    backend = net.crossbar.name
    print(f"{len(labels)} {_data_name(args)} samples on the {backend} crossbar: accuracy "
          f"{format_accuracy(summary)} ({elapsed:.1f} s)")
    if energy is not None:
        _print_energy(energy.summary())
    if out is not None:
        write_json(out, {"backend": backend, "accuracy": summary["accuracy"], "n": summary["n"],
                         "ci95": summary["ci95"], "predictions": labels.tolist(),
                         "labels": y_test.tolist(),
                         "energy": None if energy is None else energy.summary()})
        write_run_json(out.with_suffix(".run.json"), args, {"encoding": args.seed})
        print(f"wrote {out}")
    return 0


def _netlist_crossbar(model, args):
    """The physical arrays of the decks: the model's own unless options ask otherwise;
    an ideal model gets compact arrays with the options' (default) settings."""
    current = model.network.crossbar
    inner = getattr(current, "inner", current)
    chosen = getattr(args, "backend", None)
    if chosen is None and not _physical_given(args) and inner.name != "ideal":
        return None
    if chosen in (None, "ideal"):
        chosen = "compact" if inner.name == "ideal" else inner.name
    return _backend_from_args(args, name=chosen, current=current)


def _cmd_netlist(args, progress) -> int:
    from .export import export_netlists
    from .model import Model

    out = output_dir("--out", args.out)
    model = Model.load(args.model)
    x_test, _ = _test_data(args, model.network.n_in, model.steps)
    step = x_test.shape[1] // 2 if args.step is None else args.step
    progress("netlist", 0, 1)
    result = export_netlists(model, out, x_test, sample=args.sample, step=step,
                             crossbar=_netlist_crossbar(model, args), step_time=args.step_time,
                             tran=not args.no_tran)
    progress("netlist", 1, 1)
    write_run_json(out / "run.json", args, {"encoding": args.seed})
    tran = "" if args.no_tran else f", {len(result['tran'])} .tran decks to {out}/tran/"
    print(f"wrote {len(result['decks'])} .op decks to {out}/ (timestep {step} of sample "
          f"{args.sample}){tran}, expected_currents.json and manifest.json")
    for deck in result["decks"]:
        print(f"  ngspice -b {deck}")
    return 0


def _print_compare(metrics):
    ref = metrics["reference"]
    for name in metrics["backends"]:
        acc = metrics["accuracy"].get(name)
        n = metrics["samples_per_backend"][name]
        text = f"  {name:8s} N = {n:4d}"
        if acc is not None:
            low, high = metrics["accuracy_ci95"][name]
            text += f"  accuracy {acc:.1%} (95 % CI {100 * low:.1f}-{100 * high:.1f} %)"
        agree = metrics["spikes"][name].get(f"agreement_vs_{ref}_percent")
        if agree is not None:
            text += f", spikes agree with {ref} in {agree:.2f} % (first {metrics['samples']} samples)"
        print(text)
    for array, per in metrics["currents"].items():
        for name, e in per.items():
            print(f"  array {array:10s} {name:8s} vs {ref}: current error max {e['max_rel']:.1e}, "
                  f"mean {e['mean_rel']:.1e}")
    for name, summary in metrics.get("energy", {}).items():
        _print_energy(summary, indent=f"  {name:8s} N = {summary['samples']:4d}  ")


def _compare_arrays(args, current) -> dict:
    """compare's physical-array arguments (r_word, r_bit, read, device, backend_params).

    A model saved on physical arrays is compared on its own arrays (wires, periphery,
    variability, tiles), changed only where an option is given, as ``predict`` does; an ideal
    model gets arrays built from the options and the defaults (:func:`_backend_from_args`).
    """
    from .crossbar import Compact

    chosen = _backend_from_args(args, name="compact", current=current)
    arrays = getattr(chosen, "inner", chosen)
    params = {k: v for k, v in arrays.get_params().items() if k not in Compact.LOCAL_PARAMS}
    if arrays is not chosen:                                   # tiled: the same tiles
        params["max_array"] = (chosen.max_rows, chosen.max_cols)
    return {"r_word": params.pop("r_word"), "r_bit": params.pop("r_bit"),
            "read": params.pop("read"), "device": params.pop("device"),
            "backend_params": params}


def _cmd_compare(args, progress) -> int:
    from .compare import compare
    from .model import Model

    if args.scheduler is not None:
        from .executors import check_scheduler
        check_scheduler(args.scheduler)         # dask installed, a well-formed address
    out = output_dir("--out", args.out)
    model = Model.load(args.model)
    x_test, y_test = _test_data(args, model.network.n_in, model.steps)
    arrays = _compare_arrays(args, model.network.crossbar)
    t0 = time.perf_counter()
    metrics = compare(model, x_test, y_test, backends=tuple(args.backends), samples=None,
                      spice_samples=args.spice_samples, out=out, step=args.step,
                      sweep=args.sweep, progress=progress, workers=args.workers,
                      scheduler=args.scheduler, **arrays)
    write_run_json(out / "run.json", args, {"encoding": args.seed})
    print(f"compared {', '.join(metrics['backends'])} in {time.perf_counter() - t0:.1f} s "
          f"(reference: {metrics['reference']})")
    _print_compare(metrics)
    print(f"report: {out / 'report.md'}")
    return 0


def _cmd_sweep(args, progress) -> int:
    from .model import Model
    from .executors import check_address
    from .sweep import run_sweep

    grid = parse_grid(args.grid)
    if args.scheduler is not None:
        check_address(args.scheduler)
    out = output_dir("--out", args.out)
    model = Model.load(args.model)
    x_test, y_test = _test_data(args, model.network.n_in, model.steps)
    rows = run_sweep(args.model, grid, x_test, y_test, scheduler=args.scheduler,
                     workers=args.workers, store=out, progress=progress)
    write_run_json(out / "run.json", args, {"encoding": args.seed,
                                            "points": grid.get("seed", [0])})
    print(format_results(rows))                  # warnings were logged by the sweep
    print(f"{len(rows)} points on {len(y_test)} samples: {rows.computed} computed, "
          f"{rows.reused} reused from {out} in {rows.seconds:.1f} s; table: "
          f"{out / 'results.csv'}, plot: {out / 'sweep.png'}")
    return 0


# ------------------------------------------------------------------------------ sweep grids

def _parse_value(name, token):
    from .sweep import _FLOAT_PARAMS, _INT_PARAMS

    low = token.lower()
    if name in ("levels", "max_array", "dac_bits", "adc_bits") and low in ("none", "null", "-"):
        return None
    if name in _INT_PARAMS:
        return int(token)
    if name in _FLOAT_PARAMS:
        return float(token)
    if name == "max_array":
        parts = low.split("x")
        if len(parts) == 1:
            return int(parts[0])
        if len(parts) == 2:
            return (int(parts[0]), int(parts[1]))
        raise ValueError("max_array values look like 64 or 128x64")
    return low                                   # backend, read


def parse_grid(strings) -> dict:
    """A grid from command-line items such as ``r-word=0,1,10``, ``seed=0:3``.

    Names are the sweep parameters (``-`` and ``_`` alike: ``r-word`` is ``r_word``);
    values are separated by commas; ``a:b`` and ``a:b:step`` are integer ranges (end
    excluded, as in Python: ``seed=0:3`` is 0, 1, 2) for the integer parameters (``seed``,
    ``levels``, ``dac_bits``, ``adc_bits``); ``max_array`` values are ``64`` (square) or
    ``128x64`` (rows x cols); ``none`` stands for None (``levels``, ``max_array``,
    ``dac_bits``, ``adc_bits``). One string with several items separated by
    spaces is accepted too. Values get their proper types; errors name the bad item.
    """
    from .sweep import _INT_PARAMS, MAX_POINTS, PARAMETERS, _normalize_grid

    if isinstance(strings, str):
        strings = strings.split()
    grid = {}
    for item in strings:
        if not isinstance(item, str):
            raise TypeError(f"grid items must be strings like 'r=0,1', got {item!r}")
        name, sep, text = item.partition("=")
        name = name.strip().lower().replace("-", "_")
        if not sep or not name:
            raise ValueError(f"grid item {item!r} must look like name=value1,value2,...")
        if name not in PARAMETERS:
            raise ValueError(f"grid item {item!r}: unknown sweep parameter {name!r}; "
                             f"known: {sorted(PARAMETERS)}")
        if name in grid:
            raise ValueError(f"grid item {item!r}: parameter {name!r} given twice")
        values = []
        for token in text.split(","):
            token = token.strip()
            try:
                if not token:
                    raise ValueError("empty value")
                if ":" in token:
                    if name not in _INT_PARAMS:
                        raise ValueError(f"ranges a:b[:step] are for integer parameters "
                                         f"({', '.join(_INT_PARAMS)}); list {name} values instead")
                    bounds = [int(t) for t in token.split(":")]
                    if len(bounds) not in (2, 3) or (len(bounds) == 3 and bounds[2] == 0):
                        raise ValueError("a range is a:b or a:b:step with step != 0")
                    span = range(*bounds)
                    if not span:
                        raise ValueError(f"range {token} is empty")
                    if len(span) + len(values) > MAX_POINTS:
                        raise ValueError(f"range {token} has {len(span)} values; a sweep has "
                                         f"at most {MAX_POINTS} points")
                    values.extend(span)
                else:
                    values.append(_parse_value(name, token))
            except ValueError as exc:
                raise ValueError(f"grid item {item!r}: bad value {token!r} ({exc})") from None
        try:
            grid[name] = _normalize_grid({name: values})[name]
        except (TypeError, ValueError) as exc:
            raise ValueError(f"grid item {item!r}: {exc}") from None
    _normalize_grid(grid)                          # cross-parameter checks and the size
    return grid


def _cell(value):
    from .sweep import plain_value

    value = plain_value(value)
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def format_results(rows) -> str:
    """A plain-text table of sweep rows."""
    if not rows:
        return "(no points)"
    columns = list(rows[0])
    cells = [[_cell(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ parser

def _count(minimum=1, maximum=MAX_COUNT):
    """An argparse type: an integer in [minimum, maximum] (the error names the range)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be in [{minimum}, {maximum}], got {value}")
        return value
    parse.__name__ = "count"
    return parse


def _number(minimum=None, allow_equal=True, maximum=None):
    """An argparse type: a finite float, optionally bounded."""
    def parse(text):
        import math
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
        if minimum is not None and (value < minimum or (value == minimum and not allow_equal)):
            raise argparse.ArgumentTypeError(
                f"must be {'>=' if allow_equal else '>'} {minimum}, got {value:g}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum:g}, got {value:g}")
        return value
    parse.__name__ = "number"
    return parse


def _add_common(parser):
    group = parser.add_argument_group("output and logging")
    group.add_argument("--quiet", action="store_true", help="no progress and no info lines")
    group.add_argument("--log-level", dest="log_level", default=None,
                       choices=("debug", "info", "warning", "error"),
                       help="level of log lines on stderr (default info; warning with --quiet)")
    group.add_argument("--debug", action="store_true",
                       help="show the Python traceback of an error (for bug reports)")


def _add_wires(parser, defaults=True):
    default = DEFAULT_R if defaults else None
    suffix = f" (default {DEFAULT_R})" if defaults else " (default: the model's)"
    parser.add_argument("--r-word", dest="r_word", type=_number(0.0), default=default,
                        help="word-line segment resistance, ohm" + suffix)
    parser.add_argument("--r-bit", dest="r_bit", type=_number(0.0), default=default,
                        help="bit-line segment resistance, ohm" + suffix)


def _add_read(parser, defaults=True):
    from .crossbar.compact import READS

    parser.add_argument("--read", choices=READS,
                        default=DEFAULT_READ if defaults else None,
                        help=f"device read model of the physical arrays (default {DEFAULT_READ}"
                             + ("" if defaults else " when a backend is built from options")
                             + ")")


#: periphery options of the physical backends (issue 14): dest -> (type, help)
PERIPHERY_OPTIONS = {
    "r_driver": ("ohm", "driver resistance in series with every word-line source (default 0)"),
    "r_sense": ("ohm", "sense-amplifier input resistance of every bit line (default 0)"),
    "dac_bits": ("bits", "input DAC resolution (default: ideal)"),
    "adc_bits": ("bits", "output ADC resolution per physical column (default: ideal)"),
    "adc_range": ("A", "ADC range in amperes (default: auto, calibrated at programming)"),
    "read_time": ("s", "duration of one read for the energy (default 1e-8)"),
    "adc_energy": ("J", "energy per ADC conversion (default 0)"),
    "dac_energy": ("J", "energy per DAC conversion (default 0)"),
}
#: every periphery option's dest: the valued ones and the flag --adc-bipolar
PERIPHERY_DESTS = (*PERIPHERY_OPTIONS, "adc_bipolar")


def _add_periphery(parser):
    for dest, (unit, text) in PERIPHERY_OPTIONS.items():
        # a range and a read time must be > 0 (0 means "auto" only inside a config file)
        kind = (_count(1, 24) if unit == "bits"
                else _number(0.0, allow_equal=unit not in ("A", "s")))
        parser.add_argument("--" + dest.replace("_", "-"), dest=dest, type=kind, default=None,
                            metavar=unit.upper(), help=text)
    parser.add_argument("--adc-bipolar", dest="adc_bipolar", action="store_const", const=True,
                        default=None, help="ADC window [-range, range] instead of [0, range] "
                                           "(for negative sense currents)")


def _print_energy(summary, indent=""):
    """One line: energy per inference, J/SOP, TOPS/W (cosim.energy.EnergyReport.summary)."""
    per_array = ", ".join(f"{k} {v:.3e} J" for k, v in summary["energy_per_array_J"].items())
    print(f"{indent}energy per inference {summary['energy_per_inference_J']:.3e} J "
          f"({per_array}); {summary['joules_per_sop'] * 1e15:.3f} fJ per synaptic operation; "
          f"{summary['tops_per_watt']:.1f} TOPS/W")


def _add_backend_options(parser):
    parser.add_argument("--backend", choices=backend_names(), default=None,
                        help="crossbar backend (default: the one saved with the model)")
    _add_wires(parser, defaults=False)
    parser.add_argument("--v-read", dest="v_read", type=_number(0.0, allow_equal=False),
                        help="read voltage of a spike, V (default 0.1)")
    _add_read(parser, defaults=False)
    parser.add_argument("--device-card", dest="device_card", help="TOML device card")
    _add_periphery(parser)


def _add_data_options(parser, samples=True):
    parser.add_argument("--data", metavar="FILE.npz",
                        help="your own data: an .npz with x (N, T, n_in) and y (N,) (and "
                             "optionally x_test, y_test, used when present); default: the "
                             "sklearn digits test set")
    parser.add_argument("--encoding", choices=("rate", "rows"), default="rate",
                        help="spike encoding of the digits (default rate)")
    parser.add_argument("--steps", type=_count(1, 10**6), default=None,
                        help=f"timesteps per digits sample (default: the T the model was "
                             f"trained with, {DEFAULT_STEPS} for models that do not record it)")
    parser.add_argument("--seed", type=_count(0, 2**63 - 1), default=0,
                        help="seed of every random draw of the command: the digits spike "
                             "encoding (and in demo also initialisation and shuffling); "
                             "default 0")
    if samples:
        parser.add_argument("--samples", type=_count(1), default=None,
                            help="use only the first N test samples (default: all)")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors that point to --help (not the whole usage block)."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def backend_names():
    from .crossbar import backend_names as names
    return names()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cosim",
        description="Co-simulate spiking recurrent networks on memtransistor crossbar arrays.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    demo = sub.add_parser("demo", help="end-to-end run on the bundled digits",
                          description="Train an SRNN on sklearn's digits, compare ideal / "
                                      "compact (whole test set) / spice (--spice-samples), "
                                      "write netlists and a report.")
    demo.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    demo.add_argument("--epochs", type=_count(1, 10**6), default=60,
                      help="training epochs (default 60)")
    demo.add_argument("--samples", type=_count(1), default=None,
                      help="test samples compared on ideal and compact (default: all 360)")
    demo.add_argument("--spice-samples", dest="spice_samples", type=_count(1),
                      default=DEFAULT_SPICE_SAMPLES,
                      help=f"test samples run on spice (default {DEFAULT_SPICE_SAMPLES})")
    _add_wires(demo)
    _add_read(demo)
    demo.add_argument("--no-spice", dest="no_spice", action="store_true",
                      help="compare ideal and compact only")
    demo.add_argument("--hidden", type=_count(2, 10**5), default=100,
                      help="recurrent units (default 100)")
    demo.add_argument("--steps", type=_count(1, 10**6), default=DEFAULT_STEPS,
                      help=f"timesteps per sample (default {DEFAULT_STEPS})")
    demo.add_argument("--rule", choices=("bptt", "bp"), default="bptt",
                      help="learning rule (default bptt)")
    demo.add_argument("--lr", type=_number(0.0, allow_equal=False, maximum=10.0), default=3e-3,
                      help="learning rate (default 0.003)")
    demo.add_argument("--seed", type=_count(0, 2**31), default=0,
                      help="seed of every random draw (initialisation, shuffling, encoding)")
    _add_common(demo)
    demo.set_defaults(func=_cmd_demo)

    train = sub.add_parser("train", help="train from a TOML config and save the model",
                           description="Train an SRNN from a TOML configuration (see "
                                       "cosim/config.py for every key) and save the model.")
    train.add_argument("config", help="TOML configuration file")
    train.add_argument("--out", help="model file (default: [output] model of the config)")
    train.add_argument("--epochs", type=_count(1, 10**6), help="override [training] epochs")
    train.add_argument("--data", metavar="FILE.npz",
                       help="override [data] path: an .npz with x (N, T, n_in) and y (N,) "
                            "(optionally x_test, y_test; else the test set is x, y)")
    _add_common(train)
    train.set_defaults(func=_cmd_train)

    predict = sub.add_parser("predict", help="run a saved model on test data",
                             description="Predict test labels with a saved model on a chosen "
                                         "crossbar backend; report the accuracy with its "
                                         "95 % interval.")
    predict.add_argument("model", help="saved model (.npz)")
    _add_backend_options(predict)
    _add_data_options(predict)
    predict.add_argument("--out", help="write predictions and accuracy to this JSON file")
    _add_common(predict)
    predict.set_defaults(func=_cmd_predict)

    netl = sub.add_parser("netlist", help="write ngspice decks of a saved model's arrays",
                          description="Write one ngspice deck per physical array (all tiles, all "
                                      "delay slices) with the programmed device states: .op of "
                                      "one timestep (DIR/*.cir, with expected_currents.json) and "
                                      ".tran replaying the sample (DIR/tran/*.cir). An ideal "
                                      "model is written as compact arrays of the options.")
    netl.add_argument("model", help="saved model (.npz)")
    netl.add_argument("--out", required=True, help="output folder")
    netl.add_argument("--sample", type=_count(0), default=0, help="test sample to replay (default 0)")
    netl.add_argument("--step", type=_count(0), default=None,
                      help="timestep of the .op decks (default T/2, as compare's IR-drop maps)")
    netl.add_argument("--step-time", dest="step_time", type=_number(0.0, allow_equal=False),
                      default=1e-6, help="seconds per timestep in the .tran decks (default 1e-6)")
    netl.add_argument("--no-tran", dest="no_tran", action="store_true", help="skip the .tran decks")
    _add_backend_options(netl)
    _add_data_options(netl, samples=False)
    _add_common(netl)
    netl.set_defaults(func=_cmd_netlist)

    comp = sub.add_parser("compare", help="ideal vs compact vs spice on a saved model",
                          description="Run a saved model on the test set with each backend "
                                      "(ideal and compact on every sample, spice on "
                                      "--spice-samples) and write metrics.json, report.md and "
                                      "figures; accuracies with N and a 95 % interval.")
    comp.add_argument("model", help="saved model (.npz)")
    comp.add_argument("--out", default="out/compare", help="report folder (default out/compare)")
    comp.add_argument("--backends", nargs="+", default=list(backend_names()),
                      choices=backend_names(), help="backends to compare (default: all)")
    comp.add_argument("--spice-samples", dest="spice_samples", type=_count(1),
                      default=DEFAULT_SPICE_SAMPLES,
                      help=f"test samples run on spice (default {DEFAULT_SPICE_SAMPLES})")
    comp.add_argument("--workers", type=_count(1, 4096), default=1,
                      help="processes sharing the spice samples, one ngspice each (default 1)")
    comp.add_argument("--scheduler", help="Dask scheduler address tcp://HOST:PORT that runs the "
                                          "spice samples (needs pip install 'cosim[dask]')")
    _add_wires(comp, defaults=False)
    _add_read(comp, defaults=False)
    comp.add_argument("--device-card", dest="device_card", help="TOML device card")
    _add_periphery(comp)
    comp.add_argument("--step", type=_count(0), help="step of the IR-drop maps (default T/2)")
    comp.add_argument("--sweep", type=_number(0.0), nargs="+",
                      help="wire resistances (ohm) for the accuracy-vs-resistance figure")
    _add_data_options(comp)
    _add_common(comp)
    comp.set_defaults(func=_cmd_compare)

    from .sweep import PARAMETERS as SWEEP_PARAMETERS   # the help lists every one of them

    sweep = sub.add_parser("sweep", help="parameter sweeps of a saved model, local or on Dask",
                           description="Evaluate a saved model over a grid of crossbar "
                                       "parameters ("
                                       + ", ".join(n.replace("_", "-") for n in SWEEP_PARAMETERS)
                                       + "; r sets r-word and r-bit). Points are stored as "
                                         "they finish; a rerun resumes.")
    sweep.add_argument("model", help="saved model (.npz)")
    sweep.add_argument("--grid", nargs="+", required=True,
                       help="NAME=V1,V2,... or NAME=START:STOP (integers), e.g. "
                            "r-word=0,1,10 seed=0:4")
    sweep.add_argument("--out", default="out/sweep", help="result store (default out/sweep)")
    sweep.add_argument("--scheduler", help="Dask scheduler address tcp://HOST:PORT "
                                           "(needs pip install 'cosim[dask]')")
    sweep.add_argument("--workers", type=_count(1, 4096),
                       help="local worker processes (default: all cores)")
    _add_data_options(sweep)
    _add_common(sweep)
    sweep.set_defaults(func=_cmd_sweep)
    return parser


def _version():
    from . import __version__
    return f"cosim {__version__}"


# ------------------------------------------------------------------------------ main

def _error_line(exc) -> str:
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.strerror}: {exc.filename}"
    text = str(exc) or type(exc).__name__
    return text


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv, args.started = argv, time.time()
    level = args.log_level or ("warning" if args.quiet else "info")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("cosim: %(levelname)s: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level.upper())
    log.propagate = False
    progress = Progress(enabled=not args.quiet)
    _created.clear()
    try:
        code = _run(args, progress)
    finally:
        progress.close()
    if code:
        _remove_empty_created()        # a failed run leaves no empty output folders behind
    _created.clear()
    return code


def _run(args, progress) -> int:
    """One command; every error becomes one line on stderr and an exit status."""
    from .errors import CosimError

    try:
        return args.func(args, progress)
    except KeyboardInterrupt:
        print(f"cosim {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (CosimError, ValueError, TypeError, OSError, MemoryError) as exc:
        if args.debug:
            raise
        print(f"cosim {args.command}: error: {_error_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:          # noqa: BLE001  a bug: one line, the traceback on --debug
        if args.debug:
            raise
        print(f"cosim {args.command}: internal error: {type(exc).__name__}: {exc} (run again "
              f"with --debug for the traceback and report it)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
