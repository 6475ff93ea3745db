"""The crossbar backend protocol shared by every backend (docs/architecture.md).

A backend holds one weight matrix W (rows = inputs on word lines, columns = outputs) as a
physical array and turns a batch of inputs at one timestep into synaptic currents:

* ``program(weights)`` stores W (as device states for physical backends);
* ``backend(x)`` returns the current in weight units, shape (..., C), for x of shape
  (..., R); for the ideal backend this is exactly x @ W;
* ``effective_weights`` is the (R, C) matrix the array realises after mapping (quantisation,
  variability), without wire resistance;
* ``fresh(index)`` returns an unprogrammed backend with the same settings, so a network can
  give each of its weight matrices (and delay slices) an array of its own.

* ``bitline_currents(x)`` returns the raw sense currents in amperes, shape
  (..., physical_columns · C): ``physical_columns`` bit lines per weight column (2 for a
  differential G+/G- array, 1 otherwise);
* ``linear_map()`` returns the (R, C) matrix M with ``forward(x) == x @ M`` for every x when
  the read is linear in x (IR drop included; read noise, a zero-mean perturbation, aside),
  else None (nonlinear devices).

Gradients (training): ``map_gradient(∂L/∂M)`` turns a gradient with respect to M into one
with respect to the programmed weights, and ``vjp(x, ∂L/∂out)`` does both for any read. The
defaults are the straight-through estimator: M = ``effective_weights`` and ∂L/∂W = ∂L/∂M.
Backends that know their read (Ideal exactly; Compact through the IR drop,
``cosim.crossbar.adjoint``) give the exact gradient.

The network calls ``forward`` (unchecked, hot path); users call ``backend(x)`` (checked).
Subclasses create every attribute in ``__init__`` (None until programmed).
"""

from __future__ import annotations

import inspect

import numpy as np

from .. import _validate as check

__all__ = ["Crossbar"]


class Crossbar:
    """Base class of crossbar backends; subclasses implement ``_program`` and ``forward``."""

    name = "crossbar"
    #: bit lines per weight column
    physical_columns = 1

    def __init__(self):
        self._weights = None

    #: constructor arguments that choose where or how this process runs (folders, engines,
    #: time limits), not what the array computes: never part of a spec, so a model file can
    #: never set them (a spec is untrusted data)
    LOCAL_PARAMS = frozenset({"cache", "engine", "timeout"})

    # -- settings ----------------------------------------------------------------------------
    @classmethod
    def param_names(cls) -> tuple[str, ...]:
        """Names of the constructor's keyword arguments, read from its signature."""
        signature = inspect.signature(cls.__init__)
        return tuple(p.name for p in list(signature.parameters.values())[1:]
                     if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))

    def get_params(self) -> dict:
        """Constructor arguments of this backend, read from the signature (as scikit-learn's
        ``clone`` does): every argument is stored under its own name."""
        return {name: getattr(self, name) for name in self.param_names()}

    def to_spec(self) -> dict:
        """This backend as plain JSON data ``{"name", "params"[, "inner"]}``; see
        :func:`cosim.crossbar.from_spec`, its inverse."""
        from . import to_spec
        return to_spec(self)

    def fresh(self, index: int = 0) -> "Crossbar":
        """An unprogrammed backend with the same settings; ``index`` decorrelates seeds."""
        params = self.get_params()
        if "seed" in params and params["seed"] is not None and index:
            params["seed"] = int(np.random.SeedSequence([int(params["seed"]), index])
                                 .generate_state(1)[0])
        return type(self)(**params)

    # -- protocol ----------------------------------------------------------------------------
    def program(self, weights) -> None:
        """Store the weight matrix (R inputs, C outputs) on the array."""
        weights = check.as_float_array("weights", weights, ndim=2)
        if 0 in weights.shape:
            raise ValueError(f"weights must not be empty, got shape {weights.shape}")
        self._program(weights)
        self._weights = weights.copy()

    def _program(self, weights: np.ndarray) -> None:
        raise NotImplementedError

    @property
    def programmed(self) -> bool:
        return self._weights is not None

    @property
    def shape(self) -> tuple[int, int]:
        self._require_programmed()
        return self._weights.shape

    @property
    def weights(self) -> np.ndarray:
        """The weights last given to ``program`` (a copy)."""
        self._require_programmed()
        return self._weights.copy()

    @property
    def effective_weights(self) -> np.ndarray:
        """The (R, C) matrix the array realises without wire resistance."""
        return self.weights

    # -- gradients ---------------------------------------------------------------------------
    def expect_gradients(self) -> None:
        """Announce that gradients of the coming reads will be asked (training): a backend
        may then keep what its backward pass reuses from the forward one.  Default: nothing."""

    def linear_map(self) -> np.ndarray | None:
        """(R, C) matrix M the backward pass multiplies by: forward(x) = x @ M for a linear read.

        None when the read is nonlinear in x (then use :meth:`vjp`). Default: the effective
        weights (straight-through for backends whose read this class does not know).
        """
        return self.effective_weights

    def linear_forward(self) -> bool:
        """True when ``forward(x) == x @ linear_map()`` exactly (no read noise, no
        converters): only then may a caller replace the read by the matrix product."""
        return self.linear_map() is not None

    def map_gradient(self, grad_map: np.ndarray) -> np.ndarray:
        """∂L/∂W (R, C) of the programmed weights from ∂L/∂M, M = :meth:`linear_map`.

        Default: straight through (∂L/∂W = ∂L/∂M), exact when M = W.
        """
        return grad_map

    def vjp(self, x: np.ndarray, grad_out: np.ndarray, weights: bool = True):
        """(∂L/∂x (N, R), ∂L/∂W (R, C) or None) for reads of x (N, R) with ∂L/∂out (N, C).

        Unchecked (hot path of the backward passes). Default: through :meth:`linear_map`.
        """
        M = self.linear_map()
        if M is None:                       # a read nonlinear in x: straight through
            M = self.effective_weights
        grad_x = grad_out @ M.T.astype(grad_out.dtype, copy=False)
        return grad_x, (self.map_gradient(x.T @ grad_out) if weights else None)

    def __call__(self, x) -> np.ndarray:
        """Synaptic current in weight units for inputs x of shape (..., R)."""
        return self._batched(self.forward, x)

    def bitline_currents(self, x) -> np.ndarray:
        """Raw sense currents in amperes, (..., physical_columns · C), for inputs x (..., R)."""
        return self._batched(self._currents, x)

    def _batched(self, method, x):
        flat, lead = self._flat_inputs(x)
        out = method(flat)
        return out.reshape(*lead, out.shape[-1])

    def _flat_inputs(self, x):
        """Checked inputs x (..., R) as (B, R) and the leading shape."""
        self._require_programmed()
        x = check.as_float_array("x", x)
        if x.ndim == 0 or x.shape[-1] != self._weights.shape[0]:
            raise ValueError(f"x must have last dimension {self._weights.shape[0]} (array rows), "
                             f"got shape {x.shape}")
        return x.reshape(-1, x.shape[-1]), x.shape[:-1]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Unchecked (B, R) -> (B, C); the hot path the network uses."""
        raise NotImplementedError

    def _currents(self, x: np.ndarray) -> np.ndarray:
        """Unchecked (B, R) -> sense currents (B, physical_columns · C) in amperes."""
        raise NotImplementedError

    def _require_programmed(self):
        if self._weights is None:
            raise RuntimeError(f"{type(self).__name__} backend is not programmed: call program(W)")

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"
