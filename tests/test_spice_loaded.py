"""Loaded circuits: every programmed Spice array keeps its own circuit in libngspice, swept
through its patterns via EXTERNAL word-line sources, and agrees with fresh ngspice decks
and with the compact solve."""

import gc
import os
import signal
import threading

import numpy as np
import pytest

from cosim.crossbar import Compact, Spice
from cosim.errors import SpiceError
from cosim.spice import ngspice
from cosim.spice.circuits import POOL, LoadedCircuit
from cosim.spice.libngspice import SharedLibrary, VoltageFeed
from cosim.spice.netlist import crossbar_deck, sense_vectors
from _spice import require_ngspice  # noqa: E402

pytestmark = pytest.mark.spice


@pytest.fixture(scope="module", autouse=True)
def need_shared_ngspice():
    require_ngspice()
    if not ngspice.shared_available():
        pytest.skip("libngspice not loadable")


@pytest.fixture(autouse=True)
def empty_pool():
    """Each test starts and ends with no loaded circuit of earlier tests."""
    gc.collect()
    POOL.collect()
    yield
    gc.collect()
    POOL.collect()


def _compact_reads(W, x, **settings):
    """Each pattern solved from the compact solver's default start (no warm start)."""
    out = []
    for pattern in x:
        c = Compact(read="nonlinear", **settings)
        c.program(W)
        out.append(c.bitline_currents(pattern))
    return np.array(out)


