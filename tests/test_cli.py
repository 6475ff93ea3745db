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


# ------------------------------------------------------------------------------ console script

import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

COSIM = Path(sys.executable).with_name("cosim")


def run(args, cwd, timeout=300, **kw):
    """The installed console script, in a temporary folder (not the repository)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", **kw.pop("env", {}))
    return subprocess.run([str(COSIM), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env, **kw)


def toy_data(path, n=60, steps=12, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = (rng.random((n, steps, 6)) < 0.1).astype(float)
    for c in range(3):
        x[y == c, :, 2 * c:2 * c + 2] = rng.random(((y == c).sum(), steps, 2)) < 0.6
    np.savez(path, x=x[:40], y=y[:40], x_test=x[40:], y_test=y[40:])
    return x[40:], y[40:]


@pytest.fixture(scope="module")
def own_data_model(tmp_path_factory):
    """`cosim train` on the user's own .npz data ([data] path) in a temporary folder."""
    folder = tmp_path_factory.mktemp("own")
    x_test, y_test = toy_data(folder / "data.npz")
    (folder / "c.toml").write_text('[data]\npath = "data.npz"\n[network]\nn_rec = 10\n'
                                   'neuron = "lif"\n[training]\nepochs = 3\nlr = 0.02\n'
                                   '[output]\nmodel = "model.npz"\n')
    proc = run(["train", "c.toml"], cwd=folder)
    assert proc.returncode == 0, proc.stderr
    return folder, x_test, y_test, proc


