"""`cosim compare` end to end on a tiny model: files and numbers."""

import json

import pytest

from cosim import Model
from cosim.cli import main
from cosim.compare import compare
from cosim.data import load_digits
from cosim.network import SRNN
from _spice import require_ngspice  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    (x, y), (x_test, y_test) = load_digits(T=20)
    net = SRNN(64, 10, 10, neuron="lif", seed=1)
    model = Model(net, lr=5e-3)
    model.train(x[:300], y[:300], epochs=3, progress=False)
    path = tmp_path_factory.mktemp("m") / "tiny.npz"
    model.save(path)
    return path, model, x_test[:6], y_test[:6]


def test_compare_ideal_compact_numbers(tiny, tmp_path):
    path, model, x, y = tiny
    metrics = compare(path, x, y, backends=("ideal", "compact"), samples=6, out=tmp_path,
                      r_word=0.0, r_bit=0.0)
    # with no wire resistance the compact arrays compute the ideal product: identical spikes
    assert metrics["reference"] == "compact"
    assert metrics["spikes"]["ideal"]["agreement_vs_compact_percent"] == 100.0
    assert metrics["spikes"]["ideal"]["first_divergent_step_vs_compact"] is None
    assert metrics["accuracy"]["ideal"] == metrics["accuracy"]["compact"] == model.evaluate(x, y)
    for array, per in metrics["currents"].items():
        assert per["ideal"]["max_rel"] < 1e-12
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["accuracy"] == metrics["accuracy"]


