"""Spike function and its pseudo-derivative (docs/equations.md §2).

The forward pass uses the Heaviside step z = H(v' - A) (H(0) = 0). The backward pass
replaces its derivative by the piecewise-linear pseudo-derivative of LSNN (Bellec et al. 2018),
written on the scaled distance u = (v' - A) / A:

    ∂z/∂u  = γ · max(0, 1 - |u|)                       γ = dampening factor = 0.3
    ∂z/∂v' = ∂z/∂u / A   = γ · max(0, 1 - |v' - A| / A) / A
    ∂z/∂A  = ∂z/∂u · ∂u/∂A = -∂z/∂v' · v' / A

``∂z/∂A`` is the exact chain rule of the scaled form; it is how gradient reaches the ALIF
adaptation variable b through A = thr + β b.

:class:`SmoothSpike` replaces the step by a logistic function of u in the forward pass and
returns its exact derivatives, so finite differences of a whole network can check a
backward pass written for the piecewise-linear surrogate.
"""

from __future__ import annotations

import numpy as np

from . import _validate as check

__all__ = ["DAMPENING", "spike", "pseudo_derivative", "PiecewiseLinear", "SmoothSpike"]

DAMPENING = 0.3


def spike(v_pre: np.ndarray, threshold) -> np.ndarray:
    """Heaviside spike function z = H(v' - A) with H(0) = 0, as float 0.0/1.0."""
    return (np.asarray(v_pre) > threshold).astype(np.float64)


def pseudo_derivative(v_pre: np.ndarray, threshold, dampening: float = DAMPENING) -> np.ndarray:
    """∂z/∂v' = γ · max(0, 1 - |v' - A| / A) / A, elementwise."""
    v_pre = np.asarray(v_pre)
    dtype = v_pre.dtype if v_pre.dtype == np.float32 else np.float64
    threshold = np.asarray(threshold, dtype=dtype)
    inv = 1.0 / threshold
    # in place on one buffer: this runs on whole (batch, T, n) records in the backward pass
    out = np.subtract(v_pre, threshold, dtype=dtype)
    np.abs(out, out=out)
    out *= -inv
    out += 1.0
    np.maximum(out, 0.0, out=out)
    out *= dampening * inv
    return out


class PiecewiseLinear:
    """The default surrogate: Heaviside forward, LSNN pseudo-derivative backward."""

    smooth = False

    def __init__(self, dampening: float = DAMPENING):
        self.dampening = check.positive("dampening", dampening)

    def spike(self, v_pre, threshold):
        return spike(v_pre, threshold)

    def grad_v(self, v_pre, threshold):
        """∂z/∂v' alone (what a neuron without adaptation needs)."""
        return pseudo_derivative(v_pre, threshold, self.dampening)

    def grad(self, v_pre, threshold):
        """Return (∂z/∂v', ∂z/∂A)."""
        dz_dv = self.grad_v(v_pre, threshold)
        return dz_dv, -dz_dv * v_pre / threshold


class SmoothSpike:
    """Differentiable stand-in for gradient checks: logistic forward with exact derivatives.

    z = σ(u / width), u = (v' - A)/A, σ the logistic function. Its derivatives are exact, so a
    backward pass that uses ``grad`` is the true gradient of a forward pass that uses ``spike``.
    """

    smooth = True

    def __init__(self, width: float = 0.3):
        self.width = check.positive("width", width)

    def _sigma(self, u):
        return 0.5 * (1.0 + np.tanh(0.5 * u / self.width))

    def spike(self, v_pre, threshold):
        return self._sigma((v_pre - threshold) / threshold)

    def grad_v(self, v_pre, threshold):
        s = self._sigma((v_pre - threshold) / threshold)
        return s * (1.0 - s) / (self.width * threshold)

    def grad(self, v_pre, threshold):
        dz_dv = self.grad_v(v_pre, threshold)
        return dz_dv, -dz_dv * v_pre / threshold
