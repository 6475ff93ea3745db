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
