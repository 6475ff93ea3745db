"""Crossbar deck writer: topology against an independent nodal solve, stimuli, safety."""

import re

import numpy as np
import pytest

from cosim.spice.netlist import (DEFAULT_LIBRARY, DEFAULT_PARAMS, check_deck_safe, crossbar_deck,
                                 sense_vectors)
from cosim.devices.memtransistor import Memtransistor
from cosim.spice.ngspice import run_dc, run_op, run_tran

from _spice import needs_spice  # noqa: E402
INJECT = "\n.control\nshell rm -rf /\n.endc\n"


# ---------------------------------------------------------------------------------------
# independent reference: dense nodal analysis of docs/array.md §2, written here
# ---------------------------------------------------------------------------------------

def nodal_reference(G, V, r_word, r_bit):
    """Column currents of a resistive crossbar by dense nodal analysis (loops + solve).

    Word node (i, j) and bit node (i, j) are unknowns unless the corresponding wire
    resistance is 0, in which case word nodes equal V_i and bit nodes equal 0.
    """
    R, C = G.shape
    idx = {}
    if r_word > 0:
        for i in range(R):
            for j in range(C):
                idx[("w", i, j)] = len(idx)
    if r_bit > 0:
        for i in range(R):
            for j in range(C):
                idx[("b", i, j)] = len(idx)
    n = len(idx)
    A = np.zeros((n, n))
    rhs = np.zeros(n)

    def known(node):
        return V[node[1]] if node[0] == "w" else 0.0

    def stamp(a, b, g):  # conductance g between nodes a and b (node = key or "gnd"/V)
        for x, y in ((a, b), (b, a)):
            if x in idx:
                A[idx[x], idx[x]] += g
                if y in idx:
                    A[idx[x], idx[y]] -= g
                else:
                    rhs[idx[x]] += g * y_value(y)

    def y_value(y):
        if isinstance(y, tuple) and y[0] in ("w", "b"):
            return known(y)
        if isinstance(y, tuple) and y[0] == "src":
            return V[y[1]]
        return 0.0  # sense node / ground

    for i in range(R):
        if r_word > 0:
            stamp(("src", i), ("w", i, 0), 1.0 / r_word)
            for j in range(1, C):
                stamp(("w", i, j - 1), ("w", i, j), 1.0 / r_word)
        for j in range(C):
            if G[i, j] > 0:
                stamp(("w", i, j), ("b", i, j), G[i, j])
    if r_bit > 0:
        for j in range(C):
            for i in range(R - 1):
                stamp(("b", i, j), ("b", i + 1, j), 1.0 / r_bit)
            stamp(("b", R - 1, j), ("sense", j), 1.0 / r_bit)
    x = np.linalg.solve(A, rhs) if n else np.zeros(0)

    def volt(node):
        return x[idx[node]] if node in idx else known(node)

    out = np.zeros(C)
    for j in range(C):
        if r_bit > 0:
            out[j] = volt(("b", R - 1, j)) / r_bit
        else:
            out[j] = sum(G[i, j] * (volt(("w", i, j)) - 0.0) for i in range(R))
    return out


def _random_case(seed, R=4, C=3):
    rng = np.random.default_rng(seed)
    return rng.uniform(1e-6, 1e-4, (R, C)), rng.uniform(0.0, 0.2, R)


def test_reference_solver_sanity():
    G, V = _random_case(0)
    np.testing.assert_allclose(nodal_reference(G, V, 0.0, 0.0), V @ G, rtol=1e-14)
    # IR drop only reduces the currents (positive V)
    assert np.all(nodal_reference(G, V, 10.0, 10.0) < V @ G)


@needs_spice
@pytest.mark.parametrize("r_word,r_bit", [(1.0, 1.0), (10.0, 10.0), (0.0, 0.0),
                                          (0.0, 10.0), (1.0, 0.0), (1e3, 2e3)])
