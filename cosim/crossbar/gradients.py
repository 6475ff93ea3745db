"""The backward pass through a programmed Compact array (hardware-aware training).

:class:`CompactGradients` is the gradient half of :class:`~cosim.crossbar.compact.Compact`
(which inherits it; so does :class:`~cosim.crossbar.spice.Spice`, whose gradients are those
of the same circuit): the read is differentiated as it is solved, IR drop included.

* ``linear_map()``: the weight map M (R, C) of the linear read, forward(x) = x @ M.
* ``map_gradient(∂L/∂M)``: ∂L/∂W through the transfer matrix A (A/V) of the cells g·k
  (adjoint of the nodal solve, ``adjoint.transfer_gradient``, on the blocks of the column
  marching that built A for the forward pass: an array asked for a gradient keeps them from
  its next programming on) and the mapping scale s (S per weight unit); r_driver and
  r_sense included.
* ``vjp(x, ∂L/∂out)``: (∂L/∂x, ∂L/∂W) of reads; for the nonlinear read by the
  implicit-function theorem at each converged Newton solution (``adjoint.nonlinear_vjp``).

Everything is chained through the mapping with quantisation, variability and faults passed
straight through (``adjoint.mapping_gradient``); read noise and converters are not
differentiated. The math lives in :mod:`cosim.crossbar.adjoint`; this module only reads the
programmed array's state (``_weights``, ``_states``, ``_g``, ``_scale``, ``mapping``,
``read_factor``, ``solution``, ``weight_map``, ``_cell``, ``_node_voltages``), which
``Compact`` owns.
"""

from __future__ import annotations

import numpy as np

from . import adjoint

__all__ = ["CompactGradients"]

_VJP_CHUNK_CELLS = 2 ** 21     # reads x cells whose node voltages a nonlinear vjp holds at once


