"""Spice backend held to the Compact backend: same arrays, same currents, same spikes."""

import numpy as np
import pytest

from cosim import Model
from cosim.crossbar import Compact, Spice
from cosim.data import load_digits
from cosim.errors import NgspiceNotFoundError
from cosim.network import SRNN
from cosim.spice import ngspice
from _spice import require_ngspice  # noqa: E402

pytestmark = pytest.mark.spice


@pytest.fixture(scope="module", autouse=True)
def need_ngspice():
    require_ngspice()


@pytest.mark.parametrize("read", ["linear", "nonlinear"])
@pytest.mark.parametrize("n,r", [(16, 1.0), (16, 10.0), (32, 1.0), (32, 10.0), (64, 1.0)])
def test_spice_equals_compact(tmp_path, read, n, r):
    if read == "nonlinear" and n == 64 and r == 1.0:
        n_patterns = 2          # 8192 subcircuits per analysis: keep the test short
    else:
        n_patterns = 5
    rng = np.random.default_rng(n + int(r))
    W = rng.normal(size=(n, n // 2))
    x = (rng.random((n_patterns, n)) < 0.5).astype(float)
    spice = Spice(r_word=r, r_bit=r, read=read, cache=tmp_path)
    spice.program(W)
    i_s = spice.bitline_currents(x)

    def compact_read(pattern):
        # each pattern solved from the default start: a Newton solve warm-started from
        # another pattern stops at its KCL tolerance, ~1e-10 off in the currents
        xb = Compact(r_word=r, r_bit=r, read=read)
        xb.program(W)
        return xb.bitline_currents(pattern)

    i_c = np.stack([compact_read(p) for p in x])
    assert np.abs(i_c).max() > 1e-7
    rel = np.abs(i_s - i_c).max() / np.abs(i_c).max()
    # every constant reaches ngspice exactly (.param / instance parameters): 1e-12
    assert rel <= 1e-12, f"spice vs compact {rel:.2e}"
    compact = Compact(r_word=r, r_bit=r, read=read)
    compact.program(W)
    np.testing.assert_allclose(spice(x), compact(x), rtol=1e-8, atol=1e-9 * np.abs(compact(x)).max())


@pytest.mark.parametrize("n,r", [(16, 1.0), (32, 10.0)])
def test_batch_read_of_many_patterns_equals_compact(tmp_path, n, r):
    # more patterns than a session takes: one .dc analysis steps through all of them
    rng = np.random.default_rng(n)
    W = rng.normal(size=(n, n // 2))
    x = (rng.random((12, n)) < 0.5).astype(float)
    spice = Spice(r_word=r, r_bit=r, read="nonlinear", cache=tmp_path)
    spice.program(W)
    i_s = spice.bitline_currents(x)
    i_c = []
    for pattern in x:
        xb = Compact(r_word=r, r_bit=r, read="nonlinear")
        xb.program(W)
        i_c.append(xb.bitline_currents(pattern))
    i_c = np.array(i_c)
    assert np.abs(i_s - i_c).max() <= 1e-12 * np.abs(i_c).max()


def test_transfer_matrix_from_one_batch_equals_per_pattern_ops(tmp_path):
    rng = np.random.default_rng(0)
    W = rng.normal(size=(12, 6))
    x = (rng.random((4, 12)) < 0.5).astype(float)
    lin = Spice(r_word=5.0, r_bit=5.0, read="linear", cache=tmp_path)
    lin.program(W)
    via_map = lin.bitline_currents(x)
    per_op = np.stack([lin._run_batch(0.1 * x[k:k + 1])[0] for k in range(4)])
    np.testing.assert_allclose(via_map, per_op, rtol=1e-10)


@pytest.mark.parametrize("n_patterns", [3, 12])   # loaded-circuit session / one .dc batch
def test_disk_cache_hit_makes_no_ngspice_call(tmp_path, n_patterns):
    rng = np.random.default_rng(1)
    W = rng.normal(size=(8, 4))
    x = (rng.random((n_patterns, 8)) < 0.5).astype(float)
    x[0] = 1.0                               # at least one pattern drives every row
    first = Spice(read="nonlinear", cache=tmp_path)
    first.program(W)
    a = first.bitline_currents(x)
    calls = ngspice.ngspice_calls()
    second = Spice(read="nonlinear", cache=tmp_path)     # new object, same arrays
    second.program(W)
    b = second.bitline_currents(x)
    assert ngspice.ngspice_calls() == calls
    np.testing.assert_array_equal(a, b)
    # the in-memory cache serves repeats without even reading the disk cache
    before = dict(second.stats)
    second.bitline_currents(x)
    assert second.stats["solves"] == before["solves"]
    # every row that drives the array is a hit (all-zero rows need no read at all)
    assert second.stats["cache_hits"] == before["cache_hits"] + int(np.any(x, axis=1).sum())


@pytest.mark.parametrize("read,encoding,n_samples", [("linear", "rate", 5),
                                                     ("nonlinear", "rows", 2)])
def test_trained_srnn_rasters_identical_on_compact_and_spice(tmp_path, read, encoding, n_samples):
    # the 5-sample nonlinear rate-coded run is in benchmarks/bench_spice.py (minutes of ngspice)
    (x_train, y_train), (x_test, _) = load_digits(encoding=encoding, T=50, seed=0)
    n_in = x_train.shape[2]
    net = SRNN(n_in, 16, 10, neuron="alif", n_adaptive=8, seed=0)
    Model(net, lr=5e-3).train(x_train[:256], y_train[:256], epochs=3, progress=False)
    x = x_test[:n_samples]
    runs = {}
    for name, backend in [("compact", Compact(r_word=1.0, r_bit=1.0, read=read)),
                          ("spice", Spice(r_word=1.0, r_bit=1.0, read=read, cache=tmp_path))]:
        hw = SRNN(n_in, 16, 10, neuron="alif", n_adaptive=8, seed=0, crossbar=backend)
        hw.set_weights(net.weights, bias_out=net.bias_out)
        runs[name] = hw.run(x)
    assert runs["compact"].z.sum() > 20 * n_samples
    np.testing.assert_array_equal(runs["spice"].z, runs["compact"].z)
    np.testing.assert_allclose(runs["spice"].y, runs["compact"].y, rtol=1e-7, atol=1e-9)


def test_missing_ngspice_is_a_clear_error(monkeypatch):
    def absent(refresh=False):
        raise NgspiceNotFoundError("ngspice not found: install it with scripts/install_ngspice.sh")
    import cosim.crossbar.spice as spice_backend
    monkeypatch.setattr(spice_backend, "find_ngspice", absent)
    with pytest.raises(NgspiceNotFoundError, match="install"):
        Spice()
    # everything else keeps working
    xb = Compact()
    xb.program(np.eye(2))
    assert xb(np.ones(2)).shape == (2,)


def test_deck_is_safe_and_labelled(tmp_path):
    from cosim.spice.netlist import check_deck_safe
    xb = Spice(read="nonlinear", cache=tmp_path)
    xb.program(np.array([[0.5, -1.0], [1.0, 0.25]]))
    deck = xb.deck(v_word=np.array([0.1, 0.0]))
    check_deck_safe(deck)
    assert "Vsense3" in deck and ".include" in deck and "differential" in deck


def test_samples_read_in_worker_processes_equal_the_in_process_run(tmp_path):
    from cosim.crossbar.spice import map_in_processes
    net = SRNN(16, 8, 3, neuron="alif", n_adaptive=4, seed=0,
               crossbar=Spice(read="nonlinear", cache=tmp_path / "cache"))
    x = (np.random.default_rng(0).random((3, 6, 16)) < 0.4).astype(float)
    here = [net.run(x[k:k + 1]) for k in range(3)]
    seen = []
    # a fresh cache: the workers must run ngspice themselves
    net_fresh = net.with_crossbar(Spice(read="nonlinear", cache=tmp_path / "other"))
    there = map_in_processes(net_fresh.run, [x[k:k + 1] for k in range(3)], workers=2,
                             progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (3, 3) and len(seen) == 3
    assert any(p.is_file() for p in (tmp_path / "other").rglob("*.npz"))
    for a, b in zip(here, there):
        np.testing.assert_array_equal(a.z, b.z)
        np.testing.assert_allclose(a.y, b.y, rtol=1e-12, atol=1e-12 * np.abs(a.y).max())
    with pytest.raises(ValueError, match="workers"):
        map_in_processes(net.run, [x[:1]], workers=0)


def test_solution_after_a_linear_read_is_the_nodal_solution_and_reads_go_on(tmp_path):
    """``Spice.solution`` after a linear read crashed ('numpy.ndarray' has no 'solve'), and a
    read after ``solution`` crashed too: the ngspice transfer matrix sat in the slot of the
    nodal solver. The node voltages are those of the compact solve of the same array."""
    rng = np.random.default_rng(7)
    W = rng.normal(size=(8, 4))
    x = (rng.random((3, 8)) < 0.5).astype(float)
    spice = Spice(r_word=2.0, r_bit=3.0, read="linear", cache=tmp_path)
    spice.program(W)
    before = spice(x)
    sol = spice.solution(x[0])
    compact = Compact(r_word=2.0, r_bit=3.0, read="linear")
    compact.program(W)
    ref = compact.solution(x[0])
    np.testing.assert_allclose(sol.word_voltages, ref.word_voltages, rtol=0, atol=1e-15)
    np.testing.assert_allclose(sol.bit_voltages, ref.bit_voltages, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(spice(x), before)
