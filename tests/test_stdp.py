"""Pair-based STDP (docs/equations.md §4) against hand-computed windows; pulse writes on the device."""

import math

import numpy as np
import pytest

from cosim.devices import Memtransistor
from cosim.learning.stdp import (PulseProgrammer, STDPParams, STDPTraces, apply_block,
                                 stdp_accumulate, stdp_init, stdp_run, stdp_step)

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
    np.testing.assert_allclose(tr.x_post, xq, rtol=1e-12)
    P0, D0, tr0 = stdp_accumulate(pre, post, params)          # from zero traces
    xq0 = np.zeros((B, n_post))
    D_zero = np.zeros((n_pre, n_post))
    for t in range(T):
        xq0 = math.exp(-1 / 9.0) * xq0 + post[t]
        D_zero += pre[t].T @ xq0
    np.testing.assert_allclose(D0, D_zero, rtol=1e-12)
    np.testing.assert_allclose(tr0.x_post, xq0, rtol=1e-12)
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
DEVICE = Memtransistor()          # the built-in default card
PULSES = STDPParams(0.1, 0.1, 10.0, 10.0, 0.0, 1.0, 1.0, "pulses")


def programmer(**kw):
    return PulseProgrammer(DEVICE, **{"rounding": "nearest", "count_model": "linear", **kw})


def requested(counts, prog):
    """A Δw that rounds to exactly ``counts`` pulses (half a pulse inside each bin)."""
    up, down = prog.state_steps()
    counts = np.asarray(counts, dtype=float)
    return np.where(counts > 0, counts * up, counts * down)


def test_pulse_steps_are_the_device_steps_of_one_pulse():
    prog = programmer()
    up, down = prog.state_steps()
    # docs/device.md: +4 V, 1 ms at V_G = 3 V moves w by 1 - exp(-7.09e-3) from 0; the RESET pulse
    # on the source side (V_DS = -4 V, V_GS = -1 V) has the same midpoint gate drive V_GM = 1 V
    assert up == pytest.approx(float(DEVICE.apply_pulses(0.0, 4.0, 1e-3, 1, v_gs=3.0)), rel=1e-14)
    assert up == pytest.approx(7.06e-3, rel=2e-3)
    assert down == pytest.approx(up, rel=1e-12)


def test_pulse_writes_equal_memtransistor_apply_pulses_and_spare_unselected_cells():
    rng = np.random.default_rng(5)
    w = rng.uniform(0.05, 0.95, (5, 4))
    counts = np.array([[3, 0, -2, 0], [0, 0, 0, 0], [40, 0, 0, -7], [0, 0, 1, 0],
                       [0, 0, -25, 0]])
    prog = programmer()
    np.testing.assert_array_equal(prog.counts(w, requested(counts, prog), PULSES), counts)
    w_new = prog.write(w, requested(counts, prog), PULSES)
    # written cells: exactly the device's response to that many pulses at the selected bias
    # (SET: drain +4 V, gate 3 V; RESET: source +4 V, gate 3 V -> V_GS = -1 V), then the one
    # other exposure that is outside the device's threshold gap: the RESET pulses of the other
    # rows of its column through an off gate (source +4 V, gate -2 V -> V_GS = -6 V)
    up, down = counts > 0, counts < 0
    resets = np.where(down, -counts, 0)
    others = resets.sum(axis=0, keepdims=True) - resets
    expected = w.copy()
    expected[up] = DEVICE.apply_pulses(w[up], 4.0, 1e-3, counts[up], v_gs=3.0)
    expected[down] = DEVICE.apply_pulses(w[down], -4.0, 1e-3, resets[down], v_gs=-1.0)
    expected = DEVICE.apply_pulses(expected, -4.0, 1e-3, others, v_gs=-6.0)
    np.testing.assert_allclose(w_new, expected, rtol=1e-13, atol=0)
    # those half-selected exposures are tiny: below 1e-10 per pulse
    assert np.max(np.abs(expected - w)[counts == 0]) < 1e-10 * others.max()
    # the device's soft bounds: 40 SET pulses from w gives (1 - w)(1 - e^{-40 c t})
    c_t = -math.log(1 - prog.state_steps()[0])
    assert w_new[2, 0] == pytest.approx(w[2, 0] + (1 - w[2, 0]) * (1 - math.exp(-40 * c_t)),
                                        rel=1e-9)
    # no sneak writes: cells owed no pulses move by less than 1e-9 ...
    idle = counts == 0
    assert np.max(np.abs(w_new[idle] - w[idle])) < 1e-9
    # ... because their gates are off: with the unselected gates at the read level they would
    sneaky = programmer(v_gate_off=3.0).write(w, requested(counts, prog), PULSES)
    assert np.max(np.abs(sneaky[idle] - w[idle])) > 1e-3


