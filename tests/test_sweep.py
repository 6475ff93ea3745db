"""Sweeps: grid expansion and parsing, executors agree, resume after a hard kill, outputs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import cosim.sweep
from cosim import SRNN, Model
from cosim.cli import format_results, parse_grid
from cosim.errors import CosimError
from cosim.sweep import SweepResults, build_backend, expand_grid, run_sweep

GRID = {"r": [0.0, 10.0], "program_sigma": [0.0, 0.3], "seed": [0, 1]}


def task(n=48, steps=16, seed=0):
    """Three classes: a different pair of the 8 input channels fires often."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = (rng.random((n, steps, 8)) < 0.05).astype(float)
    for c in range(3):
        rows = y == c
        x[rows, :, 2 * c:2 * c + 2] = rng.random((rows.sum(), steps, 2)) < 0.5
    return x, y


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    x, y = task()
    model = Model(SRNN(8, 12, 3, neuron="lif", seed=0), lr=0.02, batch_size=16)
    model.train(x, y, epochs=3, progress=False)
    path = model.save(tmp_path_factory.mktemp("model") / "tiny.npz")
    x_test, y_test = task(seed=1)
    return model, path, x_test, y_test


def finished(points: Path) -> list:
    """Point files written so far (not the hidden temporary files of atomic writes)."""
    return [p for p in points.glob("*.json") if not p.name.startswith(".")]


def strip(rows):
    """Rows without the timing column (the only one allowed to differ between runs)."""
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


# ------------------------------------------------------------------------------ grids

def test_grid_product_order_and_values(trained):
    points = expand_grid({"backend": ["ideal", "compact"], "r": [0, 1], "seed": np.arange(2)})
    assert points == [
        {"backend": b, "r": r, "seed": s}
        for b in ("ideal", "compact") for r in (0.0, 1.0) for s in (0, 1)]
    assert type(points[0]["r"]) is float and type(points[0]["seed"]) is int
    assert expand_grid({"max_array": (4, 6)}) == [{"max_array": (4, 6)}]
    assert expand_grid({"max_array": [4, None]}) == [{"max_array": (4, 4)}, {"max_array": None}]
    assert expand_grid({}) == [{}]

    model, path, x, y = trained
    rows = run_sweep(path, {"r": [0, 10], "seed": [0, 1, 2]}, x, y, workers=1)
    assert isinstance(rows, SweepResults) and len(rows) == 6
    assert [(r["r"], r["seed"]) for r in rows] == [(r, s) for r in (0.0, 10.0) for s in range(3)]
    for row in rows:
        assert 0.0 <= row["accuracy"] <= 1.0 and row["spike_rate"] > 0 and row["seconds"] > 0
    assert rows.computed == 6 and rows.reused == 0
    assert "accuracy" in format_results(rows).splitlines()[0]


def test_parse_grid_types_and_ranges():
    grid = parse_grid(["r=0,1,10", "seed=0:3", "backend=ideal,Compact", "levels=none,8",
                       "max_array=64,128x32,none", "program_sigma=0.05", "read=linear"])
    assert grid == {"r": [0.0, 1.0, 10.0], "seed": [0, 1, 2], "backend": ["ideal", "compact"],
                    "levels": [None, 8], "max_array": [(64, 64), (128, 32), None],
                    "program_sigma": [0.05], "read": ["linear"]}
    assert type(grid["r"][0]) is float and type(grid["seed"][0]) is int
    assert parse_grid("r_word=1e3 seed=0:6:2") == {"r_word": [1000.0], "seed": [0, 2, 4]}
    assert parse_grid(["v-read=0.2"]) == {"v_read": [0.2]}


@pytest.mark.parametrize("items, match", [
    (["r=0,abc"], "'r=0,abc'.*'abc'"),
    (["foo=1"], "foo"),
    (["r0,1"], "r0,1"),
    (["r=0:3"], "r=0:3"),
    (["seed=3:1"], "seed=3:1"),
    (["seed=1.5"], "seed=1.5"),
    (["r=-1"], "r=-1"),
    (["r=1,,2"], "empty"),
    (["backend=analog"], "backend=analog"),
    (["levels=1"], "levels"),
    (["max_array=0"], "max_array"),
    (["max_array=1x2x3"], "max_array"),
    (["r=1", "r=2"], "twice"),
    (["r=1", "r_bit=2"], "r_word"),
])
def test_parse_grid_errors_name_the_item(items, match):
    with pytest.raises(ValueError, match=match):
        parse_grid(items)


