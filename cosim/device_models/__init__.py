"""Device files shipped inside the cosim package (read with :mod:`importlib.resources`).

* ``mos2_memtransistor.toml``: the default device card -- the one source of the default
  device parameters (:func:`default_parameters`).
* ``memtransistor.lib``: the ngspice subcircuits of the compact model (same equations as
  :mod:`cosim.devices.memtransistor`, docs/device.md); decks include it, and
  ``cosim netlist`` copies it next to the decks it writes.
"""

from __future__ import annotations

import tomllib
from importlib.resources import files
from pathlib import Path

__all__ = ["LIBRARY", "DEFAULT_CARD", "default_parameters", "default_state_map"]

_HERE = files(__name__)

#: The ngspice subcircuit library of the memtransistor model.
LIBRARY = Path(str(_HERE.joinpath("memtransistor.lib")))
#: The default MoS2 memtransistor card.
DEFAULT_CARD = Path(str(_HERE.joinpath("mos2_memtransistor.toml")))


def _card() -> dict:
    with open(DEFAULT_CARD, "rb") as fh:
        return tomllib.load(fh)


def default_parameters() -> dict[str, float]:
    """The ``[parameters]`` of the default card, name -> float, in the card's order."""
    return {k: float(v) for k, v in _card()["parameters"].items()}


def default_state_map() -> str:
    """The default card's ``state_map`` ("linear" or "exponential")."""
    return str(_card()["device"].get("state_map", "linear"))
