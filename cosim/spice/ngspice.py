"""Run ngspice decks: find the simulator, run analyses, parse and check results, keep failures.

One :class:`NgspiceEngine` owns everything ngspice-related of a process: the executable it
found, the in-process shared library (libngspice is one global simulator per process),
which owner holds the library, and the count of analyses run.  The module's functions
(:func:`run_op`, :func:`run_dc`, ...) use :data:`ENGINE`, the process's engine; nothing
else in this module is mutable.

Two ways to run a deck (``engine=``):

* ``"shared"``: in-process through libngspice, bound here with :mod:`ctypes` (no PySpice,
  no environment variables, no process start, no file parsing).  The analysis runs in
  ngspice's background thread; on timeout it is halted (``bg_halt``) and the circuit
  removed.  Runs are serialised by the engine's lock.
* ``"subprocess"``: ``ngspice -b`` on a deck written to a temporary folder, results read
  back from an ASCII raw file written by a fixed ``.control`` block the runner appends.
  ngspice runs in its own process group; on timeout the whole group is killed, so no
  child of ngspice outlives it.

``engine="auto"`` uses the shared library when it loads and no one holds it (not even a
session that would yield it), else the subprocess.

Every deck is checked before it runs (:func:`cosim.spice.netlist.resolve_deck`): command
lines are refused, and every ``.include`` is checked the same way and inlined, so ngspice
reads exactly the checked text and no other file.

Failures (non-convergence after the retries, timeouts, parse errors, results that are not
finite or have the wrong number of points) raise :class:`cosim.errors.SpiceError`; the deck
exactly as run and the ngspice log are kept in a folder (default ``<cache dir>/failed/``)
and never deleted.  Successful temporary files are removed.

Why one module of ~550 lines: it is the one engine object that owns the shared library --
its runners, the owner bookkeeping and the :class:`NgspiceSession` that holds the library
between ``op`` runs all share the engine's lock and state; the parts without that state are
already their own modules (``libngspice`` the ctypes binding, ``rawfile`` the raw-file
parser, ``results`` the checks, retries and failure folders).
"""

from __future__ import annotations

import numbers
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import NgspiceNotFoundError, SpiceError
from .libngspice import SharedLibrary, find_library
from .netlist import fmt, resolve_deck
from .rawfile import parse_raw
from .results import (ANALYSIS_SCALES, check_analysis, check_vectors, default_cache_dir,
                      keep_failure, log_failed, positive_timeout, result_problem, strip_end,
                      with_retry_options)

__all__ = [
    "NgspiceInfo", "NgspiceEngine", "RunResult", "ENGINE", "find_ngspice", "ngspice_calls",
    "run_op", "run_tran", "run_dc", "run_analysis", "NgspiceSession", "parse_raw",
    "shared_available", "default_cache_dir", "check_vectors", "INSTALL_HINT",
]

INSTALL_HINT = (
    "Install ngspice 46 with the KLU solver: run `scripts/install_ngspice.sh` from the cosim "
    "repository (Debian 12: `apt-get install -t bookworm-backports ngspice libngspice0`; "
    "other systems: `apt-get install ngspice libngspice0`, `brew install ngspice`, or "
    "https://ngspice.sourceforge.io/download.html).")

_SOURCE = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class NgspiceInfo:
    """What :meth:`NgspiceEngine.info` found."""
    executable: str
    library: str | None
    version: int
    version_string: str
    klu: bool


@dataclass(frozen=True)
class RunResult:
    """One attempt at running a deck.

    ``vectors``: name -> values (None when the attempt failed); ``deck``: the text exactly as
    ngspice read it; ``log``: what ngspice printed; ``problem``: why it failed, or None.
    """
    vectors: dict | None
    deck: str
    log: str
    problem: str | None = None



# ---------------------------------------------------------------------------------------
# the engine
# ---------------------------------------------------------------------------------------