@pytest.mark.parametrize("engine", ["shared", "subprocess"])
def test_resistor_crossbar_matches_nodal_reference(r_word, r_bit, engine):
    G, V = _random_case(1)
    G[2, 1] = 0.0  # an open cell
    deck = crossbar_deck(conductances=G, v_word=V, r_word=r_word, r_bit=r_bit)
    r = run_op(deck, sense_vectors(3) + [f"i(vin{i})" for i in range(4)], engine=engine)
    I_sp = np.array([r[f"i(vsense{j})"][0] for j in range(3)])
    I_ref = nodal_reference(G, V, r_word, r_bit)
    np.testing.assert_allclose(I_sp, I_ref, rtol=1e-9, atol=0)
    assert np.all(I_sp > 0)  # sign convention: into the sense node
    # KCL: what the word sources deliver is what the sense nodes collect
    I_in = -sum(r[f"i(vin{i})"][0] for i in range(4))
    assert abs(I_in - I_sp.sum()) <= 1e-12 * I_sp.sum()
    if r_word == 0 and r_bit == 0:
        np.testing.assert_allclose(I_sp, V @ G, rtol=1e-12)


@needs_spice
def test_ir_drop_is_there_and_grows_with_wire_resistance():
    G, V = _random_case(2, 8, 8)
    ideal = V @ G
    out = []
    for r in (0.0, 1.0, 10.0, 100.0):
        deck = crossbar_deck(conductances=G, v_word=V, r_word=r, r_bit=r)
        out.append(np.array([run_op(deck, sense_vectors(8))[v][0] for v in sense_vectors(8)]))
    np.testing.assert_allclose(out[0], ideal, rtol=1e-12)
    assert np.all(out[1] < out[0]) and np.all(out[2] < out[1]) and np.all(out[3] < out[2])


def _sense(result, C):
    return np.stack([result[v] for v in sense_vectors(C)], axis=-1)


@needs_spice
@pytest.mark.parametrize("cell", ["resistor", "memtransistor"])
def test_pwl_tran_and_dc_batch_replay_the_op_results(cell):
    rng = np.random.default_rng(3)
    R, C, K = 5, 4, 6
    X = rng.integers(0, 2, (K, R)).astype(float) * 0.1
    X[0] = 0.0
    X[3] = 0.1
    if cell == "resistor":
        cells = dict(conductances=rng.uniform(1e-6, 1e-4, (R, C)))
    else:
        cells = dict(states=rng.uniform(0, 1, (R, C)))
    opts = {"reltol": 1e-12, "abstol": 1e-20, "vntol": 1e-12}
    ops = []
    for k in range(K):
        deck = crossbar_deck(**cells, v_word=X[k], r_word=2.0, r_bit=3.0, options=opts)
        ops.append(_sense(run_op(deck, sense_vectors(C)), C)[0])
    ops = np.array(ops)
    assert np.all(ops[0] == 0) or np.max(np.abs(ops[0])) < 1e-15
    # .tran with PWL rectangular steps: sample at the end of each plateau
    period = 1e-3
    times = np.arange(K) * period
    deck = crossbar_deck(**cells, stimulus=(times, X), tstep=period / 10,
                         tstop=K * period, rise_time=1e-6, r_word=2.0, r_bit=3.0,
                         options=opts)
    tr = run_tran(deck, sense_vectors(C))
    t = tr["time"]
    I = _sense(tr, C)
    for k in range(K):
        t_end = times[k + 1] if k + 1 < K else K * period
        at = np.flatnonzero(np.isclose(t, t_end, rtol=0, atol=1e-12))
        assert at.size, f"no time point at the end of plateau {k}"
        scale = np.max(np.abs(ops[k])) + 1e-30
        assert np.max(np.abs(I[at[0]] - ops[k])) <= 1e-9 * scale
    # .dc batch: one analysis, sweep point k == vector k
    deck = crossbar_deck(**cells, batch=X, r_word=2.0, r_bit=3.0, options=opts)
    assert deck.count("\n.dc ") == 1 and ".op" not in deck.split()
    dc = run_dc(deck, sense_vectors(C))
    np.testing.assert_array_equal(dc["v(v-sweep)"], np.arange(K))
    np.testing.assert_allclose(_sense(dc, C), ops, rtol=1e-9, atol=1e-9 * np.abs(ops).max())


