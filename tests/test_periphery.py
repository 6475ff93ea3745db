"""Periphery of a read (EQUATIONS.md §7): driver and sense resistors in the circuit, DAC and
ADC, checked against closed forms, the independent KCL residual and ngspice."""

import numpy as np
import pytest

from _spice import needs_spice
from cosim.crossbar import Compact, from_spec, nodal
from cosim.crossbar.periphery import BITS_MAX


def linear_cell(G):
    def cell(v_w, v_b):
        return G * (v_w - v_b), np.broadcast_to(G, v_w.shape), np.broadcast_to(-G, v_w.shape)
    return cell


def ladder_currents(g, V, r_driver, r_word, r_bit, r_sense):
    """Closed form of a 1 x N array: column j is g_j in series with r_bit + r_sense to
    ground; the word line is a resistor ladder fed through r_driver + r_word."""
    h = 1.0 / (1.0 / g + r_bit + r_sense)            # load of each column (S)
    N = g.size
    Y = np.empty(N)                                   # admittance seen into node j (S)
    Y[-1] = h[-1]
    for j in range(N - 2, -1, -1):
        Y[j] = h[j] + 1.0 / (r_word + 1.0 / Y[j + 1])
    source = V / (r_driver + r_word + 1.0 / Y[0])
    w = V - source * (r_driver + r_word)
    out, seg = np.empty(N), source
    for j in range(N):
        out[j] = w * h[j]
        seg -= out[j]
        w -= seg * r_word
    return out, source


@pytest.mark.parametrize("read", ["cg", "direct", "transfer", "nonlinear"])
def test_single_cell_closed_form(read):
    g, V, rd, rw, rb, rs = 2e-3, 0.2, 30.0, 1.5, 2.5, 70.0
    expected = V / (rd + rw + 1.0 / g + rb + rs)
    G = np.array([[g]])
    if read == "nonlinear":
        got = nodal.solve_nonlinear(linear_cell(G), [V], rw, rb, (1, 1), r_driver=rd,
                                    r_sense=rs).currents[0]
    else:
        array = nodal.LinearArray(G, rw, rb, r_driver=rd, r_sense=rs)
        got = (np.array([V]) @ array.transfer_matrix())[0] if read == "transfer" else \
            array.solve([V], method=read).currents[0]
    assert got == pytest.approx(expected, rel=1e-13)


@pytest.mark.parametrize("method", ["cg", "direct", "transfer", "nonlinear"])
def test_one_row_ladder_closed_form(method):
    rng = np.random.default_rng(3)
    g = rng.uniform(1e-4, 5e-3, 9)
    V, rd, rw, rb, rs = 0.15, 20.0, 3.0, 2.0, 45.0
    expected, _ = ladder_currents(g, V, rd, rw, rb, rs)
    G = g[None, :]
    if method == "nonlinear":
        got = nodal.solve_nonlinear(linear_cell(G), [V], rw, rb, G.shape, r_driver=rd,
                                    r_sense=rs).currents
    elif method == "transfer":
        got = np.array([V]) @ nodal.LinearArray(G, rw, rb, r_driver=rd,
                                                r_sense=rs).transfer_matrix()
    else:
        got = nodal.solve(G, [V], rw, rb, method=method, r_driver=rd, r_sense=rs).currents
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize("shape", [(5, 9), (9, 4)])        # transfer: direct and mirrored
def test_periphery_solutions_meet_the_independent_residual(shape):
    rng = np.random.default_rng(7)
    G = rng.uniform(1e-5, 1e-3, shape)
    V = rng.uniform(0.0, 0.2, (3, shape[0]))
    kw = dict(r_driver=40.0, r_sense=90.0)
    array = nodal.LinearArray(G, 1.0, 2.0, **kw)
    sol = array.solve(V, method="direct")
    F = nodal.kcl_residual(G, V, 1.0, 2.0, sol.word_voltages, sol.bit_voltages,
                           relative=True, **kw)
    # absolute word voltages carry a rounding floor (nodal.kcl), reported with the solution
    assert np.abs(F).max() <= max(1e-12, 2 * sol.residual_floor)
    scale = np.abs(sol.currents).max()
    assert np.abs(V @ array.transfer_matrix() - sol.currents).max() <= 1e-12 * scale
    # the sense node sits at I_j r_sense: the last bit node is above it by I_j r_bit
    np.testing.assert_allclose(sol.bit_voltages[:, -1, :], sol.currents * (2.0 + 90.0),
                               rtol=1e-9)
    nl = nodal.solve_nonlinear(linear_cell(G), V, 1.0, 2.0, shape, **kw)
    assert np.abs(nl.currents - sol.currents).max() <= 1e-12 * scale
    # the residual without the periphery resistors does not vanish: they are in the circuit
    F0 = nodal.kcl_residual(G, V, 1.0, 2.0, sol.word_voltages, sol.bit_voltages,
                            relative=True)
    assert np.abs(F0).max() > 1e-3