def test_compare_wire_resistance_changes_currents_and_report(tiny, tmp_path):
    path, model, x, y = tiny
    metrics = compare(path, x, y, backends=("ideal", "compact"), samples=3, out=tmp_path,
                      r_word=50.0, r_bit=50.0, sweep=[0.0, 50.0, 5000.0])
    err = metrics["currents"]["in"]["ideal"]
    assert 1e-4 < err["max_rel"] < 1 and err["mean_rel"] <= err["max_rel"]
    accs = [row["accuracy"] for row in metrics["sweep"]]
    assert accs[0] == model.evaluate(x[:3], y[:3])
    for name in ("raster_overlay.png", "current_errors.png", "accuracy_vs_resistance.png",
                 "ir_drop_in.png", "report.md", "metrics.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    report = (tmp_path / "report.md").read_text()
    assert "![Spike raster overlay](raster_overlay.png)" in report
    assert f"{err['max_rel']:.2e}" in report


@pytest.mark.spice
def test_cli_compare_with_spice(tiny, tmp_path, capsys):
    require_ngspice()
    path, model, x, y = tiny
    assert main(["compare", str(path), "--out", str(tmp_path), "--samples", "3", "--steps", "20",
                 "--quiet"]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["reference"] == "spice"
    assert metrics["spikes"]["compact"]["agreement_vs_spice_percent"] == 100.0
    for per in metrics["currents"].values():
        assert per["compact"]["max_rel"] < 1e-9
    assert "report:" in capsys.readouterr().out


def test_compare_bad_input(tiny):
    path, model, x, y = tiny
    with pytest.raises(ValueError, match="backend"):
        compare(path, x, y, backends=("ideal", "quantum"))
    with pytest.raises(ValueError, match="labels"):
        compare(path, x, y + 20, backends=("ideal",))
    with pytest.raises(ValueError, match="x"):
        compare(path, x[:, :, :10], y, backends=("ideal",))


COMBINATIONS = [("ideal",), ("compact",), ("ideal", "compact"), ("compact", "ideal"),
                ("spice",), ("ideal", "spice"), ("compact", "spice"),
                ("ideal", "compact", "spice"), ("spice", "ideal")]


@pytest.mark.parametrize("backends", [
    pytest.param(b, marks=[pytest.mark.spice] if "spice" in b else []) for b in COMBINATIONS],
    ids=["+".join(b) for b in COMBINATIONS])
def test_every_backend_combination(tiny, tmp_path, backends):
    """Issue 10 item 13: `--backends ideal spice` crashed in the IR-drop maps."""
    if "spice" in backends:
        require_ngspice()
    path, model, x, y = tiny
    metrics = compare(path, x, y, backends=backends, samples=4, spice_samples=2, out=tmp_path,
                      r_word=2.0, r_bit=2.0)
    assert metrics["backends"] == list(backends)
    expected_ref = "spice" if "spice" in backends else ("compact" if "compact" in backends
                                                        else backends[-1])
    assert metrics["reference"] == expected_ref
    for name in backends:
        n = 2 if name == "spice" else 4
        assert metrics["samples_per_backend"][name] == n
        low, high = metrics["accuracy_ci95"][name]
        assert 0.0 <= low <= metrics["accuracy"][name] <= high <= 1.0
    if "ideal" in backends:
        assert metrics["accuracy"]["ideal"] == model.evaluate(x[:4], y[:4])
    # every physical comparison of a non-reference backend is present and finite
    if expected_ref != "ideal":
        for per in metrics["currents"].values():
            assert set(per) == ({"ideal"} | set(backends)) - {expected_ref}
    # IR-drop maps exist whenever there is a circuit (a compact twin of the settings)
    assert (tmp_path / "ir_drop_in.png").is_file()
    assert (tmp_path / "report.md").is_file()
    if "spice" in backends and "compact" in backends:
        for per in metrics["currents"].values():
            assert per["compact"]["max_rel"] < 1e-9


def test_compare_full_test_set_and_interval(tiny, tmp_path):
    """Issue 15 item 11: fast backends run every sample; N and a 95 % interval are reported."""
    path, model, x, y = tiny
    metrics = compare(path, x, y, backends=("ideal", "compact"), out=tmp_path)
    assert metrics["samples_per_backend"] == {"ideal": len(y), "compact": len(y)}
    k = round(metrics["accuracy"]["ideal"] * len(y))
    from cosim.stats import wilson_interval
    assert metrics["accuracy_ci95"]["ideal"] == list(wilson_interval(k, len(y)))
    report = (tmp_path / "report.md").read_text()
    assert "| N |" in report and "95 %" in report


def test_wilson_interval_closed_form():
    from cosim.stats import wilson_interval
    # 5 of 5: the interval is [n/(n+z^2), 1] in closed form, not the point [1, 1]
    z = 1.959963984540054
    low, high = wilson_interval(5, 5)
    assert high == 1.0 and abs(low - 5 / (5 + z * z)) < 1e-12
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and abs(high - z * z / (10 + z * z)) < 1e-12
    # symmetric around 1/2 at k = n/2
    low, high = wilson_interval(50, 100)
    assert abs((low + high) / 2 - 0.5) < 1e-12


def _assert_same_run(spread, serial):
    """Spikes, accuracies and counts equal; the current errors (re-read here through ngspice,
    whose solves repeat to ~1e-13) equal to 1e-11 of the largest current."""
    assert ({k: v for k, v in spread.items() if k not in ("seconds", "currents")}
            == {k: v for k, v in serial.items() if k not in ("seconds", "currents")})
    assert spread["currents"].keys() == serial["currents"].keys()
    for array, per in serial["currents"].items():
        for name, err in per.items():
            for key, value in err.items():
                assert spread["currents"][array][name][key] == pytest.approx(value, abs=1e-11)


@pytest.mark.spice
def test_spice_samples_spread_over_workers_give_the_serial_result(tiny, tmp_path):
    """Issue 12 item 4: the spice samples on 2 spawned processes (each its own ngspice, its
    own empty disk cache) give the metrics of the serial run, number for number."""
    require_ngspice()
    path, _, x, y = tiny
    common = dict(backends=("compact", "spice"), samples=4, spice_samples=4, read="nonlinear")
    serial = compare(path, x, y, cache=tmp_path / "cache1", workers=1, **common)
    spread = compare(path, x, y, cache=tmp_path / "cache2", workers=2, **common)
    assert serial["samples_per_backend"]["spice"] == 4
    _assert_same_run(spread, serial)


@pytest.mark.spice
def test_spice_samples_on_a_dask_cluster_give_the_serial_result(tiny, tmp_path):
    require_ngspice()
    distributed = pytest.importorskip("distributed")       # an optional dependency
    path, _, x, y = tiny
    common = dict(backends=("compact", "spice"), samples=3, spice_samples=3, read="nonlinear")
    serial = compare(path, x, y, cache=tmp_path / "cache1", **common)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        spread = compare(path, x, y, cache=tmp_path / "cache2", scheduler=cluster.scheduler_address,
                         **common)
    _assert_same_run(spread, serial)


def test_compare_rejects_bad_workers_and_scheduler(tiny, capsys):
    path, _, x, y = tiny
    with pytest.raises(ValueError, match="workers"):
        compare(path, x, y, backends=("ideal",), workers=0)
    from cosim.sweep import SchedulerError
    with pytest.raises(SchedulerError, match="scheduler"):
        compare(path, x, y, backends=("ideal",), scheduler="localhost:8786")
    assert main(["compare", str(path), "--scheduler", "not an address", "--quiet"]) == 2
    assert "scheduler" in capsys.readouterr().err
    # a scheduler that is neither an address nor a Client fails before any backend runs
    runs = []
    with pytest.raises(TypeError, match="Client"):
        compare(path, x, y, backends=("ideal", "spice"), scheduler=8786,
                progress=lambda *a, **k: runs.append(a))
    assert runs == []
