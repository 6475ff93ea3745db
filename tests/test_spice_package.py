"""The built wheel installs into a fresh environment and `cosim netlist` runs from any folder.

The wheel is built without network where possible (``--no-build-isolation --no-deps``;
setuptools < 70.1 also needs ``wheel``, else pip's isolated build is used) and installed with
``--no-deps`` into a fresh venv that sees this environment's dependencies (numpy, scipy,
...) through a ``.pth`` path, but not this checkout: cosim itself comes from the wheel.
"""

import json
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import numpy as np
import pytest

from _spice import printed_currents, require_ngspice

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.spice]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python, cosim console script) of a fresh venv holding only the built wheel."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"             # a copy: setuptools writes build/ next to the sources
    shutil.copytree(ROOT / "cosim", src / "cosim",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    # with this environment's setuptools when it can build wheels, else in pip's isolated
    # build environment (from the configured index, which may be a local mirror)
    for isolation in (["--no-build-isolation"], []):
        build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps",
                                *isolation, "-w", str(base / "dist"), "-q"],
                               capture_output=True, text=True, timeout=600, cwd=base)
        if build.returncode == 0:
            break
    else:
        pytest.skip(f"cannot build a wheel here: {build.stderr.strip()[-500:]}")
    wheel = next((base / "dist").glob("cosim-*.whl"))
    env = base / "env"
    venv.EnvBuilder(with_pip=False).create(env)
    python = env / "bin" / "python"
    site = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print("
                                         "sysconfig.get_paths()['purelib'])"], text=True).strip())
    # the dependencies of this environment (a plain path: its .pth hooks, such as an
    # editable cosim, are not run)
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    inst = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                           "--no-deps", "--no-index", "-q", str(wheel)],
                          capture_output=True, text=True, timeout=600, cwd=base)
    assert inst.returncode == 0, inst.stderr[-3000:]
    # PySpice is no dependency (cosim binds libngspice itself): hide any copy this
    # environment may still hold, so every test below runs without it
    blocker = site / "PySpice"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('PySpice is not a cosim dependency')\n")
    return python, env / "bin" / "cosim", site


def test_wheel_declares_no_pyspice(installed):
    _, _, site = installed
    metadata = next(site.glob("cosim-*.dist-info")) / "METADATA"
    requires = [line.split(":", 1)[1].strip().lower() for line in
                metadata.read_text().splitlines() if line.startswith("Requires-Dist:")]
    assert any(r.startswith("numpy") for r in requires)
    assert not any(r.startswith("pyspice") for r in requires), requires

def test_wheel_ships_the_device_files(installed, tmp_path):
    python, _, site = installed
    code = ("import cosim, cosim.device_models as d, cosim.devices as dv; "
            "print(cosim.__file__); print(d.LIBRARY); print(dv.DEFAULT_CARD); "
            "print(dv.Memtransistor.default().g_max == d.default_parameters()['g_max'])")
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    module, library, card, same = out.stdout.split()
    for p in (module, library, card):
        assert Path(p).is_relative_to(site), p       # from the wheel, not this checkout
    assert Path(library).is_file() and Path(card).is_file()
    assert same == "True"


def test_installed_cli_writes_a_deck_folder_that_runs(installed, tmp_path):
    require_ngspice()
    _, cosim, _ = installed
    work = tmp_path / "anywhere"
    work.mkdir()
    proc = subprocess.run([str(cosim), "netlist", str(ROOT / "netlists" / "model.npz"),
                           "--out", "decks", "--sample", "0", "--step", "25", "--no-tran"],
                          capture_output=True, text=True, timeout=600, cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    decks = work / "decks"
    assert (decks / "memtransistor.lib").read_bytes() == \
        (ROOT / "cosim" / "device_models" / "memtransistor.lib").read_bytes()
    expected = json.loads((decks / "expected_currents.json").read_text())
    name = min(expected, key=lambda n: (decks / n).stat().st_size)
    text = (decks / name).read_text()
    assert '.include "memtransistor.lib"' in text
    ran = subprocess.run(["ngspice", "-b", name], capture_output=True, text=True,
                         timeout=300, cwd=decks)
    exact, _ = printed_currents(ran.stdout, text)
    want = np.array(expected[name])
    assert np.abs(exact - want).max() <= 1e-9 * np.abs(want).max()
