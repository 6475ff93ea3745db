"""Spice backend: the array of :class:`~cosim.crossbar.compact.Compact`, solved by ngspice.

Same constructor arguments, mapping, device states and protocol as ``Compact``; only the
solve differs: every read is an ngspice analysis of the deck written by
``cosim.spice.netlist.crossbar_deck`` (topology of docs/array.md, gate lines of
docs/device.md). The cheapest exact way is used for each kind of read, and measured in
``benchmarks/bench_spice.py``:

* ``read="linear"``: the circuit is linear, so one ``.dc`` batch analysis with the R unit
  input vectors (V_read on one word line at a time) gives the whole transfer matrix; every
  timestep after that is one matrix product. This is exact: superposition holds to the
  solver's precision, which the tests check against per-pattern ``.op`` runs.
* ``read="nonlinear"``: memtransistor cells (the read-only subcircuit: state as a
  parameter).  Each programmed array keeps its own circuit loaded in ngspice's shared
  library (:mod:`cosim.spice.circuits`; ngspice holds several circuits and ``setcirc``
  switches between them), written once with EXTERNAL word-line sources whose values the
  library asks cosim for (``ngSpice_Init_Sync``'s ``GetVSRCData`` callback): a call with K
  new patterns -- all timesteps of a feed-forward layer, or one step of a recurrent
  layer -- is ONE ``dc Vidx 0 K-1 1`` sweep of that loaded circuit, sweep point k fed
  pattern k, at ``BATCH_TOLERANCES`` (each point starts from the previous one's solution).
  No call re-parses a deck and no array evicts another's circuit (at most 8 circuits /
  100k deck lines, ~0.6 GB, per process; the least recently read one goes first).  The
  circuit is removed when the array is reprogrammed or garbage collected.  Without the
  shared library (``engine="subprocess"``, or while another owner holds it) a call is one
  ``.dc`` batch deck (B-source word lines stepping through the patterns) in ``ngspice -b``.
  Repeated patterns come from an in-memory LRU cache.

Where a read's time goes (ngspice 46 + KLU, ``rusage``; 2-core machine shared with other
jobs, load ~1.3-1.9): parsing and subcircuit expansion 0.1 s (32x20 cells), ~0.5 s
(32x64), ~0.9 s (64x64), now paid once per programmed array (before: per ``.dc`` batch
call, and per step for every array but the one holding the only session).  Then every
sweep point costs its Newton iterations -- 4 at reltol 1e-11 whatever the order of the
patterns (81 for 20 points, random or nearest-neighbour ordered) -- ~11 ms each at 32x64
cells, ~30 ms at 64x64 (53 % device evaluation, ~4 us per B-source cell, 27 % KLU
re-factorisation, 232k fill-in non-zeros for 8.6k equations, the rest solve and
convergence checks); and every sweep ~40 ms on top at 32x64 (the first point starts
cold: one more iteration; KLU re-ordering ~9 ms; ngspice's per-analysis set-up) -- a
one-pattern read of 32x64 cells ~95 ms, of which ~57 ms Newton.  Only the sense currents
are saved (``.save``): keeping every node vector cost ~30 ms more per sweep at 32x64.  The
``GetVSRCData`` callbacks (one per source per iteration, ~5k per 20-point sweep of the
input array) are estimated at < 1 % of it.  The read cell takes
the gate voltage as a parameter (``memtransistor_read_on``): read through V(g), every gate
line couples the 2C cells of its row in the Jacobian, which doubled KLU's fill-in and
factor time.

Measured in ``benchmarks/bench_spice.py`` part 4 (SRNN 64-32-10 on Spice arrays, nonlinear
read, 4 samples x 20 steps, no cache, one thread, 2-core machine shared with other jobs):
per step a fresh ``ngspice -b`` deck of each of the 3 arrays 1840-2120 ms, this backend in
one process 188-207 ms: 9.4x-10.3x in six runs at load 0.2-2.7 (median 9.9x, >= 10x in 3
of them; CPU ratio 9.4-10.1x), 14.4-14.7x with two workers at load < 1.4.  The code before (one loaded session
per process, every other array's read a freshly parsed ``.dc`` deck) ran alternately with
it: 7.5x and 8.8x (236 and 202 ms per step) against 9.8x and 9.4x (188 and 197 ms).  Of
the ~195 ms, the 64x64-cell input array takes ~145 (4 Newton iterations x ~30 ms per
pattern, plus its one parse: 11 ms per step over 80 steps), the recurrent array ~41, the
output array ~6, the network itself ~6.  The input array's share is the floor of an exact
ngspice solve (tolerances do not change it: 81 iterations for 20 points at reltol 1e-11,
1e-9, and 80 at 1e-7); a fresh deck of that array costs ~9x it (parse ~0.9 s, op ~0.2 s).

Every analysis also goes through the on-disk cache of ``cosim.spice.cache`` (key: deck,
model library, ngspice version; for a sweep of a loaded circuit the deck is the loaded one
plus every swept pattern, in order, with all digits), so re-running the same comparison
costs no ngspice call.
Solver tolerances are tightened (reltol 1e-9, abstol 1e-18 A, vntol 1e-11 V) so that
ngspice and the compact solve agree to ~1e-12 rather than ngspice's default 1e-3 (tighter
settings cost ~40 % more time and gained nothing measurable: 3.2e-13 either way, 64×64).
"""

