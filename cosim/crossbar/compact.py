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

``program`` invalidates exactly what changed: reprogramming the same device states keeps the
factorisation, the transfer matrix and the cached reads.

Hardware-aware training: the backward pass goes through the array as it is read.
``linear_map()`` is the weight map M (IR drop included) for the linear read; ``map_gradient``
and ``vjp`` give the exact gradient with respect to the programmed weights through the wires
(adjoint of the nodal solve; for the nonlinear read the implicit-function theorem at the
converged Newton solution), chained through the mapping with quantisation, variability and
faults passed straight through (``cosim.crossbar.adjoint``). Read noise is not
differentiated. ``effective_weights`` stays the wire-free matrix the devices realise.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np

from .. import _validate as check
from ..devices import Memtransistor
from ..devices.mapping import Mapping
from . import adjoint, nodal
from .base import Crossbar

__all__ = ["Compact"]

READS = ("linear", "nonlinear")
SIGMA_MAX = Mapping.SIGMA_MAX          # lognormal spreads beyond e^3 per sigma: not a device
V_GATE_MAX = 100.0                     # V
R_WIRE = (1e-9, 1e12)                  # ohm per segment (0 = ideal wire)


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


class Compact(Crossbar):
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
    """

    name = "compact"
    physical_columns = 2        # G+ in bit line 2j, G- in 2j+1

    def __init__(self, device=None, r_word=1.0, r_bit=1.0, v_read=0.1, g_range=None, levels=None,
                 seed=0, read="linear", v_gate=None, w_max=None, program_sigma=0.0,
                 stuck_on_rate=0.0, stuck_off_rate=0.0, read_noise_sigma=0.0, d2d_sigma=0.0,
                 cache_size=4096):
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
        self._map = None
        self._cache = OrderedDict()
        self.stats = {"solves": 0, "cache_hits": 0, "factorisations": 0}

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
            self._cache.clear()

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
            self._solver = nodal.LinearArray(self._cell_conductance(), self.r_word, self.r_bit)
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

    def solution(self, x):
        """Full nodal solution (node voltages, currents) of one input vector x (R,)."""
        self._require_programmed()
        x = check.as_float_array("x", x, ndim=1)
        if x.shape[0] != self._weights.shape[0]:
            raise ValueError(f"x must have length {self._weights.shape[0]}, got {x.shape[0]}")
        V = self.v_read * x
        if self.read == "linear":
            return self._linear_solver().solve(V)
        return nodal.solve_nonlinear(self._cell(), V, self.r_word, self.r_bit,
                                     self._states.shape)

    def _cell(self):
        device, states, v_gate = self._array_device, self._states, self.v_gate

        def cell(v_w, v_b):
            return device.current_terminals(v_w, v_gate, v_b, states)
        return cell

    def _transfer_matrix(self):
        """Linear read: A (R, 2C) with sense currents = V @ A (amperes per volt)."""
        return self._linear_solver().transfer_matrix()

    def _currents(self, x):
        V = self.v_read * x
        if self.read == "linear":
            return self.mapping.apply_read_noise(V @ self._transfer_matrix(), self._rng)
        return self.mapping.apply_read_noise(self._nonlinear_currents(x, V), self._rng)

    def _nonlinear_currents(self, x, V):
        """Nonlinear read of a batch: cached patterns are reused, the rest solved together."""
        out = np.empty((x.shape[0], self._states.shape[1]))
        missing = {}
        for k in range(x.shape[0]):
            key = x[k].tobytes()
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
        sol = nodal.solve_nonlinear(self._cell(), V, self.r_word, self.r_bit, (rows, cols2),
                                    voltages=False)
        self.stats["solves"] += V.shape[0]
        return sol.currents

    def forward(self, x):
        if self.read == "linear" and self.read_noise_sigma == 0:
            return x @ self.weight_map()
        currents = self._currents(x)
        return (currents[:, 0::2] - currents[:, 1::2]) / (self.v_read * self._scale * self.read_factor)

    # -- gradients (hardware-aware training; the math is in cosim.crossbar.adjoint) ----------
    def linear_map(self):
        """The weight map M (IR drop included) for read="linear"; None for the nonlinear read.

        With read noise the forward pass is x @ M times (1 + σ N) per sense current; the
        backward pass uses M (the noise is not differentiated).
        """
        self._require_programmed()
        return self.weight_map() if self.read == "linear" else None

    def _to_amperes(self):
        """Sense amperes per output weight unit: out_j = (I_2j - I_2j+1) / (V_read s k)."""
        return 1.0 / (self.v_read * self._scale * self.read_factor)

    def _weight_gradient(self, grad_g, grad_scale):
        m = self.mapping
        return adjoint.mapping_gradient(self._weights, m.g_min, m.g_max, m.w_max, self._scale,
                                        grad_g, grad_scale)

    def map_gradient(self, grad_map):
        """Linear read: ∂L/∂W (R, C) from ∂L/∂M, exact through the IR drop.

        M = (A[:, 0::2] - A[:, 1::2]) / (s k) with A the transfer matrix of the cells g·k, so
        ∂L/∂A = ±∂L/∂M / (s k) on the G⁺ / G⁻ columns, ∂L/∂g = k ∂L/∂(g k) by the adjoint of
        the nodal solve, and ∂L/∂s = -Σ ∂L/∂M ⊙ M / s; then through the mapping.
        """
        if self.read != "linear":
            raise RuntimeError("map_gradient exists only for read='linear'; use vjp")
        self._require_programmed()
        grad_map = np.asarray(grad_map, dtype=np.float64)
        if grad_map.shape != self._weights.shape:
            raise ValueError(f"grad_map must have the weights' shape {self._weights.shape}, "
                             f"got {grad_map.shape}")
        per_volt = grad_map * (self._to_amperes() * self.v_read)     # 1 / (s k)
        grad_A = np.empty(self._states.shape)
        grad_A[:, 0::2] = per_volt
        grad_A[:, 1::2] = -per_volt
        grad_g = self.read_factor * adjoint.transfer_gradient(
            self._cell_conductance(), self.r_word, self.r_bit, grad_A)
        grad_scale = -float(np.sum(grad_map * self.weight_map())) / self._scale
        return self._weight_gradient(grad_g, grad_scale)

    def vjp(self, x, grad_out, weights=True):
        """(∂L/∂x, ∂L/∂W) of reads of x (N, R); exact for both reads (read noise aside).

        Nonlinear read: each distinct input pattern is solved again (warm Newton) and its
        adjoint taken at the converged node voltages (``adjoint.nonlinear_vjp``); the state
        enters the cell current as the factor g(w), so ∂i/∂g = i/g.
        """
        if self.read == "linear":
            return super().vjp(x, grad_out, weights)
        self._require_programmed()
        x = np.asarray(x, dtype=np.float64)
        grad_out = np.asarray(grad_out, dtype=np.float64)
        rows, cols2 = self._states.shape
        to_amps = self._to_amperes()
        cot = np.empty((x.shape[0], cols2))
        cot[:, 0::2] = grad_out * to_amps
        cot[:, 1::2] = -grad_out * to_amps
        grad_x = np.empty(x.shape)
        grad_g = np.zeros((rows, cols2))
        grad_scale = 0.0
        cell = self._cell()
        patterns = {}
        for k in range(x.shape[0]):
            patterns.setdefault(x[k].tobytes(), []).append(k)
        for idx in patterns.values():
            xk = x[idx[0]]
            V = self.v_read * xk
            if not np.any(V):                        # no drive: every node sits at 0 V
                w, b = np.zeros((rows, cols2)), np.zeros((rows, cols2))
            elif self.r_word == 0 and self.r_bit == 0:
                w, b = np.broadcast_to(V[:, None], (rows, cols2)), np.zeros((rows, cols2))
            else:
                sol = self.solution(xk)
                w, b = sol.word_voltages, sol.bit_voltages
            grad_V, grad_di = adjoint.nonlinear_vjp(cell, V, w, b, self.r_word, self.r_bit,
                                                    cot[idx])
            grad_x[idx] = self.v_read * grad_V
            if weights:
                i = cell(w, b)[0]
                grad_g += grad_di.sum(axis=0) * (i / self._g)
                # the sense currents: column sums of the cells (equal to the solver's own
                # currents by KCL; also right where no solve was needed)
                currents = i.sum(axis=0)
                out = (currents[0::2] - currents[1::2]) * to_amps
                grad_scale -= float(np.sum(grad_out[idx] @ out)) / self._scale
        return grad_x, (self._weight_gradient(grad_g, grad_scale) if weights else None)
