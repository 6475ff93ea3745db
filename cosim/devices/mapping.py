r"""Weights to device conductances and back (docs/array.md §1).

A weight matrix :math:`W \in \mathbb{R}^{R \times C}` (rows = inputs, columns = outputs)
becomes a differential pair of conductances per weight:

.. math::

    G^+ = G_{min} + \max(W, 0)\, s, \qquad G^- = G_{min} + \max(-W, 0)\, s, \qquad
    s = (G_{max} - G_{min}) / w_{max}

with :math:`w_{max} = \max |W|` (or a fixed ``w_max``; weights beyond it are clipped, and an
all-zero W uses :math:`w_{max} = 1`). ``s`` is in siemens per weight unit. Inverse map:
:math:`W = (G^+ - G^-)/s` (``G_min`` cancels).

Physical layout: one array of shape (R, 2C) with two columns per output, interleaved:
column 2j holds :math:`G^+_{:,j}`, column 2j+1 holds :math:`G^-_{:,j}`
(:func:`interleave` / :func:`deinterleave`). With word-line voltages
:math:`V_i = V_{read} x_i` the ideal output in weight units is
:math:`(I^+_j - I^-_j)/(V_{read} s) = \sum_i x_i W_{ij}`.

Non-idealities of :meth:`Mapping.to_conductances`, applied in this order and all drawn from
one seeded generator (a fixed number of draws, so the fault pattern does not depend on the
programming sigma and vice versa):

1. quantisation to ``levels`` conductances evenly spaced in [G_min, G_max] (round to nearest);
2. programming variability :math:`G \leftarrow \mathrm{clip}(G e^{\sigma N}, G_{min}, G_{max})`,
   :math:`N \sim \mathcal{N}(0, 1)` per cell;
3. stuck-at faults: with :math:`U \sim \mathcal{U}[0, 1)` per cell, a cell is stuck ON
   (:math:`G_{max}`) if :math:`U < r_{on}` and stuck OFF (:math:`G_{min}`) if
   :math:`r_{on} \le U < r_{on} + r_{off}`.

Read noise (:meth:`Mapping.apply_read_noise`) is multiplicative Gaussian,
:math:`I \leftarrow I (1 + \sigma_r N)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np

from .. import _validate

__all__ = ["Mapping", "Programmed", "interleave", "deinterleave", "weights_to_states",
           "states_to_weights"]


class Programmed(NamedTuple):
    """Result of :meth:`Mapping.to_conductances`.

    ``g``: (R, 2C) conductances [S], interleaved (G+ in even, G- in odd columns);
    ``scale``: s [S per weight unit]; ``w_max``: the weight that maps to G_max - G_min;
    ``stuck``: int8 (R, 2C), +1 stuck ON, -1 stuck OFF, 0 healthy.
    """

    g: np.ndarray
    scale: float
    w_max: float
    stuck: np.ndarray


def interleave(g_pos, g_neg) -> np.ndarray:
    """(R, C), (R, C) -> (R, 2C) with column 2j = g_pos[:, j], column 2j+1 = g_neg[:, j]."""
    g_pos = _validate.as_float_array("g_pos", g_pos, ndim=2)
    g_neg = _validate.as_float_array("g_neg", g_neg, ndim=2)
    if g_pos.shape != g_neg.shape:
        raise ValueError(f"g_pos and g_neg must have the same shape, got {g_pos.shape} "
                         f"and {g_neg.shape}")
    out = np.empty((g_pos.shape[0], 2 * g_pos.shape[1]), dtype=np.float64)
    out[:, 0::2] = g_pos
    out[:, 1::2] = g_neg
    return out


def deinterleave(g):
    """(R, 2C) -> (g_pos, g_neg), each (R, C); the inverse of :func:`interleave`."""
    g = _validate.as_float_array("g", g, ndim=2)
    if g.shape[1] % 2:
        raise ValueError(f"g must have an even number of columns, got shape {g.shape}")
    return g[:, 0::2].copy(), g[:, 1::2].copy()


def _weights(W) -> np.ndarray:
    return _validate.as_float_array("W", W, ndim=2)


def _real(name, value, allow_none=False):
    if value is None and allow_none:
        return None
    return _validate.real(name, value)


def _sigma(name, value, hi, what):
    """A spread in [0, hi]: one error naming the range."""
    value = _validate.positive(name, value, allow_zero=True)
    if value > hi:
        raise ValueError(f"{name} must lie in [0, {hi:g}] ({what}), got {value!r}")
    return value


@dataclass(frozen=True)
class Mapping:
    """Weight-to-conductance mapping with optional non-idealities (seeded).

    ``g_min``, ``g_max`` [S]: conductance range (0 < g_min < g_max); ``w_max``: fixed weight
    scale or None (use max|W|); ``levels``: number of conductance levels (int >= 2) or None
    (analog); ``program_sigma``: lognormal programming variability; ``stuck_on_rate``,
    ``stuck_off_rate``: fault probabilities (sum <= 1); ``read_noise_sigma``: relative
    Gaussian read noise.  Spreads are bounded: ``program_sigma`` in [0, SIGMA_MAX],
    ``read_noise_sigma`` in [0, READ_NOISE_MAX].
    """

    SIGMA_MAX: ClassVar[float] = 3.0
    READ_NOISE_MAX: ClassVar[float] = 1.0

    g_min: float
    g_max: float
    w_max: float | None = None
    levels: int | None = None
    program_sigma: float = 0.0
    stuck_on_rate: float = 0.0
    stuck_off_rate: float = 0.0
    read_noise_sigma: float = 0.0

    def __post_init__(self):
        g_min = _real("g_min", self.g_min)
        g_max = _real("g_max", self.g_max)
        if not 0 < g_min < g_max:
            raise ValueError(f"need 0 < g_min < g_max, got g_min={g_min}, g_max={g_max}")
        w_max = self.w_max
        if w_max is not None:
            w_max = _validate.positive("w_max", w_max)
        levels = self.levels
        if levels is not None:
            levels = _validate.integer("levels", levels, minimum=2)
        sig = _sigma("program_sigma", self.program_sigma, self.SIGMA_MAX,
                     "a lognormal spread; beyond e^3 per sigma no device is meant")
        rsig = _sigma("read_noise_sigma", self.read_noise_sigma, self.READ_NOISE_MAX,
                      "a relative current noise; above 1 most reads change sign")
        r_on = _validate.positive("stuck_on_rate", self.stuck_on_rate, allow_zero=True)
        r_off = _validate.positive("stuck_off_rate", self.stuck_off_rate, allow_zero=True)
        if r_on > 1:
            raise ValueError(f"stuck_on_rate must be in [0, 1], got {r_on}")
        if r_off > 1:
            raise ValueError(f"stuck_off_rate must be in [0, 1], got {r_off}")
        if r_on + r_off > 1:
            raise ValueError("stuck_on_rate + stuck_off_rate must be <= 1")
        for name, value in (("g_min", g_min), ("g_max", g_max), ("w_max", w_max),
                            ("levels", levels), ("program_sigma", sig),
                            ("stuck_on_rate", r_on), ("stuck_off_rate", r_off),
                            ("read_noise_sigma", rsig)):
            object.__setattr__(self, name, value)

    @classmethod
    def for_device(cls, device, **kwargs) -> "Mapping":
        """A mapping over the device's range (g at w = 0, g at w = 1), see ``g_range``."""
        g_min, g_max = device.g_range()
        return cls(g_min=g_min, g_max=g_max, **kwargs)

    @property
    def ideal(self) -> bool:
        """True when no quantisation, variability or faults are configured."""
        return (self.levels is None and self.program_sigma == 0 and self.stuck_on_rate == 0
                and self.stuck_off_rate == 0)

    def scale_for(self, W) -> tuple[float, float]:
        """(s, w_max) for a weight matrix: s = (g_max - g_min)/w_max [S per weight unit]."""
        W = _weights(W)
        if self.w_max is not None:
            w_max = self.w_max
        else:
            w_max = float(np.max(np.abs(W))) if W.size else 0.0
            if w_max == 0.0:
                w_max = 1.0
        return (self.g_max - self.g_min) / w_max, w_max

    def ideal_conductances(self, W):
        """(G+, G-, s, w_max) without any non-ideality; W beyond ±w_max is clipped."""
        W = _weights(W)
        s, w_max = self.scale_for(W)
        Wc = np.clip(W, -w_max, w_max)
        g_pos = self.g_min + np.maximum(Wc, 0.0) * s
        g_neg = self.g_min + np.maximum(-Wc, 0.0) * s
        return g_pos, g_neg, s, w_max

    def to_conductances(self, W, rng=None, fault_draw=None) -> Programmed:
        """Map W (R, C) to an interleaved (R, 2C) conductance array with non-idealities.

        ``rng``: int seed, numpy Generator or None (seed 0). See the module docstring for
        the order of quantisation, programming variability and stuck-at faults.
        ``fault_draw``: the uniform draws U (R, 2C) that decide the stuck cells; a physical
        array passes the same U at every reprogramming (a stuck cell stays stuck), while the
        programming error is drawn anew at each write. None: drawn from ``rng``.
        """
        g_pos, g_neg, s, w_max = self.ideal_conductances(W)
        g = interleave(g_pos, g_neg)
        stuck = np.zeros(g.shape, dtype=np.int8)
        if self.ideal:
            return Programmed(g, s, w_max, stuck)
        gen = _validate.rng(rng)
        normal = gen.standard_normal(g.shape)
        uniform = gen.random(g.shape)
        if fault_draw is not None:
            fault_draw = np.asarray(fault_draw, dtype=np.float64)
            if fault_draw.shape != g.shape:
                raise ValueError(f"fault_draw must have shape {g.shape}, got {fault_draw.shape}")
            uniform = fault_draw
        if self.levels is not None:
            step = (self.g_max - self.g_min) / (self.levels - 1)
            g = self.g_min + np.round((g - self.g_min) / step) * step
            g = np.clip(g, self.g_min, self.g_max)
        if self.program_sigma > 0:
            g = np.clip(g * np.exp(self.program_sigma * normal), self.g_min, self.g_max)
        on = uniform < self.stuck_on_rate
        off = ~on & (uniform < self.stuck_on_rate + self.stuck_off_rate)
        g = np.where(on, self.g_max, np.where(off, self.g_min, g))
        stuck[on] = 1
        stuck[off] = -1
        return Programmed(g, s, w_max, stuck)

    def level_values(self) -> np.ndarray:
        """The allowed conductances [S] when ``levels`` is set (None otherwise)."""
        if self.levels is None:
            return None
        return np.linspace(self.g_min, self.g_max, self.levels)

    @staticmethod
    def to_weights(g, scale) -> np.ndarray:
        """Effective weights (R, C) = (G+ - G-)/s of an interleaved (R, 2C) array."""
        g_pos, g_neg = deinterleave(g)
        scale = _validate.positive("scale", scale)
        return (g_pos - g_neg) / scale

    def apply_read_noise(self, currents, rng=None) -> np.ndarray:
        """currents * (1 + read_noise_sigma * N(0, 1)), seeded; unchanged copy at sigma 0."""
        currents = _validate.as_float_array("currents", currents)
        if self.read_noise_sigma == 0:
            return currents.copy()
        gen = _validate.rng(rng)
        return currents * (1.0 + self.read_noise_sigma * gen.standard_normal(currents.shape))