@needs_spice
def test_memtransistor_crossbar_matches_independent_newton_solve():
    """3x2 memtransistor_read array with wire resistance vs scipy fsolve of KCL written
    here (node equations from Memtransistor.current, source-referenced)."""
    from scipy.optimize import fsolve
    rng = np.random.default_rng(4)
    R, C = 3, 2
    W = rng.uniform(0, 1, (R, C))
    V = np.array([0.1, 0.0, 0.2])
    vg = np.array([3.0, 2.5, 3.0])
    rw, rb = 500.0, 800.0  # large wires so that IR drop is visible at 10 uS devices
    m = Memtransistor()

    def cell(vd, vs, i):
        return m.current(vd - vs, vg[i] - vs, W[i] * 1.0)

    def kcl(x):
        w = x[:R * C].reshape(R, C)
        b = x[R * C:].reshape(R, C)
        res_w = np.zeros((R, C))
        res_b = np.zeros((R, C))
        for i in range(R):
            for j in range(C):
                left = V[i] if j == 0 else w[i, j - 1]
                res_w[i, j] += (left - w[i, j]) / rw
                if j + 1 < C:
                    res_w[i, j] += (w[i, j + 1] - w[i, j]) / rw
                idev = m.current(w[i, j] - b[i, j], vg[i] - b[i, j], W[i, j])
                res_w[i, j] -= idev
                res_b[i, j] += idev
                if i > 0:
                    res_b[i, j] += (b[i - 1, j] - b[i, j]) / rb
                below = b[i + 1, j] if i + 1 < R else 0.0
                res_b[i, j] += (below - b[i, j]) / rb
        return np.concatenate([res_w.ravel(), res_b.ravel()]) * 1e6

    x0 = np.concatenate([np.repeat(V, C), np.zeros(R * C)])
    x = fsolve(kcl, x0, xtol=1e-13)
    assert np.max(np.abs(kcl(x))) < 1e-9
    b = x[R * C:].reshape(R, C)
    I_ref = b[R - 1] / rb
    deck = crossbar_deck(states=W, v_word=V, v_gate=vg, r_word=rw, r_bit=rb,
                         options={"reltol": 1e-12, "abstol": 1e-20, "vntol": 1e-12})
    r = run_op(deck, sense_vectors(C) + [f"v(b{R - 1}_{j})" for j in range(C)])
    I_sp = np.array([r[v][0] for v in sense_vectors(C)])
    np.testing.assert_allclose(I_sp, I_ref, rtol=1e-8)
    # IR drop really matters here (the check is not trivially the r = 0 result)
    I0 = np.array([sum(m.current(V[i], vg[i], W[i, j]) for i in range(R)) for j in range(C)])
    assert np.max(np.abs(I0 - I_ref) / I_ref) > 1e-3


@needs_spice
def test_memtransistor_zero_wire_is_sum_of_device_currents_and_per_cell_params():
    rng = np.random.default_rng(5)
    R, C = 3, 3
    W = rng.uniform(0, 1, (R, C))
    g_max = rng.uniform(5e-6, 2e-5, (R, C))
    V = np.array([0.1, 0.05, 0.2])
    for smap in ("linear", "exponential"):
        deck = crossbar_deck(states=W, v_word=V, device_params={"g_max": g_max, "v_th": 0.4},
                             state_map=smap, options={"reltol": 1e-12, "vntol": 1e-12,
                                                      "abstol": 1e-20})
        # the card once (v_th), what varies on every instance (g_max)
        assert re.search(r"^\.param v_th = 0\.4\b", deck, re.M)
        assert len(re.findall(r"^X\d+_\d+ .* cell w0=\S+ g_max=\S+$", deck, re.M)) == R * C
        r = run_op(deck, sense_vectors(C))
        m = Memtransistor(g_max=g_max, v_th=0.4, state_map=smap)
        ref = m.current(V[:, None], 3.0, W).sum(axis=0)  # default gate = v_gref = 3 V
        I_sp = np.array([r[v][0] for v in sense_vectors(C)])
        np.testing.assert_allclose(I_sp, ref, rtol=1e-10)


