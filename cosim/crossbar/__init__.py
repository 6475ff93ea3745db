"""Crossbar backends: one protocol (``base.Crossbar``), several ways to compute the currents.

One registry (:data:`BACKENDS`, name -> class) and one way to turn settings into a backend:
:func:`from_spec` builds a backend from a *spec*, plain JSON data ``{"name": ..., "params":
{...}}`` (plus ``"inner"`` for a tiled backend), and :func:`to_spec` is its inverse. Config
files, sweep points, ``cosim compare`` options and saved models all go through this pair.

A spec is untrusted data (it is read from model files): only the constructor's own
arguments (read from its signature) are accepted, each of a JSON type and validated by the
constructor; arguments that choose where or how this process runs (``Crossbar.LOCAL_PARAMS``:
cache folders, engines, time limits) never come from a spec, they are passed by the caller.
"""

import math
import re

from .base import Crossbar
from .compact import Compact
from .ideal import Ideal
from .spice import Spice        # needs only the spice/ leaf; ngspice is looked for on use
from .tiling import Tiled, tile_slices

__all__ = ["Crossbar", "Ideal", "Compact", "Spice", "Tiled", "tile_slices", "make_crossbar",
           "register", "to_spec", "from_spec", "build", "SpecError", "BACKENDS", "backend_names",
           "device_to_spec", "device_from_spec"]

BACKENDS = {"ideal": Ideal, "compact": Compact, "spice": Spice, "tiled": Tiled}

_DEVICE_KEYS = {"device", "name", "description", "state_map"}
_DEVICE_NAME = re.compile(r"^[A-Za-z0-9_.+-]{1,64}$")
_MAX_DEPTH = 2                  # tiled(inner): a spec nests at most this deep


class SpecError(ValueError):
    """A backend spec names an unknown backend or parameter, or holds a bad value."""


def register(name, cls):
    """Make a backend class reachable by name from ``make_crossbar`` and ``from_spec``."""
    BACKENDS[name] = cls


def backend_names(physical_only=False) -> tuple[str, ...]:
    """The registered backend names usable on their own (``tiled`` wraps another one)."""
    names = [n for n in BACKENDS if n != "tiled"]
    return tuple(n for n in names if not (physical_only and n == "ideal"))


def make_crossbar(spec) -> Crossbar:
    """A backend from a name ("ideal", "compact", "spice", "tiled"), a spec dict or a ``Crossbar``."""
    if isinstance(spec, Crossbar):
        return spec
    if isinstance(spec, dict):
        return from_spec(spec)
    if isinstance(spec, str):
        key = spec.lower()
        if key not in BACKENDS:
            raise ValueError(f"crossbar must be one of {sorted(BACKENDS)} or a Crossbar "
                             f"instance, got {spec!r}")
        return BACKENDS[key]()
    raise TypeError(f"crossbar must be a name or a Crossbar instance, got {type(spec).__name__}")


def build(name, *, max_array=None, local=None, **params) -> Crossbar:
    """The backend ``name`` with constructor ``params``, tiled when ``max_array`` = (rows, cols).

    The one builder behind configs, sweep points and command-line options (via
    :func:`from_spec`). The ideal backend has no physical parameters: they are ignored.
    """
    if not isinstance(name, str) or name.lower() not in backend_names():
        raise SpecError(f"backend must be one of {list(backend_names())}, got {name!r}")
    spec = {"name": name.lower(), "params": {} if name.lower() == "ideal" else params}
    if max_array is not None:
        if isinstance(max_array, int) and not isinstance(max_array, bool):
            max_array = (max_array, max_array)
        if not isinstance(max_array, (tuple, list)) or len(max_array) != 2:
            raise SpecError(f"max_array must be (rows, cols), an int or None, got {max_array!r}")
        spec = {"name": "tiled", "params": {"max_rows": max_array[0], "max_cols": max_array[1]},
                "inner": spec}
    return from_spec(spec, **(local or {}))


# ------------------------------------------------------------------------------ to_spec

