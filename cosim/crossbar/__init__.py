"""Crossbar backends: one protocol (``base.Crossbar``), several ways to compute the currents."""

from .base import Crossbar
from .ideal import Ideal

__all__ = ["Crossbar", "Ideal", "make_crossbar"]

_BACKENDS = {"ideal": Ideal}


def register(name, cls):
    """Make a backend class reachable by name from ``make_crossbar``."""
    _BACKENDS[name] = cls


def make_crossbar(spec) -> Crossbar:
    """A backend from a name ("ideal", "compact", "spice") or a ``Crossbar`` instance."""
    if isinstance(spec, Crossbar):
        return spec
    if isinstance(spec, str):
        key = spec.lower()
        if key not in _BACKENDS:
            _load_optional(key)
        if key not in _BACKENDS:
            raise ValueError(f"crossbar must be one of {sorted(set(_BACKENDS) | {'compact', 'spice'})} "
                             f"or a Crossbar instance, got {spec!r}")
        return _BACKENDS[key]()
    raise TypeError(f"crossbar must be a name or a Crossbar instance, got {type(spec).__name__}")


def _load_optional(key):
    # Physical backends import heavier modules; load them only when asked for by name.
    if key == "compact":
        try:
            from .compact import Compact
        except ImportError:
            return
        _BACKENDS["compact"] = Compact
    elif key == "spice":
        try:
            from .spice import Spice
        except ImportError:
            return
        _BACKENDS["spice"] = Spice

from .compact import Compact  # noqa: E402

register("compact", Compact)
__all__.append("Compact")

try:  # the spice backend needs only the spice/ leaf; ngspice itself is checked on use
    from .spice import Spice  # noqa: E402
except ImportError:  # pragma: no cover
    Spice = None
else:
    register("spice", Spice)
    __all__.append("Spice")

from .tiling import Tiled, tile_slices  # noqa: E402

register("tiled", Tiled)
__all__ += ["Tiled", "tile_slices"]
