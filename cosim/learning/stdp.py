r"""Pair-based STDP in trace form (docs/equations.md §4); the Diehl & Cook network that uses
it lives in :mod:`cosim.networks.diehl_cook`.

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
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
from scipy.signal import lfilter

from .. import _validate as check
from .pulses import PulseProgrammer, real_field as _real

__all__ = ["STDPParams", "STDPTraces", "MODES", "stdp_init", "stdp_step", "stdp_run",
           "stdp_accumulate", "apply_block", "stdp_factors", "PulseProgrammer", "params_from",
           "STDPRule"]

MODES = ("additive", "multiplicative", "pulses")


# ----------------------------------------------------------------------------------------------
# parameters and state
# ----------------------------------------------------------------------------------------------
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