def weights_to_states(W, device, mapping: Mapping | None = None, rng=None):
    """Device states (R, 2C) that realise W, and the scale s [S per weight unit].

    Conductances come from ``mapping.to_conductances(W, rng)`` (default mapping:
    ``Mapping.for_device(device)``, i.e. (g at w = 0, g at w = 1)); each target is clipped to
    the range of its own device (relevant when ``device.g_max`` is an array) and converted
    with ``device.state_from_conductance``. Passing the actual (variable) device models
    ideal write-verify programming; passing the nominal device models open-loop
    programming whose error appears when the states are read with the actual devices.
    """
    if mapping is None:
        mapping = Mapping.for_device(device)
    prog = mapping.to_conductances(W, rng)
    g_lo = np.asarray(device.g_max, dtype=np.float64) / device.r_sw
    g_hi = np.asarray(device.g_max, dtype=np.float64)
    g = np.clip(prog.g, g_lo, g_hi)
    return device.state_from_conductance(g), prog.scale


def states_to_weights(states, device, scale, g_min=None) -> np.ndarray:
    """Effective weights (R, C) = (G+ - G-)/s with G = ``device.conductance(states)``.

    ``g_min`` is accepted for symmetry with the forward map but not needed: it cancels in
    G+ - G-.
    """
    states = _validate.as_float_array("states", states, ndim=2)
    if g_min is not None:
        _real("g_min", g_min)
    g = device.conductance(states)
    return Mapping.to_weights(g, scale)
