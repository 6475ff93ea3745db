"""Neurons against hand-derived sequences (docs/equations.md §1) and the structure rule."""

import math

import numpy as np
import pytest

from cosim.neurons import ALIF, IF, LIF, Neuron, make_neuron


def run(neuron, currents, batch=1):
    """Feed a (T, n) current sequence; return spikes and voltages (T, n)."""
    state = neuron.zero_state(batch)
    zs, vs = [], []
    for current in currents:
        z, state = neuron.step(np.broadcast_to(current, (batch, neuron.n)), state)
        zs.append(z[0].copy())
        vs.append(state.v[0].copy())
    return np.array(zs), np.array(vs)


def test_only_the_base_defines_step():
    for cls in (IF, LIF, ALIF):
        assert issubclass(cls, Neuron)
        assert "step" not in vars(cls), f"{cls.__name__} must not define its own step"
        assert "advance" not in vars(cls)
    assert "_dynamics" in vars(IF) and "_dynamics" in vars(LIF)
    assert "_threshold" in vars(ALIF)


@pytest.mark.parametrize("current,thr", [(0.01, 0.03), (0.007, 0.03), (0.3, 1.0), (0.25, 1.0)])
def test_if_period_with_reset_to_zero(current, thr):
    neuron = IF(1, thr=thr)
    z, v = run(neuron, np.full((60, 1), current))
    # spike at the first k with k·I > thr counted from the last reset: period floor(thr/I) + 1
    period = math.floor(thr / current) + 1
    expected = np.array([(t + 1) % period == 0 for t in range(60)], dtype=float)
    np.testing.assert_array_equal(z[:, 0], expected)
    # voltage after reset is exactly 0 at spikes, k·I in between
    k = np.array([(t + 1) % period for t in range(60)])
    np.testing.assert_allclose(v[:, 0], k * current, atol=1e-15)


def test_lif_subthreshold_alpha_recursion_and_steady_state():
    tau, current = 20.0, 0.02
    neuron = LIF(1, tau=tau, thr=0.03)
    z, v = run(neuron, np.full((300, 1), current))
    alpha = math.exp(-1.0 / tau)
    expected = [current * (1 - alpha ** (t + 1)) for t in range(300)]
    assert not z.any()
    np.testing.assert_allclose(v[:, 0], expected, rtol=1e-12)
    assert abs(v[-1, 0] - current) < 1e-6  # steady state v = I


def test_lif_fires_when_new_voltage_exceeds_threshold_same_step():
    neuron = LIF(1, tau=20.0, thr=0.03)
    alpha = math.exp(-1 / 20)
    needed = 0.03 / (1 - alpha)  # one step of this current lands exactly on thr
    z, _ = run(neuron, [[needed * 1.001]])
    assert z[0, 0] == 1.0          # decided on v'_t, no extra latency
    z, _ = run(neuron, [[needed * (1 - 1e-9)]])
    assert z[0, 0] == 0.0


def test_threshold_equality_does_not_fire():
    neuron = IF(1, thr=0.5)
    z, v = run(neuron, [[0.25], [0.25]])
    assert z[1, 0] == 0.0 and v[1, 0] == 0.5  # H(0) = 0


def test_alif_threshold_after_k_spikes():
    rho = math.exp(-1 / 200)
    beta, thr = 1.6, 0.01
    neuron = ALIF(1, tau=20, tau_adaptation=200, beta=beta, thr=thr)
    state = neuron.zero_state(1)
    big = np.array([[1e3]])
    b_expected = 0.0
    for k in range(6):
        z, state, trace = neuron.advance(big, state)
        assert z[0, 0] == 1.0
        np.testing.assert_allclose(trace.threshold[0, 0], thr + beta * b_expected, rtol=1e-13)
        b_expected = rho * b_expected + (1 - rho)  # b after this spike, used next step
    # closed form after k spikes in a row: b = 1 - rho^k
    np.testing.assert_allclose(b_expected, 1 - rho**6, rtol=1e-13)


def test_subtract_reset():
    neuron = IF(1, thr=1.0, reset="subtract")
    z, v = run(neuron, [[1.5], [0.2]])
    assert z[0, 0] == 1.0
    np.testing.assert_allclose(v[:, 0], [0.5, 0.7])


def test_refractory_period():
    neuron = IF(1, thr=0.5, n_refractory=2)
    z, v = run(neuron, np.full((9, 1), 0.6))
    np.testing.assert_array_equal(z[:, 0], [1, 0, 0, 1, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(v[:, 0], [0, 0, 0, 0, 0, 0, 0, 0, 0])


def test_delay_buffer_slices_arrive_later():
    neuron = IF(1, thr=100.0, n_delay=3)
    state = neuron.zero_state(1)
    current = np.zeros((1, 3, 1))
    current[0, 0, 0], current[0, 1, 0], current[0, 2, 0] = 1.0, 10.0, 100.0
    _, state = neuron.step(current, state)
    voltages = [state.v[0, 0]]
    for _ in range(3):
        _, state = neuron.step(np.zeros((1, 1)), state)
        voltages.append(state.v[0, 0])
    # delay d arrives d-1 steps later: 1 now, +10 next step, +100 (> thr: resets) after two
    np.testing.assert_allclose(voltages, [1.0, 11.0, 0.0, 0.0])


def test_noise_is_seeded():
    a = run(IF(3, thr=10, noise_std=0.1, seed=5), np.zeros((5, 3)))[1]
    b = run(IF(3, thr=10, noise_std=0.1, seed=5), np.zeros((5, 3)))[1]
    c = run(IF(3, thr=10, noise_std=0.1, seed=6), np.zeros((5, 3)))[1]
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert np.std(np.diff(a[:, 0], prepend=0.0)) > 0.01


def test_zero_state_fields():
    s = ALIF(4).zero_state(2)
    for field in ("v", "z", "b"):
        assert getattr(s, field).shape == (2, 4)


@pytest.mark.parametrize("kwargs,exc,word", [
    (dict(thr=0.0), ValueError, "thr"), (dict(thr=-1), ValueError, "thr"),
    (dict(dt=0), ValueError, "dt"), (dict(tau=-5), ValueError, "tau"),
    (dict(n_refractory=-1), ValueError, "n_refractory"), (dict(reset="bounce"), ValueError, "reset"),
    (dict(thr=float("nan")), ValueError, "thr"), (dict(noise_std=-0.1), ValueError, "noise_std"),
    (dict(n_refractory=1.5), TypeError, "n_refractory"),
])
def test_bad_parameters(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        LIF(3, **kwargs)


def test_bad_current_and_names():
    neuron = LIF(3)
    state = neuron.zero_state(2)
    with pytest.raises(ValueError, match="current"):
        neuron.step(np.zeros((2, 4)), state)
    with pytest.raises(ValueError, match="current"):
        neuron.step(np.array([[np.nan, 0, 0], [0, 0, 0]]), state)
    with pytest.raises(ValueError, match="neuron"):
        make_neuron("hodgkin", 3)
