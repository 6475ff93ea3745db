"""Hostile inputs over the API, the command line, config files, model files, data files and
Dask addresses (issue 10): every one gets one error of the right type whose message names the
problem, and no file is written outside the chosen output folder.

Decks, the SPICE cache and ngspice itself are covered by tests/test_hostile_spice.py.
"""

import errno
import io
import json
import os
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cosim import SRNN, Model
from cosim.cli import main
from cosim.config import ConfigError, load_config
from cosim.crossbar import SpecError, from_spec
from cosim.errors import (DataFileError, MemoryLimitError, ModelFileError, OutputPathError,
                          TrainingDivergedError)

COSIM = Path(sys.executable).with_name("cosim")


# ------------------------------------------------------------------------------ helpers

def toy(n=40, steps=12, n_in=6, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = (rng.random((n, steps, n_in)) < 0.1).astype(float)
    for c in range(3):
        x[y == c, :, 2 * c:2 * c + 2] = rng.random(((y == c).sum(), steps, 2)) < 0.6
    return x, y


def snapshot(root: Path) -> dict:
    """Every file (size, mtime) and folder under root (the SPICE cache aside)."""
    return {str(p.relative_to(root)): "dir" if p.is_dir() else (p.stat().st_size,
                                                                p.stat().st_mtime_ns)
            for p in root.rglob("*") if "cache" not in p.relative_to(root).parts}


def changed(before: dict, after: dict, allowed=()) -> list:
    """Paths created or modified, outside the allowed folders."""
    out = []
    for path, stamp in after.items():
        if before.get(path) != stamp and not any(path == a or path.startswith(a + os.sep)
                                                 for a in allowed):
            out.append(path)
    return sorted(out)


def forge(path: Path, edit, out: Path) -> Path:
    """A copy of a saved model with its JSON header edited and the checksum recomputed.

    The checksum is a plain SHA-256 (it detects corruption, it authenticates nothing), so an
    attacker can recompute it; the forger uses cosim's own function for it, so the tests
    cannot lean on the checksum to reject a forged file.
    """
    from cosim.model import _digest

    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(arrays.pop("__header__").tobytes())
    arrays.pop("__sha256__")
    result = edit(header)
    header_bytes = result if isinstance(result, bytes) else json.dumps(header).encode()
    digest = _digest(header_bytes, arrays)
    buffer = io.BytesIO()
    np.savez(buffer, __header__=np.frombuffer(header_bytes, dtype=np.uint8),
             __sha256__=np.frombuffer(digest.encode(), dtype=np.uint8), **arrays)
    out.write_bytes(buffer.getvalue())
    return out


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile-model")
    x, y = toy()
    model = Model(SRNN(6, 8, 3, neuron="lif", seed=0), lr=0.02, batch_size=20)
    model.train(x, y, epochs=1, progress=False)
    return model.save(folder / "m.npz"), x, y


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """An empty working folder; HOME inside it, so any stray write would show up."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


# ------------------------------------------------------------------------------ API

def _net():
    return SRNN(6, 8, 3, neuron="lif", seed=0)


API_CASES = {
    "n_delay=1e9": (lambda s: SRNN(6, 8, 3, n_delay=10**9), MemoryLimitError, "n_delay"),
    "n_rec=1e6": (lambda s: SRNN(6, 10**6, 3), MemoryLimitError, "memory"),
    "lr=1e300": (lambda s: Model(_net(), lr=1e300).train(*toy(), epochs=2, progress=False),
                 TrainingDivergedError, "diverged"),
    "lr=nan": (lambda s: Model(_net(), lr=float("nan")), ValueError, "lr"),
    "lr=-1": (lambda s: Model(_net(), lr=-1.0), ValueError, "lr"),
    "epochs=1e21": (lambda s: Model(_net()).train(*toy(), epochs=10**21, progress=False),
                    ValueError, "epochs"),
    "epochs=-3": (lambda s: Model(_net()).train(*toy(), epochs=-3, progress=False),
                  ValueError, "epochs"),
    "labels 0.5": (lambda s: Model(_net()).train(toy()[0], toy()[1] + 0.5, epochs=1,
                                                 progress=False), ValueError, "integer"),
    "labels >= n_out": (lambda s: Model(_net()).evaluate(toy()[0], toy()[1] + 3),
                        ValueError, "outside"),
    "x with NaN": (lambda s: Model(_net()).predict(np.full((2, 5, 6), np.nan)),
                   ValueError, "NaN"),
    "predict batch 0": (lambda s: Model(_net()).predict(toy()[0], batch_size=0),
                        ValueError, "batch_size"),
    "rate T=1e8": (lambda s: __import__("cosim.data", fromlist=["x"]).rate_encode(
        np.ones((360, 64)) * 0.5, 10**8, 0), ValueError, "T"),
    "digits T=0": (lambda s: __import__("cosim.data", fromlist=["x"]).load_digits(T=0),
                   ValueError, "T"),
    "grid 1e11 seeds": (lambda s: __import__("cosim.sweep", fromlist=["x"]).expand_grid(
        {"seed": range(10**11)}), ValueError, "points"),
    "grid product": (lambda s: __import__("cosim.sweep", fromlist=["x"]).expand_grid(
        {"seed": range(1000), "r": list(range(1000))}), ValueError, "points"),
    "compare samples=-1": (lambda s: __import__("cosim.compare", fromlist=["x"]).compare(
        Model(_net()), *toy(), backends=("ideal",), samples=-1), ValueError, "samples"),
    "compare spice_samples=0": (lambda s: __import__("cosim.compare", fromlist=["x"]).compare(
        Model(_net()), *toy(), backends=("ideal",), spice_samples=0), ValueError,
        "spice_samples"),
    "spec unknown backend": (lambda s: from_spec({"name": "os.system"}), SpecError, "name"),
    "spec unknown param": (lambda s: from_spec({"name": "compact", "params": {"cache_dir": "/"}}),
                           SpecError, "cache_dir"),
    "spec inf": (lambda s: from_spec({"name": "compact", "params": {"r_word": float("inf")}}),
                 SpecError, "r_word"),
    "spec negative wire": (lambda s: from_spec({"name": "compact", "params": {"r_bit": -1.0}}),
                           SpecError, "r_bit"),
    "spec object value": (lambda s: from_spec({"name": "compact", "params": {"levels": {}}}),
                          SpecError, "levels"),
    "spec device key": (lambda s: from_spec({"name": "compact", "params": {
        "device": {"g_max": 1e-5, "exec": "rm"}}}), SpecError, "exec"),
    "spec device name injection": (lambda s: from_spec({"name": "compact", "params": {
        "device": {"name": "x\n.control\nshell touch /tmp/pwn"}}}), SpecError, "name"),
    "spec tiled in tiled": (lambda s: from_spec({"name": "tiled", "params": {}, "inner": {
        "name": "tiled", "inner": {"name": "ideal"}}}), SpecError, "tiled"),
    "spec not a table": (lambda s: from_spec(["compact"]), SpecError, "table"),
}


@pytest.mark.parametrize("case", list(API_CASES))
def test_api_rejects(case, sandbox):
    call, error, word = API_CASES[case]
    before = snapshot(sandbox)
    t0 = time.monotonic()
    with pytest.raises(error) as info:
        call(sandbox)
    assert word.lower() in str(info.value).lower(), str(info.value)
    assert "\n" not in str(info.value).strip() or "Traceback" not in str(info.value)
    assert time.monotonic() - t0 < 60
    assert changed(before, snapshot(sandbox)) == []


# ------------------------------------------------------------------------------ model files

def _set(path, value):
    def edit(header):
        node = header
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


def _delete(key):
    def edit(header):
        del header[key]
    return edit


MODEL_CASES = {
    "format_version string": (_set(["format_version"], "1"), "format_version"),
    "lr string": (_set(["lr"], "fast"), "lr"),
    "lr negative": (_set(["lr"], -1.0), "lr"),
    "batch_size list": (_set(["batch_size"], [1]), "batch_size"),
    "missing optimizer": (_delete("optimizer"), "optimizer"),
    "rule path": (_set(["rule"], "../../evil"), "rule"),
    "network unknown": (_set(["network"], "Evil"), "network"),
    "n_rec forged": (_set(["network_config", "n_rec"], 10**9), "n_rec"),
    "n_in string": (_set(["network_config", "n_in"], "6"), "n_in"),
    "neuron kind": (_set(["network_config", "neuron_kind"], "hh"), "neuron"),
    "crossbar name": (_set(["crossbar", "name"], "subprocess"), "crossbar.name"),
    "crossbar param": (_set(["crossbar", "params"], {"__class__": "x"}), "__class__"),
    "crossbar not table": (_set(["crossbar"], "ideal"), "crossbar"),
    "header not JSON": (lambda h: b"{not json", "JSON"),
    "header a list": (lambda h: b"[1, 2]", "table"),
    "newer format": (_set(["format_version"], 99), "newer"),
    "steps string": (_set(["steps"], "50"), "steps"),
    "steps huge": (_set(["steps"], 10**12), "steps"),
    "steps bool": (_set(["steps"], True), "steps"),
}


@pytest.mark.parametrize("case", list(MODEL_CASES))
def test_forged_model_headers(case, saved, sandbox):
    path, x, y = saved
    edit, word = MODEL_CASES[case]
    forged = forge(path, edit, sandbox / "work" / "forged.npz")
    before = snapshot(sandbox)
    with pytest.raises(ModelFileError) as info:
        Model.load(forged)
    text = str(info.value)
    assert word in text, text
    assert "not supported between" not in text          # no raw Python comparison errors
    assert changed(before, snapshot(sandbox)) == []


def test_model_file_never_chooses_a_folder(saved, sandbox, monkeypatch):
    """Issue 10 item 4: a forged spice header with params.cache made predict write there."""
    from _spice import require_ngspice
    require_ngspice()
    path, x, y = saved
    target = Path("/tmp") / f"cosim-hostile-{uuid.uuid4().hex}"     # stands in for /etc

    def edit(header):
        header["crossbar"] = {"name": "spice", "params": {"cache": str(target),
                                                          "engine": "subprocess",
                                                          "timeout": 1e-9}}
    forged = forge(path, edit, sandbox / "work" / "spice.npz")
    model = Model.load(forged)
    backend = model.network.crossbar
    assert backend.name == "spice"
    assert backend.cache != str(target) and backend.engine == "auto" and backend.timeout > 1
    assert not target.exists()
    # and saving never stores the user's own cache folder
    from cosim.crossbar import Spice
    user_cache = sandbox / "my-cache"
    model.network = model.network.with_crossbar(Spice(cache=str(user_cache)))
    saved_again = model.save(sandbox / "work" / "again.npz")
    with np.load(saved_again) as npz:
        header = npz["__header__"].tobytes().decode()
    assert str(user_cache) not in header and '"cache"' not in header


# ------------------------------------------------------------------------------ data files

def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def _huge_header(path):
    """An .npz whose x claims 10^12 elements (the file itself is tiny)."""
    header = {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**3, 10**3)}
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)        # magic + header, no data
    labels = io.BytesIO()
    np.save(labels, np.zeros(10**6, dtype=np.int64))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", buf.getvalue())
        z.writestr("y.npy", labels.getvalue())
    return path


def _object_array(path):
    np.savez(path, x=np.array([{"a": 1}], dtype=object), y=np.zeros(1, int))
    return path


DATA_CASES = {
    "no y": (lambda p: _npz(p, x=np.zeros((3, 4, 6))), "'y'"),
    "x 2-D": (lambda p: _npz(p, x=np.zeros((3, 6)), y=np.zeros(3, int)), "x"),
    "x NaN": (lambda p: _npz(p, x=np.full((3, 4, 6), np.nan), y=np.zeros(3, int)), "NaN"),
    "y fractional": (lambda p: _npz(p, x=np.zeros((3, 4, 6)), y=np.array([0.5, 1, 2])),
                     "integer"),
    "y short": (lambda p: _npz(p, x=np.zeros((3, 4, 6)), y=np.zeros(2, int)), "shape"),
    "y negative": (lambda p: _npz(p, x=np.zeros((3, 4, 6)), y=np.array([0, -1, 2])),
                   "outside"),
    "object array": (_object_array, "objects"),
    "not a zip": (lambda p: (p.write_bytes(b"hello"), p)[1], "readable"),
    "huge shape": (_huge_header, "GiB"),
    "wrong n_in": (lambda p: _npz(p, x=np.zeros((3, 4, 5)), y=np.zeros(3, int)), "n_in"),
    "test without labels": (lambda p: _npz(p, x=np.zeros((3, 4, 6)), y=np.zeros(3, int),
                                           x_test=np.zeros((3, 4, 6))), "y_test"),
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_hostile_data_files(case, sandbox):
    from cosim.data import load_npz
    make, word = DATA_CASES[case]
    path = make(sandbox / "work" / "data.npz")
    before = snapshot(sandbox)
    with pytest.raises(DataFileError) as info:
        load_npz(path, n_in=6)
    assert word in str(info.value), str(info.value)
    assert str(path) in str(info.value)
    assert changed(before, snapshot(sandbox)) == []


# ------------------------------------------------------------------------------ configs

CONFIG_CASES = {
    "epochs 1e21": ("[training]\nepochs = 1000000000000000000000\n", "epochs"),
    "T huge": ("[data]\nT = 100000000\n", "[data] T"),
    "T float": ("[data]\nT = 1e8\n", "[data] T"),
    "empty model path": ("[output]\nmodel = \"\"\n", "[output] model"),
    "data path missing": ("[data]\npath = \"nope.npz\"\n", "[data] path"),
    "crossbar seed": ("[crossbar]\nseed = -1\n", "[crossbar] seed"),
    "n_rec huge": ("[network]\nn_rec = 1000000000\n", "n_rec"),
    "lr nan": ("[training]\nlr = nan\n", "[training] lr"),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_hostile_configs(case, sandbox):
    text, word = CONFIG_CASES[case]
    path = sandbox / "work" / "c.toml"
    path.write_text(text)
    before = snapshot(sandbox)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert word in str(info.value), str(info.value)
    assert changed(before, snapshot(sandbox)) == []


# ------------------------------------------------------------------------------ command line

def _config(folder, model="m.npz"):
    path = folder / "c.toml"
    path.write_text(f'[data]\nT = 12\n[network]\nn_rec = 6\nneuron = "lif"\n'
                    f'[training]\nepochs = 1\n[output]\nmodel = "{model}"\n')
    return path


CLI_CASES = {
    "predict --samples -1": (["predict", "{model}", "--samples", "-1"], "--samples"),
    "sweep --samples 0": (["sweep", "{model}", "--grid", "r=0", "--samples", "0"], "--samples"),
    "predict --steps 1e8": (["predict", "{model}", "--steps", "1e8"], "--steps"),
    "predict --steps 100000000": (["predict", "{model}", "--steps", "100000000"], "--steps"),
    "sweep --workers 0": (["sweep", "{model}", "--grid", "r=0", "--workers", "0"], "--workers"),
    "predict --r-word -1": (["predict", "{model}", "--r-word", "-1"], "--r-word"),
    "predict --r-bit nan": (["predict", "{model}", "--r-bit", "nan"], "--r-bit"),
    "demo --lr 1e300": (["demo", "--lr", "1e300"], "--lr"),
    "demo --hidden 0": (["demo", "--hidden", "0"], "--hidden"),
    "netlist --sample -2": (["netlist", "{model}", "--out", "n", "--sample", "-2"], "--sample"),
    "train --out existing dir": (["train", "{config}", "--out", "."], "existing folder"),
    "train --out under a file": (["train", "{config}", "--out", "{config}/m.npz"], "under the file"),
    "train empty [output] model": (["train", "{config_empty}"], "[output] model"),
    "netlist --out under a file": (["netlist", "{model}", "--out", "{config}/decks"],
                                   "under the file"),
    "compare --out a file": (["compare", "{model}", "--out", "{config}"], "is a file"),
    "sweep --out empty": (["sweep", "{model}", "--grid", "r=0", "--out", ""], "empty"),
    "demo --out under a file": (["demo", "--out", "{config}/demo"], "under the file"),
    "predict --out /dev/full": (["predict", "{model}", "--out", "/dev/full"], "regular file"),
    "sweep --grid seed=0:1e11": (["sweep", "{model}", "--grid", "seed=0:1e11"], "seed=0:1e11"),
    "sweep --grid 10^11 seeds": (["sweep", "{model}", "--grid", "seed=0:100000000000"],
                                 "at most"),
    "sweep --grid unknown": (["sweep", "{model}", "--grid", "wire=1"], "wire"),
    "sweep bad address": (["sweep", "{model}", "--grid", "r=0,1", "--scheduler", "not a url"],
                          "not a url"),
    "predict missing model": (["predict", "missing.npz"], "missing.npz"),
    "compare missing model, new --out": (["compare", "missing.npz", "--out", "new/deep"],
                                         "missing.npz"),
    "netlist forged model": (["netlist", "{forged}", "--out", "decks"], "format_version"),
    "predict --data missing": (["predict", "{model}", "--data", "none.npz"], "none.npz"),
    "predict --data wrong inputs": (["predict", "{model}", "--data", "{bad_data}"], "n_in"),
    "train --epochs 0": (["train", "{config}", "--epochs", "0"], "--epochs"),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_cli_rejects(case, saved, sandbox, capsys):
    model, x, y = saved
    work = sandbox / "work"
    config = _config(work)
    empty = work / "empty.toml"
    empty.write_text('[output]\nmodel = ""\n')
    bad_data = _npz(work / "bad.npz", x=np.zeros((3, 4, 5)), y=np.zeros(3, int))
    forged = forge(model, _set(["format_version"], "2"), work / "forged.npz")
    argv = [a.format(model=model, config=config, config_empty=empty, bad_data=bad_data,
                     forged=forged)
            for a in CLI_CASES[case][0]]
    before = snapshot(sandbox)
    try:
        code = main(argv + ["--quiet"])
    except SystemExit as exc:              # argparse rejects the value before main runs
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert CLI_CASES[case][1] in err, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err           # one line, no usage block
    assert changed(before, snapshot(sandbox)) == []


def test_full_disk_is_one_line_and_no_work(saved, sandbox, capsys, monkeypatch):
    """A full disk (simulated: every cosim write fails with ENOSPC) fails before training."""
    from cosim import _io

    def full(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    monkeypatch.setattr(_io, "write_bytes", full)
    config = _config(sandbox / "work")
    t0 = time.monotonic()
    assert main(["train", str(config), "--quiet", "--epochs", "1000"]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err
    assert time.monotonic() - t0 < 30            # refused at once, not after 1000 epochs
    assert not (sandbox / "work" / "m.npz").exists()


def test_dev_full_as_output_folder(saved, sandbox, capsys):
    """/dev/full as an output *folder* is refused (it is not a folder) before any work."""
    model, x, y = saved
    assert main(["netlist", str(model), "--out", "/dev/full/decks", "--quiet"]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_unreachable_scheduler_from_the_console_script(saved, sandbox):
    """A real `cosim` process: a closed port fails in <= 10 s with one clear line."""
    pytest.importorskip("distributed")
    model, x, y = saved
    t0 = time.monotonic()
    proc = subprocess.run([str(COSIM), "sweep", str(model), "--grid", "r=0,1", "--scheduler",
                           "tcp://127.0.0.1:1", "--out", "sw", "--steps", "12", "--quiet",
                           "--data", str(_npz(sandbox / "work" / "d.npz", x=x, y=y))],
                          cwd=sandbox / "work", capture_output=True, text=True, timeout=60)
    assert time.monotonic() - t0 <= 10.0 + 5.0        # + start-up of the interpreter
    assert proc.returncode == 2
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:1" in proc.stderr
    assert "Traceback" not in proc.stderr


PATH_CASES = ["train --out existing dir", "train --out under a file", "netlist --out under a file",
              "compare --out a file", "sweep --out empty", "demo --out under a file",
              "predict --out /dev/full"]


@pytest.mark.parametrize("case", PATH_CASES)
def test_output_path_errors_have_their_own_type(case, saved, sandbox):
    """With --debug the error propagates: an OutputPathError (an OSError), raised before work."""
    model, x, y = saved
    config = _config(sandbox / "work")
    argv = [a.format(model=model, config=config) for a in CLI_CASES[case][0]]
    before = snapshot(sandbox)
    with pytest.raises(OutputPathError, match=CLI_CASES[case][1].replace("/", ".")):
        main(argv + ["--quiet", "--debug"])
    assert changed(before, snapshot(sandbox)) == []
