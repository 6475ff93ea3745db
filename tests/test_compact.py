"""Compact backend: exact mapping at zero wire resistance, IR drop via the nodal solver,
nonlinear reads with KCL, caching and its invalidation, the SRNN running on it."""

import numpy as np
import pytest

from cosim.crossbar import Compact, nodal
from cosim.devices import Memtransistor
from cosim.network import SRNN
from _spice import needs_spice


@pytest.fixture
def weights():
    return np.random.default_rng(0).normal(size=(12, 5))


def binary(rng, shape, p=0.5):
    return (rng.random(shape) < p).astype(float)


@pytest.mark.parametrize("read", ["linear", "nonlinear"])
def test_zero_wire_resistance_is_the_ideal_product(weights, read):
    xb = Compact(r_word=0, r_bit=0, read=read)
    xb.program(weights)
    x = binary(np.random.default_rng(1), (6, 12))
    np.testing.assert_allclose(xb(x), x @ xb.effective_weights, rtol=1e-12, atol=1e-14)
    # without quantisation or variability the effective weights are the weights
    np.testing.assert_allclose(xb.effective_weights, weights, rtol=1e-12, atol=1e-14)


def test_bitline_currents_are_the_nodal_solution(weights):
    xb = Compact(r_word=2.0, r_bit=3.0, read="linear")
    xb.program(weights)
    x = binary(np.random.default_rng(2), (4, 12))
    g_cell = xb.conductances * xb.read_factor
    expected = nodal.solve(g_cell, 0.1 * x, 2.0, 3.0).currents
    np.testing.assert_allclose(xb.bitline_currents(x), expected, rtol=1e-12)
    out = (expected[:, 0::2] - expected[:, 1::2]) / (0.1 * xb.scale * xb.read_factor)
    np.testing.assert_allclose(xb(x), out, rtol=1e-10, atol=1e-13)


def test_nonlinear_read_satisfies_kcl_and_device_equations(weights):
    xb = Compact(r_word=10.0, r_bit=10.0, read="nonlinear")
    xb.program(weights * 50)   # large weights: strong currents, visible IR drop
    x = binary(np.random.default_rng(3), (12,))
    sol = xb.solution(x)
    device, states = xb.array_device, xb.states
    cell = lambda vw, vb: device.current_terminals(vw, xb.v_gate, vb, states)  # noqa: E731
    i_dev = device.current(sol.word_voltages - sol.bit_voltages,
                           xb.v_gate - sol.bit_voltages, states)
    scale = max(np.max(np.abs(i_dev)), np.max(np.abs(sol.currents)))
    # ≤ 1e-12 of the largest branch current in the solver's own variables (word drops) ...
    res = nodal.kcl_residual(cell, 0.1 * x, 10.0, 10.0, None, sol.bit_voltages,
                             word_drops=sol.word_drops)
    assert np.max(np.abs(res)) / scale <= 1e-12
    # ... and within the double-precision rounding of |V| in the absolute word voltages
    res = nodal.kcl_residual(cell, 0.1 * x, 10.0, 10.0, sol.word_voltages, sol.bit_voltages)
    eps = np.finfo(float).eps
    assert np.max(np.abs(res)) <= 1e-12 * scale + 8 * eps * 0.1 / 10.0
    # sense currents equal the device currents collected on each bit line (r = 10: segment law)
    np.testing.assert_allclose(sol.currents, sol.bit_voltages[-1] / 10.0, rtol=1e-9)
    # the read differs from the linearised one, but only slightly at V_read = 0.1 V
    lin = Compact(r_word=10.0, r_bit=10.0, read="linear")
    lin.program(weights * 50)
    diff = np.abs(xb.bitline_currents(x) - lin.bitline_currents(x)).max()
    assert 0 < diff < 0.05 * np.abs(lin.bitline_currents(x)).max()


def test_ir_drop_lowers_currents_monotonically(weights):
    x = np.ones(12)
    totals = []
    for r in (0.0, 100.0, 1000.0, 10000.0):
        xb = Compact(r_word=r, r_bit=r)
        xb.program(np.abs(weights))
        totals.append(xb.bitline_currents(x).sum())
    assert all(a > b for a, b in zip(totals, totals[1:]))


