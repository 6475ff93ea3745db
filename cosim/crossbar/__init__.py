"""Crossbar backends: one protocol (``base.Crossbar``), several ways to compute the currents."""

from .base import Crossbar
from .compact import Compact
from .ideal import Ideal
from .spice import Spice        # needs only the spice/ leaf; ngspice is looked for on use
from .tiling import Tiled, tile_slices

__all__ = ["Crossbar", "Ideal", "Compact", "Spice", "Tiled", "tile_slices", "make_crossbar",
           "register"]

_BACKENDS = {"ideal": Ideal, "compact": Compact, "spice": Spice, "tiled": Tiled}


def register(name, cls):
    """Make a backend class reachable by name from ``make_crossbar``."""
    _BACKENDS[name] = cls


def make_crossbar(spec) -> Crossbar:
    """A backend from a name ("ideal", "compact", "spice", "tiled") or a ``Crossbar``."""
    if isinstance(spec, Crossbar):
        return spec
    if isinstance(spec, str):
        key = spec.lower()
        if key not in _BACKENDS:
            raise ValueError(f"crossbar must be one of {sorted(_BACKENDS)} or a Crossbar "
                             f"instance, got {spec!r}")
        return _BACKENDS[key]()
    raise TypeError(f"crossbar must be a name or a Crossbar instance, got {type(spec).__name__}")