def _plain(value):
    """A JSON value of a constructor argument (None when it has no plain form)."""
    import numpy as np

    from ..devices import Memtransistor

    if isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, (int, float, np.integer, np.floating)):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, (tuple, list, np.ndarray)):
        return [_plain(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, Memtransistor):
        return device_to_spec(value)
    return None        # a Generator seed, a cache object...: not data, the default is used


def device_to_spec(device) -> dict:
    """A Memtransistor as registry data: its name, state map and parameter card (JSON)."""
    import numpy as np

    from ..devices import Memtransistor

    if not isinstance(device, Memtransistor):
        raise TypeError(f"only a Memtransistor device has a spec, got {type(device).__name__}")
    params = {k: (v.tolist() if isinstance(v, np.ndarray) else
                  v.item() if isinstance(v, np.generic) else v)
              for k, v in device.params.items()}
    return {"device": type(device).__name__, "name": device.name,
            "state_map": device.state_map, **params}


def to_spec(backend: Crossbar) -> dict:
    """The spec of ``backend``: ``{"name", "params"}`` (+ ``"inner"`` for tiled backends).

    Arguments in ``LOCAL_PARAMS`` (cache folders, engines, timeouts) are left out: a spec
    describes what the array computes, never where this machine keeps its files.
    """
    if not isinstance(backend, Crossbar):
        raise TypeError(f"to_spec needs a Crossbar, got {type(backend).__name__}")
    params = {}
    inner = None
    for key, value in backend.get_params().items():
        if key in backend.LOCAL_PARAMS:
            continue
        if isinstance(value, Crossbar):
            inner = to_spec(value)
            continue
        plain = _plain(value)
        if plain is not None or value is None:
            params[key] = plain
    if isinstance(backend, Tiled):
        params.pop("max_array", None)          # max_rows / max_cols say it
    spec = {"name": backend.name, "params": params}
    if inner is not None:
        spec["inner"] = inner
    return spec


# ------------------------------------------------------------------------------ from_spec

def _json_value(where, value, depth=0):
    """Accept only finite JSON scalars and short lists of them."""
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SpecError(f"{where} must be finite, got {value}")
        return value
    if isinstance(value, str):
        if len(value) > 64 or not value.isprintable():
            raise SpecError(f"{where} must be a short printable string, got {value[:40]!r}")
        return value
    if isinstance(value, (list, tuple)) and depth == 0 and len(value) <= 16:
        return tuple(_json_value(f"{where}[{i}]", v, 1) for i, v in enumerate(value))
    raise SpecError(f"{where} must be a number, a string, true/false, null or a short list, "
                    f"got {type(value).__name__}")


def device_from_spec(value, where="device"):
    """The Memtransistor of :func:`device_to_spec` data, read as untrusted: known keys only,
    finite numbers, a checked name; errors are :class:`SpecError` naming ``where``."""
    from ..devices import Memtransistor

    if not isinstance(value, dict):
        raise SpecError(f"{where} must be a table of device parameters, got "
                        f"{type(value).__name__}")
    allowed = set(Memtransistor.PARAM_NAMES) | _DEVICE_KEYS
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise SpecError(f"{where}: unknown device key(s) {unknown}; allowed: "
                        f"{sorted(Memtransistor.PARAM_NAMES)}")
    if value.get("device", "Memtransistor") != "Memtransistor":
        raise SpecError(f"{where}: device must be 'Memtransistor', got {value['device']!r}")
    kwargs = {}
    for key in Memtransistor.PARAM_NAMES:
        if key in value:
            v = value[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise SpecError(f"{where}.{key} must be a finite number, got {v!r}")
            kwargs[key] = float(v)
    name = value.get("name", "mos2_memtransistor")
    if not isinstance(name, str) or not _DEVICE_NAME.match(name):
        raise SpecError(f"{where}.name must be 1-64 letters, digits or _.+-, got {name!r}")
    state_map = value.get("state_map", "linear")
    try:
        return Memtransistor(state_map=state_map, name=name, **kwargs)
    except (TypeError, ValueError) as exc:
        raise SpecError(f"{where}: {exc}") from None


def from_spec(spec, *, where="crossbar", **local) -> Crossbar:
    """A backend from a spec (see the module docstring); ``local`` passes ``LOCAL_PARAMS``
    (e.g. ``cache=`` of a spice backend) chosen by the caller, never by the spec.

    Raises :class:`SpecError` (a ``ValueError``) naming the key at fault.
    """
    return _from_spec(spec, where, local, 0)


def _from_spec(spec, where, local, depth):
    if not isinstance(spec, dict):
        raise SpecError(f"{where} must be a table with 'name' and 'params', got "
                        f"{type(spec).__name__}")
    unknown = sorted(set(spec) - {"name", "params", "inner"})
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {unknown}; allowed: name, params, inner")
    name = spec.get("name")
    if not isinstance(name, str) or name.lower() not in BACKENDS:
        raise SpecError(f"{where}.name must be one of {sorted(BACKENDS)}, got {name!r}")
    cls = BACKENDS[name.lower()]
    params = spec.get("params") or {}
    if not isinstance(params, dict):
        raise SpecError(f"{where}.params must be a table, got {type(params).__name__}")
    allowed = [p for p in cls.param_names() if p not in cls.LOCAL_PARAMS and p != "inner"]
    kwargs = {}
    for key, value in params.items():
        if key in cls.LOCAL_PARAMS:
            continue        # written by older versions: a file never chooses folders or engines
        if key not in allowed:
            raise SpecError(f"{where}.params: unknown parameter {key!r} for backend {name!r}; "
                            f"allowed: {sorted(allowed)}")
        if key == "device":
            from ..devices import Memtransistor
            kwargs[key] = (value if value is None or isinstance(value, Memtransistor)   # from code
                           else device_from_spec(value, f"{where}.params.device"))
        else:
            kwargs[key] = _json_value(f"{where}.params.{key}", value)
    if cls is Tiled:
        if depth >= _MAX_DEPTH - 1 or "inner" not in spec:
            raise SpecError(f"{where}: a tiled backend needs one 'inner' backend spec that is "
                            f"not itself tiled")
        kwargs["inner"] = _from_spec(spec["inner"], f"{where}.inner", local, depth + 1)
    elif "inner" in spec:
        raise SpecError(f"{where}: only a tiled backend has an 'inner' backend")
    for key, value in local.items():
        if key in cls.param_names() and value is not None:
            kwargs[key] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise SpecError(f"{where} ({name}): {exc}") from None