@pytest.mark.parametrize("read", ["linear", "nonlinear"])
def test_compact_reads_the_circuit_with_periphery(read):
    rng = np.random.default_rng(1)
    W = rng.normal(size=(6, 4))
    xb = Compact(r_word=2.0, r_bit=3.0, r_driver=60.0, r_sense=120.0, read=read)
    xb.program(W)
    x = (rng.random(6) < 0.6).astype(float)
    sol = xb.solution(x)
    cells = xb.conductances * xb.read_factor if read == "linear" else xb._cell()
    drops = dict(word_drops=sol.word_drops, word_voltages=None) if read == "nonlinear" \
        else dict(word_voltages=sol.word_voltages)
    F = nodal.kcl_residual(cells, xb.v_read * x, 2.0, 3.0, bit_voltages=sol.bit_voltages,
                           relative=True, r_driver=60.0, r_sense=120.0, **drops)
    assert np.abs(F).max() <= max(1e-12, 2 * sol.residual_floor)
    scale = np.abs(sol.currents).max()
    assert np.abs(xb.bitline_currents(x) - sol.currents).max() <= 1e-11 * scale
    # and it changes the read: less current than with ideal periphery
    ideal = Compact(r_word=2.0, r_bit=3.0, read=read)
    ideal.program(W)
    assert np.all(xb.bitline_currents(x) < ideal.bitline_currents(x))


@pytest.mark.parametrize("wire,end", [("r_word", "r_driver"), ("r_bit", "r_sense")])
def test_shorted_line_with_periphery_resistor_is_refused(wire, end):
    with pytest.raises(ValueError, match=f"{end}.*needs {wire} > 0"):
        Compact(**{wire: 0.0, end: 10.0})
    with pytest.raises(ValueError, match=end):
        nodal.LinearArray(np.ones((2, 2)) * 1e-4, **{"r_word": 1.0, "r_bit": 1.0, wire: 0.0},
                          **{end: 5.0})


@pytest.mark.parametrize("name,value,match", [
    ("r_sense", -1.0, r"r_sense must lie in \[0, 1e\+12\]"),
    ("r_driver", float("nan"), "r_driver"),
    ("r_driver", float("inf"), "r_driver"),
    ("dac_bits", 0, rf"dac_bits must be None \(ideal\) or an integer in \[1, {BITS_MAX}\]"),
    ("adc_bits", 99, rf"\[1, {BITS_MAX}\]"),
    ("adc_bits", 2.5, "adc_bits"),
    ("adc_bits", True, "adc_bits"),
    ("dac_bits", "8", "dac_bits"),
    ("adc_range", -1e-6, r"adc_range must be 'auto' or a current in \(0, 1\] A"),
    ("adc_range", "max", "adc_range"),
    ("adc_range", float("nan"), "adc_range"),
    ("adc_offset_sigma", 2.0, r"adc_offset_sigma must lie in \[0, 1\]"),
    ("adc_gain_sigma", -0.1, "adc_gain_sigma"),
    ("read_time", 0.0, "read_time"),
    ("adc_energy", -1e-12, "adc_energy"),
    ("x_max", 0.0, r"x_max must lie in \(0, 1e6\]"),
    ("adc_bipolar", "yes", r"adc_bipolar must be True or False"),
    ("adc_bipolar", 1, "adc_bipolar"),
])
def test_hostile_periphery_values(name, value, match):
    with pytest.raises(ValueError, match=match):
        Compact(**{name: value})


