"""Run ngspice decks: find the simulator, run analyses, parse results, keep failures.

Two engines:

* ``"shared"``: in-process through PySpice's ``NgSpiceShared`` binding of libngspice
  (no process start, no file parsing).  The analysis runs in ngspice's background thread;
  on timeout it is halted with ``bg_halt`` and the circuit removed.  libngspice is one
  global simulator per process, so shared runs are serialised by a lock.
* ``"subprocess"``: ``ngspice -b`` on a deck written to a temporary folder, results read
  back from an ASCII raw file written by a fixed ``.control`` block the runner appends
  (the user deck itself may not contain control lines, see ``check_deck_safe``).  The
  process is killed after ``timeout`` seconds.

``engine="auto"`` uses the shared library when it loads, else the subprocess.

Failures (non-convergence after the retries, timeouts, parse errors) raise
:class:`cosim.errors.SpiceError`; the deck exactly as run and the ngspice log are kept in a
folder (default ``<cache dir>/failed/``) and never deleted.  Successful temporary files are
removed.  Every analysis actually run by ngspice increments :func:`ngspice_calls`.
"""

from __future__ import annotations

import ctypes.util
import datetime
import logging
import math
import numbers
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import NgspiceNotFoundError, SpiceError
from .netlist import check_deck_safe, fmt

__all__ = [
    "NgspiceInfo", "find_ngspice", "ngspice_calls", "run_op", "run_tran", "run_dc",
    "run_analysis", "NgspiceSession", "parse_raw", "shared_available", "default_cache_dir",
    "INSTALL_HINT",
]

INSTALL_HINT = (
    "Install ngspice 46 with the KLU solver: run `scripts/install_ngspice.sh` from the cosim "
    "repository (Debian 12: `apt-get install -t bookworm-backports ngspice libngspice0`; "
    "other systems: `apt-get install ngspice libngspice0`, `brew install ngspice`, or "
    "https://ngspice.sourceforge.io/download.html).")

_LIB_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libngspice.so.0",
    "/usr/lib/aarch64-linux-gnu/libngspice.so.0",
    "/usr/lib/libngspice.so.0",
    "/usr/local/lib/libngspice.so.0",
    "/usr/local/lib/libngspice.so",
)

_VECTOR = re.compile(r"[vi]\([a-z0-9_.#+\-]+\)|time|v\(v-sweep\)")
_SOURCE = re.compile(r"[a-z][a-z0-9_]*")

# Text in an ngspice log that marks a failed analysis.
_FAIL_PATTERNS = (
    "simulation(s) aborted", "timestep too small", "singular matrix", "no convergence",
    "iteration limit reached", "gmin stepping failed", "source stepping failed",
    "doanalyses:", "error:", "fatal", "run simulation(s) aborted", "cannot recover",
)

# ---------------------------------------------------------------------------------------
# bookkeeping
# ---------------------------------------------------------------------------------------

_calls = 0
_calls_lock = threading.Lock()


def ngspice_calls() -> int:
    """Number of ngspice analyses actually run in this process (all engines)."""
    return _calls


def _count():
    global _calls
    with _calls_lock:
        _calls += 1


