"""BPTT: a hand-written reverse pass through every timestep of an SRNN (docs/equations.md §2, §4).

Forward (per step t, units in columns, z_{-1} = v_{-1} = b_{-1} = 0):

    I_t  = Σ_d W_in^(d)ᵀ x_{t-d+1} + Σ_d W_rec^(d)ᵀ z_{t-d}
    v'_t = α v_{t-1} + g I_t                      (g = 1-α for LIF/ALIF, α = g = 1 for IF)
    b_t  = ρ b_{t-1} + (1-ρ) z_{t-1},   A_t = thr + β b_t
    z_t  = H(v'_t - A_t)  (0 while refractory)
    v_t  = v'_t (1 - z_t)  ["zero"]   or   v'_t - z_t A_t  ["subtract"]
    y_t  = κ y_{t-1} + (1-κ)(W_outᵀ z_t + b_out),   logits = mean of y over the window
    L    = mean over the batch of softmax cross-entropy(logits, label)
           + c_reg · Σ_j (mean_{b,t} z_{b,t,j} - f_target)²

Backward, in reverse time, with ψ_v = ∂z/∂v' and ψ_A = ∂z/∂A from the surrogate:

    e_t   = ∂L/∂z_t = (readout) + Σ_d δI_{t+d} W_rec^(d) + (1-ρ) δb_{t+1} [+ reset path]
    δv'_t = e_t ψ_v + δv_t ∂v_t/∂v'_t          δA_t = e_t ψ_A (- δv_t z_t for "subtract")
    δb_t  = β δA_t + ρ δb_{t+1}                 δI_t = g δv'_t          δv_{t-1} = α δv'_t
    ∂L/∂W_in^(d) = Σ_t x_{t-d+1}ᵀ δI_t,   ∂L/∂W_rec^(d) = Σ_t z_{t-d}ᵀ δI_t

Refractory steps pass no gradient (z and v are held there). The reset is a constant in the
backward pass (LSNN) unless ``reset_grad=True``, which adds ∂v_t/∂z_t · δv_t to e_t; with
the smooth surrogate and ``reset_grad=True`` the result is the exact gradient, which is what
the finite-difference test checks.

Hardware-aware training: wherever the forward pass multiplied by an array's matrix, the
backward pass multiplies by the same matrix (``SRNN.backward_maps``: the IR-drop weight map
M of a linear-read Compact array, the weights of an ideal one), and each array turns
∂L/∂M = Σ_t x_tᵀ δI_t into the gradient of its stored weights (``SRNN.weight_gradients``:
the adjoint of the nodal solve and the mapping, ``cosim.crossbar.adjoint``). For a read
that is nonlinear in its input the products become the array's vector-Jacobian products at
every step (``SRNN.array_vjp``): one adjoint solve per read gives both its ∂L/∂x and its
share of ∂L/∂W, so the recurrent and readout arrays, whose ∂L/∂z the loop needs, are not
differentiated a second time for their weights. With those, e_t and ∂L/∂W above are the
exact gradient of the forward pass on the arrays (quantisation, variability and faults
passed straight through); other backends fall back to the straight-through estimator
through their effective weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _validate as check

__all__ = ["BPTT", "softmax_cross_entropy", "readout_backward", "RateRegularizer"]


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray):
    """Mean cross-entropy of softmax(logits) and its gradient w.r.t. the logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    log_p = shifted - log_norm
    batch = logits.shape[0]
    loss = -log_p[np.arange(batch), labels].mean()
    grad = np.exp(log_p)
    grad[np.arange(batch), labels] -= 1.0
    return float(loss), grad / batch


@dataclass(frozen=True)
class RateRegularizer:
    """c · Σ_j (f_j - f_target)², f_j the mean firing rate of unit j over batch and time."""

    strength: float = 0.0
    target: float = 0.01

    def __post_init__(self):
        check.positive("rate_reg strength", self.strength, allow_zero=True)
        check.positive("rate_reg target", self.target, allow_zero=True)

    def loss_and_grad(self, z: np.ndarray):
        if self.strength == 0:
            return 0.0, None
        rate = z.mean(axis=(0, 1))
        diff = rate - self.target
        grad = 2.0 * self.strength * diff / (z.shape[0] * z.shape[1])
        return float(self.strength * np.sum(diff**2)), np.broadcast_to(grad, z.shape)