@pytest.mark.parametrize("bits", [1, 2, 3, 5])
def test_dac_levels(bits):
    rng = np.random.default_rng(bits)
    xb = Compact(dac_bits=bits, x_max=1.5)
    xb.program(rng.normal(size=(8, 3)))
    x = rng.uniform(-0.5, 2.0, (4000, 8))
    V = xb.word_voltages(x)
    levels = np.unique(V)
    assert levels.size <= 2 ** bits
    step = xb.v_read * 1.5 / (2 ** bits - 1)
    np.testing.assert_allclose(levels / step, np.rint(levels / step), atol=1e-9)
    assert V.min() == 0.0 and V.max() == pytest.approx(xb.v_read * 1.5)
    inside = (x >= 0) & (x <= 1.5)
    assert np.abs(V - xb.v_read * x)[inside].max() <= step / 2 * (1 + 1e-12)


def test_one_bit_dac_passes_spikes():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(10, 4))
    spikes = (rng.random((50, 10)) < 0.3).astype(float)
    outs = []
    for bits in (None, 1):
        xb = Compact(dac_bits=bits)
        xb.program(W)
        outs.append(xb(spikes))
    # (one path multiplies by the folded weight map, the other combines the currents)
    np.testing.assert_allclose(outs[1], outs[0], rtol=0, atol=1e-12 * np.abs(outs[0]).max())


@pytest.mark.parametrize("bits", [2, 4, 6])
def test_adc_codes_per_column(bits):
    rng = np.random.default_rng(bits)
    xb = Compact(adc_bits=bits, adc_offset_sigma=0.02, adc_gain_sigma=0.05, seed=4)
    xb.program(rng.normal(size=(12, 5)))
    x = rng.random((3000, 12))
    currents = xb.bitline_currents(x)
    for column in currents.T:
        assert np.unique(column).size <= 2 ** bits
    adc = xb.adc()
    assert np.all(currents >= 0) and np.all(currents <= adc.full_scale * (1 + 1e-12))
    # outputs are combined from the digitised pair
    out = xb(x)
    expected = (currents[:, 0::2] - currents[:, 1::2]) / (xb.v_read * xb.scale * xb.read_factor)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())


def test_ideal_adc_error_within_half_a_step_and_auto_range():
    rng = np.random.default_rng(2)
    xb = Compact(adc_bits=8)
    xb.program(rng.normal(size=(16, 6)))
    analog = xb.analog_currents(np.ones(16))
    adc = xb.adc()
    assert adc.full_scale == pytest.approx(analog.max(), rel=1e-15)   # every row driven
    x = rng.random((500, 16))
    err = np.abs(xb.bitline_currents(x) - xb.analog_currents(x))
    assert err.max() <= adc.lsb / 2 * (1 + 1e-9)
    assert not xb.linear_forward()            # the read is no longer exactly x @ M


def test_adc_clips_at_a_given_range():
    rng = np.random.default_rng(5)
    W = rng.normal(size=(16, 6))
    xb = Compact(adc_bits=6, adc_range=1e-7)
    xb.program(W)
    x = np.ones((1, 16))
    assert xb.analog_currents(x).max() > 1e-7
    assert xb.bitline_currents(x).max() == pytest.approx(1e-7, rel=1e-12)


