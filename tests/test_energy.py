"""Power of a read and energy of an inference (EQUATIONS.md §7): closed forms, Tellegen,
the energy bookkeeping of a run, configs and the CLI."""

import json

import numpy as np
import pytest

from cosim.crossbar import Compact
from cosim.network import SRNN

PERIPHERY = dict(r_word=2.0, r_bit=3.0, r_driver=40.0, r_sense=70.0)


def programmed(read="linear", shape=(6, 4), seed=0, wires=PERIPHERY, **kw):
    rng = np.random.default_rng(seed)
    xb = Compact(read=read, **wires, **kw)
    xb.program(rng.normal(size=shape))
    return xb, rng


@pytest.mark.parametrize("read", ["linear", "nonlinear"])
def test_single_cell_power_closed_form(read):
    rd, rw, rb, rs = 30.0, 1.5, 2.5, 70.0
    xb = Compact(r_word=rw, r_bit=rb, r_driver=rd, r_sense=rs, read=read, w_max=1.0)
    xb.program(np.array([[1.0]]))              # G+ at g_max, G- at g_min: a 1 x 2 array
    p = xb.power(np.array([1.0]))
    V = xb.v_read
    if read == "linear":
        # each column: cell g in series with r_bit + r_sense; the word line a 2-cell ladder
        g = xb.conductances[0] * xb.read_factor
        h = 1.0 / (1.0 / g + rb + rs)
        y1 = h[1]
        y0 = h[0] + 1.0 / (rw + 1.0 / y1)
        source = V / (rd + rw + 1.0 / y0)
        assert p["sources"] == pytest.approx(V * source, rel=1e-12)
        w0 = V - source * (rd + rw)
        i0 = w0 * h[0]
        i1 = source - i0
        w1 = w0 - i1 * rw
        devices = i0 ** 2 / g[0] + i1 ** 2 / g[1]
        wires = source ** 2 * (rd + rw) + i1 ** 2 * rw + (i0 ** 2 + i1 ** 2) * (rb + rs)
        assert w1 * h[1] == pytest.approx(i1, rel=1e-12)
        assert p["devices"] == pytest.approx(devices, rel=1e-12)
        assert p["wires"] == pytest.approx(wires, rel=1e-12)
    assert p["sources"] == pytest.approx(p["devices"] + p["wires"], rel=1e-12)


@pytest.mark.parametrize("read", ["linear", "nonlinear"])
@pytest.mark.parametrize("periphery", [PERIPHERY, dict(r_word=1.0, r_bit=1.0),
                                       dict(r_word=0.0, r_bit=2.0, r_sense=50.0),
                                       dict(r_word=2.0, r_bit=0.0, r_driver=50.0),
                                       dict(r_word=0.0, r_bit=0.0)])
def test_tellegen(read, periphery):
    xb, rng = programmed(read, shape=(7, 5), wires=periphery)
    x = (rng.random((6, 7)) < 0.5).astype(float)
    x[0] = 0.0                                     # no row driven: no power at all
    p = xb.power(x)
    assert set(p) == {"sources", "devices", "wires"}
    assert all(v.shape == (6,) for v in p.values())
    assert p["sources"][0] == 0 and p["devices"][0] == 0 and p["wires"][0] == 0
    np.testing.assert_allclose(p["devices"] + p["wires"], p["sources"], rtol=1e-12, atol=0)
    assert np.all(p["wires"] >= 0) and np.all(p["devices"][1:] > 0)
    if periphery.get("r_word") or periphery.get("r_bit"):
        assert np.all(p["wires"][1:] > 0)
    else:
        assert np.all(p["wires"] == 0)
    # the cheap source-power route (column marching) against the full forms
    np.testing.assert_allclose(xb.source_power(x), p["sources"], rtol=1e-12, atol=0)


@pytest.mark.parametrize("read", ["linear", "nonlinear"])
def test_tellegen_on_a_larger_array(read):
    xb, rng = programmed(read, shape=(48, 40), wires=dict(r_word=1.0, r_bit=1.0,
                                                          r_driver=100.0, r_sense=100.0))
    x = (rng.random((6, 48)) < 0.3).astype(float)
    p = xb.power(x)
    np.testing.assert_allclose(p["devices"] + p["wires"], p["sources"], rtol=1e-12, atol=0)


