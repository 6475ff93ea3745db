"""The ideal crossbar: the exact matrix product, no devices, no wires."""

from __future__ import annotations

import numpy as np

from .base import Crossbar

__all__ = ["Ideal"]


class Ideal(Crossbar):
    """I = x @ W exactly: what an array computes with perfect devices and zero wire resistance."""

    name = "ideal"

    def _program(self, weights):
        self._matrix = np.ascontiguousarray(weights)

    def forward(self, x):
        return x @ self._matrix