@pytest.mark.parametrize("bits", [1, 3, 6])
def test_bipolar_adc_codes_clipping_and_closed_form(bits):
    """Negative inputs give negative sense currents: the bipolar window [-I_range, I_range]
    keeps both signs (at most 2^b values per column, clipping at both ends), the unipolar
    one clips them to 0; every reported current is the closed form of the analog one."""
    rng = np.random.default_rng(10 + bits)
    W = rng.normal(size=(10, 4))
    x = rng.uniform(-1.0, 1.0, (4000, 10))
    unipolar = Compact(adc_bits=bits, adc_range=1e-7)
    unipolar.program(W)
    analog = unipolar.analog_currents(x)
    i_range = 0.5 * np.abs(analog).max()               # both signs clip
    assert analog.min() < -i_range and analog.max() > i_range
    xb = Compact(adc_bits=bits, adc_range=i_range, adc_bipolar=True)
    xb.program(W)
    np.testing.assert_array_equal(xb.analog_currents(x), analog)
    reported = xb.bitline_currents(x)
    for column in reported.T:
        assert np.unique(column).size <= 2 ** bits
    lsb = 2 * i_range / (2 ** bits - 1)
    expected = -i_range + np.rint((np.clip(analog, -i_range, i_range) + i_range) / lsb) * lsb
    np.testing.assert_allclose(reported, expected, rtol=0, atol=1e-12 * i_range)
    assert reported.min() == pytest.approx(-i_range, rel=1e-12)
    assert reported.max() == pytest.approx(i_range, rel=1e-12)
    codes = xb.adc().codes(analog)
    assert codes.min() == 0 and codes.max() == 2 ** bits - 1
    assert unipolar.adc().codes(analog).min() == 0 and unipolar.bitline_currents(x).min() == 0


def test_bipolar_adc_through_config_cli_and_model_file(tmp_path):
    import json

    from cosim.cli import main
    from cosim.config import build_crossbar, load_config
    from cosim.model import Model
    from cosim.network import SRNN

    section = load_config({"crossbar": {"backend": "compact", "adc_bits": 5,
                                        "adc_bipolar": True}})["crossbar"]
    xb = build_crossbar(section)
    assert xb.adc_bipolar is True
    assert build_crossbar(load_config({"crossbar": {"backend": "compact"}})["crossbar"]) \
        .adc_bipolar is False
    with pytest.raises(ValueError, match="adc_bipolar"):
        load_config({"crossbar": {"adc_bipolar": 1}})
    path = Model(SRNN(64, 5, 10, seed=0, neuron="lif", crossbar=xb)).save(tmp_path / "m.npz")
    assert Model.load(path).network.crossbar.adc_bipolar is True
    plain = Model(SRNN(64, 5, 10, seed=0, neuron="lif")).save(tmp_path / "p.npz")
    assert main(["compare", str(plain), "--backends", "ideal", "compact", "--adc-bits", "6",
                 "--adc-bipolar", "--samples", "3", "--steps", "8",
                 "--out", str(tmp_path / "cmp")]) == 0
    params = json.loads((tmp_path / "cmp" / "metrics.json").read_text())["backend_params"]
    assert params["adc_bipolar"] is True and params["adc_bits"] == 6


def test_adc_errors_are_seeded_and_drawn_once():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(8, 4))
    x = rng.random((100, 8))

    def read(seed):
        xb = Compact(adc_bits=10, adc_offset_sigma=0.05, adc_gain_sigma=0.05, seed=seed)
        xb.program(W)
        first = xb.bitline_currents(x)
        xb.program(W)                      # reprogramming keeps the physical converters
        return first, xb.bitline_currents(x)

    a, a2 = read(1)
    b, _ = read(1)
    c, _ = read(2)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, a2)
    assert np.abs(a - c).max() > 0


def test_new_parameters_round_trip_through_specs():
    xb = Compact(r_driver=25.0, r_sense=50.0, dac_bits=4, x_max=2.0, adc_bits=7,
                 adc_range=2e-6, adc_offset_sigma=0.01, adc_gain_sigma=0.02, read_time=5e-9,
                 adc_energy=1e-13, dac_energy=2e-14, adc_bipolar=True)
    back = from_spec(xb.to_spec())
    names = ("r_driver", "r_sense", "dac_bits", "x_max", "adc_bits", "adc_range",
             "adc_offset_sigma", "adc_gain_sigma", "read_time", "adc_energy", "dac_energy",
             "adc_bipolar")
    assert {k: back.get_params()[k] for k in names} == {k: xb.get_params()[k] for k in names}