@pytest.mark.parametrize("shape", [(9, 4), (30, 7), (6, 11)])
@pytest.mark.parametrize("wires", [dict(r_word=1.0, r_bit=1.0),
                                   dict(r_word=2.0, r_bit=3.0, r_driver=40.0, r_sense=70.0),
                                   dict(r_word=1e3, r_bit=5e2, r_driver=1e4, r_sense=1e5)])
def test_source_admittance_by_rows_against_the_column_march_and_a_nodal_solve(shape, wires):
    """Two independent exact algorithms for Y (I_src = Y V), and the KCL-checked nodal
    solve of unit inputs (I_i = g_end (V_i - w(i, 0)))."""
    from cosim.crossbar.nodal import LinearArray
    from cosim.crossbar.nodal.kcl import end_conductance, segment_conductance
    from cosim.crossbar.nodal.transfer import source_admittance, source_admittance_by_rows

    rng = np.random.default_rng(shape[0])
    G = rng.uniform(1e-6, 1e-4, shape)
    gw = segment_conductance("r_word", wires["r_word"], "r_driver", wires.get("r_driver", 0))
    gb = segment_conductance("r_bit", wires["r_bit"], "r_sense", wires.get("r_sense", 0))
    by_rows = source_admittance_by_rows(G, gw, gb)
    np.testing.assert_allclose(by_rows, source_admittance(G, gw, gb), rtol=1e-12,
                               atol=1e-12 * np.abs(by_rows).max())
    assert np.array_equal(by_rows, by_rows.T)
    array = LinearArray(G, wires["r_word"], wires["r_bit"], r_driver=wires.get("r_driver", 0),
                        r_sense=wires.get("r_sense", 0), tol=1e-13)
    unit = np.eye(shape[0])
    sol = array.solve(unit, method="direct")
    drawn = end_conductance(gw) * (unit - sol.word_voltages[:, :, 0])     # row k: source k
    np.testing.assert_allclose(by_rows, drawn.T, rtol=1e-9, atol=1e-9 * np.abs(drawn).max())


@pytest.mark.parametrize("wires", [PERIPHERY, dict(r_word=1.0, r_bit=1.0)])
def test_source_power_of_a_readout_shaped_array(wires):
    """R > C (the readout: Y by the row march) against the full power forms (the R unit
    nodal solutions) and Tellegen."""
    xb, rng = programmed(shape=(24, 3), wires=wires)
    x = (rng.random((40, 24)) < 0.3).astype(float)
    x[3] = 0.0
    p = xb.power(x)
    np.testing.assert_allclose(xb.source_power(x), p["sources"], rtol=1e-12, atol=0)
    np.testing.assert_allclose(p["devices"] + p["wires"], p["sources"], rtol=1e-12, atol=0)
    assert xb.source_power(x)[3] == 0 and np.all(xb.source_power(x)[x.any(axis=1)] > 0)


@pytest.mark.parametrize("density,silent", [(0.02, 0), (0.5, 0), (0.5, 6)])
def test_energy_of_every_array_is_the_power_of_each_read(density, silent):
    """Every array's energy, read by read through the public source_power, when most reads
    drive nothing (only the driven ones evaluated), when all do, and when half the inputs
    never spike."""
    rng = np.random.default_rng(5)
    xb = Compact(**PERIPHERY, read_time=5e-9)
    net = SRNN(12, 9, 3, neuron="lif", seed=4, crossbar=xb, thr=0.2)
    x = (rng.random((3, 20, 12)) < density).astype(float)
    x[:, :, 12 - silent:] = 0.0
    record = net.run(x, energy=True)
    report = record.extras["energy"]
    arrays = {name: b for (name, d), b in net.backends().items()}
    z = record.z
    inputs = {"in": x, "rec": np.concatenate([np.zeros_like(z[:, :1]), z[:, :-1]], axis=1),
              "out": z}
    per_step = np.zeros((3, 20))
    for name, reads in inputs.items():
        by_hand = np.array([[float(arrays[name].source_power(reads[n, t])) for t in range(20)]
                            for n in range(3)]) * 5e-9
        np.testing.assert_allclose(report.per_array[name], by_hand.sum(axis=1), rtol=1e-12,
                                   atol=0)
        per_step += by_hand
    np.testing.assert_allclose(report.per_step, per_step.mean(axis=0), rtol=1e-12, atol=0)
    assert np.all(report.per_step[~(x.any(axis=2) | inputs["rec"].any(axis=2)
                                    | z.any(axis=2)).any(axis=0)] == 0)