def readout_backward(net, record, dlogits, maps=None):
    """Gradient through the leaky readout: returns (∂L/∂W_out, ∂L/∂b_out, ∂L/∂z from readout).

    ``maps``: ``net.backward_maps()`` if already at hand.
    """
    from scipy.signal import lfilter   # deferred: scipy.signal is a heavy import

    batch, steps, _ = record.y.shape
    window = steps if net.readout_window is None else min(net.readout_window, steps)
    g_direct = np.zeros_like(record.y)
    g_direct[:, steps - window:] = dlogits[:, None, :] / window
    # y_t = κ y_{t-1} + (1-κ) u_t  ⇒  G_t = g_t + κ G_{t+1}: the same filter run backwards
    g_total = lfilter([1.0], [1.0, -net.kappa], g_direct[:, ::-1], axis=1)[:, ::-1]
    du = (1.0 - net.kappa) * g_total
    z = record.z
    d_bias = du.sum(axis=(0, 1))
    (_, out_map), = (maps or net.backward_maps())["out"]
    if out_map is not None:
        d_out = net.weight_gradients("out", lambda d: z, du)
        dz = du @ out_map.T.astype(du.dtype, copy=False)
    else:
        # read nonlinearly: ∂L/∂z and ∂L/∂W_out from the same adjoint solve of every read
        dz, d_out = net.array_vjp("out", 1, z.reshape(-1, z.shape[2]),
                                  du.reshape(-1, du.shape[2]))
        dz = dz.reshape(z.shape).astype(du.dtype, copy=False)
    return d_out, d_bias, dz


def _neuron_coefficients(net):
    neuron = net.neuron
    alpha, gain = neuron.voltage_coefficients(net.dtype)
    rho, beta = neuron.adaptation_coefficients(net.dtype)
    return alpha, gain, rho, beta


def input_gradients(net, x, d_current, z, rec_shares=None):
    """∂L/∂W_in and ∂L/∂W_rec from δI (B, T, n_rec), each delay slice through its own
    array; ``rec_shares`` {delay: ∂L/∂W_rec share}: the recurrent slices the backward loop
    already differentiated (``SRNN.array_vjp``)."""
    d_in = net.weight_gradients("in", lambda d: _shift(x, d - 1), d_current)
    d_rec = net.weight_gradients("rec", lambda d: _shift(z, d), d_current, shares=rec_shares)
    return d_in, d_rec


def _shift(a, k):
    """a[:, t - k] at position t (zeros before the start)."""
    if k == 0:
        return a
    out = np.zeros_like(a)
    out[:, k:] = a[:, :-k]
    return out


