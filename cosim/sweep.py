"""Parameter sweeps of a trained model over crossbar non-idealities, locally or on Dask.

A validation study asks how accuracy degrades with wire resistance, device variability,
quantisation, tile size... over many seeds. :func:`run_sweep` evaluates a saved (or
in-memory) model on the full Cartesian product of a grid of backend parameters::

    from cosim.sweep import run_sweep
    grid = {"r": [0, 1, 10], "program_sigma": [0.0, 0.05], "seed": [0, 1, 2]}
    rows = run_sweep("model.npz", grid, x_test, y_test, workers=4, store="out/sweep")
    rows[0]   # {'r': 0.0, 'program_sigma': 0.0, 'seed': 0, 'accuracy': ..., 'spike_rate': ...,
              #  'seconds': ...}

Grid parameters (:data:`PARAMETERS`)
------------------------------------
``backend`` ("ideal", "compact", "spice"; default "compact"), ``r_word``, ``r_bit`` (ohm,
default 1), ``r`` (sets both; not together with r_word / r_bit), ``v_read`` (V, default 0.1),
``read`` ("linear", "nonlinear"), ``levels`` (int >= 2 or None), ``program_sigma``
(programming variability σ), ``d2d_sigma`` (device-to-device spread), ``seed`` (seed of all
randomness of the point, default 0) and ``max_array`` (None: one array per matrix; an int n
or a pair (rows, cols): :class:`~cosim.crossbar.tiling.Tiled` arrays of that size). The
ideal backend ignores the physical parameters (points differing only in them are computed
once). Points are the product in the grid's key order, the last key varying fastest. A
value that is not a list stands for a one-value list; for ``max_array`` a tuple is one value
(``{"max_array": (64, 32)}``), a list is a list of values (``[64, (128, 64), None]``).
Periphery (EQUATIONS.md §7): ``r_driver``, ``r_sense`` (ohm, default 0), ``dac_bits``,
``adc_bits`` (int in [1, 24] or None = ideal, the default).

Executors (:mod:`cosim.executors`)
----------------------------------
* local (default): ``workers`` processes (``concurrent.futures.ProcessPoolExecutor``, spawn
  start method, one BLAS thread each); ``workers=1`` runs in this process;
  ``workers=None`` uses every CPU.
* Dask: ``scheduler="tcp://host:port"`` or a ``dask.distributed.Client``. The model travels
  as the bytes of its saved file and x, y are scattered once, so workers need no shared disk,
  only cosim installed. Needs ``pip install 'cosim[dask]'``.

Every point rebuilds the network from the saved model with a backend made only from the
point's parameters, so results are identical on every executor and in every order.

Resume
------
With ``store=folder`` each finished point is written at once (atomically) to
``folder/points/<hash of the point's backend>-<hash of model and data>.json``; a rerun loads
the points already there instead of recomputing them (a different model or data set has a
different hash, so it never reuses them). At the end ``results.csv``, ``results.json`` (the
table) and ``sweep.png`` (accuracy against the first numeric swept parameter, one line per
value of the next swept parameter, mean ± std over the rest) are written there. The returned
list is a :class:`SweepResults` with ``computed`` and ``reused`` counts.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import logging
import numbers
import os
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from . import _validate as check
from ._io import write_json, write_text
from .crossbar import backend_names
from .crossbar.compact import READS
# the executors' errors and helpers stay importable from here (cosim.sweep was their home)
from .executors import (DaskNotInstalledError, SchedulerError, WorkerStartError,
                        check_address, check_scheduler, map_on_dask, run_in_processes,
                        run_on_dask, scratch_dir)

__all__ = ["run_sweep", "expand_grid", "build_backend", "SweepResults",
           "DaskNotInstalledError", "SchedulerError", "WorkerStartError", "PARAMETERS",
           "DEFAULTS", "MAX_POINTS", "map_on_dask", "check_address"]

log = logging.getLogger(__name__)

POINT_FORMAT = "cosim-sweep-point"
POINT_FORMAT_VERSION = 1
BATCH = 256                                   # samples per network run (fixed: deterministic)
METRICS = ("accuracy", "spike_rate", "seconds")
#: grid points of one sweep at most (a larger grid is refused before anything runs)
MAX_POINTS = 100_000

# the backend a point gets for every parameter it does not set
DEFAULTS = {"backend": "compact", "r_word": 1.0, "r_bit": 1.0, "v_read": 0.1, "read": "linear",
            "levels": None, "program_sigma": 0.0, "d2d_sigma": 0.0, "seed": 0,
            "max_array": None}


# ------------------------------------------------------------------------------ values

def _nonneg_float(name, value):
    return check.positive(name, value, allow_zero=True)


def _pos_float(name, value):
    return check.positive(name, value)


def _seed(name, value):
    return check.integer(name, value, minimum=0)


def _levels(name, value):
    return None if value is None else check.integer(name, value, minimum=2)


def _backend(name, value):
    key = check.choice(name, value, backend_names())    # read now: register() may add
    if key == "spice":
        _spice_class()
    return key


def _read(name, value):
    return check.choice(name, value, READS)


def _max_array(name, value):
    if value is None:
        return None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value, value)
    if isinstance(value, np.ndarray):
        value = tuple(value.tolist())
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name} must be None, an int or a pair (rows, cols), got {value!r}")
    return (check.integer(f"{name} rows", value[0], minimum=1),
            check.integer(f"{name} cols", value[1], minimum=1))


def _bits(name, value):
    from .crossbar.periphery import check_bits
    return check_bits(name, value)


#: sweepable parameters and the check that normalises each value
PARAMETERS = {
    "backend": _backend, "r_word": _nonneg_float, "r_bit": _nonneg_float, "r": _nonneg_float,
    "v_read": _pos_float, "read": _read, "levels": _levels, "program_sigma": _nonneg_float,
    "d2d_sigma": _nonneg_float, "seed": _seed, "max_array": _max_array,
    "r_driver": _nonneg_float, "r_sense": _nonneg_float, "dac_bits": _bits,
    "adc_bits": _bits,
}
#: periphery parameters (issue 14): part of a point's specification only when swept, so the
#: specifications (and stored results) of sweeps without them are unchanged
PERIPHERY = ("r_driver", "r_sense", "dac_bits", "adc_bits")
_INT_PARAMS = ("seed", "levels", "dac_bits", "adc_bits")
_FLOAT_PARAMS = ("r_word", "r_bit", "r", "v_read", "program_sigma", "d2d_sigma", "r_driver",
                 "r_sense")


def _spice_class():
    try:
        from .crossbar.spice import Spice
    except ImportError as exc:
        raise ValueError(f"backend 'spice' is not available: cosim.crossbar.spice.Spice could "
                         f"not be imported ({exc})") from exc
    return Spice


# ------------------------------------------------------------------------------ grids

def _normalize_grid(grid) -> dict:
    if not isinstance(grid, Mapping):
        raise TypeError(f"grid must be a dict name -> list of values, got {type(grid).__name__}")
    unknown = [k for k in grid if k not in PARAMETERS]
    if unknown:
        raise ValueError(f"unknown sweep parameter(s) {unknown}; known: {sorted(PARAMETERS)}")
    if "r" in grid and ("r_word" in grid or "r_bit" in grid):
        raise ValueError("grid sets 'r' (both wires) together with 'r_word'/'r_bit'; use one")
    out = {}
    for name, values in grid.items():
        if not isinstance(values, (str, bytes, tuple)) and hasattr(values, "__len__") \
                and len(values) > MAX_POINTS:
            raise ValueError(f"grid[{name!r}] has {len(values)} values; at most {MAX_POINTS} "
                             f"points are allowed in one sweep")
        if isinstance(values, np.ndarray):
            values = values.tolist()
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable) \
                or (name == "max_array" and isinstance(values, tuple)):
            values = [values]                         # a single value
        values = list(values)
        if not values:
            raise ValueError(f"grid[{name!r}] has no values")
        normalised = []
        for value in values:
            if isinstance(value, np.generic):
                value = value.item()
            try:
                normalised.append(PARAMETERS[name](name, value))
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"grid[{name!r}] value {value!r}: {exc}") from exc
        out[name] = normalised
    total = 1
    for values in out.values():
        total *= len(values)
    if total > MAX_POINTS:
        raise ValueError(f"grid has {total} points; at most {MAX_POINTS} are allowed in one "
                         f"sweep (split it, or sweep fewer values)")
    return out


def expand_grid(grid) -> list[dict]:
    """The points of a grid: the Cartesian product in key order, last key fastest."""
    grid = _normalize_grid(grid)
    names = list(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*grid.values())]


# ------------------------------------------------------------------------------ backends

def _resolve(point: dict) -> dict:
    """The complete backend specification of a point (what its result depends on)."""
    spec = dict(DEFAULTS)
    for name, value in point.items():
        if name == "r":
            spec["r_word"] = spec["r_bit"] = value
        else:
            spec[name] = value
    if spec["backend"] == "ideal":
        spec = {"backend": "ideal", "max_array": spec["max_array"]}
    for name in PERIPHERY:                 # the default (ideal periphery) is left implicit
        if spec.get(name) in (None, 0.0):
            spec.pop(name, None)
    if spec["max_array"] is not None:
        spec["max_array"] = list(spec["max_array"])     # JSON form
    return spec


def build_backend(spec: dict):
    """The crossbar backend of a point specification (see :data:`DEFAULTS`)."""
    from .crossbar import build

    spec = {**DEFAULTS, **spec}
    params = {k: spec[k] for k in ("r_word", "r_bit", "v_read", "read", "levels",
                                   "program_sigma", "d2d_sigma", "seed")}
    params.update({k: spec[k] for k in PERIPHERY if k in spec})
    max_array = spec["max_array"]
    return build(spec["backend"], max_array=None if max_array is None else tuple(max_array),
                 **params)


def _sha(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else str(part).encode())
        h.update(b"\0")
    return h.hexdigest()


def _spec_key(spec) -> str:
    return _sha(POINT_FORMAT, POINT_FORMAT_VERSION, json.dumps(spec, sort_keys=True))


# ------------------------------------------------------------------------------ evaluation

class _Payload:
    """What every worker needs: the saved model's bytes and the data (shipped once)."""

    def __init__(self, model_bytes: bytes, model_sha: str, x: np.ndarray, y: np.ndarray):
        self.model_bytes = model_bytes
        self.model_sha = model_sha
        self.x = x
        self.y = y

    def model_path(self) -> Path:
        """The model as a file in this process's temporary folder (written once)."""
        path = _MODEL_FILES.get(self.model_sha)
        if path is None or not path.is_file():
            path = scratch_dir() / f"model-{self.model_sha[:16]}.npz"
            path.write_bytes(self.model_bytes)
            _MODEL_FILES[self.model_sha] = path
        return path


