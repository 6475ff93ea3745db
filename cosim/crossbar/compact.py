"""Compact backend: memtransistor arrays solved exactly with wire IR drop (docs/array.md §1-4).

``program(W)`` maps the weights to a differential array (``cosim.devices.mapping``: one array
with two columns per output, G+ in column 2j, G- in column 2j+1) and the conductances to
device states. A read drives the drains of row i with V_read·x_i (word line i), holds the
gates at ``v_gate`` and collects the sources of each column in a virtual-ground sense node
(bit line). The output in weight units is

    out_j = (I_{2j} - I_{2j+1}) / (V_read · s · k)

with s the mapping scale (S per weight unit) and k = I_D(V_read, V_gate, w) / (V_read · g(w))
the read-point factor of the device (the same for every state w, because the state enters
I_D as a factor), so that with zero wire resistance and binary inputs ``out == x @ W_eff``.

Reads
-----
``read="linear"`` (default): each cell is the resistor g(w)·k, and the array is a linear
circuit: the per-step map is exactly linear in the word-line voltages, so ``program``
computes the transfer matrix once (one sparse factorisation, C solves) and folds the
differential pair and the scale into it; a step is then one dense (R × C) product.

``read="nonlinear"``: the full memtransistor I-V at the local node voltages (the gate is
referred to the channel midpoint, so IR drop changes each cell's gate drive): Newton on the
whole array with line Gauss-Seidel steps, all distinct patterns of a call solved together
(``nodal.solve_nonlinear``), KCL residual ≤ 1e-12. Results are kept per distinct input
pattern in a bounded LRU cache.

Periphery (EQUATIONS.md §7, :mod:`.periphery`): ``r_driver`` / ``r_sense`` are part of the
circuit (the nodal solvers' terminal segments), ``dac_bits`` rounds the inputs before the
read, ``adc_bits`` digitises every bit line's current before the pair is combined (then
``linear_map`` is None). ``power(x)`` gives the power of a read (sources, devices, wires),
``source_power(x)`` its cheap source term; ``cosim.energy`` integrates it over a run.

``program`` invalidates exactly what changed: reprogramming the same device states keeps the
factorisation, the transfer matrix and the cached reads.

Hardware-aware training: the backward pass goes through the array as it is read.
``linear_map()`` is the weight map M (IR drop included) for the linear read; ``map_gradient``
and ``vjp`` give the exact gradient with respect to the programmed weights through the wires
(adjoint of the nodal solve; for the nonlinear read the implicit-function theorem at the
converged Newton solution), chained through the mapping with quantisation, variability and
faults passed straight through (``cosim.crossbar.adjoint``). Read noise is not
differentiated. ``effective_weights`` stays the wire-free matrix the devices realise.
That half of the class is :class:`~.gradients.CompactGradients` (``gradients.py``); this
module is the construction, programming, read and power of the array.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict, deque

import numpy as np

from .. import _validate as check
from ..errors import SolverError
from ..devices import Memtransistor
from ..devices.mapping import Mapping
from . import nodal
from . import periphery as _periphery
from .base import Crossbar
from .gradients import CompactGradients
from .nodal import power as _power
from .nodal.power import TERMS as POWER_TERMS

__all__ = ["Compact"]

READS = ("linear", "nonlinear")
SIGMA_MAX = Mapping.SIGMA_MAX          # lognormal spreads beyond e^3 per sigma: not a device
V_GATE_MAX = 100.0                     # V
R_WIRE = (1e-9, 1e12)                  # ohm per segment (0 = ideal wire)
POWER_KCL_TOL = 1e-13                  # relative KCL residual of the solves behind power()
VOLTAGES_KEPT_BYTES = 2 ** 30          # converged node voltages kept for the adjoint (bytes)


def _bounded(name, value, lo, hi, what, closed=False):
    """A real number in (lo, hi) (or [lo, hi] with ``closed``): one error naming the range."""
    value = check.positive(name, value, allow_zero=True) if lo >= 0 else check.real(name, value)
    inside = (lo <= value <= hi) if closed else (lo < value < hi)
    if not inside:
        left, right = ("[", "]") if closed else ("(", ")")
        raise ValueError(f"{name} must lie in {left}{lo:g}, {hi:g}{right} ({what}), got {value!r}")
    return value


def _wire(name, r):
    """Segment resistance: 0 (ideal wire) or within R_WIRE ohm."""
    r = check.positive(name, r, allow_zero=True)
    if r != 0 and not R_WIRE[0] <= r <= R_WIRE[1]:
        raise ValueError(f"{name} must be 0 (ideal wire) or lie in [{R_WIRE[0]:g}, "
                         f"{R_WIRE[1]:g}] ohm per segment, got {r!r}")
    return r


def _read_limit(device) -> float:
    """The largest |V_DS| that leaves every state unchanged: min(v_on, |v_off|) (V)."""
    p = device.params
    return float(min(np.min(p["v_on"]), np.min(np.abs(p["v_off"]))))


class Compact(CompactGradients, Crossbar):
    """Memtransistor crossbar with exact IR drop.

    Parameters
    ----------
    device : :class:`~cosim.devices.Memtransistor` (default card when None).
    r_word, r_bit : wire segment resistances in ohms (>= 0).
    v_read : read voltage of an input spike on a word line (V), in (0, min(v_on, |v_off|)).
    g_range : (g_min, g_max) used by the mapping; default the device's range g(0)..g(1).
    levels : number of programmable conductance levels (None: continuous).
    seed : int or Generator for programming variability, faults and read noise.
    read : "linear" or "nonlinear" (see module docstring).
    v_gate : gate voltage of the rows during a read (default the device's v_gref).
    w_max : weight mapped to g_max (default max |W| at each program).
    program_sigma, stuck_on_rate, stuck_off_rate, read_noise_sigma : non-idealities.
    d2d_sigma : device-to-device spread of g_max (lognormal, in [0, 3]), drawn once per
        array: every cell is programmed to the state the nominal device needs for its
        target conductance and then conducts g_max,i g(w) = e^{sigma N_i} x the target.
    cache_size : distinct input patterns kept for nonlinear reads.
    r_driver : driver output resistance (ohm, >= 0) in series with every word-line source,
        before the first word segment (needs r_word > 0).
    r_sense : sense-amplifier input resistance (ohm, >= 0): every bit line ends in r_sense to
        ground after its last segment (0 = ideal virtual ground; needs r_bit > 0).
    dac_bits, x_max : input DAC resolution (None = ideal) over [0, V_read x_max]; x_max is
        the largest input the array accepts (1 for spikes). See :mod:`.periphery`.
    adc_bits, adc_range, adc_offset_sigma, adc_gain_sigma : output ADC per physical column
        (None = ideal; range in A or "auto"; seeded offset and gain errors).
    adc_bipolar : ADC window [-I_range, I_range] instead of [0, I_range] (default False).
    read_time : duration of one read (s), for energy (power x read_time).
    adc_energy, dac_energy : energy per ADC / DAC conversion (J).
    """

    name = "compact"
    physical_columns = 2        # G+ in bit line 2j, G- in 2j+1

    def __init__(self, device=None, r_word=1.0, r_bit=1.0, v_read=0.1, g_range=None, levels=None,
                 seed=0, read="linear", v_gate=None, w_max=None, program_sigma=0.0,
                 stuck_on_rate=0.0, stuck_off_rate=0.0, read_noise_sigma=0.0, d2d_sigma=0.0,
                 cache_size=4096, r_driver=0.0, r_sense=0.0, dac_bits=None, x_max=1.0,
                 adc_bits=None, adc_range="auto", adc_offset_sigma=0.0, adc_gain_sigma=0.0,
                 read_time=1e-8, adc_energy=0.0, dac_energy=0.0, adc_bipolar=False):
        super().__init__()
        if device is None:
            device = Memtransistor.default()
        if not isinstance(device, Memtransistor):
            raise TypeError(f"device must be a Memtransistor, got {type(device).__name__}")
        self.device = device
        self.r_word = _wire("r_word", r_word)
        self.r_bit = _wire("r_bit", r_bit)
        self.v_read = _bounded("v_read", v_read, 0.0, _read_limit(device),
                               "above 0 and below the device's programming thresholds "
                               "min(v_on, |v_off|), so that a read never programs")
        self.read = check.choice("read", read, READS)
        self.v_gate = float(device.params["v_gref"] if v_gate is None else
                            _bounded("v_gate", v_gate, -V_GATE_MAX, V_GATE_MAX,
                                     "a gate voltage in volts", closed=True))
        if g_range is None:
            g_range = device.g_range()
        if len(g_range) != 2:
            raise ValueError(f"g_range must be (g_min, g_max), got {g_range!r}")
        self.g_range = (float(g_range[0]), float(g_range[1]))
        self.levels = levels
        self.w_max = w_max
        self.program_sigma = program_sigma
        self.stuck_on_rate = stuck_on_rate
        self.stuck_off_rate = stuck_off_rate
        self.read_noise_sigma = read_noise_sigma
        self.d2d_sigma = _bounded("d2d_sigma", d2d_sigma, 0.0, SIGMA_MAX,
                                  "a lognormal spread (larger spreads exceed any device's "
                                  "on/off range)", closed=True)
        self.cache_size = check.integer("cache_size", cache_size, minimum=0)
        for name, value in _periphery.check_periphery(
                r_driver=r_driver, r_sense=r_sense, dac_bits=dac_bits, x_max=x_max,
                adc_bits=adc_bits, adc_range=adc_range, adc_offset_sigma=adc_offset_sigma,
                adc_gain_sigma=adc_gain_sigma, read_time=read_time, adc_energy=adc_energy,
                dac_energy=dac_energy, adc_bipolar=adc_bipolar).items():
            setattr(self, name, value)
        # a shorted line with a periphery resistor: refused here, once, with the solvers' error
        nodal.kcl.segment_conductance("r_word", self.r_word, "r_driver", self.r_driver)
        nodal.kcl.segment_conductance("r_bit", self.r_bit, "r_sense", self.r_sense)
        self.seed = seed
        # the mapping validates g_range, levels, sigmas and rates
        self.mapping = Mapping(g_min=self.g_range[0], g_max=self.g_range[1], w_max=w_max,
                               levels=levels, program_sigma=program_sigma,
                               stuck_on_rate=stuck_on_rate, stuck_off_rate=stuck_off_rate,
                               read_noise_sigma=read_noise_sigma)
        self._rng = check.rng(seed)
        self._array_device = None
        self._array_device_shape = None
        self._fault_draw = None            # uniform draws fixing the stuck cells of the array
        self._states = None
        self._states_key = None
        self._scale = None
        self._g = None
        self._effective = None
        self._solver = None
        # set by the first gradient (training): from then on keep what the adjoint reuses,
        # the linear read's column marching and the nonlinear reads' node voltages
        self._for_gradients = False
        self._map = None
        self._power_forms = None
        self._source_form_cache = None     # (SourceForm or None,) once per programming
        self._adc = None
        self._adc_errors = None
        self._cache = OrderedDict()
        self._terminal_cell = None
        self._voltages = {}                # pattern -> converged (drops, bit voltages)
        self._voltage_calls = deque()      # (bytes, patterns, drops) of each solve, oldest first
        self._voltage_bytes = 0
        # solves: nonlinear reads solved; adjoints: nonlinear reads differentiated (vjp)
        self.stats = {"solves": 0, "cache_hits": 0, "factorisations": 0, "adjoints": 0}

    # -- programming -------------------------------------------------------------------------
    def _program(self, weights):
        rows, cols = weights.shape
        if self._array_device is None or self._array_device_shape != (rows, 2 * cols):
            # device-to-device spread is a property of the physical array: drawn once
            self._array_device = (self.device.with_variability((rows, 2 * cols), self.d2d_sigma,
                                                               self._rng)
                                  if self.d2d_sigma > 0 else self.device)
            self._array_device_shape = (rows, 2 * cols)
            # stuck-at faults, too, belong to the physical array: reprogramming (after every
            # update in hardware-aware training) must not move them
            self._fault_draw = (self._rng.random((rows, 2 * cols))
                                if self.stuck_on_rate + self.stuck_off_rate > 0 else None)
            # ADC offset and gain errors belong to the physical array too: drawn once
            self._adc_errors = None
            if self.adc_bits is not None and (self.adc_offset_sigma or self.adc_gain_sigma):
                noise = self._rng.standard_normal((2, 2 * cols))
                self._adc_errors = (self.adc_offset_sigma * noise[0],
                                    1.0 + self.adc_gain_sigma * noise[1])
        programmed = self.mapping.to_conductances(weights, self._rng, fault_draw=self._fault_draw)
        # programming (the pulses) targets the nominal device; each cell then realises its
        # own g_max g(w): device-to-device spread scales every cell's conductance
        states = self.device.state_from_conductance(programmed.g)
        self._scale = programmed.scale
        self._g = self._array_device.conductance(states)
        self._effective = self.mapping.to_weights(self._g, self._scale)
        key = hashlib.sha256(states.tobytes() + repr((rows, cols)).encode()).hexdigest()
        if key != self._states_key:
            self._states, self._states_key = states, key
            self._solver = None
            self._map = None
            self._power_forms = None
            self._source_form_cache = None
            self._terminal_cell = None
            self._adc = None
            self._cache.clear()
            self._voltages.clear()
            self._voltage_calls.clear()
            self._voltage_bytes = 0

    @property
    def states(self) -> np.ndarray:
        """Device states w (R, 2C) of the programmed array."""
        self._require_programmed()
        return self._states.copy()

    @property
    def conductances(self) -> np.ndarray:
        """Small-signal conductances g(w) (R, 2C) in siemens."""
        self._require_programmed()
        return self._g.copy()

    @property
    def array_device(self) -> Memtransistor:
        """The device model of this array (per-cell g_max when d2d_sigma > 0)."""
        self._require_programmed()
        return self._array_device

    @property
    def scale(self) -> float:
        """Mapping scale s: siemens per weight unit."""
        self._require_programmed()
        return self._scale

    @property
    def read_factor(self) -> float:
        """k = I_D(V_read, V_gate) / (V_read g(w)): the device's read point, state-independent."""
        d = self.device
        i = d.current(self.v_read, self.v_gate, 1.0)
        return float(np.mean(i / (self.v_read * d.conductance(1.0))))

    @property
    def effective_weights(self):
        self._require_programmed()
        return self._effective.copy()

    # -- reading -----------------------------------------------------------------------------
    def _cell_conductance(self):
        return self._g * self.read_factor

    def _linear_solver(self):
        if self._solver is None:
            # training keeps the marching's blocks for the adjoint (gradients.map_gradient)
            self._solver = nodal.LinearArray(self._cell_conductance(), self.r_word, self.r_bit,
                                             r_driver=self.r_driver, r_sense=self.r_sense,
                                             keep_marching=self._for_gradients)
            self.stats["factorisations"] += 1
        return self._solver

    def weight_map(self) -> np.ndarray:
        """Linear read: M (R, C) with forward(x) = x @ M exactly (IR drop included)."""
        if self.read != "linear":
            raise RuntimeError("weight_map exists only for read='linear'")
        self._require_programmed()
        if self._map is None:
            transfer = self._transfer_matrix()                     # amperes per volt
            diff = transfer[:, 0::2] - transfer[:, 1::2]
            self._map = np.ascontiguousarray(diff / (self._scale * self.read_factor))
        return self._map

    def _plain_linear(self) -> bool:
        """A noise-free linear read with ideal converters: forward is exactly x @ weight_map."""
        return (self.read == "linear" and self.read_noise_sigma == 0
                and self.dac_bits is None and self.adc_bits is None)

    def linear_forward(self) -> bool:
        return self._plain_linear()

    def solution(self, x):
        """Full nodal solution (node voltages, currents) of one input vector x (R,)."""
        self._require_programmed()
        x = check.as_float_array("x", x, ndim=1)
        if x.shape[0] != self._weights.shape[0]:
            raise ValueError(f"x must have length {self._weights.shape[0]}, got {x.shape[0]}")
        V = self._word_voltages(x[None])[0]
        if self.read == "linear":
            return self._linear_solver().solve(V)
        return nodal.solve_nonlinear(self._cell(), V, self.r_word, self.r_bit,
                                     self._states.shape, r_driver=self.r_driver,
                                     r_sense=self.r_sense)

    def word_voltages(self, x) -> np.ndarray:
        """Word-line source voltages (..., R) (V) of inputs x (..., R), through the DAC."""
        return self._batched(self._word_voltages, x)

    def analog_currents(self, x) -> np.ndarray:
        """Noise-free sense currents (..., 2C) (A) of the circuit, before any ADC."""
        return self._batched(self._analog_currents, x)

    def _word_voltages(self, x):
        """Source voltages (B, R) (V) of inputs x (B, R): V_read times the DAC's levels."""
        return self.v_read * _periphery.dac(x, self.dac_bits, self.x_max)

    def _cell(self):
        """The programmed cells at the read's gate voltage: cell(v_w, v_b) -> (i, di/dv_w,
        di/dv_b), with the fused form the compiled nonlinear solver runs (one per
        programming: the solver keeps what it prepares for a cell with it)."""
        cell = self._terminal_cell
        if cell is None or cell.state is not self._states or cell.device is not \
                self._array_device or cell.v_g != self.v_gate:
            cell = self._terminal_cell = self._array_device.terminal_cell(self.v_gate,
                                                                         self._states)
        return cell

    def _transfer_matrix(self):
        """Linear read: A (R, 2C) with sense currents = V @ A (amperes per volt)."""
        return self._linear_solver().transfer_matrix()

    def _currents(self, x):
        """Sense currents (B, 2C) (A) as the ADCs report them (analog if adc_bits is None)."""
        analog = self.mapping.apply_read_noise(self._analog_currents(x), self._rng)
        return analog if self.adc_bits is None else self.adc()(analog)

    def _analog_currents(self, x):
        """Noise-free sense currents (B, 2C) (A) of inputs x (B, R), through the DAC."""
        V = self._word_voltages(x)
        if self.read == "linear":
            return V @ self._transfer_matrix()
        return self._nonlinear_currents(V)

    def adc(self) -> "_periphery.Adc":
        """The ADCs of the programmed array (range calibrated at programming when "auto")."""
        self._require_programmed()
        if self.adc_bits is None:
            raise RuntimeError("this backend has ideal readout (adc_bits=None)")
        if self._adc is None:
            cols2 = self._states.shape[1]
            if self.adc_range == "auto":
                # the largest sense current the array can deliver: every row at full input
                full = np.full((1, self._states.shape[0]), self.x_max)
                full_scale = float(np.abs(self._analog_currents(full)).max())
            else:
                full_scale = float(self.adc_range)
            offset, gain = (np.zeros(cols2), np.ones(cols2)) if self._adc_errors is None \
                else self._adc_errors
            self._adc = _periphery.Adc(self.adc_bits, full_scale, offset * full_scale, gain,
                                       bipolar=self.adc_bipolar)
        return self._adc

    # -- power and energy (EQUATIONS.md §7) ----------------------------------------------------
    def power(self, x) -> dict:
        """Power (W) of one read of each input x (..., R): a dict of arrays of shape (...,).

        ``"sources"`` P_src = Σ_i V_i I_i drawn from the ideal word-line sources;
        ``"devices"`` P_dev = Σ_cells I_cell (v_w - v_b); ``"wires"`` P_wire = Σ I² r over
        every segment, driver and sense resistors included.  Tellegen's theorem makes
        P_src = P_dev + P_wire.  V_i is V_read times the DAC's level of x_i.  For a linear
        read every term is a quadratic form V^T Q V, the Q (R x R) computed once per
        programming (:mod:`.nodal.power`); a nonlinear read solves the patterns.
        """
        return self._batched_dict(self._power, x)

    def source_power(self, x) -> np.ndarray:
        """P_src (W) of one read of each input x (..., R): the "sources" term of
        :meth:`power` alone (the cheap part: one quadratic form for a linear read)."""
        return self._batched(lambda xb: self._power(xb, ("sources",))["sources"][:, None],
                             x)[..., 0]

    def read_source_power(self, x) -> np.ndarray:
        """Unchecked :meth:`source_power` of reads x (B, R), finite floats validated by the
        caller: the hot path of :mod:`cosim.energy`, which evaluates all reads of a run."""
        return self._power(x, ("sources",))["sources"]

    def read_source_power_sums(self, sets, value, mask=None):
        """Summed P_src (W) of groups of spike reads, each driving its rows at the one input
        ``value`` (a finite float validated by the caller), given as bit sets ``sets``
        (G, W, R) uint64 (:meth:`.nodal.power.SourceForm.set_sums`, ``mask`` likewise):
        (G,), or None without a quadratic source form (a nonlinear read, a shorted line).
        Equal to the sum of :meth:`read_source_power` over each group's reads."""
        if self.read != "linear":
            return None
        form = self._source_form()
        if form is None:
            return None
        level = float(_periphery.dac(np.array([value]), self.dac_bits, self.x_max)[0])
        return (self.v_read * level) ** 2 * form.set_sums(sets, mask)

    def _batched_dict(self, method, x):
        """:meth:`_batched` for a method returning a dict of (B,) arrays."""
        flat, lead = self._flat_inputs(x)
        terms = method(flat)
        return {name: value.reshape(lead) for name, value in terms.items()}

    def _power(self, x, terms=POWER_TERMS):
        """Unchecked power terms of inputs x (B, R): dict name -> (B,) (W)."""
        if self.read == "linear" and tuple(terms) == ("sources",):
            form = self._source_form()
            if form is not None:                    # the cheap exact form: V^T Y V
                levels = _periphery.dac(x, self.dac_bits, self.x_max)
                return {"sources": self.v_read ** 2 * form(levels)}
        V = self._word_voltages(x)
        if self.read == "linear":
            array, forms = self._linear_power_forms()
            if forms:
                return forms.evaluate(V, terms)
            sol = array.solve(V, method="direct")
            i_dev = array.G * (sol.word_voltages - sol.bit_voltages)
            return _power.dissipation(i_dev, V, V[:, :, None] - sol.word_voltages,
                                      sol.bit_voltages, array.gw, array.gb, terms)
        return self._nonlinear_power(V, terms)

    def _source_form(self):
        """:class:`.nodal.power.SourceForm` of the programmed array's source admittance Y
        (``LinearArray.source_admittance``), or None without one (a shorted line, or too
        large): once per programming, like the power forms."""
        if self._source_form_cache is None:
            Y = self._linear_solver().source_admittance()
            self._source_form_cache = (None if Y is None else _power.SourceForm(Y),)
        return self._source_form_cache[0]

    def _linear_power_forms(self):
        """(nodal LinearArray, QuadraticForms or False when too large), once per programming
        (the array of the nodal solve: Spice reads its currents through ngspice instead)."""
        if self._power_forms is None:
            array = self._linear_solver()
            self._power_forms = (array, _power.QuadraticForms.build(array))
        return self._power_forms

    def _nonlinear_power(self, V, terms=POWER_TERMS):
        """Power terms of a nonlinear read: each distinct driven pattern solved once (with
        its node voltages, in chunks of about 2^22 cells); undriven reads draw nothing."""
        rows, cols2 = self._states.shape
        out = {name: np.zeros(V.shape[0]) for name in terms}
        driven = np.flatnonzero(np.any(V != 0, axis=1))
        if driven.size == 0:
            return out
        patterns, where = np.unique(V[driven], axis=0, return_inverse=True)
        gw = nodal.kcl.segment_conductance("r_word", self.r_word, "r_driver", self.r_driver)
        gb = nodal.kcl.segment_conductance("r_bit", self.r_bit, "r_sense", self.r_sense)
        chunk = max(1, 2 ** 22 // (rows * cols2))
        values = {name: np.empty(patterns.shape[0]) for name in terms}
        for k0 in range(0, patterns.shape[0], chunk):
            P = patterns[k0:k0 + chunk]
            # a tighter KCL tolerance than a read's where the solve reaches it: Tellegen's
            # balance of the three terms sums the residual over all nodes
            solve = (lambda tol: nodal.solve_nonlinear(
                self._cell(), P, self.r_word, self.r_bit, (rows, cols2),
                r_driver=self.r_driver, r_sense=self.r_sense, tol=tol))
            try:
                sol = solve(POWER_KCL_TOL)
            except SolverError:
                sol = solve(1e-12)                  # the read's own tolerance
            word_drops = sol.word_drops.reshape(P.shape[0], rows, cols2)
            bits = sol.bit_voltages.reshape(P.shape[0], rows, cols2)
            i_dev = np.asarray(self._cell()(P[:, :, None] - word_drops, bits)[0], dtype=float)
            for name, value in _power.dissipation(i_dev, P, word_drops, bits, gw, gb,
                                                  terms).items():
                values[name][k0:k0 + chunk] = value
        for name in terms:
            out[name][driven] = values[name][where.ravel()]
        return out

    def _nonlinear_currents(self, V):
        """Nonlinear read of a batch of source voltages V (B, R): cached patterns are
        reused, the rest solved together."""
        out = np.empty((V.shape[0], self._states.shape[1]))
        missing = {}
        for k in range(V.shape[0]):
            key = V[k].tobytes()
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                self.stats["cache_hits"] += 1
                out[k] = hit
            elif not np.any(V[k]):
                out[k] = 0.0
            else:
                missing.setdefault(key, []).append(k)
        if missing:
            first = [rows[0] for rows in missing.values()]
            solved = self._solve_patterns(V[first])
            for (key, rows), currents in zip(missing.items(), solved):
                out[rows] = currents
                if self.cache_size:
                    self._cache[key] = currents.copy()
                    if len(self._cache) > self.cache_size:
                        self._cache.popitem(last=False)
        return out

    def _solve_patterns(self, V):
        """Sense currents (K, 2C) of K distinct word-line voltage vectors (nonlinear read)."""
        rows, cols2 = self._states.shape
        out = np.empty((V.shape[0], cols2))
        if self.r_word == 0 and self.r_bit == 0:
            # no wires: every cell sees its own word-line voltage, bit lines sit at 0 V
            for k in range(V.shape[0]):
                i = self._array_device.current_terminals(V[k][:, None], self.v_gate, 0.0,
                                                         self._states)[0]
                out[k] = i.sum(axis=0)
            return out
        # nothing to keep for inference (nothing will ask for the voltages) nor through
        # r_driver / r_sense (no gradients through these)
        if self.r_driver or self.r_sense or not self._for_gradients:
            sol = nodal.solve_nonlinear(self._cell(), V, self.r_word, self.r_bit,
                                        (rows, cols2), voltages=False, r_driver=self.r_driver,
                                        r_sense=self.r_sense)
            self.stats["solves"] += V.shape[0]
            return sol.currents
        return self._solve_and_keep(V)

    def _solve_and_keep(self, V, voltages=False):
        """Nonlinear solve of distinct patterns V (K, R) in chunks: currents (K, 2C), and
        with ``voltages`` also the word drops and bit voltages (K, R, 2C).  The node
        voltages are kept (up to VOLTAGES_KEPT_BYTES, the oldest chunk's first out) for the
        adjoint of the same reads (:meth:`_node_voltages`), so training does not solve a
        read twice (once a gradient has been asked: inference keeps nothing)."""
        rows, cols2 = self._states.shape
        cur = np.empty((V.shape[0], cols2))
        chunks = []
        chunk = max(1, 2 ** 21 // (rows * cols2))
        cell = self._cell()
        for k0 in range(0, V.shape[0], chunk):
            part = slice(k0, min(V.shape[0], k0 + chunk))
            sol = nodal.solve_nonlinear(cell, V[part], self.r_word, self.r_bit, (rows, cols2))
            cur[part] = sol.currents
            self._keep_voltages(V[part], sol.word_drops, sol.bit_voltages)
            if voltages:                     # else the kept ones are bounded by _keep_voltages
                chunks.append((sol.word_drops, sol.bit_voltages))
        self.stats["solves"] += V.shape[0]
        if not voltages:
            return cur
        return (cur, np.concatenate([c[0] for c in chunks]),
                np.concatenate([c[1] for c in chunks]))

    def _keep_voltages(self, V, drops, bits):
        """Keep the solutions (drops, bits) (K, R, 2C) of the patterns V (K, R) as views of
        those arrays (no copies), forgotten a whole array at a time: the bytes counted are
        the bytes held."""
        held = drops.nbytes + bits.nbytes
        if not 0 < held <= VOLTAGES_KEPT_BYTES:
            return
        keys = [V[k].tobytes() for k in range(V.shape[0])]
        for k, key in enumerate(keys):
            self._voltages[key] = (drops[k], bits[k])
        self._voltage_calls.append((held, keys, drops))
        self._voltage_bytes += held
        while self._voltage_bytes > VOLTAGES_KEPT_BYTES:
            gone, old_keys, old_drops = self._voltage_calls.popleft()
            self._voltage_bytes -= gone
            for key in old_keys:
                kept = self._voltages.get(key)
                if kept is not None and kept[0].base is old_drops:      # not a newer solve's
                    del self._voltages[key]

    def _node_voltages(self, V):
        """Converged (word drops, bit voltages) (K, R, 2C) of the nonlinear reads of distinct
        driven patterns V (K, R): kept ones from the reads, the rest solved now."""
        rows, cols2 = self._states.shape
        drops = np.empty((V.shape[0], rows, cols2))
        bits = np.empty((V.shape[0], rows, cols2))
        missing = []
        for k in range(V.shape[0]):
            kept = self._voltages.get(V[k].tobytes())
            if kept is None:
                missing.append(k)
            else:
                drops[k], bits[k] = kept
        if missing:
            _, drops[missing], bits[missing] = self._solve_and_keep(V[missing], voltages=True)
        return drops, bits

    def forward(self, x):
        if self._plain_linear():
            return x @ self.weight_map()
        currents = self._currents(x)
        return (currents[:, 0::2] - currents[:, 1::2]) / (self.v_read * self._scale * self.read_factor)
