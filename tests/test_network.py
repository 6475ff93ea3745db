"""The SRNN against a plain numpy loop written here from docs/equations.md §1 and §3."""

import math

import numpy as np
import pytest

from cosim.crossbar import Crossbar, Ideal, make_crossbar
from cosim.network import SRNN
from cosim.neurons import LIF


def reference_run(x, w_in, w_rec, w_out, b_out, thr, beta, tau=20.0, tau_a=200.0, tau_out=20.0,
                  d_in=None, d_rec=None, n_delay=1):
    """Independent reference: explicit loops, zero reset, ALIF with per-unit beta."""
    batch, steps, _ = x.shape
    n = w_rec.shape[0]
    alpha, rho, kappa = math.exp(-1 / tau), math.exp(-1 / tau_a), math.exp(-1 / tau_out)
    if d_in is None:
        d_in = np.ones(w_in.shape, int)
        d_rec = np.ones(w_rec.shape, int)
    z_hist = np.zeros((batch, steps, n))
    v_out = np.zeros((batch, steps, n))
    y = np.zeros((batch, steps, w_out.shape[1]))
    for s in range(batch):
        v = np.zeros(n)
        b = np.zeros(n)
        z_prev = np.zeros(n)
        y_prev = np.zeros(w_out.shape[1])
        for t in range(steps):
            current = np.zeros(n)
            for j in range(n):
                for i in range(w_in.shape[0]):
                    src = t - d_in[i, j] + 1
                    if src >= 0:
                        current[j] += w_in[i, j] * x[s, src, i]
                for i in range(n):
                    src = t - d_rec[i, j]
                    if src >= 0:
                        current[j] += w_rec[i, j] * z_hist[s, src, i]
            b = rho * b + (1 - rho) * z_prev
            v_pre = alpha * v + (1 - alpha) * current
            z = (v_pre > thr + beta * b).astype(float)
            v = v_pre * (1 - z)
            z_hist[s, t], v_out[s, t] = z, v
            y_prev = kappa * y_prev + (1 - kappa) * (z @ w_out + b_out)
            y[s, t] = y_prev
            z_prev = z
    return z_hist, v_out, y