class BPTT:
    """Backpropagation through time with the surrogate gradient of the network's neurons.

    ``gradients(net, x, labels)`` runs the forward pass on the network's backends and returns
    ``(loss, grads, record)`` with grads keyed "in", "rec", "out", "bias_out".
    """

    name = "bptt"

    def __init__(self, rate_reg: RateRegularizer | None = None, reset_grad: bool = False,
                 truncate: int | None = None):
        self.rate_reg = rate_reg or RateRegularizer()
        self.reset_grad = bool(reset_grad)
        if truncate not in (None, 1):
            raise ValueError(f"truncate must be None (full BPTT) or 1, got {truncate!r}")
        # truncate=1 cuts every temporal path (v, z, b of the previous step are constants)
        self.truncate = truncate

    def gradients(self, net, x, labels):
        backends = getattr(net, "backends", None)
        for backend in (backends() if backends else {}).values():
            backend.expect_gradients()               # the backward pass follows this run
        record = net._run(x, trace=True)
        loss, grads = self.backward(net, record, labels)
        return loss, grads, record

    def _common(self, net, record, labels):
        loss, dlogits = softmax_cross_entropy(record.logits, labels)
        reg_loss, reg_grad = self.rate_reg.loss_and_grad(record.z)
        maps = net.backward_maps()
        dlogits = dlogits.astype(net.dtype, copy=False)
        d_out, d_bias, dz = readout_backward(net, record, dlogits, maps)
        if reg_grad is not None:
            dz = dz + reg_grad
        return loss + reg_loss, d_out, d_bias, dz, maps

    def backward(self, net, record, labels):
        loss, d_out, d_bias, dz_readout, maps = self._common(net, record, labels)
        alpha, gain, rho, beta = _neuron_coefficients(net)
        surrogate = net.neuron.surrogate
        subtract = net.neuron.reset == "subtract"
        z, v_pre, thr, refr = record.z, record.v_pre, record.threshold, record.refractory
        # truncate=1 cuts every temporal path: no recurrent carry, no adaptation carry
        temporal = self.truncate is None
        adaptive = temporal and bool(np.any(beta))
        psi_v = surrogate.grad_v(v_pre, thr)
        if refr.any():
            keep = ~refr
            psi_v *= keep
        else:
            keep = None
        # ∂z/∂A = -∂z/∂v' v'/A (surrogate.py); only adapting thresholds carry gradient
        psi_a = -psi_v * v_pre / thr if adaptive else None
        batch, steps, n = z.shape

        rec_maps = maps["rec"]
        linear_rec = all(m is not None for _, m in rec_maps)
        # recurrent maps transposed and pre-multiplied by the input gain:
        # δI_t Mᵀ = δv'_t (g ⊙ Mᵀ)
        rec_g = ([(d, gain[:, None] * m.T.astype(z.dtype, copy=False)) for d, m in rec_maps]
                 if temporal and linear_rec else [])
        # arrays read nonlinearly: their vector-Jacobian product at the step's input z_t
        rec_vjp = [d for d, _ in rec_maps] if temporal and not linear_rec else []

        # Everything that does not depend on the backward carry is computed for all steps at
        # once; the loop keeps only what must be sequential.
        # ∂v_t/∂v'_t: 1-z_t for the zero reset, 1 for subtract; 0 while refractory
        dv_dvp = np.ones_like(z) if subtract else 1.0 - z
        if keep is not None:
            dv_dvp = dv_dvp * keep
        carry_v = alpha * dv_dvp if temporal else None   # δv'_{t} from δv'_{t+1}: α ∂v_t/∂v'_t
        one_minus_rho = 1.0 - rho

        # The loop runs over time-major, contiguous copies: a step then touches contiguous
        # (batch, n) blocks instead of strided slices of (batch, T, n) records.
        def time_major(a):
            return None if a is None else np.ascontiguousarray(np.moveaxis(a, 1, 0))

        e_readout = time_major(dz_readout)
        z_tm = time_major(z) if rec_vjp else None
        psi_v_t, psi_a_t, carry_t = time_major(psi_v), time_major(psi_a), time_major(carry_v)
        # reset path: e_t gains -δv_t ∂v_t/∂z_t = -α δv'_{t+1} (A_t or v'_t)
        reset_t = (time_major(-(thr if subtract else v_pre))
                   if self.reset_grad and temporal else None)
        # subtract reset: v_t = v'_t - z_t A_t also passes -z_t δv_t to A_t
        direct_t = (time_major(-z * (keep if keep is not None else 1.0))
                    if adaptive and subtract else None)
        need_dv = reset_t is not None or direct_t is not None

        d_vpre = np.empty((steps, batch, n), z.dtype)   # every step is written before read
        rec_shares = {}                                 # delay -> ∂L/∂W_rec share (rec_vjp)
        db = np.zeros((batch, n), z.dtype)              # δb_{t+1}
        for t in range(steps - 1, -1, -1):
            e = e_readout[t]
            for d, w_g in rec_g:
                if t + d < steps:
                    e = e + d_vpre[t + d] @ w_g
            for d in rec_vjp:
                if t + d < steps:
                    # the read of z_t by slice d feeds δI_{t+d}: its adjoint gives e_t and
                    # this read's share of ∂L/∂W_rec (the pair (z_t, δI_{t+d}) of
                    # input_gradients), so no read is solved twice
                    grad_z, share = net.array_vjp("rec", d, z_tm[t], gain * d_vpre[t + d])
                    e = e + grad_z.astype(z.dtype, copy=False)
                    rec_shares[d] = share if d not in rec_shares else rec_shares[d] + share
            if adaptive:
                e = e + one_minus_rho * db
            dv = None
            if temporal and t + 1 < steps:
                if need_dv:
                    dv = alpha * d_vpre[t + 1]         # δv_t
                    if reset_t is not None:
                        e = e + dv * reset_t[t]
                dvp = d_vpre[t]
                np.multiply(e, psi_v_t[t], out=dvp)
                dvp += d_vpre[t + 1] * carry_t[t]
            else:
                np.multiply(e, psi_v_t[t], out=d_vpre[t])
            if adaptive:
                da = e * psi_a_t[t]
                if dv is not None and direct_t is not None:
                    da += dv * direct_t[t]
                db = beta * da + rho * db
        d_current = gain * np.moveaxis(d_vpre, 0, 1)
        d_in, d_rec = input_gradients(net, record.x, d_current, z, rec_shares)
        return loss, {"in": d_in, "rec": d_rec, "out": d_out, "bias_out": d_bias}
