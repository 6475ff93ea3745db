"""Hostile inputs to the ngspice layer: decks, included files, ngspice outputs, cache entries,
device parameters and netlist paths.

Each case asserts the error type, that the message names the problem, and that nothing was
written outside the test's own folder (the ``sandbox`` fixture: the current folder and a
temp folder of the test's own are watched; the cache and failure folders are the test's).
"""

import random
import stat
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from cosim.errors import SpiceError, UnsafeDeckError
from cosim.spice.cache import SpiceCache, cached_run_dc, cached_run_op
from cosim.spice.netlist import crossbar_deck, include_line, resolve_deck
from cosim.spice.ngspice import NgspiceEngine, run_dc, run_op, shared_available

from _spice import needs_spice

SIMPLE = "* divider\nV1 a 0 DC 1\nR1 a b 1k\nR2 b 0 1k\nVsense0 b 0 DC 0\n{extra}.op\n.end\n"
SHELL_INCLUDE = ".control\nshell touch {target}\n.endc\n"


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """Run in tmp_path/cwd; afterwards check nothing was left outside tmp_path."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    tmp = tmp_path / "tmp"          # this test's own system temp folder
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    box = type("Sandbox", (), {})()
    box.root, box.cwd = tmp_path, cwd
    box.target = tmp_path / "pwned"            # what an injected shell command would create
    box.failed = tmp_path / "failed"
    yield box
    assert not box.target.exists(), "an injected command ran"
    assert list(cwd.iterdir()) == [], "files written to the current folder"
    leaked = list(tmp.iterdir())
    assert not leaked, f"temporary files left behind: {leaked}"


def _fake_ngspice(folder: Path, body: str) -> NgspiceEngine:
    """An engine whose ``ngspice`` runs ``body`` (sh, in the deck's folder) for ``-b``."""
    exe = folder / "fake-ngspice"
    exe.write_text("#!/bin/sh\n"
                   "if [ \"$1\" = \"-v\" ]; then echo '** ngspice-46 : Circuit level "
                   "simulation program'; echo '** Compiled with KLU Direct Linear Solver'; "
                   "exit 0; fi\n" + body + "\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return NgspiceEngine(executable=exe, shared=False)


def _raw(values, names=("i(vsense0)",), plot="Operating Point", points=None):
    """An ASCII raw file with one row per entry of ``values`` (a row: one value per name)."""
    rows = [v if isinstance(v, (list, tuple)) else [v] for v in values]
    head = (f"Title: t\nDate: x\nPlotname: {plot}\nFlags: real\nNo. Variables: {len(names)}\n"
            f"No. Points: {len(rows) if points is None else points}\nVariables:\n"
            + "".join(f"\t{k}\t{n}\tcurrent\n" for k, n in enumerate(names)) + "Values:\n")
    body = "".join(f" {p}\t" + "\n\t".join(str(x) for x in row) + "\n" for p, row in
                   enumerate(rows))
    return head + body


def _writes_raw(text):
    return f"cat > result.raw <<'EOF'\n{text}EOF\n"


def _no_cache_entries(folder: Path):
    return not folder.exists() or not [p for p in folder.rglob("*") if p.is_file()]


# ---------------------------------------------------------------------------------------
# decks and included files
# ---------------------------------------------------------------------------------------

@needs_spice
@pytest.mark.parametrize("engine", ["subprocess", "shared"])
@pytest.mark.parametrize("payload", [SHELL_INCLUDE, "*# shell touch {target}\n",
                                     "*ng_script\nshell touch {target}\n"])
def test_included_command_lines_never_run(sandbox, engine, payload):
    if engine == "shared" and not shared_available():
        pytest.skip("libngspice not loadable")
    inc = sandbox.root / "evil.lib"
    inc.write_text("R9 a 0 1meg\n" + payload.format(target=sandbox.target))
    deck = SIMPLE.format(extra=f'.include "{inc}"\n')
    with pytest.raises(UnsafeDeckError, match="command lines") as exc:
        run_op(deck, ["i(vsense0)"], engine=engine, failed_dir=sandbox.failed)
    assert str(inc) in str(exc.value)
    assert not sandbox.failed.exists()


@needs_spice
def test_nested_include_is_checked_and_inlined(sandbox):
    inner = sandbox.root / "sub" / "inner.lib"
    inner.parent.mkdir()
    inner.write_text(SHELL_INCLUDE.format(target=sandbox.target))
    outer = sandbox.root / "outer.lib"
    outer.write_text('.include "sub/inner.lib"\n')      # relative to outer.lib's folder
    with pytest.raises(UnsafeDeckError, match="inner.lib"):
        run_op(SIMPLE.format(extra=f".include {outer}\n"), ["i(vsense0)"])
    # a clean nested include runs, and what ngspice reads is the inlined text
    inner.write_text("R9 a 0 1meg\n")
    text = resolve_deck(SIMPLE.format(extra=f".include {outer}\n"))
    assert ".include" not in text.replace("begin .include", "").replace("end .include", "")
    assert "R9 a 0 1meg" in text
    got = run_op(SIMPLE.format(extra=f".include {outer}\n"), ["i(vsense0)"], engine="subprocess")
    assert got["i(vsense0)"][0] == pytest.approx(1e-3, rel=1e-9)


@pytest.mark.parametrize("case, match", [
    ("cycle", "include cycle"),
    ("missing", "cannot read included file"),
    ("lib", r"\.lib cards are not supported"),
    ("binary", "cannot read included file"),
    ("quote", "bad .include file name"),
    ("deep", "levels of .include"),
])
def test_bad_includes_are_refused_before_ngspice_runs(sandbox, case, match):
    root = sandbox.root
    if case == "cycle":
        (root / "a.lib").write_text(f".include {root / 'b.lib'}\n")
        (root / "b.lib").write_text(f".include {root / 'a.lib'}\n")
        extra = f".include {root / 'a.lib'}\n"
    elif case == "missing":
        extra = f".include {root / 'nope.lib'}\n"
    elif case == "lib":
        extra = f".lib {root / 'models.lib'} tt\n"
    elif case == "binary":
        (root / "bin.lib").write_bytes(b"\xff\xfe\x00garbage")
        extra = f".include {root / 'bin.lib'}\n"
    elif case == "quote":
        extra = '.include "a"b.lib"\n'
    else:
        for k in range(12):
            (root / f"d{k}.lib").write_text(f".include d{k + 1}.lib\n")
        (root / "d12.lib").write_text("R9 a 0 1meg\n")
        extra = f".include {root / 'd0.lib'}\n"
    engine = NgspiceEngine(executable="/nonexistent/ngspice", shared=False)
    with pytest.raises(UnsafeDeckError, match=match):
        run_op(SIMPLE.format(extra=extra), ["i(vsense0)"], ngspice=engine)


def test_deck_that_is_an_ngspice_script_is_refused(sandbox):
    with pytest.raises(UnsafeDeckError, match="ng_script"):
        resolve_deck(f"*ng_script\nwrite {sandbox.target} all\n.op\n.end\n")


# ---------------------------------------------------------------------------------------
# what ngspice returns
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("values, match", [
    (["nan"], "non-finite"),
    (["inf"], "non-finite"),
    (["-inf"], "non-finite"),
])
def test_non_finite_results_raise_and_are_never_cached(sandbox, values, match):
    engine = _fake_ngspice(sandbox.root, _writes_raw(_raw(values)))
    cache = sandbox.root / "cache"
    for _ in range(2):     # the second run must not see a cached NaN either
        with pytest.raises(SpiceError, match=match) as exc:
            cached_run_op(SIMPLE.format(extra=""), ["i(vsense0)"], cache=cache,
                          ngspice=engine, engine="subprocess", failed_dir=sandbox.failed)
        assert Path(exc.value.deck).is_file() and Path(exc.value.log).is_file()
        assert "i(vsense0)" in str(exc.value)
    assert _no_cache_entries(cache)
    assert engine.calls == 2


@pytest.mark.parametrize("body, match", [
    (_writes_raw(_raw([[0.0, 1e-3], [1.0, 2e-3]], names=("v(v-sweep)", "i(vsense0)"),
                      plot="DC transfer characteristic")), "wrong point count"),
    (_writes_raw(_raw([1e-3], points=3)), "could not parse"),          # truncated
    (_writes_raw(_raw([1e-3]).replace("No. Points: 1", "No. Points: x")), "not an integer"),
    (_writes_raw("garbage\n"), "could not parse"),
    ("echo 'Error: unknown device' ; exit 1", "Error: unknown device"),
    ("exit 0", "wrote no results"),
    (_writes_raw(_raw([1e-3], names=("i(vother)",))), "no vector"),
])
def test_bad_ngspice_outputs_raise_spice_error_with_files_kept(sandbox, body, match):
    engine = _fake_ngspice(sandbox.root, body)
    dc = "* sweep\nV1 a 0 DC 1\nR1 a 0 1k\nVsense0 a 0 DC 0\n.dc V1 0 1 0.5\n.end\n"
    with pytest.raises(SpiceError, match=match) as exc:
        cached_run_dc(dc, ["i(vsense0)"], cache=sandbox.root / "cache", points=3,
                      ngspice=engine, engine="subprocess", failed_dir=sandbox.failed)
    assert Path(exc.value.deck).is_file() and Path(exc.value.log).is_file()
    assert str(sandbox.failed) in exc.value.deck
    assert _no_cache_entries(sandbox.root / "cache")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_timeout_kills_ngspice_and_its_children(sandbox):
    pidfile = sandbox.root / "child.pid"
    engine = _fake_ngspice(sandbox.root, f"sleep 300 &\necho $! > {pidfile}\nsleep 300\n")
    t0 = time.monotonic()
    with pytest.raises(SpiceError, match="timed out") as exc:
        run_op(SIMPLE.format(extra=""), ["i(vsense0)"], timeout=1.0, ngspice=engine,
               engine="subprocess", failed_dir=sandbox.failed)
    assert time.monotonic() - t0 < 30
    assert "killed" in Path(exc.value.log).read_text()
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "a child of ngspice survived the timeout"


def test_bad_run_arguments(sandbox):
    engine = _fake_ngspice(sandbox.root, "exit 0")
    deck = SIMPLE.format(extra="")
    with pytest.raises(ValueError, match="timeout"):
        run_op(deck, ["i(vsense0)"], timeout=float("nan"), ngspice=engine)
    with pytest.raises(ValueError, match="points"):
        run_dc(deck.replace(".op", ".dc V1 0 1 1"), ["i(vsense0)"], points=0, ngspice=engine)
    with pytest.raises(ValueError, match="engine"):
        run_op(deck, ["i(vsense0)"], engine="gpu", ngspice=engine)
    with pytest.raises(ValueError, match="vector name"):
        run_op(deck, ["i(vsense0)\nshell ls"], ngspice=engine)
    assert engine.calls == 0


# ---------------------------------------------------------------------------------------
# cache entries
# ---------------------------------------------------------------------------------------

def test_every_single_byte_flip_of_a_cache_entry_is_a_miss(sandbox):
    cache = SpiceCache(sandbox.root / "cache")
    key = "cd" * 32
    good = {"i(vsense0)": np.array([1.5e-6]), "i(vsense1)": np.array([-2.5e-7])}
    path = cache.put(key, good)
    clean = path.read_bytes()
    rng = random.Random(0)
    positions = list(range(len(clean)))
    for pos in positions:
        flipped = bytearray(clean)
        flipped[pos] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(flipped))
        with pytest.warns(RuntimeWarning, match="corrupt"):
            assert cache.get(key) is None, f"flip at byte {pos} was accepted"
        assert not path.exists(), f"corrupt entry (byte {pos}) was not removed"
    cache.put(key, good)
    np.testing.assert_array_equal(cache.get(key)["i(vsense1)"], good["i(vsense1)"])


@pytest.mark.parametrize("content", [b"", b"cosim-spice-cache-v2\n", b"PK\x03\x04junk",
                                     b"cosim-spice-cache-v1\n" + b"0" * 64])
def test_foreign_or_truncated_cache_files_are_misses(sandbox, content):
    cache = SpiceCache(sandbox.root / "cache")
    key = "ef" * 32
    cache.path(key).parent.mkdir(parents=True)
    cache.path(key).write_bytes(content)
    with pytest.warns(RuntimeWarning, match="corrupt"):
        assert cache.get(key) is None
    assert not cache.path(key).exists()


def test_cache_refuses_to_store_non_finite_results(sandbox):
    cache = SpiceCache(sandbox.root / "cache")
    with pytest.raises(ValueError, match="non-finite"):
        cache.put("01" * 32, {"i(vsense0)": np.array([np.nan])})
    with pytest.raises(ValueError, match="sha256"):
        cache.path("../../etc/passwd")
    assert _no_cache_entries(sandbox.root / "cache")


# ---------------------------------------------------------------------------------------
# deck writer inputs: device parameters, numbers, names, paths
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, match", [
    (dict(device_params={"g_max": float("nan")}), ValueError, "g_max"),
    (dict(device_params={"g_max": -1e-6}), ValueError, "g_max"),
    (dict(device_params={"v_off": 1.0}), ValueError, "v_off"),
    (dict(device_params={"gmax": 1e-6}), ValueError, "unknown device parameter"),
    (dict(device_params={"g_max": "1e-6; shell ls"}), (TypeError, ValueError), "g_max"),
    (dict(options={"reltol\n.control": 1e-9}), ValueError, "option name"),
    (dict(options={"reltol": float("inf")}), ValueError, "reltol"),
    (dict(title="x\n.control"), ValueError, "title"),
    (dict(header={"run": "ok\nshell touch x"}), ValueError, "printable"),
    (dict(r_word=-1.0), ValueError, "r_word"),
])
def test_bad_deck_writer_inputs(sandbox, kwargs, error, match):
    with pytest.raises(error, match=match):
        crossbar_deck(states=np.full((2, 2), 0.5), v_word=[0.1, 0.0], **kwargs)


@pytest.mark.parametrize("name", ['lib"x.lib', "lib\nshell touch x.lib", "lib\x07.lib"])
def test_model_library_path_with_control_characters_is_refused(sandbox, name):
    with pytest.raises(ValueError, match="quotes, newlines or control"):
        include_line(sandbox.root / name)


def test_export_to_a_path_under_a_file_is_one_clear_error(sandbox):
    from cosim.export import export_netlists
    from cosim.network import SRNN

    blocker = sandbox.root / "afile"
    blocker.write_text("x")
    net = SRNN(3, 2, 2, seed=0)
    x = np.zeros((1, 3, 3))
    with pytest.raises(ValueError, match="afile"):
        export_netlists(net, blocker / "decks", x)
    with pytest.raises(ValueError, match="afile"):
        export_netlists(net, blocker, x)
    assert blocker.read_text() == "x"
