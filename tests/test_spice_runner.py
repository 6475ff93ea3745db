"""ngspice runner: engines, failures kept on disk, timeouts, finder, session, cache."""

import os
import stat
import warnings

import numpy as np
import pytest

import cosim.spice.ngspice as ngs
from cosim.errors import NgspiceNotFoundError, SpiceError, UnsafeDeckError
from cosim.spice.cache import SpiceCache, cached_run_op
from cosim.spice.netlist import DEFAULT_LIBRARY, crossbar_deck, sense_vectors, state_vector
from cosim.spice.ngspice import (NgspiceSession, find_ngspice, ngspice_calls, parse_raw,
                                 run_op, run_tran)

from _spice import needs_spice  # noqa: E402


NO_SOLUTION = """* KCL V/1k + 1 + V^2 = 0 has no real solution
R1 a 0 1e3
B1 a 0 I = 1 + V(a)*V(a)
.op
.end
"""


def _small_deck(seed=0, R=4, C=3, **kw):
    rng = np.random.default_rng(seed)
    return crossbar_deck(conductances=rng.uniform(1e-6, 1e-4, (R, C)),
                         v_word=rng.uniform(0, 0.2, R), r_word=1.0, r_bit=1.0, **kw)


def _assert_kept(err):
    assert err.deck is not None and err.log is not None
    for p in (err.deck, err.log):
        assert os.path.isfile(p) and os.path.getsize(p) > 0
    assert str(err.deck) in str(err) and str(err.log) in str(err)


# ---------------------------------------------------------------------------------------
# finder
# ---------------------------------------------------------------------------------------

@needs_spice
def test_find_ngspice_reports_version_and_klu():
    info = find_ngspice()
    assert os.path.isfile(info.executable)
    assert isinstance(info.version, int) and info.version >= 30
    assert isinstance(info.klu, bool)
    assert f"ngspice-{info.version}" in info.version_string
    assert find_ngspice() is info  # cached


def test_missing_ngspice_raises_with_install_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    engine = ngs.NgspiceEngine()
    with pytest.raises(NgspiceNotFoundError) as exc:
        engine.info()
    assert "install_ngspice.sh" in str(exc.value)
    assert isinstance(exc.value, SpiceError)
    with pytest.raises(NgspiceNotFoundError):
        run_op(NO_SOLUTION, ["v(a)"], ngspice=engine)