_MODEL_FILES: dict = {}


def _evaluate_point(payload: _Payload, spec: dict) -> dict:
    """Accuracy and spike rate of the model on (x, y) with the backend of ``spec``."""
    from .model import Model

    t0 = time.perf_counter()
    net = Model.load(payload.model_path(), crossbar=build_backend(spec)).network
    x, y = payload.x, payload.y
    correct, spikes = 0, 0.0
    for start in range(0, x.shape[0], BATCH):
        record = net.run(x[start:start + BATCH])
        correct += int(np.sum(record.logits.argmax(axis=1) == y[start:start + BATCH]))
        spikes += float(record.z.sum())
    result = {"accuracy": correct / x.shape[0],
              "spike_rate": spikes / (x.shape[0] * x.shape[1] * net.n_rec),
              "seconds": time.perf_counter() - t0}
    return result


# ------------------------------------------------------------------------------ inputs

def _model_bytes(model):
    """(saved-file bytes, content digest, network) of a Model or of a model file path."""
    from .crossbar.ideal import Ideal
    from .model import Model
    from .network import SRNN

    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        loaded = Model.load(path, crossbar=Ideal())     # validates the file
        data = path.read_bytes()
    elif isinstance(model, Model):
        loaded = model
        with tempfile.TemporaryDirectory(prefix="cosim-sweep-") as tmp:
            data = model.save(Path(tmp) / "model.npz").read_bytes()
    else:
        raise TypeError(f"model must be a cosim.Model or the path of a saved model, "
                        f"got {type(model).__name__}")
    if not isinstance(loaded.network, SRNN):
        raise TypeError(f"sweeps need a model of an SRNN, got {type(loaded.network).__name__}")
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        # the file's own checksum covers header and weights and, unlike the bytes of the
        # zip container (time stamps), is the same every time a model is saved
        digest = npz["__sha256__"].tobytes().decode()
    return data, digest, loaded.network


