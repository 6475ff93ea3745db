"""`cosim netlist` end to end: the decks run unchanged in plain ngspice and reproduce cosim."""

import json
import subprocess

import numpy as np
import pytest

from cosim import Model
from cosim.cli import main
from cosim.data import load_digits
from cosim.network import SRNN
from cosim.spice import ngspice
from cosim.spice.netlist import check_deck_safe
from _spice import printed_currents, require_ngspice  # noqa: E402

pytestmark = pytest.mark.spice


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    require_ngspice()
    (x, y), _ = load_digits(T=20)
    net = SRNN(64, 6, 10, neuron="alif", n_adaptive=3, n_delay=2, seed=0)
    Model(net, lr=5e-3).train(x[:200], y[:200], epochs=2, progress=False)
    path = tmp_path_factory.mktemp("model") / "tiny.npz"
    Model(net).save(path)
    return path


def run_plain_ngspice(deck, workdir):
    raw = workdir / (deck.stem + ".raw")
    proc = subprocess.run(["ngspice", "-b", "-r", str(raw), str(deck)], cwd=workdir,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    plots = ngspice.parse_raw(raw)
    return plots[-1]["vectors"], proc.stdout


def test_netlist_decks_reproduce_cosim_currents(tiny_model, tmp_path, capsys):
    out = tmp_path / "decks"
    assert main(["netlist", str(tiny_model), "--out", str(out), "--sample", "2", "--step", "7",
                 "--steps", "20"]) == 0
    expected = json.loads((out / "expected_currents.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    decks = sorted(out.glob("*.cir"))
    # n_delay = 2: two input slices, two recurrent slices, one readout
    assert sorted(d.name for d in decks) == ["in_d1.cir", "in_d2.cir", "out.cir", "rec_d1.cir",
                                             "rec_d2.cir"]
    assert set(expected) == {d.name for d in decks} == set(manifest)
    assert sorted(p.name for p in (out / "tran").glob("*.cir")) == sorted(expected)
    driven = 0
    for deck in decks:
        text = deck.read_text()
        check_deck_safe(text)
        n_cols = len(expected[deck.name])
        assert n_cols == manifest[deck.name]["shape"][1]
        for j in range(n_cols):
            assert f"Vsense{j} " in text
        vectors, _ = run_plain_ngspice(deck, tmp_path)
        got = np.array([float(np.ravel(vectors[f"i(vsense{j})"])[0]) for j in range(n_cols)])
        want = np.array(expected[deck.name])
        if np.abs(want).max() == 0:
            assert np.abs(got).max() < 1e-15
            continue
        driven += 1
        assert np.abs(got - want).max() <= 1e-9 * np.abs(want).max()
        # what a plain `ngspice -b deck.cir` prints says the same, to >= 12 digits
        printed = subprocess.run(["ngspice", "-b", str(deck)], capture_output=True, text=True,
                                 timeout=300, cwd=tmp_path).stdout
        exact, shown = printed_currents(printed, text)
        assert shown.size == n_cols
        assert np.abs(shown - want).max() <= 1e-6 * np.abs(want).max()     # 7 digits
        assert np.abs(exact - want).max() <= 1e-9 * np.abs(want).max()
    assert driven >= 2


def test_tran_deck_replays_the_spike_train(tiny_model, tmp_path):
    out = tmp_path / "decks"
    step = 3
    assert main(["netlist", str(tiny_model), "--out", str(out), "--sample", "0", "--step",
                 str(step), "--steps", "20", "--step-time", "1e-6"]) == 0
    expected = json.loads((out / "expected_currents.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    # the smallest array that the chosen step drives (full-cell transients are slow)
    driven = [n for n in expected if np.abs(expected[n]).max() > 0]
    name = min(driven, key=lambda n: np.prod(manifest[n]["shape"]))
    vectors, _ = run_plain_ngspice(out / "tran" / name, tmp_path)
    time = np.ravel(vectors["time"])
    # middle of timestep `step`'s plateau
    k = np.argmin(np.abs(time - (step + 0.5) * 1e-6))
    got = np.array([np.ravel(vectors[f"i(vsense{j})"])[k] for j in range(len(expected[name]))])
    want = np.array(expected[name])
    assert np.abs(want).max() > 0
    assert np.abs(got - want).max() <= 1e-6 * np.abs(want).max()


def test_bad_netlist_arguments(tiny_model, tmp_path, capsys):
    assert main(["netlist", str(tiny_model), "--out", str(tmp_path), "--step", "99",
                 "--steps", "20"]) == 2
    assert "step" in capsys.readouterr().err
    assert main(["netlist", str(tmp_path / "missing.npz"), "--out", str(tmp_path)]) == 2


def test_tiled_model_gets_one_deck_per_tile(tmp_path):
    from cosim.crossbar import Compact, Tiled
    require_ngspice()
    (x, y), _ = load_digits(T=20)
    net = SRNN(64, 6, 10, neuron="lif", seed=0,
               crossbar=Tiled(Compact(read="nonlinear"), max_array=(32, 4)))
    path = Model(net).save(tmp_path / "tiled.npz")
    out = tmp_path / "decks"
    assert main(["netlist", str(path), "--out", str(out), "--step", "4", "--steps", "20",
                 "--no-tran"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    by_matrix = {}
    for name, info in manifest.items():
        by_matrix.setdefault(info["matrix"], []).append(info)
    # in: 64x6 -> 2 row blocks x 2 column blocks; rec: 6x6 -> 1 x 2; out: 6x10 -> 1 x 3
    assert {k: len(v) for k, v in by_matrix.items()} == {"in": 4, "rec": 2, "out": 3}
    covered = np.zeros((64, 6), int)
    for info in by_matrix["in"]:
        (r0, r1), (c0, c1) = info["weight_rows"], info["weight_cols"]
        covered[r0:r1, c0:c1] += 1
    assert np.all(covered == 1)
    expected = json.loads((out / "expected_currents.json").read_text())
    for name in expected:
        if np.abs(expected[name]).max() > 0:
            vectors, _ = run_plain_ngspice(out / name, tmp_path)
            got = np.array([float(np.ravel(vectors[f"i(vsense{j})"])[0])
                            for j in range(len(expected[name]))])
            assert np.abs(got - expected[name]).max() <= 1e-6 * np.abs(expected[name]).max()


def test_api_default_arrays_match_the_cli(tiny_model, tmp_path):
    """An ideal model exported from Python gets the arrays `cosim netlist` picks: same decks."""
    from cosim.export import export_netlists
    from cosim.config import build_data
    _, (x_test, _) = build_data({"encoding": "rate", "T": 20, "seed": 0, "resample": True,
                                 "dataset": "digits", "path": ""})     # the CLI's test set
    api, cli = tmp_path / "api", tmp_path / "cli"
    export_netlists(Model.load(tiny_model), api, x_test, sample=1, step=5, tran=False)
    assert main(["netlist", str(tiny_model), "--out", str(cli), "--sample", "1", "--step", "5",
                 "--steps", "20", "--no-tran"]) == 0
    decks = sorted(p.name for p in api.glob("*.cir"))
    assert decks and decks == sorted(p.name for p in cli.glob("*.cir"))
    for name in decks:
        assert (api / name).read_text() == (cli / name).read_text(), name
    assert (json.loads((api / "expected_currents.json").read_text())
            == json.loads((cli / "expected_currents.json").read_text()))