@pytest.mark.parametrize("case", ["spikes", "graded", "nonlinear", "tiled"])
def test_energy_per_sample_and_step_is_the_sum_of_every_read(case):
    """The energy of a run summed read by read through the public source_power and the
    run's own array inputs (export.array_input), over 70 samples x 70 steps (the bit sets of
    spike reads take two 64-bit words per row both per sample and per step), two delays
    (reads shifted by 0, 1 and 2 steps), a DAC and an input value of 0.6; "graded" inputs
    (two values) and a nonlinear read are formed one read at a time instead, and tiles get
    their own sets."""
    from cosim.crossbar import build
    from cosim.export import array_input, physical_arrays

    rng = np.random.default_rng(8)
    params = dict(PERIPHERY, read_time=2e-9, dac_bits=3,
                  read="nonlinear" if case == "nonlinear" else "linear")
    if case == "tiled":
        params["max_array"] = (5, 4)
    net = SRNN(7, 6, 3, neuron="lif", seed=3, n_delay=2, thr=0.2,
               crossbar=build("compact", **params))
    samples, steps = (4, 24) if case == "nonlinear" else (70, 70)
    x = 0.6 * (rng.random((samples, steps, 7)) < 0.3)
    if case == "graded":
        x[0, 5, 2] = 0.3
    record = net.run(x, energy=True)
    report = record.extras["energy"]
    z = record.z
    per_step = np.zeros((samples, steps))
    for name, matrix, delay, rows, cols, backend in physical_arrays(net):
        reads = np.array([[array_input(matrix, delay, x[n], z[n], t)[rows]
                           for t in range(steps)] for n in range(samples)])
        by_hand = backend.source_power(reads) * 2e-9
        assert np.all(by_hand[~reads.any(axis=2)] == 0)
        np.testing.assert_allclose(report.per_array[name], by_hand.sum(axis=1), rtol=1e-12,
                                   atol=0)
        per_step += by_hand
    assert z[:, :-2].any() and len(report.per_array) >= (9 if case == "tiled" else 5)
    np.testing.assert_allclose(report.per_step, per_step.mean(axis=0), rtol=1e-12, atol=0)
    np.testing.assert_allclose(report.total, per_step.sum(axis=1), rtol=1e-12, atol=0)


@pytest.mark.parametrize("density", [0.0, 0.01, 0.03, 0.3, 1.0])
def test_source_power_of_sparse_and_dense_spike_reads_equals_the_nodal_solution(density):
    """The per-read source power (the energy hot path: few driven rows are summed one by one,
    many go through one triangular product) against the power of the solved circuit
    (R unit solutions, independent of the source admittance), on 100 rows."""
    xb, rng = programmed(shape=(100, 30), seed=3, wires=dict(r_word=1.0, r_bit=2.0,
                                                               r_driver=50.0, r_sense=20.0))
    x = (rng.random((400, 100)) < density).astype(float)
    x[:3] = 0.0
    x[3, 99] = 1.0                              # one read driving only the last row
    fast = xb.source_power(x)
    solved = xb.power(x)["sources"]
    np.testing.assert_allclose(fast, solved, rtol=1e-12, atol=0)
    assert np.all(fast[:3] == 0) and fast[3] > 0


def test_source_power_is_exact_when_the_activity_changes_within_and_across_chunks():
    """SourceForm picks its sparse or dense product per chunk of reads from a sample of the
    chunk's first reads: a chunk sparse at its start and dense after it, and a chunk dense
    at its start and sparse after it, both give the solved circuit's power."""
    from cosim.crossbar.nodal.power import SOURCE_FORM_CHUNK, SPARSE_SAMPLE
    xb, rng = programmed(shape=(60, 10), seed=4, wires=dict(r_word=1.0, r_bit=2.0,
                                                              r_driver=30.0, r_sense=10.0))
    B = SOURCE_FORM_CHUNK + 2 * SPARSE_SAMPLE + 40
    x = (rng.random((B, 60)) < 0.01).astype(float)
    x[SPARSE_SAMPLE:SOURCE_FORM_CHUNK] = rng.random((SOURCE_FORM_CHUNK - SPARSE_SAMPLE, 60))
    x[SOURCE_FORM_CHUNK:SOURCE_FORM_CHUNK + SPARSE_SAMPLE] = 1.0
    fast = xb.source_power(x)                   # all B reads, in chunks
    some = np.r_[0:8, SPARSE_SAMPLE - 4:SPARSE_SAMPLE + 4, SOURCE_FORM_CHUNK - 4:B]
    np.testing.assert_allclose(fast[some], xb.power(x[some])["sources"], rtol=1e-12, atol=0)


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (6, 1), (9, 2)])
def test_source_power_of_one_row_or_few_columns_equals_the_nodal_solution(shape):
    """The compiled marches at their smallest sizes (one word line; 2 or 4 bit lines, R > C:
    the row march) with driver and sense resistors: the source power against the solved
    circuit."""
    xb, rng = programmed(shape=shape, seed=5, wires=dict(r_word=2.0, r_bit=3.0,
                                                            r_driver=40.0, r_sense=25.0))
    x = (rng.random((20, shape[0])) < 0.5) * rng.uniform(0.2, 1.0, (20, shape[0]))
    np.testing.assert_allclose(xb.source_power(x), xb.power(x)["sources"], rtol=1e-12,
                               atol=0)