def test_old_ngspice_without_klu_warns_once(tmp_path, monkeypatch):
    fake = tmp_path / "ngspice"
    fake.write_text("#!/bin/sh\necho '** ngspice-39 : Circuit level simulation program'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(tmp_path))
    engine = ngs.NgspiceEngine()
    with pytest.warns(RuntimeWarning, match="install_ngspice.sh") as rec:
        info = engine.info()
    assert info.version == 39 and info.klu is False
    assert sum("install_ngspice" in str(w.message) for w in rec) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        engine.info(refresh=True)  # warned once only


# ---------------------------------------------------------------------------------------
# runs, engines, failures
# ---------------------------------------------------------------------------------------

@needs_spice
def test_engines_agree_and_temp_files_are_removed(tmp_path):
    deck = _small_deck()
    work = tmp_path / "work"
    work.mkdir()
    a = run_op(deck, sense_vectors(3), engine="subprocess", workdir=work)
    assert list(work.iterdir()) == []  # successful temp folder removed
    if ngs.shared_available():
        b = run_op(deck, sense_vectors(3), engine="shared")
        for v in sense_vectors(3):
            np.testing.assert_allclose(a[v], b[v], rtol=1e-14)
    assert set(a) == set(sense_vectors(3))


@needs_spice
def test_ngspice_calls_counts_each_analysis():
    n0 = ngspice_calls()
    run_op(_small_deck(), sense_vectors(3), engine="subprocess")
    run_op(_small_deck(), sense_vectors(3))
    assert ngspice_calls() == n0 + 2


@needs_spice
@pytest.mark.parametrize("engine", ["subprocess", "shared"])
def test_non_convergence_raises_and_keeps_deck_and_log(tmp_path, engine):
    if engine == "shared" and not ngs.shared_available():
        pytest.skip("libngspice not loadable")
    n0 = ngspice_calls()
    with pytest.raises(SpiceError) as exc:
        run_op(NO_SOLUTION, ["v(a)"], engine=engine, failed_dir=tmp_path / "failed")
    _assert_kept(exc.value)
    assert ngspice_calls() == n0 + 3  # first try + 2 retries with gmin/source stepping
    assert "gminsteps" in open(exc.value.deck).read()
    log = open(exc.value.log).read()
    assert "attempt 2" in log and "stepping" in log.lower()
    assert str(tmp_path / "failed") in exc.value.deck


@needs_spice
def test_failures_go_to_the_cache_dir_by_default(tmp_path):
    with pytest.raises(SpiceError) as exc:
        run_op(NO_SOLUTION, ["v(a)"], engine="subprocess", retries=0)
    assert exc.value.deck.startswith(str(tmp_path / "cache" / "failed"))
    _assert_kept(exc.value)


@needs_spice
@pytest.mark.parametrize("engine", ["subprocess", "shared"])
def test_timeout_kills_the_run_and_keeps_files(tmp_path, engine):
    if engine == "shared" and not ngs.shared_available():
        pytest.skip("libngspice not loadable")
    rng = np.random.default_rng(0)
    n = 64 if engine == "subprocess" else 16  # shared: the deck load is not timed
    deck = crossbar_deck(states=rng.uniform(0, 1, (n, n)), read_only=False,
                         stimulus=([0.0, 1e-3], rng.integers(0, 2, (2, n)) * 4.0),
                         tstep=1e-7, tstop=2e-3, tmax=1e-7, r_word=1.0, r_bit=1.0)
    with pytest.raises(SpiceError, match="timed out") as exc:
        run_tran(deck, sense_vectors(n), timeout=0.05, engine=engine,
                 failed_dir=tmp_path / "failed")
    _assert_kept(exc.value)
    assert "timeout" in open(exc.value.log).read()
    # the engine is still usable afterwards
    r = run_op(_small_deck(), sense_vectors(3), engine=engine)
    assert r["i(vsense0)"][0] > 0


@needs_spice
def test_unsafe_decks_and_vector_names_are_refused():
    with pytest.raises(UnsafeDeckError):
        run_op("* x\nR1 a 0 1\nV1 a 0 1\n.control\nshell touch /tmp/pwned\n.endc\n.op\n.end\n")
    with pytest.raises(ValueError):
        run_op(_small_deck(), ["i(vsense0) ; shell ls"])
    with pytest.raises(ValueError):
        run_op(_small_deck(), ["v(a)\nshell ls"])
    with pytest.raises(ValueError):  # wrong analysis for the runner
        run_tran(_small_deck(), sense_vectors(3))


@needs_spice
def test_run_without_vectors_returns_all_nodes():
    r = run_op(_small_deck(), None, engine="subprocess")
    assert "v(w0_0)" in r and "i(vsense2)" in r and "v(b3_2)" in r


def test_parse_raw_ascii_binary_and_truncation():
    head = ("Title: t\nDate: x\nPlotname: Transient Analysis\nFlags: real\n"
            "No. Variables: 2\nNo. Points: 2\nVariables:\n\t0\ttime\ttime\n"
            "\t1\ti(vsense0)\tcurrent\n")
    ascii_raw = head + "Values:\n 0\t0.0\n\t1.25e-06\n\n 1\t1e-3\n\t-2.5e-06\n"
    p = parse_raw(ascii_raw.encode())
    np.testing.assert_array_equal(p[0]["vectors"]["time"], [0.0, 1e-3])
    np.testing.assert_array_equal(p[0]["vectors"]["i(vsense0)"], [1.25e-6, -2.5e-6])
    binary = head.encode() + b"Binary:\n" + np.array([0.0, 1.25e-6, 1e-3, -2.5e-6],
                                                     "<f8").tobytes()
    q = parse_raw(binary)
    np.testing.assert_array_equal(q[0]["vectors"]["i(vsense0)"], [1.25e-6, -2.5e-6])
    with pytest.raises(ValueError):
        parse_raw(ascii_raw[:-12].encode())
    with pytest.raises(ValueError):
        parse_raw(binary[:-3])


# ---------------------------------------------------------------------------------------
# session and batching
# ---------------------------------------------------------------------------------------

@needs_spice
def test_session_alter_matches_fresh_decks():
    if not ngs.shared_available():
        pytest.skip("libngspice not loadable")
    rng = np.random.default_rng(7)
    W = rng.uniform(0, 1, (5, 4))
    X = rng.integers(0, 2, (4, 5)) * 0.1
    opts = {"reltol": 1e-12, "vntol": 1e-12, "abstol": 1e-20}
    deck = crossbar_deck(states=W, v_word=X[0], r_word=2.0, r_bit=2.0, options=opts)
    with NgspiceSession(deck) as s:
        assert s.vectors == sense_vectors(4)
        with pytest.raises(ValueError):
            s.set_sources({"vnope": 0.1})
        with pytest.raises(ValueError):
            s.set_sources({"vin0": float("nan")})
        n0 = ngspice_calls()
        got = []
        for x in X:
            s.set_sources({f"vin{i}": x[i] for i in range(5)})
            res = s.op()
            got.append([res[v][0] for v in sense_vectors(4)])
        assert ngspice_calls() == n0 + len(X)
        # while the session is open, auto runs go through the subprocess engine
        ref = [[run_op(crossbar_deck(states=W, v_word=x, r_word=2.0, r_bit=2.0,
                                     options=opts), sense_vectors(4))[v][0]
                for v in sense_vectors(4)] for x in X]
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-20)
    with pytest.raises(RuntimeError):
        s.op()


