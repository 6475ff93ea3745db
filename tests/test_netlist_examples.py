"""The example decks in netlists/ are up to date and run in plain ngspice."""

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cosim.cli import main
from _spice import require_ngspice  # noqa: E402

pytestmark = pytest.mark.spice
EXAMPLES = Path(__file__).resolve().parents[1] / "netlists"


def _without_include(text):
    return "\n".join(line for line in text.splitlines() if not line.startswith(".include"))


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


def test_example_decks_run_unchanged_in_ngspice(tmp_path):
    require_ngspice()
    expected = json.loads((EXAMPLES / "expected_currents.json").read_text())
    for name, want in expected.items():
        printed = subprocess.run(["ngspice", "-b", str(EXAMPLES / name)], capture_output=True,
                                 text=True, timeout=300, cwd=tmp_path).stdout
        values = dict(re.findall(r"^\s*vsense(\d+)#branch\s+(\S+)", printed, flags=re.M))
        assert len(values) == len(want), name
        got = np.array([float(values[str(j)]) for j in range(len(want))])
        assert np.abs(got - np.array(want)).max() <= 1e-6 * np.abs(want).max(), name