def test_nonlinear_cache_returns_identical_results_and_program_invalidates(weights):
    rng = np.random.default_rng(4)
    xb = Compact(r_word=5.0, r_bit=5.0, read="nonlinear")
    xb.program(weights)
    patterns = binary(rng, (3, 12))
    x = patterns[[0, 1, 2, 0, 1, 2, 0]]
    first = xb.bitline_currents(x)
    # repeated patterns within a batch are solved once
    assert xb.stats["solves"] == 3 and xb.stats["cache_hits"] == 0
    np.testing.assert_array_equal(first[0], first[3])
    again = xb.bitline_currents(x)
    np.testing.assert_array_equal(first, again)
    assert xb.stats["solves"] == 3 and xb.stats["cache_hits"] == 7
    xb.program(weights)               # same states: nothing changed, nothing invalidated
    xb.bitline_currents(x)
    assert xb.stats["solves"] == 3
    xb.program(weights * 0.5 + 0.1)   # new states: the cache is gone
    changed = xb.bitline_currents(x)
    assert xb.stats["solves"] == 6
    assert not np.allclose(changed, first)
    fresh = Compact(r_word=5.0, r_bit=5.0, read="nonlinear")
    fresh.program(weights * 0.5 + 0.1)
    np.testing.assert_allclose(changed, fresh.bitline_currents(x), rtol=1e-11)


def test_linear_map_is_built_once_and_rebuilt_after_program(weights):
    xb = Compact(r_word=1.0, r_bit=1.0)
    xb.program(weights)
    x = binary(np.random.default_rng(5), (10, 12))
    xb(x), xb(x)
    assert xb.stats["factorisations"] == 1
    xb.program(-weights)
    out = xb(x)
    assert xb.stats["factorisations"] == 2
    ref = Compact(r_word=1.0, r_bit=1.0)
    ref.program(-weights)
    np.testing.assert_array_equal(out, ref(x))


def test_quantisation_and_variability_show_in_effective_weights(weights):
    q = Compact(levels=4, r_word=0, r_bit=0)
    q.program(weights)
    g_levels = np.unique(np.round(q.conductances / q.scale, 9))
    assert len(g_levels) <= 4
    v1, v2 = Compact(program_sigma=0.1, seed=1), Compact(program_sigma=0.1, seed=1)
    v1.program(weights)
    v2.program(weights)
    np.testing.assert_array_equal(v1.effective_weights, v2.effective_weights)
    assert not np.allclose(v1.effective_weights, weights)


def test_srnn_runs_on_compact_unchanged():
    rng = np.random.default_rng(6)
    x = binary(rng, (2, 20, 6), 0.4)
    ideal = SRNN(6, 8, 3, neuron="lif", seed=0)
    hw = SRNN(6, 8, 3, neuron="lif", seed=0, crossbar=Compact(r_word=0.0, r_bit=0.0))
    np.testing.assert_array_equal(hw.run(x).z, ideal.run(x).z)
    wired = SRNN(6, 8, 3, neuron="lif", seed=0, crossbar=Compact(r_word=1.0, r_bit=1.0))
    assert wired.run(x).z.shape == (2, 20, 8)


@pytest.mark.parametrize("kwargs,word", [
    (dict(r_word=-1.0), "r_word"), (dict(r_bit=float("nan")), "r_bit"),
    (dict(v_read=0.0), "v_read"), (dict(read="magic"), "read"),
    (dict(g_range=(1e-5, 1e-6)), "g_"), (dict(levels=1), "levels"),
    (dict(device="mos2"), "device"),
])
def test_bad_parameters(kwargs, word):
    with pytest.raises((ValueError, TypeError), match=word):
        Compact(**kwargs)


