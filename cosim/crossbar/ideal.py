"""The ideal crossbar: the exact matrix product, no devices, no wires."""

from __future__ import annotations

import numpy as np

from .base import Crossbar

__all__ = ["Ideal"]


class Ideal(Crossbar):
    """I = x @ W exactly: what an array computes with perfect devices and zero wire resistance.

    One bit line per output, at 1 A per weight unit: ``bitline_currents(x) == x @ W``.
    """

    name = "ideal"

    def __init__(self):
        super().__init__()
        self._matrix = None
        self._matrix32 = None

    def linear_map(self):
        self._require_programmed()
        return self._matrix

    def _currents(self, x):
        return x @ self._matrix

    def _program(self, weights):
        self._matrix = np.array(weights, order="C")
        self._matrix.setflags(write=False)
        self._matrix32 = None

    def forward(self, x):
        if x.dtype == np.float32:
            # a float32 network reads a float32 copy (made once per program)
            if self._matrix32 is None:
                self._matrix32 = self._matrix.astype(np.float32)
            return x @ self._matrix32
        return x @ self._matrix
