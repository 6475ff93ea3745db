"""ngspice back end: deck writer, runner and result cache.

A leaf package: it knows arrays of cells, voltages and ngspice -- nothing of networks,
neurons or learning.

- :mod:`cosim.spice.netlist`: :func:`crossbar_deck` (EQUATIONS.md section 5 topology with
  resistor or memtransistor cells; ``.op``, ``.tran`` PWL stimulus or ``.dc`` batch of input
  vectors), :func:`check_deck_safe`.
- :mod:`cosim.spice.ngspice`: :func:`find_ngspice`, :func:`run_op`, :func:`run_tran`,
  :func:`run_dc`, :class:`NgspiceSession` (load once, alter sources, rerun op),
  :func:`ngspice_calls`.
- :mod:`cosim.spice.cache`: :class:`SpiceCache`, :func:`cached_run_op`.
"""

from .cache import SpiceCache, cached_run, cached_run_dc, cached_run_op, cached_run_tran
from .netlist import (DEFAULT_LIBRARY, DEFAULT_PARAMS, PARAM_NAMES, check_deck_safe,
                      crossbar_deck, sense_vectors, state_vector)
from .ngspice import (NgspiceInfo, NgspiceSession, find_ngspice, ngspice_calls, parse_raw,
                      run_analysis, run_dc, run_op, run_tran, shared_available)

__all__ = [
    "DEFAULT_LIBRARY", "DEFAULT_PARAMS", "PARAM_NAMES", "check_deck_safe", "crossbar_deck",
    "sense_vectors", "state_vector", "NgspiceInfo", "NgspiceSession", "find_ngspice",
    "ngspice_calls", "parse_raw", "run_analysis", "run_dc", "run_op", "run_tran",
    "shared_available", "SpiceCache", "cached_run", "cached_run_dc", "cached_run_op",
    "cached_run_tran",
]
