"""Input checks used once at the public boundary. Each names the argument at fault."""

from __future__ import annotations

import numbers

import numpy as np

from .errors import MemoryLimitError


def as_float_array(name: str, value, ndim: int | tuple[int, ...] | None = None,
                   allow_nan: bool = False) -> np.ndarray:
    """Return ``value`` as a float64 array, checking its rank and that it is finite."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a numeric array, got {type(value).__name__}") from exc
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            raise ValueError(f"{name} must have {' or '.join(map(str, allowed))} dimensions, "
                             f"got shape {arr.shape}")
    if not allow_nan and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def positive(name: str, value, allow_zero: bool = False) -> float:
    """A finite real number > 0 (or >= 0 with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def positive_array(name: str, value, allow_zero: bool = False) -> np.ndarray:
    """A scalar or array of finite values > 0 (or >= 0), returned as float64."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be numeric, got bool")
    arr = as_float_array(name, value)
    if np.any(arr < 0) or (not allow_zero and np.any(arr == 0)):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound} everywhere")
    return arr


def integer(name: str, value, minimum: int | None = None) -> int:
    """An integer (not bool), optionally >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def choice(name: str, value, options) -> str:
    """One of a fixed set of strings."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {type(value).__name__}")
    key = value.lower()
    if key not in options:
        raise ValueError(f"{name} must be one of {sorted(options)}, got {value!r}")
    return key


def rng(seed) -> np.random.Generator:
    """A numpy Generator from an int seed, a SeedSequence, a Generator or None (seed 0)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return np.random.default_rng(0)
    if isinstance(seed, np.random.SeedSequence):
        return np.random.default_rng(seed)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, a SeedSequence or a numpy Generator, "
                        f"got {type(seed).__name__}")
    return np.random.default_rng(int(seed))


def real(name: str, value) -> float:
    """A finite real number (not bool): TypeError for other types, ValueError if not finite."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def labels(name: str, value, n: int, n_classes: int) -> np.ndarray:
    """Integer class labels: shape (n,), values in [0, n_classes), returned as int64.

    Floats holding whole numbers are accepted (labels read from CSV or .npz often are).
    """
    arr = np.asarray(value)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) (one label per sample), got {arr.shape}")
    if arr.dtype.kind == "f":
        if not (np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))):
            raise ValueError(f"{name} must hold integer class labels, got non-integer values")
    elif arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer class labels, got dtype {arr.dtype}")
    if n and (arr.min() < 0 or arr.max() >= n_classes):
        raise ValueError(f"{name} holds labels outside [0, {n_classes - 1}] "
                         f"(found {arr.min():g}..{arr.max():g})")
    return arr.astype(np.int64)


def available_memory() -> int:
    """Bytes of memory this process may still allocate (MemAvailable on Linux)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import os
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return 2**40                                  # unknown: do not refuse


def fits_in_memory(what: str, n_bytes: float, hint: str = "") -> None:
    """Refuse, before allocating, work whose estimated memory exceeds what is available."""
    available = available_memory()
    if not n_bytes <= available:
        raise MemoryLimitError(f"{what} needs about {_size(n_bytes)} of memory but only "
                               f"{_size(available)} is available" + (f"; {hint}" if hint else ""))


def _size(n_bytes: float) -> str:
    n_bytes = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n_bytes < 1024 or unit == "PiB":
            return f"{n_bytes:.3g} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.3g} PiB"  # pragma: no cover


def count(name: str, value, minimum: int = 1, maximum: int | None = None) -> int:
    """An integer count in [minimum, maximum]; the error names the range."""
    value = integer(name, value)
    if value < minimum or (maximum is not None and value > maximum):
        upper = f", <= {maximum}" if maximum is not None else ""
        raise ValueError(f"{name} must be >= {minimum}{upper}, got {value}")
    return value


def progress_callback(progress):
    """The progress callback of a long call: ``progress(desc, done, total)``.

    ``None``/``False``: silent. ``True``: INFO lines on the ``cosim`` logger (the command
    line decides how to show them). A callable is used as it is. Library code never prints.
    """
    if progress is None or progress is False:
        return _silent
    if progress is True:
        return _log_progress
    if callable(progress):
        return progress
    raise TypeError(f"progress must be None, a bool or a callable(desc, done, total), "
                    f"got {type(progress).__name__}")


def _silent(desc, done, total, **info):
    return None


def _log_progress(desc, done, total, **info):
    import logging
    # scalars only: array-valued details (spike counts, say) are for callables, not logs
    extra = "".join(f", {k} {v}" for k, v in info.items() if np.ndim(v) == 0)
    logging.getLogger("cosim").info("%s: %d/%d%s", desc, done, total, extra)
