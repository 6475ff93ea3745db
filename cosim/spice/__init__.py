"""ngspice back end: deck writer, runner and result cache.

A leaf package: it knows arrays of cells, voltages and ngspice -- nothing of networks,
neurons or learning.

- :mod:`cosim.spice.netlist`: :func:`crossbar_deck` (docs/array.md topology) from
  a stimulus (:mod:`~cosim.spice.stimuli`: ``.op``, ``.tran`` PWL, ``.dc`` batch, EXTERNAL
  word lines of a loaded circuit) and a cell
  writer (resistor / memtransistor cells, the device card once per deck);
  :mod:`~cosim.spice.deck_text`: exact numbers, safe ``.include`` and comment lines.
- :mod:`cosim.spice.safety`: :func:`check_deck_safe`, :func:`resolve_deck` (every included
  file checked and inlined).
- :mod:`cosim.spice.ngspice`: :class:`NgspiceEngine` (executable, shared library and its
  owner, process groups), :data:`~cosim.spice.ngspice.ENGINE`, :func:`run_op`,
  :func:`run_tran`, :func:`run_dc`, :class:`NgspiceSession` (load once, alter sources,
  rerun op), :func:`ngspice_calls`; :mod:`~cosim.spice.libngspice` (ctypes binding),
  :mod:`~cosim.spice.rawfile`, :mod:`~cosim.spice.results` (checks shared by both engines).
- :mod:`cosim.spice.circuits`: :class:`~cosim.spice.circuits.LoadedCircuit` (a deck parsed
  once, kept loaded beside others, swept through patterns fed to its EXTERNAL sources),
  :data:`~cosim.spice.circuits.POOL` (the loaded circuits of the process, bounded).
- :mod:`cosim.spice.cache`: :class:`SpiceCache`, :func:`cached_run_op`.
"""

from .cache import SpiceCache, cached_run, cached_run_dc, cached_run_op, cached_run_tran
from .netlist import (DEFAULT_LIBRARY, DEFAULT_PARAMS, PARAM_NAMES, check_deck_safe,
                      crossbar_deck, sense_vectors, state_vector)
from .ngspice import (ENGINE, NgspiceEngine, NgspiceInfo, NgspiceSession, find_ngspice,
                      ngspice_calls, parse_raw, run_analysis, run_dc, run_op, run_tran,
                      shared_available)

__all__ = [
    "DEFAULT_LIBRARY", "DEFAULT_PARAMS", "PARAM_NAMES", "check_deck_safe", "crossbar_deck",
    "sense_vectors", "state_vector", "ENGINE", "NgspiceEngine", "NgspiceInfo",
    "NgspiceSession", "find_ngspice",
    "ngspice_calls", "parse_raw", "run_analysis", "run_dc", "run_op", "run_tran",
    "shared_available", "SpiceCache", "cached_run", "cached_run_dc", "cached_run_op",
    "cached_run_tran",
]