# ---------------------------------------------------------------------------------------
# deck text: names, numbers, header, safety
# ---------------------------------------------------------------------------------------

def test_numbers_round_trip_and_node_names():
    rng = np.random.default_rng(6)
    G = rng.uniform(1e-6, 1e-4, (3, 2))
    V = rng.uniform(0, 0.2, 3)
    deck = crossbar_deck(conductances=G, v_word=V, r_word=1.0 / 3.0, r_bit=0.0)
    for i in range(3):
        m = re.search(rf"^Vin{i} in{i} 0 DC (\S+)$", deck, re.M)
        assert float(m.group(1)) == V[i]
        for j in range(2):
            m = re.search(rf"^R{i}_{j} w{i}_{j} b{i}_{j} (\S+)$", deck, re.M)
            assert float(m.group(1)) == 1.0 / G[i, j]
    assert re.search(r"^Rw0_1 w0_0 w0_1 (\S+)$", deck, re.M).group(1) == "{rw}"
    assert re.search(r"^\.param rw = (\S+) ", deck, re.M).group(1) == repr(1.0 / 3.0)
    # r_bit = 0: 0 V sources, never a 0-Ohm resistor
    assert re.search(r"^Vb2_1 b2_1 s1 DC 0$", deck, re.M)
    assert not re.search(r"^R\S+ \S+ \S+ 0(\.0)?$", deck, re.M)
    assert re.search(r"^Vsense1 s1 0 DC 0$", deck, re.M)
    assert deck.rstrip().endswith(".end") and "\n.op\n" in deck
    assert "3 word lines (rows) x 2 bit lines" in deck and "i(vsense<j>)" in deck
    check_deck_safe(deck)


def test_memtransistor_deck_structure():
    W = np.array([[0.0, 1.0], [0.25, 0.5]])
    deck = crossbar_deck(states=W, v_word=[0.1, 0.0], header={"weights": "W_in", "scale": 2.5})
    assert f'.include "{DEFAULT_LIBRARY}"' in deck
    assert "\n.options klu\n" in deck
    # gates on (3 V): the cheap gate-on read cell
    assert re.search(r"^X1_0 w1_0 g1 b1_0 cell w0=0.25$", deck, re.M)
    # ... which takes the DC gate voltage as a parameter, the same one its gate line holds
    assert re.search(r"^X1 d g s memtransistor_read_on .*w0=\{w0\} v_g=\{vgate\}$", deck, re.M)
    assert re.search(r"^\.param vgate = 3.0\b", deck, re.M)  # default gate = v_gref
    assert re.search(r"^Vg1 g1 0 DC \{vgate\}$", deck, re.M)
    off = crossbar_deck(states=W, v_word=[0.1, 0.0], v_gate=[3.0, -2.0])
    assert re.search(r"^X1 d g s memtransistor_read .*w0=\{w0\}$", off, re.M)
    assert re.search(r"^Vg1 g1 0 DC -2.0$", off, re.M)
    rows = crossbar_deck(states=W, v_word=[0.1, 0.0], v_gate=[3.0, 2.5])
    assert re.search(r"^X1_0 w1_0 g1 b1_0 cell w0=0.25 vg=\{vgate1\}$", rows, re.M)
    assert re.search(r"^\.param vgate1 = 2.5$", rows, re.M)
    assert re.search(r"^Vg1 g1 0 DC \{vgate1\}$", rows, re.M)
    assert "* weights: W_in" in deck and "* scale: 2.5" in deck
    full = crossbar_deck(states=W, v_word=[0.1, 0.0], read_only=False, klu=False,
                         v_gate=[3.0, -2.0])
    assert re.search(r"^X0_1 w0_1 g0 b0_1 cell w0=1.0$", full, re.M)
    assert re.search(r"^X1 d g s memtransistor .*w0=\{w0\}$", full, re.M)
    # the device card once, with every parameter, in the default card's values
    for name, value in DEFAULT_PARAMS.items():
        assert len(re.findall(rf"^\.param {name} = {re.escape(repr(value))}\b", full,
                              re.M)) == 1, name
    assert re.search(r"^Vg1 g1 0 DC -2.0$", full, re.M)
    assert ".options klu" not in full


