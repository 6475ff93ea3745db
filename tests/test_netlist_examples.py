"""The example decks in netlists/ are up to date and run in plain ngspice."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cosim.cli import main
from _spice import printed_currents, require_ngspice  # noqa: E402

pytestmark = pytest.mark.spice
EXAMPLES = Path(__file__).resolve().parents[1] / "netlists"


_PREDICTION = re.compile(r"^\.param (ie\d+|iscale) = (\S+)$")
_POWER = re.compile(r"^\* expected source power: (\S+) W")


def _without_include(text):
    """The deck without its .include line and cosim's predicted currents (whose last digit
    depends on the machine's rounding; they are compared numerically)."""
    return "\n".join(line for line in text.splitlines()
                     if not line.startswith(".include") and not _PREDICTION.match(line)
                     and not _POWER.match(line))


def _predictions(text):
    """cosim's predicted sense currents and source power written in a deck."""
    lines = text.splitlines()
    return np.array([float(m.group(2)) for m in map(_PREDICTION.match, lines) if m]
                    + [float(m.group(1)) for m in map(_POWER.match, lines) if m])


def test_examples_are_regenerated_identically(tmp_path):
    # exactly what scripts/make_netlists.sh runs
    assert main(["netlist", str(EXAMPLES / "model.npz"), "--out", str(tmp_path), "--sample", "0",
                 "--step", "25"]) == 0
    fresh = json.loads((tmp_path / "expected_currents.json").read_text())
    committed = json.loads((EXAMPLES / "expected_currents.json").read_text())
    assert set(fresh) == set(committed)
    for name, currents in fresh.items():
        np.testing.assert_allclose(currents, committed[name], rtol=1e-12, atol=1e-24)
        assert _without_include((tmp_path / name).read_text()) == \
            _without_include((EXAMPLES / name).read_text()), f"{name} is out of date: run scripts/make_netlists.sh"
        np.testing.assert_allclose(_predictions((tmp_path / name).read_text()),
                                   _predictions((EXAMPLES / name).read_text()), rtol=1e-12)


def test_example_folder_runs_anywhere_in_plain_ngspice(tmp_path):
    """Copied elsewhere, the folder runs from another working directory, and what ngspice
    prints reproduces expected_currents.json to <= 1e-9 of the largest current."""
    require_ngspice()
    folder = tmp_path / "somewhere" / "decks"
    shutil.copytree(EXAMPLES, folder)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    expected = json.loads((folder / "expected_currents.json").read_text())
    for name, want in expected.items():
        text = (folder / name).read_text()
        assert re.search(r'^\.include "memtransistor\.lib"$', text, re.M), name
        proc = subprocess.run(["ngspice", "-b", str(folder / name)], capture_output=True,
                              text=True, timeout=300, cwd=elsewhere)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert "can't find" not in proc.stdout.lower() + proc.stderr.lower()
        exact, shown = printed_currents(proc.stdout, text)
        want = np.array(want)
        assert exact.size == want.size, name
        assert np.abs(shown - want).max() <= 1e-6 * np.abs(want).max(), name
        assert np.abs(exact - want).max() <= 1e-9 * np.abs(want).max(), name
    assert list(elsewhere.iterdir()) == []
