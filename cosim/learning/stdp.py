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

Diehl & Cook network
--------------------
:class:`DiehlCook` is an unsupervised spiking network after Diehl & Cook (2015, Front.
Comput. Neurosci. 9:99): rate-coded inputs drive ``n_exc`` excitatory LIF units
(:class:`cosim.neurons.LIF`) through weights ``W_in`` learned by STDP; see its docstring.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
from scipy.signal import lfilter

from .. import _validate as check

__all__ = ["STDPParams", "STDPTraces", "MODES", "stdp_init", "stdp_step", "stdp_run",
           "stdp_accumulate", "apply_block", "stdp_factors", "PulseProgrammer", "DiehlCook"]

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
    """Writes Δw as whole programming pulses through a device model (``mode="pulses"``).

    ``device`` is any object with ``apply_pulses(state, v_pulse, width, count, v_gs=None,
    c2c_sigma=0.0, rng=None)`` acting on states in [0, 1] (e.g.
    :class:`cosim.devices.Memtransistor`; duck-typed, nothing is imported). A weight maps to
    the state s = (w - w_min) / (w_max - w_min). Per synapse the pulse count is
    ``round(|Δw| / dw_per_pulse)`` (``rounding="nearest"``) or its seeded stochastic rounding
    (``"stochastic"``, unbiased: small Δw still move weights on average), capped at
    ``max_pulses``; Δw > 0 gets pulses of ``v_set``, Δw < 0 pulses of ``v_reset``. The device
    decides how far each pulse moves the state (nonlinear, bounded, noisy with ``c2c_sigma``).
    ``dw_per_pulse`` is the nominal weight change of one pulse used for the conversion.
    """

    device: object
    dw_per_pulse: float
    v_set: float = 4.0
    v_reset: float = -4.0
    width: float = 1e-3
    v_gs: float | None = None
    c2c_sigma: float = 0.0
    max_pulses: int = 1000
    rounding: str = "stochastic"

    def __post_init__(self):
        if not callable(getattr(self.device, "apply_pulses", None)):
            raise ValueError("device must have an apply_pulses(state, v_pulse, width, count, "
                             "v_gs=None, c2c_sigma=0.0, rng=None) method")
        if _real("dw_per_pulse", self.dw_per_pulse) <= 0:
            raise ValueError(f"dw_per_pulse must be > 0, got {self.dw_per_pulse}")
        if _real("width", self.width) <= 0:
            raise ValueError(f"width must be > 0, got {self.width}")
        if _real("c2c_sigma", self.c2c_sigma) < 0:
            raise ValueError(f"c2c_sigma must be >= 0, got {self.c2c_sigma}")
        _real("v_set", self.v_set)
        _real("v_reset", self.v_reset)
        check.integer("max_pulses", self.max_pulses, minimum=1)
        if self.rounding not in ("nearest", "stochastic"):
            raise ValueError(f"rounding must be 'nearest' or 'stochastic', got {self.rounding!r}")

    def counts(self, dw, rng=None) -> np.ndarray:
        """Signed whole pulse counts for a requested weight change."""
        n = np.asarray(dw, dtype=np.float64) / self.dw_per_pulse
        if self.rounding == "nearest":
            k = np.rint(n)
        else:
            floor = np.floor(n)
            k = floor + (check.rng(rng).random(n.shape) < (n - floor))
        return np.clip(k, -self.max_pulses, self.max_pulses).astype(np.int64)

    def write(self, w, dw, params: STDPParams, rng=None) -> np.ndarray:
        """New weights after writing ``dw`` as pulses (returns a new array)."""
        w = np.asarray(w, dtype=np.float64)
        rng = check.rng(rng)
        k = self.counts(dw, rng)
        span = params.w_max - params.w_min
        out = w.copy()
        for sign, v in ((1, self.v_set), (-1, self.v_reset)):
            mask = (k * sign) > 0
            if not mask.any():
                continue
            state = np.clip((w[mask] - params.w_min) / span, 0.0, 1.0)
            new = self.device.apply_pulses(state, v, self.width, np.abs(k[mask]),
                                           v_gs=self.v_gs, c2c_sigma=self.c2c_sigma, rng=rng)
            out[mask] = params.w_min + np.clip(np.asarray(new, dtype=np.float64), 0, 1) * span
        return out


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
    x_post = _filter_traces(post, params.decay_minus, x0_post)
    P = x_pre.reshape(-1, n_pre).T @ post.reshape(-1, n_post)
    D = pre.reshape(-1, n_pre).T @ x_post.reshape(-1, n_post)
    return P, D, STDPTraces(x_pre[-1].copy(), x_post[-1].copy())