@pytest.mark.parametrize("kwargs,message", [
    (dict(v_read=1e300), r"v_read must lie in \(0, 3\)"),
    (dict(v_read=3.0), r"v_read must lie in \(0, 3\)"),      # would program the devices
    (dict(program_sigma=1e300), r"program_sigma must lie in \[0, 3\]"),
    (dict(d2d_sigma=50.0), r"d2d_sigma must lie in \[0, 3\]"),
    (dict(read_noise_sigma=2.0), r"read_noise_sigma must lie in \[0, 1\]"),
    (dict(v_gate=1e300), r"v_gate must lie in \[-100, 100\]"),
    (dict(r_word=1e-300), r"r_word must be 0 \(ideal wire\) or lie in \[1e-09, 1e\+12\]"),
    (dict(r_bit=1e300), r"r_bit must be 0 \(ideal wire\) or lie in"),
])
def test_extreme_values_are_refused_with_the_range(kwargs, message):
    """Values that would read NaN or garbage are refused, naming the allowed range."""
    with pytest.raises(ValueError, match=message):
        Compact(**kwargs)


@pytest.mark.parametrize("read", ["linear", "nonlinear"])
def test_device_to_device_spread_end_to_end(weights, read):
    """d2d_sigma > 0 programs, reads and realises the spread: every cell conducts
    e^{sigma N} x its target (open-loop programming of the nominal states)."""
    nominal = Compact(r_word=0.0, r_bit=0.0, read=read)
    spread = Compact(r_word=0.0, r_bit=0.0, read=read, d2d_sigma=0.05, seed=3)
    nominal.program(weights)
    spread.program(weights)
    np.testing.assert_array_equal(spread.states, nominal.states)
    factor = spread.conductances / nominal.conductances
    assert 0.02 < np.std(np.log(factor)) < 0.08                     # sigma = 0.05, 120 cells
    np.testing.assert_allclose(factor, spread.array_device.params["g_max"] / 1e-5, rtol=1e-12)
    x = binary(np.random.default_rng(4), (6, 12))
    # no wires: the read is exactly the product with the realised weights
    np.testing.assert_allclose(spread(x), x @ spread.effective_weights, rtol=1e-9,
                               atol=1e-12 * np.abs(x @ weights).max())
    assert np.abs(spread.effective_weights - weights).max() > 1e-3
    # the same seed gives the same array; reprogramming keeps the drawn spread
    again = Compact(r_word=0.0, r_bit=0.0, read=read, d2d_sigma=0.05, seed=3)
    again.program(weights)
    np.testing.assert_array_equal(again.conductances, spread.conductances)
    spread.program(weights * 0.5)
    np.testing.assert_array_equal(spread.array_device.params["g_max"],
                                  again.array_device.params["g_max"])
    # with wires the nonlinear / linear solves run on the per-cell devices
    wired = Compact(r_word=2.0, r_bit=2.0, read=read, d2d_sigma=0.05, seed=3)
    wired.program(weights)
    assert np.all(np.isfinite(wired(x)))


def test_bad_inputs(weights):
    xb = Compact()
    with pytest.raises(RuntimeError, match="program"):
        xb(np.ones(12))
    xb.program(weights)
    with pytest.raises(ValueError, match="x"):
        xb(np.ones(11))
    with pytest.raises(ValueError, match="x"):
        xb.bitline_currents(np.full(12, np.nan))
    with pytest.raises(ValueError, match="weights"):
        xb.program(np.full((3, 3), np.inf))


def test_device_card_drives_the_backend(tmp_path):
    card = tmp_path / "card.toml"
    text = Memtransistor.default()  # noqa: F841  (the default card exists and loads)
    from cosim.devices import DEFAULT_CARD
    card.write_text(DEFAULT_CARD.read_text().replace("g_max = 1e-05", "g_max = 2e-05")
                    .replace("g_max = 10e-6", "g_max = 2e-05"))
    dev = Memtransistor.from_card(card)
    xb = Compact(device=dev, r_word=0, r_bit=0)
    xb.program(np.eye(3))
    assert np.isclose(xb.conductances.max(), dev.params["g_max"])


# ----------------------------------------------------------------------------- against ngspice

def _close_on_carrying_lines(i_test, i_ref, rtol):
    """Relative agreement on every bit line carrying >= 1e-3 of the largest current."""
    big = np.abs(i_ref) >= 1e-3 * np.abs(i_ref).max()
    rel = np.abs(i_test - i_ref)[big] / np.abs(i_ref)[big]
    assert rel.max() <= rtol, f"worst bit line off by {rel.max():.2e} (limit {rtol:.0e})"


