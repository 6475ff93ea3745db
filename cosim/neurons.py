"""Spiking neurons: one base class, three dynamics (docs/equations.md §1).

Every neuron type shares the state handling, the threshold test, the reset, the refractory
period, the synaptic delay buffer and the noise injection; these live only in
:class:`Neuron`. A subclass defines only how the membrane voltage moves (``_dynamics``) and,
for ALIF, the adaptive threshold (``_threshold``).

Per step, with input current I_t (weight units, after the delay buffer and noise):

=====  ===========================================  ===========================================
type   voltage before the threshold test v'_t        threshold A_t
=====  ===========================================  ===========================================
IF     v'_t = v_{t-1} + I_t                          A_t = thr
LIF    v'_t = α v_{t-1} + (1 - α) I_t, α=e^{-dt/τ}   A_t = thr
ALIF   v'_t = α v_{t-1} + (1 - α) I_t                A_t = thr + β b_t,
                                                     b_t = ρ b_{t-1} + (1 - ρ) z_{t-1},
                                                     ρ = e^{-dt/τ_a}
=====  ===========================================  ===========================================

* spike  z_t = H(v'_t - A_t) with H(0) = 0, forced to 0 while refractory;
* reset  ``"zero"``: v_t = v'_t (1 - z_t); ``"subtract"``: v_t = v'_t - z_t A_t;
* refractory: for ``n_refractory`` steps after a spike, z = 0 and v is held at 0;
* delays: ``step`` takes either a current (batch, n) that arrives now (delay 1), or a
  current (batch, n_delay, n) whose slice d-1 holds the part of synapses with delay d, which
  arrives d-1 steps later.

Fixes with respect to the source notebook this module replaces:

1. IF's dynamics used names it never defined (``thr``, ``n_refractory``, ``add_current``):
   all parameters are now constructor arguments stored on the instance and validated.
2. The spike was decided on the *old* voltage, adding one step of latency: the threshold
   test now uses the new voltage v'_t.
3. ALIF called a method that did not exist and used an undefined ``V0``: the adaptive
   threshold is one method, ``ALIF._threshold``, and the threshold baseline is ``thr``.
4. LIF and IF ignored the mission's reset to zero: ``reset="zero"`` is the default for all
   three, ``"subtract"`` (LSNN) is an option.
5. Noise was drawn from numpy's global, unseeded generator: each neuron owns a
   ``numpy.random.Generator`` built from ``seed`` (an int or a Generator).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import NamedTuple

import numpy as np

from . import _validate as check
from .surrogate import PiecewiseLinear

__all__ = ["NeuronState", "StepTrace", "Neuron", "IF", "LIF", "ALIF", "make_neuron"]

RESETS = ("zero", "subtract")
_NEVER = np.False_      # the refractory mask of a population without a refractory period


class NeuronState(NamedTuple):
    """State of a population for a batch. All arrays are (batch, n) except ``buffer``."""

    v: np.ndarray           # membrane voltage after reset
    z: np.ndarray           # spikes of the last step (0.0 / 1.0)
    b: np.ndarray           # threshold adaptation (stays 0 for IF and LIF)
    refractory: np.ndarray  # steps of refractoriness left (int)
    buffer: np.ndarray      # (batch, n_delay, n): current still to arrive, slot k in k steps


class StepTrace(NamedTuple):
    """What a step computed besides the new state; the backward passes need it."""

    current: np.ndarray     # I_t after delay buffer and noise
    v_pre: np.ndarray       # v'_t, the voltage tested against the threshold
    threshold: np.ndarray   # A_t, (batch, n) or broadcastable to it
    refractory: np.ndarray  # bool mask (or False): the unit was refractory during this step


class Neuron:
    """Base of all neuron types; subclasses define only ``_dynamics`` (and ``_threshold``).

    Parameters
    ----------
    n : number of units.
    thr : firing threshold (scalar or one value per unit), > 0.
    dt : step length, > 0.
    n_refractory : steps during which a unit that just fired stays silent at v = 0.
    reset : ``"zero"`` (v -> 0 after a spike) or ``"subtract"`` (v -> v - A).
    noise_std : standard deviation of Gaussian current noise added each step (>= 0).
    n_delay : length of the synaptic delay buffer (>= 1).
    seed : int, ``numpy.random.SeedSequence`` or ``numpy.random.Generator`` for the noise.
    """

    kind = "neuron"
    #: spike function used forward (Heaviside) and its pseudo-derivative used backward; a
    #: :class:`~cosim.surrogate.SmoothSpike` here makes the whole network differentiable.
    surrogate = PiecewiseLinear()

    def __init__(self, n, thr=0.03, dt=1.0, n_refractory=0, reset="zero", noise_std=0.0,
                 n_delay=1, seed=None):
        self.n = check.integer("n", n, minimum=1)
        self.thr = self._per_unit("thr", thr)
        self.dt = check.positive("dt", dt)
        self.n_refractory = check.integer("n_refractory", n_refractory, minimum=0)
        self.reset = check.choice("reset", reset, RESETS)
        self.noise_std = check.positive("noise_std", noise_std, allow_zero=True)
        self.n_delay = check.integer("n_delay", n_delay, minimum=1)
        self.seed = seed
        self._rng = check.rng(seed)

    # -- what a subclass defines ------------------------------------------------------------
    def _dynamics(self, v: np.ndarray, current: np.ndarray, c) -> np.ndarray:
        """Return v'_t from v_{t-1} and I_t (``c``: the coefficients in the state's dtype)."""
        raise NotImplementedError

    def _threshold(self, state: NeuronState, c) -> tuple[np.ndarray, np.ndarray]:
        """Return (A_t, b_t). Fixed threshold unless a subclass adapts it."""
        return c.thr, state.b

    def _coefficients(self) -> dict:
        """The per-unit arrays a step uses, by name (float64 masters)."""
        return {"thr": self.thr}

    def voltage_coefficients(self, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
        """(∂v'/∂v_{t-1}, ∂v'/∂I_t) per unit; the dynamics are linear in both."""
        raise NotImplementedError

    def adaptation_coefficients(self, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
        """(ρ, β) per unit of b_t = ρ b_{t-1} + (1-ρ) z_{t-1}, A_t = thr + β b_t."""
        zeros = np.zeros(self.n, dtype=dtype)
        return zeros, zeros

    def coefficients(self, dtype=np.float64) -> SimpleNamespace:
        """The step's coefficients cast to ``dtype`` (cached: parameters are fixed after
        construction), so a float32 state is stepped in float32 throughout."""
        dtype = np.dtype(dtype)
        cache = self.__dict__.setdefault("_coefficient_cache", {})
        found = cache.get(dtype)
        if found is None:
            found = SimpleNamespace(**{k: np.asarray(v, dtype=dtype)
                                       for k, v in self._coefficients().items()})
            cache[dtype] = found
        return found

    # -- shared machinery -------------------------------------------------------------------
    def _per_unit(self, name, value) -> np.ndarray:
        arr = check.positive_array(name, value)
        if arr.ndim > 1 or (arr.ndim == 1 and arr.shape[0] != self.n):
            raise ValueError(f"{name} must be a scalar or have shape ({self.n},), got {arr.shape}")
        return np.broadcast_to(arr, (self.n,)).copy()

    @property
    def params(self) -> dict:
        """Constructor arguments (arrays as lists) so a neuron can be rebuilt or saved."""
        out = {"n": self.n, "thr": self.thr.tolist(), "dt": self.dt,
               "n_refractory": self.n_refractory, "reset": self.reset,
               "noise_std": self.noise_std, "n_delay": self.n_delay}
        out.update(self._extra_params())
        return out

    def _extra_params(self) -> dict:
        return {}

    def zero_state(self, batch_size: int, dtype=np.float64) -> NeuronState:
        """All units at rest: v = z = b = 0, not refractory, empty delay buffer.

        ``dtype`` (float64 or float32) is the precision every later step keeps.
        """
        batch_size = check.integer("batch_size", batch_size, minimum=1)
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float64), np.dtype(np.float32)):
            raise ValueError(f"dtype must be float64 or float32, got {dtype}")
        shape = (batch_size, self.n)
        return NeuronState(v=np.zeros(shape, dtype), z=np.zeros(shape, dtype),
                           b=np.zeros(shape, dtype), refractory=np.zeros(shape, dtype=np.int64),
                           buffer=np.zeros((batch_size, self.n_delay, self.n), dtype))

    def step(self, current, state: NeuronState) -> tuple[np.ndarray, NeuronState]:
        """Advance one step: ``z, state = neuron.step(current, state)``.

        ``current`` is (batch, n) (arrives now) or (batch, n_delay, n) (slice d-1 arrives
        d-1 steps from now). Returns the spikes z_t (batch, n) of 0.0/1.0 and the new state.
        """
        current = check.as_float_array("current", current, ndim=(2, 3))
        batch = state.v.shape[0]
        if current.ndim == 2 and current.shape != (batch, self.n):
            raise ValueError(f"current must have shape ({batch}, {self.n}), got {current.shape}")
        if current.ndim == 3 and current.shape != (batch, self.n_delay, self.n):
            raise ValueError(f"current must have shape ({batch}, {self.n_delay}, {self.n}), "
                             f"got {current.shape}")
        z, state, _ = self.advance(current, state)
        return z, state

    def advance(self, current: np.ndarray, state: NeuronState):
        """Unchecked step used in hot loops; returns (z, state, StepTrace)."""
        if current.ndim == 2:
            # everything arrives now, on top of what earlier steps scheduled for now
            buffer = state.buffer
            arriving = current if self.n_delay == 1 else buffer[:, 0] + current
        else:
            buffer = state.buffer + current
            arriving = buffer[:, 0]
        if self.n_delay > 1:
            # slot 0 has been consumed; every other slot moves one step closer
            buffer = np.concatenate([buffer[:, 1:], np.zeros_like(buffer[:, :1])], axis=1)
        elif current.ndim == 3:
            buffer = np.zeros_like(buffer)
        dtype = state.v.dtype
        if self.noise_std > 0:
            noise = self._rng.normal(0.0, self.noise_std, arriving.shape)
            arriving = arriving + noise.astype(dtype, copy=False)
        if arriving.dtype != dtype:
            arriving = arriving.astype(dtype)
        c = self.coefficients(dtype)

        v_pre = self._dynamics(state.v, arriving, c)
        threshold, b = self._threshold(state, c)
        if self.surrogate.smooth:
            z = self.surrogate.spike(v_pre, threshold)
        else:
            z = (v_pre > threshold).astype(dtype)
        if self.n_refractory:
            refractory_now = state.refractory > 0
            z[refractory_now] = 0.0
        else:
            refractory_now = _NEVER
        if self.reset == "zero":
            v = v_pre * (1.0 - z)
        else:
            v = v_pre - z * threshold
        if self.n_refractory:
            v[refractory_now] = 0.0
            refractory = np.where(z > 0, self.n_refractory, np.maximum(state.refractory - 1, 0))
        else:
            refractory = state.refractory
        new_state = NeuronState(v=v, z=z, b=b, refractory=refractory, buffer=buffer)
        trace = StepTrace(current=arriving, v_pre=v_pre, threshold=threshold,
                          refractory=refractory_now)
        return z, new_state, trace

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items() if k != "n")
        return f"{type(self).__name__}({self.n}, {args})"


class IF(Neuron):
    """Integrate-and-fire: v'_t = v_{t-1} + I_t, A_t = thr."""

    kind = "if"

    def _dynamics(self, v, current, c):
        return v + current

    def voltage_coefficients(self, dtype=np.float64):
        ones = np.ones(self.n, dtype=dtype)
        return ones, ones