def default_cache_dir() -> Path:
    """``$COSIM_CACHE_DIR``, else ``$XDG_CACHE_HOME/cosim/spice``, else ``~/.cache/...``."""
    env = os.environ.get("COSIM_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "cosim" / "spice"


# ---------------------------------------------------------------------------------------
# finding ngspice
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NgspiceInfo:
    """What :func:`find_ngspice` found."""
    executable: str
    library: str | None
    version: int
    version_string: str
    klu: bool


_info: NgspiceInfo | None = None
_warned = False


def _find_library() -> str | None:
    env = os.environ.get("NGSPICE_LIBRARY_PATH")
    if env and Path(env).is_file():
        return env
    for cand in _LIB_CANDIDATES:
        if Path(cand).is_file():
            return cand
    found = ctypes.util.find_library("ngspice")
    return found


def find_ngspice(refresh: bool = False) -> NgspiceInfo:
    """Locate ngspice (cached): executable, shared library, version, KLU support.

    Raises NgspiceNotFoundError (with install instructions) when no executable is on PATH.
    Warns once when the version is < 46 or KLU is missing, and carries on.
    """
    global _info, _warned
    if _info is not None and not refresh:
        return _info
    exe = shutil.which("ngspice")
    if exe is None:
        raise NgspiceNotFoundError("ngspice was not found on PATH. " + INSTALL_HINT)
    try:
        proc = subprocess.run([exe, "-v"], capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL)
        text = proc.stdout + proc.stderr
    except (OSError, subprocess.SubprocessError) as exc:
        raise NgspiceNotFoundError(f"ngspice at {exe} could not be run ({exc}). "
                                   + INSTALL_HINT) from exc
    m = re.search(r"ngspice-(\d+)", text)
    if m is None:
        raise NgspiceNotFoundError(f"could not read the version of {exe} from `ngspice -v`. "
                                   + INSTALL_HINT)
    version = int(m.group(1))
    klu = "compiled with klu" in text.lower()
    line = next((ln.strip("* ").strip() for ln in text.splitlines() if "ngspice-" in ln),
                f"ngspice-{version}")
    _info = NgspiceInfo(exe, _find_library(), version, line, klu)
    if (version < 46 or not klu) and not _warned:
        _warned = True
        warnings.warn(
            f"ngspice {version} {'with' if klu else 'without'} KLU found at {exe}: cosim "
            f"expects ngspice >= 46 compiled with KLU (older builds are ~150x slower on "
            f"128x128 arrays). Using it anyway. To upgrade run `scripts/install_ngspice.sh` "
            f"(installs ngspice 46 from Debian bookworm-backports).", RuntimeWarning,
            stacklevel=2)
    return _info


# ---------------------------------------------------------------------------------------
# raw files
# ---------------------------------------------------------------------------------------

def parse_raw(data: bytes | str | os.PathLike) -> list[dict]:
    """Parse an ngspice raw file (ASCII or binary, real data).

    Returns one dict per plot: ``{"title", "plotname", "vectors": {name: array}}``; vector
    names are lower case as ngspice writes them (``i(vsense0)``, ``v(w0_0)``, ``time``).
    """
    if isinstance(data, (str, os.PathLike)) and not isinstance(data, bytes):
        data = Path(data).read_bytes()
    plots = []
    pos = 0
    n = len(data)
    while pos < n:
        # header
        hdr = {}
        names: list[str] = []
        while True:
            end = data.find(b"\n", pos)
            if end < 0:
                if hdr:
                    raise ValueError("truncated raw file header")
                return plots
            line = data[pos:end].decode("latin-1").rstrip("\r")
            pos = end + 1
            if not line.strip():
                if not hdr:
                    continue
            key, _, val = line.partition(":")
            key = key.strip().lower()
            if key == "variables":
                nv = int(hdr.get("no. variables", "0"))
                for _ in range(nv):
                    end = data.find(b"\n", pos)
                    if end < 0:
                        raise ValueError("truncated raw file variable list")
                    parts = data[pos:end].decode("latin-1").split()
                    pos = end + 1
                    if len(parts) < 2:
                        raise ValueError("bad variable line in raw file")
                    names.append(parts[1].lower())
                continue
            if key in ("values", "binary"):
                fmt_kind = key
                break
            hdr[key] = val.strip()
        nv = int(hdr.get("no. variables", "0"))
        npts = int(hdr.get("no. points", "0"))
        if "complex" in hdr.get("flags", "").lower():
            raise ValueError("complex raw data is not supported")
        if len(names) != nv:
            raise ValueError("raw file variable count mismatch")
        if fmt_kind == "binary":
            nbytes = 8 * nv * npts
            if pos + nbytes > n:
                raise ValueError("truncated binary raw file")
            arr = np.frombuffer(data[pos:pos + nbytes], dtype="<f8").reshape(npts, nv)
            pos += nbytes
        else:
            arr = np.empty((npts, nv))
            text_tokens = []
            need = npts * (nv + 1)
            # read lines until enough tokens
            while len(text_tokens) < need:
                end = data.find(b"\n", pos)
                if end < 0:
                    end = n
                if pos >= n:
                    raise ValueError("truncated ASCII raw file")
                text_tokens.extend(data[pos:end].split())
                pos = end + 1
            tok = text_tokens[:need]
            for p in range(npts):
                row = tok[p * (nv + 1):(p + 1) * (nv + 1)]
                if int(row[0]) != p:
                    raise ValueError("ASCII raw file point index out of sequence")
                arr[p] = [float(t) for t in row[1:]]
        vectors = {}
        for k, name in enumerate(names):
            vectors[name] = np.array(arr[:, k])
        plots.append({"title": hdr.get("title", ""), "plotname": hdr.get("plotname", ""),
                      "vectors": vectors, "scale": names[0] if names else None})
    return plots


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------

def _check_vectors(vectors):
    if vectors is None:
        return None
    if isinstance(vectors, str):
        vectors = [vectors]
    out = []
    for v in vectors:
        if not isinstance(v, str):
            raise TypeError("vector names must be strings")
        s = v.strip().lower()
        if not _VECTOR.fullmatch(s):
            raise ValueError(f"vector name {v!r} must look like v(node) or i(vsource)")
        out.append(s)
    if not out:
        raise ValueError("vectors must not be empty")
    return out


def _strip_end(deck: str) -> str:
    lines = deck.rstrip().splitlines()
    while lines and lines[-1].strip().lower() in (".end", ""):
        lines.pop()
    return "\n".join(lines)


def _retry_options(level: int) -> str:
    if level == 0:
        return ""
    if level == 1:
        return ".options gminsteps=200 srcsteps=200 itl1=1000 itl2=1000"
    return (".options gminsteps=1000 srcsteps=1000 itl1=5000 itl2=5000 gmin=1e-10 "
            "reltol=1e-5")


def _failed_dir(failed_dir) -> Path:
    base = Path(failed_dir) if failed_dir is not None else default_cache_dir() / "failed"
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    d = base / f"{stamp}-{uuid.uuid4().hex[:8]}"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _keep_failure(message, deck_text, log_text, failed_dir):
    d = _failed_dir(failed_dir)
    deck_path = d / "deck.cir"
    log_path = d / "ngspice.log"
    deck_path.write_text(deck_text)
    log_path.write_text(log_text if log_text.strip() else f"(ngspice printed nothing)\n"
                        f"{message}\n")
    return SpiceError(message, deck=str(deck_path), log=str(log_path))


# ngspice falls back from gmin to source stepping to a pseudo-transient op; a failed
# stepping stage is only a warning when the fallback then succeeds
_RECOVERABLE = ("gmin stepping failed", "source stepping failed")


def _log_failed(log: str) -> str | None:
    low = log.lower()
    recovered = "transient op finished successfully" in low
    for p in _FAIL_PATTERNS:
        if recovered and p in _RECOVERABLE:
            continue
        if p in low:
            # "error" alone also appears in harmless notes; report the first matching line
            for line in log.splitlines():
                if p in line.lower():
                    return line.strip()
            return p
    return None


# ---------------------------------------------------------------------------------------
# subprocess engine
# ---------------------------------------------------------------------------------------

def _control_block(vectors, analysis_cmd="run"):
    vec = " ".join(vectors) if vectors else ""
    return [".control", "set filetype=ascii", "set noaskquit", analysis_cmd,
            f"write result.raw {vec}".rstrip(), "quit", ".endc"]


def _run_subprocess(deck, vectors, timeout, workdir, retry_level):
    info = find_ngspice()
    body = _strip_end(deck)
    extra = _retry_options(retry_level)
    full = body + "\n" + (extra + "\n" if extra else "") + \
        "\n".join(_control_block(vectors)) + "\n.end\n"
    tmp = Path(tempfile.mkdtemp(prefix="cosim-ngspice-", dir=workdir))
    (tmp / "deck.cir").write_text(full)
    _count()
    try:
        proc = subprocess.run([info.executable, "-b", "deck.cir"], cwd=tmp,
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        log = proc.stdout + ("\n--- stderr ---\n" + proc.stderr if proc.stderr else "")
        rc = proc.returncode
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout or b""
        err = exc.stderr or b""
        out = out.decode(errors="replace") if isinstance(out, bytes) else out
        err = err.decode(errors="replace") if isinstance(err, bytes) else err
        log = out + "\n--- stderr ---\n" + err + f"\n*** killed after timeout={timeout} s\n"
        return None, full, log, tmp, f"ngspice timed out after {timeout} s"
    raw = tmp / "result.raw"
    problem = _log_failed(log)
    if rc != 0:
        problem = problem or f"ngspice exited with status {rc}"
    if problem is None and not raw.is_file():
        problem = "ngspice wrote no results"
    if problem is not None:
        return None, full, log, tmp, problem
    try:
        plots = parse_raw(raw)
        if not plots:
            raise ValueError("empty raw file")
    except (ValueError, IndexError) as exc:
        return None, full, log, tmp, f"could not parse the ngspice results: {exc}"
    return plots[-1], full, log, tmp, None


# ---------------------------------------------------------------------------------------
# shared-library engine
# ---------------------------------------------------------------------------------------

class _DropFilter(logging.Filter):
    def filter(self, record):  # PySpice logs every ngspice line; keep them out of the way
        return False


_shared = None
_shared_error: str | None = None
_shared_lock = threading.RLock()
_session_open = None


def _load_shared():
    """The process-wide libngspice instance (None if it cannot be loaded)."""
    global _shared, _shared_error
    if _shared is not None or _shared_error is not None:
        return _shared
    info = find_ngspice()
    lib = info.library or _find_library()
    if lib is None:
        _shared_error = "libngspice not found"
        return None
    if not os.environ.get("NGSPICE_LIBRARY_PATH"):
        os.environ["NGSPICE_LIBRARY_PATH"] = lib
    for name in ("PySpice.Spice.NgSpice.Shared",
                 "PySpice.Spice.NgSpice.Shared.NgSpiceShared"):
        lg = logging.getLogger(name)
        if not any(isinstance(f, _DropFilter) for f in lg.filters):
            lg.addFilter(_DropFilter())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from PySpice.Spice.NgSpice.Shared import NgSpiceShared

        class _Quiet(NgSpiceShared):
            # libngspice calls this from its background thread with "exited" = False when
            # the thread starts and True just before it ends (PySpice names it is_running
            # and returns None, which cffi reports as an error).
            @staticmethod
            def _background_thread_running(exited, ngspice_id, user_data):
                from PySpice.Spice.NgSpice.Shared import ffi
                self = ffi.from_handle(user_data)
                self._is_running = not bool(exited)
                if exited:
                    self._bg_done.set()
                return 0

        if NgSpiceShared.LIBRARY_PATH is None or "{" in str(NgSpiceShared.LIBRARY_PATH):
            NgSpiceShared.LIBRARY_PATH = os.environ["NGSPICE_LIBRARY_PATH"]
        _Quiet._bg_done = threading.Event()
        _shared = _Quiet(ngspice_id=0, send_data=False)
    except Exception as exc:  # any load problem: fall back to the subprocess engine
        _shared_error = f"{type(exc).__name__}: {exc}"
        return None
    return _shared


def shared_available() -> bool:
    """True when libngspice loads in-process through PySpice."""
    with _shared_lock:
        return _load_shared() is not None


def _cmd(ng, command: str) -> str:
    ng.clear_output()
    ng._ngspice_shared.ngSpice_Command(command.encode("ascii"))
    return "\n".join(ng._stdout + ng._stderr)


def _get_vector(ng, name: str):
    from PySpice.Spice.NgSpice.Shared import ffi
    vi = ng._ngspice_shared.ngGet_Vec_Info(name.encode("ascii"))
    if vi == ffi.NULL or vi.v_realdata == ffi.NULL:
        return None
    n = int(vi.v_length)
    return np.frombuffer(ffi.buffer(vi.v_realdata, 8 * n), dtype=np.float64).copy()


def _all_vectors(ng):
    from PySpice.Spice.NgSpice.Shared import ffi
    lib = ng._ngspice_shared
    plot = ffi.string(lib.ngSpice_CurPlot()).decode()
    arr = lib.ngSpice_AllVecs(plot.encode())
    names = []
    i = 0
    while arr[i] != ffi.NULL:
        names.append(ffi.string(arr[i]).decode())
        i += 1
    out = {}
    for nm in names:
        low = nm.lower()
        if low.endswith("#branch"):
            key = f"i({low[:-7]})"
        elif low in ("time", "v-sweep") or low.startswith(("v(", "i(")):
            key = low if low != "v-sweep" else "v(v-sweep)"
        else:
            key = f"v({low})"
        vec = _get_vector(ng, f"{plot}.{nm}")
        if vec is not None:
            out[key] = vec
    return out


def _bg(ng, command, timeout):
    """Run ``command`` in ngspice's background thread; halt it after ``timeout`` s."""
    lib = ng._ngspice_shared
    done = ng._bg_done
    done.clear()
    log = _cmd(ng, f"bg_{command}")
    t0 = time.monotonic()
    # Wait for the thread's own "exited" callback, not only ngSpice_running(): touching
    # the circuit (destroy/remcirc) while the thread is still unwinding segfaults.
    while not done.wait(0.0005) or lib.ngSpice_running():
        if time.monotonic() - t0 > timeout:
            log += "\n" + _cmd(ng, "bg_halt")
            done.wait(10)
            t1 = time.monotonic()
            while lib.ngSpice_running() and time.monotonic() - t1 < 10:
                time.sleep(0.01)
            time.sleep(0.002)
            return log + f"\n*** halted after timeout={timeout} s\n", True
    time.sleep(0)  # let the thread return from the callback
    return log + "\n" + "\n".join(ng._stdout + ng._stderr), False


def _load_circuit(ng, deck: str):
    """Hand a deck to the shared library (after clearing the last one); (log, problem).

    On a problem the half-loaded circuit is removed again.
    """
    from PySpice.Spice.NgSpice.Shared import ffi

    _cmd(ng, "destroy all")
    ng.clear_output()
    lines = [ln for ln in deck.splitlines() if ln.strip()]
    keep = [ffi.new("char[]", ln.encode("utf-8")) for ln in lines] + [ffi.NULL]
    ng._ngspice_shared.ngSpice_Circ(ffi.new("char *[]", keep))
    log = "\n".join(ng._stdout + ng._stderr)
    problem = _log_failed(log)
    if problem is not None:
        _cmd(ng, "remcirc")
    return log, problem


def _run_shared(deck, vectors, timeout, retry_level):
    ng = _load_shared()
    body = _strip_end(deck)
    extra = _retry_options(retry_level)
    full = body + "\n" + (extra + "\n" if extra else "") + ".end\n"
    log, problem = _load_circuit(ng, full)
    if problem is not None:
        return None, full, log, None, f"ngspice rejected the deck: {problem}"
    _count()
    runlog, timed_out = _bg(ng, "run", timeout)
    log += "\n" + runlog
    try:
        if timed_out:
            return None, full, log, None, f"ngspice timed out after {timeout} s (halted)"
        problem = _log_failed(runlog)
        if problem is not None:
            return None, full, log, None, problem
        if vectors is None:
            vecs = _all_vectors(ng)
        else:
            vecs = {}
            for v in vectors:
                arr = _get_vector(ng, v)
                if arr is None:
                    return None, full, log, None, f"ngspice has no vector {v}"
                vecs[v] = arr
        plot = {"vectors": vecs, "plotname": "", "title": ""}
        return plot, full, log, None, None
    finally:
        _cmd(ng, "destroy all")
        _cmd(ng, "remcirc")


# ---------------------------------------------------------------------------------------
# public runners
# ---------------------------------------------------------------------------------------

_ANALYSIS_CARDS = {"op": ".op", "tran": ".tran", "dc": ".dc"}


def _resolve_engine(engine):
    if engine not in ("auto", "shared", "subprocess"):
        raise ValueError(f"engine must be 'auto', 'shared' or 'subprocess', got {engine!r}")
    find_ngspice()
    if engine == "subprocess":
        return "subprocess"
    with _shared_lock:
        ok = _load_shared() is not None
    if engine == "shared":
        if not ok:
            raise SpiceError(f"the ngspice shared library could not be loaded: {_shared_error}")
        _release_yielding_session()
        if _session_open is not None:
            raise RuntimeError("an NgspiceSession holds the shared library; close it first "
                               "or use engine='subprocess'")
        return "shared"
    return "shared" if ok and _session_open is None else "subprocess"


def _release_yielding_session():
    """Close the open session if its owner said it may be closed for others (a cache)."""
    session = _session_open
    if session is not None and session.yields:
        session.close()


def run_analysis(deck: str, vectors=None, analysis: str = "op", timeout: float = 60,
                 workdir=None, engine: str = "auto", failed_dir=None,
                 retries: int | None = None) -> dict:
    """Run the analysis card of ``deck`` and return ``{vector name: numpy array}``.

    ``vectors``: names such as ``'i(vsense0)'``, ``'v(w0_0)'`` (default: every vector).
    For ``tran``/``dc`` the scale (``time`` / ``v(v-sweep)``) is also returned.  A failed
    ``op`` is retried with gmin/source stepping options (``retries``, default 2 for op and 0
    otherwise) before SpiceError is raised; the deck and log are kept in ``failed_dir``.
    """
    if analysis not in _ANALYSIS_CARDS:
        raise ValueError(f"analysis must be one of {sorted(_ANALYSIS_CARDS)}")
    check_deck_safe(deck)
    card = _ANALYSIS_CARDS[analysis]
    cards = [ln.split()[0].lower() for ln in deck.splitlines()
             if ln.strip().startswith(".") and ln.split()[0].lower() in (".op", ".tran",
                                                                          ".dc", ".ac")]
    if cards != [card]:
        raise ValueError(f"the deck must contain exactly one analysis card {card} "
                         f"(found {cards})")
    vectors = _check_vectors(vectors)
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) \
            or not timeout > 0 or not math.isfinite(timeout):
        raise ValueError("timeout must be a positive number of seconds")
    eng = _resolve_engine(engine)
    if retries is None:
        retries = 2 if analysis == "op" else 0
    t_end = time.monotonic() + timeout
    attempts = []
    for level in range(retries + 1):
        left = max(t_end - time.monotonic(), 1e-3)
        if eng == "shared":
            with _shared_lock:
                plot, full, log, tmp, problem = _run_shared(deck, vectors, left, level)
        else:
            plot, full, log, tmp, problem = _run_subprocess(deck, vectors, left, workdir, level)
        if problem is None:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            vecs = plot["vectors"]
            if vectors is not None:
                missing = [v for v in vectors if v not in vecs]
                if missing:
                    problem = f"ngspice returned no vector(s) {missing}"
            if problem is None:
                keep = None if vectors is None else set(vectors)
                return {k: np.asarray(v, dtype=np.float64) for k, v in vecs.items()
                        if keep is None or k in keep}
        attempts.append((level, problem, full, log))
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if "timed out" in problem or time.monotonic() >= t_end:
            break
    level, problem, full, log = attempts[-1]
    msg = (f"ngspice {analysis} failed ({eng} engine, {len(attempts)} attempt(s)"
           f"{', with gmin/source stepping retries' if len(attempts) > 1 else ''}): {problem}")
    if len(attempts) > 1:
        log = "\n".join(f"===== attempt {lv} (retry level {lv}): {pb}\n{lg}"
                        for lv, pb, _, lg in attempts)
    raise _keep_failure(msg, full, log, failed_dir)


def run_op(deck: str, vectors=None, timeout: float = 60, workdir=None, engine: str = "auto",
           failed_dir=None, retries: int = 2) -> dict:
    """Run the ``.op`` of ``deck``; ``{name: array of length 1}``."""
    return run_analysis(deck, vectors, "op", timeout, workdir, engine, failed_dir, retries)


def run_tran(deck: str, vectors=None, timeout: float = 60, workdir=None,
             engine: str = "auto", failed_dir=None) -> dict:
    """Run the ``.tran`` of ``deck``; includes ``'time'``."""
    out = run_analysis(deck, _with_scale(vectors, "time"), "tran", timeout, workdir, engine,
                       failed_dir, 0)
    return out


def run_dc(deck: str, vectors=None, timeout: float = 60, workdir=None,
           engine: str = "auto", failed_dir=None) -> dict:
    """Run the ``.dc`` sweep of ``deck`` (e.g. a batch deck); includes ``'v(v-sweep)'``."""
    return run_analysis(deck, _with_scale(vectors, "v(v-sweep)"), "dc", timeout, workdir,
                        engine, failed_dir, 0)


def _with_scale(vectors, scale):
    vectors = _check_vectors(vectors)
    if vectors is None:
        return None
    return vectors if scale in vectors else [scale] + vectors


# ---------------------------------------------------------------------------------------
# session: load once, alter sources, rerun .op
# ---------------------------------------------------------------------------------------

class NgspiceSession:
    """One circuit loaded in the shared library; alter sources and rerun ``op``.

    >>> with NgspiceSession(deck, vectors=sense_vectors(C)) as s:     # doctest: +SKIP
    ...     s.set_sources({"vin0": 0.1, "vin1": 0.0})
    ...     currents = s.op()          # {'i(vsense0)': array([...]), ...}

    Saves the deck parsing/loading (ngspice still re-orders and re-factors the matrix at
    every op, ANCHORS.md).  Needs the shared library; one session per process at a time
    (while it is open, ``engine="auto"`` runs use the subprocess engine).
    """

    def __init__(self, deck: str, vectors=None, timeout: float = 60, failed_dir=None,
                 yields: bool = False):
        global _session_open
        # a yielding session is closed when another session or a shared-engine run needs
        # the library (its owner reopens it when it needs it again); others are exclusive
        self.yields = bool(yields)
        self._ng = None
        check_deck_safe(deck)
        cards = [ln.split()[0].lower() for ln in deck.splitlines()
                 if ln.strip() and ln.split()[0].lower() in (".op", ".tran", ".dc", ".ac")]
        if cards != [".op"]:
            raise ValueError(f"a session deck needs exactly one .op card (found {cards})")
        self.vectors = _check_vectors(vectors) or sorted(
            {f"i({m.lower()})" for m in re.findall(r"^\s*(vsense\d+)\s", deck,
                                                     re.I | re.M)},
            key=lambda s: int(re.sub(r"\D", "", s)))
        if not self.vectors:
            raise ValueError("no vectors to read: give vectors=...")
        self.timeout = float(timeout)
        self.failed_dir = failed_dir
        self._sources = {m.lower() for m in re.findall(r"^\s*(v[a-z0-9_]+)\s", deck,
                                                        re.I | re.M)}
        self._deck = _strip_end(deck) + "\n.end\n"
        find_ngspice()
        with _shared_lock:
            ng = _load_shared()
            if ng is None:
                raise SpiceError(f"NgspiceSession needs the ngspice shared library: "
                                 f"{_shared_error}")
            _release_yielding_session()
            if _session_open is not None:
                raise RuntimeError("another NgspiceSession is open; close it first")
            log, problem = _load_circuit(ng, self._deck)
            if problem is not None:
                raise _keep_failure(f"ngspice rejected the session deck: {problem}",
                                    self._deck, log, failed_dir)
            _session_open = self
        self._ng = ng
        self._log: list[str] = [log]

    def set_sources(self, values: dict) -> None:
        """Set DC values of independent voltage sources, e.g. ``{'vin0': 0.1}``."""
        self._check_open()
        cmds = []
        for name, val in values.items():
            if not isinstance(name, str) or not _SOURCE.fullmatch(name.lower()) \
                    or name.lower() not in self._sources:
                raise ValueError(f"unknown voltage source {name!r}")
            cmds.append(f"alter {name.lower()} dc = {fmt(val, name)}")
        with _shared_lock:
            for c in cmds:
                out = _cmd(self._ng, c)
                if "error" in out.lower():
                    raise SpiceError(f"ngspice refused `{c}`: {out.strip()}")

    def op(self) -> dict:
        """Run ``op`` on the loaded circuit; ``{vector: array of length 1}``."""
        self._check_open()
        with _shared_lock:
            _cmd(self._ng, "destroy all")
            _count()
            log, timed_out = _bg(self._ng, "run", self.timeout)
            problem = _log_failed(log)
            if timed_out:
                problem = f"ngspice timed out after {self.timeout} s (halted)"
            if problem is None:
                out = {}
                for v in self.vectors:
                    arr = _get_vector(self._ng, v)
                    if arr is None:
                        problem = f"ngspice has no vector {v}"
                        break
                    out[v] = arr
            if problem is not None:
                raise _keep_failure(f"ngspice op failed in session: {problem}", self._deck,
                                    log, self.failed_dir)
        return out

    def _check_open(self):
        if self._ng is None:
            raise RuntimeError("the session is closed")

    def close(self) -> None:
        global _session_open
        if self._ng is None:
            return
        with _shared_lock:
            _cmd(self._ng, "destroy all")
            _cmd(self._ng, "remcirc")
            if _session_open is self:
                _session_open = None
        self._ng = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
