"""Tests of the weight <-> conductance mapping (docs/array.md §1)."""

import numpy as np
import pytest

from cosim.devices import (Mapping, Memtransistor, deinterleave, interleave,
                           states_to_weights, weights_to_states)

G_MIN, G_MAX = 1e-7, 1e-5


@pytest.fixture
def W():
    return np.random.default_rng(0).normal(size=(7, 5))


def test_hand_example_layout():
    W = np.array([[1.0, -2.0], [0.0, 0.5]])
    m = Mapping(g_min=1.0, g_max=5.0)  # s = (5 - 1)/2 = 2 per weight unit
    prog = m.to_conductances(W)
    assert prog.scale == 2.0 and prog.w_max == 2.0
    expected = np.array([[3.0, 1.0, 1.0, 5.0],
                         [1.0, 1.0, 2.0, 1.0]])
    np.testing.assert_array_equal(prog.g, expected)
    np.testing.assert_array_equal(prog.stuck, 0)


def test_round_trip_exact(W):
    m = Mapping(g_min=G_MIN, g_max=G_MAX)
    prog = m.to_conductances(W, rng=1)
    assert prog.g.shape == (7, 10)
    back = m.to_weights(prog.g, prog.scale)
    np.testing.assert_allclose(back, W, rtol=1e-15 * 10, atol=1e-15 * np.max(np.abs(W)))
    assert prog.scale == pytest.approx((G_MAX - G_MIN) / np.max(np.abs(W)), rel=1e-15)
    assert prog.g.min() >= G_MIN and prog.g.max() <= G_MAX * (1 + 1e-15)
    # the largest |w| sits at g_max
    assert np.isclose(prog.g.max(), G_MAX, rtol=1e-14)


def test_ideal_differential_output(W):
    """sum_i x_i (G+ - G-)_ij / s == x @ W; with currents I = V_read x^T G."""
    m = Mapping(g_min=G_MIN, g_max=G_MAX)
    prog = m.to_conductances(W)
    x = np.random.default_rng(5).uniform(0, 1, size=(3, 7))
    v_read = 0.1
    currents = (v_read * x) @ prog.g            # (3, 10) bit-line currents
    out = (currents[:, 0::2] - currents[:, 1::2]) / (v_read * prog.scale)
    np.testing.assert_allclose(out, x @ W, rtol=1e-12, atol=1e-13)


def test_interleave_deinterleave():
    a = np.arange(6.0).reshape(2, 3)
    b = -np.arange(6.0).reshape(2, 3)
    g = interleave(a, b)
    np.testing.assert_array_equal(g[:, 0], a[:, 0])
    np.testing.assert_array_equal(g[:, 1], b[:, 0])
    np.testing.assert_array_equal(g[:, 4], a[:, 2])
    p, n = deinterleave(g)
    np.testing.assert_array_equal(p, a)
    np.testing.assert_array_equal(n, b)
    with pytest.raises(ValueError):
        deinterleave(np.zeros((2, 3)))
    with pytest.raises(ValueError):
        interleave(a, b[:, :2])


def test_fixed_w_max_clips():
    W = np.array([[3.0, -0.5]])
    m = Mapping(g_min=1.0, g_max=3.0, w_max=1.0)
    prog = m.to_conductances(W)
    assert prog.scale == 2.0 and prog.w_max == 1.0
    np.testing.assert_allclose(m.to_weights(prog.g, prog.scale), [[1.0, -0.5]])


def test_all_zero_weights_use_w_max_one():
    prog = Mapping(g_min=1.0, g_max=3.0).to_conductances(np.zeros((2, 2)))
    assert prog.scale == 2.0
    np.testing.assert_array_equal(prog.g, 1.0)


def test_quantisation_levels(W):
    for levels in (2, 3, 8):
        m = Mapping(g_min=G_MIN, g_max=G_MAX, levels=levels)
        prog = m.to_conductances(W, rng=0)
        allowed = np.linspace(G_MIN, G_MAX, levels)
        dist = np.min(np.abs(prog.g[..., None] - allowed), axis=-1)
        assert np.all(dist <= 1e-12 * G_MAX)
        assert len(np.unique(np.round(prog.g / G_MAX, 9))) <= levels
        # round to nearest: error at most half a step in conductance
        ideal = Mapping(g_min=G_MIN, g_max=G_MAX).to_conductances(W).g
        step = (G_MAX - G_MIN) / (levels - 1)
        assert np.max(np.abs(prog.g - ideal)) <= step / 2 * (1 + 1e-9)
    big = np.random.default_rng(1).normal(size=(40, 40))
    prog = Mapping(g_min=G_MIN, g_max=G_MAX, levels=5).to_conductances(big)
    assert len(np.unique(np.round(prog.g / G_MAX, 9))) == 5


def test_programming_variability_seeded_and_bounded(W):
    m = Mapping(g_min=G_MIN, g_max=G_MAX, program_sigma=0.1)
    a = m.to_conductances(W, rng=3)
    b = m.to_conductances(W, rng=np.random.default_rng(3))
    c = m.to_conductances(W, rng=4)
    np.testing.assert_array_equal(a.g, b.g)
    assert not np.array_equal(a.g, c.g)
    assert a.g.min() >= G_MIN and a.g.max() <= G_MAX
    big = np.random.default_rng(1).uniform(0.2, 0.6, size=(100, 100))
    prog = Mapping(g_min=G_MIN, g_max=G_MAX, w_max=1.0, program_sigma=0.1).to_conductances(
        big, rng=2)
    ideal = Mapping(g_min=G_MIN, g_max=G_MAX, w_max=1.0).to_conductances(big).g
    pos = prog.g[:, 0::2] / ideal[:, 0::2]   # cells far from both clip limits
    assert np.std(np.log(pos)) == pytest.approx(0.1, rel=0.05)


