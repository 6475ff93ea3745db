"""Circuits kept loaded in ngspice's shared library and swept through word-line patterns.

A crossbar read on the shared library would otherwise parse its deck on every call
(0.25 s for 32x64 cells, 0.7-0.9 s for 64x64: subcircuit expansion of every cell).  Here
each programmed array's deck is parsed once and stays loaded beside the others (ngspice
keeps a list of circuits; ``setcirc`` makes one current, ``remcirc`` removes the current
one).  Its word lines are EXTERNAL voltage sources (:class:`cosim.spice.stimuli.
ExternalStimulus`), so a read of K patterns is one ``dc Vidx 0 K-1 1`` command on the
loaded circuit, sweep point k fed pattern k by :class:`cosim.spice.libngspice.VoltageFeed`
(the sweep's points each start from the previous point's solution, like a ``.dc`` batch
deck's: run them at the batch tolerances).

* :class:`CircuitPool` -- the loaded circuits of one engine (:data:`POOL` for the process's
  engine).  It holds the engine's library as a *yielding* owner while it has circuits: a
  one-shot ``engine="auto"`` run meanwhile goes to a subprocess, one that insists on the
  library (``engine="shared"``, an :class:`~cosim.spice.ngspice.NgspiceSession`) takes it,
  and then every pooled circuit is removed (each reloads on its next use).  The pool never
  takes the library from another holder (:class:`LibraryBusy`: the caller runs its own
  fallback, e.g. a batch deck in a subprocess).
* :class:`LoadedCircuit` -- one deck; :meth:`LoadedCircuit.sweep` returns the requested
  vectors at the K points.

Bound: at most ``CircuitPool.limit`` circuits (default :data:`MAX_LOADED_CIRCUITS`, 8) and
at most ``CircuitPool.max_lines`` deck lines in all (default :data:`MAX_LOADED_LINES`;
one circuit larger than that is still loaded, alone) are loaded at once; loading one more
removes the least recently swept ones.  ngspice holds ~76 MB per loaded 64x64-cell
circuit (12.7k deck lines; ``rusage``'s ``Current ngspice program size`` grew 222 -> 299 ->
375 -> 451 MB with 1..4 of them), ~6 kB per deck line, so the default line budget keeps
the loaded circuits of a process below ~0.6 GB.  A circuit is removed by
:meth:`LoadedCircuit.close` and, when it is garbage collected, at the pool's next use (a
finaliser may run inside another ngspice call, so it only queues the removal).

Checks: a sweep's results must be finite, have K points, a sweep scale 0..K-1, and every
point must have read every source from the feed (which refuses to serve a point >= K or an
unknown source); otherwise :class:`cosim.errors.SpiceError` (deck and log kept).  A
timeout halts the sweep and removes the circuit.
"""

from __future__ import annotations

import itertools
import os
import re
import threading
import weakref
from collections import OrderedDict

import numpy as np

from ..errors import SpiceError
from .libngspice import VoltageFeed
from .netlist import resolve_deck
from .ngspice import ENGINE, NgspiceEngine
from .results import (check_analysis, check_vectors, keep_failure, log_failed,
                      positive_timeout, result_problem, strip_end)

__all__ = ["CircuitPool", "LoadedCircuit", "LibraryBusy", "POOL", "MAX_LOADED_CIRCUITS",
           "MAX_LOADED_LINES"]

#: circuits loaded at once per process by default (see the module docstring)
MAX_LOADED_CIRCUITS = 8
#: deck lines of all loaded circuits at once by default (~6 kB of ngspice memory per line)
MAX_LOADED_LINES = 100_000

_SERIAL = itertools.count(1)
_LISTED = re.compile(r"^\s*(?:current\s+)?(\d+)\s+(.*?)\s*$", re.I)
_SWEEP = "v(v-sweep)"


class LibraryBusy(RuntimeError):
    """The shared library cannot hold a loaded circuit now (another owner holds it, or it
    has no ``ngSpice_Init_Sync``): run the read some other way."""


