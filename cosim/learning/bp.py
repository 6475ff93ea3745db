"""BP: the BPTT backward pass truncated to depth 1 in time (docs/equations.md §4).

The neuron's temporal state (v_{t-1}, z_{t-1}, b_{t-1}) is treated as a constant, so the
gradient of each step stops at that step:

    e_t   = ∂L/∂z_t from the readout (and the rate regulariser)
    δv'_t = e_t ψ_v(v'_t, A_t)         δI_t = g δv'_t
    ∂L/∂W_in = Σ_t x_tᵀ δI_t,          ∂L/∂W_rec = Σ_t z_{t-1}ᵀ δI_t

The readout's leaky integrator is a fixed linear filter of the outputs and keeps its exact
gradient (it holds no neuron state). With no time dependence left, the whole backward pass
is a handful of array operations over all steps at once: no loop over time, which is why BP
costs less than BPTT per iteration; each δI_t is available as soon as step t has run, so the
rule can also be applied online.
"""

from __future__ import annotations

from .bptt import BPTT, input_gradients

__all__ = ["BP"]


class BP(BPTT):
    """Surrogate-gradient BP: BPTT truncated to one step (vectorised over time)."""

    name = "bp"

    def backward(self, net, record, labels):
        loss, d_out, d_bias, dz_readout, _ = self._common(net, record, labels)
        _, gain = net.neuron.voltage_coefficients(net.dtype)
        psi_v = net.neuron.surrogate.grad_v(record.v_pre, record.threshold)
        d_current = gain * dz_readout * psi_v * ~record.refractory
        d_in, d_rec = input_gradients(net, record.x, d_current, record.z)
        return loss, {"in": d_in, "rec": d_rec, "out": d_out, "bias_out": d_bias}