def test_stuck_faults_rates_and_seed():
    W = np.random.default_rng(1).normal(size=(200, 100))
    m = Mapping(g_min=G_MIN, g_max=G_MAX, stuck_on_rate=0.05, stuck_off_rate=0.1)
    a = m.to_conductances(W, rng=11)
    n = a.g.size
    on, off = a.stuck == 1, a.stuck == -1
    assert on.sum() / n == pytest.approx(0.05, abs=0.006)
    assert off.sum() / n == pytest.approx(0.10, abs=0.008)
    np.testing.assert_array_equal(a.g[on], G_MAX)
    np.testing.assert_array_equal(a.g[off], G_MIN)
    b = m.to_conductances(W, rng=11)
    c = m.to_conductances(W, rng=12)
    np.testing.assert_array_equal(a.g, b.g)
    assert not np.array_equal(a.stuck, c.stuck)
    # healthy cells are untouched
    ideal = Mapping(g_min=G_MIN, g_max=G_MAX).to_conductances(W).g
    np.testing.assert_array_equal(a.g[a.stuck == 0], ideal[a.stuck == 0])


def test_read_noise():
    i = np.linspace(1e-6, 2e-6, 10000)
    assert np.array_equal(Mapping(G_MIN, G_MAX).apply_read_noise(i, rng=0), i)
    m = Mapping(G_MIN, G_MAX, read_noise_sigma=0.02)
    a = m.apply_read_noise(i, rng=0)
    np.testing.assert_array_equal(a, m.apply_read_noise(i, rng=0))
    assert np.std(a / i - 1) == pytest.approx(0.02, rel=0.05)


@pytest.mark.parametrize("kwargs,name", [
    (dict(g_min=1e-5, g_max=1e-5), "g_min"), (dict(g_min=-1.0, g_max=1.0), "g_min"),
    (dict(g_min=1.0, g_max=float("inf")), "g_max"), (dict(g_min=1, g_max=2, levels=1), "levels"),
    (dict(g_min=1, g_max=2, program_sigma=-0.1), "program_sigma"),
    (dict(g_min=1, g_max=2, read_noise_sigma=-1), "read_noise_sigma"),
    (dict(g_min=1, g_max=2, stuck_on_rate=1.5), "stuck_on_rate"),
    (dict(g_min=1, g_max=2, stuck_off_rate=-0.1), "stuck_off_rate"),
    (dict(g_min=1, g_max=2, w_max=0.0), "w_max"),
])
def test_bad_mapping_parameters(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Mapping(**kwargs)


def test_bad_mapping_types():
    with pytest.raises(TypeError, match="levels"):
        Mapping(1.0, 2.0, levels=2.5)
    with pytest.raises(TypeError, match="g_min"):
        Mapping("1", 2.0)


def test_bad_weights():
    m = Mapping(G_MIN, G_MAX)
    with pytest.raises(ValueError, match="W"):
        m.to_conductances(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="W"):
        m.to_conductances(np.ones(3))
    with pytest.raises(TypeError, match="W"):
        m.to_conductances([["a"]])


def test_mapping_is_frozen():
    m = Mapping(G_MIN, G_MAX)
    with pytest.raises(AttributeError):
        m.g_min = 2.0


# ---------------------------------------------------------------- device states
def test_weights_to_states_round_trip(W):
    dev = Memtransistor()
    states, scale = weights_to_states(W, dev)
    assert states.shape == (7, 10)
    assert states.min() >= 0 and states.max() <= 1
    # default g range: (g at w = 0, g at w = 1) = (1e-7, 1e-5)
    assert scale == pytest.approx((1e-5 - 1e-7) / np.max(np.abs(W)), rel=1e-14)
    assert states.min() == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(states_to_weights(states, dev, scale), W, rtol=1e-12,
                               atol=1e-13)
    np.testing.assert_allclose(states_to_weights(states, dev, scale, g_min=1e-7), W,
                               rtol=1e-12, atol=1e-13)
    de = Memtransistor(state_map="exponential")
    s2, sc2 = weights_to_states(W, de)
    np.testing.assert_allclose(states_to_weights(s2, de, sc2), W, rtol=1e-11, atol=1e-12)


def test_weights_to_states_with_mapping_and_variable_devices(W):
    dev = Memtransistor()
    var = dev.with_variability((7, 10), 0.05, rng=1)
    # write-verify with the actual devices: the programmed weights are exact where reachable
    m = Mapping.for_device(var)
    states, scale = weights_to_states(W, var, m)
    np.testing.assert_allclose(states_to_weights(states, var, scale), W, rtol=1e-10,
                               atol=1e-12)
    # open loop (nominal device) then read with the variable devices: a visible error
    s_nom, sc_nom = weights_to_states(W, dev)
    err = states_to_weights(s_nom, var, sc_nom) - W
    assert 1e-3 < np.max(np.abs(err)) < 1.0