def test_bad_grids_and_arguments_raise(trained):
    model, path, x, y = trained
    with pytest.raises(ValueError, match=r"\['wire', 'sigma'\]"):
        run_sweep(model, {"r": [0], "wire": [1], "sigma": [0.1]}, x, y, workers=1)
    with pytest.raises(ValueError, match="r_word"):
        run_sweep(model, {"r": [0], "r_word": [1]}, x, y, workers=1)
    with pytest.raises(ValueError, match="no values"):
        run_sweep(model, {"seed": []}, x, y, workers=1)
    with pytest.raises(ValueError, match="r_bit"):
        run_sweep(model, {"r_bit": [1.0, -2.0]}, x, y, workers=1)
    with pytest.raises(TypeError, match="seed"):
        run_sweep(model, {"seed": [0.5]}, x, y, workers=1)
    with pytest.raises(ValueError, match="backend"):
        run_sweep(model, {"backend": ["analog"]}, x, y, workers=1)
    with pytest.raises(ValueError, match="read"):
        run_sweep(model, {"read": ["quadratic"]}, x, y, workers=1)
    with pytest.raises(TypeError, match="grid"):
        run_sweep(model, [("r", [0])], x, y, workers=1)
    with pytest.raises(TypeError, match="model"):
        run_sweep(42, GRID, x, y, workers=1)
    with pytest.raises(ValueError, match="y must have shape"):
        run_sweep(model, GRID, x, y[:-1], workers=1)
    with pytest.raises(ValueError, match="x must have shape"):
        run_sweep(model, GRID, x[:, :, :5], y, workers=1)
    with pytest.raises(ValueError, match="workers"):
        run_sweep(model, GRID, x, y, workers=0)
    with pytest.raises(TypeError, match="scheduler"):
        run_sweep(model, GRID, x, y, scheduler=3.5)
    with pytest.raises(FileNotFoundError):
        run_sweep(path.with_name("missing.npz"), GRID, x, y, workers=1)


def test_scheduler_without_dask_says_how_to_install(trained, monkeypatch):
    model, path, x, y = trained
    monkeypatch.setitem(sys.modules, "dask", None)          # import dask -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'cosim\[dask\]'") as info:
        run_sweep(model, {"seed": [0]}, x, y, scheduler="tcp://127.0.0.1:1")
    assert isinstance(info.value, CosimError)       # the CLI reports it as a plain error
    assert len(run_sweep(model, {"seed": [0]}, x, y, workers=1)) == 1   # local still works


def test_missing_spice_backend_is_a_clear_error(trained, monkeypatch):
    model, path, x, y = trained
    monkeypatch.setitem(sys.modules, "cosim.crossbar.spice", None)
    with pytest.raises(ValueError, match="spice"):
        run_sweep(model, {"backend": ["spice"]}, x, y, workers=1)


# ------------------------------------------------------------------------------ physics

def test_compact_without_wires_equals_ideal(trained):
    model, path, x, y = trained
    rows = run_sweep(model, {"backend": ["ideal", "compact"], "r": [0.0],
                             "max_array": [None, (4, 5)]}, x, y, workers=1)
    ideal_accuracy = model.evaluate(x, y)
    for row in rows:
        assert row["accuracy"] == ideal_accuracy
        assert row["spike_rate"] == rows[0]["spike_rate"]
    # the ideal backend ignores wires: its points share one evaluation
    rows = run_sweep(model, {"backend": ["ideal"], "r": [0.0, 5.0, 50.0]}, x, y, workers=1)
    assert rows.computed == 1 and len({r["accuracy"] for r in rows}) == 1
    # with large wire resistance the physical backend really differs
    strong = run_sweep(model, {"r": [0.0, 2000.0]}, x, y, workers=1)
    assert strong[0]["spike_rate"] != strong[1]["spike_rate"]


def test_build_backend_from_point():
    backend = build_backend({"backend": "compact", "r_word": 2.0, "r_bit": 3.0, "levels": 16,
                             "seed": 4, "max_array": [32, 16]})
    assert backend.name == "tiled" and backend.max_array == (32, 16)
    assert (backend.inner.r_word, backend.inner.r_bit, backend.inner.levels,
            backend.inner.seed) == (2.0, 3.0, 16, 4)
    assert build_backend({"backend": "ideal"}).name == "ideal"


# ------------------------------------------------------------------------------ executors

def test_results_identical_on_every_executor(trained):
    distributed = pytest.importorskip("dask.distributed")
    model, path, x, y = trained
    serial = run_sweep(model, GRID, x, y, workers=1)
    pooled = run_sweep(path, GRID, x, y, workers=2)
    assert strip(pooled) == strip(serial)
    assert len({r["accuracy"] for r in serial}) > 1          # the grid changes something
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        on_client = run_sweep(model, GRID, x, y, scheduler=client)
        on_address = run_sweep(path, GRID, x, y, scheduler=cluster.scheduler_address)
    assert strip(on_client) == strip(serial)
    assert strip(on_address) == strip(serial)