def test_power_is_quadratic_and_follows_the_dac():
    xb, rng = programmed(dac_bits=2)
    x = rng.random((5, 6))
    levels = np.rint(x * 3) / 3
    exact, _ = programmed()
    np.testing.assert_allclose(xb.source_power(x), exact.source_power(levels), rtol=1e-12)
    np.testing.assert_allclose(exact.source_power(2 * levels), 4 * exact.source_power(levels),
                               rtol=1e-12)


def test_energy_bookkeeping_of_a_run():
    rng = np.random.default_rng(0)
    xb = Compact(**PERIPHERY, read_time=5e-9, adc_energy=3e-14, dac_energy=1e-14)
    net = SRNN(6, 5, 3, neuron="lif", seed=1, crossbar=xb, thr=0.3)
    x = (rng.random((2, 8, 6)) < 0.4).astype(float)
    x[:, 3] = 0.0                                    # a step without input: no read
    record = net.run(x, energy=True)
    report = record.extras["energy"]
    arrays = {name: b for (name, d), b in net.backends().items()}
    # by hand, array "in": one read per step with a driven row
    xin = arrays["in"]
    expected = np.zeros(2)
    sops = np.zeros(2)
    for n in range(2):
        for t in range(8):
            active = int(np.count_nonzero(x[n, t]))
            if active:
                expected[n] += (xin.source_power(x[n, t]) * 5e-9 + 3e-14 * 2 * 5
                                + 1e-14 * active)
                sops[n] += active * 5
    np.testing.assert_allclose(report.per_array["in"], expected, rtol=1e-12)
    assert np.all(report.reads["in"] == np.count_nonzero(x.any(axis=2), axis=1))
    # "rec" reads the previous step's spikes, "out" this step's
    z = record.z
    assert np.all(report.reads["rec"] == np.count_nonzero(z[:, :-1].any(axis=2), axis=1))
    assert np.all(report.reads["out"] == np.count_nonzero(z.any(axis=2), axis=1))
    rec_sops = np.count_nonzero(z[:, :-1], axis=(1, 2)) * 5
    out_sops = np.count_nonzero(z, axis=(1, 2)) * 3
    np.testing.assert_array_equal(report.sops, sops + rec_sops + out_sops)
    # totals
    np.testing.assert_allclose(report.total, sum(report.per_array.values()), rtol=1e-12)
    np.testing.assert_allclose(report.total.mean(), report.per_step.sum(), rtol=1e-12)
    assert report.per_step[3] == 0 if not z[:, 2].any() else report.per_step[3] > 0
    assert report.joules_per_sop == pytest.approx(report.total.sum() / report.sops.sum())
    assert report.tops_per_watt == pytest.approx(2 * report.sops.sum()
                                                 / report.total.sum() / 1e12)
    summary = report.summary()
    assert summary["energy_per_inference_J"] == pytest.approx(report.total.mean())