# ---------------------------------------------------------------------------------------
# cache
# ---------------------------------------------------------------------------------------

@needs_spice
def test_cache_hit_makes_no_ngspice_call_and_corruption_is_recovered(tmp_path):
    cache = SpiceCache(tmp_path / "c")
    deck = _small_deck(3)
    n0 = ngspice_calls()
    a = cached_run_op(deck, sense_vectors(3), cache=cache)
    assert ngspice_calls() == n0 + 1
    b = cached_run_op(deck, sense_vectors(3), cache=cache)
    assert ngspice_calls() == n0 + 1  # hit: no call
    for v in sense_vectors(3):
        np.testing.assert_array_equal(a[v], b[v])
    files = list((tmp_path / "c").rglob("*.npz"))
    assert len(files) == 1
    assert not list((tmp_path / "c").rglob("*.tmp"))  # atomic write left no temp file
    # flip bytes in the stored payload -> detected, deleted, recomputed
    raw = bytearray(files[0].read_bytes())
    for k in range(60, 90):
        raw[k] ^= 0xFF
    files[0].write_bytes(bytes(raw))
    with pytest.warns(RuntimeWarning, match="corrupt"):
        c = cached_run_op(deck, sense_vectors(3), cache=cache)
    assert ngspice_calls() == n0 + 2
    for v in sense_vectors(3):
        np.testing.assert_array_equal(a[v], c[v])
    # truncated entry
    files[0].write_bytes(files[0].read_bytes()[:100])
    with pytest.warns(RuntimeWarning, match="corrupt"):
        d = cached_run_op(deck, sense_vectors(3), cache=cache)
    assert ngspice_calls() == n0 + 3
    np.testing.assert_array_equal(a["i(vsense1)"], d["i(vsense1)"])
    cached_run_op(deck, sense_vectors(3), cache=cache)
    assert ngspice_calls() == n0 + 3
    assert not list((tmp_path / "c").rglob("*.tmp"))


def test_cache_entry_with_a_changed_payload_is_a_miss(tmp_path):
    cache = SpiceCache(tmp_path)
    key = "ab" * 32
    cache.put(key, {"i(vsense0)": np.array([1.0])})
    assert cache.get(key)["i(vsense0)"][0] == 1.0
    raw = cache.path(key).read_bytes()
    # a different, valid payload behind the old checksum
    other = tmp_path / "other"
    SpiceCache(other).put(key, {"i(vsense0)": np.array([2.0])})
    body = SpiceCache(other).path(key).read_bytes()
    cache.path(key).write_bytes(raw[:raw.index(b"\n", 21) + 1] + body[body.index(b"\n", 21) + 1:])
    with pytest.warns(RuntimeWarning, match="corrupt"):
        assert cache.get(key) is None
    assert not cache.path(key).exists()