class LIF(Neuron):
    """Leaky integrate-and-fire: v'_t = α v_{t-1} + (1 - α) I_t, α = exp(-dt/τ), A_t = thr."""

    kind = "lif"

    def __init__(self, n, tau=20.0, thr=0.03, dt=1.0, n_refractory=0, reset="zero",
                 noise_std=0.0, n_delay=1, seed=None):
        super().__init__(n, thr=thr, dt=dt, n_refractory=n_refractory, reset=reset,
                         noise_std=noise_std, n_delay=n_delay, seed=seed)
        self.tau = self._per_unit("tau", tau)
        self.alpha = np.exp(-self.dt / self.tau)
        self._gain = 1.0 - self.alpha

    def _extra_params(self):
        return {"tau": self.tau.tolist()}

    def _coefficients(self):
        return {**super()._coefficients(), "alpha": self.alpha, "gain": self._gain}

    def _dynamics(self, v, current, c):
        return c.alpha * v + c.gain * current

    def voltage_coefficients(self, dtype=np.float64):
        c = self.coefficients(dtype)
        return c.alpha, c.gain


class ALIF(LIF):
    """Adaptive LIF (LSNN): LIF voltage, threshold A_t = thr + β b_t.

    b_t = ρ b_{t-1} + (1 - ρ) z_{t-1}, ρ = exp(-dt/τ_a). ``beta`` may be one value per unit;
    units with β = 0 are exactly LIF units (this is how an LSNN mixes the two types).
    """

    kind = "alif"

    def __init__(self, n, tau=20.0, tau_adaptation=200.0, beta=1.6, thr=0.01, dt=1.0,
                 n_refractory=0, reset="zero", noise_std=0.0, n_delay=1, seed=None):
        super().__init__(n, tau=tau, thr=thr, dt=dt, n_refractory=n_refractory, reset=reset,
                         noise_std=noise_std, n_delay=n_delay, seed=seed)
        self.tau_adaptation = self._per_unit("tau_adaptation", tau_adaptation)
        beta = check.positive_array("beta", beta, allow_zero=True)
        if beta.ndim > 1 or (beta.ndim == 1 and beta.shape[0] != self.n):
            raise ValueError(f"beta must be a scalar or have shape ({self.n},), got {beta.shape}")
        self.beta = np.broadcast_to(beta, (self.n,)).copy()
        self.rho = np.exp(-self.dt / self.tau_adaptation)
        self._one_minus_rho = 1.0 - self.rho

    def _extra_params(self):
        return {"tau": self.tau.tolist(), "tau_adaptation": self.tau_adaptation.tolist(),
                "beta": self.beta.tolist()}

    def _coefficients(self):
        return {**super()._coefficients(), "rho": self.rho,
                "one_minus_rho": self._one_minus_rho, "beta": self.beta}

    def _threshold(self, state, c):
        b = c.rho * state.b + c.one_minus_rho * state.z
        return c.thr + c.beta * b, b

    def adaptation_coefficients(self, dtype=np.float64):
        c = self.coefficients(dtype)
        return c.rho, c.beta


NEURON_TYPES = {"if": IF, "lif": LIF, "alif": ALIF}


def make_neuron(kind: str, n: int, **params) -> Neuron:
    """Build a neuron population by name ("if", "lif", "alif")."""
    kind = check.choice("neuron", kind, NEURON_TYPES)
    return NEURON_TYPES[kind](n, **params)