def test_energy_in_batches_equals_one_run():
    """predict_with_energy (cosim predict) runs batches of uneven size; its report equals
    that of one run of all samples: per sample, per array, the per-step mean weighted by
    the batch sizes, and the labels."""
    from cosim.energy import predict_with_energy

    rng = np.random.default_rng(11)
    net = SRNN(6, 5, 3, neuron="lif", seed=2, crossbar=Compact(**PERIPHERY), thr=0.3)
    x = (rng.random((7, 12, 6)) < 0.4).astype(float)
    whole = net.run(x, energy=True)
    labels, report = predict_with_energy(net, x, batch_size=3)       # 3 + 3 + 1 samples
    np.testing.assert_array_equal(labels, whole.logits.argmax(axis=1))
    one = whole.extras["energy"]
    np.testing.assert_allclose(report.total, one.total, rtol=1e-12, atol=0)
    for name in one.per_array:
        np.testing.assert_allclose(report.per_array[name], one.per_array[name], rtol=1e-12,
                                   atol=0)
        np.testing.assert_array_equal(report.reads[name], one.reads[name])
    np.testing.assert_allclose(report.per_step, one.per_step, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(report.sops, one.sops)


def test_source_form_set_sums_refuses_sets_and_masks_of_the_wrong_shape():
    """The compiled popcount loop reads sets and mask unchecked: bad shapes and types are
    refused at the public method, naming the argument."""
    from cosim.crossbar.nodal.power import SourceForm

    form = SourceForm(np.eye(3))
    good = np.zeros((2, 1, 3), np.uint64)
    with pytest.raises(ValueError, match="sets must be"):
        form.set_sums(np.zeros((2, 3), np.uint64))
    with pytest.raises(ValueError, match="sets must be"):
        form.set_sums(good.astype(float))
    with pytest.raises(ValueError, match="sets have 4 rows"):
        form.set_sums(np.zeros((2, 1, 4), np.uint64))
    with pytest.raises(ValueError, match="mask must be"):
        form.set_sums(good, np.zeros(2, np.uint64))
    with pytest.raises(ValueError, match="mask must be"):
        form.set_sums(good, np.zeros(1, np.int64))
    assert np.all(form.set_sums(good) == 0)


def test_energy_needs_physical_arrays():
    net = SRNN(4, 3, 2, seed=0)
    with pytest.raises(TypeError, match="energy needs physical arrays"):
        net.run(np.ones((1, 3, 4)), energy=True)


def test_energy_of_tiled_arrays_adds_up():
    from cosim.crossbar import build

    rng = np.random.default_rng(3)
    x = (rng.random((2, 6, 8)) < 0.5).astype(float)
    # a fixed w_max: every tile maps a weight to the same conductance as the whole array
    params = dict(r_word=0.0, r_bit=0.0, w_max=10.0)
    whole = SRNN(8, 6, 3, seed=2, crossbar=build("compact", **params))
    tiled = SRNN(8, 6, 3, seed=2, crossbar=build("compact", max_array=(4, 4), **params))
    a = whole.run(x, energy=True).extras["energy"]
    b = tiled.run(x, energy=True).extras["energy"]
    # without wires the source power is additive over tiles (V^2 G summed over cells)
    np.testing.assert_allclose(b.total, a.total, rtol=1e-12)
    np.testing.assert_array_equal(b.sops, a.sops)


def test_exported_decks_state_the_periphery_and_the_source_power(tmp_path):
    from cosim.export import export_netlists
    from cosim.model import Model

    rng = np.random.default_rng(0)
    net = SRNN(6, 4, 2, seed=0, crossbar=Compact(**PERIPHERY))
    x = (rng.random((2, 5, 6)) < 0.5).astype(float)
    result = export_netlists(Model(net), tmp_path / "decks", x, sample=0, step=2, tran=False)
    manifest = json.loads((tmp_path / "decks" / "manifest.json").read_text())
    deck = (tmp_path / "decks" / "in.cir").read_text()
    assert "r_driver = 40.0 Ohm, r_sense = 70.0 Ohm" in deck
    assert "Rdrv0 in0 d0 {rdrv}" in deck and "Rsense0 s0 t0 {rsense}" in deck
    entry = manifest["in.cir"]
    power = net.backends()[("in", 1)].source_power(np.array(entry["inputs"]))
    assert entry["source_power_W"] == pytest.approx(float(power), rel=1e-15)
    assert f"expected source power: {float(power)!r} W" in deck
    assert len(result["decks"]) == 3


def test_config_and_model_file_keep_the_periphery(tmp_path):
    from cosim.config import ConfigError, build_crossbar, load_config
    from cosim.model import Model

    config = load_config({"crossbar": {"backend": "compact", "r_driver": 20.0,
                                       "r_sense": 30.0, "adc_bits": 6, "dac_bits": 3,
                                       "adc_range": 1e-6, "read_time": 2e-9,
                                       "adc_energy": 1e-13}})
    xb = build_crossbar(config["crossbar"])
    assert (xb.r_driver, xb.r_sense, xb.adc_bits, xb.dac_bits, xb.adc_range) == \
        (20.0, 30.0, 6, 3, 1e-6)
    assert build_crossbar(load_config({"crossbar": {"backend": "compact"}})["crossbar"]) \
        .adc_range == "auto"
    with pytest.raises(ConfigError, match=r"\[crossbar\] adc_bits must be None"):
        load_config({"crossbar": {"adc_bits": 40}})
    with pytest.raises(ConfigError, match=r"\[crossbar\] r_sense must lie in \[0, 1e\+12\]"):
        load_config({"crossbar": {"r_sense": -1.0}})
    net = SRNN(4, 3, 2, seed=0, crossbar=xb)
    path = Model(net).save(tmp_path / "m.npz")
    loaded = Model.load(path).network.crossbar
    for key in ("r_driver", "r_sense", "adc_bits", "dac_bits", "adc_range", "read_time",
                "adc_energy"):
        assert getattr(loaded, key) == getattr(xb, key)


def test_cli_predict_and_compare_print_energy(tmp_path, capsys):
    from cosim.cli import main
    from cosim.model import Model

    net = SRNN(64, 8, 10, seed=0, neuron="lif")
    path = Model(net).save(tmp_path / "m.npz")
    assert main(["predict", str(path), "--backend", "compact", "--r-sense", "50",
                 "--r-driver", "20", "--adc-bits", "8", "--samples", "4", "--steps", "10",
                 "--out", str(tmp_path / "p.json")]) == 0
    out = capsys.readouterr().out
    assert "energy per inference" in out and "fJ per synaptic operation" in out
    assert "TOPS/W" in out
    saved = json.loads((tmp_path / "p.json").read_text())
    assert saved["energy"]["energy_per_inference_J"] > 0
    assert main(["compare", str(path), "--backends", "ideal", "compact", "--samples", "3",
                 "--steps", "10", "--r-sense", "50", "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "energy per inference" in out and "TOPS/W" in out
    report = (tmp_path / "cmp" / "report.md").read_text()
    assert "energy.png" in report and "fJ per SOP" in report
    metrics = json.loads((tmp_path / "cmp" / "metrics.json").read_text())
    assert metrics["backend_params"]["r_sense"] == 50.0
    assert len(metrics["energy"]["compact"]["per_step_J"]) == 10


def test_cli_netlist_writes_the_periphery(tmp_path):
    from cosim.cli import main
    from cosim.model import Model

    path = Model(SRNN(64, 6, 10, seed=0, neuron="lif")).save(tmp_path / "m.npz")
    assert main(["netlist", str(path), "--out", str(tmp_path / "d"), "--r-driver", "20",
                 "--r-sense", "50", "--no-tran", "--steps", "10", "--quiet"]) == 0
    deck = (tmp_path / "d" / "rec.cir").read_text()
    assert "r_driver = 20.0 Ohm, r_sense = 50.0 Ohm" in deck
    assert ".param rdrv = 20.0 rsense = 50.0" in deck
    assert "* expected source power:" in deck


def test_compare_energy_names_its_samples_and_spice_matches_compact_on_them(tmp_path):
    """compare runs spice on fewer samples than compact: each energy entry says over how
    many, and on the same samples ngspice's arrays give compact's energy (same circuit)."""
    from cosim.compare import compare
    from cosim.model import Model

    net = SRNN(64, 8, 10, seed=0, neuron="lif")
    x = (np.random.default_rng(3).random((4, 6, 64)) < 0.3).astype(float)
    y = np.zeros(4, dtype=int)
    metrics = compare(Model(net), x, y, backends=("ideal", "compact", "spice"),
                      spice_samples=2, backend_params={"r_sense": 50.0})
    energy = metrics["energy"]
    assert energy["compact"]["samples"] == 4 and energy["spice"]["samples"] == 2
    same = net.with_crossbar(Compact(r_word=1.0, r_bit=1.0, r_sense=50.0))
    on_two = same.run(x[:2], energy=True).extras["energy"].summary()
    assert energy["spice"]["energy_per_inference_J"] == pytest.approx(
        on_two["energy_per_inference_J"], rel=1e-9)