class NgspiceEngine:
    """Owns ngspice for a process: executable, shared library and who holds it.

    ``executable``/``library``: explicit paths (default: ``ngspice`` on PATH; the library
    from ``$NGSPICE_LIBRARY_PATH``, the usual install folders or the linker's search path;
    the environment is only read).  ``shared=False`` never loads the library.  Only one
    engine per process should load the library (libngspice is a process-wide simulator):
    use :data:`ENGINE`.

    The loaded library has at most one owner at a time (:meth:`acquire`/:meth:`release`).
    An owner that ``yields`` gives it up when someone else needs it: its ``on_yield``
    callback is called and it must acquire again before its next use.
    """

    def __init__(self, executable=None, library=None, shared: bool = True):
        self._executable = None if executable is None else str(executable)
        self._library = None if library is None else str(library)
        self._shared_allowed = bool(shared)
        self._lock = threading.RLock()
        self._info: NgspiceInfo | None = None
        self._warned = False
        self._shared: SharedLibrary | None = None
        self._shared_error: str | None = None
        self._owner = None
        self._owner_yields = False
        self._calls = 0

    def __repr__(self):
        return f"NgspiceEngine(executable={self._executable!r}, library={self._library!r})"

    # -- finding ---------------------------------------------------------------------------
    @property
    def calls(self) -> int:
        """Number of ngspice analyses this engine actually ran."""
        return self._calls

    def _count(self):
        with self._lock:
            self._calls += 1

    def info(self, refresh: bool = False) -> NgspiceInfo:
        """Locate ngspice (cached): executable, shared library, version, KLU support.

        Raises NgspiceNotFoundError (with install instructions) when there is no
        executable.  Warns once when the version is < 46 or KLU is missing, and carries on.
        """
        with self._lock:
            if self._info is not None and not refresh:
                return self._info
            exe = self._executable or shutil.which("ngspice")
            if exe is None or not Path(exe).is_file():
                raise NgspiceNotFoundError(
                    f"ngspice was not found {'at ' + exe if exe else 'on PATH'}. " + INSTALL_HINT)
            try:
                proc = subprocess.run([exe, "-v"], capture_output=True, text=True, timeout=30,
                                      stdin=subprocess.DEVNULL)
                text = proc.stdout + proc.stderr
            except (OSError, subprocess.SubprocessError) as exc:
                raise NgspiceNotFoundError(f"ngspice at {exe} could not be run ({exc}). "
                                           + INSTALL_HINT) from exc
            m = re.search(r"ngspice-(\d+)", text)
            if m is None:
                raise NgspiceNotFoundError(
                    f"could not read the version of {exe} from `ngspice -v`. " + INSTALL_HINT)
            version = int(m.group(1))
            klu = "compiled with klu" in text.lower()
            line = next((ln.strip("* ").strip() for ln in text.splitlines()
                         if "ngspice-" in ln), f"ngspice-{version}")
            self._info = NgspiceInfo(exe, self._library or find_library(), version, line, klu)
            if (version < 46 or not klu) and not self._warned:
                self._warned = True
                warnings.warn(
                    f"ngspice {version} {'with' if klu else 'without'} KLU found at {exe}: "
                    f"cosim expects ngspice >= 46 compiled with KLU (older builds are ~150x "
                    f"slower on 128x128 arrays). Using it anyway. To upgrade run "
                    f"`scripts/install_ngspice.sh` (installs ngspice 46 from Debian "
                    f"bookworm-backports).", RuntimeWarning, stacklevel=3)
            return self._info

    # -- the shared library ----------------------------------------------------------------
    def _load_shared(self) -> SharedLibrary | None:
        """The loaded library, or None when it cannot be used (reason in _shared_error)."""
        if self._shared is not None and self._shared.exited:
            self._shared, self._shared_error = None, "libngspice asked to exit"
        if self._shared is not None or self._shared_error is not None:
            return self._shared
        if not self._shared_allowed:
            self._shared_error = "this engine does not use the shared library"
            return None
        path = self.info().library
        if path is None:
            self._shared_error = "libngspice not found (set NGSPICE_LIBRARY_PATH)"
            return None
        try:
            self._shared = SharedLibrary(path)
        except (OSError, AttributeError) as exc:  # not loadable or not libngspice
            self._shared_error = f"{path}: {type(exc).__name__}: {exc}"
        return self._shared

    def shared_available(self) -> bool:
        """True when libngspice loads in-process."""
        with self._lock:
            return self._load_shared() is not None

    def shared_free(self) -> bool:
        """True when the library loads and no one holds it.

        (A yielding holder -- a loaded circuit kept for its next ``op`` -- is not displaced
        by a one-shot run: reloading its deck costs more than running the one-shot deck in
        a subprocess, e.g. ~0.4 s against ~0.05 s for a 32x64-cell array.)
        """
        with self._lock:
            return self._load_shared() is not None and self._owner is None

    def acquire(self, owner, yields: bool = False) -> SharedLibrary:
        """Make ``owner`` the holder of the shared library (call under no other lock).

        A yielding holder is told (``holder.on_yield()``) and loses it; a holder that does
        not yield makes this raise RuntimeError.  SpiceError when the library cannot load.
        """
        with self._lock:
            lib = self._load_shared()
            if lib is None:
                raise SpiceError(f"the ngspice shared library could not be loaded: "
                                 f"{self._shared_error}")
            holder = self._owner
            if holder is not None and holder is not owner:
                if not self._owner_yields:
                    raise RuntimeError(f"{holder!r} holds the ngspice shared library; close "
                                       f"it first or use engine='subprocess'")
                self._owner = None
                lib.unload()
                holder.on_yield()
            self._owner, self._owner_yields = owner, bool(yields)
            return lib

    def acquire_if_free(self, owner, yields: bool = False) -> SharedLibrary | None:
        """:meth:`acquire` if no one else holds the library (not even a yielding holder:
        its loaded circuit costs more to reload than the caller's fallback), else None."""
        with self._lock:
            if self._load_shared() is None or (self._owner is not None
                                               and self._owner is not owner):
                return None
            return self.acquire(owner, yields)

    def release(self, owner, unload: bool = True) -> None:
        """``owner`` gives the library back (its current circuit is removed unless
        ``unload=False``: an owner that removed its own circuits); no-op otherwise."""
        with self._lock:
            if self._owner is owner:
                self._owner = None
                if unload and self._shared is not None and not self._shared.exited:
                    self._shared.unload()

    def holds(self, owner) -> bool:
        return self._owner is owner

    # -- running ---------------------------------------------------------------------------
    def _resolve_engine(self, engine: str) -> str:
        if engine not in ("auto", "shared", "subprocess"):
            raise ValueError(f"engine must be 'auto', 'shared' or 'subprocess', got {engine!r}")
        self.info()
        if engine == "subprocess":
            return "subprocess"
        if engine == "shared":
            return "shared"
        return "shared" if self.shared_free() else "subprocess"

    def run(self, deck: str, vectors=None, analysis: str = "op", timeout: float = 60,
            workdir=None, engine: str = "auto", failed_dir=None, retries: int | None = None,
            points: int | None = None) -> dict:
        """Run the analysis card of ``deck``; ``{vector name: float64 array}``.

        ``vectors``: names such as ``'i(vsense0)'`` (default: every vector); for ``tran``
        / ``dc`` the scale (``time`` / ``v(v-sweep)``) is also returned.  ``points``: the
        number of points every vector must have (``op``: 1).  A failed ``op`` is retried
        with gmin/source stepping options (``retries``, default 2 for op, 0 otherwise).
        Relative ``.include`` paths are resolved from the current folder.
        """
        full_deck = resolve_deck(deck)
        check_analysis(full_deck, analysis)
        vectors = check_vectors(vectors)
        scale = ANALYSIS_SCALES[analysis]
        if vectors is not None and scale is not None and scale not in vectors:
            vectors = [scale] + vectors
        timeout = positive_timeout(timeout)
        if points is not None and (isinstance(points, bool) or not isinstance(
                points, numbers.Integral) or points < 1):
            raise ValueError(f"points must be a positive integer, got {points!r}")
        eng = self._resolve_engine(engine)
        if retries is None:
            retries = 2 if analysis == "op" else 0
        t_end = time.monotonic() + timeout
        attempts = []
        for level in range(retries + 1):
            left = max(t_end - time.monotonic(), 1e-3)
            text = with_retry_options(full_deck, level)
            if eng == "shared":
                res = self._run_shared(text, vectors, left)
            else:
                res = self._run_subprocess(text, vectors, left, workdir)
            problem = res.problem or result_problem(res.vectors, vectors, analysis, points)
            if problem is None:
                keep = None if vectors is None else set(vectors)
                return {k: np.asarray(v, dtype=np.float64) for k, v in res.vectors.items()
                        if keep is None or k in keep}
            attempts.append((level, problem, res))
            if res.problem is None or "timed out" in problem or time.monotonic() >= t_end:
                break   # a bad result is not a convergence problem: retrying cannot help
        level, problem, res = attempts[-1]
        msg = (f"ngspice {analysis} failed ({eng} engine, {len(attempts)} attempt(s)"
               f"{', with gmin/source stepping retries' if len(attempts) > 1 else ''}): "
               f"{problem}")
        log = res.log
        if len(attempts) > 1:
            log = "\n".join(f"===== attempt {lv} (retry level {lv}): {pb}\n{r.log}"
                            for lv, pb, r in attempts)
        raise keep_failure(msg, res.deck, log, failed_dir)

    def _run_subprocess(self, deck, vectors, timeout, workdir) -> RunResult:
        info = self.info()
        vec = " ".join(vectors) if vectors else ""
        full = (strip_end(deck) + "\n.control\nset filetype=ascii\nset noaskquit\nrun\n"
                + f"write result.raw {vec}".rstrip() + "\nquit\n.endc\n.end\n")
        tmp = Path(tempfile.mkdtemp(prefix="cosim-ngspice-", dir=workdir))
        try:
            (tmp / "deck.cir").write_text(full)
            self._count()
            # own process group: a timeout kills ngspice and everything it started
            proc = subprocess.Popen([info.executable, "-b", "deck.cir"], cwd=tmp,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True)
            try:
                out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                out, err = proc.communicate()
                log = _decode(out) + "\n--- stderr ---\n" + _decode(err) + \
                    f"\n*** killed (process group) after timeout={timeout} s\n"
                return RunResult(None, full, log, f"ngspice timed out after {timeout} s")
            finally:
                _kill_group(proc)   # children left behind by a finished ngspice, too
            log = _decode(out) + ("\n--- stderr ---\n" + _decode(err) if err else "")
            problem = log_failed(log)
            if proc.returncode != 0:
                problem = problem or f"ngspice exited with status {proc.returncode}"
            raw = tmp / "result.raw"
            if problem is None and not raw.is_file():
                problem = "ngspice wrote no results"
            if problem is not None:
                return RunResult(None, full, log, problem)
            try:
                plots = parse_raw(raw)
                if not plots:
                    raise ValueError("empty raw file")
            except (ValueError, IndexError, OSError) as exc:
                return RunResult(None, full, log, f"could not parse the ngspice results: {exc}")
            return RunResult(plots[-1]["vectors"], full, log)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _run_shared(self, deck, vectors, timeout) -> RunResult:
        full = strip_end(deck) + "\n.end\n"
        token = object()
        with self._lock:
            lib = self.acquire(token)
            try:
                return self._analyse(lib, full, vectors, timeout, load=True)
            finally:
                self.release(token)

    def _analyse(self, lib, deck, vectors, timeout, load) -> RunResult:
        """Load (optionally) and run the circuit held by the caller; a RunResult."""
        log = ""
        if load:
            log = lib.load(deck)
            problem = log_failed(log)
            if problem is not None:
                return RunResult(None, deck, log, f"ngspice rejected the deck: {problem}")
        lib.command("destroy all")      # drop the plots of the last run
        self._count()
        runlog, timed_out = lib.background("run", timeout)
        log += "\n" + runlog
        if timed_out:
            return RunResult(None, deck, log, f"ngspice timed out after {timeout} s (halted)")
        problem = log_failed(runlog)
        if problem is not None:
            return RunResult(None, deck, log, problem)
        if vectors is None:
            return RunResult(lib.all_vectors(), deck, log)
        vecs = {}
        for v in vectors:
            arr = lib.vector(v)
            if arr is None:
                return RunResult(None, deck, log, f"ngspice has no vector {v}")
            vecs[v] = arr
        return RunResult(vecs, deck, log)


