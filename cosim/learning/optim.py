"""Optimisers that update a dict of numpy arrays in place: SGD (with momentum) and Adam."""

from __future__ import annotations

import numpy as np

from .. import _validate as check

__all__ = ["SGD", "Adam", "make_optimizer"]


class SGD:
    """p ← p - lr · m,  m ← μ m + g (plain SGD for μ = 0)."""

    def __init__(self, lr=1e-2, momentum=0.0):
        self.lr = check.positive("lr", lr)
        self.momentum = check.positive("momentum", momentum, allow_zero=True)
        self._velocity = {}

    def step(self, params: dict, grads: dict) -> None:
        for key, grad in grads.items():
            if self.momentum:
                vel = self._velocity.setdefault(key, np.zeros_like(grad))
                vel *= self.momentum
                vel += grad
                grad = vel
            params[key] -= self.lr * grad


class Adam:
    """Adam (Kingma & Ba 2015) with bias correction."""

    def __init__(self, lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8):
        self.lr = check.positive("lr", lr)
        for name, value in (("beta1", beta1), ("beta2", beta2)):
            if not 0 <= value < 1:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        self.beta1, self.beta2 = float(beta1), float(beta2)
        self.eps = check.positive("eps", eps)
        self._m, self._v, self._t = {}, {}, 0

    def step(self, params: dict, grads: dict) -> None:
        self._t += 1
        c1 = 1.0 - self.beta1**self._t
        c2 = 1.0 - self.beta2**self._t
        for key, grad in grads.items():
            m = self._m.setdefault(key, np.zeros_like(grad))
            v = self._v.setdefault(key, np.zeros_like(grad))
            m *= self.beta1
            m += (1.0 - self.beta1) * grad
            v *= self.beta2
            v += (1.0 - self.beta2) * grad * grad
            params[key] -= self.lr * (m / c1) / (np.sqrt(v / c2) + self.eps)


def make_optimizer(name, lr):
    name = check.choice("optimizer", name, ("adam", "sgd"))
    return Adam(lr=lr) if name == "adam" else SGD(lr=lr)