# ------------------------------------------------------------------------------ store / resume

class Crash(Exception):
    """Stands in for a kill: the sweep stops in the middle of a point."""


def test_resume_after_a_crash(trained, tmp_path, monkeypatch):
    """In-process fault injection: the 4th evaluation dies; the 3 finished points are kept."""
    model, path, x, y = trained
    store = tmp_path / "store"
    grid = {"r": [0.0, 1.0, 10.0, 100.0], "seed": [0, 1]}
    evaluate = cosim.sweep._evaluate_point
    calls = []

    def dies_on_the_fourth(payload, spec):
        calls.append(spec)
        if len(calls) == 4:
            raise Crash("power cut")
        return evaluate(payload, spec)
    monkeypatch.setattr(cosim.sweep, "_evaluate_point", dies_on_the_fourth)
    with pytest.raises(Crash):
        run_sweep(path, grid, x, y, workers=1, store=store)
    monkeypatch.setattr(cosim.sweep, "_evaluate_point", evaluate)
    stored = len(finished(store / "points"))
    assert stored == 3
    assert not (store / "results.csv").exists()

    resumed = run_sweep(path, grid, x, y, workers=1, store=store)
    assert resumed.reused == stored and resumed.computed == 8 - stored
    fresh = run_sweep(model, grid, x, y, workers=1)
    assert strip(resumed) == strip(fresh)
    # nothing left to do on a third run, even through another executor
    again = run_sweep(model, grid, x, y, workers=2, store=store)
    assert again.reused == 8 and again.computed == 0 and again == resumed
    # a different data set never reuses these results
    other = run_sweep(model, {"r": [0.0]}, x[:-1], y[:-1], workers=1, store=store)
    assert other.reused == 0 and other.computed == 1


