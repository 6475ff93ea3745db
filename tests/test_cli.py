"""The command line: help everywhere, config errors that name the key, train/predict/sweep."""

import json

import pytest

from cosim.cli import build_parser, main
from cosim.config import ConfigError, load_config

COMMANDS = ["demo", "train", "predict", "compare", "netlist", "sweep"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_on_every_command(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "usage: cosim " + command in capsys.readouterr().out


def test_parser_knows_all_commands():
    parser = build_parser()
    text = parser.format_help()
    for command in COMMANDS:
        assert command in text


@pytest.mark.parametrize("toml,where", [
    ("[training]\nepochs = \"ten\"\n", "[training] epochs"),
    ("[training]\nlr = -1.0\n", "[training] lr"),
    ("[network]\nneuron = \"hh\"\n", "[network] neuron"),
    ("[crossbar]\nbackend = \"quantum\"\n", "[crossbar] backend"),
    ("[crossbar]\nr_word = -1\n", "[crossbar] r_word"),
    ("[crossbar]\nmax_array = [128]\n", "[crossbar] max_array"),
    ("[network]\nn_rec = 10\nn_adaptive = 20\n", "[network] n_adaptive"),
    ("[network.neuron]\ntau = \"slow\"\n", "[network.neuron] tau"),
    ("[network.neuron]\ntau_m = 5.0\n", "[network.neuron]"),
    ("[trainig]\nepochs = 1\n", "unknown table"),
    ("[training]\nepoch = 1\n", "[training]"),
    ("[data\n", "not valid TOML"),
])
def test_bad_config_names_the_key(tmp_path, toml, where):
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert where in str(exc.value)


def test_train_predict_sweep_from_config(tmp_path, capsys):
    model = tmp_path / "m.npz"
    config = tmp_path / "c.toml"
    config.write_text(f"""
[data]
T = 20
[network]
n_rec = 12
neuron = "lif"
[training]
epochs = 2
lr = 0.005
[crossbar]
backend = "compact"
r_word = 1.0
r_bit = 1.0
[output]
model = "{model}"
""")
    assert main(["train", str(config), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and model.is_file()
    history = json.loads(model.with_suffix(".history.json").read_text())
    assert len(history["history"]["loss"]) == 2
    assert main(["predict", str(model), "--steps", "20", "--samples", "40",
                 "--out", str(tmp_path / "p.json")]) == 0
    pred = json.loads((tmp_path / "p.json").read_text())
    assert pred["backend"] == "compact" and len(pred["predictions"]) == 40
    assert abs(pred["accuracy"] - sum(p == t for p, t in zip(pred["predictions"], pred["labels"])) / 40) < 1e-12
    assert main(["sweep", str(model), "--grid", "r=0,100", "--steps", "20", "--samples", "40",
                 "--workers", "1", "--out", str(tmp_path / "sw"), "--quiet"]) == 0
    rows = json.loads((tmp_path / "sw" / "results.json").read_text())
    assert [row["r"] for row in rows] == [0.0, 100.0]
    assert (tmp_path / "sw" / "results.csv").is_file() and (tmp_path / "sw" / "sweep.png").is_file()


def test_cli_errors_are_clean(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[training]\nepochs = 0\n")
    assert main(["train", str(bad)]) == 2
    assert "[training] epochs" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "none.npz")]) == 2
