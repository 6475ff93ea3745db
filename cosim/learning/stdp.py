r"""Pair-based STDP in trace form and a Diehl & Cook style unsupervised network (EQUATIONS.md §3).

STDP rule
---------
Every presynaptic input i keeps a trace :math:`x^{pre}_i` (time constant :math:`\tau_+`) and
every postsynaptic unit j a trace :math:`x^{post}_j` (time constant :math:`\tau_-`). One step
of :func:`stdp_step`, with pre spikes :math:`s_i` and post spikes :math:`z_j`, does exactly,
in this order:

1. decay:        :math:`x^{pre} \leftarrow e^{-dt/\tau_+} x^{pre}`,
   :math:`x^{post} \leftarrow e^{-dt/\tau_-} x^{post}`
2. add spikes:   :math:`x^{pre} \leftarrow x^{pre} + s`,  :math:`x^{post} \leftarrow x^{post} + z`
3. update (both terms use the weight *before* the step, then one clip):

.. math::

    \Delta w_{ij} = \eta_+ \, x^{pre}_i z_j \, f_+(w_{ij})
                  - \eta_- \, s_i x^{post}_j \, f_-(w_{ij}),
    \qquad w \leftarrow \mathrm{clip}(w + \Delta w, w_{min}, w_{max})

with ``mode="additive"``: :math:`f_\pm = 1`; ``mode="multiplicative"``:
:math:`f_+ = (w_{max} - w)^\mu`, :math:`f_- = (w - w_{min})^\mu`; ``mode="pulses"``:
:math:`\Delta w` is additive and is written as a whole number of programming pulses through a
device model (see :class:`PulseProgrammer`).

Learning window. One pre spike at step :math:`t_{pre}`, one post spike at :math:`t_{post}`,
traces starting at zero, :math:`\Delta t = t_{post} - t_{pre}` (additive mode):

* :math:`\Delta t > 0`: :math:`\Delta w = +\eta_+ e^{-\Delta t\,dt/\tau_+}`
  (at the post spike the pre trace has decayed :math:`\Delta t` times);
* :math:`\Delta t < 0`: :math:`\Delta w = -\eta_- e^{-|\Delta t|\,dt/\tau_-}`;
* :math:`\Delta t = 0`: because spikes are added to the traces *before* the update, both
  terms fire with a trace of exactly 1: :math:`\Delta w = \eta_+ f_+(w) - \eta_- f_-(w)`
  (:math:`\eta_+ - \eta_-` in additive mode), evaluated at the same old weight.

Time constants are in the same unit as ``dt`` (default 1, i.e. steps).

Block updates
-------------
With the weights held fixed over a block of steps (one stimulus presentation), the sum of
all the step updates is

.. math::

    \Delta W = \eta_+ f_+(W) \odot \sum_t x^{pre}_t \otimes z_t
             - \eta_- f_-(W) \odot \sum_t s_t \otimes x^{post}_t

:func:`stdp_accumulate` returns the two correlation matrices (the traces follow the same
decay-then-add recursion, computed with a linear filter), :func:`apply_block` turns them into
the clipped new weights. :func:`stdp_run` is the online time loop (weights change every step)
for a (T, n) or batched (T, B, n) spike sequence; the batch shares one weight matrix and its
updates are summed.

Networks
--------
This module is the rule only. The Diehl & Cook network that learns with it lives in
:mod:`cosim.networks.diehl_cook` (``cosim.learning.stdp.DiehlCook`` still resolves to it);
:class:`STDPRule` is the rule object :class:`cosim.Model` drives it with.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import NamedTuple

import numpy as np
from scipy.signal import lfilter

from .. import _validate as check

__all__ = ["STDPParams", "STDPTraces", "MODES", "stdp_init", "stdp_step", "stdp_run",
           "stdp_accumulate", "apply_block", "stdp_factors", "PulseProgrammer", "params_from",
           "STDPRule"]

MODES = ("additive", "multiplicative", "pulses")


# ----------------------------------------------------------------------------------------------
# parameters and state
# ----------------------------------------------------------------------------------------------
def _real(name, value) -> float:
    # STDP parameter errors are all ValueErrors naming the field (a dataclass field of the
    # wrong type is a bad value of that field)
    try:
        return check.real(name, value)
    except TypeError as exc:
        raise ValueError(str(exc)) from None


@dataclass(frozen=True)
class STDPParams:
    """Parameters of the pair-based STDP rule (validated; a bad field raises ValueError).

    eta_plus, eta_minus : learning rates of potentiation / depression (>= 0).
    tau_plus, tau_minus : time constants of the pre / post traces (> 0, unit of ``dt``).
    w_min, w_max : weight bounds (w_min < w_max).
    mu : exponent of the multiplicative soft bounds (>= 0; ignored in additive mode).
    mode : ``"additive"``, ``"multiplicative"`` or ``"pulses"``.
    dt : step length (> 0).
    """

    eta_plus: float = 0.01
    eta_minus: float = 0.01
    tau_plus: float = 20.0
    tau_minus: float = 20.0
    w_min: float = 0.0
    w_max: float = 1.0
    mu: float = 1.0
    mode: str = "additive"
    dt: float = 1.0

    def __post_init__(self):
        values = {}
        for name in ("eta_plus", "eta_minus", "mu"):
            v = _real(name, getattr(self, name))
            if v < 0:
                raise ValueError(f"{name} must be >= 0, got {v}")
            values[name] = v
        for name in ("tau_plus", "tau_minus", "dt"):
            v = _real(name, getattr(self, name))
            if v <= 0:
                raise ValueError(f"{name} must be > 0, got {v}")
            values[name] = v
        values["w_min"] = _real("w_min", self.w_min)
        values["w_max"] = _real("w_max", self.w_max)
        if values["w_min"] >= values["w_max"]:
            raise ValueError(f"w_min must be < w_max, got w_min={values['w_min']}, "
                             f"w_max={values['w_max']}")
        if not isinstance(self.mode, str) or self.mode.lower() not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, got {self.mode!r}")
        values["mode"] = self.mode.lower()
        for name, v in values.items():
            object.__setattr__(self, name, v)

    @property
    def decay_plus(self) -> float:
        """Per-step decay factor of the pre trace, exp(-dt/tau_plus)."""
        return math.exp(-self.dt / self.tau_plus)

    @property
    def decay_minus(self) -> float:
        """Per-step decay factor of the post trace, exp(-dt/tau_minus)."""
        return math.exp(-self.dt / self.tau_minus)

    def to_dict(self) -> dict:
        return asdict(self)

    def replace(self, **changes) -> "STDPParams":
        return STDPParams(**{**asdict(self), **changes})


class STDPTraces(NamedTuple):
    """Traces of the rule: ``x_pre`` (..., n_pre) with tau_plus, ``x_post`` (..., n_post)."""

    x_pre: np.ndarray
    x_post: np.ndarray


def stdp_init(n_pre: int, n_post: int, batch: int | None = None) -> STDPTraces:
    """Zero traces, shape (n,) or (batch, n)."""
    n_pre = check.integer("n_pre", n_pre, minimum=1)
    n_post = check.integer("n_post", n_post, minimum=1)
    lead = () if batch is None else (check.integer("batch", batch, minimum=1),)
    return STDPTraces(np.zeros(lead + (n_pre,)), np.zeros(lead + (n_post,)))


def stdp_factors(w: np.ndarray, params: STDPParams):
    """(f_+(w), f_-(w)): ones (additive, pulses) or the multiplicative soft bounds."""
    if params.mode == "multiplicative":
        up = np.clip(params.w_max - w, 0.0, None)
        down = np.clip(w - params.w_min, 0.0, None)
        if params.mu != 1.0:
            up, down = up ** params.mu, down ** params.mu
        return up, down
    return 1.0, 1.0


# ----------------------------------------------------------------------------------------------
# device-aware writes
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PulseProgrammer:
    r"""Writes Δw as whole programming pulses on a gate-selected array (``mode="pulses"``).

    ``device`` is any object with ``apply_pulses(state, v_pulse, width, count, v_gs=None,
    c2c_sigma=0.0, rng=None)`` acting on states in [0, 1] with the source as reference
    (e.g. :class:`cosim.devices.Memtransistor`; duck-typed, nothing is imported). A weight
    maps to the state s = (w - w_min)/(w_max - w_min); w is (R, C) with row i on word line i
    (drains and gate of row i) and column j on bit line j (sources).

    Pulse counts (``count_model``): with ``"linear"`` a cell owed Δw gets n = Δw / δ pulses,
    δ the nominal weight change of one pulse (``dw_per_pulse``; default: the device's change of
    one SET pulse from s = 0 for Δw > 0, of one RESET pulse from s = 1 for Δw < 0, times the
    weight span), so the device's state dependence acts on top of the request; with
    ``"device"`` (default) the controller inverts the one-pulse response of a device with
    p_on = p_off = 1 windows (the default card: one SET pulse maps 1 - s to (1 - s)(1 - δ_+),
    one RESET pulse maps s to s (1 - δ_-)), n = ln((1 - s)/(1 - s')) / -ln(1 - δ_+) or
    ln(s/s') / -ln(1 - δ_-) for the target s' — the write then lands on the target up to
    whole pulses and noise. n is rounded to the nearest integer (``rounding="nearest"``) or
    stochastically (``"stochastic"``, unbiased, seeded) and capped at ``max_pulses``. The
    device decides what the pulses do: saturating, state-dependent steps, each pulse's change
    times e^{σ N} with ``c2c_sigma`` = σ (cycle-to-cycle noise from the seeded ``rng``).

    Write scheme (rows selected one at a time by their gate; voltages in volts):

    * SET phase, row i selected for m_i = max_j n_ij pulse slots: its drain at ``v_set``, its
      gate at ``v_gate_on``; in each slot the source of a column still owed pulses is at 0
      (cell sees V_DS = v_set, V_GS = v_gate_on), the other sources at ``v_inhibit``·v_set
      (V_DS = (1 - v_inhibit) v_set). Unselected rows: drain at 0, gate at ``v_gate_off``.
    * RESET phase likewise with the pulse on the source side (DEVICE.md: a drain-side negative
      pulse still writes through an off gate, referred to the channel midpoint): selected and
      unselected drains at 0, the source of a column owed pulses at |v_reset|
      (V_DS = v_reset, V_GS = v_gate_on + v_reset), the others at v_inhibit·|v_reset|;
      selected gate ``v_gate_on``, unselected ``v_gate_off``.

    Every cell gets every exposure of the scheme through ``device.apply_pulses`` — its own
    pulses, the inhibited slots of its row, and the half-selected slots while other rows are
    written — so sneak writes are whatever the device model gives (for the default card:
    exactly zero in SET, below 1e-10 per RESET pulse in the same column). Order: SET phase
    then RESET phase; within a phase own pulses (with c2c noise) then the other exposures
    (deterministic). Random draws: stochastic rounding, then the SET pulses, then RESET.
    Write currents flow through ideal drivers (no IR drop on the write lines).
    """

    device: object
    dw_per_pulse: float | None = None
    v_set: float = 4.0
    v_reset: float = -4.0
    width: float = 1e-3
    v_gate_on: float | None = None
    v_gate_off: float = -2.0
    v_inhibit: float = 0.5
    c2c_sigma: float = 0.0
    max_pulses: int = 1000
    rounding: str = "stochastic"
    count_model: str = "device"

    def __post_init__(self):
        if not callable(getattr(self.device, "apply_pulses", None)):
            raise ValueError("device must have an apply_pulses(state, v_pulse, width, count, "
                             "v_gs=None, c2c_sigma=0.0, rng=None) method")
        if self.dw_per_pulse is not None and _real("dw_per_pulse", self.dw_per_pulse) <= 0:
            raise ValueError(f"dw_per_pulse must be > 0, got {self.dw_per_pulse}")
        if _real("width", self.width) <= 0:
            raise ValueError(f"width must be > 0, got {self.width}")
        if _real("c2c_sigma", self.c2c_sigma) < 0:
            raise ValueError(f"c2c_sigma must be >= 0, got {self.c2c_sigma}")
        if _real("v_set", self.v_set) <= 0:
            raise ValueError(f"v_set must be > 0, got {self.v_set}")
        if _real("v_reset", self.v_reset) >= 0:
            raise ValueError(f"v_reset must be < 0, got {self.v_reset}")
        if not 0 <= _real("v_inhibit", self.v_inhibit) <= 1:
            raise ValueError(f"v_inhibit must be in [0, 1] (a fraction of the pulse), "
                             f"got {self.v_inhibit}")
        _real("v_gate_off", self.v_gate_off)
        if self.v_gate_on is not None:
            _real("v_gate_on", self.v_gate_on)
        check.integer("max_pulses", self.max_pulses, minimum=1)
        if self.rounding not in ("nearest", "stochastic"):
            raise ValueError(f"rounding must be 'nearest' or 'stochastic', got {self.rounding!r}")
        if self.count_model not in ("linear", "device"):
            raise ValueError(f"count_model must be 'linear' or 'device', got "
                             f"{self.count_model!r}")

    @property
    def gate_on(self) -> float:
        """Gate voltage of the selected row (default the device's v_gref)."""
        if self.v_gate_on is not None:
            return float(self.v_gate_on)
        params = getattr(self.device, "params", None)
        return float(params["v_gref"]) if isinstance(params, dict) and "v_gref" in params else 3.0

    def state_steps(self) -> tuple[float, float]:
        """(change of s by one SET pulse from s = 0, by one RESET pulse from s = 1), > 0."""
        up = float(np.asarray(self.device.apply_pulses(0.0, self.v_set, self.width, 1,
                                                       v_gs=self.gate_on)))
        down = 1.0 - float(np.asarray(self.device.apply_pulses(
            1.0, self.v_reset, self.width, 1, v_gs=self.gate_on + self.v_reset)))
        if not (up > 0 and down > 0):
            raise ValueError(f"one pulse must move the device state (SET step {up}, RESET "
                             f"step {down}): raise |v_set|, |v_reset| or width")
        return up, down

    def counts(self, w, dw, params: STDPParams, rng=None) -> np.ndarray:
        """Signed whole pulse counts that move weights ``w`` by ``dw`` (see ``count_model``)."""
        w = np.asarray(w, dtype=np.float64)
        dw = np.asarray(dw, dtype=np.float64)
        span = params.w_max - params.w_min
        if self.count_model == "linear":
            if self.dw_per_pulse is not None:
                n = dw / self.dw_per_pulse
            else:
                up, down = self.state_steps()
                n = np.where(dw > 0, dw / (up * span), dw / (down * span))
        else:
            up, down = self.state_steps()
            s = np.clip((w - params.w_min) / span, 0.0, 1.0)
            target = np.clip(s + dw / span, 0.0, 1.0)
            with np.errstate(divide="ignore", invalid="ignore"):
                n_up = np.log((1.0 - s) / (1.0 - target)) / -math.log1p(-up)
                n_down = np.log(s / target) / -math.log1p(-down)
            n = np.where(target > s, n_up, np.where(target < s, -n_down, 0.0))
            n = np.nan_to_num(n, nan=0.0, posinf=self.max_pulses, neginf=-self.max_pulses)
        if self.rounding == "nearest":
            k = np.rint(n)
        else:
            floor = np.floor(n)
            k = floor + (check.rng(rng).random(n.shape) < (n - floor))
        return np.clip(k, -self.max_pulses, self.max_pulses).astype(np.int64)

    def exposures(self, k) -> list:
        """The write scheme's exposures of every cell for signed counts k (R, C).

        Returns ``[(count (R, C), v_ds, v_gs, noisy), ...]`` in the order applied:
        source-referenced biases of each kind of slot a cell sees and how many of them.
        """
        k = np.asarray(k, dtype=np.int64)
        out = []
        g_on, g_off = self.gate_on, float(self.v_gate_off)
        for pulse, sign in ((self.v_set, 1), (self.v_reset, -1)):
            n = np.where(k * sign > 0, np.abs(k), 0)
            slots = n.max(axis=1, keepdims=True)                 # m_i: slots of row i
            col = n.sum(axis=0, keepdims=True)                   # Σ_i n_ij per column
            others_pulsed = col - n                              # Σ_{i≠k} n_ij
            others_inhibited = (slots.sum() - slots) - others_pulsed
            v_inh = self.v_inhibit * pulse
            if sign > 0:   # drain of the selected row at v_set, sources at 0 or v_inh
                kinds = [(n, pulse, g_on, True),
                         (slots - n, pulse - v_inh, g_on - v_inh, False),
                         (others_pulsed, 0.0, g_off, False),
                         (others_inhibited, -v_inh, g_off - v_inh, False)]
            else:          # drains at 0, sources at |v_reset| or v_inh·|v_reset|
                kinds = [(n, pulse, g_on + pulse, True),
                         (slots - n, v_inh, g_on + v_inh, False),
                         (others_pulsed, pulse, g_off + pulse, False),
                         (others_inhibited, v_inh, g_off + v_inh, False)]
            out.extend(kinds)
        return out

    def write(self, w, dw, params: STDPParams, rng=None) -> np.ndarray:
        """New weights after writing ``dw`` (R, C) as pulses (returns a new array)."""
        w = np.asarray(w, dtype=np.float64)
        if w.ndim != 2:
            raise ValueError(f"w must be 2-D (rows = word lines), got shape {w.shape}")
        rng = check.rng(rng)
        k = self.counts(w, dw, params, rng)
        span = params.w_max - params.w_min
        state = np.clip((w - params.w_min) / span, 0.0, 1.0)
        for count, v_ds, v_gs, noisy in self.exposures(k):
            mask = count > 0
            if not mask.any():
                continue
            new = self.device.apply_pulses(state[mask], v_ds, self.width, count[mask],
                                           v_gs=v_gs,
                                           c2c_sigma=self.c2c_sigma if noisy else 0.0,
                                           rng=rng)
            state[mask] = np.clip(np.asarray(new, dtype=np.float64), 0.0, 1.0)
        return params.w_min + state * span

    def to_dict(self) -> dict:
        """JSON-able settings; the device must be a Memtransistor (its parameter card)."""
        params = getattr(self.device, "params", None)
        if not isinstance(params, dict):
            raise ValueError("only a programmer of a Memtransistor device can be saved")
        device = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in params.items()}
        device["state_map"] = getattr(self.device, "state_map", "linear")
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "device"}
        return {"device": device, **out}

    @classmethod
    def from_dict(cls, d) -> "PulseProgrammer":
        """Rebuild from :meth:`to_dict` (a Memtransistor with the saved card)."""
        from ..devices import Memtransistor

        if not isinstance(d, dict) or not isinstance(d.get("device"), dict):
            raise ValueError("programmer must be a dict with a 'device' card")
        allowed = {f.name for f in fields(cls)}
        unknown = set(d) - allowed
        if unknown:
            raise ValueError(f"programmer has unknown keys {sorted(unknown)}")
        device = Memtransistor(**d["device"])
        return cls(device=device, **{k: v for k, v in d.items() if k != "device"})


# ----------------------------------------------------------------------------------------------
# the rule
# ----------------------------------------------------------------------------------------------
def _as_spikes(name, value, n=None, ndim=None):
    arr = check.as_float_array(name, value, ndim=ndim)
    if n is not None and arr.shape[-1] != n:
        raise ValueError(f"{name} must have last dimension {n}, got shape {arr.shape}")
    if np.any(arr < 0):
        raise ValueError(f"{name} must be >= 0 (spikes)")
    return arr


def _check_w(w, params):
    w = check.as_float_array("w", w, ndim=2)
    if 0 in w.shape:
        raise ValueError(f"w must not be empty, got shape {w.shape}")
    return w


def _update(w, dw, params, programmer, rng):
    if params.mode == "pulses":
        if programmer is None:
            raise ValueError("mode='pulses' needs a programmer (PulseProgrammer)")
        return programmer.write(w, dw, params, rng)
    return np.clip(w + dw, params.w_min, params.w_max)


def stdp_step(w, pre, post, traces: STDPTraces, params: STDPParams, programmer=None,
              rng=None):
    r"""One STDP step for a single (unbatched) spike pair: ``w, traces = stdp_step(...)``.

    .. math::

        x^{pre}_t &= e^{-dt/\tau_+} x^{pre}_{t-1} + s_t, \qquad
        x^{post}_t = e^{-dt/\tau_-} x^{post}_{t-1} + z_t \\
        w_t &= \mathrm{clip}\big(w_{t-1} + \eta_+ (x^{pre}_t \otimes z_t) f_+(w_{t-1})
               - \eta_- (s_t \otimes x^{post}_t) f_-(w_{t-1}),\; w_{min}, w_{max}\big)

    Order: decay, add this step's spikes, update. Hence a pre and a post spike in the same
    step give Δw = η_+ f_+(w) - η_- f_-(w) (both traces are 1); see the module docstring for
    the whole window.

    Parameters
    ----------
    w : (n_pre, n_post) weights (not modified; a new array is returned).
    pre : (n_pre,) presynaptic spikes s_t (0/1, or any non-negative amplitude).
    post : (n_post,) postsynaptic spikes z_t.
    traces : :class:`STDPTraces` with x_pre (n_pre,), x_post (n_post,) from the last step.
    params : :class:`STDPParams`.
    programmer : :class:`PulseProgrammer`, needed only with ``mode="pulses"``.
    rng : Generator (or seed) for stochastic pulse rounding / device noise; pass one
        Generator across steps, an int seed gives the same draws at every call.
    """
    if not isinstance(params, STDPParams):
        raise ValueError(f"params must be STDPParams, got {type(params).__name__}")
    w = _check_w(w, params)
    n_pre, n_post = w.shape
    pre = _as_spikes("pre", pre, n_pre, ndim=1)
    post = _as_spikes("post", post, n_post, ndim=1)
    x_pre = check.as_float_array("traces.x_pre", traces.x_pre)
    x_post = check.as_float_array("traces.x_post", traces.x_post)
    if x_pre.shape != (n_pre,) or x_post.shape != (n_post,):
        raise ValueError(f"traces must have shapes ({n_pre},) and ({n_post},), got "
                         f"{x_pre.shape} and {x_post.shape}")
    x_pre = params.decay_plus * x_pre + pre
    x_post = params.decay_minus * x_post + post
    f_up, f_down = stdp_factors(w, params)
    dw = (params.eta_plus * np.outer(x_pre, post) * f_up
          - params.eta_minus * np.outer(pre, x_post) * f_down)
    return _update(w, dw, params, programmer, rng), STDPTraces(x_pre, x_post)


def stdp_run(w, pre, post, params: STDPParams, traces: STDPTraces | None = None,
             programmer=None, rng=None):
    """Online STDP over a spike sequence (the weights change every step).

    ``pre`` is (T, n_pre) or batched (T, B, n_pre), ``post`` (T, n_post) or (T, B, n_post).
    Each batch element has its own traces; all share ``w`` and their updates are summed at
    every step (then clipped once). Returns ``(w, traces)``; traces have shape (n,) or (B, n).
    """
    if not isinstance(params, STDPParams):
        raise ValueError(f"params must be STDPParams, got {type(params).__name__}")
    w = _check_w(w, params)
    n_pre, n_post = w.shape
    pre = _as_spikes("pre", pre, n_pre, ndim=(2, 3))
    post = _as_spikes("post", post, n_post, ndim=(2, 3))
    if pre.shape[:-1] != post.shape[:-1]:
        raise ValueError(f"pre and post must agree in (T[, B]), got {pre.shape} and {post.shape}")
    batched = pre.ndim == 3
    if not batched:
        pre, post = pre[:, None], post[:, None]
    B = pre.shape[1]
    if traces is None:
        traces = stdp_init(n_pre, n_post, B)
    x_pre = np.array(check.as_float_array("traces.x_pre", traces.x_pre), dtype=np.float64)
    x_post = np.array(check.as_float_array("traces.x_post", traces.x_post), dtype=np.float64)
    x_pre = np.broadcast_to(x_pre, (B, n_pre)).copy()
    x_post = np.broadcast_to(x_post, (B, n_post)).copy()
    rng = check.rng(rng) if params.mode == "pulses" else None
    dp, dm = params.decay_plus, params.decay_minus
    for t in range(pre.shape[0]):
        s, z = pre[t], post[t]
        x_pre *= dp
        x_pre += s
        x_post *= dm
        x_post += z
        has_post, has_pre = z.any(), s.any()
        if not (has_post or has_pre):
            continue
        f_up, f_down = stdp_factors(w, params)
        dw = 0.0
        if has_post:
            dw = dw + params.eta_plus * (x_pre.T @ z) * f_up
        if has_pre:
            dw = dw - params.eta_minus * (s.T @ x_post) * f_down
        w = _update(w, dw, params, programmer, rng)
    if not batched:
        x_pre, x_post = x_pre[0], x_post[0]
    return w, STDPTraces(x_pre, x_post)


def _filter_traces(spikes, decay, initial):
    """x_t = decay x_{t-1} + s_t along axis 0, x_{-1} = initial (exact IIR recursion)."""
    zi = (decay * initial)[None]
    out, _ = lfilter([1.0], [1.0, -decay], spikes, axis=0, zi=zi)
    return out


def stdp_accumulate(pre, post, params: STDPParams, traces: STDPTraces | None = None,
                    checked: bool = True):
    r"""Correlations of a block with the weights held fixed.

    Returns ``(P, D, traces)`` with P = Σ_t x^{pre}_t ⊗ z_t and D = Σ_t s_t ⊗ x^{post}_t
    (summed over the batch too for (T, B, n) inputs), both (n_pre, n_post), and the traces
    after the last step. ``apply_block(w, P, D, params)`` then equals the sum of all
    :func:`stdp_step` updates made at a fixed w, followed by one clip.
    """
    if not isinstance(params, STDPParams):
        raise ValueError(f"params must be STDPParams, got {type(params).__name__}")
    if checked:
        pre = _as_spikes("pre", pre, ndim=(2, 3))
        post = _as_spikes("post", post, ndim=(2, 3))
        if pre.shape[:-1] != post.shape[:-1]:
            raise ValueError(f"pre and post must agree in (T[, B]), got {pre.shape} and "
                             f"{post.shape}")
    lead = pre.shape[1:-1]
    n_pre, n_post = pre.shape[-1], post.shape[-1]
    if traces is None:
        x0_pre, x0_post = np.zeros(lead + (n_pre,)), np.zeros(lead + (n_post,))
    else:
        x0_pre = np.broadcast_to(np.asarray(traces.x_pre, dtype=np.float64), lead + (n_pre,))
        x0_post = np.broadcast_to(np.asarray(traces.x_post, dtype=np.float64), lead + (n_post,))
    x_pre = _filter_traces(pre, params.decay_plus, x0_pre)
    # D = Σ_t s_t ⊗ x^{post}_t with x^{post}_t = Σ_{t'<=t} d^{t-t'} z_{t'} + d^{t+1} x0 (d the
    # post decay) is regrouped by post spike: D = Σ_t y_t ⊗ z_t + Σ_t d^{t+1} s_t ⊗ x0 with
    # the anti-causal pre filter y_t = Σ_{t'>=t} d^{t'-t} s_{t'}. Only the presynaptic side is
    # filtered and only steps with a post spike enter the products (post spikes are sparse).
    d = params.decay_minus
    T = pre.shape[0]
    y = _filter_traces(pre[::-1], d, np.zeros(lead + (n_pre,)))[::-1]
    post_flat = post.reshape(-1, n_post)
    rows = np.flatnonzero(post_flat.any(axis=1))
    z = post_flat[rows]
    P = x_pre.reshape(-1, n_pre)[rows].T @ z
    D = y.reshape(-1, n_pre)[rows].T @ z
    powers = d ** np.arange(T + 1)
    if np.any(x0_post):
        u = np.tensordot(powers[1:], pre, axes=(0, 0)).reshape(-1, n_pre)
        D = D + u.T @ x0_post.reshape(-1, n_post)
    x_post_last = np.tensordot(powers[T - 1::-1], post, axes=(0, 0)) + powers[T] * x0_post
    return P, D, STDPTraces(x_pre[-1].copy(), np.asarray(x_post_last, dtype=np.float64))


def apply_block(w, P, D, params: STDPParams, programmer=None, rng=None, scale: float = 1.0):
    """w + scale·(η_+ f_+(w) P - η_- f_-(w) D), clipped (or written as pulses)."""
    f_up, f_down = stdp_factors(w, params)
    dw = scale * (params.eta_plus * P * f_up - params.eta_minus * D * f_down)
    return _update(w, dw, params, programmer, rng)


def params_from(value, default: STDPParams) -> STDPParams:
    """STDPParams from None (``default``), an STDPParams or a dict of its fields."""
    if value is None:
        return default
    if isinstance(value, STDPParams):
        return value
    if isinstance(value, dict):
        return STDPParams(**value)
    raise ValueError(f"stdp must be STDPParams, a dict of its fields or None, "
                     f"got {type(value).__name__}")


class STDPRule:
    """The ``"stdp"`` rule of :class:`cosim.Model`: one unsupervised epoch per call.

    The first call initialises the network from its seed (``DiehlCook.fit``), later calls
    continue from the learned state (``partial_fit``); labels are assigned by the Model.
    """

    name = "stdp"

    def fit(self, network, x, progress=None):
        if getattr(network, "W_in_", None) is None:
            return network.fit(x, epochs=1, progress=progress)
        return network.partial_fit(x, epochs=1, progress=progress)


def __getattr__(name):
    # the network moved to cosim.networks; its old import path keeps working (imported late:
    # the network module imports this one)
    if name == "DiehlCook":
        from ..networks.diehl_cook import DiehlCook
        return DiehlCook
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