from __future__ import annotations

import warnings

import numpy as np

from ..spice import netlist
from ..errors import SolverError
from ..executors import map_in_processes   # independent reads in worker processes; its home
from ..spice.cache import SpiceCache, cached_run_dc, cached_run_op
from ..spice.circuits import LibraryBusy, LoadedCircuit
from ..spice.ngspice import find_ngspice, shared_available
from ..spice.results import positive_timeout
from . import nodal
from .compact import Compact
from .nodal import power as _power

__all__ = ["Spice", "TOLERANCES", "array_deck", "array_header", "map_in_processes"]

TOLERANCES = {"reltol": 1e-9, "abstol": 1e-18, "vntol": 1e-11}
#: tolerances of ``.dc`` batches: each point starts from the previous point's solution and
#: ngspice stops within reltol of it, which left a bit line carrying 1.6 % of the largest
#: current 2.3e-11 off at reltol 1e-9; reltol 1e-11 gives 2.7e-13 there at no measurable
#: cost (64x64 weights, 20 patterns: the parse dominates)
BATCH_TOLERANCES = dict(TOLERANCES, reltol=1e-11)
#: largest relative difference of the source power between the nodal solve and ngspice
POWER_RTOL = 1e-9


class Spice(Compact):
    """Crossbar backend solved by ngspice; see the module docstring.

    Extra parameters over ``Compact``: ``cache`` (a folder, a ``SpiceCache``, or False for
    none; default the user cache dir), ``engine`` ("auto", "shared", "subprocess") and
    ``timeout`` in seconds per analysis.
    """

    name = "spice"

    def __init__(self, device=None, r_word=1.0, r_bit=1.0, v_read=0.1, g_range=None, levels=None,
                 seed=0, read="linear", v_gate=None, w_max=None, program_sigma=0.0,
                 stuck_on_rate=0.0, stuck_off_rate=0.0, read_noise_sigma=0.0, d2d_sigma=0.0,
                 cache_size=4096, r_driver=0.0, r_sense=0.0, dac_bits=None, x_max=1.0,
                 adc_bits=None, adc_range="auto", adc_offset_sigma=0.0, adc_gain_sigma=0.0,
                 read_time=1e-8, adc_energy=0.0, dac_energy=0.0, adc_bipolar=False, cache=None,
                 engine="auto", timeout=600.0):
        self._loaded = None          # the loaded circuit of the programmed array (or None)
        self._loaded_range = (0.0, 0.0)   # the word-line voltages (V) it was written for
        super().__init__(device=device, r_word=r_word, r_bit=r_bit, v_read=v_read,
                         g_range=g_range, levels=levels, seed=seed, read=read, v_gate=v_gate,
                         w_max=w_max, program_sigma=program_sigma, stuck_on_rate=stuck_on_rate,
                         stuck_off_rate=stuck_off_rate, read_noise_sigma=read_noise_sigma,
                         d2d_sigma=d2d_sigma, cache_size=cache_size, r_driver=r_driver,
                         r_sense=r_sense, dac_bits=dac_bits, x_max=x_max, adc_bits=adc_bits,
                         adc_range=adc_range, adc_offset_sigma=adc_offset_sigma,
                         adc_gain_sigma=adc_gain_sigma, read_time=read_time,
                         adc_energy=adc_energy, dac_energy=dac_energy, adc_bipolar=adc_bipolar)
        self.info = find_ngspice()      # raises NgspiceNotFoundError with install help
        self.cache = cache
        self._disk_cache = None if cache is False else (
            cache if isinstance(cache, SpiceCache) else SpiceCache(cache))
        if engine not in ("auto", "shared", "subprocess"):
            raise ValueError(f"engine must be 'auto', 'shared' or 'subprocess', got {engine!r}")
        self.engine = engine
        self.timeout = positive_timeout(timeout)
        self.stats["spice_analyses"] = 0

    def __getstate__(self):
        # a loaded circuit belongs to this process's ngspice: a copy (another process,
        # a pickle) loads its own when it first needs it
        state = self.__dict__.copy()
        state["_loaded"] = None
        return state

    # -- decks -------------------------------------------------------------------------------
    def header(self) -> dict:
        return array_header(self)

    def deck(self, *, v_word=None, batch=None, stimulus=None, external=None, read_only=True,
             tstep=None, tstop=None, header=None):
        """The ngspice deck of this programmed array with the given stimulus (``external``:
        (lowest, highest) V of EXTERNAL word-line sources, for a loaded circuit)."""
        return array_deck(self, v_word=v_word, batch=batch, stimulus=stimulus,
                          external=external, read_only=read_only, tstep=tstep, tstop=tstop,
                          header=header, klu=self.info.klu)

    def _run_batch(self, V):
        """Sense currents (K, 2C) for K word-line voltage vectors in one .dc analysis."""
        cols2 = self._states.shape[1]
        names = netlist.sense_vectors(cols2)
        deck = self.deck(batch=V)
        # run_dc checks the point count and finiteness (SpiceError, deck and log kept)
        result = cached_run_dc(deck, names, cache=self._disk_cache if self._disk_cache else False,
                               timeout=self.timeout, engine=self.engine, points=V.shape[0])
        self.stats["spice_analyses"] += 1
        return np.stack([result[n] for n in names], axis=1)

    # -- solves (override Compact's) ---------------------------------------------------------
    def _transfer_matrix(self):
        if self._solver is None:
            rows = self._states.shape[0]
            unit = self.v_read * np.eye(rows)
            self._solver = self._run_batch(unit) / self.v_read     # amperes per volt
            self.stats["factorisations"] += 1
        return self._solver

    def _solve_patterns(self, V):
        self.stats["solves"] += V.shape[0]
        if self.engine != "subprocess" and shared_available():
            try:
                return self._sweep_loaded(V)
            except LibraryBusy:
                pass      # another owner holds the library: a batch deck, in a subprocess
        return self._run_batch(V)

    def _sweep_loaded(self, V):
        """Sense currents (K, 2C) of K patterns: one ``dc`` sweep of this array's loaded
        circuit (disk cache first).  The circuit is written for a range of word-line
        voltages (it chooses the read cell, as a batch deck's extremes do) and rewritten
        when a read leaves it."""
        cols2 = self._states.shape[1]
        names = netlist.sense_vectors(cols2)
        low, high = min(0.0, float(V.min())), max(0.0, float(V.max()))
        circuit = self._loaded
        covered_low, covered_high = self._loaded_range
        if circuit is None or not (covered_low <= low and high <= covered_high):
            if circuit is not None:
                low, high = min(low, covered_low), max(high, covered_high)
                self._close_loaded()
            circuit = LoadedCircuit(self.deck(external=(low, high)),
                                    [f"vin{i}" for i in range(self._states.shape[0])], names,
                                    timeout=self.timeout)
            self._loaded, self._loaded_range = circuit, (low, high)
        cache = self._disk_cache
        key = None
        if cache:
            # the analysis is the loaded deck swept through these patterns (full digits)
            points = "\n".join("* " + " ".join(repr(float(u)) for u in v) for v in V)
            key = cache.key(circuit.body + "* word-line voltages of the sweep points (V):\n"
                            + points + "\n", names, analysis=f"dc-loaded:{V.shape[0]}")
            hit = cache.get(key)
            if hit is not None and all(n in hit and np.size(hit[n]) == V.shape[0]
                                       for n in names):
                return np.stack([hit[n] for n in names], axis=1)
        circuit.timeout = self.timeout
        result = circuit.sweep(V)      # checked: finite, K points, every point fed
        self.stats["spice_analyses"] += 1
        if key is not None:
            try:
                cache.put(key, result)
            except OSError as exc:
                warnings.warn(f"could not write the SPICE cache at {cache.directory}: {exc}",
                              RuntimeWarning, stacklevel=2)
        return np.stack([result[n] for n in names], axis=1)

    # -- power (EQUATIONS.md §7) -------------------------------------------------------------
    def _linear_solver(self):
        # Spice reads its transfer matrix through ngspice (held in _solver); power and
        # solution() use the nodal solve of the same circuit, kept beside the power forms
        # (the power is cross-checked against ngspice by power())
        if self._power_forms is None:
            self._power_forms = (nodal.LinearArray(self._cell_conductance(), self.r_word,
                                                   self.r_bit, r_driver=self.r_driver,
                                                   r_sense=self.r_sense), None)
        return self._power_forms[0]

    def _linear_power_forms(self):
        array = self._linear_solver()
        if self._power_forms[1] is None:
            self._power_forms = (array, _power.QuadraticForms.build(array))
        return self._power_forms

    def source_power_spice(self, x) -> np.ndarray:
        """P_src (W) of one read of each input x (..., R) from ngspice's own source currents:
        -Σ_i V_i i(vin<i>) of an ``.op`` of this array's deck (one analysis per input)."""
        flat, lead = self._flat_inputs(x)
        V = self._word_voltages(flat)
        rows = V.shape[1]
        names = [f"i(vin{i})" for i in range(rows)]
        out = np.empty(V.shape[0])
        cache = self._disk_cache if self._disk_cache else False
        for k, v in enumerate(V):
            result = cached_run_op(self.deck(v_word=v), names, cache=cache,
                                   timeout=self.timeout, engine=self.engine)
            drawn = -np.array([float(np.ravel(result[n])[0]) for n in names])
            out[k] = float(v @ drawn)       # i(V) flows into the + node: drawn = -i(vin)
        self.stats["spice_analyses"] += V.shape[0]
        return out.reshape(lead)

    def power(self, x) -> dict:
        """:meth:`Compact.power` of this array, cross-checked against ngspice: the source
        power from the nodal solution must match :meth:`source_power_spice` to
        ``POWER_RTOL`` (a SolverError otherwise)."""
        terms = super().power(x)
        spice = self.source_power_spice(x)
        scale = max(float(np.max(np.abs(spice), initial=0.0)), 1e-300)
        worst = float(np.max(np.abs(terms["sources"] - spice), initial=0.0)) / scale
        if not worst <= POWER_RTOL:
            raise SolverError(f"source power of the nodal solution and of ngspice differ by "
                              f"{worst:.2e} relative (limit {POWER_RTOL:g})")
        return terms

    def _close_loaded(self):
        if self._loaded is not None:
            self._loaded.close()
        self._loaded = None

    def _program(self, weights):
        old_key = self._states_key
        super()._program(weights)
        if self._states_key != old_key:           # new states: the loaded circuit is stale
            self._close_loaded()

    def solution(self, x):
        """Node voltages of one read, from the compact nodal solve of this same array.

        (ngspice and the compact solver agree to ~1e-12 on it; to probe ngspice's own node
        voltages, write the deck with :meth:`deck` and read ``v(w<i>_<j>)``.)
        """
        return super().solution(x)