def test_python_dash_m_cosim(tmp_path):
    """Issue 15 item 2."""
    proc = subprocess.run([sys.executable, "-m", "cosim", "--version"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("cosim ")
    proc = subprocess.run([sys.executable, "-m", "cosim", "predict", "--samples", "-1", "x"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--samples" in proc.stderr


def test_own_data_train_predict_and_run_json(own_data_model):
    """Issue 15 items 12 and 13: --data / [data] path, and run.json next to every output."""
    folder, x_test, y_test, train = own_data_model
    assert "on 20 samples" in train.stdout                    # the file's own test set
    info = json.loads((folder / "model.run.json").read_text())
    for key in ("cosim_version", "git_commit", "python", "numpy", "scipy", "ngspice",
                "command_line", "seeds", "device_card"):
        assert key in info, key
    assert info["command_line"] == ["cosim", "train", "c.toml"]
    assert len(info["device_card"]["sha256"]) == 64
    proc = run(["predict", "model.npz", "--data", "data.npz", "--out", "p.json", "--quiet"],
               cwd=folder)
    assert proc.returncode == 0, proc.stderr
    pred = json.loads((folder / "p.json").read_text())
    assert pred["labels"] == y_test.tolist() and pred["n"] == 20
    acc = float(np.mean(np.array(pred["predictions"]) == y_test))
    assert pred["accuracy"] == acc and pred["ci95"][0] <= acc <= pred["ci95"][1]
    assert "95 % CI" in proc.stdout and "N = 20" in proc.stdout
    assert json.loads((folder / "p.run.json").read_text())["command"] == "predict"


def test_progress_is_plain_lines_off_a_terminal(own_data_model):
    """Issue 15 item 9: no bar redraws (carriage returns) in a log, just a few lines."""
    folder, *_ = own_data_model
    proc = run(["compare", "model.npz", "--data", "data.npz", "--backends", "ideal",
                "compact", "--out", "cmp"], cwd=folder)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("compare: ")]
    assert lines and lines[-1].endswith("(100 %)")
    assert (folder / "cmp" / "run.json").is_file()
    assert "N =   20" in proc.stdout
    quiet = run(["compare", "model.npz", "--data", "data.npz", "--backends", "ideal",
                 "--out", "cmp2", "--quiet"], cwd=folder)
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_errors_have_no_traceback_unless_debug(own_data_model):
    folder, *_ = own_data_model
    proc = run(["predict", "model.npz", "--data", "c.toml"], cwd=folder)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "c.toml" in proc.stderr
    debug = run(["predict", "model.npz", "--data", "c.toml", "--debug"], cwd=folder)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_common_options_on_every_command(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    for option in ("--quiet", "--log-level", "--debug"):
        assert option in text, option
    if command in ("demo", "compare", "predict", "netlist"):
        assert "--r-word" in text and "--r-bit" in text and "--read" in text
    if command != "train":
        assert "--seed" in text


def test_one_read_default_and_step_default(capsys):
    """Issue 15 item 10: --read defaults to linear in every command that builds arrays."""
    from cosim.cli import DEFAULT_READ
    parser = build_parser()
    assert DEFAULT_READ == "linear"
    assert parser.parse_args(["demo"]).read == DEFAULT_READ
    from cosim.cli import _compare_arrays
    from cosim.crossbar import Ideal
    # compare builds the arrays of an ideal model from the options: linear unless told
    assert _compare_arrays(parser.parse_args(["compare", "m"]), Ideal())["read"] == DEFAULT_READ
    assert parser.parse_args(["netlist", "m", "--out", "d"]).step is None     # T/2 as compare
    assert parser.parse_args(["compare", "m"]).step is None


def test_sweep_grid_accepts_the_option_vocabulary():
    from cosim.cli import parse_grid
    assert parse_grid(["r-word=0,1", "r-bit=2"]) == {"r_word": [0.0, 1.0], "r_bit": [2.0]}
    assert parse_grid(["program-sigma=0.1"]) == {"program_sigma": [0.1]}


def test_progress_lines_are_periodic_off_a_terminal_and_bars_on_one():
    import io

    from cosim.cli import Progress

    log = io.StringIO()
    progress = Progress(stream=log, period=3600.0)
    for done in range(1, 101):
        progress("train", done, 100, loss=0.5)
    lines = log.getvalue().splitlines()
    assert lines == ["train: 1/100 (1 %), loss 0.5", "train: 100/100 (100 %), loss 0.5"]

    class Terminal(io.StringIO):
        def isatty(self):
            return True
    screen = Terminal()
    bar = Progress(stream=screen)
    for done in range(1, 11):
        bar("sweep", done, 10)
    assert "\r" in screen.getvalue() and "10/10" in screen.getvalue()
    silent = io.StringIO()
    quiet = Progress(enabled=False, stream=silent)
    quiet("x", 1, 1)
    assert silent.getvalue() == ""


def test_sweep_help_names_every_sweep_parameter(capsys):
    """Every grid parameter (periphery included) is listed in `cosim sweep --help`."""
    from cosim.sweep import PARAMETERS

    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    text = "".join(capsys.readouterr().out.split())   # argparse wraps lines, also at "-"
    listed = text.split("parameters(", 1)[1].split(";", 1)[0].split(",")
    assert sorted(listed) == sorted(n.replace("_", "-") for n in PARAMETERS)


def _periphery_model(tmp_path):
    from cosim.crossbar import Compact
    from cosim.model import Model
    from cosim.network import SRNN

    arrays = Compact(r_word=2.0, r_bit=2.0, r_sense=50.0, r_driver=20.0, adc_bits=8)
    return Model(SRNN(64, 8, 10, seed=0, neuron="lif", crossbar=arrays)).save(tmp_path / "m.npz")


def _predicted_energy(path, tmp_path, *options):
    out = tmp_path / "p.json"
    assert main(["predict", str(path), "--samples", "3", "--steps", "8", "--quiet",
                 "--out", str(out), *options]) == 0
    return json.loads(out.read_text())["energy"]["energy_per_inference_J"]


def test_predict_options_change_only_what_they_name_on_the_models_arrays(tmp_path):
    """`predict --r-sense X` on a saved physical model applies X to the model's own arrays
    (it used to be ignored without --backend) and keeps the rest (wires, r_driver, ADC);
    `--backend compact` alone keeps the model's periphery (it used to reset it)."""
    from cosim.cli import _test_data, build_parser
    from cosim.crossbar import Compact
    from cosim.model import Model

    path = _periphery_model(tmp_path)
    args = build_parser().parse_args(["predict", str(path), "--samples", "3", "--steps", "8"])
    x, _ = _test_data(args, 64)

    def library_energy(**change):
        params = dict(r_word=2.0, r_bit=2.0, r_sense=50.0, r_driver=20.0, adc_bits=8)
        net = Model.load(path, crossbar=Compact(**{**params, **change})).network
        return net.run(x, energy=True).extras["energy"].summary()["energy_per_inference_J"]

    own = library_energy()
    assert _predicted_energy(path, tmp_path) == pytest.approx(own, rel=1e-12)
    assert _predicted_energy(path, tmp_path, "--backend", "compact") == pytest.approx(
        own, rel=1e-12)
    changed = _predicted_energy(path, tmp_path, "--r-sense", "5000")
    assert changed == pytest.approx(library_energy(r_sense=5000.0), rel=1e-12)
    assert abs(changed - own) > 1e-3 * own


def test_physical_option_on_an_ideal_model_is_one_clear_error(tmp_path, capsys):
    from cosim.model import Model
    from cosim.network import SRNN

    path = Model(SRNN(64, 8, 10, seed=0, neuron="lif")).save(tmp_path / "ideal.npz")
    assert main(["predict", str(path), "--r-sense", "100", "--samples", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--r-sense" in err[0] and "--backend compact" in err[0]


def test_netlist_option_keeps_the_saved_periphery(tmp_path, capsys):
    path = _periphery_model(tmp_path)
    assert main(["netlist", str(path), "--out", str(tmp_path / "d"), "--r-bit", "3",
                 "--no-tran", "--steps", "8", "--quiet"]) == 0
    assert ".tran" not in capsys.readouterr().out       # --no-tran: no "0 .tran decks" line
    assert not (tmp_path / "d" / "tran").exists()
    deck = (tmp_path / "d" / "in.cir").read_text()
    assert "r_word = 2.0 Ohm, r_bit = 3.0 Ohm" in deck
    assert "r_driver = 20.0 Ohm, r_sense = 50.0 Ohm" in deck and "adc_bits 8" in deck


def test_predict_on_spice_keeps_the_models_periphery(tmp_path):
    """`--backend spice` solves the model's own arrays (periphery included) with ngspice:
    the same energy as the compact arrays (the circuits are the same)."""
    path = _periphery_model(tmp_path)
    own = _predicted_energy(path, tmp_path)
    assert _predicted_energy(path, tmp_path, "--backend", "spice") == pytest.approx(
        own, rel=1e-9)


def test_commands_encode_the_digits_with_the_models_own_timesteps(tmp_path, capsys):
    """A model trained on T = 12 is run on T = 12 spikes unless --steps says otherwise; the
    netlist's default timestep (T // 2) shows which T the command encoded."""
    import numpy as np

    from cosim.model import Model
    from cosim.network import SRNN

    rng = np.random.default_rng(0)
    x = (rng.random((6, 12, 64)) < 0.2).astype(float)
    model = Model(SRNN(64, 6, 10, seed=0, neuron="lif"), lr=1e-3)
    model.train(x, np.arange(6) % 10, epochs=1, progress=False)
    assert model.steps == 12
    path = model.save(tmp_path / "m.npz")
    assert Model.load(path).steps == 12
    assert main(["netlist", str(path), "--out", str(tmp_path / "a"), "--no-tran",
                 "--quiet"]) == 0
    assert "(timestep 6 of sample 0)" in capsys.readouterr().out
    assert main(["netlist", str(path), "--out", str(tmp_path / "b"), "--no-tran",
                 "--steps", "30", "--quiet"]) == 0
    assert "(timestep 15 of sample 0)" in capsys.readouterr().out
    untrained = Model(SRNN(64, 6, 10, seed=0, neuron="lif")).save(tmp_path / "u.npz")
    assert Model.load(untrained).steps is None
    assert main(["netlist", str(untrained), "--out", str(tmp_path / "c"), "--no-tran",
                 "--quiet"]) == 0
    assert "(timestep 25 of sample 0)" in capsys.readouterr().out


def test_compare_runs_a_physical_model_on_its_own_arrays(tmp_path):
    """`cosim compare` of a model saved on physical arrays compares those arrays (wires and
    periphery kept), an option changes only what it names; its compact energy equals the
    model's own arrays' energy (library), which differ from the option defaults."""
    from cosim.model import Model

    path = _periphery_model(tmp_path)
    net = Model.load(path).network

    def compare_metrics(out, *options):
        assert main(["compare", str(path), "--backends", "ideal", "compact", "--samples", "3",
                     "--steps", "8", "--out", str(tmp_path / out), "--quiet", *options]) == 0
        return json.loads((tmp_path / out / "metrics.json").read_text())

    own = compare_metrics("own")
    assert (own["r_word"], own["r_bit"]) == (2.0, 2.0)
    assert own["backend_params"]["r_sense"] == 50.0 and own["backend_params"]["adc_bits"] == 8
    changed = compare_metrics("changed", "--r-bit", "7")
    assert (changed["r_word"], changed["r_bit"]) == (2.0, 7.0)
    assert changed["backend_params"]["r_driver"] == 20.0
    from cosim.cli import _test_data, build_parser
    args = build_parser().parse_args(["predict", str(path), "--samples", "3", "--steps", "8"])
    x, _ = _test_data(args, net.n_in)
    library = net.run(x, energy=True).extras["energy"].summary()["energy_per_inference_J"]
    assert own["energy"]["compact"]["energy_per_inference_J"] == pytest.approx(library, rel=1e-12)


def test_demo_runs_end_to_end(tmp_path, capsys):
    """The demo's four stages on a small network: train, compare (ideal, compact), decks,
    report; the decks of an ideal-trained model come from compact arrays built from the
    demo's own options (--read among them)."""
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--epochs", "1", "--samples", "12", "--hidden", "6",
                 "--steps", "8", "--no-spice", "--quiet"]) == 0
    assert (out / "model.npz").is_file() and (out / "compare" / "report.md").is_file()
    decks = sorted(p.name for p in (out / "netlists").glob("*.cir"))
    assert decks and all("r_word = 1.0 Ohm" in (out / "netlists" / d).read_text()
                         for d in decks)


def test_read_option_builds_arrays_for_an_ideal_model(tmp_path, capsys):
    """`predict --backend compact --read nonlinear` on an ideal model: compact arrays with
    the nonlinear read (the option and the default read used to collide)."""
    from cosim.model import Model
    from cosim.network import SRNN

    path = Model(SRNN(64, 6, 10, seed=0, neuron="lif")).save(tmp_path / "ideal.npz")
    assert main(["predict", str(path), "--backend", "compact", "--read", "nonlinear",
                 "--samples", "2", "--steps", "4", "--quiet"]) == 0
    assert "on the compact crossbar" in capsys.readouterr().out
