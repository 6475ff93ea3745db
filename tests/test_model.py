"""Model: training reduces the loss, save/load round trip, corrupt files, bad inputs."""

import numpy as np
import pytest

from cosim import Model
from cosim.errors import ModelFileError, TrainingDivergedError
from cosim.network import SRNN


def toy_task(n=60, steps=15, seed=0):
    """Two classes: input channel 0 or channel 1 fires (plus noise)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = (rng.random((n, steps, 4)) < 0.05).astype(float)
    x[np.arange(n), :, y] = (rng.random((n, steps)) < 0.6)
    return x, y


def test_train_learns_toy_task_and_predicts():
    x, y = toy_task()
    model = Model(SRNN(4, 10, 2, neuron="lif", seed=0), rule="bptt", lr=0.02, batch_size=16)
    history = model.train(x, y, epochs=15, progress=False)
    assert len(history["loss"]) == 15
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    x_test, y_test = toy_task(seed=1)
    assert model.evaluate(x_test, y_test) >= 0.95
    labels = model.predict(x_test)
    assert labels.dtype == np.int64 and labels.shape == (60,)


def test_bp_rule_learns_too():
    x, y = toy_task()
    model = Model(SRNN(4, 10, 2, neuron="alif", seed=0), rule="bp", lr=0.02, batch_size=16)
    model.train(x, y, epochs=15, progress=False)
    assert model.evaluate(*toy_task(seed=1)) >= 0.9


def test_save_load_predict_identical(tmp_path):
    x, y = toy_task()
    net = SRNN(4, 10, 2, neuron="alif", n_adaptive=4, n_delay=2, seed=0)
    model = Model(net, rule="bptt", lr=0.02)
    model.train(x, y, epochs=2, progress=False)
    path = model.save(tmp_path / "m.npz")
    loaded = Model.load(path)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    for key in ("in", "rec", "out"):
        np.testing.assert_array_equal(loaded.network.weights[key], net.weights[key])
    assert loaded.network.neuron_types.tolist() == net.neuron_types.tolist()
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_corrupt_and_foreign_files(tmp_path):
    x, y = toy_task()
    model = Model(SRNN(4, 6, 2, seed=0))
    path = model.save(tmp_path / "m.npz")
    data = bytearray(path.read_bytes())
    # flip bytes inside the stored weights, keep the zip readable: the checksum catches it
    with np.load(path) as npz:
        w = npz["w_in"]
    target = w.tobytes()[:16]
    pos = bytes(data).find(target)
    assert pos > 0
    data[pos] ^= 0xFF
    bad = tmp_path / "bad.npz"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="corrupt|readable"):
        Model.load(bad)
    truncated = tmp_path / "trunc.npz"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ModelFileError):
        Model.load(truncated)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, a=np.arange(3))
    with pytest.raises(ModelFileError, match="not a cosim model"):
        Model.load(foreign)
    with pytest.raises(FileNotFoundError):
        Model.load(tmp_path / "missing.npz")


def test_nan_loss_stops_training_and_keeps_last_good_weights():
    x, y = toy_task()
    net = SRNN(4, 6, 2, seed=0)
    model = Model(net, lr=1e300, optimizer="sgd", batch_size=60)
    model.train(x, y, epochs=1, progress=False)  # one huge step: weights blow up to ~1e300
    good = net.weights
    with pytest.raises(TrainingDivergedError):
        model.train(x, y, epochs=3, progress=False)
    for key in good:
        assert np.all(np.isfinite(net.weights[key]))


@pytest.mark.parametrize("call,word", [
    (lambda m, x, y: m.train(x, y + 5, progress=False), "labels outside"),
    (lambda m, x, y: m.train(x, y[:-1], progress=False), "y must have shape"),
    (lambda m, x, y: m.train(x[:, :, :3], y, progress=False), "x must have shape"),
    (lambda m, x, y: m.train(np.where(x > 0, np.nan, x), y, progress=False), "NaN"),
    (lambda m, x, y: m.train(x, y.astype(float) + 0.5, progress=False), "integer"),
    (lambda m, x, y: m.predict(x[0]), "dimensions"),
])
def test_bad_inputs(call, word):
    x, y = toy_task(n=10)
    with pytest.raises(ValueError, match=word):
        call(Model(SRNN(4, 6, 2)), x, y)


def test_unknown_rule():
    with pytest.raises(ValueError, match="rule"):
        Model(SRNN(4, 6, 2), rule="hebbian-magic")
    with pytest.raises(TypeError, match="rule"):
        Model(SRNN(4, 6, 2), rule=42)


def test_save_load_keeps_a_physical_crossbar(tmp_path):
    from cosim.crossbar import Compact
    from cosim.devices import Memtransistor

    device = Memtransistor(g_max=2e-5, state_map="exponential")
    net = SRNN(4, 6, 2, crossbar=Compact(device=device, r_word=2.0, r_bit=3.0, read="nonlinear",
                                         levels=8))
    model = Model(net)
    loaded = Model.load(model.save(tmp_path / "hw.npz"))
    backend = loaded.network.crossbar
    assert isinstance(backend, Compact)
    assert (backend.r_word, backend.r_bit, backend.read, backend.levels) == (2.0, 3.0, "nonlinear", 8)
    assert backend.device.state_map == "exponential" and backend.device.params["g_max"] == 2e-5
    x, _ = toy_task(n=5)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_save_load_keeps_a_tiled_crossbar(tmp_path):
    from cosim.crossbar import Compact, Tiled

    net = SRNN(4, 6, 2, crossbar=Tiled(Compact(r_word=1.0, r_bit=1.0), max_array=(3, 2)))
    model = Model(net)
    loaded = Model.load(model.save(tmp_path / "tiled.npz"))
    backend = loaded.network.crossbar
    assert isinstance(backend, Tiled) and (backend.max_rows, backend.max_cols) == (3, 2)
    assert isinstance(backend.inner, Compact) and backend.inner.r_word == 1.0
    x, _ = toy_task(n=5)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_float32_training_learns_and_round_trips(tmp_path):
    x, y = toy_task()
    net = SRNN(4, 10, 2, neuron="lif", seed=0, dtype="float32")
    model = Model(net, rule="bptt", lr=0.02, batch_size=16)
    model.train(x, y, epochs=15, progress=False)
    x_test, y_test = toy_task(seed=1)
    assert model.evaluate(x_test, y_test) >= 0.95
    loaded = Model.load(model.save(tmp_path / "f32.npz"))
    assert loaded.network.dtype == np.float32
    np.testing.assert_array_equal(loaded.predict(x_test), model.predict(x_test))


# ------------------------------------------------------------------------------ backend specs

import json  # noqa: E402

from cosim.crossbar import Compact, Ideal, Spice, Tiled, from_spec, to_spec  # noqa: E402


def _backends():
    out = [Ideal(), Compact(r_word=2.0, r_bit=0.5), Compact(read="nonlinear", levels=8,
                                                            program_sigma=0.05, seed=3),
           Tiled(Compact(d2d_sigma=0.0, levels=16), max_array=(3, 2)), Tiled("ideal", 4, 4)]
    return out


@pytest.mark.parametrize("backend", _backends(), ids=lambda b: repr(b)[:40])
def test_spec_round_trip_is_the_same_backend(backend):
    """Issue 11 item 1: one spec <-> backend pair; JSON data in, the same arrays out."""
    spec = to_spec(backend)
    rebuilt = from_spec(json.loads(json.dumps(spec)))
    assert type(rebuilt) is type(backend) and to_spec(rebuilt) == spec
    w = np.random.default_rng(0).normal(size=(5, 3))
    x = (np.random.default_rng(1).random((4, 5)) < 0.5).astype(float)
    backend.fresh().program(w)
    a, b = backend.fresh(), rebuilt.fresh()
    a.program(w)
    b.program(w)
    assert np.array_equal(a.effective_weights, b.effective_weights)
    assert np.array_equal(a(x), b(x))


_GIVEN = {Ideal: {}, Compact: {"r_word": 2.5, "read": "nonlinear", "levels": 8, "seed": 4,
                               "cache_size": 16},
          Spice: {"r_bit": 0.5, "read": "nonlinear", "timeout": 30.0, "engine": "subprocess"},
          Tiled: {"inner": "compact", "max_rows": 3, "max_cols": 5}}


@pytest.mark.parametrize("cls", [Ideal, Compact, Spice, Tiled])
def test_get_params_is_the_constructor_signature(cls, tmp_path):
    import inspect
    given = dict(_GIVEN[cls], **({"cache": tmp_path} if cls is Spice else {}))
    backend = cls(**given)
    names = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    params = backend.get_params()
    assert set(params) <= set(names)
    assert set(names) - set(params) <= {"max_array"}     # an alias of two others
    for key, value in given.items():
        if key != "inner":
            assert params[key] == value, key
    clone = cls(**params)
    assert to_spec(clone) == to_spec(backend)
    assert clone.get_params().keys() == params.keys()


def test_every_builder_makes_the_same_backend():
    """config, sweep, compare and the CLI build through one function and agree."""
    from cosim.config import build_crossbar, load_config
    from cosim.crossbar import build
    from cosim.sweep import build_backend

    settings = dict(r_word=3.0, r_bit=4.0, levels=8, program_sigma=0.1, d2d_sigma=0.0,
                    seed=5, read="nonlinear", v_read=0.2)
    reference = to_spec(build("compact", max_array=(4, 4), **settings))
    section = dict(settings, backend="compact", max_array=[4, 4])
    assert to_spec(build_crossbar(load_config({"crossbar": section})["crossbar"])) == reference
    assert to_spec(build_backend(dict(settings, backend="compact", max_array=[4, 4]))) == reference


def test_lr_overflow_raises_divergence_not_a_huge_loss():
    """Issue 10 item 9: lr = 1e300 reported a loss of 4e290 and no error."""
    x, y = toy_task()
    model = Model(SRNN(4, 6, 2, seed=0), lr=1e300)
    before = model.network.weights
    with pytest.raises(TrainingDivergedError, match="diverged"):
        model.train(x, y, epochs=3, progress=False)
    after = model.network.weights
    for key in before:            # the diverging step was not applied
        assert np.all(np.isfinite(after[key]))


def test_custom_rule_models_load(tmp_path):
    from cosim.learning.bptt import BPTT

    class MyRule(BPTT):
        name = "mine"
    x, y = toy_task()
    model = Model(SRNN(4, 6, 2, seed=0), rule=MyRule())
    path = model.save(tmp_path / "m.npz")
    loaded = Model.load(path)
    # never silently replaced: it predicts, it refuses to train without the rule, and it
    # stays "custom" when saved again
    assert loaded.rule_name == "custom"
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    before = loaded.network.weights
    with pytest.raises(ValueError, match="custom rule"):
        loaded.train(x, y, epochs=1, progress=False)
    for key, value in loaded.network.weights.items():
        np.testing.assert_array_equal(value, before[key])
    again = Model.load(loaded.save(tmp_path / "again.npz"))
    assert again.rule_name == "custom"
    given = Model.load(path, rule=MyRule())
    assert isinstance(given.rule, MyRule)
    given.train(x, y, epochs=1, progress=False)


def test_model_checks_the_network_protocol_not_its_type():
    """Issue 11 item 4: a rule states what it needs from a network; any network giving it works."""
    from cosim.networks import DiehlCook
    with pytest.raises(TypeError, match="set_weights"):
        Model(DiehlCook(n_exc=4), rule="bptt")
    with pytest.raises(TypeError, match="assign_labels"):
        Model(SRNN(4, 6, 2, seed=0), rule="stdp")

    class Wrapped:                      # not an SRNN subclass: the protocol, by delegation
        def __init__(self, net):
            self._net = net

        def __getattr__(self, name):
            return getattr(self._net, name)
    x, y = toy_task()
    inner = SRNN(4, 6, 2, seed=0)
    reference = Model(SRNN(4, 6, 2, seed=0), lr=1e-2, seed=1)
    wrapped = Model(Wrapped(inner), lr=1e-2, seed=1)
    h_ref = reference.train(x, y, epochs=2, progress=False)
    h_wrap = wrapped.train(x, y, epochs=2, progress=False)
    assert h_wrap["loss"] == h_ref["loss"]
    np.testing.assert_array_equal(wrapped.predict(x), reference.predict(x))
