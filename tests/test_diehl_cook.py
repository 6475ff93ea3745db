"""The Diehl & Cook network (cosim.networks.diehl_cook): homeostasis, learning, device writes."""

import json
import math

import numpy as np
import pytest

from cosim.crossbar import Compact, Ideal
from cosim.devices import Memtransistor
from cosim.learning.stdp import PulseProgrammer, STDPParams
from cosim.networks import AdaptiveThreshold, DiehlCook

N_IN, T = 12, 40


def patterns(n_per_class, seed, n_classes=3):
    """Classes lighting disjoint blocks of 4 inputs (p = 0.5, background 0.02)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
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
                  theta_plus=0.05, theta_scale="absolute", tau_theta=2000.0, train_batch=4,
                  seed=7)
    params.update(kw)
    return DiehlCook(**params)


@pytest.fixture(scope="module")
def trained():
    x, y = patterns(40, seed=1)
    net = small_net().fit(x, epochs=2)
    net.assign_labels(x, y)
    return net, x, y


# ------------------------------------------------------------------------------ homeostasis
def test_adaptive_threshold_follows_the_hand_computed_sequence():
    # T = 10 steps per presentation, τ_θ = 10/ln 2: θ halves over each presentation
    rule = AdaptiveThreshold(theta_plus=0.5, tau_theta=10 / math.log(2))
    counts = [[2, 0], [0, 1], [1, 1]]
    # θ1 = ½(0 + 0.5·2) = 0.5, 0;  θ2 = ½(0.5 + 0) = 0.25, ½(0 + 0.5) = 0.25;
    # θ3 = ½(0.25 + 0.5) = 0.375 for both
    np.testing.assert_allclose(rule.update([0.0, 0.0], counts[:1], 10), [0.5, 0.0], rtol=1e-15)
    np.testing.assert_allclose(rule.update([0.0, 0.0], counts[:2], 10), [0.25, 0.25], rtol=1e-15)
    np.testing.assert_allclose(rule.update([0.0, 0.0], counts, 10), [0.375, 0.375], rtol=1e-15)
    # from θ0 = 1 with no spikes it is pure decay
    np.testing.assert_allclose(rule.update([1.0, 2.0], np.zeros((4, 2)), 10), [1 / 16, 2 / 16],
                               rtol=1e-15)


def test_training_applies_the_threshold_rule_to_the_reported_spikes():
    x, _ = patterns(10, seed=4)
    seen = []

    def progress(desc, done, total, **info):
        seen.append(dict(info, seen=done, total=total))
    net = small_net(tau_theta=300.0, theta_plus=0.02).fit(x, epochs=2, progress=progress)
    counts = np.concatenate([s["counts"] for s in seen])
    assert counts.shape == (2 * len(x), 6) and counts.sum() > 0
    theta = np.zeros(6)
    for c in counts:                              # θ_k = e^{-T/τ_θ} (θ_{k-1} + θ_+ c_k)
        theta = math.exp(-T / 300.0) * (theta + 0.02 * c)
    np.testing.assert_allclose(net.theta_, theta, rtol=1e-12)
    np.testing.assert_array_equal(net.spike_counts_, counts.sum(axis=0))
    assert seen[-1]["seen"] == seen[-1]["total"] == len(x) and seen[-1]["epoch"] == 2


def test_theta_plus_per_100_units_scales_with_the_size():
    """theta_plus "per_100" at 200 units learns exactly as an absolute 2 x theta_plus."""
    x, _ = patterns(4, seed=5)
    per_100 = small_net(n_exc=200, theta_plus=0.05, theta_scale="per_100").fit(x)
    absolute = small_net(n_exc=200, theta_plus=0.1, theta_scale="absolute").fit(x)
    unscaled = small_net(n_exc=200, theta_plus=0.05, theta_scale="absolute").fit(x)
    assert per_100.theta_.max() > 0
    np.testing.assert_array_equal(per_100.theta_, absolute.theta_)
    np.testing.assert_array_equal(per_100.W_in_, absolute.W_in_)
    assert not np.array_equal(per_100.theta_, unscaled.theta_)


def test_no_unit_is_silent_after_training_and_homeostasis_is_why():
    x, y = patterns(30, seed=3)
    net = small_net(n_exc=9).fit(x, epochs=2)
    assert net.silent_units_.size == 0
    assert np.all(net.spike_counts_ > 0)
    net.assign_labels(x, y)
    assert set(net.labels_[net.labels_ >= 0]) == {0, 1, 2}
    # without the adaptive threshold the first winners keep their inputs: silent units
    lazy = small_net(n_exc=9, theta_plus=0.0).fit(x, epochs=2)
    assert lazy.silent_units_.size > 0


# ---------------------------------------------------------------------------------- learning
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
    # normalised columns: ||w_j||_2 = norm·sqrt(n_in) (default p = 2); p = 1 is the sum
    np.testing.assert_allclose(np.linalg.norm(w, axis=0), 0.1 * math.sqrt(N_IN), rtol=1e-9)
    l1 = small_net(norm_ord=1).fit(patterns(5, seed=1)[0])
    np.testing.assert_allclose(l1.W_in_.sum(axis=0), 0.1 * N_IN, rtol=1e-9)


def test_batched_presentations_learn_like_online_ones():
    x, y = patterns(40, seed=1)
    x_test, y_test = patterns(30, seed=2)
    for batch in (1, 16):
        net = small_net(train_batch=batch).fit(x, epochs=2)
        net.assign_labels(x, y)
        assert net.evaluate(x_test, y_test) >= 0.95, batch


def test_same_seed_same_weights_other_seed_differs(trained):
    net, x, _ = trained
    again = small_net().fit(x, epochs=2)
    np.testing.assert_array_equal(again.W_in_, net.W_in_)
    np.testing.assert_array_equal(again.theta_, net.theta_)
    other = small_net(seed=8).fit(x, epochs=2)
    assert not np.array_equal(other.W_in_, net.W_in_)


def test_state_round_trip(trained):
    net, x, _ = trained
    state = net.get_state()
    arrays = {k for k, v in state.items() if isinstance(v, np.ndarray)}
    assert arrays == {"W_in", "theta", "labels", "spike_counts"}
    json.dumps({k: v for k, v in state.items() if k not in arrays})     # the rest is JSON-able
    clone = DiehlCook().set_state(state)
    np.testing.assert_array_equal(clone.predict(x), net.predict(x))
    np.testing.assert_array_equal(clone.silent_units_, net.silent_units_)
    assert clone.n_exc == 6 and clone.get_params()["seed"] == 7
    with pytest.raises(ValueError, match="W_in"):
        DiehlCook().set_state(dict(state, W_in=state["W_in"][:-1]))
    with pytest.raises(ValueError, match="spike_counts"):
        DiehlCook().set_state(dict(state, spike_counts=-state["spike_counts"]))
    # a state saved before homeostasis per 100 units, p-norms and batches meant the paper's
    old = {k: v for k, v in state["params"].items()
           if k not in ("theta_scale", "norm_ord", "train_batch", "programmer")}
    legacy = DiehlCook().set_state({k: v for k, v in state.items()
                                    if k not in ("spike_counts", "gain_index")} | {"params": old})
    assert (legacy.theta_scale, legacy.norm_ord, legacy.train_batch) == ("absolute", 1, 1)


def test_old_import_path_is_the_same_class():
    from cosim.learning import stdp

    assert stdp.DiehlCook is DiehlCook
    with pytest.raises(AttributeError):
        stdp.NoSuchNetwork   # noqa: B018


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
    net = small_net(crossbar=CountingIdeal(), train_batch=1).fit(x, epochs=1)
    assert CountingIdeal.forwards >= len(y) and CountingIdeal.programs >= 1
    before = CountingIdeal.forwards
    net.responses(x)
    assert CountingIdeal.forwards > before


# ------------------------------------------------------------------------ device-aware STDP
def device_net(**kw):
    device = Memtransistor()
    array = Compact(device, r_word=1.0, r_bit=1.0, w_max=1.0)
    prog = PulseProgrammer(device, c2c_sigma=0.1)
    return small_net(crossbar=array, programmer=prog, **kw)


def test_device_aware_stdp_learns_with_pulses_on_compact_arrays():
    x, y = patterns(40, seed=1)
    x_test, y_test = patterns(30, seed=2)
    net = device_net().fit(x, epochs=2)
    net.assign_labels(x, y)
    assert net.evaluate(x_test, y_test) >= 0.95
    assert net.silent_units_.size == 0
    # the array holds the written states: G+ columns are the weights (w_max = 1, linear map)
    xbar = net.array
    np.testing.assert_allclose(xbar.states[:, 0::2], net.W_in_, rtol=0, atol=1e-15)
    assert 0.0 <= net.W_in_.min() and net.W_in_.max() <= 1.0
    # pulses keep the states off the hard bounds (the device's soft bounds)
    assert net.W_in_.max() < 1.0
    again = device_net().fit(x, epochs=2)
    np.testing.assert_array_equal(again.W_in_, net.W_in_)       # seeded noise


def test_device_aware_settings_are_checked():
    x, _ = patterns(3, seed=0)
    device = Memtransistor()
    prog = PulseProgrammer(device)
    with pytest.raises(ValueError, match="w_max"):
        DiehlCook(crossbar=Compact(device), programmer=prog).fit(x)
    with pytest.raises(ValueError, match="state_map"):
        DiehlCook(crossbar=Compact(device.replace(state_map="exponential"), w_max=1.0),
                  programmer=prog).fit(x)
    with pytest.raises(ValueError, match="programmer"):
        DiehlCook(stdp=STDPParams(mode="pulses")).fit(x)      # the rule, not the writer
    with pytest.raises(ValueError, match="programmer"):
        DiehlCook(programmer="device").fit(x)


def test_device_aware_state_round_trip():
    x, y = patterns(10, seed=1)
    net = device_net().fit(x, epochs=1)
    net.assign_labels(x, y)
    state = net.get_state()
    json.dumps(state["params"])
    clone = DiehlCook().set_state(state, crossbar=Compact(Memtransistor(), w_max=1.0))
    assert clone.programmer.c2c_sigma == 0.1
    np.testing.assert_array_equal(clone.W_in_, net.W_in_)


def test_device_aware_model_reloads_its_arrays(tmp_path):
    """The saved model keeps the crossbar spec: reloaded without crossbar=, it reads the same
    arrays (IR drop of 1 Ohm segments included) and goes on learning with pulses."""
    from cosim import Model
    x, y = patterns(10, seed=1)
    net = device_net().fit(x, epochs=1)
    net.assign_labels(x, y)
    path = Model(net, rule="stdp").save(tmp_path / "dc.npz")
    loaded = Model.load(path).network
    assert isinstance(loaded.crossbar, Compact)
    assert (loaded.crossbar.r_word, loaded.crossbar.r_bit, loaded.crossbar.w_max) == (1.0, 1.0, 1.0)
    np.testing.assert_array_equal(loaded.responses(x), net.responses(x))
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))
    loaded.partial_fit(x, epochs=1)           # device-aware learning needs the device backend
    net.partial_fit(x, epochs=1)
    np.testing.assert_array_equal(loaded.W_in_, net.W_in_)


# -------------------------------------------------------------------------------- validation
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
        DiehlCook(n_exc=0).fit(x)
    with pytest.raises(ValueError, match="gain_step"):
        DiehlCook(gain_step=1.0).fit(x)
    with pytest.raises(ValueError, match="theta_scale"):
        DiehlCook(theta_scale="per_unit").fit(x)
    with pytest.raises(ValueError, match="tau_theta"):
        DiehlCook(tau_theta=0.0).fit(x)
    with pytest.raises(ValueError, match="norm_ord"):
        DiehlCook(norm_ord=3).fit(x)
    with pytest.raises(ValueError, match="train_batch"):
        DiehlCook(train_batch=0).fit(x)
    with pytest.raises(RuntimeError, match="assign_labels"):
        small_net().fit(x[:3]).predict(x)


def test_model_trains_diehl_cook_with_stdp_and_round_trips(tmp_path):
    from cosim import Model

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


# ---------------------------------------------------------------------- the excitatory loop
def reference_layer(current, thr, tau, n_ref, w_inh):
    """The layer step by step with cosim.neurons.LIF, inhibition and the one-spike rule."""
    from cosim.neurons import LIF

    B, T, n = current.shape
    neuron = LIF(n, tau=tau, thr=thr, n_refractory=n_ref)
    state = neuron.zero_state(B)
    z = np.zeros((B, n))
    out = np.zeros((B, T, n))
    for t in range(T):
        i_t = current[:, t] - w_inh * (z.sum(axis=1, keepdims=True) - z)
        old_ref = state.refractory
        z, state, trace = neuron.advance(i_t, state)
        for b in range(B):
            if z[b].sum() > 1:          # keep the largest relative overshoot, no reset for others
                over = np.where(z[b] > 0, (trace.v_pre[b] - thr) / thr, -np.inf)
                keep = int(np.argmax(over))
                vetoed = (z[b] > 0) & (np.arange(n) != keep)
                state.v[b, vetoed] = trace.v_pre[b, vetoed]
                state.refractory[b, vetoed] = np.maximum(old_ref[b, vetoed] - 1, 0)
                z[b] = 0.0
                z[b, keep] = 1.0
        state = state._replace(z=z)
        out[:, t] = z
    return out


@pytest.mark.parametrize("n_ref,w_inh", [(0, 0.0), (2, 0.0), (2, 0.3), (3, 5.0)])
def test_layer_responses_match_lif_steps(n_ref, w_inh):
    rng = np.random.default_rng(n_ref)
    B, T_, n_in, n = 4, 80, 10, 7
    x = (rng.random((B, T_, n_in)) < 0.4).astype(float)
    w = rng.uniform(0.0, 1.0, (n_in, n))
    theta = rng.uniform(0.0, 0.3, n)
    net = DiehlCook(n_exc=n, tau_m=8.0, thr=0.6, n_refractory=n_ref, w_inh=w_inh, norm=None,
                    max_retries=0)
    net.set_state({"params": net.get_params(), "W_in": w, "theta": theta, "labels": None,
                   "n_inputs": n_in})
    current = (x.reshape(-1, n_in) @ w).reshape(B, T_, n)       # what the ideal array reads
    ref = reference_layer(current, 0.6 + theta, 8.0, n_ref, w_inh)
    assert ref.sum() > 20
    np.testing.assert_array_equal(net.responses(x), ref.sum(axis=1))


def test_an_epoch_presents_the_training_set_once_for_learning_and_once_for_labels():
    """The training accuracy comes from the responses the labels were assigned from: each
    epoch reads the arrays for the learning pass and one label pass, not a third (evaluate)."""
    from cosim import Model

    reads = []                       # patterns read, by every copy the network makes

    class CountingIdeal(Ideal):
        def forward(self, x):
            reads.append(np.asarray(x).shape[0])
            return super().forward(x)

    x, y = patterns(40, seed=1)
    net = small_net(crossbar=CountingIdeal())
    model = Model(net, rule="stdp")
    history = model.train(x, y, epochs=1, progress=False)
    learning_reads = sum(reads)
    assert history["accuracy"][0] == net.evaluate(x, y)
    reads.clear()
    net.assign_labels(x, y)
    label_reads = sum(reads)
    assert label_reads == x.shape[0] * T
    # the rest is the learning pass: N·T patterns, plus those of retried samples (fewer than
    # N·T here); a second label pass (evaluate) would add another N·T
    assert x.shape[0] * T <= learning_reads - label_reads < 2 * x.shape[0] * T
    assert net.label_accuracy_ == history["accuracy"][0]