def _decode(data) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def _kill_group(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


ENGINE = NgspiceEngine()


def find_ngspice(refresh: bool = False) -> NgspiceInfo:
    """:meth:`NgspiceEngine.info` of :data:`ENGINE`."""
    return ENGINE.info(refresh)


def ngspice_calls() -> int:
    """Number of ngspice analyses :data:`ENGINE` ran in this process (all engines)."""
    return ENGINE.calls


def shared_available() -> bool:
    """True when libngspice loads in-process."""
    return ENGINE.shared_available()


def run_analysis(deck: str, vectors=None, analysis: str = "op", timeout: float = 60,
                 workdir=None, engine: str = "auto", failed_dir=None,
                 retries: int | None = None, points: int | None = None,
                 ngspice: NgspiceEngine | None = None) -> dict:
    """:meth:`NgspiceEngine.run` (``ngspice``, default :data:`ENGINE`)."""
    return (ngspice or ENGINE).run(deck, vectors, analysis, timeout, workdir, engine,
                                   failed_dir, retries, points)


def run_op(deck: str, vectors=None, timeout: float = 60, workdir=None, engine: str = "auto",
           failed_dir=None, retries: int = 2, ngspice=None) -> dict:
    """Run the ``.op`` of ``deck``; ``{name: array of length 1}``."""
    return run_analysis(deck, vectors, "op", timeout, workdir, engine, failed_dir, retries,
                        ngspice=ngspice)


def run_tran(deck: str, vectors=None, timeout: float = 60, workdir=None,
             engine: str = "auto", failed_dir=None, ngspice=None) -> dict:
    """Run the ``.tran`` of ``deck``; includes ``'time'``."""
    return run_analysis(deck, vectors, "tran", timeout, workdir, engine, failed_dir, 0,
                        ngspice=ngspice)


def run_dc(deck: str, vectors=None, timeout: float = 60, workdir=None,
           engine: str = "auto", failed_dir=None, points=None, ngspice=None) -> dict:
    """Run the ``.dc`` sweep of ``deck`` (e.g. a batch deck); includes ``'v(v-sweep)'``."""
    return run_analysis(deck, vectors, "dc", timeout, workdir, engine, failed_dir, 0,
                        points=points, ngspice=ngspice)


# ---------------------------------------------------------------------------------------
# session: load once, alter sources, rerun .op
# ---------------------------------------------------------------------------------------

class NgspiceSession:
    """One circuit loaded in the shared library; alter sources and rerun ``op``.

    >>> with NgspiceSession(deck, vectors=sense_vectors(C)) as s:     # doctest: +SKIP
    ...     s.set_sources({"vin0": 0.1, "vin1": 0.0})
    ...     currents = s.op()          # {'i(vsense0)': array([...]), ...}

    Saves the deck parsing/loading (ngspice still re-orders and re-factors the matrix at
    every op).  The session holds the engine's shared library from construction to
    :meth:`close`; with ``yields=True`` it gives the library up to whoever needs it next
    (then :attr:`closed` is True and its owner opens a new session when needed).
    """

    def __init__(self, deck: str, vectors=None, timeout: float = 60, failed_dir=None,
                 yields: bool = False, ngspice: NgspiceEngine | None = None):
        self._engine = ngspice or ENGINE
        self._lib = None
        full = resolve_deck(deck)
        check_analysis(full, "op")
        self.vectors = check_vectors(vectors) or sorted(
            {f"i({m.lower()})" for m in re.findall(r"^\s*(vsense\d+)\s", full, re.I | re.M)},
            key=lambda s: int(re.sub(r"\D", "", s)))
        if not self.vectors:
            raise ValueError("no vectors to read: give vectors=...")
        self.timeout = positive_timeout(timeout)
        self.failed_dir = failed_dir
        self._sources = {m.lower() for m in re.findall(r"^\s*(v[a-z0-9_]+)\s", full,
                                                        re.I | re.M)}
        self._deck = strip_end(full) + "\n.end\n"
        self._engine.info()
        with self._engine._lock:
            lib = self._engine.acquire(self, yields=yields)
            log = lib.load(self._deck)
            problem = log_failed(log)
            if problem is not None:
                self._engine.release(self)
                raise keep_failure(f"ngspice rejected the session deck: {problem}",
                                    self._deck, log, failed_dir)
            self._lib = lib

    def __repr__(self):
        return f"<NgspiceSession {'closed' if self.closed else 'open'}, {len(self.vectors)} vectors>"

    @property
    def closed(self) -> bool:
        return self._lib is None

    def on_yield(self) -> None:
        """Called by the engine when another owner takes the library."""
        self._lib = None

    def set_sources(self, values: dict) -> None:
        """Set DC values of independent voltage sources, e.g. ``{'vin0': 0.1}``."""
        cmds = []
        for name, val in values.items():
            if not isinstance(name, str) or not _SOURCE.fullmatch(name.lower()) \
                    or name.lower() not in self._sources:
                raise ValueError(f"unknown voltage source {name!r}")
            cmds.append(f"alter {name.lower()} dc = {fmt(val, name)}")
        with self._engine._lock:
            self._check_open()
            # drop the last op's plot first: with its vectors present every `alter` costs
            # ~1.5 ms at 64x128 cells (~100 ms per pattern), without them ~15 us
            self._lib.command("destroy all")
            for c in cmds:
                out = self._lib.command(c)
                if "error" in out.lower():
                    raise SpiceError(f"ngspice refused `{c}`: {out.strip()}")

    def op(self) -> dict:
        """Run ``op`` on the loaded circuit; ``{vector: array of length 1}``."""
        with self._engine._lock:
            self._check_open()
            res = self._engine._analyse(self._lib, self._deck, self.vectors, self.timeout,
                                        load=False)
            problem = res.problem or result_problem(res.vectors, self.vectors, "op", 1)
            if problem is not None:
                raise keep_failure(f"ngspice op failed in session: {problem}", self._deck,
                                    res.log, self.failed_dir)
        return res.vectors

    def _check_open(self):
        if self._lib is None or not self._engine.holds(self):
            self._lib = None
            raise RuntimeError("the session is closed")

    def close(self) -> None:
        if self._lib is None:
            return
        self._engine.release(self)
        self._lib = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