@pytest.mark.parametrize("bad", [
    {"a": INJECT}, {"a\n.control": 1}, {".control": "x"}, {"a": "x\rshell"},
    {"a": float("nan")}, {"a": float("inf")}, {"": 1}, {"1abc": 1}, {"k": [1, 2]},
])
def test_header_injection_rejected(bad):
    with pytest.raises((ValueError, TypeError)):
        crossbar_deck(conductances=np.ones((2, 2)) * 1e-5, v_word=[0.1, 0.1], header=bad)


def test_header_special_characters_stay_in_comments():
    nasty = "a; b 'quoted' \"double\" .control shell rm -rf / .endc *# x"
    deck = crossbar_deck(conductances=np.ones((2, 2)) * 1e-5, v_word=[0.1, 0.1],
                         header={"note": nasty, "long": "x" * 5000})
    check_deck_safe(deck)
    for line in deck.splitlines():
        low = line.strip().lower()
        assert not low.startswith((".control", ".endc", "shell", "*#"))
        if "rm -rf" in line or "quoted" in line:
            assert line.startswith("* note: ")
    long_line = next(ln for ln in deck.splitlines() if ln.startswith("* long: "))
    assert len(long_line) < 260


@pytest.mark.parametrize("path", ['/tmp/a"b.lib', "/tmp/a\nshell rm.lib", "/tmp/a'b.lib",
                                  "/tmp/a\x00b.lib"])
def test_library_path_injection_rejected(path):
    with pytest.raises(ValueError):
        crossbar_deck(states=np.full((2, 2), 0.5), v_word=[0.1, 0.1], model_library=path)


def test_missing_library_rejected(tmp_path):
    with pytest.raises(FileNotFoundError):
        crossbar_deck(states=np.full((2, 2), 0.5), v_word=[0.1, 0.1],
                      model_library=tmp_path / "nope.lib")


def test_library_path_with_spaces_is_quoted(tmp_path):
    lib = tmp_path / "dir with space" / "m.lib"
    lib.parent.mkdir()
    lib.write_text(DEFAULT_LIBRARY.read_text())
    deck = crossbar_deck(states=np.full((1, 1), 0.5), v_word=[0.1], model_library=lib)
    assert f'.include "{lib}"' in deck


def test_other_injection_points_rejected():
    G = np.ones((2, 2)) * 1e-5
    with pytest.raises(ValueError):
        crossbar_deck(conductances=G, v_word=[0.1, 0.1], title="x" + INJECT)
    with pytest.raises(ValueError):
        crossbar_deck(conductances=G, v_word=[0.1, 0.1], options={"reltol\n.control": 1e-6})
    with pytest.raises(ValueError):
        crossbar_deck(conductances=G, v_word=[0.1, 0.1], options={"reltol": float("nan")})
    with pytest.raises(ValueError):
        crossbar_deck(states=np.full((2, 2), 0.5), v_word=[0.1, 0.1],
                      device_params={"g_max\n.control": 1e-5})
    with pytest.raises(ValueError):
        crossbar_deck(states=np.full((2, 2), 0.5), v_word=[0.1, 0.1], state_map="exp;shell")