def test_srnn_matches_plain_numpy_loop():
    rng = np.random.default_rng(0)
    net = SRNN(7, 9, 3, neuron="alif", n_adaptive=4, seed=1)
    net.set_weights(bias_out=rng.normal(size=3))
    x = (rng.random((3, 40, 7)) < 0.3).astype(float)
    rec = net.run(x)
    w = net.weights
    z, v, y = reference_run(x, w["in"], w["rec"], w["out"], net.bias_out, net.neuron.thr,
                            net.neuron.beta)
    assert z.sum() > 10, "the test needs spikes to be meaningful"
    np.testing.assert_array_equal(rec.z, z)
    np.testing.assert_allclose(rec.v, v, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(rec.y, y, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(rec.logits, y.mean(axis=1), rtol=1e-12)


def test_srnn_with_delays_matches_reference():
    rng = np.random.default_rng(3)
    net = SRNN(5, 6, 2, neuron="lif", n_delay=3, seed=2)
    x = (rng.random((2, 30, 5)) < 0.4).astype(float)
    rec = net.run(x)
    w, d = net.weights, net.delays
    assert set(np.unique(d["in"])) == {1, 2, 3}
    z, v, y = reference_run(x, w["in"], w["rec"], w["out"], net.bias_out, net.neuron.thr,
                            np.zeros(6), d_in=d["in"], d_rec=d["rec"])
    assert z.sum() > 5
    np.testing.assert_array_equal(rec.z, z)
    np.testing.assert_allclose(rec.y, y, rtol=1e-12, atol=1e-15)


def test_no_self_connections_by_default():
    net = SRNN(3, 5, 2)
    assert np.all(np.diag(net.weights["rec"]) == 0)
    net.set_weights(rec=np.ones((5, 5)))
    assert np.all(np.diag(net.weights["rec"]) == 0)
    assert np.all(np.diag(SRNN(3, 5, 2, self_connections=True).weights["rec"]) != 0)


def test_record_shapes_and_types():
    net = SRNN(4, 6, 3, neuron="if")
    rec = net.run(np.ones((2, 11, 4)))
    assert rec.z.shape == (2, 11, 6) and rec.v.shape == (2, 11, 6) and rec.y.shape == (2, 11, 3)
    assert set(np.unique(rec.z)) <= {0.0, 1.0}
    assert set(net.weights) == {"in", "rec", "out"}
    mixed = SRNN(4, 6, 3, neuron="alif", n_adaptive=2)
    assert mixed.neuron_types.tolist() == ["alif"] * 2 + ["lif"] * 4


def test_neuron_instance_and_seed_determinism():
    net = SRNN(4, 6, 3, neuron=LIF(6, tau=10.0))
    assert net.neuron.tau[0] == 10.0
    x = (np.random.default_rng(1).random((2, 20, 4)) < 0.5).astype(float)
    np.testing.assert_array_equal(SRNN(4, 6, 3, seed=4).run(x).z, SRNN(4, 6, 3, seed=4).run(x).z)
    assert not np.array_equal(SRNN(4, 6, 3, seed=4).weights["in"], SRNN(4, 6, 3, seed=5).weights["in"])


class CountingIdeal(Ideal):
    """A plug-in backend: counts calls, proving the network goes through the protocol."""

    calls = 0

    def forward(self, x):
        CountingIdeal.calls += 1
        return super().forward(x)


def test_any_backend_plugs_in_and_is_called_per_matrix():
    CountingIdeal.calls = 0
    net = SRNN(4, 6, 3, crossbar=CountingIdeal())
    x = np.ones((2, 10, 4))
    ref = SRNN(4, 6, 3).run(x)
    rec = net.run(x)
    np.testing.assert_array_equal(rec.z, ref.z)
    # one all-steps read for "in" and "out", one read per step after the first for "rec"
    assert CountingIdeal.calls == 2 + 9
    assert {k for k, _ in net.backends()} == {"in", "rec", "out"}


def test_ideal_backend_protocol():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(5, 3))
    bk = Ideal()
    with pytest.raises(RuntimeError, match="program"):
        bk(np.ones(5))
    bk.program(w)
    x = rng.random((4, 5))
    np.testing.assert_allclose(bk(x), x @ w)
    assert bk(np.ones((2, 3, 5))).shape == (2, 3, 3)
    assert isinstance(bk, Crossbar) and bk.shape == (5, 3)
    with pytest.raises(ValueError, match="x"):
        bk(np.ones((4, 6)))
    with pytest.raises(ValueError, match="weights"):
        bk.program(np.array([[np.inf]]))
    with pytest.raises(ValueError, match="crossbar"):
        make_crossbar("quantum")


@pytest.mark.parametrize("call,word", [
    (lambda: SRNN(4, 6, 3).run(np.ones((2, 10, 5))), "x"),
    (lambda: SRNN(4, 6, 3).run(np.full((2, 10, 4), np.nan)), "x"),
    (lambda: SRNN(4, 6, 3).run(np.ones((10, 4))), "x"),
    (lambda: SRNN(4, 6, 3, neuron="izhikevich"), "neuron"),
    (lambda: SRNN(4, 6, 3, tau=-1.0), "tau"),
    (lambda: SRNN(4, 6, 3, neuron="lif", n_adaptive=2), "n_adaptive"),
    (lambda: SRNN(4, 6, 3).set_weights(rec=np.ones((6, 5))), "rec"),
    (lambda: SRNN(4, 6, 3).set_weights(out=np.full((6, 3), np.inf)), "out"),
    (lambda: SRNN(0, 6, 3), "n_in"),
    (lambda: SRNN(4, 6, 3, neuron=LIF(5)), "n_rec"),
])
def test_bad_input(call, word):
    with pytest.raises((ValueError, TypeError), match=word):
        call()
