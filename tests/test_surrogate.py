import numpy as np

from cosim.surrogate import PiecewiseLinear, SmoothSpike, pseudo_derivative, spike


def test_pseudo_derivative_formula():
    v = np.linspace(-0.05, 0.1, 301)
    thr = 0.03
    expected = [0.3 * max(0.0, 1 - abs(vi - thr) / thr) / thr for vi in v]
    np.testing.assert_allclose(pseudo_derivative(v, thr), expected, rtol=1e-14, atol=0)
    assert pseudo_derivative(np.array([thr]), thr)[0] == 0.3 / thr  # peak γ/A
    assert pseudo_derivative(np.array([0.0, 2 * thr]), thr).tolist() == [0.0, 0.0]


def test_spike_heaviside():
    assert spike(np.array([0.5, 0.5000001, 0.4]), 0.5).tolist() == [0.0, 1.0, 0.0]


def test_threshold_derivative_is_chain_rule_of_scaled_form():
    rule = PiecewiseLinear()
    v, a = np.array([0.025, 0.031, 0.04]), np.array([0.03, 0.03, 0.035])
    dv, da = rule.grad(v, a)
    np.testing.assert_allclose(da, -dv * v / a)


def test_smooth_spike_derivatives_match_finite_differences():
    s = SmoothSpike(0.3)
    v, a = np.array([0.02, 0.03, 0.045]), np.array([0.03, 0.025, 0.04])
    dv, da = s.grad(v, a)
    h = 1e-7
    np.testing.assert_allclose(dv, (s.spike(v + h, a) - s.spike(v - h, a)) / (2 * h), rtol=1e-6)
    np.testing.assert_allclose(da, (s.spike(v, a + h) - s.spike(v, a - h)) / (2 * h), rtol=1e-6)