def array_header(backend) -> dict:
    """What a deck of a programmed Compact/Spice array holds beyond the array itself."""
    cols2 = backend.states.shape[1]
    return {"outputs": f"{cols2 // 2} (differential columns: bit line 2j = G+, 2j+1 = G- "
                       f"of output j)",
            "mapping": f"G in [{backend.g_range[0]!r}, {backend.g_range[1]!r}] S, "
                       f"scale {float(backend.scale)!r} S per weight unit, "
                       f"out_j = (I_2j - I_2j+1) / (V_read scale k), "
                       f"k = {backend.read_factor!r}",
            "read": f"{backend.read}, V_read {backend.v_read!r} V per input spike, "
                    f"V_gate {backend.v_gate!r} V",
            "periphery": f"r_driver {backend.r_driver!r} Ohm, r_sense {backend.r_sense!r} Ohm, "
                         f"dac_bits {backend.dac_bits!r}, adc_bits {backend.adc_bits!r}"}


def array_deck(backend, *, v_word=None, batch=None, stimulus=None, external=None, read=None,
               read_only=True, tstep=None, tstop=None, header=None, klu=True,
               include_relative_to=None,
               model_library=None, expected_currents=None) -> str:
    """An ngspice deck of a programmed Compact (or Spice) array with a stimulus.

    ``read`` ("linear": resistor cells of conductance g(w)·k; "nonlinear": memtransistor
    subcircuit instances with the programmed states) defaults to the backend's read.
    """
    backend._require_programmed()
    read = read or backend.read
    info = array_header(backend)
    if header:
        info.update(header)
    common = dict(r_word=backend.r_word, r_bit=backend.r_bit, r_driver=backend.r_driver,
                  r_sense=backend.r_sense, v_word=v_word, batch=batch, external=external,
                  stimulus=stimulus, klu=klu, header=info, tstep=tstep, tstop=tstop,
                  options=TOLERANCES if batch is None and external is None
                  else BATCH_TOLERANCES,
                  include_relative_to=include_relative_to,
                  expected_currents=expected_currents)
    if read == "linear":
        return netlist.crossbar_deck(conductances=backend.conductances * backend.read_factor,
                                     **common)
    device = backend.array_device
    rows = backend.states.shape[0]
    gate = np.full(rows, backend.v_gate)
    if stimulus is not None:
        gate = np.broadcast_to(gate, (len(stimulus[0]), rows))
    return netlist.crossbar_deck(states=backend.states, device_params=_device_params(device),
                                 state_map=device.state_map, read_only=read_only, v_gate=gate,
                                 model_library=model_library, **common)


def _device_params(device) -> dict:
    """Per-cell or scalar device parameters by PARAM_NAMES, as the netlist writer takes them."""
    out = {}
    for name, value in device.params.items():
        arr = np.asarray(value, dtype=float)
        out[name] = float(arr) if arr.ndim == 0 else arr
    return out