def apply_block(w, P, D, params: STDPParams, programmer=None, rng=None, scale: float = 1.0):
    """w + scale·(η_+ f_+(w) P - η_- f_-(w) D), clipped (or written as pulses)."""
    f_up, f_down = stdp_factors(w, params)
    dw = scale * (params.eta_plus * P * f_up - params.eta_minus * D * f_down)
    return _update(w, dw, params, programmer, rng)


# ----------------------------------------------------------------------------------------------
# Diehl & Cook network
# ----------------------------------------------------------------------------------------------
def _params_from(value) -> STDPParams:
    if value is None:
        return DiehlCook.DEFAULT_STDP
    if isinstance(value, STDPParams):
        return value
    if isinstance(value, dict):
        return STDPParams(**value)
    raise ValueError(f"stdp must be STDPParams, a dict of its fields or None, "
                     f"got {type(value).__name__}")


class DiehlCook:
    r"""Unsupervised digit classifier in the style of Diehl & Cook (2015).

    Architecture (one excitatory layer, dt = 1 step):

    * input: rate-coded spikes x_t (n_in,), one sample presented for T steps; between
      samples the network rests, which is modelled by resetting every voltage and STDP trace
      (the 150 ms rest of the paper lets them decay to the same state);
    * feed-forward current I^{ff}_t = W_in^T x_t computed by a crossbar backend
      (``make_crossbar(crossbar).fresh()``; the weights, in [0, w_max], are programmed once per
      presentation and held fixed during it);
    * lateral inhibition as a direct negative recurrent current, no inhibitory population:
      I_t = gain·I^{ff}_t - w_inh (Σ_k z_{k,t-1} - z_{j,t-1}), i.e. W_rec = -w_inh (1 - 𝟙) with
      the one-step delay of EQUATIONS.md §3 (each spike inhibits every *other* unit);
    * excitatory units: :class:`cosim.neurons.LIF` (τ = ``tau_m``, reset to zero,
      ``n_refractory``) with per-unit threshold thr + θ_j;
    * one spike per step (``one_spike=True``, default): when several units cross threshold in
      the same step, only the one with the largest relative overshoot (v' - A)/A spikes; the
      others keep their voltage (no reset) and receive its inhibition at the next step. In
      continuous time the first unit to cross inhibits the others before they fire; with a
      coarse step and a one-step inhibitory delay this tie-break restores that ordering
      (without it, units of near-equal drive fire in lock-step and learn the same pattern);
    * homeostasis (handled here, not in the neuron): θ is frozen during a presentation; after
      it, θ_j += ``theta_plus`` × (spikes of unit j) and θ decays by exp(-T/``tau_theta``).
      During ``assign_labels``/``predict`` θ is frozen;
    * learning: pair-based STDP (:class:`STDPParams`, default multiplicative soft bounds)
      accumulated over the presentation with :func:`stdp_accumulate` and applied once at its
      end (:func:`apply_block`), then each column of W_in is rescaled to sum to
      ``norm·n_in`` (the weight normalisation of the paper; disable with ``norm=None``) and
      clipped to [w_min, w_max];
    * presentations that give fewer than ``min_spikes`` excitatory spikes are repeated with the
      input gain multiplied by ``gain_step`` (at most ``max_retries`` times); the paper raises
      the input rate instead — scaling the current has the same mean effect and keeps the
      given spike trains. In training all gains of the ladder are simulated at once as a
      batch (rows are independent) and the first one reaching ``min_spikes`` is kept; only it
      updates weights and θ;
    * the STDP rates are multiplied by ``lr_decay ** epoch``.

    Read-out: ``assign_labels`` gives each unit the class of its highest mean spike count
    (units that never fire get label -1); ``predict`` returns the class whose assigned units
    have the highest mean spike count (classes without units never win).

    Tuned defaults (sklearn digits, 64 inputs, rate coding with p = 0.5·pixel per step and
    T = 100 steps per image, 2 epochs): about 90 % test accuracy, see
    ``benchmarks/bench_stdp.py``.

    The constructor stores parameters only (scikit-learn style); ``fit`` initialises the
    weights (uniform in [0, ``w_init``]) from ``seed`` and trains, ``partial_fit`` continues.
    ``x`` is (N, T, n_in) spikes, or an object with ``sample(epoch)`` and ``shape`` (e.g.
    :class:`cosim.data.EncodedImages`) which gives a fresh spike draw per epoch.
    """

    DEFAULT_STDP = STDPParams(eta_plus=0.003, eta_minus=0.0003, tau_plus=10.0, tau_minus=10.0,
                              w_min=0.0, w_max=1.0, mu=1.0, mode="multiplicative")

    def __init__(self, n_exc: int = 100, n_classes: int = 10, tau_m: float = 50.0,
                 thr: float = 0.5, w_inh: float = 50.0, theta_plus: float = 0.01,
                 tau_theta: float = 1e5, n_refractory: int = 2, one_spike: bool = True,
                 stdp=None, norm: float | None = 0.1, w_init: float = 0.3, min_spikes: int = 6,
                 max_retries: int = 8, gain_step: float = 1.15, lr_decay: float = 0.7,
                 crossbar="ideal", batch_size: int = 256, seed=0):
        self.n_exc = n_exc
        self.n_classes = n_classes
        self.tau_m = tau_m
        self.thr = thr
        self.w_inh = w_inh
        self.theta_plus = theta_plus
        self.tau_theta = tau_theta
        self.n_refractory = n_refractory
        self.one_spike = one_spike
        self.stdp = stdp
        self.norm = norm
        self.w_init = w_init
        self.min_spikes = min_spikes
        self.max_retries = max_retries
        self.gain_step = gain_step
        self.lr_decay = lr_decay
        self.crossbar = crossbar
        self.batch_size = batch_size
        self.seed = seed

    _PARAM_NAMES = ("n_exc", "n_classes", "tau_m", "thr", "w_inh", "theta_plus", "tau_theta",
                    "n_refractory", "one_spike", "stdp", "norm", "w_init", "min_spikes", "max_retries",
                    "gain_step", "lr_decay", "crossbar", "batch_size", "seed")

    # -- scikit-learn style parameters ----------------------------------------------------------
    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in self._PARAM_NAMES}

    def set_params(self, **params) -> "DiehlCook":
        for k, v in params.items():
            if k not in self._PARAM_NAMES:
                raise ValueError(f"unknown parameter {k!r}")
            setattr(self, k, v)
        return self

    def _validated(self):
        """Check every parameter (names the one at fault); returns the STDP parameters."""
        check.integer("n_exc", self.n_exc, minimum=1)
        check.integer("n_classes", self.n_classes, minimum=2)
        check.positive("tau_m", self.tau_m)
        check.positive("thr", self.thr)
        check.positive("w_inh", self.w_inh, allow_zero=True)
        check.positive("theta_plus", self.theta_plus, allow_zero=True)
        check.positive("tau_theta", self.tau_theta)
        check.integer("n_refractory", self.n_refractory, minimum=0)
        if not isinstance(self.one_spike, (bool, np.bool_)):
            raise ValueError(f"one_spike must be a bool, got {type(self.one_spike).__name__}")
        if self.norm is not None:
            check.positive("norm", self.norm)
        check.positive("w_init", self.w_init)
        check.integer("min_spikes", self.min_spikes, minimum=0)
        check.integer("max_retries", self.max_retries, minimum=0)
        if check.positive("gain_step", self.gain_step) <= 1:
            raise ValueError(f"gain_step must be > 1, got {self.gain_step}")
        check.positive("lr_decay", self.lr_decay)
        check.integer("batch_size", self.batch_size, minimum=1)
        stdp = _params_from(self.stdp)
        if stdp.mode == "pulses":
            raise ValueError("stdp.mode='pulses' is not supported by DiehlCook (the crossbar "
                             "backend holds the weights); use 'additive' or 'multiplicative'")
        return stdp

    # -- input checks ---------------------------------------------------------------------------
    def _check_x(self, x, name="x"):
        x = check.as_float_array(name, x, ndim=3)
        if 0 in x.shape:
            raise ValueError(f"{name} must not be empty, got shape {x.shape}")
        n_in = getattr(self, "n_inputs_", None)
        if n_in is not None and x.shape[2] != n_in:
            raise ValueError(f"{name} must have {n_in} inputs (last dimension), "
                             f"got shape {x.shape}")
        if np.any(x < 0):
            raise ValueError(f"{name} must hold non-negative spikes")
        return x

    def _check_y(self, y, n):
        return check.labels("y", y, n, self.n_classes)

    def _require_fitted(self, labels=False):
        if getattr(self, "W_in_", None) is None:
            raise RuntimeError("DiehlCook is not fitted: call fit(x) or set_state(...)")
        if labels and getattr(self, "labels_", None) is None:
            raise RuntimeError("no labels assigned: call assign_labels(x, y)")

    # -- state ------------------------------------------------------------------------------
    def _initialise(self, n_inputs):
        self._validated()
        self._rng = check.rng(self.seed)
        self.n_inputs_ = int(n_inputs)
        w = self._rng.uniform(0.0, self.w_init, (self.n_inputs_, self.n_exc))
        self.W_in_ = self._normalise(w, _params_from(self.stdp))
        self.theta_ = np.zeros(self.n_exc)
        self.labels_ = None
        self.n_seen_ = 0
        self.epochs_ = 0
        self._xbar = None

    def _normalise(self, w, stdp):
        if self.norm is not None:
            total = self.norm * w.shape[0]
            sums = w.sum(axis=0, keepdims=True)
            w = w * np.where(sums > 0, total / np.where(sums > 0, sums, 1.0), 1.0)
        return np.clip(w, stdp.w_min, stdp.w_max)

    def _backend(self):
        if getattr(self, "_xbar", None) is None:
            from ..crossbar import make_crossbar
            self._xbar = make_crossbar(self.crossbar).fresh()
            self._xbar.program(self.W_in_)
        return self._xbar

    # -- dynamics -------------------------------------------------------------------------------
    def _simulate(self, current, theta):
        """Run the excitatory layer on feed-forward currents (B, T, n) at thresholds thr + θ.

        Returns the spikes (B, T, n). θ is held fixed during a presentation.
        """
        from ..neurons import LIF
        B, T, n = current.shape
        neuron = LIF(n, tau=float(self.tau_m), thr=float(self.thr) + theta,
                     n_refractory=self.n_refractory)
        state = neuron.zero_state(B)
        Z = np.zeros((B, T, n))
        z = np.zeros((B, n))
        w_inh = float(self.w_inh)
        one_spike = bool(self.one_spike)
        for t in range(T):
            i_t = current[:, t]
            if w_inh and z.any():
                i_t = i_t - w_inh * (z.sum(axis=1, keepdims=True) - z)
            old_refractory = state.refractory
            z, state, trace = neuron.advance(i_t, state)
            if one_spike:
                z, state = self._one_spike(z, state, trace, old_refractory)
            Z[:, t] = z
        return Z

    @staticmethod
    def _one_spike(z, state, trace, old_refractory):
        """Keep only the unit with the largest relative overshoot (v' - A)/A per sample."""
        multi = z.sum(axis=1) > 1
        if not multi.any():
            return z, state
        over = np.where(z > 0, (trace.v_pre - trace.threshold) / trace.threshold, -np.inf)
        keep = np.zeros_like(z)
        keep[np.arange(z.shape[0]), np.argmax(over, axis=1)] = 1.0
        keep = np.where(multi[:, None], keep, z)
        veto = (z > 0) & (keep == 0)
        v = np.where(veto, trace.v_pre, state.v)
        refractory = np.where(veto, np.maximum(old_refractory - 1, 0), state.refractory)
        return keep, state._replace(v=v, z=keep, refractory=refractory)

    def _responses(self, x):
        """Spike counts (N, n_exc) with learning off and θ frozen; silent samples re-run."""
        xbar = self._backend()
        N, T, n_in = x.shape
        counts = np.zeros((N, self.n_exc))
        for start in range(0, N, self.batch_size):
            xb = x[start:start + self.batch_size]
            cur = xbar.forward(xb.reshape(-1, n_in)).reshape(xb.shape[0], T, self.n_exc)
            c = self._simulate(cur, self.theta_).sum(axis=1)
            gain = 1.0
            for _ in range(self.max_retries):
                silent = c.sum(axis=1) < max(self.min_spikes, 1)
                if not silent.any():
                    break
                gain *= self.gain_step
                c[silent] = self._simulate(gain * cur[silent], self.theta_).sum(axis=1)
            counts[start:start + xb.shape[0]] = c
        return counts

    # -- training -------------------------------------------------------------------------------
    def fit(self, x, epochs: int = 1, progress: bool = True) -> "DiehlCook":
        """Initialise from ``seed`` and train for ``epochs`` passes over ``x`` (see class doc)."""
        self._validated()
        self.n_inputs_ = None
        n_in = x.shape[2] if hasattr(x, "sample") else self._check_x(x).shape[2]
        self._initialise(n_in)
        return self.partial_fit(x, epochs=epochs, progress=progress)

    def partial_fit(self, x, epochs: int = 1, progress: bool = True) -> "DiehlCook":
        """Continue training from the current state."""
        self._require_fitted()
        stdp = self._validated()
        epochs = check.integer("epochs", epochs, minimum=0)
        resample = hasattr(x, "sample")
        if not resample:
            x = self._check_x(x)
        xbar = self._backend()
        for _ in range(epochs):
            xe = self._check_x(x.sample(self.epochs_)) if resample else x
            order = self._rng.permutation(xe.shape[0])
            scale = float(self.lr_decay) ** self.epochs_
            report = check.progress_callback(progress)      # only the CLI draws progress
            desc = f"STDP epoch {self.epochs_ + 1}"
            it = order
            decay = math.exp(-xe.shape[1] / float(self.tau_theta))
            gains = float(self.gain_step) ** np.arange(self.max_retries + 1)
            for done, k in enumerate(it):
                if progress and done % 16 == 0:
                    report(desc, done, len(order))
                sample = xe[k]
                # all input gains of the retry ladder at once (rows are independent)
                Zg = self._simulate(gains[:, None, None] * xbar.forward(sample)[None],
                                    self.theta_)
                ok = np.nonzero(Zg.sum(axis=(1, 2)) >= self.min_spikes)[0]
                Z = Zg[ok[0] if ok.size else -1]
                self.theta_ = (self.theta_ + self.theta_plus * Z.sum(axis=0)) * decay
                if Z.any():
                    P, D, _ = stdp_accumulate(sample, Z, stdp, checked=False)
                    w = apply_block(self.W_in_, P, D, stdp, scale=scale)
                    self.W_in_ = self._normalise(w, stdp)
                    xbar.program(self.W_in_)
                self.n_seen_ += 1
            self.epochs_ += 1
        return self

    # -- read-out -------------------------------------------------------------------------------
    def responses(self, x) -> np.ndarray:
        """Spike counts (N, n_exc) of the excitatory units for each sample (no learning)."""
        self._require_fitted()
        return self._responses(self._check_x(x))

    def assign_labels(self, x, y) -> np.ndarray:
        """Label each unit by the class of its highest mean response; returns ``labels_``."""
        self._require_fitted()
        x = self._check_x(x)
        y = self._check_y(y, x.shape[0])
        counts = self._responses(x)
        rates = np.zeros((self.n_classes, self.n_exc))
        for c in range(self.n_classes):
            if np.any(y == c):
                rates[c] = counts[y == c].mean(axis=0)
        labels = np.argmax(rates, axis=0)
        labels[rates.max(axis=0) <= 0] = -1
        self.class_rates_ = rates
        self.labels_ = labels.astype(np.int64)
        return self.labels_.copy()

    def predict(self, x) -> np.ndarray:
        """Class whose assigned units respond most on average, (N,) int64."""
        self._require_fitted(labels=True)
        counts = self._responses(self._check_x(x))
        return self._vote(counts)

    def _vote(self, counts):
        scores = np.full((counts.shape[0], self.n_classes), -np.inf)
        for c in range(self.n_classes):
            mask = self.labels_ == c
            if mask.any():
                scores[:, c] = counts[:, mask].mean(axis=1)
        return np.argmax(scores, axis=1).astype(np.int64)

    def evaluate(self, x, y) -> float:
        """Accuracy of ``predict(x)`` against ``y``."""
        self._require_fitted(labels=True)
        x = self._check_x(x)
        y = self._check_y(y, x.shape[0])
        return float(np.mean(self.predict(x) == y))

    # -- saving ---------------------------------------------------------------------------------
    def get_state(self) -> dict:
        """Everything needed to rebuild the model: numpy arrays and JSON-able values."""
        self._require_fitted()
        params = self.get_params()
        params["stdp"] = _params_from(self.stdp).to_dict()
        if not isinstance(params["crossbar"], str):
            params["crossbar"] = getattr(params["crossbar"], "name", "ideal")
        if not (params["seed"] is None or isinstance(params["seed"], numbers.Integral)):
            params["seed"] = None
        elif params["seed"] is not None:
            params["seed"] = int(params["seed"])
        return {"params": params, "W_in": self.W_in_.copy(), "theta": self.theta_.copy(),
                "labels": None if self.labels_ is None else self.labels_.copy(),
                "n_inputs": int(self.n_inputs_), "n_seen": int(self.n_seen_),
                "epochs": int(self.epochs_),
                "rng_state": self._rng.bit_generator.state}

    def set_state(self, state: dict, crossbar=None) -> "DiehlCook":
        """Restore from ``get_state()`` (``crossbar`` overrides the saved backend name)."""
        if not isinstance(state, dict):
            raise ValueError(f"state must be a dict, got {type(state).__name__}")
        missing = {"params", "W_in", "theta", "labels", "n_inputs"} - set(state)
        if missing:
            raise ValueError(f"state is missing {sorted(missing)}")
        params = dict(state["params"])
        unknown = set(params) - set(self._PARAM_NAMES)
        if unknown:
            raise ValueError(f"state params has unknown keys {sorted(unknown)}")
        if crossbar is not None:
            params["crossbar"] = crossbar
        params["stdp"] = _params_from(params.get("stdp"))
        self.set_params(**params)
        stdp = self._validated()
        n_in = check.integer("n_inputs", state["n_inputs"], minimum=1)
        w = check.as_float_array("W_in", state["W_in"], ndim=2)
        if w.shape != (n_in, self.n_exc):
            raise ValueError(f"W_in must have shape ({n_in}, {self.n_exc}), got {w.shape}")
        if w.min() < stdp.w_min or w.max() > stdp.w_max:
            raise ValueError("W_in must lie in [w_min, w_max]")
        theta = check.as_float_array("theta", state["theta"], ndim=1)
        if theta.shape != (self.n_exc,) or np.any(theta < 0):
            raise ValueError(f"theta must be non-negative with shape ({self.n_exc},)")
        labels = state["labels"]
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape != (self.n_exc,) or labels.dtype.kind not in "iu" or \
                    labels.min() < -1 or labels.max() >= self.n_classes:
                raise ValueError(f"labels must be ints in [-1, {self.n_classes}) with shape "
                                 f"({self.n_exc},)")
            labels = labels.astype(np.int64)
        self.n_inputs_ = n_in
        self.W_in_ = w.copy()
        self.theta_ = theta.copy()
        self.labels_ = labels
        self.n_seen_ = int(state.get("n_seen", 0))
        self.epochs_ = int(state.get("epochs", 0))
        rng_state = state.get("rng_state")
        if rng_state is not None:
            self._rng = np.random.default_rng(0)
            self._rng.bit_generator.state = rng_state
        else:
            self._rng = check.rng(self.seed)
        self._xbar = None
        return self

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"DiehlCook({args})"


class STDPRule:
    """The ``"stdp"`` rule of :class:`cosim.Model`: one unsupervised epoch per call.

    The first call initialises the network from its seed (``DiehlCook.fit``), later calls
    continue from the learned state (``partial_fit``); labels are assigned by the Model.
    """

    name = "stdp"

    def fit(self, network, x, progress=True):
        if getattr(network, "W_in_", None) is None:
            return network.fit(x, epochs=1, progress=progress)
        return network.partial_fit(x, epochs=1, progress=progress)
