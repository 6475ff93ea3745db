"""Pair-based STDP (EQUATIONS.md §3) against hand-computed windows, and the Diehl & Cook net."""

import json
import math

import numpy as np
import pytest

from cosim.crossbar import Ideal
from cosim.learning.stdp import (DiehlCook, PulseProgrammer, STDPParams, STDPTraces,
                                 apply_block, stdp_accumulate, stdp_init, stdp_run, stdp_step)

ETA_P, ETA_M, TAU_P, TAU_M = 0.011, 0.0073, 7.0, 13.0


def pair_dw(dt_spike, params, w0, t0=25, T=60):
    """Δw of one synapse for one pre spike at t0 and one post spike at t0 + dt_spike."""
    pre = np.zeros((T, 1))
    post = np.zeros((T, 1))
    pre[t0, 0] = 1.0
    post[t0 + dt_spike, 0] = 1.0
    w = np.array([[w0]])
    traces = stdp_init(1, 1)
    for t in range(T):
        w, traces = stdp_step(w, pre[t], post[t], traces, params)
    return w[0, 0] - w0


# ---------------------------------------------------------------------------- learning window
@pytest.mark.parametrize("dt_spike", range(-20, 21))
def test_additive_window_matches_exponentials(dt_spike):
    params = STDPParams(ETA_P, ETA_M, TAU_P, TAU_M, 0.0, 1.0, 1.0, "additive")
    dw = pair_dw(dt_spike, params, 0.5)
    if dt_spike > 0:
        expected = ETA_P * math.exp(-dt_spike / TAU_P)
    elif dt_spike < 0:
        expected = -ETA_M * math.exp(dt_spike / TAU_M)
    else:  # spikes are added to the traces before the update: both terms see a trace of 1
        expected = ETA_P - ETA_M
    assert dw == pytest.approx(expected, rel=1e-12, abs=0)


@pytest.mark.parametrize("dt_spike", [-17, -5, -1, 0, 1, 4, 19])
def test_multiplicative_window_scales_by_soft_bounds(dt_spike):
    w_min, w_max, mu, w0 = 0.1, 0.9, 0.7, 0.3
    params = STDPParams(ETA_P, ETA_M, TAU_P, TAU_M, w_min, w_max, mu, "multiplicative")
    dw = pair_dw(dt_spike, params, w0)
    up, down = (w_max - w0) ** mu, (w0 - w_min) ** mu
    if dt_spike > 0:
        expected = ETA_P * math.exp(-dt_spike / TAU_P) * up
    elif dt_spike < 0:
        expected = -ETA_M * math.exp(dt_spike / TAU_M) * down
    else:
        expected = ETA_P * up - ETA_M * down
    assert dw == pytest.approx(expected, rel=1e-12, abs=0)


def test_dt_is_respected_in_decay():
    params = STDPParams(ETA_P, ETA_M, TAU_P, TAU_M, mode="additive", dt=0.5)
    assert pair_dw(6, params, 0.5) == pytest.approx(ETA_P * math.exp(-3.0 / TAU_P), rel=1e-12)


def test_traces_decay_then_add():
    params = STDPParams(tau_plus=4.0, tau_minus=2.0)
    traces = STDPTraces(np.array([1.0, 0.0]), np.array([2.0]))
    _, tr = stdp_step(np.full((2, 1), 0.5), [1.0, 0.0], [1.0], traces, params)
    np.testing.assert_allclose(tr.x_pre, [math.exp(-0.25) + 1.0, 0.0], rtol=1e-15)
    np.testing.assert_allclose(tr.x_post, [2.0 * math.exp(-0.5) + 1.0], rtol=1e-15)


# ------------------------------------------------------------------------------------ bounds
@pytest.mark.parametrize("mode", ["additive", "multiplicative"])
def test_bounds_hold_under_long_random_train(mode):
    rng = np.random.default_rng(3)
    params = STDPParams(0.2, 0.15, 10.0, 10.0, -0.5, 0.8, 0.5, mode)
    w = rng.uniform(-0.5, 0.8, (20, 10))
    traces = stdp_init(20, 10)
    lo, hi = np.inf, -np.inf
    for _ in range(1500):
        pre = (rng.random(20) < 0.2).astype(float)
        post = (rng.random(10) < 0.2).astype(float)
        w, traces = stdp_step(w, pre, post, traces, params)
        lo, hi = min(lo, w.min()), max(hi, w.max())
    assert lo >= -0.5 and hi <= 0.8
    if mode == "additive":  # large additive steps must actually reach the bounds (clipped)
        assert np.any(w == 0.8) or np.any(w == -0.5)