class CircuitPool:
    """The circuits an engine keeps loaded (see the module docstring)."""

    def __init__(self, engine: NgspiceEngine | None = None, limit: int = MAX_LOADED_CIRCUITS,
                 max_lines: int = MAX_LOADED_LINES):
        for name, value in (("limit", limit), ("max_lines", max_lines)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self._engine = engine or ENGINE
        self.limit = limit
        self.max_lines = max_lines
        self._lines: dict[str, int] = {}     # deck lines of each loaded circuit
        # tag -> weak reference (the pool must not keep a circuit alive), LRU first
        self._loaded: OrderedDict[str, weakref.ref] = OrderedDict()
        self._dead: list[str] = []       # tags of collected circuits, removed at next use
        self._dead_lock = threading.RLock()   # a finaliser may run while it is held
        self._busy = False
        self._lib = None
        self.loads = 0                   # decks parsed by this pool (reloads included)

    def __repr__(self):
        return f"<CircuitPool {len(self._loaded)}/{self.limit} loaded>"

    # -- what ngspice holds ---------------------------------------------------------------
    def loaded(self) -> list[str]:
        """Tags of the circuits this pool has loaded, as ngspice itself lists them."""
        with self._engine._lock:
            if self._lib is None or not self._engine.holds(self):
                return []
            return [t for t in self._listing().values() if t in self._loaded]

    def _listing(self) -> dict[int, str]:
        """ngspice's list of loaded circuits: number -> the tag of ours (or the title)."""
        out = {}
        for line in self._lib.command("setcirc").splitlines():
            m = _LISTED.match(line)
            if m:
                title = m.group(2).lstrip("* ").strip()
                out[int(m.group(1))] = title
        return out

    def _select(self, tag: str) -> bool:
        """Make circuit ``tag`` current; False if ngspice does not list it."""
        number = next((n for n, t in self._listing().items() if t == tag), None)
        if number is None:
            return False
        out = self._lib.command(f"setcirc {number}")
        if "error" in out.lower():
            raise SpiceError(f"ngspice refused `setcirc {number}`: {out.strip()}")
        return True

    def _forget(self, tag: str) -> None:
        """Drop ``tag`` from the pool's books (not from ngspice)."""
        ref = self._loaded.pop(tag, None)
        self._lines.pop(tag, None)
        circuit = None if ref is None else ref()
        if circuit is not None:
            circuit._in_pool = False

    def _remove(self, tag: str) -> None:
        """Remove our circuit ``tag`` from ngspice (if it still lists it) and forget it."""
        self._forget(tag)
        if self._lib is None or self._lib.exited:
            return
        if tag in self._listing().values():
            self._select(tag)
            self._lib.command("destroy all")
            self._lib.command("remcirc")

    # -- ownership ------------------------------------------------------------------------
    def on_yield(self) -> None:
        """The engine gave the library to someone else: remove every circuit of ours."""
        try:
            for tag in list(self._loaded):
                self._remove(tag)
        finally:
            for ref in self._loaded.values():
                circuit = ref()
                if circuit is not None:
                    circuit._in_pool = False
            self._loaded.clear()
            self._lines.clear()
            self._lib = None

    def _discard(self, tag: str) -> None:
        with self._dead_lock:
            self._dead.append(tag)

    def _purge(self) -> None:
        with self._dead_lock:
            dead, self._dead = self._dead, []
        for tag in dead:
            if tag in self._loaded:
                self._remove(tag)

    def _release_if_empty(self) -> None:
        if not self._loaded and self._engine.holds(self):
            self._engine.release(self, unload=False)   # nothing of ours is left loaded
            self._lib = None

    def collect(self) -> None:
        """Remove the circuits that were garbage collected since the pool's last use."""
        with self._engine._lock:
            if not self._busy and self._lib is not None and self._engine.holds(self):
                self._busy = True
                try:
                    self._purge()
                finally:
                    self._busy = False
                    self._release_if_empty()

    def close(self, circuit: LoadedCircuit) -> None:
        """Remove ``circuit`` now (or at the next use if called from inside one)."""
        with self._engine._lock:
            if circuit.tag not in self._loaded:
                return
            if self._busy or self._lib is None or not self._engine.holds(self):
                self._discard(circuit.tag)
                return
            self._busy = True
            try:
                self._remove(circuit.tag)
                self._purge()
            finally:
                self._busy = False
                self._release_if_empty()

    # -- sweeping -------------------------------------------------------------------------
    def sweep(self, circuit: LoadedCircuit, patterns: np.ndarray) -> dict:
        feed = VoltageFeed(patterns, circuit.sources)      # checks shape and finiteness
        K = feed.points
        engine = self._engine
        with engine._lock:
            lib = engine.acquire_if_free(self, yields=True)
            if lib is None:
                raise LibraryBusy("the ngspice shared library is held by another owner")
            if not lib.external_sources:
                self._release_if_empty()
                raise LibraryBusy("this libngspice has no ngSpice_Init_Sync (EXTERNAL sources)")
            self._lib = lib
            self._busy = True
            try:
                self._purge()
                if circuit.tag in self._loaded and self._select(circuit.tag):
                    self._loaded.move_to_end(circuit.tag)
                else:
                    # not loaded yet, or ngspice lost it (e.g. an interrupted sweep): afresh
                    self._forget(circuit.tag)
                    self._load(circuit)
                return self._run(circuit, feed, K)
            finally:
                self._busy = False
                if lib.exited:            # ngspice asked to unload: nothing is left
                    self.on_yield()
                    engine.release(self, unload=False)
                else:
                    self._release_if_empty()

    def _load(self, circuit: LoadedCircuit) -> None:
        while self._loaded and (len(self._loaded) >= self.limit or sum(self._lines.values())
                                + circuit.lines > self.max_lines):
            self._remove(next(iter(self._loaded)))          # the least recently swept
        self._lib.command("destroy all")
        log = self._lib.add_circuit(circuit.text)
        self.loads += 1
        listed = circuit.tag in self._listing().values()
        problem = log_failed(log) or (None if listed else "ngspice did not load the circuit")
        if problem is not None:
            if listed:
                self._select(circuit.tag)
                self._lib.command("remcirc")
            raise keep_failure(f"ngspice rejected the loaded-circuit deck: {problem}",
                               circuit.text, log, circuit.failed_dir)
        self._loaded[circuit.tag] = weakref.ref(circuit)
        self._lines[circuit.tag] = circuit.lines
        circuit._in_pool = True

    def _run(self, circuit: LoadedCircuit, feed: VoltageFeed, K: int) -> dict:
        lib = self._lib
        lib.command("destroy all")           # the last sweep's plot: none may be read by mistake
        lib.feed = feed
        self._engine._count()
        try:
            log, timed_out = lib.background(f"dc vidx 0 {K - 1} 1", circuit.timeout)
        finally:
            lib.feed = None
        if timed_out:
            self._remove(circuit.tag)       # a halted sweep leaves the circuit mid-analysis
            raise keep_failure(f"ngspice sweep timed out after {circuit.timeout} s (halted; "
                               f"circuit removed)", circuit.text, log, circuit.failed_dir)
        problem = log_failed(log)
        vecs = {}
        if problem is None:
            for name in [_SWEEP] + circuit.vectors:
                arr = lib.vector(name)
                if arr is None:
                    problem = f"ngspice has no vector {name}"
                    break
                vecs[name] = arr
        lib.command("destroy all")
        if problem is None:
            problem = (result_problem(vecs, [_SWEEP] + circuit.vectors, "dc", K)
                       or feed.check(K))
        if problem is None and not np.array_equal(vecs[_SWEEP], np.arange(K, dtype=float)):
            problem = "the sweep scale is not 0, 1, ..., K-1"
        if problem is not None:
            raise keep_failure(f"ngspice sweep of {K} pattern(s) on a loaded circuit failed: "
                               f"{problem}", circuit.text, log, circuit.failed_dir)
        return {name: vecs[name] for name in circuit.vectors}


POOL = CircuitPool()


class LoadedCircuit:
    """One deck with EXTERNAL word-line sources, loaded in the pool on first use.

    ``deck``: a ``.dc`` deck whose sources ``sources`` (names, in pattern order) are
    ``external``; ``vectors`` the names :meth:`sweep` returns (only they are saved:
    ``.save``); ``timeout`` seconds per sweep.
    """

    def __init__(self, deck: str, sources, vectors, timeout: float = 60, failed_dir=None,
                 pool: CircuitPool | None = None):
        full = resolve_deck(deck)
        check_analysis(full, "dc")
        self.sources = [str(s).lower() for s in sources]
        for name in self.sources:
            if not re.fullmatch(r"v[a-z0-9_]*", name) or not re.search(
                    rf"^\s*{name}\s+\S+\s+\S+\s+external\s*$", full, re.I | re.M):
                raise ValueError(f"{name!r} is not an EXTERNAL voltage source of the deck")
        self.vectors = check_vectors(vectors)
        if not self.vectors:
            raise ValueError("give the vectors to read")
        self.timeout = positive_timeout(timeout)
        self.failed_dir = failed_dir
        self.pool = pool or POOL
        #: the deck as ngspice runs it, but for the title line (what a result depends on)
        self.body = strip_end(full) + "\n.save " + " ".join(self.vectors) + "\n.end\n"
        # the pool's own title line names the circuit in ngspice's list (`setcirc`)
        self.tag = f"cosim-circuit-{os.getpid()}-{next(_SERIAL)}"
        self.text = f"* {self.tag}\n" + self.body
        self.lines = self.text.count("\n")
        self._in_pool = False

    def __repr__(self):
        return f"<LoadedCircuit {self.tag} {'loaded' if self._in_pool else 'not loaded'}>"

    @property
    def loaded(self) -> bool:
        return self._in_pool

    def sweep(self, patterns) -> dict:
        """Vectors ``{name: (K,) array}`` of a ``.dc`` sweep, point k fed ``patterns[k]``
        (K, len(sources)) volts.  LibraryBusy when another owner holds the library."""
        return self.pool.sweep(self, patterns)

    def close(self) -> None:
        self.pool.close(self)

    def __del__(self):
        try:
            if self._in_pool:
                self.pool._discard(self.tag)
        except Exception:
            pass