@needs_spice
def test_cache_key_covers_deck_library_vectors(tmp_path):
    cache = SpiceCache(tmp_path / "c")
    lib = tmp_path / "lib" / "m.lib"
    lib.parent.mkdir()
    lib.write_text(DEFAULT_LIBRARY.read_text())
    W = np.full((2, 2), 0.5)
    deck = crossbar_deck(states=W, v_word=[0.1, 0.1], model_library=lib)
    k1 = cache.key(deck, sense_vectors(2))
    assert cache.key(deck, sense_vectors(2)) == k1
    assert cache.key(deck, sense_vectors(1)) != k1
    assert cache.key(deck.replace("0.1", "0.2"), sense_vectors(2)) != k1
    assert cache.key(deck, sense_vectors(2), analysis="dc") != k1
    lib.write_text(lib.read_text() + "\n* changed\n")
    assert cache.key(deck, sense_vectors(2)) != k1


def test_default_cache_location(monkeypatch, tmp_path):
    monkeypatch.setenv("COSIM_CACHE_DIR", str(tmp_path / "x"))
    assert ngs.default_cache_dir() == tmp_path / "x"
    monkeypatch.delenv("COSIM_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ngs.default_cache_dir() == tmp_path / "xdg" / "cosim" / "spice"
    assert SpiceCache().directory == tmp_path / "xdg" / "cosim" / "spice"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert ngs.default_cache_dir() == tmp_path / "home" / ".cache" / "cosim" / "spice"


# ---------------------------------------------------------------------------------------
# the engine: shared library ownership, environment, state probes
# ---------------------------------------------------------------------------------------

@needs_spice
def test_shared_library_loads_without_environment_or_warnings(tmp_path):
    import subprocess
    import sys
    code = (
        "import os, warnings\n"
        "warnings.simplefilter('error')\n"
        "before = dict(os.environ)\n"
        "from cosim.spice import ngspice as n\n"
        "from cosim.spice.netlist import crossbar_deck, sense_vectors\n"
        "assert n.shared_available(), n.ENGINE\n"
        "deck = crossbar_deck(conductances=[[1e-5]], v_word=[0.1])\n"
        "r = n.run_op(deck, sense_vectors(1), engine='shared')\n"
        "assert dict(os.environ) == before\n"
        "print(repr(float(r['i(vsense0)'][0])))\n")
    env = {k: v for k, v in os.environ.items() if k != "NGSPICE_LIBRARY_PATH"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""                       # no PySpice / version warning
    assert float(proc.stdout) == pytest.approx(1e-6, rel=1e-12)


@needs_spice
def test_session_owns_the_library_until_closed_or_yielded():
    if not ngs.shared_available():
        pytest.skip("libngspice not loadable")
    deck = _small_deck()
    with NgspiceSession(deck) as held:
        with pytest.raises(RuntimeError, match="holds the ngspice shared library"):
            run_op(deck, sense_vectors(3), engine="shared")
        with pytest.raises(RuntimeError):
            NgspiceSession(deck)
        auto = run_op(deck, sense_vectors(3))        # falls back to the subprocess
        assert not held.closed
        np.testing.assert_allclose(held.op()["i(vsense0)"], auto["i(vsense0)"], rtol=1e-12)
    assert held.closed
    yielding = NgspiceSession(deck, yields=True)
    kept = yielding.op()["i(vsense0)"]
    auto = run_op(deck, sense_vectors(3))        # a one-shot run leaves it loaded ...
    assert not yielding.closed
    np.testing.assert_allclose(yielding.op()["i(vsense0)"], kept, rtol=0)
    np.testing.assert_allclose(auto["i(vsense0)"], kept, rtol=1e-12)
    run_op(deck, sense_vectors(3), engine="shared")   # ... one that asks for it takes it
    assert yielding.closed
    with pytest.raises(RuntimeError, match="closed"):
        yielding.op()


@needs_spice
def test_state_probe_of_a_full_cell_reads_the_programmed_state():
    W = np.array([[0.2, 0.7]])
    deck = crossbar_deck(states=W, read_only=False, stimulus=([0.0], np.array([[0.1]])),
                         tstep=1e-7, tstop=1e-6, r_word=1.0, r_bit=1.0)
    r = run_tran(deck, sense_vectors(2) + [state_vector(0, 0), state_vector(0, 1)])
    np.testing.assert_allclose(r[state_vector(0, 1)], 0.7, atol=1e-9)  # read bias: no drift
    np.testing.assert_allclose(r[state_vector(0, 0)], 0.2, atol=1e-9)
