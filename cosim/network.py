"""SRNN: a spiking recurrent network whose synapses are crossbar arrays (docs/equations.md §3).

Per step t, with spikes x_t on the input word lines and z_{t-1} on the recurrent ones:

    I_t = Σ_d W_in^(d)ᵀ x_{t-d+1} + Σ_d W_rec^(d)ᵀ z_{t-d}      (d = synaptic delay, 1..n_delay)
    z_t, v_t = neuron step (IF | LIF | ALIF) with I_t
    y_t = κ y_{t-1} + (1 - κ) (W_outᵀ z_t + b_out),              κ = exp(-dt/τ_out)

Every weight matrix (and every delay slice of it: synapses with the same delay sit in the
same array) is held by its own crossbar backend. The recurrent arrays are read once per
step. The input and readout arrays are feed-forward, so the network hands them all
timesteps of a batch in one call, which is the same computation (one read per step and
sample) and lets a backend batch its solves.

Classification uses the mean of y over the last ``readout_window`` steps (all by default).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import _validate as check
from .crossbar import make_crossbar
from .neurons import ALIF, Neuron, make_neuron

__all__ = ["SRNN", "Record"]


@dataclass
class Record:
    """What a run produced. z and v are (batch, T, n_rec), y is (batch, T, n_out)."""

    z: np.ndarray
    v: np.ndarray
    y: np.ndarray
    logits: np.ndarray                      # (batch, n_out): mean of y over the readout window
    # internals kept for the backward passes (filled when run(..., trace=True))
    x: np.ndarray | None = None
    v_pre: np.ndarray | None = None
    threshold: np.ndarray | None = None
    b: np.ndarray | None = None
    refractory: np.ndarray | None = None
    extras: dict = field(default_factory=dict)


class SRNN:
    """Spiking recurrent network: input, recurrent and readout crossbars around one population.

    Parameters
    ----------
    n_in, n_rec, n_out : layer sizes.
    neuron : "if", "lif", "alif" or a :class:`~cosim.neurons.Neuron` with ``n == n_rec``.
    n_adaptive : with ``neuron="alif"``, only the first ``n_adaptive`` units adapt (β > 0);
        the rest are LIF units (β = 0), as in an LSNN. ``None``: all units adapt.
    tau_out : readout time constant.
    crossbar : "ideal", "compact", "spice" or a :class:`~cosim.crossbar.Crossbar`; each weight
        matrix gets a fresh copy of it.
    seed : int or Generator for the initial weights and the delays.
    n_delay : maximal synaptic delay in steps (1: no delays).
    delays : None (all 1 when n_delay == 1, else uniform in [1, n_delay]) or a dict with int
        arrays "in" (n_in, n_rec) and "rec" (n_rec, n_rec) of values in [1, n_delay].
    self_connections : allow W_rec diagonal entries (default False).
    readout_window : number of last steps averaged for the logits (None: all).
    dtype : "float64" (default) or "float32": the precision of the time loop and of the
        backward pass (weights are stored in float64 either way; float32 roughly halves the
        cost of a training iteration).
    input_scale, recurrent_scale : initial weight std in units of thr / sqrt(fan-in).
    **neuron_params : passed to the neuron constructor (tau, thr, beta, reset, ...).
    """

    def __init__(self, n_in, n_rec, n_out, neuron="alif", n_adaptive=None, tau_out=20.0,
                 crossbar="ideal", seed=0, n_delay=1, delays=None, self_connections=False,
                 readout_window=None, input_scale=10.0, recurrent_scale=1.0, dtype="float64",
                 **neuron_params):
        self.n_in = check.integer("n_in", n_in, minimum=1)
        self.n_rec = check.integer("n_rec", n_rec, minimum=1)
        self.n_out = check.integer("n_out", n_out, minimum=1)
        self.tau_out = check.positive("tau_out", tau_out)
        self.n_delay = check.integer("n_delay", n_delay, minimum=1)
        self.self_connections = bool(self_connections)
        self.readout_window = (None if readout_window is None
                               else check.integer("readout_window", readout_window, minimum=1))
        self.input_scale = check.positive("input_scale", input_scale, allow_zero=True)
        self.recurrent_scale = check.positive("recurrent_scale", recurrent_scale, allow_zero=True)
        self.dtype = np.dtype(check.choice("dtype", str(np.dtype(dtype)) if not isinstance(dtype, str)
                                           else dtype, ("float64", "float32")))
        self.seed = seed
        # every delay slice of "in" and "rec" is an array of its own: refuse what cannot fit
        # (weights, slice and backend copies ~ 3 float64 matrices, ~2 KiB of objects each)
        check.fits_in_memory(
            f"SRNN({self.n_in}, {self.n_rec}, {self.n_out}, n_delay={self.n_delay})",
            self.n_delay * (3 * 8.0 * (self.n_in * self.n_rec + self.n_rec ** 2) + 4096)
            + 3 * 8.0 * self.n_rec * self.n_out, hint="use fewer units or a smaller n_delay")
        rng = check.rng(seed)

        self.neuron = self._build_neuron(neuron, n_adaptive, neuron_params, rng)
        self.n_adaptive = n_adaptive
        self.dt = self.neuron.dt
        self.kappa = float(np.exp(-self.dt / self.tau_out))

        self.crossbar = make_crossbar(crossbar)
        self._delays = self._build_delays(delays, rng)
        self.rec_mask = np.ones((self.n_rec, self.n_rec))
        if not self.self_connections:
            np.fill_diagonal(self.rec_mask, 0.0)

        thr = float(np.mean(self.neuron.thr))
        weights = {
            "in": rng.normal(0.0, self.input_scale * thr / np.sqrt(self.n_in), (self.n_in, self.n_rec)),
            "rec": rng.normal(0.0, self.recurrent_scale * thr / np.sqrt(self.n_rec),
                              (self.n_rec, self.n_rec)) * self.rec_mask,
            "out": rng.normal(0.0, 1.0 / np.sqrt(self.n_rec), (self.n_rec, self.n_out)),
        }
        self.bias_out = np.zeros(self.n_out)
        self._weights = {}
        self._backends = {}
        self.set_weights(weights)

    # -- construction helpers ---------------------------------------------------------------
    def _build_neuron(self, neuron, n_adaptive, params, rng) -> Neuron:
        params = dict(params)
        params.setdefault("n_delay", getattr(self, "n_delay", 1))
        if isinstance(neuron, Neuron):
            if params.keys() - {"n_delay"}:
                raise TypeError("neuron parameters cannot be given together with a Neuron instance")
            if neuron.n != self.n_rec:
                raise ValueError(f"neuron has n={neuron.n} units but n_rec={self.n_rec}")
            if neuron.n_delay != self.n_delay:
                raise ValueError(f"neuron has n_delay={neuron.n_delay} but the network "
                                 f"n_delay={self.n_delay}")
            if n_adaptive is not None:
                raise ValueError("n_adaptive applies only when neuron is given by name")
            return neuron
        if not isinstance(neuron, str):
            raise TypeError(f"neuron must be 'if', 'lif', 'alif' or a Neuron, got {type(neuron).__name__}")
        params.setdefault("seed", np.random.SeedSequence(int(rng.integers(2**63))))
        if n_adaptive is None:
            return make_neuron(neuron, self.n_rec, **params)
        n_adaptive = check.integer("n_adaptive", n_adaptive, minimum=0)
        if neuron.lower() != "alif":
            raise ValueError("n_adaptive needs neuron='alif' (the first n_adaptive units adapt)")
        if n_adaptive > self.n_rec:
            raise ValueError(f"n_adaptive={n_adaptive} exceeds n_rec={self.n_rec}")
        adaptive = np.arange(self.n_rec) < n_adaptive
        beta = params.pop("beta", 1.6)
        params["beta"] = np.where(adaptive, beta, 0.0)
        if "thr" not in params:
            # each type keeps its own default threshold (ALIF 0.01, LIF 0.03)
            params["thr"] = np.where(adaptive, 0.01, 0.03)
        return ALIF(self.n_rec, **params)

    def _build_delays(self, delays, rng) -> dict:
        shapes = {"in": (self.n_in, self.n_rec), "rec": (self.n_rec, self.n_rec)}
        if delays is None:
            if self.n_delay == 1:
                return {k: np.ones(s, dtype=np.int64) for k, s in shapes.items()}
            return {k: rng.integers(1, self.n_delay + 1, s) for k, s in shapes.items()}
        if not isinstance(delays, dict) or set(delays) != set(shapes):
            raise ValueError("delays must be a dict with keys 'in' and 'rec'")
        out = {}
        for key, shape in shapes.items():
            d = np.asarray(delays[key])
            if d.shape != shape:
                raise ValueError(f"delays['{key}'] must have shape {shape}, got {d.shape}")
            if not np.issubdtype(d.dtype, np.integer) or d.min() < 1 or d.max() > self.n_delay:
                raise ValueError(f"delays['{key}'] must hold integers in [1, {self.n_delay}]")
            out[key] = d.astype(np.int64)
        return out

    # -- weights -----------------------------------------------------------------------------
    @property
    def weights(self) -> dict:
        """Copies of the weight matrices: "in" (n_in, n_rec), "rec" (n_rec, n_rec), "out"."""
        return {k: v.copy() for k, v in self._weights.items()}

    @property
    def delays(self) -> dict:
        return {k: v.copy() for k, v in self._delays.items()}

    @property
    def neuron_types(self) -> np.ndarray:
        """Per-unit type name ("if", "lif" or "alif"; ALIF units with β = 0 are "lif")."""
        kinds = np.full(self.n_rec, self.neuron.kind, dtype=object)
        if isinstance(self.neuron, ALIF):
            kinds[self.neuron.beta == 0] = "lif"
        return kinds

    def set_weights(self, weights: dict | None = None, bias_out=None, **named) -> None:
        """Replace some or all weight matrices and reprogram their arrays."""
        weights = dict(weights or {}, **named)
        unknown = set(weights) - {"in", "rec", "out"}
        if unknown:
            raise ValueError(f"unknown weight matrices {sorted(unknown)}; use 'in', 'rec', 'out'")
        shapes = {"in": (self.n_in, self.n_rec), "rec": (self.n_rec, self.n_rec),
                  "out": (self.n_rec, self.n_out)}
        for key, value in weights.items():
            w = check.as_float_array(f"weights['{key}']", value, ndim=2)
            if w.shape != shapes[key]:
                raise ValueError(f"weights['{key}'] must have shape {shapes[key]}, got {w.shape}")
            if key == "rec":
                w = w * self.rec_mask
            self._weights[key] = w.copy()
            self._program(key)
        if bias_out is not None:
            b = check.as_float_array("bias_out", bias_out, ndim=1)
            if b.shape != (self.n_out,):
                raise ValueError(f"bias_out must have shape ({self.n_out},), got {b.shape}")
            self.bias_out = b.copy()

    def _slices(self, key):
        """(delay, weight slice) pairs of one matrix; the readout has no delay."""
        w = self._weights[key]
        if key == "out" or self.n_delay == 1:
            return [(1, w)]
        return [(d, np.where(self._delays[key] == d, w, 0.0)) for d in range(1, self.n_delay + 1)]

    def _program(self, key):
        index = {"in": 0, "rec": 1, "out": 2}[key]
        for d, w in self._slices(key):
            backend = self._backends.get((key, d))
            if backend is None:
                backend = self.crossbar.fresh(index * 64 + d)
                self._backends[(key, d)] = backend
            backend.program(w)

    def backends(self) -> dict:
        """The arrays of this network: {(matrix, delay): Crossbar}."""
        return dict(self._backends)

    def effective_weights(self) -> dict:
        """Per matrix, the sum over delay slices of what the arrays realise without wires."""
        out = {}
        for key in ("in", "rec", "out"):
            slices = [self._backends[(key, d)].effective_weights for d, _ in self._slices(key)]
            out[key] = np.sum(slices, axis=0) if len(slices) > 1 else slices[0]
        return out

    # -- backward-pass hooks (cosim.learning.bptt / bp) --------------------------------------
    def backward_maps(self) -> dict:
        """{matrix: [(delay, M)]}: per array the matrix of its read (``Crossbar.linear_map``).

        The backward passes multiply by M where the forward pass multiplied by it: for an ideal
        array the weight slice, for a linear-read Compact array its IR-drop weight map (so the
        gradient through time and into earlier layers sees the wires). M is None for a read
        that is nonlinear in its input; then :meth:`array_vjp` is used.
        """
        return {key: [(d, self._backends[(key, d)].linear_map()) for d, _ in self._slices(key)]
                for key in ("in", "rec", "out")}

    def array_vjp(self, key, delay, x, grad_current):
        """(∂L/∂x (N, n), this array's share of ∂L/∂W[key]) of the reads x (N, n) of array
        (key, delay), given ∂L/∂(its output) (N, m): both from one adjoint solve per read.

        For an array read nonlinearly in its input that solve is most of the backward pass;
        a backward pass that needs ∂L/∂x anyway collects the shares and hands them to
        :meth:`weight_gradients` (``shares``), instead of solving every read again there.
        The shares of several calls add up (the weight gradient is a sum over reads).
        """
        grad_x, grad = self._backends[(key, delay)].vjp(x, grad_current)
        return grad_x, self._slice_share(key, delay, grad)

    def _slice_share(self, key, delay, grad):
        """A slice holds only the weights of its delay."""
        if key != "out" and self.n_delay > 1:
            return np.where(self._delays[key] == delay, grad, 0.0)
        return grad

    def weight_gradients(self, key, inputs, grad_current, shares=None) -> np.ndarray:
        """∂L/∂W[key] (the stored weights) from what each of its arrays read.

        ``inputs(d)`` is the (B, T, n) array of inputs the array of delay slice d read at the
        steps whose output is ``grad_current`` (B, T, m) = ∂L/∂(summed output). Each array
        turns this into ∂L/∂(its weights) (``Crossbar.map_gradient`` for a linear read of
        ``xᵀ ∂L/∂out``, ``Crossbar.vjp`` otherwise: exact through the IR drop for Compact); a
        slice holds only the weights of its delay, and W_rec keeps its mask.  ``shares``
        {delay: gradient}: slices whose share the caller already summed from
        :meth:`array_vjp` over exactly these (input, gradient) pairs (reads of an all-zero
        input may be left out: their share is zero); they are not read again.
        """
        flat_grad = grad_current.reshape(-1, grad_current.shape[-1])
        shares = shares or {}
        total = None
        for d, _ in self._slices(key):
            if d in shares:
                grad = shares[d]
            else:
                backend = self._backends[(key, d)]
                x = inputs(d)
                flat_x = x.reshape(-1, x.shape[-1])
                if backend.linear_map() is not None:
                    grad = backend.map_gradient(flat_x.T @ flat_grad)
                else:
                    grad = backend.vjp(flat_x, flat_grad)[1]
                grad = self._slice_share(key, d, grad)
            total = grad if total is None else total + grad
        return total * self.rec_mask if key == "rec" else total

    # -- running -----------------------------------------------------------------------------
    def check_input(self, x) -> np.ndarray:
        """Validate an input batch (batch, T, n_in) once, at the public boundary."""
        x = check.as_float_array("x", x, ndim=3)
        if x.shape[2] != self.n_in:
            raise ValueError(f"x must have shape (batch, T, {self.n_in}), got {x.shape}")
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"x must have at least one sample and one step, got {x.shape}")
        return x

    def run(self, x, trace: bool = False, progress: bool = False,
            energy: bool = False) -> Record:
        """Run the network on x (batch, T, n_in); returns a :class:`Record`.

        ``energy=True`` (physical arrays only) adds ``record.extras["energy"]``, the
        :class:`cosim.energy.EnergyReport` of the run (J per inference, per array, per step,
        per synaptic operation; TOPS/W).
        """
        x = self.check_input(x)
        record = self._run(x, trace=trace, progress=progress)
        if energy:
            from .energy import inference_energy     # deferred: energy reads the arrays
            record.extras["energy"] = inference_energy(self, x, record)
        return record

    @property
    def n_classes(self) -> int:
        """Classes of the readout (one output unit per class)."""
        return self.n_out

    def predict(self, x) -> np.ndarray:
        """Class labels (batch,): the output unit of the largest logit."""
        return self.run(x).logits.argmax(axis=1).astype(np.int64)

    def _feedforward(self, key, inputs):
        """All-steps read of a feed-forward matrix: (B, T, n) -> (B, T, [n_delay,] m)."""
        batch, steps, n = inputs.shape
        flat = inputs.reshape(batch * steps, n)
        parts = [self._backends[(key, d)].forward(flat).reshape(batch, steps, -1)
                 for d, _ in self._slices(key)]
        return parts[0] if len(parts) == 1 else np.stack(parts, axis=2)

    def _run(self, x, trace=False, progress=False) -> Record:
        batch, steps, _ = x.shape
        # z, v, y and the input currents (+ four traces when training), float64 at most
        per_step = (2 + 4 * trace + self.n_delay) * self.n_rec + 2 * self.n_out
        check.fits_in_memory(f"running {batch} samples x {steps} steps", 8.0 * batch * steps
                             * per_step, hint="run fewer samples at once or fewer steps")
        neuron = self.neuron
        dtype = self.dtype
        delayed = self.n_delay > 1
        x = x.astype(dtype, copy=False)
        input_current = self._feedforward("in", x).astype(dtype, copy=False)
        rec_backends = [self._backends[("rec", d)] for d, _ in self._slices("rec")]

        state = neuron.zero_state(batch, dtype)
        z = np.empty((batch, steps, self.n_rec), dtype)
        v = np.empty_like(z)
        if trace:
            v_pre = np.empty_like(z)
            # without adaptation the threshold is constant and b stays 0: fill them once
            adaptive = bool(np.any(neuron.adaptation_coefficients()[1]))
            thr = np.empty_like(z)
            b = np.empty_like(z) if adaptive else np.zeros_like(z)
            if not adaptive:
                thr[:] = neuron.thr
            refr = np.zeros(z.shape, dtype=bool)

        report = check.progress_callback(progress)      # only the CLI draws progress
        for t in range(steps):
            if progress:
                report("timesteps", t, steps)
            if t == 0:
                current = input_current[:, 0]
            elif delayed:
                rec = np.stack([bk.forward(state.z) for bk in rec_backends], axis=1)
                current = input_current[:, t] + rec
            else:
                current = input_current[:, t] + rec_backends[0].forward(state.z)
            zt, state, step_trace = neuron.advance(current, state)
            z[:, t] = zt
            v[:, t] = state.v
            if trace:
                v_pre[:, t] = step_trace.v_pre
                if adaptive:
                    thr[:, t] = step_trace.threshold
                    b[:, t] = state.b
                if neuron.n_refractory:
                    refr[:, t] = step_trace.refractory

        from scipy.signal import lfilter   # deferred: scipy.signal is a heavy import

        out_current = (self._feedforward("out", z) + self.bias_out).astype(dtype, copy=False)
        y = lfilter([1.0 - self.kappa], [1.0, -self.kappa], out_current, axis=1)
        window = steps if self.readout_window is None else min(self.readout_window, steps)
        logits = y[:, steps - window:].mean(axis=1)
        record = Record(z=z, v=v, y=y, logits=logits)
        if trace:
            record.x = x
            record.v_pre, record.threshold, record.b, record.refractory = v_pre, thr, b, refr
        return record

    # -- persistence -------------------------------------------------------------------------
    def get_config(self) -> dict:
        """Everything needed to rebuild this network, except weights and the backend."""
        return {"n_in": self.n_in, "n_rec": self.n_rec, "n_out": self.n_out,
                "tau_out": self.tau_out, "n_delay": self.n_delay,
                "self_connections": self.self_connections, "readout_window": self.readout_window,
                "dtype": str(self.dtype),
                "neuron_kind": self.neuron.kind, "neuron_params": self.neuron.params}

    @classmethod
    def from_config(cls, config: dict, weights: dict, bias_out, delays: dict,
                    crossbar="ideal") -> "SRNN":
        """Rebuild a network from ``get_config()``, its weights, readout bias and delays."""
        params = dict(config["neuron_params"])
        n = params.pop("n")
        net = cls(config["n_in"], config["n_rec"], config["n_out"],
                  neuron=make_neuron(config["neuron_kind"], n, **params),
                  tau_out=config["tau_out"], crossbar=crossbar, n_delay=config["n_delay"],
                  delays=delays, self_connections=config["self_connections"],
                  readout_window=config["readout_window"],
                  dtype=config.get("dtype", "float64"))
        net.set_weights(weights, bias_out=bias_out)
        return net

    def with_crossbar(self, crossbar) -> "SRNN":
        """A copy with the same neurons, weights and delays on another crossbar backend."""
        return SRNN.from_config(self.get_config(), self.weights, self.bias_out, self.delays,
                                crossbar=crossbar)

    def __repr__(self):
        return (f"SRNN(n_in={self.n_in}, n_rec={self.n_rec}, n_out={self.n_out}, "
                f"neuron={self.neuron!r}, crossbar={self.crossbar!r})")