def _programmed(seed, rows, cols, reads):
    """(Spice array programmed with random weights (rows, cols), nonlinear read, no cache,
    its weights, ``reads`` binary inputs with the first row always driven)."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(rows, cols))
    x = (rng.random((reads, rows)) < 0.5).astype(float)
    x[:, 0] = 1.0
    s = Spice(read="nonlinear", cache=False)
    s.program(W)
    return s, W, x


def _ours(spice):
    return [] if spice._loaded is None else [t for t in POOL.loaded() if t == spice._loaded.tag]


def test_two_arrays_each_keep_their_loaded_circuit_and_agree_with_compact():
    """Alternating reads of two arrays: both circuits stay loaded (parsed once each), and
    every read equals the compact solve.  (Before, one array held the only loaded circuit
    and the other parsed a fresh .dc deck per call.)"""
    rng = np.random.default_rng(11)
    arrays = []
    for rows, cols, r in [(12, 5, 1.0), (7, 9, 10.0)]:
        W = rng.normal(size=(rows, cols)) * 20
        s = Spice(r_word=r, r_bit=r, read="nonlinear", cache=False)
        s.program(W)
        arrays.append((s, W, r))
    loads = None
    for step in range(3):
        for s, W, r in arrays:
            x = (rng.random((2 if step else 5, W.shape[0])) < 0.5).astype(float)
            x[:, 0] = 1.0
            got = s.bitline_currents(x)
            ref = _compact_reads(W, x, r_word=r, r_bit=r)
            assert np.abs(got - ref).max() <= 1e-12 * np.abs(ref).max()
        if step == 0:
            loads = POOL.loads
    assert POOL.loads == loads                    # no re-parse after the first reads
    assert all(len(_ours(s)) == 1 for s, _, _ in arrays)


@pytest.mark.parametrize("rows,cols,r,p,K", [(9, 31, 1.0, 0.2, 1), (24, 10, 10.0, 0.9, 7),
                                             (40, 7, 1.0, 0.5, 12)])
def test_sweep_of_a_loaded_circuit_equals_fresh_op_decks_and_compact(rows, cols, r, p, K):
    """Random non-square arrays, sparse and dense patterns: each sweep point equals an
    ``.op`` of a fresh deck of that pattern (``ngspice -b``) and the compact solve."""
    rng = np.random.default_rng(rows * cols + K)
    W = rng.normal(size=(rows, cols)) * 20
    x = (rng.random((K, rows)) < p).astype(float)
    x[x.sum(axis=1) == 0, 0] = 1.0
    s = Spice(r_word=r, r_bit=r, read="nonlinear", cache=False)
    s.program(W)
    got = s.bitline_currents(x)
    assert len(_ours(s)) == 1                      # it was the loaded circuit that ran
    names = sense_vectors(2 * cols)
    fresh = [ngspice.run_op(s.deck(v_word=s.v_read * pattern), names, engine="subprocess")
             for pattern in x]
    op = np.array([[res[n][0] for n in names] for res in fresh])
    compact = _compact_reads(W, x, r_word=r, r_bit=r)
    scale = np.abs(compact).max()
    assert np.abs(got - op).max() <= 1e-11 * scale
    assert np.abs(got - compact).max() <= 1e-12 * scale


def test_the_feed_never_serves_a_point_it_does_not_hold():
    feed = VoltageFeed(np.array([[0.1, 0.0], [0.0, 0.1]]), ["vin0", "vin1"])
    assert feed.value(b"vin1") == 0.0 and feed.value(b"VIN0") == 0.1
    feed.point = 1
    assert feed.value(b"vin1") == 0.1
    assert feed.check(2) is not None               # point 1 did not read vin0
    feed.value(b"vin0")
    assert feed.check(2) is None
    assert "3 points" in feed.check(3)             # a sweep of more points than patterns
    feed.point = 2                                 # ngspice asks for a point beyond K
    assert feed.value(b"vin0") == 0.0
    assert "sweep point 2" in feed.check(2)
    unknown = VoltageFeed(np.zeros((1, 1)), ["vin0"])
    assert unknown.value(b"vx") == 0.0 and "vx" in unknown.check(1)
    with pytest.raises(ValueError, match="shape"):
        VoltageFeed(np.zeros((2, 3)), ["vin0", "vin1"])
    with pytest.raises(ValueError, match="shape"):
        VoltageFeed(np.zeros((0, 2)), ["vin0", "vin1"])
    with pytest.raises(ValueError, match="finite"):
        VoltageFeed(np.array([[0.1, np.nan]]), ["vin0", "vin1"])


def _small_circuit(**kw):
    W = np.random.default_rng(5).uniform(0, 1, (4, 3))
    deck = crossbar_deck(states=W, external=(0.0, 0.1), r_word=1.0, r_bit=1.0,
                         options={"reltol": 1e-11, "abstol": 1e-18, "vntol": 1e-11})
    return W, LoadedCircuit(deck, [f"vin{i}" for i in range(4)], sense_vectors(3), **kw)


def test_a_pattern_count_or_source_mismatch_is_refused_before_ngspice_runs():
    _, circuit = _small_circuit()
    calls = ngspice.ngspice_calls()
    with pytest.raises(ValueError, match="shape"):
        circuit.sweep(np.zeros((2, 3)))            # 3 values for 4 sources
    with pytest.raises(ValueError, match="finite"):
        circuit.sweep(np.array([[0.1, np.inf, 0.0, 0.0]]))
    assert ngspice.ngspice_calls() == calls
    deck = crossbar_deck(states=np.ones((2, 2)) / 2, external=(0.0, 0.1))
    with pytest.raises(ValueError, match="EXTERNAL"):
        LoadedCircuit(deck, ["vin0", "vin1", "vin2"], sense_vectors(2))
    with pytest.raises(ValueError, match="EXTERNAL"):
        LoadedCircuit(deck, ["vidx"], sense_vectors(2))    # a source, but not external
    result = circuit.sweep(np.array([[0.1, 0.0, 0.1, 0.0], [0.0, 0.1, 0.0, 0.0]]))
    assert all(v.shape == (2,) for v in result.values())


def test_non_finite_results_raise_and_are_never_cached(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    W = rng.normal(size=(6, 3))
    x = (rng.random((3, 6)) < 0.5).astype(float)
    x[:, 0] = 1.0
    real = SharedLibrary.vector

    def poisoned(self, name):
        arr = real(self, name)
        if arr is not None and name == "i(vsense1)":
            arr[-1] = np.nan
        return arr

    monkeypatch.setattr(SharedLibrary, "vector", poisoned)
    s = Spice(read="nonlinear", cache=tmp_path / "cache")
    s.program(W)
    with pytest.raises(SpiceError, match="finite"):
        s.bitline_currents(x)
    assert not list((tmp_path / "cache").rglob("*.npz"))
    monkeypatch.setattr(SharedLibrary, "vector", real)
    np.testing.assert_allclose(s.bitline_currents(x), _compact_reads(W, x), rtol=0,
                               atol=1e-12 * np.abs(_compact_reads(W, x)).max())
    assert list((tmp_path / "cache").rglob("*.npz"))


def test_a_sweep_past_its_timeout_is_halted_and_its_circuit_removed(tmp_path):
    rng = np.random.default_rng(3)
    W = rng.normal(size=(32, 16))
    x = (rng.random((30, 32)) < 0.5).astype(float)
    x[:, 0] = 1.0
    s = Spice(read="nonlinear", cache=tmp_path / "cache", timeout=1e-3)
    s.program(W)
    with pytest.raises(SpiceError, match="timed out"):
        s.bitline_currents(x)
    assert not _ours(s)
    assert not list((tmp_path / "cache").rglob("*.npz"))
    s.timeout = 600.0                                # reloads and reads
    np.testing.assert_allclose(s.bitline_currents(x[:2]), _compact_reads(W, x[:2]), rtol=0,
                               atol=1e-12 * np.abs(_compact_reads(W, x[:2])).max())


class _Interrupted(Exception):
    pass


def test_an_interrupted_sweep_stops_ngspice_and_the_array_reads_on(tmp_path, monkeypatch):
    """A Ctrl-C (a real SIGINT) while ngspice sweeps: the background thread is halted before
    the exception reaches the caller, nothing is cached, and the next read of the array
    agrees with the compact solve.  (Before: the sweep kept running, unfed, and every later
    read of the array failed with "ngspice no longer lists the loaded circuit".)  The
    signal is sent from the feed once the sweep has reached point 5 of 100, so it lands
    mid-sweep on a machine of any speed."""
    rng = np.random.default_rng(3)
    W = rng.normal(size=(32, 16))
    x = (rng.random((101, 32)) < 0.5).astype(float)
    x[:, 0] = 1.0
    s = Spice(read="nonlinear", cache=tmp_path / "cache")
    s.program(W)
    s.bitline_currents(x[:1])                        # loaded: the next call only sweeps
    armed = threading.Event()

    def interrupt(signum, frame):
        if armed.is_set():                           # only inside the read below
            raise _Interrupted
    sent = threading.Event()
    value = VoltageFeed.value

    def value_then_interrupt(feed, name):
        if armed.is_set() and feed.point >= 5 and not sent.is_set():
            sent.set()
            os.kill(os.getpid(), signal.SIGINT)      # handled by the main thread, waiting
        return value(feed, name)
    monkeypatch.setattr(VoltageFeed, "value", value_then_interrupt)
    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        armed.set()
        with pytest.raises(_Interrupted):
            s.bitline_currents(x[1:])                # 100 points
    finally:
        armed.clear()
        signal.signal(signal.SIGINT, previous)
    assert sent.is_set()
    assert not ngspice.ENGINE._shared._lib.ngSpice_running()
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 1    # the first read only
    ref = _compact_reads(W, x[1:4])
    np.testing.assert_allclose(s.bitline_currents(x[1:4]), ref, rtol=0,
                               atol=1e-12 * np.abs(ref).max())


def test_a_circuit_ngspice_lost_is_loaded_afresh():
    """If ngspice no longer holds an array's circuit (removed behind the pool's back, as
    a sweep interrupted mid-analysis could leave it), the next read reloads it and agrees
    with the compact solve (before: every later read of the array raised SpiceError)."""
    s, W, x = _programmed(11, 6, 3, 4)
    s.bitline_currents(x[:1])
    with ngspice.ENGINE._lock:
        ngspice.ENGINE._shared.unload()              # ngspice drops the current circuit
    loads = POOL.loads
    ref = _compact_reads(W, x[1:])
    np.testing.assert_allclose(s.bitline_currents(x[1:]), ref, rtol=0,
                               atol=1e-12 * np.abs(ref).max())
    assert POOL.loads == loads + 1 and _ours(s)


def test_reprogramming_or_collecting_an_array_removes_its_circuit():
    rng = np.random.default_rng(4)
    s = Spice(read="nonlinear", cache=False)
    s.program(rng.normal(size=(5, 3)))
    s.bitline_currents(np.ones(5))
    first = s._loaded.tag
    assert first in POOL.loaded()
    s.program(rng.normal(size=(5, 3)))               # new states: the circuit is stale
    assert first not in POOL.loaded()
    s.bitline_currents(np.ones(5))
    second = s._loaded.tag
    assert second in POOL.loaded()
    del s
    gc.collect()
    POOL.collect()
    assert second not in POOL.loaded()
    assert ngspice.ENGINE.shared_free()              # no circuit left: the library is free


@pytest.mark.parametrize("bound", ["limit", "max_lines"])
def test_the_number_of_loaded_circuits_is_bounded(monkeypatch, bound):
    if bound == "limit":
        monkeypatch.setattr(POOL, "limit", 2)
    else:              # room for two of these circuits (306-346 deck lines each), not three
        monkeypatch.setattr(POOL, "max_lines", 700)
    rng = np.random.default_rng(6)
    arrays = []
    for k in range(3):
        W = rng.normal(size=(6 + k, 3))
        s = Spice(read="nonlinear", cache=False)
        s.program(W)
        arrays.append((s, W))
    loads = POOL.loads
    for round_ in range(2):
        for s, W in arrays:
            x = np.ones((1, W.shape[0]))
            x[0, 1 + round_] = 0.0                   # a new pattern each round: no cache hit
            ref = _compact_reads(W, x)
            np.testing.assert_allclose(s.bitline_currents(x), ref, rtol=0,
                                       atol=1e-12 * np.abs(ref).max())
            assert 1 <= len(POOL.loaded()) <= 2
    assert len(POOL.loaded()) == 2
    assert POOL.loads == loads + 6                   # round robin over 3 > 2: each reloads


def test_a_run_that_insists_on_the_library_takes_it_and_reads_go_on():
    s, W, x = _programmed(8, 6, 4, 3)
    first = s.bitline_currents(x)
    assert _ours(s)
    deck = crossbar_deck(conductances=np.full((2, 2), 1e-3), v_word=[0.1, 0.0])
    auto = ngspice.run_op(deck, sense_vectors(2))   # a one-shot run leaves it loaded ...
    assert _ours(s)
    shared = ngspice.run_op(deck, sense_vectors(2), engine="shared")   # ... this one not
    assert not POOL.loaded()
    np.testing.assert_allclose(shared["i(vsense0)"], auto["i(vsense0)"], rtol=1e-12)
    x[:, 1] = 1.0 - x[:, 1]                          # new patterns: ngspice must run again
    ref = _compact_reads(W, x)
    np.testing.assert_allclose(s.bitline_currents(x), ref, rtol=0,
                               atol=1e-12 * np.abs(ref).max())
    assert _ours(s) and first.shape == (3, 8)


def test_a_read_beyond_the_loaded_range_rewrites_the_circuit_and_agrees():
    """The loaded deck is written for the word-line range seen so far (it picks the read
    cell like a batch deck's extremes); a read outside it reloads a deck covering both."""
    rng = np.random.default_rng(9)
    W = rng.normal(size=(6, 4)) * 20
    s = Spice(read="nonlinear", cache=False, r_word=2.0, r_bit=2.0)
    s.program(W)
    tags, loads = [], []
    # 0..0.1 V, then -0.2..0.3 V (outside: rewritten), then -0.1..0.2 V (inside both)
    for x in (np.array([[1.0, 0, 1, 0, 0, 1]]), np.array([[3.0, 0, -2.0, 0, 0, 1]]),
              np.array([[2.0, 0, -1.0, 1, 0, 0]])):
        ref = _compact_reads(W, x, r_word=2.0, r_bit=2.0)
        np.testing.assert_allclose(s.bitline_currents(x), ref, rtol=0,
                                   atol=1e-12 * np.abs(ref).max())
        tags.append(POOL.loaded())
        loads.append(POOL.loads)
    assert len(tags[0]) == 1 and len(tags[1]) == 1 and tags[1] != tags[0]   # first removed
    assert tags[2] == tags[1] and loads[2] == loads[1]          # no reload within the range