@needs_spice
@pytest.mark.parametrize("read", ["linear", "nonlinear"])
def test_spice_agrees_on_currents_and_source_power(read):
    from cosim.crossbar import Spice

    rng = np.random.default_rng(11)
    W = rng.normal(size=(5, 3))
    x = (rng.random((4, 5)) < 0.6).astype(float)
    kw = dict(r_word=2.0, r_bit=3.0, r_driver=40.0, r_sense=70.0, read=read)
    compact, spice = Compact(**kw), Spice(cache=False, **kw)
    compact.program(W)
    spice.program(W)
    deck = spice.deck(v_word=compact.word_voltages(x[0]))
    assert "Rdrv0 in0 d0 {rdrv}" in deck and "Rsense0 s0 t0 {rsense}" in deck
    ic, isp = compact.bitline_currents(x), spice.bitline_currents(x)
    assert np.abs(ic - isp).max() <= 1e-9 * np.abs(ic).max()
    # the power drawn from the sources: nodal solve vs ngspice's -sum V_i i(vin<i>)
    x[0] = 1.0
    ours = compact.power(x)["sources"]
    theirs = spice.source_power_spice(x)
    assert np.abs(ours - theirs).max() <= 1e-9 * np.abs(theirs).max()
    np.testing.assert_allclose(spice.power(x)["sources"], ours, rtol=1e-12)


@needs_spice
def test_stiff_lines_behind_a_driver_converge_and_agree_with_ngspice():
    """Milliohm segments behind a 100 ohm driver: the word drops carry the driver's drop, so
    the residual's rounding floor (4 eps g_w |u|) lies above 1e-12; the nonlinear read stops
    at that floor (reported) once its steps are rounding noise, instead of failing, and its
    currents agree with ngspice."""
    from cosim.crossbar import Spice

    rng = np.random.default_rng(12)
    W = rng.uniform(-1, 1, size=(6, 5))
    x = (rng.random((3, 6)) < 0.6).astype(float)
    kw = dict(r_word=1e-3, r_bit=1e-3, r_driver=100.0, r_sense=50.0, read="nonlinear")
    compact, spice = Compact(**kw), Spice(cache=False, **kw)
    compact.program(W)
    spice.program(W)
    for sample in x:
        sol = compact.solution(sample)
        assert 1e-12 < sol.residual <= sol.residual_floor
        assert sol.method == "newton-fused"          # the compiled kernel stops there too
    ic, isp = compact.bitline_currents(x), spice.bitline_currents(x)
    assert np.abs(ic - isp).max() <= 1e-9 * np.abs(ic).max()


def test_tiled_arrays_keep_their_converters():
    from cosim.crossbar import build

    rng = np.random.default_rng(8)
    W = rng.normal(size=(10, 6))
    tiled = build("compact", max_array=(4, 3), adc_bits=3)
    tiled.program(W)
    x = rng.random((400, 10))
    out = tiled(x)
    expected = sum(np.pad(tile(np.ascontiguousarray(x[:, rs])),
                          ((0, 0), (cs.start, W.shape[1] - cs.stop)))
                   for rs, cs, tile in tiled.tiles)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12 * np.abs(out).max())
    assert not tiled.linear_forward()
    plain = build("compact", max_array=(4, 3))
    plain.program(W)
    assert plain.linear_forward()
    assert np.abs(out - plain(x)).max() > 1e-3 * np.abs(out).max()   # the ADC is felt


def test_nonlinear_weight_gradients_refuse_periphery_resistors():
    """The linear read's gradients include r_driver / r_sense (tests/test_hardware_aware.py);
    the nonlinear adjoint does not model them and says so."""
    xb, rng = Compact(r_sense=50.0, read="nonlinear"), np.random.default_rng(0)
    xb.program(rng.normal(size=(4, 3)))
    x = (rng.random((2, 4)) < 0.5).astype(float)
    with pytest.raises(NotImplementedError, match="r_sense = 50.0 ohm are not supported"):
        xb.vjp(x, np.ones((2, 3)))