def _check_data(net, x, y):
    x = net.check_input(x)
    y_arr = check.labels("y", y, x.shape[0], net.n_out)
    x = np.ascontiguousarray(x, dtype=np.float64)
    y_arr = np.ascontiguousarray(y_arr, dtype=np.int64)
    digest = _sha(b"x", x.shape, x.tobytes(), b"y", y_arr.shape, y_arr.tobytes())
    return x, y_arr, digest


# ------------------------------------------------------------------------------ results

class SweepResults(list):
    """The rows of a sweep (one dict per grid point, grid order) with run statistics.

    ``computed``: evaluations run now; ``reused``: evaluations loaded from the store;
    ``store``: the store folder or None; ``seconds``: wall time of the sweep.
    """

    def __init__(self, rows=(), computed=0, reused=0, store=None, seconds=0.0):
        super().__init__(rows)
        self.computed = computed
        self.reused = reused
        self.store = store
        self.seconds = seconds
        self.warnings = []


def _without_effect(rows, grid) -> list[str]:
    """Warnings for swept parameters (more than one value) that changed no result.

    A parameter has no effect when, for every combination of the other parameters, all its
    values give the same accuracy and spike rate (e.g. ``seed`` without any variability
    switched on, or wire resistances on the ideal backend).
    """
    warnings = []
    metrics = ("accuracy", "spike_rate")
    for name, values in grid.items():
        if len(values) < 2:
            continue
        groups = {}
        for row in rows:
            others = tuple((k, plain_value(row[k])) for k in grid if k != name)
            groups.setdefault(others, set()).add(tuple(row[m] for m in metrics))
        if all(len(results) == 1 for results in groups.values()):
            hint = (" (seeds only matter with program_sigma, d2d_sigma or read noise > 0)"
                    if name == "seed" else "")
            warnings.append(f"parameter {name!r} had no effect: its {len(values)} values gave "
                            f"identical accuracy and spike rate{hint}")
    return warnings