def test_store_writes_tables_and_plot(trained, tmp_path):
    model, path, x, y = trained
    store = tmp_path / "sweep"
    grid = {"r": [0.0, 10.0], "max_array": [None, (6, 6)], "seed": [0, 1]}
    rows = run_sweep(model, grid, x, y, workers=1, store=store)
    assert sorted(p.name for p in store.iterdir()) == ["points", "results.csv", "results.json",
                                                       "sweep.png"]
    assert len(list((store / "points").iterdir())) == 8
    lines = (store / "results.csv").read_text().splitlines()
    assert lines[0] == "r,max_array,seed,accuracy,spike_rate,seconds"
    assert len(lines) == 9 and lines[3].startswith("0.0,6x6,0,")
    table = json.loads((store / "results.json").read_text())
    assert table[2]["max_array"] == [6, 6]
    assert [row["accuracy"] for row in table] == [row["accuracy"] for row in rows]
    png = (store / "sweep.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # a point file is self-describing
    point = json.loads(next((store / "points").iterdir()).read_text())
    assert point["format"] == "cosim-sweep-point" and "accuracy" in point["result"]
    # corrupt point files are recomputed, not trusted
    victim = sorted((store / "points").iterdir())[0]
    victim.write_text("{ not json")
    again = run_sweep(model, grid, x, y, workers=1, store=store)
    assert again.computed == 1 and again.reused == 7 and strip(again) == strip(rows)
    assert json.loads(victim.read_text())["format"] == "cosim-sweep-point"


# ------------------------------------------------------------------------------ real Dask / spawn

def _kill_group(proc):
    """Stop a process the test started, with its children (it leads its own group)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


@pytest.fixture
def dask_cluster(tmp_path):
    """A real `dask scheduler` and two `dask worker` processes on 127.0.0.1 (cleaned up)."""
    pytest.importorskip("distributed")
    dask = Path(sys.executable).with_name("dask")
    if not dask.exists():
        pytest.skip("the dask command is not installed next to this Python")
    info = tmp_path / "scheduler.json"
    log = tmp_path / "dask.log"
    env = dict(os.environ, OMP_NUM_THREADS="1", DASK_DISTRIBUTED__WORKER__DAEMON="False")
    procs = []
    with open(log, "wb") as out:
        procs.append(subprocess.Popen([str(dask), "scheduler", "--host", "127.0.0.1", "--port",
                                       "0", "--no-dashboard", "--scheduler-file", str(info)],
                                      stdout=out, stderr=out, env=env, start_new_session=True))
        try:
            deadline = time.monotonic() + 60
            while not info.exists():
                assert procs[0].poll() is None, log.read_text()
                assert time.monotonic() < deadline, "dask scheduler did not start in 60 s"
                time.sleep(0.1)
            time.sleep(0.2)                     # the file is written in one go; be sure
            address = json.loads(info.read_text())["address"]
            for _ in range(2):
                procs.append(subprocess.Popen(
                    [str(dask), "worker", address, "--nthreads", "1", "--nworkers", "1",
                     "--host", "127.0.0.1", "--no-dashboard", "--no-nanny"],
                    stdout=out, stderr=out, env=env, start_new_session=True))
            from distributed import Client
            with Client(address, timeout="30s", set_as_default=False) as client:
                client.wait_for_workers(2, timeout=60)
            yield address
        finally:
            for proc in reversed(procs):
                _kill_group(proc)


def test_sweep_on_a_real_scheduler_by_address(trained, tmp_path, dask_cluster):
    """Issue 10 item 2: the address path failed with 'No clients found' outside `with Client`."""
    model, path, x, y = trained
    grid = {"r": [0.0, 10.0], "seed": [0, 1]}
    serial = run_sweep(model, grid, x, y, workers=1)
    on_address = run_sweep(path, grid, x, y, scheduler=dask_cluster)
    assert strip(on_address) == strip(serial)
    assert on_address.computed == 4


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:1", "not a url", "tcp://127.0.0.1:99999",
                                     "http://127.0.0.1:8786"])
def test_bad_scheduler_address_fails_fast_and_clearly(trained, address):
    pytest.importorskip("distributed")
    model, path, x, y = trained
    t0 = time.monotonic()
    with pytest.raises(CosimError, match="scheduler") as info:
        run_sweep(model, {"r": [0.0, 1.0]}, x, y, scheduler=address)
    assert time.monotonic() - t0 <= 10.0
    assert address in str(info.value)


NO_GUARD = """
import numpy as np
from cosim.sweep import run_sweep
data = np.load({data!r})
rows = run_sweep({model!r}, {{"r": [0.0, 1.0, 10.0]}}, data["x"], data["y"], workers=2)
print("ROWS", len(rows))
"""


@pytest.mark.parametrize("pad", [0, 300_000])
def test_workers_without_main_guard_never_hang(trained, tmp_path, pad):
    """Issue 10 item 11: a script without `if __name__ == "__main__":` and workers > 1 hung
    (payload > pipe buffer) or died with BrokenProcessPool tracebacks and no hint."""
    model, path, x, y = trained
    data = tmp_path / "data.npz"
    # a large payload (pad extra samples) once blocked the parent on a dead child's pipe
    reps = 1 + pad // x[0].size
    np.savez(data, x=np.concatenate([x] * reps), y=np.concatenate([y] * reps))
    script = tmp_path / "no_guard.py"
    script.write_text(NO_GUARD.format(data=str(data), model=str(path)))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=240, cwd=tmp_path)
    assert proc.returncode != 0
    assert "__main__" in proc.stderr and "workers=1" in proc.stderr
    assert "WorkerStartError" in proc.stderr
    # with the guard the same script works
    guarded = tmp_path / "guarded.py"
    body = "\n".join("    " + line for line in NO_GUARD.format(data=str(data),
                                                            model=str(path)).splitlines())
    guarded.write_text('if __name__ == "__main__":\n' + body + "\n")
    ok = subprocess.run([sys.executable, str(guarded)], capture_output=True, text=True,
                        timeout=240, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "ROWS 3" in ok.stdout


def test_backends_registered_after_import_can_be_swept_and_compared(trained):
    """The sweep and compare read the registry when called, not when cosim was imported."""
    from cosim import crossbar
    from cosim.compare import compare
    from cosim.crossbar import Compact

    class Mirror(Compact):            # the compact arrays under another name
        name = "mirror"

    model, path, x, y = trained
    crossbar.register("mirror", Mirror)
    try:
        rows = run_sweep(path, {"backend": ["compact", "mirror"], "r": [10]}, x, y, workers=1)
        assert [r["backend"] for r in rows] == ["compact", "mirror"]
        assert rows[0]["accuracy"] == rows[1]["accuracy"]
        assert rows[0]["spike_rate"] == rows[1]["spike_rate"]
        metrics = compare(model, x[:4], y[:4], backends=("ideal", "mirror"))
        assert metrics["backends"] == ["ideal", "mirror"]
    finally:
        del crossbar.BACKENDS["mirror"]
    with pytest.raises(ValueError, match="mirror"):
        run_sweep(path, {"backend": ["mirror"]}, x, y, workers=1)