def test_device_count_model_inverts_the_one_pulse_response():
    prog = programmer(count_model="device")
    up, down = prog.state_steps()
    s = np.array([[0.1, 0.5, 0.9], [0.3, 0.7, 0.05]])
    k = np.array([[4, 11, 2], [-3, -20, 0]])
    # targets k pulses away along the device's geometric approach to 1 (SET) or 0 (RESET)
    target = np.where(k > 0, 1 - (1 - s) * (1 - up) ** np.abs(k), s * (1 - down) ** np.abs(k))
    np.testing.assert_array_equal(prog.counts(s, target - s, PULSES), k)
    written = prog.write(s, target - s, PULSES)
    np.testing.assert_allclose(written, target, rtol=0, atol=1e-9)   # only RESET disturb left
    # the same request under the linear model: the device's soft bound shortens the SET step
    linear = programmer().write(s, target - s, PULSES)
    assert linear[0, 2] < target[0, 2] - 1e-3
    # a target beyond the reachable range takes max_pulses
    assert prog.counts(np.array([[0.5]]), np.array([[0.5]]), PULSES)[0, 0] == 1000


def test_pulse_noise_is_seeded_and_multiplies_each_pulse():
    prog = programmer(c2c_sigma=0.3)
    w = np.full((3, 50), 0.5)
    counts = np.tile([[5], [0], [-5]], (1, 50))
    dw = requested(counts, prog)
    a = prog.write(w, dw, PULSES, rng=1)
    np.testing.assert_array_equal(a, prog.write(w, dw, PULSES, rng=1))
    assert not np.array_equal(a, prog.write(w, dw, PULSES, rng=2))
    exact = programmer().write(w, dw, PULSES)
    assert np.std(a[0]) > 1e-4 and np.std(exact[0]) == 0
    # lognormal factors of median 1: the median change stays close to the noiseless one
    assert np.median(a[0] - 0.5) == pytest.approx(exact[0, 0] - 0.5, rel=0.2)
    assert np.all(a[2] < 0.5) and np.all(a[0] > 0.5)


def test_stochastic_rounding_is_unbiased():
    prog = PulseProgrammer(DEVICE, dw_per_pulse=0.01, count_model="linear")
    k = prog.counts(np.full(20000, 0.5), np.full(20000, 0.0137), PULSES, rng=0)
    assert set(np.unique(k)) == {1, 2}
    assert k.mean() == pytest.approx(1.37, abs=0.02)


def test_stdp_step_in_pulses_mode_goes_through_the_device():
    prog = programmer(dw_per_pulse=0.02)
    w = np.array([[0.25, 0.5]])
    # a post-only step after a pre spike: Δw = 0.1·e^{-0.1} = 0.0905 -> round(4.52) = 5 pulses
    tr = STDPTraces(np.array([1.0]), np.zeros(2))
    w_new, _ = stdp_step(w, [0.0], [1.0, 1.0], tr, PULSES, programmer=prog)
    np.testing.assert_allclose(w_new[0], DEVICE.apply_pulses(w[0], 4.0, 1e-3, 5, v_gs=3.0),
                               rtol=1e-12)
    tr = STDPTraces(np.zeros(1), np.array([1.0, 1.0]))
    w_dep, _ = stdp_step(w, [1.0], [0.0, 0.0], tr, PULSES, programmer=prog)
    np.testing.assert_allclose(w_dep[0], DEVICE.apply_pulses(w[0], -4.0, 1e-3, 5, v_gs=-1.0),
                               rtol=1e-12)


def test_pulse_programmer_validation_names_the_argument():
    with pytest.raises(ValueError, match="apply_pulses"):
        PulseProgrammer(object())
    for field, value in (("dw_per_pulse", 0.0), ("v_set", -1.0), ("v_reset", 2.0),
                         ("v_inhibit", 1.5), ("width", 0.0), ("c2c_sigma", -0.1),
                         ("rounding", "up"), ("count_model", "exact")):
        with pytest.raises(ValueError, match=field):
            PulseProgrammer(DEVICE, **{field: value})
    with pytest.raises(ValueError, match="pulse must move"):
        PulseProgrammer(DEVICE, v_set=2.0).state_steps()       # below the SET threshold
    with pytest.raises(ValueError, match="2-D"):
        programmer().write(np.zeros(3), np.zeros(3), PULSES)


def test_programmer_round_trips_through_a_dict():
    import json

    prog = programmer(c2c_sigma=0.1, width=5e-4)
    again = PulseProgrammer.from_dict(json.loads(json.dumps(prog.to_dict())))
    assert again.width == 5e-4 and again.c2c_sigma == 0.1
    assert again.device.params == DEVICE.params
    with pytest.raises(ValueError, match="unknown"):
        PulseProgrammer.from_dict({**prog.to_dict(), "volts": 3})


def test_programmer_dict_keeps_the_device_name_and_is_read_as_untrusted():
    """The saved device goes through the registry's spec reader: its name survives the round
    trip, and forged values are refused with the key named."""
    import json

    from cosim.crossbar import SpecError
    from cosim.devices import Memtransistor

    device = Memtransistor(name="mos2_lot7")
    prog = PulseProgrammer(device)
    again = PulseProgrammer.from_dict(json.loads(json.dumps(prog.to_dict())))
    assert again.device.name == "mos2_lot7" and again.device.params == device.params
    card = prog.to_dict()
    key = sorted(Memtransistor.PARAM_NAMES)[0]
    for forged, word in (({**card["device"], key: "1e-6"}, key),
                         ({**card["device"], "name": "../../x"}, "name"),
                         ({**card["device"], "loader": "os.system"}, "loader")):
        with pytest.raises(SpecError, match=word):
            PulseProgrammer.from_dict({**card, "device": forged})