def _point_file(store: Path, key: str, context: str) -> Path:
    return store / "points" / f"{key[:24]}-{context[:16]}.json"


def _load_point(path, key, model_sha, data_sha):
    try:
        stored = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable sweep point %s (%s)", path, exc)
        return None
    if (not isinstance(stored, dict) or stored.get("format") != POINT_FORMAT
            or stored.get("key") != key or stored.get("model_sha256") != model_sha
            or stored.get("data_sha256") != data_sha
            or not isinstance(stored.get("result"), dict)
            or any(m not in stored["result"] for m in METRICS)):
        return None
    return stored["result"]


def _jsonable(value):
    return list(value) if isinstance(value, tuple) else value


def plain_value(value):
    """A grid value as it appears in tables: None -> "none", (64, 32) -> "64x32"."""
    if value is None:
        return "none"
    if isinstance(value, (tuple, list)):
        return "x".join(map(str, value))
    return value


def _write_tables(store: Path, rows, grid_names):
    columns = list(grid_names) + list(METRICS)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([plain_value(row[c]) for c in columns])
    write_text(store / "results.csv", buffer.getvalue())
    write_json(store / "results.json", [{k: _jsonable(v) for k, v in row.items()} for row in rows])


# ------------------------------------------------------------------------------ entry point