@pytest.mark.parametrize("kw", [
    dict(conductances=[[1e-5, np.nan], [1e-5, 1e-5]], v_word=[0.1, 0.1]),
    dict(conductances=[[1e-5, 1e-5], [1e-5, 1e-5]], v_word=[0.1, np.inf]),
    dict(conductances=[[1e-5, 1e-5], [1e-5, 1e-5]], v_word=[0.1, 0.1], r_word=np.nan),
    dict(conductances=[[1e-5, 1e-5], [1e-5, 1e-5]], v_word=[0.1, 0.1], r_bit=-1.0),
    dict(conductances=[[-1e-5, 1e-5], [1e-5, 1e-5]], v_word=[0.1, 0.1]),
    dict(states=[[0.5, 1.5], [0.5, 0.5]], v_word=[0.1, 0.1]),
    dict(states=[[0.5, np.nan], [0.5, 0.5]], v_word=[0.1, 0.1]),
    dict(states=[[0.5, 0.5], [0.5, 0.5]], v_word=[0.1, 0.1], v_gate=[3.0, np.nan]),
    dict(states=[[0.5, 0.5], [0.5, 0.5]], v_word=[0.1, 0.1],
         device_params={"g_max": [[1e-5, np.inf], [1e-5, 1e-5]]}),
    dict(states=[[0.5, 0.5], [0.5, 0.5]], v_word=[0.1, 0.1], device_params={"bogus": 1.0}),
    dict(conductances=[[1e-5, 1e-5], [1e-5, 1e-5]], v_word=[0.1, 0.1],
         options={"reltol": np.nan}),
    dict(conductances=[[1e-5, 1e-5], [1e-5, 1e-5]], stimulus=([0.0, np.nan], [[0, 0], [1, 1]]),
         tstep=1e-4, tstop=1e-3),
    dict(conductances=[[1e-5, 1e-5], [1e-5, 1e-5]], stimulus=([0.0, 1e-3], [[0, 0], [1, 1]]),
         tstep=1e-4, tstop=np.inf),
    dict(conductances=[[1e-5, 1e-5], [1e-5, 1e-5]], batch=[[0.1, np.nan]]),
    dict(conductances=[[1e-5, 1e-5], [1e-5, 1e-5]], v_word=[0.1, 0.1, 0.1]),
    dict(conductances=[[1e-5, 1e-5], [1e-5, 1e-5]]),
    dict(conductances=[[1e-5, 1e-5], [1e-5, 1e-5]], v_word=[0.1, 0.1], batch=[[0.1, 0.1]]),
])
def test_bad_numbers_and_shapes_rejected(kw):
    with pytest.raises(ValueError):
        crossbar_deck(**kw)


def test_check_deck_safe_flags_command_lines():
    for bad in ("R1 a 0 1\n.control\nshell ls\n.endc\n", "R1 a 0 1\n  .CONTROL\n",
                "*# shell ls\n", "shell rm -rf /\n", "x\n.endc\n"):
        with pytest.raises(ValueError):
            check_deck_safe(bad)
    check_deck_safe("* comment .control inside is fine\nR1 a 0 1\n.op\n.end\n")
    check_deck_safe(".control\n", allowed=(".control",))


@needs_spice
@pytest.mark.parametrize("r, v_gate", [(0.0, None), (5.0, None),
                                       (5.0, [3.0, 2.5, 3.0, 1.5, 3.0, 2.0])])
def test_gate_on_read_cell_equals_the_exact_read_cell(r, v_gate):
    """memtransistor_read_on (gate voltage a parameter, folded constants) against
    memtransistor_read (gate read as V(g) of the gate line), both solved by ngspice."""
    rng = np.random.default_rng(3)
    W = rng.random((6, 5))
    batch = 0.1 * (rng.random((4, 6)) < 0.6)
    fast = crossbar_deck(states=W, batch=batch, r_word=r, r_bit=r, v_gate=v_gate,
                         options={"reltol": 1e-12, "abstol": 1e-20, "vntol": 1e-12})
    assert " memtransistor_read_on " in fast
    exact = re.sub(r" v_g=\{\w+\}", "", fast.replace(" memtransistor_read_on ",
                                                     " memtransistor_read "))
    assert "v_g=" not in exact
    names = sense_vectors(5)
    a, b = run_dc(fast, names), run_dc(exact, names)
    got = np.stack([a[n] for n in names], 1)
    want = np.stack([b[n] for n in names], 1)
    assert np.abs(want).max() > 1e-8
    assert np.abs(got - want).max() <= 1e-12 * np.abs(want).max()
