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
        self._matrix32 = None

    def forward(self, x):
        if x.dtype == np.float32:
            # a float32 network reads a float32 copy (made once per program)
            if self._matrix32 is None:
                self._matrix32 = self._matrix.astype(np.float32)
            return x @ self._matrix32
        return x @ self._matrix