@needs_spice
@pytest.mark.parametrize("rows,cols,r_word,r_bit,p", [
    (24, 10, 0.5, 0.7, 0.1), (24, 10, 0.5, 0.7, 0.9), (9, 31, 2.0, 0.3, 0.5),
    (40, 7, 0.7, 5.0, 0.2)])
@pytest.mark.parametrize("path", ["any", "batch"])
def test_nonlinear_read_equals_ngspice(tmp_path, rows, cols, r_word, r_bit, p, path):
    """Random non-square arrays, asymmetric wires, sparse and dense patterns: the compact
    nonlinear read equals ngspice's operating point of the same deck, whichever way Spice
    solves the patterns ("any": a sweep of the array's circuit loaded in the shared library
    when it is free, else a .dc batch deck; "batch": always the .dc batch deck, in
    ``ngspice -b``; the points of both start from the previous one)."""
    from cosim.crossbar import Spice
    engine = "subprocess" if path == "batch" else "auto"
    rng = np.random.default_rng(rows * cols)
    W = rng.normal(size=(rows, cols))
    x = binary(rng, (6, rows), p)
    x[x.sum(axis=1) == 0, 0] = 1.0
    settings = dict(r_word=r_word, r_bit=r_bit, read="nonlinear")
    compact, spice = Compact(**settings), Spice(cache=tmp_path, engine=engine, **settings)
    compact.program(W * 20)                 # strong devices: IR drops well above rounding
    spice.program(W * 20)
    _close_on_carrying_lines(compact.bitline_currents(x), spice.bitline_currents(x), 1e-11)


@needs_spice
def test_single_row_on_half_ohm_lines_equals_ngspice(tmp_path):
    from cosim.crossbar import Spice
    W = np.random.default_rng(4).normal(size=(32, 16))
    x = np.zeros((2, 32))
    x[0, 7] = 1.0
    x[1, 31] = 1.0
    settings = dict(r_word=0.5, r_bit=0.7, read="nonlinear")
    compact, spice = Compact(**settings), Spice(cache=tmp_path, **settings)
    compact.program(W)
    spice.program(W)
    _close_on_carrying_lines(compact.bitline_currents(x), spice.bitline_currents(x), 1e-11)


@needs_spice
@pytest.mark.parametrize("read", ["linear", "nonlinear"])
def test_device_to_device_spread_equals_ngspice(tmp_path, read):
    from cosim.crossbar import Spice
    W = np.random.default_rng(6).normal(size=(10, 6))
    x = binary(np.random.default_rng(7), (4, 10))
    x[:, 0] = 1.0
    settings = dict(r_word=0.5, r_bit=0.7, read=read, d2d_sigma=0.05, seed=11)
    compact, spice = Compact(**settings), Spice(cache=tmp_path, **settings)
    compact.program(W * 20)
    spice.program(W * 20)
    np.testing.assert_array_equal(spice.conductances, compact.conductances)
    _close_on_carrying_lines(compact.bitline_currents(x), spice.bitline_currents(x), 1e-11)


def test_stuck_cells_stay_stuck_when_the_array_is_reprogrammed():
    """Faults belong to the physical array: a reprogramming (hardware-aware training does one
    after every update) writes new states but cannot free a stuck cell or stick a new one."""
    rng = np.random.default_rng(5)
    xbar = Compact(r_word=0.0, r_bit=0.0, stuck_on_rate=0.05, stuck_off_rate=0.05, seed=3)
    g_min, g_max = xbar.mapping.g_min, xbar.mapping.g_max
    full = 0.9 * np.ones((12, 7))                 # every cell of both columns far from g_min
    zero = np.zeros((12, 7))                      # every cell at g_min unless stuck ON

    def stuck_sets():
        xbar.program(zero)
        on = np.isclose(xbar.conductances, g_max, rtol=1e-12, atol=0)
        xbar.program(full)
        off = np.isclose(xbar.conductances[:, 0::2], g_min, rtol=1e-12, atol=0)   # G+ columns
        return on, off

    on1, off1 = stuck_sets()
    xbar.program(rng.uniform(-1, 1, size=(12, 7)))
    on2, off2 = stuck_sets()
    assert on1.any() and off1.any()
    np.testing.assert_array_equal(on1, on2)
    np.testing.assert_array_equal(off1, off2)
