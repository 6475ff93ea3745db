"""libngspice, the ngspice shared library, bound with :mod:`ctypes` (sharedspice.h API).

Only the calls cosim needs: init with output / exit / background-thread callbacks, commands,
loading a circuit from lines, reading vectors, and the values of EXTERNAL voltage sources
(``ngSpice_Init_Sync``'s ``GetVSRCData`` callback, fed from a :class:`VoltageFeed`).  No
PySpice, no environment variables.  The library is one global simulator per process;
:class:`cosim.spice.ngspice.NgspiceEngine` owns it and serialises its use.

EXTERNAL sources in a ``.dc`` sweep: ngspice evaluates an EXTERNAL source without a DC
value at every load of the matrix (every Newton iteration) by calling ``GetVSRCData``
with time 0 (a DC analysis has no time) and the source's name; the index of the sweep
point being solved comes from ``SendData``, which ngspice calls after each accepted point
with its index (``vecindex``), and ``SendInitData``, called when an analysis starts.  So
point k of the sweep is fed pattern k.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import time
from pathlib import Path

import numpy as np

__all__ = ["SharedLibrary", "VoltageFeed", "find_library"]

_LIB_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libngspice.so.0",
    "/usr/lib/aarch64-linux-gnu/libngspice.so.0",
    "/usr/lib/libngspice.so.0",
    "/usr/local/lib/libngspice.so.0",
    "/usr/local/lib/libngspice.so",
    "/opt/homebrew/lib/libngspice.dylib",
    "/usr/local/lib/libngspice.dylib",
)


def find_library() -> str | None:
    env = os.environ.get("NGSPICE_LIBRARY_PATH")
    if env and Path(env).is_file():
        return env
    for cand in _LIB_CANDIDATES:
        if Path(cand).is_file():
            return cand
    return ctypes.util.find_library("ngspice")


class _VectorInfo(ctypes.Structure):
    _fields_ = [("v_name", ctypes.c_char_p), ("v_type", ctypes.c_int),
                ("v_flags", ctypes.c_short), ("v_realdata", ctypes.POINTER(ctypes.c_double)),
                ("v_compdata", ctypes.c_void_p), ("v_length", ctypes.c_int)]


_SendChar = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p)
_ControlledExit = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_bool, ctypes.c_bool,
                                   ctypes.c_int, ctypes.c_void_p)
_BGThreadRunning = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_bool, ctypes.c_int, ctypes.c_void_p)
_SendData = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                             ctypes.c_void_p)
_SendInitData = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p)
_GetVSRCData = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_double), ctypes.c_double,
                                ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p)


class _VecValuesAll(ctypes.Structure):
    # sharedspice.h vecvaluesall: only the point index is read
    _fields_ = [("veccount", ctypes.c_int), ("vecindex", ctypes.c_int),
                ("vecsa", ctypes.c_void_p)]


class VoltageFeed:
    """Values of EXTERNAL word-line sources for the K points of one ``.dc`` sweep.

    ``patterns`` (K, R) volts, finite; ``names`` the R source names (lower case, as
    ngspice passes them).  Point k of the sweep gets ``patterns[k]``.  The feed never
    hands out a value it was not given: a request for a point >= K or an unknown source
    gets 0 V and is recorded in :attr:`problem` (the sweep is then refused, see
    :meth:`check`); :attr:`served` counts the requests of each point.
    """

    def __init__(self, patterns, names):
        P = np.asarray(patterns, dtype=np.float64)
        if P.ndim != 2 or P.shape[0] < 1 or P.shape[1] != len(names):
            raise ValueError(f"patterns must have shape (K >= 1, {len(names)}), got {P.shape}")
        if not np.all(np.isfinite(P)):
            raise ValueError("source values must be finite")
        self.points = P.shape[0]
        self._table = P.tolist()                 # plain floats: the callback is hot
        self._column = {str(n).lower().encode("ascii"): i for i, n in enumerate(names)}
        if len(self._column) != len(names):
            raise ValueError("source names must be distinct")
        self.point = 0                           # the sweep point being solved
        self.served = [0] * self.points
        self.problem: str | None = None

    def value(self, name: bytes) -> float:
        """The voltage of source ``name`` at the current point (0.0 and a problem if none)."""
        k = self.point
        col = self._column.get((name or b"").lower())
        if col is None or not 0 <= k < self.points:
            if self.problem is None:
                self.problem = (f"ngspice asked for source {name!r} at sweep point {k}, but "
                                f"the feed holds {self.points} point(s) of "
                                f"{len(self._column)} source(s)")
            return 0.0
        self.served[k] += 1
        return self._table[k][col]

    def check(self, points: int) -> str | None:
        """Why the sweep that ran ``points`` points was not fed exactly this feed (or None)."""
        if self.problem is not None:
            return self.problem
        if points != self.points:
            return f"the sweep has {points} points, the feed {self.points} patterns"
        short = [k for k, n in enumerate(self.served) if n < len(self._column)]
        if short:
            return (f"sweep point(s) {short[:5]} did not read every source "
                    f"({len(self._column)} per point)")
        return None


class SharedLibrary:
    """libngspice loaded in this process (sharedspice.h API); used under the engine's lock."""

    def __init__(self, path: str):
        lib = ctypes.CDLL(path)
        lib.ngSpice_Init.restype = ctypes.c_int
        lib.ngSpice_Init.argtypes = [_SendChar, _SendChar, _ControlledExit, ctypes.c_void_p,
                                     ctypes.c_void_p, _BGThreadRunning, ctypes.c_void_p]
        lib.ngSpice_Command.restype = ctypes.c_int
        lib.ngSpice_Command.argtypes = [ctypes.c_char_p]
        lib.ngSpice_Circ.restype = ctypes.c_int
        lib.ngSpice_Circ.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
        lib.ngGet_Vec_Info.restype = ctypes.POINTER(_VectorInfo)
        lib.ngGet_Vec_Info.argtypes = [ctypes.c_char_p]
        lib.ngSpice_CurPlot.restype = ctypes.c_char_p
        lib.ngSpice_AllVecs.restype = ctypes.POINTER(ctypes.c_char_p)
        lib.ngSpice_AllVecs.argtypes = [ctypes.c_char_p]
        lib.ngSpice_running.restype = ctypes.c_bool
        self._lib = lib
        self._out: list[str] = []
        self._out_lock = threading.Lock()
        self._bg_done = threading.Event()
        self.exited = False
        self.feed: VoltageFeed | None = None    # values of EXTERNAL sources, or None
        self.unfed = 0                           # EXTERNAL requests with no feed set
        # the callbacks must stay referenced as long as the library may call them
        self._callbacks = (_SendChar(self._on_output), _SendChar(self._on_status),
                           _ControlledExit(self._on_exit), _SendData(self._on_data),
                           _SendInitData(self._on_init_data), _BGThreadRunning(self._on_bg),
                           _GetVSRCData(self._on_vsrc))
        send_char, send_stat, exit_cb, data_cb, init_cb, bg_cb, vsrc_cb = self._callbacks
        if lib.ngSpice_Init(send_char, send_stat, exit_cb, data_cb, init_cb, bg_cb, None) != 0:
            raise OSError("ngSpice_Init failed")
        # EXTERNAL sources need ngSpice_Init_Sync (ngspice >= 26); without it the library
        # still runs decks, only loaded circuits are unavailable (their callers fall back)
        self.external_sources = False
        init_sync = getattr(lib, "ngSpice_Init_Sync", None)
        if init_sync is not None:
            init_sync.restype = ctypes.c_int
            init_sync.argtypes = [_GetVSRCData, ctypes.c_void_p, ctypes.c_void_p,
                                  ctypes.c_void_p, ctypes.c_void_p]
            self.external_sources = init_sync(vsrc_cb, None, None, None, None) == 0

    # callbacks (run in ngspice's threads)
    def _on_output(self, text, ident, user):
        line = (text or b"").decode("utf-8", "replace")
        for prefix in ("stdout ", "stderr "):
            if line.startswith(prefix):
                line = line[len(prefix):]
        with self._out_lock:
            self._out.append(line)
        return 0

    def _on_status(self, text, ident, user):
        return 0

    def _on_exit(self, status, immediate, quit_exit, ident, user):
        self.exited = True      # ngspice wants to unload: the engine stops using it
        return 0

    def _on_init_data(self, data, ident, user):
        feed = self.feed
        if feed is not None:               # an analysis starts: its first point is 0
            feed.point = 0
        return 0

    def _on_data(self, data, count, ident, user):
        feed = self.feed
        if feed is not None and data:      # point vecindex is done: the next one follows
            feed.point = ctypes.cast(data, ctypes.POINTER(_VecValuesAll)).contents.vecindex + 1
        return 0

    def _on_vsrc(self, value, time, name, ident, user):
        feed = self.feed
        if feed is None:
            self.unfed += 1
            value[0] = 0.0
        else:
            value[0] = feed.value(name)
        return 0

    def _on_bg(self, not_running, ident, user):
        # called with False when the background thread starts, True just before it ends
        if not_running:
            self._bg_done.set()
        return 0

    # commands
    def take_output(self) -> str:
        with self._out_lock:
            out, self._out = self._out, []
        return "\n".join(out)

    def command(self, text: str) -> str:
        self._lib.ngSpice_Command(text.encode("ascii"))
        return self.take_output()

    def load(self, deck: str) -> str:
        """Hand the (already checked) deck to ngspice, replacing the last one; the log."""
        self.unload()
        return self.add_circuit(deck)

    def add_circuit(self, deck: str) -> str:
        """Hand the (already checked) deck to ngspice as a new current circuit, keeping the
        circuits loaded before (``setcirc`` switches between them); the log."""
        lines = [ln.encode("utf-8") for ln in deck.splitlines() if ln.strip()]
        arr = (ctypes.c_char_p * (len(lines) + 1))(*lines, None)
        self._lib.ngSpice_Circ(arr)
        return self.take_output()

    def unload(self) -> None:
        self.command("destroy all")
        self.command("remcirc")

    def background(self, command: str, timeout: float) -> tuple[str, bool]:
        """Run ``command`` in ngspice's background thread; (log, timed out)."""
        self._bg_done.clear()
        # Wait for the thread's own "ended" callback, not only ngSpice_running(): touching
        # the circuit while the thread is still unwinding crashes libngspice.  Block on the
        # callback's event (no polling: waking every 0.5 ms cost ~10 ms of CPU per 100 ms
        # op, taken from ngspice's thread on a busy machine); then wait out the unwinding.
        try:
            log = self.command(f"bg_{command}")
            t0 = time.monotonic()
            done = self._bg_done.wait(timeout)
            while done and self._lib.ngSpice_running() and time.monotonic() - t0 <= timeout:
                time.sleep(0.0002)
        except BaseException:
            # interrupted while waiting (KeyboardInterrupt): stop the thread before the
            # caller goes on, else it keeps solving (EXTERNAL sources unfed) under the
            # caller's next commands, which then act on a circuit in mid-analysis
            self._halt()
            raise
        if not done or self._lib.ngSpice_running():
            log += "\n" + self._halt()
            return log + self.take_output() + f"\n*** halted after timeout={timeout} s\n", True
        time.sleep(0)  # let the thread return from the callback
        return log + "\n" + self.take_output(), False

    def _halt(self) -> str:
        """Halt the background thread and wait (up to 10 s) until it has ended; its output."""
        out = self.command("bg_halt")
        self._bg_done.wait(10)
        t1 = time.monotonic()
        while self._lib.ngSpice_running() and time.monotonic() - t1 < 10:
            time.sleep(0.01)
        time.sleep(0.002)               # let the thread return from its last callback
        return out

    def vector(self, name: str):
        info = self._lib.ngGet_Vec_Info(name.encode("ascii"))
        if not info or not info.contents.v_realdata:
            return None
        n = int(info.contents.v_length)
        if n <= 0:
            return np.empty(0)
        return np.ctypeslib.as_array(info.contents.v_realdata, shape=(n,)).copy()

    def all_vectors(self) -> dict:
        plot = self._lib.ngSpice_CurPlot() or b""
        names = self._lib.ngSpice_AllVecs(plot)
        out = {}
        k = 0
        while names and names[k] is not None:
            raw = names[k].decode()
            k += 1
            low = raw.lower()
            if low.endswith("#branch"):
                key = f"i({low[:-7]})"
            elif low == "v-sweep":
                key = "v(v-sweep)"
            elif low == "time" or low.startswith(("v(", "i(")):
                key = low
            else:
                key = f"v({low})"
            vec = self.vector(f"{plot.decode()}.{raw}")
            if vec is not None:
                out[key] = vec
        return out
