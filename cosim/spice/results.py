"""What both ways of running ngspice share: argument checks, failure detection in the log,
result checks (present, finite, the right number of points) and the kept failure folders."""

from __future__ import annotations

import datetime
import math
import numbers
import os
import re
import uuid
from pathlib import Path

import numpy as np

from ..errors import SpiceError

__all__ = ["check_vectors", "strip_end", "with_retry_options", "log_failed", "result_problem",
           "keep_failure", "positive_timeout", "check_analysis", "default_cache_dir",
           "ANALYSIS_SCALES"]

_VECTOR = re.compile(r"[vi]\([a-z0-9_.#+\-]+\)|time|v\(v-sweep\)")
_ANALYSIS_CARDS = {"op": ".op", "tran": ".tran", "dc": ".dc"}
ANALYSIS_SCALES = {"op": None, "tran": "time", "dc": "v(v-sweep)"}

# Text in an ngspice log that marks a failed analysis.
_FAIL_PATTERNS = (
    "simulation(s) aborted", "timestep too small", "singular matrix", "no convergence",
    "iteration limit reached", "gmin stepping failed", "source stepping failed",
    "doanalyses:", "error:", "fatal", "run simulation(s) aborted", "cannot recover",
)
# ngspice falls back from gmin to source stepping to a pseudo-transient op; a failed
# stepping stage is only a warning when the fallback then succeeds
_RECOVERABLE = ("gmin stepping failed", "source stepping failed")


def default_cache_dir() -> Path:
    """``$COSIM_CACHE_DIR``, else ``$XDG_CACHE_HOME/cosim/spice``, else ``~/.cache/...``."""
    env = os.environ.get("COSIM_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "cosim" / "spice"


def check_vectors(vectors):
    """Validated lower-case vector names (``v(node)``, ``i(vsource)``, ``time``), or None."""
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


def strip_end(deck: str) -> str:
    lines = deck.rstrip().splitlines()
    while lines and lines[-1].strip().lower() in (".end", ""):
        lines.pop()
    return "\n".join(lines)


def with_retry_options(deck: str, level: int) -> str:
    """The deck without its ``.end``, plus the options of retry ``level`` (0: none)."""
    body = strip_end(deck)
    if level == 1:
        body += "\n.options gminsteps=200 srcsteps=200 itl1=1000 itl2=1000"
    elif level >= 2:
        body += ("\n.options gminsteps=1000 srcsteps=1000 itl1=5000 itl2=5000 gmin=1e-10 "
                 "reltol=1e-5")
    return body + "\n"


def log_failed(log: str) -> str | None:
    low = log.lower()
    recovered = "transient op finished successfully" in low
    for p in _FAIL_PATTERNS:
        if recovered and p in _RECOVERABLE:
            continue
        if p in low:
            for line in log.splitlines():
                if p in line.lower():
                    return line.strip()
            return p
    return None


def result_problem(vectors: dict, wanted, analysis: str, points: int | None) -> str | None:
    """Why a set of returned vectors is not a usable result (None if it is).

    Every wanted vector must be present; all must have the same length, 1 for ``op`` and
    ``points`` when given; every value must be finite.
    """
    if wanted is not None:
        missing = [v for v in wanted if v not in vectors]
        if missing:
            return f"ngspice returned no vector(s) {missing}"
    if not vectors:
        return "ngspice returned no vectors"
    lengths = {k: np.asarray(v).size for k, v in vectors.items()}
    expected = 1 if analysis == "op" else points
    if expected is not None:
        wrong = {k: n for k, n in lengths.items() if n != expected}
        if wrong:
            name, n = next(iter(wrong.items()))
            return (f"ngspice returned {n} point(s) of {name} where {expected} were expected "
                    f"(wrong point count)")
    elif len(set(lengths.values())) != 1 or min(lengths.values()) < 1:
        return f"ngspice returned vectors of unequal or zero length {sorted(set(lengths.values()))}"
    for k, v in vectors.items():
        bad = ~np.isfinite(np.asarray(v, dtype=np.float64))
        if bad.any():
            return (f"ngspice returned non-finite values ({np.asarray(v)[bad][0]!r}) in {k} "
                    f"at {int(bad.sum())} of {bad.size} point(s)")
    return None


def keep_failure(message, deck_text, log_text, failed_dir) -> SpiceError:
    """Write the deck and log to a new folder under ``failed_dir``; the error naming them."""
    base = Path(failed_dir) if failed_dir is not None else default_cache_dir() / "failed"
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = base / f"{stamp}-{uuid.uuid4().hex[:8]}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        deck_path, log_path = folder / "deck.cir", folder / "ngspice.log"
        deck_path.write_text(deck_text)
        log_path.write_text(log_text if log_text.strip() else
                            f"(ngspice printed nothing)\n{message}\n")
    except OSError as exc:
        return SpiceError(f"{message} (the deck and log could not be kept in {base}: {exc})")
    return SpiceError(message, deck=str(deck_path), log=str(log_path))


def positive_timeout(timeout) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) \
            or not timeout > 0 or not math.isfinite(timeout):
        raise ValueError(f"timeout must be a positive finite number of seconds, got {timeout!r}")
    return float(timeout)


def check_analysis(deck: str, analysis: str) -> None:
    if analysis not in _ANALYSIS_CARDS:
        raise ValueError(f"analysis must be one of {sorted(_ANALYSIS_CARDS)}, got {analysis!r}")
    cards = [ln.split()[0].lower() for ln in deck.splitlines()
             if ln.strip().startswith(".")
             and ln.split()[0].lower() in (".op", ".tran", ".dc", ".ac", ".noise", ".tf",
                                           ".pz", ".sens", ".disto", ".pss", ".sp")]
    card = _ANALYSIS_CARDS[analysis]
    if cards != [card]:
        raise ValueError(f"the deck must contain exactly one analysis card {card} "
                         f"(found {cards})")
