r"""Unsupervised spiking digit classifier after Diehl & Cook (2015, Front. Comput. Neurosci. 9:99).

Architecture (one excitatory layer, dt = 1 step)
------------------------------------------------
* input: rate-coded spikes x_t (n_in,), one sample presented for T steps; between samples
  the network rests, modelled by resetting every voltage and STDP trace (the rest of the
  paper lets them decay to the same state);
* feed-forward current I^{ff}_t = W_in^T x_t read from a crossbar backend
  (``make_crossbar(crossbar).fresh()``; weights in [w_min, w_max], programmed after every
  weight update and held fixed in between);
* lateral inhibition as a direct negative current, no inhibitory population:
  I_{j,t} = gain·I^{ff}_{j,t} - w_inh (Σ_k z_{k,t-1} - z_{j,t-1}) (each spike inhibits every
  *other* unit one step later);
* excitatory units: :class:`cosim.neurons.LIF` (τ = ``tau_m``, reset to zero,
  ``n_refractory``) with per-unit threshold thr + θ_j;
* one spike per step (``one_spike=True``): when several units cross threshold in the same
  step only the one with the largest relative overshoot (v' - A)/A spikes, the others keep
  their voltage and get its inhibition at the next step (in continuous time the first unit to
  cross inhibits the others before they fire; with a coarse step this tie-break restores
  that order — without it units of near-equal drive fire in lock-step and learn one pattern);
* presentations with fewer than ``min_spikes`` excitatory spikes are repeated with the input
  current multiplied by ``gain_step`` (at most ``max_retries`` times; the paper raises the
  input rate instead, scaling the current has the same mean effect and keeps the spike trains).
  All higher gains of a presentation's ladder are simulated at once. As θ grows every unit's
  threshold rises together and most presentations need the same, slowly rising gain, so in
  training the ladder of a batch starts at the lowest gain the previous batch needed
  (``gain_index_``); ``assign_labels``/``predict`` start where training ended.

Homeostasis: the adaptive threshold θ (:class:`AdaptiveThreshold`)
-----------------------------------------------------------------
θ_j grows by ``theta_plus`` at every spike of unit j and decays with time constant
``tau_theta`` (steps). θ is held fixed during a presentation and updated after it, in
presentation order k = 1, 2, ... with c_{k,j} the spike count of unit j:

.. math::

    θ_k = e^{-T/τ_θ} \, (θ_{k-1} + θ_+ c_k)

A unit that wins often rises in threshold until others win its inputs, so every unit ends up
owning a share of the data. Because a network of ``n_exc`` units shares the same number of
spikes per presentation, the per-unit firing rate — and with it the equilibrium θ — falls as
1/n_exc. ``theta_plus`` is therefore given per 100 units (``theta_scale="per_100"``, the
default: θ_+ is ``theta_plus · n_exc/100``), which keeps θ's equilibrium, and the strength of
the competition, independent of the network size; ``theta_scale="absolute"`` uses
``theta_plus`` as is. During ``assign_labels``/``predict`` θ is frozen.

Learning
--------
Pair-based STDP (:mod:`cosim.learning.stdp`) accumulated over ``train_batch`` presentations
with the weights held fixed (:func:`~cosim.learning.stdp.stdp_accumulate`, summed over the
batch) and applied once (:func:`~cosim.learning.stdp.apply_block`), then each column of W_in
is rescaled to the p-norm ||w_j||_p = ``norm``·n_in^{1/p} (p = ``norm_ord``) and clipped;
``norm=None`` disables it. The paper rescales the sum (p = 1); the default p = 2 makes a
unit's drive x·w_j = |x| |w_j| cos(x, w_j), so the first unit to fire is the one whose
prototype is closest in angle to the input, not the one whose weight is most concentrated on
bright pixels (measured on digits with k-means centroids as prototypes: 96 % with p = 2
against 87 % with p = 1 at 100 prototypes). The presentations of a batch are simulated
together (vectorised), which is what makes an epoch's cost nearly independent of ``n_exc``;
``train_batch=1`` is the online rule of the paper. The STDP rates are multiplied by
``lr_decay ** epoch``.

Device-aware learning (``programmer=PulseProgrammer(...)``)
----------------------------------------------------------
The weights are device states (w = w_min + s·(w_max - w_min)). Each batch computes the same
update as on the ideal crossbar (STDP, then normalisation) and writes the change as whole
programming pulses with gate-selected rows
(:meth:`~cosim.learning.stdp.PulseProgrammer.write`): the pulse counts come from the
programmer's count model, the device's saturating response decides where each cell lands,
cycle-to-cycle noise is seeded. The new states are programmed on the crossbar, whose reads
(IR drop included) drive the next batch. With a :class:`~cosim.crossbar.Compact` (or a
``Tiled`` of them) the backend must map w_max to the device's g_max with the linear state map,
so that programming the written states reproduces them exactly; this is checked.

Read-out (labels as in Diehl & Cook)
------------------------------------
``assign_labels(x, y)`` presents the labelled *training* samples once with learning off and
θ frozen, and gives each unit the class for which its mean spike count is highest (units that
never fire get label -1). ``predict`` sums, per class, the spike counts of the units of that
class, divides by their number (mean response) and returns the class with the highest value
(classes without units never win).

The constructor stores parameters only (scikit-learn style); ``fit`` initialises the weights
(uniform in [0, ``w_init``], then normalised) from ``seed`` and trains, ``partial_fit``
continues. ``x`` is (N, T, n_in) spikes, or an object with ``sample(epoch)`` and ``shape``
(e.g. :class:`cosim.data.EncodedImages`) giving a fresh spike draw per epoch.

(This module is over 500 lines because it is one network: its model, training loop,
read-out and saved state belong together; the rule and the pulse writer live in
:mod:`cosim.learning`.)
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from .. import _validate as check
from ..learning.stdp import (PulseProgrammer, STDPParams, apply_block, params_from,
                             stdp_accumulate)

__all__ = ["DiehlCook", "AdaptiveThreshold"]


@dataclass(frozen=True)
class AdaptiveThreshold:
    r"""θ of Diehl & Cook: +``theta_plus`` per spike, decay with ``tau_theta`` (steps).

    :meth:`update` applies, presentation by presentation (each ``n_steps`` long, θ frozen
    during it), θ_k = e^{-n_steps/τ_θ} (θ_{k-1} + θ_+ c_k).
    """

    theta_plus: float
    tau_theta: float

    def __post_init__(self):
        check.positive("theta_plus", self.theta_plus, allow_zero=True)
        check.positive("tau_theta", self.tau_theta)

    def update(self, theta, counts, n_steps: int) -> np.ndarray:
        """θ after presentations with spike counts ``counts`` (P, n) in order; a new array."""
        theta = np.array(theta, dtype=np.float64)
        decay = math.exp(-n_steps / self.tau_theta)
        for c in np.asarray(counts, dtype=np.float64).reshape(-1, theta.shape[-1]):
            theta = decay * (theta + self.theta_plus * c)
        return theta


THETA_SCALES = ("per_100", "absolute")
NORM_ORDS = (1, 2)


class DiehlCook:
    """Diehl & Cook style unsupervised network; see the module docstring for the model.

    Tuned defaults (sklearn digits, 64 inputs, p = 0.5·pixel per step, T = 100), measured by
    ``benchmarks/bench_stdp.py``: 92.8 % test accuracy at 100 units (5 epochs), 95.0 % at 400
    (8 epochs), no silent unit.
    """

    DEFAULT_STDP = STDPParams(eta_plus=0.001, eta_minus=0.0001, tau_plus=10.0, tau_minus=10.0,
                              w_min=0.0, w_max=1.0, mu=1.0, mode="multiplicative")

    def __init__(self, n_exc: int = 100, n_classes: int = 10, tau_m: float = 50.0,
                 thr: float = 0.5, w_inh: float = 50.0, theta_plus: float = 0.01,
                 tau_theta: float = 1e5, theta_scale: str = "per_100", n_refractory: int = 2,
                 one_spike: bool = True, stdp=None, norm: float | None = 0.1,
                 norm_ord: int = 2, w_init: float = 0.3, min_spikes: int = 6, max_retries: int = 8,
                 gain_step: float = 1.15, lr_decay: float = 0.8, train_batch: int = 16,
                 crossbar="ideal", programmer: PulseProgrammer | None = None,
                 batch_size: int = 256, seed=0):
        self.n_exc = n_exc
        self.n_classes = n_classes
        self.tau_m = tau_m
        self.thr = thr
        self.w_inh = w_inh
        self.theta_plus = theta_plus
        self.tau_theta = tau_theta
        self.theta_scale = theta_scale
        self.n_refractory = n_refractory
        self.one_spike = one_spike
        self.stdp = stdp
        self.norm = norm
        self.norm_ord = norm_ord
        self.w_init = w_init
        self.min_spikes = min_spikes
        self.max_retries = max_retries
        self.gain_step = gain_step
        self.lr_decay = lr_decay
        self.train_batch = train_batch
        self.crossbar = crossbar
        self.programmer = programmer
        self.batch_size = batch_size
        self.seed = seed

    _PARAM_NAMES = ("n_exc", "n_classes", "tau_m", "thr", "w_inh", "theta_plus", "tau_theta",
                    "theta_scale", "n_refractory", "one_spike", "stdp", "norm", "norm_ord",
                    "w_init", "min_spikes", "max_retries", "gain_step", "lr_decay", "train_batch",
                    "crossbar", "programmer", "batch_size", "seed")

    # -- scikit-learn style parameters ----------------------------------------------------------
    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in self._PARAM_NAMES}

    def set_params(self, **params) -> "DiehlCook":
        for k, v in params.items():
            if k not in self._PARAM_NAMES:
                raise ValueError(f"unknown parameter {k!r}")
            setattr(self, k, v)
        return self

    def _stdp(self) -> STDPParams:
        return params_from(self.stdp, self.DEFAULT_STDP)

    def _validated(self) -> STDPParams:
        """Check every parameter (names the one at fault); returns the STDP parameters."""
        check.integer("n_exc", self.n_exc, minimum=1)
        check.integer("n_classes", self.n_classes, minimum=2)
        check.positive("tau_m", self.tau_m)
        check.positive("thr", self.thr)
        check.positive("w_inh", self.w_inh, allow_zero=True)
        check.choice("theta_scale", self.theta_scale, THETA_SCALES)
        self._homeostasis()
        check.integer("n_refractory", self.n_refractory, minimum=0)
        if not isinstance(self.one_spike, (bool, np.bool_)):
            raise ValueError(f"one_spike must be a bool, got {type(self.one_spike).__name__}")
        if self.norm is not None:
            check.positive("norm", self.norm)
        if self.norm_ord not in NORM_ORDS or isinstance(self.norm_ord, bool):
            raise ValueError(f"norm_ord must be 1 or 2, got {self.norm_ord!r}")
        check.positive("w_init", self.w_init)
        check.integer("min_spikes", self.min_spikes, minimum=0)
        check.integer("max_retries", self.max_retries, minimum=0)
        if check.positive("gain_step", self.gain_step) <= 1:
            raise ValueError(f"gain_step must be > 1, got {self.gain_step}")
        check.positive("lr_decay", self.lr_decay)
        check.integer("train_batch", self.train_batch, minimum=1)
        check.integer("batch_size", self.batch_size, minimum=1)
        stdp = self._stdp()
        if stdp.mode == "pulses":
            raise ValueError("stdp.mode must be 'additive' or 'multiplicative' (the rule that "
                             "computes the update); DiehlCook writes pulses through "
                             "programmer=PulseProgrammer(...)")
        if self.programmer is not None and not isinstance(self.programmer, PulseProgrammer):
            raise ValueError(f"programmer must be a PulseProgrammer or None, got "
                             f"{type(self.programmer).__name__}")
        return stdp

    def _homeostasis(self) -> AdaptiveThreshold:
        plus = check.positive("theta_plus", self.theta_plus, allow_zero=True)
        if check.choice("theta_scale", self.theta_scale, THETA_SCALES) == "per_100":
            plus *= self.n_exc / 100.0
        return AdaptiveThreshold(plus, check.positive("tau_theta", self.tau_theta))

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

    def check_input(self, x) -> np.ndarray:
        """Validate spikes x (N, T, n_inputs) once, at the public boundary."""
        return self._check_x(x)

    def _check_y(self, y, n):
        return check.labels("y", y, n, self.n_classes)

    def _require_fitted(self, labels=False):
        if getattr(self, "W_in_", None) is None:
            raise RuntimeError("DiehlCook is not fitted: call fit(x) or set_state(...)")
        if labels and getattr(self, "labels_", None) is None:
            raise RuntimeError("no labels assigned: call assign_labels(x, y)")

    # -- state ------------------------------------------------------------------------------
    def _initialise(self, n_inputs):
        stdp = self._validated()
        self._rng = check.rng(self.seed)
        self.n_inputs_ = int(n_inputs)
        w = self._rng.uniform(0.0, self.w_init, (self.n_inputs_, self.n_exc))
        self.W_in_ = self._normalise(w, stdp)
        self.theta_ = np.zeros(self.n_exc)
        self.labels_ = None
        self.label_accuracy_ = None
        self.n_seen_ = 0
        self.epochs_ = 0
        self.spike_counts_ = np.zeros(self.n_exc, dtype=np.int64)
        self.gain_index_ = 0
        self._xbar = None

    def _normalise(self, w, stdp):
        # every column to ||w_j||_p = norm · n_in^(1/p): the p-norm of a column of all `norm`
        if self.norm is not None:
            p = int(self.norm_ord)
            target = self.norm * w.shape[0] ** (1.0 / p)
            sizes = np.linalg.norm(w, ord=p, axis=0, keepdims=True)
            w = w * np.where(sizes > 0, target / np.where(sizes > 0, sizes, 1.0), 1.0)
        return np.clip(w, stdp.w_min, stdp.w_max)

    @property
    def array(self):
        """The crossbar backend programmed with ``W_in_`` (built from ``crossbar`` on first
        use); its reads drive the feed-forward current."""
        self._require_fitted()
        return self._backend()

    def _backend(self):
        if getattr(self, "_xbar", None) is None:
            from ..crossbar import make_crossbar
            xbar = make_crossbar(self.crossbar).fresh()
            if self.programmer is not None:
                _check_pulse_backend(xbar, self._stdp())
            xbar.program(self.W_in_)
            self._xbar = xbar
        return self._xbar

    # -- dynamics -------------------------------------------------------------------------------
    def _simulate(self, current, theta):
        """Run the excitatory layer on feed-forward currents (B, T, n) at thresholds thr + θ.

        Returns the spikes (B, T, n); θ is held fixed during a presentation. The step is that
        of :class:`cosim.neurons.LIF` (v' = α v + (1 - α) I, spike if v' > A, reset to 0,
        ``n_refractory`` steps held at 0; its coefficients are taken from an LIF) fused with
        the inhibition and the one-spike rule and written over the sparse spikes: a step
        costs a handful of dense operations whatever the number of units (this loop is the
        whole cost of an epoch).
        """
        from ..neurons import LIF
        B, T, n = current.shape
        neuron = LIF(n, tau=float(self.tau_m), thr=float(self.thr) + theta,
                     n_refractory=self.n_refractory)
        alpha, gain = neuron.voltage_coefficients()
        thr = neuron.thr
        n_ref = int(self.n_refractory)
        w_inh = float(self.w_inh)
        one_spike = bool(self.one_spike)
        Z = np.zeros((B, T, n))
        v = np.zeros((B, n))
        spike_b = spike_j = np.zeros(0, dtype=np.int64)       # the last step's spikes
        ref_b = ref_j = ref_until = np.zeros(0, dtype=np.int64)
        for t in range(T):
            i_t = current[:, t]
            if w_inh and spike_b.size:
                # each spike inhibits every other unit of its presentation one step later
                rows, slot = np.unique(spike_b, return_inverse=True)
                z_prev = np.zeros((rows.size, n))
                z_prev[slot, spike_j] = 1.0
                i_t = i_t.copy()
                i_t[rows] -= w_inh * (z_prev.sum(axis=1, keepdims=True) - z_prev)
            v = alpha * v + gain * i_t
            if ref_b.size:
                held = ref_until >= t
                ref_b, ref_j, ref_until = ref_b[held], ref_j[held], ref_until[held]
                v[ref_b, ref_j] = 0.0
            cb, cj = np.nonzero(v > thr)
            if one_spike and cb.size > 1 and np.any(cb[1:] == cb[:-1]):
                # several crossings in one presentation: the largest relative overshoot
                # (v' - A)/A spikes, the others keep their voltage (no reset)
                over = (v[cb, cj] - thr[cj]) / thr[cj]
                order = np.lexsort((-over, cb))
                cb, cj = cb[order], cj[order]
                first = np.concatenate([[True], cb[1:] != cb[:-1]])
                cb, cj = cb[first], cj[first]
            if cb.size:
                Z[cb, t, cj] = 1.0
                v[cb, cj] = 0.0
                if n_ref:
                    ref_b = np.concatenate([ref_b, cb])
                    ref_j = np.concatenate([ref_j, cj])
                    ref_until = np.concatenate([ref_until, np.full(cb.size, t + n_ref)])
            spike_b, spike_j = cb, cj
        return Z

    def _spikes(self, current, start: int = 0):
        """Spikes (B, T, n) at θ_ with the gain ladder, and each presentation's gain index.

        Gains are ``gain_step**k``, k = ``start`` ... ``max_retries``. Every presentation is
        simulated at gain index ``start``; those below ``min_spikes`` are simulated at every
        higher gain at once (one batch: presentations are independent) and keep the first
        that reaches ``min_spikes`` (the last one if none does).
        """
        gains = float(self.gain_step) ** np.arange(self.max_retries + 1)
        Z = self._simulate(gains[start] * current, self.theta_)
        index = np.full(current.shape[0], start)
        need = max(self.min_spikes, 1)
        silent = np.flatnonzero(Z.sum(axis=(1, 2)) < need)
        higher = gains[start + 1:]
        if silent.size == 0 or higher.size == 0:
            return Z, index
        ladder = (higher[:, None, None, None] * current[silent][None]).reshape(
            -1, *current.shape[1:])
        Zg = self._simulate(ladder, self.theta_).reshape(higher.size, silent.size,
                                                         *current.shape[1:])
        ok = Zg.sum(axis=(2, 3)) >= need                     # (gains, silent)
        first = np.where(ok.any(axis=0), ok.argmax(axis=0), higher.size - 1)
        Z[silent] = Zg[first, np.arange(silent.size)]
        index[silent] = start + 1 + first
        return Z, index

    def _responses(self, x):
        """Spike counts (N, n_exc) with learning off and θ frozen."""
        xbar = self._backend()
        N, T, n_in = x.shape
        counts = np.zeros((N, self.n_exc))
        for start in range(0, N, self.batch_size):
            xb = x[start:start + self.batch_size]
            cur = xbar.forward(xb.reshape(-1, n_in)).reshape(xb.shape[0], T, self.n_exc)
            Z, _ = self._spikes(cur, self.gain_index_)
            counts[start:start + xb.shape[0]] = Z.sum(axis=1)
        return counts

    # -- training -------------------------------------------------------------------------------
    def fit(self, x, epochs: int = 1, progress=None) -> "DiehlCook":
        """Initialise from ``seed`` and train for ``epochs`` passes over ``x`` (see module doc).

        ``progress``: the library's progress callback (``cosim._validate.progress_callback``:
        None/False silent, True log lines, or a callable); it is called after every weight
        update as ``progress(desc, seen, total, epoch=..., counts=...)`` with ``counts`` the
        (B, n_exc) spike counts of the batch's presentations, in order.
        """
        self._validated()
        self.n_inputs_ = None
        n_in = x.shape[2] if hasattr(x, "sample") else self._check_x(x).shape[2]
        self._initialise(n_in)
        return self.partial_fit(x, epochs=epochs, progress=progress)

    def partial_fit(self, x, epochs: int = 1, progress=None) -> "DiehlCook":
        """Continue training from the current state (same ``progress`` as :meth:`fit`)."""
        self._require_fitted()
        stdp = self._validated()
        epochs = check.integer("epochs", epochs, minimum=0)
        report = check.progress_callback(progress)     # only the CLI draws progress
        homeostasis = self._homeostasis()
        resample = hasattr(x, "sample")
        if not resample:
            x = self._check_x(x)
        xbar = self._backend()
        tb = int(self.train_batch)
        for _ in range(epochs):
            xe = self._check_x(x.sample(self.epochs_)) if resample else x
            N, T, n_in = xe.shape
            order = self._rng.permutation(N)
            scale = float(self.lr_decay) ** self.epochs_
            for start in range(0, N, tb):
                xb = xe[order[start:start + tb]]
                cur = xbar.forward(xb.reshape(-1, n_in)).reshape(xb.shape[0], T, self.n_exc)
                Z, index = self._spikes(cur, self.gain_index_)
                # the gain presentations need drifts slowly (θ grows): the next batch starts
                # its ladder at the lowest gain this one needed
                self.gain_index_ = int(index.min())
                counts = Z.sum(axis=1)
                self.theta_ = homeostasis.update(self.theta_, counts, T)
                self.spike_counts_ += counts.sum(axis=0).astype(np.int64)
                if counts.any():
                    # (B, T, n) -> (T, B, n): traces run along time, the batch is summed
                    P, D, _ = stdp_accumulate(xb.transpose(1, 0, 2), Z.transpose(1, 0, 2),
                                              stdp, checked=False)
                    self._learn(P, D, stdp, scale, np.flatnonzero(counts.sum(axis=0)))
                    xbar.program(self.W_in_)
                self.n_seen_ += xb.shape[0]
                report(f"STDP epoch {self.epochs_ + 1}", start + xb.shape[0], N,
                       epoch=self.epochs_ + 1, counts=counts)
            self.epochs_ += 1
        return self

    def _learn(self, P, D, stdp, scale, active):
        """Update the columns of the units that fired (the others' updates are exactly 0)."""
        w = self.W_in_[:, active]
        target = self._normalise(apply_block(w, P[:, active], D[:, active], stdp, scale=scale),
                                 stdp)
        if self.programmer is not None:
            # device-aware: the same update, written as whole pulses through the device (only
            # the learning columns: re-normalising a column that did not learn would write
            # rounding noise into it; the other columns' sources sit at the inhibit level, so
            # their cells see the scheme's half-selected biases, inside the default card's
            # threshold gap, and do not move)
            target = self.programmer.write(w, target - w, stdp, rng=self._rng)
        weights = self.W_in_.copy()
        weights[:, active] = target
        self.W_in_ = weights

    # -- read-out -------------------------------------------------------------------------------
    @property
    def silent_units_(self) -> np.ndarray:
        """Indices of the units that never fired during training (sorted)."""
        self._require_fitted()
        return np.flatnonzero(self.spike_counts_ == 0)

    def responses(self, x) -> np.ndarray:
        """Spike counts (N, n_exc) of the excitatory units for each sample (no learning)."""
        self._require_fitted()
        return self._responses(self._check_x(x))

    def assign_labels(self, x, y) -> np.ndarray:
        """Label each unit by the class of its highest mean response; returns ``labels_``.

        Also sets ``label_accuracy_``: the accuracy of these labels on the responses they were
        assigned from (the training accuracy, without simulating ``x`` a second time).
        """
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
        self.label_accuracy_ = float(np.mean(self._classify(counts) == y))
        return self.labels_.copy()

    def predict(self, x) -> np.ndarray:
        """Class whose assigned units respond most on average, (N,) int64."""
        self._require_fitted(labels=True)
        return self._classify(self._responses(self._check_x(x)))

    def _classify(self, counts) -> np.ndarray:
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
        params["stdp"] = self._stdp().to_dict()
        # the backend as registry data (cosim.crossbar.to_spec): a device-aware network
        # reloads onto the same arrays without being told again
        from ..crossbar import make_crossbar, to_spec
        params["crossbar"] = to_spec(make_crossbar(params["crossbar"]))
        if not (params["seed"] is None or isinstance(params["seed"], numbers.Integral)):
            params["seed"] = None
        elif params["seed"] is not None:
            params["seed"] = int(params["seed"])
        if params["programmer"] is not None:
            params["programmer"] = params["programmer"].to_dict()
        return {"params": params, "W_in": self.W_in_.copy(), "theta": self.theta_.copy(),
                "labels": None if self.labels_ is None else self.labels_.copy(),
                "spike_counts": self.spike_counts_.copy(), "gain_index": int(self.gain_index_),
                "n_inputs": int(self.n_inputs_), "n_seen": int(self.n_seen_),
                "epochs": int(self.epochs_),
                "rng_state": self._rng.bit_generator.state}

    def set_state(self, state: dict, crossbar=None) -> "DiehlCook":
        """Restore from ``get_state()`` (``crossbar`` overrides the saved backend spec)."""
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
        elif isinstance(params.get("crossbar"), dict):      # a spec, from an untrusted file
            from ..crossbar import from_spec
            params["crossbar"] = from_spec(params["crossbar"], where="params.crossbar")
        # states saved before these settings existed meant the paper's forms
        for key, before in (("theta_scale", "absolute"), ("norm_ord", 1), ("train_batch", 1)):
            params.setdefault(key, before)
        params["stdp"] = params_from(params.get("stdp"), self.DEFAULT_STDP)
        if isinstance(params.get("programmer"), dict):
            params["programmer"] = PulseProgrammer.from_dict(params["programmer"])
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
        counts = state.get("spike_counts")
        if counts is None:
            counts = np.zeros(self.n_exc, dtype=np.int64)
        counts = np.asarray(counts)
        if counts.shape != (self.n_exc,) or counts.dtype.kind not in "iu" or np.any(counts < 0):
            raise ValueError(f"spike_counts must be non-negative ints with shape ({self.n_exc},)")
        self.n_inputs_ = n_in
        self.W_in_ = w.copy()
        self.theta_ = theta.copy()
        self.labels_ = labels
        self.label_accuracy_ = None
        self.spike_counts_ = counts.astype(np.int64)
        self.gain_index_ = min(check.integer("gain_index", state.get("gain_index", 0),
                                             minimum=0), self.max_retries)
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


def _check_pulse_backend(xbar, stdp):
    """Device-aware learning needs a backend that stores the written states unchanged."""
    inner = getattr(xbar, "inner", xbar)          # a Tiled backend: check its tile template
    if not hasattr(inner, "device"):
        return                                      # ideal reads of the device states
    device = inner.device
    if getattr(device, "state_map", "linear") != "linear":
        raise ValueError("device-aware STDP needs the crossbar device's state_map='linear' "
                         f"(weights are device states), got {device.state_map!r}")
    w_max = getattr(inner, "w_max", None)
    if w_max is None or float(w_max) != stdp.w_max or stdp.w_min != 0.0:
        raise ValueError(f"device-aware STDP needs the crossbar's w_max = stdp.w_max "
                         f"({stdp.w_max}) and stdp.w_min = 0, so that a weight is a device "
                         f"state; got w_max={w_max}, w_min={stdp.w_min}")