def run_sweep(model, grid, x, y, scheduler=None, workers=None, store=None, progress=False):
    """Evaluate ``model`` on (x, y) at every point of ``grid``; a list of dicts in grid order.

    Parameters
    ----------
    model : a :class:`cosim.Model` (of an SRNN) or the path of a saved model.
    grid : dict parameter name -> list of values (see the module docstring; a single value
        stands for a one-element list).
    x, y : spike inputs (N, T, n_in) and integer labels (N,).
    scheduler : None (local processes), a Dask address "tcp://host:port" or a
        ``dask.distributed.Client``.
    workers : local worker processes (None: every CPU; 1: in this process); ignored with a
        scheduler.
    store : folder for resumable results, tables and the plot (None: nothing written).
    progress : None, a bool or a callback ``progress(desc, done, total)`` called as points
        finish (see :func:`cosim._validate.progress_callback`).

    Returns a :class:`SweepResults`: rows holding the point's grid values, ``accuracy``,
    ``spike_rate`` (spikes per unit and step) and ``seconds`` (evaluation time), plus the
    ``computed`` / ``reused`` counts.
    """
    t_start = time.perf_counter()
    norm = _normalize_grid(grid)
    points = expand_grid(norm)
    if workers is not None:
        workers = check.integer("workers", workers, minimum=1)
    elif scheduler is None:
        workers = os.cpu_count() or 1
    if scheduler is not None:
        check_scheduler(scheduler)                     # fail early (e.g. without dask)

    model_bytes, model_sha, net = _model_bytes(model)
    x, y, data_sha = _check_data(net, x, y)
    context = _sha(model_sha, data_sha)

    specs = [_resolve(p) for p in points]
    keys = [_spec_key(s) for s in specs]
    unique = dict(zip(keys, specs))
    for key, spec in unique.items():                   # fail before any work is done
        try:
            build_backend(spec)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"sweep point {spec}: {exc}") from exc

    results = {}
    store_path = None if store is None else Path(store)
    if store_path is not None:
        (store_path / "points").mkdir(parents=True, exist_ok=True)
        for key in unique:
            found = _load_point(_point_file(store_path, key, context), key, model_sha, data_sha)
            if found is not None:
                results[key] = found
    reused = len(results)
    todo = [(key, spec) for key, spec in unique.items() if key not in results]
    if reused:
        log.info("sweep: %d of %d evaluations reused from %s", reused, len(unique), store_path)

    report = check.progress_callback(progress)
    report("sweep", reused, len(unique))

    def on_done(key, result):
        results[key] = result
        if store_path is not None:
            write_json(_point_file(store_path, key, context),
                       {"format": POINT_FORMAT, "format_version": POINT_FORMAT_VERSION,
                        "key": key, "spec": unique[key], "model_sha256": model_sha,
                        "data_sha256": data_sha, "result": result})
        report("sweep", len(results), len(unique))

    payload = _Payload(model_bytes, model_sha, x, y)
    if todo:      # _evaluate_point is looked up now, so a test can inject a fault into it
        if scheduler is not None:
            run_on_dask(scheduler, payload, _evaluate_point, todo, "cosim-sweep", on_done)
        else:
            run_in_processes(_evaluate_point, payload, todo, workers, on_done)

    rows = [dict(point, **{m: results[key][m] for m in METRICS})
            for point, key in zip(points, keys)]
    out = SweepResults(rows, computed=len(todo), reused=reused, store=store_path,
                       seconds=time.perf_counter() - t_start)
    out.warnings = _without_effect(rows, norm)
    for warning in out.warnings:
        log.warning("sweep: %s", warning)
    if store_path is not None:
        _write_tables(store_path, rows, list(norm))
        from .plots import plot_sweep
        plot_sweep(rows, store_path / "sweep.png", grid=norm, n_samples=x.shape[0])
    return out