def test_additive_and_multiplicative_differ_near_bounds():
    near_top, near_bottom = 0.999, 0.001
    add = STDPParams(0.01, 0.01, 10.0, 10.0, 0.0, 1.0, 1.0, "additive")
    mul = add.replace(mode="multiplicative")
    # potentiation near w_max: additive is clipped at w_max, multiplicative shrinks to η·ε
    assert near_top + pair_dw(1, add, near_top) == 1.0
    dw_mul = pair_dw(1, mul, near_top)
    assert dw_mul == pytest.approx(0.01 * math.exp(-0.1) * (1.0 - near_top), rel=1e-9)
    assert near_top + dw_mul < 1.0
    # depression near w_min: additive hits w_min, multiplicative vanishes with (w - w_min)
    assert near_bottom + pair_dw(-1, add, near_bottom) == 0.0
    assert pair_dw(-1, mul, near_bottom) == pytest.approx(-0.01 * math.exp(-0.1) * near_bottom,
                                                          rel=1e-9)
    # far from the bounds with w = 0.5, μ = 1 multiplicative is exactly half of additive
    assert pair_dw(3, mul, 0.5) == pytest.approx(0.5 * pair_dw(3, add, 0.5), rel=1e-12)


# ------------------------------------------------------------------- run and block helpers
def test_run_matches_step_loop_and_batch_sums():
    rng = np.random.default_rng(0)
    params = STDPParams(0.01, 0.008, 5.0, 8.0, 0.0, 1.0, 1.0, "multiplicative")
    w0 = rng.uniform(0.2, 0.8, (6, 4))
    pre = (rng.random((40, 6)) < 0.3).astype(float)
    post = (rng.random((40, 4)) < 0.2).astype(float)
    w, tr = w0, stdp_init(6, 4)
    for t in range(40):
        w, tr = stdp_step(w, pre[t], post[t], tr, params)
    w_run, tr_run = stdp_run(w0, pre, post, params)
    np.testing.assert_allclose(w_run, w, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(tr_run.x_pre, tr.x_pre, rtol=1e-13)
    # a batch of two identical sequences doubles every update (additive, no clipping)
    add = params.replace(mode="additive", eta_plus=1e-3, eta_minus=1e-3)
    w1, _ = stdp_run(w0, pre, post, add)
    w2, tr2 = stdp_run(w0, np.stack([pre, pre], 1), np.stack([post, post], 1), add)
    np.testing.assert_allclose(w2 - w0, 2 * (w1 - w0), rtol=1e-10, atol=1e-15)
    assert tr2.x_pre.shape == (2, 6)


def test_block_accumulation_equals_summed_steps_at_fixed_weights():
    rng = np.random.default_rng(1)
    params = STDPParams(0.01, 0.02, 6.0, 9.0, 0.0, 1.0, 2.0, "multiplicative")
    T, B, n_pre, n_post = 30, 3, 5, 4
    pre = (rng.random((T, B, n_pre)) < 0.3).astype(float)
    post = (rng.random((T, B, n_post)) < 0.2).astype(float)
    init = STDPTraces(rng.random((B, n_pre)), rng.random((B, n_post)))
    P, D, tr = stdp_accumulate(pre, post, params, traces=init)
    # explicit sums of the trace recursions
    P_ref, D_ref = np.zeros((n_pre, n_post)), np.zeros((n_pre, n_post))
    xp, xq = init.x_pre.copy(), init.x_post.copy()
    for t in range(T):
        xp = math.exp(-1 / 6.0) * xp + pre[t]
        xq = math.exp(-1 / 9.0) * xq + post[t]
        P_ref += xp.T @ post[t]
        D_ref += pre[t].T @ xq
    np.testing.assert_allclose(P, P_ref, rtol=1e-12)
    np.testing.assert_allclose(D, D_ref, rtol=1e-12)
    np.testing.assert_allclose(tr.x_pre, xp, rtol=1e-12)
    w = rng.uniform(0.3, 0.7, (n_pre, n_post))
    expected = w + 0.01 * (1 - w) ** 2 * P_ref - 0.02 * w ** 2 * D_ref
    np.testing.assert_allclose(apply_block(w, P, D, params), np.clip(expected, 0, 1),
                               rtol=1e-12)


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize("field,value", [
    ("eta_plus", -0.1), ("eta_minus", float("nan")), ("tau_plus", 0.0), ("tau_minus", -1.0),
    ("mu", -0.5), ("mode", "hebbian"), ("dt", 0.0), ("w_max", float("inf")),
])
def test_params_validation_names_field(field, value):
    with pytest.raises(ValueError, match=field):
        STDPParams(**{field: value})


def test_params_bounds_order_and_bad_shapes():
    with pytest.raises(ValueError, match="w_min"):
        STDPParams(w_min=1.0, w_max=1.0)
    params = STDPParams()
    with pytest.raises(ValueError, match="pre"):
        stdp_step(np.zeros((3, 2)), np.zeros(4), np.zeros(2), stdp_init(3, 2), params)
    with pytest.raises(ValueError, match="post"):
        stdp_step(np.zeros((3, 2)), np.zeros(3), [np.nan, 0], stdp_init(3, 2), params)
    with pytest.raises(ValueError, match="programmer"):
        stdp_step(np.zeros((3, 2)), np.ones(3), np.ones(2), stdp_init(3, 2),
                  params.replace(mode="pulses"))


# ------------------------------------------------------------------------------ pulses mode
class LinearDevice:
    """Duck-typed device: each pulse moves the state by ±0.01 (bounded), records counts."""

    def __init__(self):
        self.calls = []

    def apply_pulses(self, state, v_pulse, width, count, v_gs=None, c2c_sigma=0.0, rng=None):
        self.calls.append((float(v_pulse), np.array(count)))
        step = 0.01 if v_pulse > 0 else -0.01
        return np.clip(state + step * np.asarray(count), 0.0, 1.0)


def test_pulses_mode_writes_whole_pulses():
    device = LinearDevice()
    prog = PulseProgrammer(device, dw_per_pulse=0.02, rounding="nearest")
    params = STDPParams(0.1, 0.1, 10.0, 10.0, -1.0, 1.0, 1.0, "pulses")
    w = np.array([[0.0, 0.5]])
    # one pre and one post spike in the same step: Δw = η_+ - η_- = 0 -> no pulses;
    # post-only step after a pre spike: Δw = 0.1·e^{-0.1} = 0.0905 -> round(4.52) = 5 pulses
    tr = STDPTraces(np.array([1.0]), np.zeros(2))
    w_new, _ = stdp_step(w, [0.0], [1.0, 1.0], tr, params, programmer=prog)
    n = round(0.1 * math.exp(-0.1) / 0.02)
    assert n == 5
    # state s = (w + 1)/2 moves by 0.01 per pulse -> w moves by 0.02 per pulse
    np.testing.assert_allclose(w_new, w + 0.02 * n, rtol=1e-12)
    assert device.calls[0][0] == 4.0 and np.all(device.calls[0][1] == n)
    # depression goes through v_reset
    tr = STDPTraces(np.zeros(1), np.array([1.0, 1.0]))
    w_dep, _ = stdp_step(w, [1.0], [0.0, 0.0], tr, params, programmer=prog)
    assert device.calls[-1][0] == -4.0
    assert np.all(w_dep < w)


def test_pulses_with_memtransistor_if_present():
    mt = pytest.importorskip("cosim.devices.memtransistor")
    device = mt.Memtransistor.default()
    prog = PulseProgrammer(device, dw_per_pulse=0.005, rounding="nearest")
    params = STDPParams(0.05, 0.05, 10.0, 10.0, 0.0, 1.0, 1.0, "pulses")
    w = np.full((4, 3), 0.5)
    w_up, _ = stdp_step(w, np.zeros(4), np.ones(3), STDPTraces(np.ones(4), np.zeros(3)),
                        params, programmer=prog, rng=0)
    w_dn, _ = stdp_step(w, np.ones(4), np.zeros(3), STDPTraces(np.zeros(4), np.ones(3)),
                        params, programmer=prog, rng=0)
    assert np.all(w_up > w) and np.all(w_up <= 1.0)
    assert np.all(w_dn < w) and np.all(w_dn >= 0.0)


def test_pulse_programmer_rejects_objects_without_apply_pulses():
    with pytest.raises(ValueError, match="apply_pulses"):
        PulseProgrammer(object(), dw_per_pulse=0.01)
    with pytest.raises(ValueError, match="dw_per_pulse"):
        PulseProgrammer(LinearDevice(), dw_per_pulse=0.0)


# ------------------------------------------------------------------------- Diehl & Cook net
N_IN, T = 12, 40


def patterns(n_per_class, seed):
    """Three classes, each lighting one disjoint block of 4 inputs (p = 0.5, background 0.02)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n_per_class)
    rng.shuffle(y)
    p = np.full((len(y), N_IN), 0.02)
    for i, c in enumerate(y):
        p[i, 4 * c:4 * c + 4] = 0.5
    x = (rng.random((len(y), T, N_IN)) < p[:, None, :]).astype(float)
    return x, y


def small_net(**kw):
    # short presentations of few inputs: faster membrane, larger STDP rates, a longer gain ladder
    params = dict(n_exc=6, n_classes=3, tau_m=10.0, min_spikes=4, gain_step=1.25,
                  max_retries=16, stdp=DiehlCook.DEFAULT_STDP.replace(eta_plus=0.03,
                                                                       eta_minus=0.003),
                  seed=7)
    params.update(kw)
    return DiehlCook(**params)


@pytest.fixture(scope="module")
def trained():
    x, y = patterns(40, seed=1)
    net = small_net().fit(x, epochs=2, progress=False)
    net.assign_labels(x, y)
    return net, x, y


def test_learns_receptive_fields_and_classifies(trained):
    net, _, _ = trained
    x_test, y_test = patterns(30, seed=2)
    assert net.evaluate(x_test, y_test) >= 0.97
    labels = net.labels_
    assert set(labels[labels >= 0]) == {0, 1, 2}       # every class has a unit
    for j, c in enumerate(labels):
        if c < 0:
            continue
        share = net.W_in_[4 * c:4 * c + 4, j].sum() / net.W_in_[:, j].sum()
        assert share > 0.6, f"unit {j} (class {c}) has only {share:.2f} of its weight on its block"
    w = net.W_in_
    assert w.min() >= 0.0 and w.max() <= 1.0
    np.testing.assert_allclose(w.sum(axis=0), 0.1 * N_IN, rtol=1e-9)   # normalised columns


def test_same_seed_same_weights_other_seed_differs(trained):
    net, x, _ = trained
    again = small_net().fit(x, epochs=2, progress=False)
    np.testing.assert_array_equal(again.W_in_, net.W_in_)
    np.testing.assert_array_equal(again.theta_, net.theta_)
    other = small_net(seed=8).fit(x, epochs=2, progress=False)
    assert not np.array_equal(other.W_in_, net.W_in_)


def test_state_round_trip(trained):
    net, x, _ = trained
    state = net.get_state()
    arrays = {k for k, v in state.items() if isinstance(v, np.ndarray)}
    assert arrays == {"W_in", "theta", "labels"}
    json.dumps({k: v for k, v in state.items() if k not in arrays})     # the rest is JSON-able
    clone = DiehlCook().set_state(state)
    np.testing.assert_array_equal(clone.predict(x), net.predict(x))
    assert clone.n_exc == 6 and clone.get_params()["seed"] == 7
    bad = dict(state, W_in=state["W_in"][:-1])
    with pytest.raises(ValueError, match="W_in"):
        DiehlCook().set_state(bad)


class CountingIdeal(Ideal):
    forwards = 0
    programs = 0

    def forward(self, x):
        type(self).forwards += 1
        return super().forward(x)

    def _program(self, weights):
        type(self).programs += 1
        super()._program(weights)


def test_input_current_goes_through_the_crossbar_backend():
    x, y = patterns(5, seed=3)
    CountingIdeal.forwards = CountingIdeal.programs = 0
    net = small_net(crossbar=CountingIdeal()).fit(x, epochs=1, progress=False)
    assert CountingIdeal.forwards >= len(y) and CountingIdeal.programs >= 1
    before = CountingIdeal.forwards
    net.responses(x)
    assert CountingIdeal.forwards > before


def test_bad_inputs_raise(trained):
    net, x, y = trained
    with pytest.raises(ValueError, match="x"):
        net.predict(x[0])                                # 2-D
    with pytest.raises(ValueError, match="inputs"):
        net.predict(x[:, :, :5])                         # wrong number of inputs
    bad = x.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        net.predict(bad)
    with pytest.raises(ValueError, match="non-negative"):
        net.predict(-x)
    with pytest.raises(ValueError, match="y"):
        net.assign_labels(x, np.full(len(y), 3))        # label out of range
    with pytest.raises(ValueError, match="y"):
        net.evaluate(x, y[:-1])                          # wrong length
    with pytest.raises(ValueError, match="y"):
        net.assign_labels(x, y + 0.5)                    # not integers
    with pytest.raises(ValueError, match="n_exc"):
        DiehlCook(n_exc=0).fit(x, progress=False)
    with pytest.raises(ValueError, match="gain_step"):
        DiehlCook(gain_step=1.0).fit(x, progress=False)
    with pytest.raises(ValueError, match="pulses"):
        DiehlCook(stdp=STDPParams(mode="pulses")).fit(x, progress=False)
    with pytest.raises(RuntimeError, match="assign_labels"):
        small_net().fit(x[:3], progress=False).predict(x)


def test_model_trains_diehl_cook_with_stdp_and_round_trips(tmp_path):
    from cosim import Model
    from cosim.errors import ModelFileError  # noqa: F401  (import path of load errors)

    x, y = patterns(40, seed=1)
    x_test, y_test = patterns(20, seed=2)
    model = Model(small_net(), rule="stdp")
    history = model.train(x, y, epochs=2, progress=False)
    assert len(history["accuracy"]) == 2
    assert model.evaluate(x_test, y_test) >= 0.95
    loaded = Model.load(model.save(tmp_path / "dc.npz"))
    np.testing.assert_array_equal(loaded.predict(x_test), model.predict(x_test))
    np.testing.assert_array_equal(loaded.network.W_in_, model.network.W_in_)
    with pytest.raises(TypeError, match="SRNN"):
        Model(small_net(), rule="bptt")
