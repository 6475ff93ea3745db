"""Tests of cosim.crossbar.nodal against independent truth.

References used here never call the solver under test: closed forms derived by hand,
a dense nodal matrix built with explicit loops and solved by numpy, and stored badcrossbar
results (tests/fixtures/badcrossbar, made by benchmarks/make_badcrossbar_fixtures.py).
"""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from cosim.crossbar import nodal
from cosim.errors import SolverError

FIXTURES = sorted((pathlib.Path(__file__).parent / "fixtures" / "badcrossbar").glob("*.npz"))
EPS_TOL = 1e-12


def rel_err(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.abs(a - b).max() / np.abs(b).max()


def kcl_ok(sol):
    """The solver's own acceptance rule: residual within tol or its rounding floor."""
    return sol.residual <= max(EPS_TOL, sol.residual_floor)


# ----------------------------------------------------------------------------- references

def dense_reference(G, V, r_word, r_bit):
    """Nodal analysis with explicit loops and np.linalg.solve; returns (I, w, b)."""
    R, C = G.shape
    # node ids: ("w", i, j), ("b", i, j); known voltages for shorted nodes and terminals
    known = {}
    unknown = []
    for i in range(R):
        for j in range(C):
            if r_word == 0:
                known[("w", i, j)] = V[i]
            else:
                unknown.append(("w", i, j))
            if r_bit == 0:
                known[("b", i, j)] = 0.0
            else:
                unknown.append(("b", i, j))
    for i in range(R):
        known[("src", i)] = V[i]
    known["gnd"] = 0.0
    branches = []                                   # (node a, node b, conductance)
    for i in range(R):
        for j in range(C):
            branches.append((("w", i, j), ("b", i, j), G[i, j]))
            if r_word > 0:
                left = ("src", i) if j == 0 else ("w", i, j - 1)
                branches.append((left, ("w", i, j), 1.0 / r_word))
            if r_bit > 0:
                below = "gnd" if i == R - 1 else ("b", i + 1, j)
                branches.append((("b", i, j), below, 1.0 / r_bit))
    pos = {node: k for k, node in enumerate(unknown)}
    n = len(unknown)
    A = np.zeros((n, n))
    rhs = np.zeros(n)
    for a, b, g in branches:
        for x, y in ((a, b), (b, a)):
            if x in pos:
                A[pos[x], pos[x]] += g
                if y in pos:
                    A[pos[x], pos[y]] -= g
                else:
                    rhs[pos[x]] += g * known[y]
    x = np.linalg.solve(A, rhs) if n else np.zeros(0)
    volt = dict(known)
    volt.update({node: x[k] for node, k in pos.items()})
    w = np.array([[volt[("w", i, j)] for j in range(C)] for i in range(R)])
    b = np.array([[volt[("b", i, j)] for j in range(C)] for i in range(R)])
    if r_bit > 0:
        I = b[R - 1, :] / r_bit
    else:
        I = np.array([sum(G[i, j] * w[i, j] for i in range(R)) for j in range(C)])
    return I, w, b


def word_ladder(g, V, r_word, r_bit):
    """1 x N array: a ladder of branches (1/g_j + r_bit) to ground along the word line."""
    N = len(g)
    branch = [1.0 / gj + r_bit for gj in g]
    Z = [0.0] * N                                   # impedance seen from w(j) looking right
    Z[N - 1] = branch[N - 1]
    for j in range(N - 2, -1, -1):
        Z[j] = 1.0 / (1.0 / branch[j] + 1.0 / (r_word + Z[j + 1]))
    I_in = V / (r_word + Z[0])
    v = V - r_word * I_in
    out = []
    for j in range(N):
        out.append(v / branch[j])
        if j < N - 1:
            forward = v / (r_word + Z[j + 1])
            v = v - r_word * forward
    return np.array(out)


def bit_ladder(g, V, r_word, r_bit):
    """N x 1 array: Thevenin reduction down the bit line, one source branch per row."""
    E, Z = V[0], r_word + 1.0 / g[0]
    for i in range(1, len(g)):
        Zi = r_word + 1.0 / g[i]
        Za = Z + r_bit
        Z = 1.0 / (1.0 / Za + 1.0 / Zi)
        E = Z * (E / Za + V[i] / Zi)
    return E / (Z + r_bit)


def random_case(R, C, seed, g=(1e-6, 1e-4), v=(0.0, 0.2), batch=None):
    rng = np.random.default_rng(seed)
    G = rng.uniform(*g, size=(R, C))
    V = rng.uniform(*v, size=(R,) if batch is None else (batch, R))
    return G, V


# ----------------------------------------------------------------------------- closed forms

@pytest.mark.parametrize("method", ["cg", "direct"])
@pytest.mark.parametrize("r_word,r_bit", [(1.0, 10.0), (0.0, 3.0), (2.0, 0.0), (0.0, 0.0)])
def test_single_cell_closed_form(method, r_word, r_bit):
    G = np.array([[3e-4]])
    V = np.array([0.15])
    sol = nodal.solve(G, V, r_word, r_bit, method=method)
    expected = 0.15 / (r_word + 1.0 / 3e-4 + r_bit)
    assert sol.currents.shape == (1,)
    assert abs(sol.currents[0] - expected) <= 1e-14 * expected


@pytest.mark.parametrize("r_word,r_bit", [(1.0, 1.0), (10.0, 0.5), (50.0, 0.0)])
def test_word_line_ladder(r_word, r_bit):
    g = np.random.default_rng(1).uniform(1e-4, 1e-2, size=9)
    sol = nodal.solve(g[None, :], [0.2], r_word, r_bit)
    assert rel_err(sol.currents, word_ladder(g, 0.2, r_word, r_bit)) <= 1e-12


@pytest.mark.parametrize("r_word,r_bit", [(1.0, 1.0), (0.5, 10.0), (0.0, 50.0)])
def test_bit_line_ladder(r_word, r_bit):
    rng = np.random.default_rng(2)
    g = rng.uniform(1e-4, 1e-2, size=11)
    V = rng.uniform(-0.2, 0.3, size=11)
    sol = nodal.solve(g[:, None], V, r_word, r_bit)
    expected = bit_ladder(g, V, r_word, r_bit)
    assert abs(sol.currents[0] - expected) <= 1e-12 * abs(expected)


# ----------------------------------------------------------------------------- shorted lines

def test_zero_resistance_is_exact_matmul():
    G, V = random_case(7, 5, 3, batch=4)
    sol = nodal.solve(G, V, 0.0, 0)
    # I = V @ G (no wires); compared to 16 ulps, not bitwise: the library may call another
    # BLAS kernel (gemm for a batch, gemv for one vector) with another summation order
    np.testing.assert_allclose(sol.currents, V @ G, rtol=16 * np.finfo(float).eps, atol=0)
    np.testing.assert_allclose(nodal.solve(G, V[1], 0, 0).currents, V[1] @ G,
                               rtol=16 * np.finfo(float).eps, atol=0)
    np.testing.assert_array_equal(sol.word_voltages, np.broadcast_to(V[:, :, None], (4, 7, 5)))
    np.testing.assert_array_equal(sol.bit_voltages, 0.0)
    np.testing.assert_array_equal(nodal.LinearArray(G, 0, 0).transfer_matrix(), G)


@pytest.mark.parametrize("r_word,r_bit", [(0.0, 4.0), (4.0, 0.0)])
def test_one_line_shorted(r_word, r_bit):
    G, V = random_case(6, 5, 4, g=(1e-4, 1e-2), batch=2)
    sol = nodal.solve(G, V, r_word, r_bit)
    for k in range(2):
        I, w, b = dense_reference(G, V[k], r_word, r_bit)
        assert rel_err(sol.currents[k], I) <= 1e-12
        assert np.abs(sol.word_voltages[k] - w).max() <= 1e-13
        assert np.abs(sol.bit_voltages[k] - b).max() <= 1e-13
    if r_word == 0:
        np.testing.assert_array_equal(sol.word_voltages, np.broadcast_to(V[:, :, None], (2, 6, 5)))
    else:
        np.testing.assert_array_equal(sol.bit_voltages, 0.0)
    tiny = nodal.solve(G, V, max(r_word, 1e-9), max(r_bit, 1e-9), method="direct")
    assert rel_err(sol.currents, tiny.currents) <= 1e-6


@pytest.mark.parametrize("method", ["cg", "direct"])
@pytest.mark.parametrize("R,C,r_word,r_bit", [(5, 4, 1.0, 10.0), (3, 7, 10.0, 2.0), (6, 6, 0.5, 0.5)])
def test_against_dense_loops(method, R, C, r_word, r_bit):
    G, V = random_case(R, C, R * C, g=(1e-5, 1e-3), v=(-0.2, 0.2))
    sol = nodal.solve(G, V, r_word, r_bit, method=method)
    I, w, b = dense_reference(G, V, r_word, r_bit)
    assert rel_err(sol.currents, I) <= 1e-12
    assert np.abs(sol.word_voltages - w).max() <= 1e-14 + 1e-12 * np.abs(w).max()
    assert np.abs(sol.bit_voltages - b).max() <= 1e-14 + 1e-12 * np.abs(b).max()


# ----------------------------------------------------------------------------- KCL

@pytest.mark.parametrize("method", ["cg", "direct"])
@pytest.mark.parametrize("r_word,r_bit", [(1.0, 1.0), (10.0, 10.0), (3.0, 0.5), (0.0, 2.0), (2.0, 0.0)])
def test_kcl_every_node_and_conservation(method, r_word, r_bit):
    G, V = random_case(48, 40, 5, batch=3)
    sol = nodal.solve(G, V, r_word, r_bit, method=method)
    F = nodal.kcl_residual(G, V, r_word, r_bit, sol.word_voltages, sol.bit_voltages,
                           relative=True)
    assert F.shape == (3, 2, 48, 40)
    assert np.abs(F).max() <= 1e-12          # well above the rounding floor for this array
    assert sol.residual <= 1e-12
    if r_word > 0:
        source = (V - sol.word_voltages[:, :, 0]) / r_word
    else:
        source = (G * (V[:, :, None] - sol.bit_voltages)).sum(axis=2)
    assert rel_err(source.sum(axis=1), sol.currents.sum(axis=1)) <= 1e-12


def test_kcl_residual_detects_wrong_voltages():
    G, V = random_case(8, 6, 6)
    sol = nodal.solve(G, V, 1.0, 1.0)
    w = sol.word_voltages.copy()
    w[3, 2] += 1e-9
    F = nodal.kcl_residual(G, V, 1.0, 1.0, w, sol.bit_voltages, relative=True)
    assert np.abs(F).max() > 1e-6
    assert np.abs(F[0, 3, 2]) > 1e-6 and np.abs(F[1, 3, 2]) > 0
    # a shorted word line must sit exactly at its source voltage
    F0 = nodal.kcl_residual(G, V, 0.0, 1.0, w, sol.bit_voltages)
    assert np.isinf(F0[0]).all()


def test_small_array_residual_floor():
    """4x3 with 1 ohm lines and uS devices: 1e-12 is at the double-precision floor."""
    G, V = random_case(4, 3, 7)
    for method in ("cg", "direct"):
        sol = nodal.solve(G, V, 1.0, 10.0, method=method)
        assert kcl_ok(sol)
        assert sol.residual_floor < 1e-10


# ----------------------------------------------------------------------------- badcrossbar

@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
@pytest.mark.parametrize("method", ["cg", "direct", "newton"])
def test_badcrossbar_fixture(path, method):
    d = np.load(path)
    G, V, r_word, r_bit = d["G"], d["V"], float(d["r_word"]), float(d["r_bit"])
    if method == "newton":
        def cell(vw, vb):
            return G * (vw - vb), G, -G
        sol = nodal.solve_nonlinear(cell, V, r_word, r_bit, G.shape)
    else:
        sol = nodal.solve(G, V, r_word, r_bit, method=method)
    assert sol.currents.shape == d["currents"].shape
    assert rel_err(sol.currents, d["currents"]) <= 1e-9
    assert rel_err(sol.word_voltages, d["word_voltages"]) <= 1e-9
    assert np.abs(sol.bit_voltages - d["bit_voltages"]).max() <= 1e-9 * np.abs(d["bit_voltages"]).max()


def test_fixtures_present():
    assert len(FIXTURES) >= 3


# ----------------------------------------------------------------------------- methods agree

@pytest.mark.parametrize("r", [1.0, 10.0, 100.0])
def test_cg_equals_direct_64(r):
    G, V = random_case(64, 64, 8, batch=2)
    a = nodal.solve(G, V, r, r, method="cg")
    b = nodal.solve(G, V, r, r, method="direct")
    assert a.method == "cg" and b.method == "direct"
    assert rel_err(a.currents, b.currents) <= 1e-12
    assert a.residual <= 1e-12 and b.residual <= 1e-12


def test_batch_equals_single():
    G, V = random_case(10, 9, 9, batch=20)           # > cg_max_batch: the factorised path
    arr = nodal.LinearArray(G, 2.0, 3.0)
    batch = arr.solve(V)
    assert batch.currents.shape == (20, 9) and batch.word_voltages.shape == (20, 10, 9)
    for k in (0, 7, 19):
        assert rel_err(batch.currents[k], nodal.solve(G, V[k], 2.0, 3.0).currents) <= 1e-12


# ----------------------------------------------------------------------------- transfer matrix

@pytest.mark.parametrize("R,C,r_word,r_bit", [(12, 9, 1.0, 5.0), (9, 12, 10.0, 1.0),
                                              (10, 10, 0.0, 2.0), (10, 10, 2.0, 0.0),
                                              (8, 8, 0.0, 0.0)])
def test_transfer_matrix(R, C, r_word, r_bit):
    G, _ = random_case(R, C, 10, g=(1e-5, 1e-3))
    V = np.random.default_rng(11).uniform(-0.3, 0.3, size=(5, R))
    arr = nodal.LinearArray(G, r_word, r_bit)
    M = arr.transfer_matrix()
    assert M.shape == (R, C)
    assert arr.transfer_matrix() is M and not M.flags.writeable
    ref = np.stack([dense_reference(G, v, r_word, r_bit)[0] for v in V])
    assert rel_err(V @ M, ref) <= 1e-12
    assert rel_err(V @ M, arr.solve(V).currents) <= 1e-12



def _direct_transfer(G, r_word, r_bit):
    """Transfer matrix from the sparse factorisation: one direct solve per unit input."""
    return nodal.LinearArray(G, r_word, r_bit).solve(np.eye(G.shape[0]),
                                                     method="direct").currents


def _refined_transfer(G, r):
    """Transfer matrix to ~long-double accuracy: explicit-loop dense nodal matrix (as in
    dense_reference), numpy LU in double, iterative refinement with residuals in long double."""
    R, C = G.shape
    GL = G.astype(np.longdouble)
    g = np.longdouble(1) / np.longdouble(r)
    w = lambda i, j: i * C + j                      # noqa: E731
    b = lambda i, j: R * C + i * C + j              # noqa: E731
    n = 2 * R * C
    A = np.zeros((n, n), dtype=np.longdouble)

    def branch(x, y, c):
        A[x, x] += c
        if y is not None:
            A[y, y] += c
            A[x, y] -= c
            A[y, x] -= c
    rhs = np.zeros((n, R), dtype=np.longdouble)
    for i in range(R):
        for j in range(C):
            branch(w(i, j), b(i, j), GL[i, j])
            branch(w(i, j), w(i, j - 1) if j else None, g)     # source segment: V_i known
            branch(b(i, j), b(i + 1, j) if i < R - 1 else None, g)
        rhs[w(i, 0), i] = g
    Ad = np.asarray(A, dtype=float)
    X = np.zeros((n, R), dtype=np.longdouble)
    for _ in range(4):
        X += np.linalg.solve(Ad, np.asarray(rhs - A @ X, dtype=float))
    return np.asarray(g * X[[b(R - 1, j) for j in range(C)]].T, dtype=float)


@pytest.mark.parametrize("r", [1.0, 10.0, 100.0])
@pytest.mark.parametrize("R,C", [(16, 40), (40, 16), (23, 23), (1, 9), (9, 1), (64, 200),
                                 (100, 20)])
def test_transfer_matrix_equals_direct_factorisation(R, C, r):
    G, _ = random_case(R, C, 12, g=(1e-7, 1e-5))
    arr = nodal.LinearArray(G, r, r)
    M = arr.transfer_matrix()
    assert M.shape == (R, C) and arr.transfer_matrix() is M and not M.flags.writeable
    assert rel_err(M, _direct_transfer(G, r, r)) <= 1e-12


@pytest.mark.skipif(np.finfo(np.longdouble).eps > 1e-18, reason="needs 80-bit long double")
@pytest.mark.parametrize("r", [1.0, 10.0, 100.0])
@pytest.mark.parametrize("R,C", [(6, 14), (14, 6)])
def test_transfer_matrix_near_exact(R, C, r):
    """Against a long-double-refined reference the transfer matrix is exact to ~ulps."""
    G, _ = random_case(R, C, 13, g=(1e-7, 1e-5))
    ref = _refined_transfer(G, r)
    assert rel_err(nodal.LinearArray(G, r, r).transfer_matrix(), ref) <= 1e-14


def test_transfer_matrix_falls_back_when_blocks_fail(monkeypatch):
    """When the block method gives up, the transfer matrix comes from the factorisation and
    is as accurate.

    The failure is forced (whether the block method gives up on a given array depends on
    the machine's rounding), so the fallback runs on every machine."""
    from cosim.crossbar.nodal import linear
    calls = []

    def fail(*args, **kwargs):
        calls.append(args)
        return None
    monkeypatch.setattr(linear, "transfer_blocks", fail)
    for R, C in ((12, 20), (20, 12)):
        G, _ = random_case(R, C, 14, g=(1e-5, 1e-3))
        M = nodal.LinearArray(G, 2.0, 3.0).transfer_matrix()
        V = np.random.default_rng(3).uniform(-0.2, 0.2, size=(4, R))
        ref = np.stack([dense_reference(G, v, 2.0, 3.0)[0] for v in V])
        assert rel_err(V @ M, ref) <= 1e-12
    assert len(calls) == 2


@pytest.mark.parametrize("R,C,r_word,r_bit,r_driver,r_sense",
                         [(6, 14, 1.0, 1.0, 0.0, 0.0), (14, 6, 10.0, 10.0, 0.0, 0.0),
                          (12, 31, 0.5, 7.0, 0.0, 0.0), (31, 12, 7.0, 0.5, 0.0, 0.0),
                          (9, 20, 2.0, 3.0, 50.0, 20.0), (1, 6, 1.0, 1.0, 0.0, 0.0),
                          (6, 1, 1.0, 1.0, 0.0, 0.0)])
def test_streamed_transfer_matrix_equals_the_circuit(monkeypatch, R, C, r_word, r_bit,
                                                     r_driver, r_sense):
    """Arrays whose marching blocks exceed the memory budget stream the march (forced here
    with a zero budget: real ones are hundreds of rows): the transfer matrix still equals
    the solved circuit, with the periphery, and the source admittance the source currents."""
    from cosim.crossbar.nodal import linear
    monkeypatch.setattr(linear, "BLOCK_MEM", 0)
    G, _ = random_case(R, C, 15, g=(1e-7, 1e-4))
    periphery = dict(r_driver=r_driver, r_sense=r_sense)
    arr = nodal.LinearArray(G, r_word, r_bit, **periphery)
    M = arr.transfer_matrix()
    V = np.random.default_rng(4).uniform(0.0, 0.2, size=(5, R))
    sol = nodal.LinearArray(G, r_word, r_bit, **periphery).solve(V, method="direct")
    assert rel_err(V @ M, sol.currents) <= 1e-12
    if r_driver == r_sense == 0.0:
        assert rel_err(V @ M, np.stack([dense_reference(G, v, r_word, r_bit)[0]
                                        for v in V])) <= 1e-12
    Y = arr.source_admittance()
    if R > C:                   # a readout's admittance needs its own march, over budget
        assert Y is None
    else:
        drawn = (V - sol.word_voltages[:, :, 0]) / (r_word + r_driver)   # first segments
        assert rel_err(V @ Y, drawn) <= 1e-11


@pytest.mark.skipif(np.finfo(np.longdouble).eps > 1e-18, reason="needs 80-bit long double")
@pytest.mark.parametrize("R,C", [(6, 14), (14, 6)])
def test_streamed_transfer_matrix_near_exact(monkeypatch, R, C):
    from cosim.crossbar.nodal import linear
    monkeypatch.setattr(linear, "BLOCK_MEM", 0)
    G, _ = random_case(R, C, 13, g=(1e-7, 1e-5))
    assert rel_err(nodal.LinearArray(G, 1.0, 1.0).transfer_matrix(),
                   _refined_transfer(G, 1.0)) <= 1e-14


def test_streamed_transfer_matrix_is_checked_on_a_probe(monkeypatch):
    """A streamed matrix that disagrees with an independently solved probe is refused (here
    one entry is off by 1e-9 of the largest): the factorisation gives the matrix instead."""
    from cosim.crossbar.nodal import linear, transfer
    monkeypatch.setattr(linear, "BLOCK_MEM", 0)
    real = transfer.transfer_streamed
    calls = []

    def off(*args):
        M, Y = real(*args)
        calls.append(1)
        M = M.copy()
        M[2, 3] += 1e-9 * np.abs(M).max()
        return M, Y
    monkeypatch.setattr(linear, "transfer_streamed", off)
    G, _ = random_case(12, 20, 16, g=(1e-6, 1e-4))
    M = nodal.LinearArray(G, 2.0, 3.0).transfer_matrix()
    assert calls and rel_err(M, _direct_transfer(G, 2.0, 3.0)) <= 1e-12


@pytest.mark.parametrize("g,r", [((5.0, 10.0), 1e3), ((1e-7, 1e-5), 1.0), ((1e-3, 1e-2), 50.0)])
def test_transfer_matrix_block_contract(g, r):
    """The block method returns None or an accurate matrix (never a wrong one), and the
    public transfer matrix is accurate either way; heavy devices behind weak lines are the
    case where its line products may underflow."""
    from cosim.crossbar.nodal import transfer
    G, _ = random_case(30, 35, 14, g=g)
    ref = _direct_transfer(G, r, r)
    blocks = transfer.transfer_blocks(G, 1.0 / r, 1.0 / r, 1e-12)
    assert blocks is None or rel_err(blocks, ref) <= 1e-12
    assert rel_err(nodal.LinearArray(G, r, r).transfer_matrix(), ref) <= 1e-12


# ----------------------------------------------------------------------------- nonlinear

def tanh_cell(g, v_sat=0.25, k=0.2):
    """i = g v_sat tanh((v_w - v_b)/v_sat) (1 + k (v_w + v_b)/2): non-symmetric Jacobian."""
    def cell(vw, vb):
        u = (vw - vb) / v_sat
        t = np.tanh(u)
        f = 1.0 + 0.5 * k * (vw + vb)
        sech2 = 1.0 - t * t
        i = g * v_sat * t * f
        common = 0.5 * k * g * v_sat * t
        return i, g * sech2 * f + common, -g * sech2 * f + common
    return cell


@pytest.mark.parametrize("r_word,r_bit", [(1.0, 10.0), (0.0, 3.0), (3.0, 0.0), (0.0, 0.0)])
def test_nonlinear_with_linear_cell_equals_linear(r_word, r_bit):
    G, V = random_case(9, 7, 12, g=(1e-5, 1e-3), v=(-0.2, 0.2), batch=2)
    lin = nodal.solve(G, V, r_word, r_bit, method="direct")
    nl = nodal.solve_nonlinear(lambda vw, vb: (G * (vw - vb), G, -G), V, r_word, r_bit, G.shape)
    assert rel_err(nl.currents, lin.currents) <= 1e-12
    assert np.abs(nl.word_voltages - lin.word_voltages).max() <= 1e-13
    assert np.abs(nl.bit_voltages - lin.bit_voltages).max() <= 1e-13
    assert nl.iterations >= 1 or (r_word == 0 and r_bit == 0)


@pytest.mark.parametrize("r_word,r_bit", [(1.0, 1.0), (5.0, 20.0), (0.0, 5.0)])
def test_nonlinear_converges_from_bad_starts(r_word, r_bit):
    R, C = 12, 10
    rng = np.random.default_rng(13)
    g = rng.uniform(1e-4, 5e-3, size=(R, C))
    V = rng.uniform(-0.5, 0.5, size=R)
    cell = tanh_cell(g)
    ref = nodal.solve_nonlinear(cell, V, r_word, r_bit, (R, C))
    starts = [(np.zeros((R, C)), np.zeros((R, C))),
              (rng.uniform(-5, 5, (R, C)), rng.uniform(-5, 5, (R, C)))]
    for w0, b0 in starts:
        sol = nodal.solve_nonlinear(cell, V, r_word, r_bit, (R, C), initial=(w0, b0))
        assert rel_err(sol.currents, ref.currents) <= 1e-10
        F = nodal.kcl_residual(cell, V, r_word, r_bit, sol.word_voltages, sol.bit_voltages,
                               relative=True)
        assert np.abs(F).max() <= max(1e-12, sol.residual_floor)
        assert sol.residual <= max(1e-12, sol.residual_floor)
    # the answer is really nonlinear: a linear cell with the small-signal g differs
    lin = nodal.solve(g, V, r_word, r_bit)
    assert rel_err(lin.currents, ref.currents) > 1e-3


def test_nonlinear_warm_start_fewer_iterations():
    R, C = 16, 16
    rng = np.random.default_rng(14)
    g = rng.uniform(1e-4, 5e-3, size=(R, C))
    V = rng.uniform(-0.5, 0.5, size=R)
    cell = tanh_cell(g)
    first = nodal.solve_nonlinear(cell, V, 2.0, 2.0, (R, C))
    V2 = V + 1e-3 * rng.standard_normal(R)
    cold = nodal.solve_nonlinear(cell, V2, 2.0, 2.0, (R, C),
                                 initial=(np.zeros((R, C)), np.zeros((R, C))))
    warm = nodal.solve_nonlinear(cell, V2, 2.0, 2.0, (R, C), initial=first)
    assert warm.iterations < cold.iterations
    assert rel_err(warm.currents, cold.currents) <= 1e-10
    batch = nodal.solve_nonlinear(cell, np.stack([V, V2]), 2.0, 2.0, (R, C))
    assert rel_err(batch.currents[1], cold.currents) <= 1e-10


def test_nonlinear_pathological_cells_raise():
    G, V = random_case(4, 4, 15, g=(1e-4, 1e-3))

    def nan_cell(vw, vb):
        i = G * (vw - vb)
        return np.where(np.abs(vw - vb) > 1e-3, np.nan, i), G, -G

    def no_solution(vw, vb):
        # a 1 A current switch: i = sign(v_w - v_b) A. KCL has no solution when the lines
        # cannot carry 1 A (|V| < 2 r * 1 A), and the derivative is 0 almost everywhere.
        return np.sign(vw - vb), np.zeros_like(vw), np.zeros_like(vw)

    with pytest.raises(SolverError, match="residual"):
        nodal.solve_nonlinear(nan_cell, V, 1.0, 1.0, G.shape)
    with pytest.raises(SolverError, match="residual"):
        nodal.solve_nonlinear(no_solution, V, 1.0, 1.0, G.shape)
    with pytest.raises(SolverError, match="residual"):
        nodal.solve_nonlinear(tanh_cell(G * 10), V * 3, 1.0, 1.0, G.shape, max_iter=1,
                              initial=(np.full(G.shape, 5.0), np.full(G.shape, -5.0)))


# ----------------------------------------------------------------------------- validation

@pytest.mark.parametrize("G,match", [
    (np.array([[1e-4, -1e-5]]), "G"),
    (np.array([[1e-4, np.nan]]), "G"),
    (np.array([[1e-4, np.inf]]), "G"),
    (np.array([1e-4, 1e-5]), "G"),
])
def test_bad_G(G, match):
    with pytest.raises(ValueError, match=match):
        nodal.solve(G, np.zeros(G.shape[0] if G.ndim == 2 else 1), 1.0, 1.0)
    with pytest.raises(ValueError, match=match):
        nodal.LinearArray(G, 1.0, 1.0)


@pytest.mark.parametrize("V", [np.array([0.1, np.nan]), np.array([0.1, 0.2, 0.3]),
                               np.zeros((2, 3)), np.zeros((1, 1, 2)), np.array([np.inf, 0.0])])
def test_bad_V(V):
    G = np.full((2, 3), 1e-4)
    with pytest.raises(ValueError, match="V"):
        nodal.solve(G, V, 1.0, 1.0)
    with pytest.raises(ValueError, match="V"):
        nodal.solve_nonlinear(lambda a, b: (a - b, 1.0, -1.0), V, 1.0, 1.0, (2, 3))


@pytest.mark.parametrize("name,value", [("r_word", -1.0), ("r_word", np.inf), ("r_bit", np.nan),
                                        ("r_bit", -1e-3)])
def test_bad_resistance(name, value):
    G = np.full((2, 3), 1e-4)
    kw = {"r_word": 1.0, "r_bit": 1.0, name: value}
    with pytest.raises(ValueError, match=name):
        nodal.solve(G, np.zeros(2), **kw)
    with pytest.raises(ValueError, match=name):
        nodal.solve_nonlinear(lambda a, b: (a - b, 1.0, -1.0), np.zeros(2), shape=(2, 3), **kw)


def test_nonlinear_currents_only_and_warm_start():
    R, C = 6, 9
    cell = memtransistor_cell((R, C), 3)
    V = 0.1 * binary_patterns(np.random.default_rng(4), 3, R, 0.5)
    full = nodal.solve_nonlinear(cell, V, 1.0, 1.0, (R, C))
    lean = nodal.solve_nonlinear(cell, V, 1.0, 1.0, (R, C), voltages=False)
    np.testing.assert_array_equal(lean.currents, full.currents)
    assert lean.word_voltages is None and lean.bit_voltages is None and lean.word_drops is None
    warm = nodal.solve_nonlinear(cell, V, 1.0, 1.0, (R, C), initial=full)
    assert rel_err(warm.currents, full.currents) <= 1e-12
    with pytest.raises(ValueError, match="voltages=False"):
        nodal.solve_nonlinear(cell, V, 1.0, 1.0, (R, C), initial=lean)


def test_nonlinear_refuses_voltages_that_cannot_fit():
    V = np.zeros((20000, 100))
    cell = lambda a, b: (a - b, 1.0, -1.0)     # noqa: E731
    with pytest.raises(ValueError, match="voltages=False"):
        nodal.solve_nonlinear(cell, V, 1.0, 1.0, (100, 200))


def test_bad_shape_and_initial():
    with pytest.raises(ValueError, match="shape"):
        nodal.solve_nonlinear(lambda a, b: (a - b, 1.0, -1.0), np.zeros(2), 1.0, 1.0, (2, 0))
    with pytest.raises(ValueError, match="initial"):
        nodal.solve_nonlinear(lambda a, b: (a - b, 1.0, -1.0), np.zeros(2), 1.0, 1.0, (2, 3),
                              initial=(np.zeros((3, 2)), np.zeros((3, 2))))


def test_nested_dissection_is_permutation():
    for R, C in ((1, 1), (1, 17), (13, 1), (31, 20), (64, 64)):
        p = nodal.nested_dissection_order(R, C)
        assert np.array_equal(np.sort(p), np.arange(2 * R * C))


# ----------------------------------------------------------------------------- nonlinear: fast solver

def memtransistor_cell(shape, seed, g_max=10e-6, v_gate=3.0):
    """The default memtransistor at random states (the cell the nonlinear read uses)."""
    from cosim.devices import Memtransistor
    device = Memtransistor.default().replace(g_max=g_max)
    states = np.random.default_rng(seed).random(shape)
    return device.terminal_cell(v_gate, states)


def dense_newton(cell, V, r_word, r_bit, shape, iters=12):
    """Independent reference: Newton on the KCL residual of ``kcl_residual`` (explicit
    formula, no solver code) with a central-difference Jacobian and numpy's dense solve."""
    R, C = shape
    free_w, free_b = r_word > 0, r_bit > 0
    w = np.broadcast_to(V[:, None], (R, C)).copy()
    b = np.zeros((R, C))

    def unpack(x):
        ww, bb = w.copy(), b.copy()
        k = 0
        if free_w:
            ww = x[:R * C].reshape(R, C)
            k = R * C
        if free_b:
            bb = x[k:].reshape(R, C)
        return ww, bb

    def F(x):
        ww, bb = unpack(x)
        res = nodal.kcl_residual(cell, V, r_word, r_bit, ww, bb)
        return np.concatenate(([res[0].ravel()] if free_w else []) + ([res[1].ravel()] if free_b else []))

    x = np.concatenate(([w.ravel()] if free_w else []) + ([b.ravel()] if free_b else []))
    for _ in range(iters):
        f = F(x)
        h = 1e-7
        J = np.empty((x.size, x.size))
        for k in range(x.size):
            e = np.zeros(x.size)
            e[k] = h
            J[:, k] = (F(x + e) - F(x - e)) / (2 * h)
        x = x - np.linalg.solve(J, f)
    ww, bb = unpack(x)
    cur = (bb[-1] / r_bit) if free_b else cell(ww, bb)[0].sum(axis=0)
    return cur, ww, bb


def binary_patterns(rng, n, R, p):
    x = (rng.random((n, R)) < p).astype(float)
    x[x.sum(axis=1) == 0, 0] = 1.0
    return x


@pytest.mark.parametrize("R,C,r_word,r_bit", [(5, 7, 0.5, 0.7), (6, 3, 2.0, 0.3),
                                              (4, 6, 0.0, 1.5), (7, 4, 1.2, 0.0)])
def test_nonlinear_equals_dense_newton_reference(R, C, r_word, r_bit):
    cell = memtransistor_cell((R, C), 21, g_max=1e-3)      # strong cells: visible IR drop
    rng = np.random.default_rng(22)
    for V in 0.1 * binary_patterns(rng, 3, R, 0.5):
        ref, ref_w, ref_b = dense_newton(cell, V, r_word, r_bit, (R, C))
        sol = nodal.solve_nonlinear(cell, V, r_word, r_bit, (R, C))
        # the compiled kernel where both line families are resistive, else numpy's lines
        assert sol.method == ("newton-fused" if r_word and r_bit else "newton-lines")
        assert rel_err(sol.currents, ref) <= 1e-10
        assert np.abs(sol.bit_voltages - ref_b).max() <= 1e-10 * 0.1
        assert sol.residual <= 1e-12 and sol.pattern_residuals[0] == sol.residual
        F = nodal.kcl_residual(cell, V, r_word, r_bit, None, sol.bit_voltages, relative=True,
                               word_drops=sol.word_drops)
        assert np.abs(F).max() <= 1e-12


@pytest.mark.parametrize("R,C,r_word,r_bit,p", [(23, 37, 0.5, 0.7, 0.1), (31, 12, 2.0, 0.3, 0.9),
                                                (16, 40, 0.7, 0.5, 0.5), (9, 9, 10.0, 1.0, 0.3)])
def test_nonlinear_lines_equals_lu_reference(R, C, r_word, r_bit, p):
    """The line-sweep Newton and the sparse-LU Newton agree on random non-square arrays with
    asymmetric wires, sparse and dense patterns; both meet the KCL tolerance."""
    cell = memtransistor_cell((R, C), R * C)
    V = 0.1 * binary_patterns(np.random.default_rng(R + C), 6, R, p)
    fast = nodal.solve_nonlinear(cell, V, r_word, r_bit, (R, C), method="lines")
    ref = nodal.solve_nonlinear(cell, V, r_word, r_bit, (R, C), method="lu")
    assert rel_err(fast.currents, ref.currents) <= 1e-12
    assert fast.residual <= 1e-12 and ref.residual <= 1e-12
    assert fast.pattern_residuals.shape == (6,) and np.all(fast.pattern_iterations >= 1)
    F = nodal.kcl_residual(cell, V, r_word, r_bit, None, fast.bit_voltages, relative=True,
                           word_drops=fast.word_drops)
    assert np.abs(F).max() <= 1e-12


def test_single_row_on_half_ohm_lines_converges():
    """One driven row on 0.5 / 0.7 ohm lines: the start is already close (residual ~1e-11
    after one step), and the solver must keep iterating until the true residual meets 1e-12
    instead of accepting the rounding floor of absolute voltages."""
    R, C = 32, 64
    cell = memtransistor_cell((R, C), 5)
    V = np.zeros(R)
    V[R // 2] = 0.1
    sol = nodal.solve_nonlinear(cell, V, 0.5, 0.7, (R, C))
    assert sol.iterations >= 2
    F = nodal.kcl_residual(cell, V, 0.5, 0.7, None, sol.bit_voltages, relative=True,
                           word_drops=sol.word_drops)
    assert np.abs(F).max() <= 1e-12
    ref = nodal.solve_nonlinear(cell, V, 0.5, 0.7, (R, C), method="lu")
    assert rel_err(sol.currents, ref.currents) <= 1e-12


def test_nonlinear_batch_equals_one_by_one():
    R, C = 20, 30
    cell = memtransistor_cell((R, C), 8)
    V = 0.1 * binary_patterns(np.random.default_rng(9), 10, R, 0.5)
    batch = nodal.solve_nonlinear(cell, V, 1.0, 2.0, (R, C))
    for k in range(V.shape[0]):
        one = nodal.solve_nonlinear(cell, V[k], 1.0, 2.0, (R, C))
        assert rel_err(batch.currents[k], one.currents) <= 1e-14


def test_nonlinear_falls_back_to_lu_when_lines_cannot_step():
    """A cell with a negative differential conductance on some devices makes the line
    matrices indefinite: "auto" finishes those patterns with the LU reference, "lines"
    refuses with a clear error."""
    G, V = random_case(6, 5, 31, g=(1e-4, 1e-3), v=(0.05, 0.2), batch=3)
    G[2, 3] = -2e-5                                    # one device with negative conductance

    def cell(vw, vb):
        return G * (vw - vb), np.broadcast_to(G, vw.shape), np.broadcast_to(-G, vw.shape)
    sol = nodal.solve_nonlinear(cell, V, 1.0, 1.0, G.shape)
    assert sol.method == "newton-lines+lu"
    ref = nodal.solve(np.abs(G), V, 1.0, 1.0)          # only checks that a real answer came
    assert np.all(np.isfinite(sol.currents)) and rel_err(sol.currents, ref.currents) < 0.1
    F = nodal.kcl_residual(cell, V, 1.0, 1.0, None, sol.bit_voltages, relative=True,
                           word_drops=sol.word_drops)
    assert np.abs(F).max() <= 1e-12
    with pytest.raises(SolverError, match="residual"):
        nodal.solve_nonlinear(cell, V, 1.0, 1.0, G.shape, method="lines")


# ----------------------------------------------------------------------------- compiled kernel

def memtransistor_array_cell(shape, seed, v_sat=2.0):
    """A memtransistor array with device-to-device spread of g_max and v_th (per-cell
    parameters) at random states, as the cell of a read."""
    from cosim.devices import Memtransistor
    rng = np.random.default_rng(seed)
    device = Memtransistor.default().replace(
        g_max=1e-5 * np.exp(0.3 * rng.standard_normal(shape)),
        v_th=0.5 + 0.05 * rng.standard_normal(shape), v_sat=v_sat)
    return device.terminal_cell(3.0, rng.random(shape))


@pytest.mark.parametrize("R,C,r_word,r_bit,p,r_driver,r_sense", [
    (23, 37, 0.5, 0.7, 0.1, 0.0, 0.0), (31, 12, 2.0, 0.3, 0.9, 0.0, 0.0),
    (16, 40, 0.7, 0.5, 0.5, 3.0, 0.0), (9, 9, 10.0, 1.0, 0.3, 0.0, 5.0), (1, 6, 1.0, 1.0, 1.0,
                                                                          0.0, 0.0)])
def test_fused_kernel_equals_numpy_lines(R, C, r_word, r_bit, p, r_driver, r_sense):
    """The compiled kernel runs the numpy line method's algorithm: the same currents and
    node voltages to 1e-14 relative, on non-square arrays with asymmetric wires, periphery
    resistors, per-cell device parameters, sparse and dense patterns; KCL <= 1e-12."""
    cell = memtransistor_array_cell((R, C), R + 7 * C)
    V = 0.1 * binary_patterns(np.random.default_rng(R * C), 7, R, p)
    kw = dict(r_driver=r_driver, r_sense=r_sense)
    fast = nodal.solve_nonlinear(cell, V, r_word, r_bit, (R, C), method="fused", **kw)
    ref = nodal.solve_nonlinear(cell, V, r_word, r_bit, (R, C), method="lines", **kw)
    assert fast.method == "newton-fused" and ref.method == "newton-lines"
    assert rel_err(fast.currents, ref.currents) <= 1e-14
    # node voltages to the accuracy the two solutions carry: numpy's exp / tanh differ from
    # libm's by an ulp or so, and its residual can be ~1e-14 where the kernel's is ~1e-16
    volts = 1e-14 + 10 * (fast.residual + ref.residual)
    assert rel_err(fast.word_drops, ref.word_drops) <= volts
    assert rel_err(fast.bit_voltages, ref.bit_voltages) <= volts
    F = nodal.kcl_residual(cell, V, r_word, r_bit, None, fast.bit_voltages, relative=True,
                           word_drops=fast.word_drops, **kw)
    assert np.abs(F).max() <= 1e-12 and fast.residual <= 1e-12
    assert np.all(fast.pattern_iterations >= 1)
    warm = nodal.solve_nonlinear(cell, V, r_word, r_bit, (R, C), method="fused",
                                 initial=fast, **kw)        # a start away from the ideal point
    assert rel_err(warm.currents, ref.currents) <= 1e-14


@pytest.mark.skipif(np.finfo(np.longdouble).eps > 1e-18, reason="needs 80-bit long double")
def test_fused_device_currents_to_rounding_in_and_out_of_the_small_signal_region():
    """Near 0 V the kernel evaluates a cell by Taylor series instead of exp / log1p / tanh:
    the device currents agree with the closed form in long double to a few ulps inside
    that region, at its edges and just outside it, for gate drives from deep off to far
    on."""
    from cosim.crossbar.nodal import fused
    R, C = 12, 40
    cell = memtransistor_array_cell((R, C), 21)
    a, c, s_g, v_sat = cell.fused_form
    a = np.broadcast_to(a, (R, C))
    # gate overdrives x0 = c / s_g from deep off to far on, one per column
    c = np.broadcast_to(s_g * np.linspace(-35.0, 35.0, C), (R, C))
    cell.fused_form = (a, c, s_g, v_sat)
    prepared = fused.prepare(cell, (R, C))
    rng = np.random.default_rng(22)
    edge_sum, edge_diff = fused.SERIES_SUM * s_g, fused.SERIES_DIFF * v_sat
    n = 8
    scale = np.ones((n, R, C))
    scale[:, ::3] = 1.0 - 1e-9                   # rows on the edge of the region
    scale[:, 1::3] = rng.uniform(0.0, 1.0, (n, (R + 1) // 3, C))
    scale[:, 2::3] = 1.001                       # rows just outside it (direct evaluation)
    signs = rng.choice([-1.0, 1.0], (2, n, R, C))
    total = signs[0] * scale * edge_sum
    diff = signs[1] * scale * edge_diff
    vw, vb = 0.5 * (total + diff), 0.5 * (total - diff)
    V = rng.uniform(-0.01, 0.01, (n, R))
    u = V[:, :, None] - vw
    i_dev, di_dw, di_db = fused.device_currents(prepared, V, u, vb, partials=True)
    # the reference at the node voltages the kernel forms in doubles, v_w = V - u
    L = np.longdouble
    w_l, b_l = (V[:, :, None] - u).astype(L), vb.astype(L)
    x = (c.astype(L) - (w_l + b_l) / 2) / L(s_g)
    sp = np.log1p(np.exp(-np.abs(x))) + np.maximum(x, L(0))
    t = np.tanh((w_l - b_l) / L(v_sat))
    want = a.astype(L) * sp * L(v_sat) * t
    # partials: the gate term (through x) and the channel term (through tanh)
    gate = a.astype(L) * L(v_sat) * t / (1 + np.exp(-x)) * (-0.5 / L(s_g))
    chan = a.astype(L) * sp * (1 - t * t)
    eps = np.finfo(float).eps
    for got, ref, size in ((i_dev, want, np.abs(want)), (di_dw, gate + chan, np.abs(chan)),
                           (di_db, gate - chan, np.abs(chan))):
        err = np.abs(got.astype(L) - ref) / size
        assert float(err[:, 0::3].max()) <= 4 * eps         # series, at the region's edge
        assert float(err[:, 1::3].max()) <= 4 * eps         # series, inside
        # outside: directly; it rounds x = (c - (v_w + v_b)/2) / s_g, ~|x0| ulps of sp
        assert float(err.max()) <= 64 * eps


def test_fused_kernel_small_signal_reads_equal_numpy_lines():
    """Reads whose every cell is in the small-signal region (millivolt inputs, one row
    undriven), and reads that mix such rows with driven ones, equal the numpy line method
    (direct exp / log1p / tanh) to 1e-14, with their adjoints."""
    from cosim.crossbar.adjoint import nonlinear_vjp_batch
    R, C = 19, 33
    cell = memtransistor_array_cell((R, C), 31)
    rng = np.random.default_rng(32)
    V = np.concatenate([2e-3 * binary_patterns(rng, 3, R, 0.8),
                        0.1 * binary_patterns(rng, 3, R, 0.1)])
    fast = nodal.solve_nonlinear(cell, V, 1.3, 0.6, (R, C), method="fused")
    ref = nodal.solve_nonlinear(cell, V, 1.3, 0.6, (R, C), method="lines")
    assert fast.method == "newton-fused"
    for k in range(V.shape[0]):
        assert rel_err(fast.currents[k], ref.currents[k]) <= 1e-14
    g = rng.standard_normal((V.shape[0], C))
    plain = lambda v_w, v_b: cell(v_w, v_b)              # noqa: E731 (hides the fused form)
    got = nonlinear_vjp_batch(cell, V, fast.word_drops, fast.bit_voltages, 1.3, 0.6, g)
    want = nonlinear_vjp_batch(plain, V, fast.word_drops, fast.bit_voltages, 1.3, 0.6, g)
    for a_, b_ in zip(got, want):              # the sparse LU's rounding at millivolts
        assert rel_err(a_, b_) <= 1e-11


def test_fused_kernel_hands_what_it_cannot_step_to_the_reference():
    """Saturated devices (V_DS >> v_sat) have di/dv_w < 0: the line factorisation cannot
    take them, the kernel marks those patterns failed and the numpy path (lines, then the
    sparse LU) solves them; the result is the reference's."""
    R, C = 6, 8
    cell = memtransistor_array_cell((R, C), 3, v_sat=0.02)
    V = 0.1 * binary_patterns(np.random.default_rng(4), 3, R, 0.5)
    assert np.any(cell(V[:, :, None] + np.zeros((R, C)), np.zeros((3, R, C)))[1] < 0)
    sol = nodal.solve_nonlinear(cell, V, 1.0, 1.0, (R, C))
    assert sol.method == "newton-fused+lines+lu"
    ref = nodal.solve_nonlinear(cell, V, 1.0, 1.0, (R, C), method="lu")
    assert rel_err(sol.currents, ref.currents) <= 1e-12 and sol.residual <= 1e-12
    with pytest.raises(SolverError, match="residual"):
        nodal.solve_nonlinear(cell, V, 1.0, 1.0, (R, C), method="fused", max_iter=1)


def test_fused_method_needs_a_cell_with_a_fused_form():
    G = np.full((3, 4), 1e-5)

    def cell(vw, vb):
        return G * (vw - vb), np.broadcast_to(G, vw.shape), np.broadcast_to(-G, vw.shape)
    with pytest.raises(ValueError, match="fused_form"):
        nodal.solve_nonlinear(cell, np.full(3, 0.1), 1.0, 1.0, G.shape, method="fused")
    with pytest.raises(ValueError, match="fused_form"):
        nodal.solve_nonlinear(memtransistor_cell((3, 4), 1), np.full(3, 0.1), 0.0, 1.0,
                              (3, 4), method="fused")
    assert nodal.solve_nonlinear(cell, np.full(3, 0.1), 1.0, 1.0, G.shape).method == \
        "newton-lines"


def test_terminal_cell_is_the_device_and_its_fused_form_the_same_iv():
    """TerminalCell returns current_terminals exactly; its fused form, written out with
    numpy, is the same I-V (closed form of the module docstring)."""
    cell = memtransistor_array_cell((4, 5), 11)
    rng = np.random.default_rng(12)
    vw, vb = rng.uniform(-0.2, 0.2, (4, 5)), rng.uniform(-0.05, 0.05, (4, 5))
    i, dw, db = cell(vw, vb)
    ref = cell.device.current_terminals(vw, 3.0, vb, cell.state)
    for a, r in zip((i, dw, db), ref):
        assert np.array_equal(a, r)
    a, c, s_g, v_sat = cell.fused_form
    closed = a * np.logaddexp(0.0, (c - 0.5 * (vw + vb)) / s_g) * v_sat * np.tanh(
        (vw - vb) / v_sat)
    assert rel_err(closed, i) <= 1e-14
    # and the device's own source-referenced current (an independent code path)
    direct = cell.device.current(vw - vb, 3.0 - vb, cell.state)
    assert rel_err(direct, i) <= 1e-14


def test_nonlinear_vjp_batched_equals_one_read_at_a_time():
    """The batched adjoint (compiled line sweeps on J^T) equals the sparse-LU adjoint of
    each read on its own."""
    from cosim.crossbar.adjoint import nonlinear_vjp
    R, C = 14, 22
    cell = memtransistor_array_cell((R, C), 5)
    rng = np.random.default_rng(6)
    V = 0.1 * binary_patterns(rng, 5, R, 0.4)
    V[2] = 0.0                                   # an undriven read: adjoint at 0 V
    sol = nodal.solve_nonlinear(cell, V, 0.8, 1.3, (R, C))
    c = rng.standard_normal((5, C))
    grad_V, grad_di = nonlinear_vjp(cell, V, sol.word_voltages, sol.bit_voltages, 0.8, 1.3, c)
    assert grad_V.shape == (5, R) and grad_di.shape == (5, R, C)
    for k in range(5):
        one_V, one_di = nonlinear_vjp(cell, V[k], sol.word_voltages[k], sol.bit_voltages[k],
                                      0.8, 1.3, c[k])
        assert rel_err(grad_V[k], one_V) <= 1e-12
        assert rel_err(grad_di[k], one_di) <= 1e-12
    # in drop variables, with the device currents: the compiled path and a plain callable
    # cell (no fused form: sparse LU per read) give the same adjoint and I-V
    from cosim.crossbar.adjoint import nonlinear_vjp_batch
    plain = lambda v_w, v_b: cell(v_w, v_b)              # noqa: E731 (hides the fused form)
    for which in (cell, plain):
        got_V, got_di, i_dev = nonlinear_vjp_batch(which, V, sol.word_drops, sol.bit_voltages,
                                                   0.8, 1.3, c)
        assert rel_err(got_V, grad_V) <= 1e-12 and rel_err(got_di, grad_di) <= 1e-12
        want_i = cell(V[:, :, None] - sol.word_drops, sol.bit_voltages)[0]
        assert rel_err(i_dev, want_i) <= 1e-14