class CompactGradients:
    """Gradients of a Compact array's read (mixed into ``Compact``; see the module docstring)."""

    def expect_gradients(self):
        """From now on keep what the adjoint reuses: the linear read's column marching (from
        the next transfer matrix built) and the nonlinear reads' converged node voltages.
        Without it the first gradient sets the same flag, after the first forward pass kept
        nothing: that batch's reads were solved again (nonlinear) or marched again (linear)."""
        self._for_gradients = True

    def linear_map(self):
        """The weight map M (IR drop included) for read="linear"; None for the nonlinear read.

        With read noise the forward pass is x @ M times (1 + σ N) per sense current, with a
        DAC / ADC it reads quantised inputs / currents; the backward pass uses M (noise and
        converters are passed straight through).  Whether forward is exactly x @ M:
        :meth:`linear_forward`.
        """
        self._require_programmed()
        return self.weight_map() if self.read == "linear" else None

    def _require_ideal_periphery_for_gradients(self):
        # the nonlinear adjoint (adjoint.nonlinear_vjp) assembles today's topology: source and
        # sense at the line ends without resistors; a gradient that ignored them would be wrong
        if self.r_driver or self.r_sense:
            raise NotImplementedError(
                f"weight gradients of the nonlinear read through r_driver = {self.r_driver!r} "
                f"ohm / r_sense = {self.r_sense!r} ohm are not supported (its adjoint assumes "
                f"an ideal driver and virtual ground): train with read='linear' (exact with "
                f"them) or with r_driver = r_sense = 0, and evaluate with them")

    def _to_amperes(self):
        """Sense amperes per output weight unit: out_j = (I_2j - I_2j+1) / (V_read s k)."""
        return 1.0 / (self.v_read * self._scale * self.read_factor)

    def _weight_gradient(self, grad_g, grad_scale):
        m = self.mapping
        return adjoint.mapping_gradient(self._weights, m.g_min, m.g_max, m.w_max, self._scale,
                                        grad_g, grad_scale)

    def map_gradient(self, grad_map):
        """Linear read: ∂L/∂W (R, C) from ∂L/∂M, exact through the IR drop.

        M = (A[:, 0::2] - A[:, 1::2]) / (s k) with A the transfer matrix of the cells g·k, so
        ∂L/∂A = ±∂L/∂M / (s k) on the G⁺ / G⁻ columns, ∂L/∂g = k ∂L/∂(g k) by the adjoint of
        the nodal solve, and ∂L/∂s = -Σ ∂L/∂M ⊙ M / s; then through the mapping.
        """
        if self.read != "linear":
            raise RuntimeError("map_gradient exists only for read='linear'; use vjp")
        self._require_programmed()
        grad_map = np.asarray(grad_map, dtype=np.float64)
        if grad_map.shape != self._weights.shape:
            raise ValueError(f"grad_map must have the weights' shape {self._weights.shape}, "
                             f"got {grad_map.shape}")
        per_volt = grad_map * (self._to_amperes() * self.v_read)     # 1 / (s k)
        grad_A = np.empty(self._states.shape)
        grad_A[:, 0::2] = per_volt
        grad_A[:, 1::2] = -per_volt
        # the programmed array's column marching (from its forward pass) is reused; from now
        # on every programming keeps it (training: a gradient after every forward pass)
        self._for_gradients = True
        grad_g = self.read_factor * adjoint.transfer_gradient(
            self._cell_conductance(), self.r_word, self.r_bit, grad_A, r_driver=self.r_driver,
            r_sense=self.r_sense, marching=self._linear_solver().marching)
        grad_scale = -float(np.sum(grad_map * self.weight_map())) / self._scale
        return self._weight_gradient(grad_g, grad_scale)

    def vjp(self, x, grad_out, weights=True):
        """(∂L/∂x, ∂L/∂W) of reads of x (N, R); exact for both reads (read noise aside).

        Nonlinear read: the converged node voltages of the distinct driven input patterns
        (kept from the forward reads, or solved again in one batched call) and each read's
        adjoint there (``adjoint.nonlinear_vjp``, batched); the state
        enters the cell current as the factor g(w), so ∂i/∂g = i/g.
        """
        if self.read == "linear":
            return super().vjp(x, grad_out, weights)
        self._require_programmed()
        self._require_ideal_periphery_for_gradients()
        self._for_gradients = True        # later reads keep their node voltages for this
        x = np.asarray(x, dtype=np.float64)
        grad_out = np.asarray(grad_out, dtype=np.float64)
        rows, cols2 = self._states.shape
        to_amps = self._to_amperes()
        cot = np.empty((x.shape[0], cols2))
        cot[:, 0::2] = grad_out * to_amps
        cot[:, 1::2] = -grad_out * to_amps
        # the reads' own source voltages (DAC levels; the DAC passes gradients straight
        # through): the operating points the forward reads solved, and their cache keys
        V = self._word_voltages(x)
        grad_x = np.empty(x.shape)
        grad_g = np.zeros((rows, cols2))
        grad_scale = 0.0
        cell = self._cell()
        chunk = max(1, _VJP_CHUNK_CELLS // (rows * cols2))     # bounds the node voltages held
        for k0 in range(0, x.shape[0], chunk):
            part = slice(k0, min(x.shape[0], k0 + chunk))
            Vc = V[part]
            u = np.zeros((Vc.shape[0], rows, cols2))           # word-line drops V - w
            b = np.zeros((Vc.shape[0], rows, cols2))
            driven = np.flatnonzero(np.any(Vc != 0, axis=1))   # undriven: every node at 0 V
            if driven.size and (self.r_word or self.r_bit):    # no wires: w = V, b = 0
                # each distinct pattern solved once, all of them in one batched call
                patterns, where = np.unique(Vc[driven], axis=0, return_inverse=True)
                drops, bits = self._node_voltages(patterns)
                u[driven] = drops[where.ravel()]
                b[driven] = bits[where.ravel()]
            grad_V, grad_di, i = adjoint.nonlinear_vjp_batch(cell, Vc, u, b, self.r_word,
                                                             self.r_bit, cot[part])
            self.stats["adjoints"] += Vc.shape[0]
            grad_x[part] = self.v_read * grad_V
            if weights:
                grad_g += np.einsum("kij,kij->ij", grad_di, i) / self._g
                # the sense currents: column sums of the cells (equal to the solver's own
                # currents by KCL; also right where no solve was needed)
                currents = i.sum(axis=1)
                out = (currents[:, 0::2] - currents[:, 1::2]) * to_amps
                grad_scale -= float(np.sum(grad_out[part] * out)) / self._scale
        return grad_x, (self._weight_gradient(grad_g, grad_scale) if weights else None)
