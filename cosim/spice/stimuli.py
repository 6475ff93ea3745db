"""Stimuli of a crossbar deck: each writes its word-line sources and its analysis card.

:class:`OpStimulus` (``.op``), :class:`TranStimulus` (``.tran`` with PWL sources),
:class:`BatchStimulus` (one ``.dc`` stepping through K input vectors),
:class:`ExternalStimulus` (word lines whose values the shared library's caller supplies at
run time, for a circuit kept loaded); :func:`build_stimulus` builds the one the arguments of
:func:`cosim.spice.netlist.crossbar_deck` ask for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import as_float_array, positive
from .deck_text import fmt, fmt_time

__all__ = ["OpStimulus", "TranStimulus", "BatchStimulus", "ExternalStimulus", "build_stimulus"]


class _Stimulus:
    """What every stimulus shares: the voltage range it applies and constant sources."""
    V: np.ndarray

    @property
    def rows(self) -> int:
        """R, the number of word lines (the last axis of ``V``)."""
        return self.V.shape[-1]

    @property
    def extremes(self) -> tuple[float, float]:
        """(min, max) of the word-line voltages [V]."""
        return float(np.min(self.V)), float(np.max(self.V))

    def source(self, name: str, node: str, values) -> str:
        """A voltage source from ``node`` to ground holding ``values`` (a number here)."""
        if np.ndim(values) != 0:
            raise ValueError(f"a time series for {name} needs a stimulus (.tran)")
        return f"{name} {node} 0 DC {fmt(float(values))}"


@dataclass(frozen=True)
class OpStimulus(_Stimulus):
    """``.op`` with DC word-line voltages ``V`` (R,) in volts."""
    V: np.ndarray
    analysis = "op"

    def word_lines(self) -> list[str]:
        return [self.source(f"Vin{i}", f"in{i}", self.V[i]) for i in range(self.rows)]

    def card(self) -> str:
        return ".op"

    def describe(self) -> str:
        return "op (DC operating point)"


@dataclass(frozen=True)
class TranStimulus(_Stimulus):
    """``.tran``: word line i holds ``V[k, i]`` from ``times[k] + rise`` to ``times[k+1]``.

    Times (T,) in seconds, strictly increasing by more than ``rise``; linear ramps of
    ``rise`` seconds between steps; ``.tran tstep tstop [0 tmax]``.
    """
    times: np.ndarray
    V: np.ndarray
    tstep: float
    tstop: float
    tmax: float | None = None
    rise: float = 1e-9
    analysis = "tran"

    def waveform(self, values) -> str:
        """``PWL(...)`` of rectangular steps; a point only where the value changes."""
        t, v = self.times, values
        pts = [f"{fmt_time(t[0])} {fmt(v[0])}"]
        for k in range(1, len(t)):
            if v[k] != v[k - 1]:
                pts.append(f"{fmt_time(t[k])} {fmt(v[k - 1])}")
                pts.append(f"{fmt_time(t[k] + self.rise)} {fmt(v[k])}")
        return "PWL(" + " ".join(pts) + ")"

    def source(self, name: str, node: str, values) -> str:
        values = np.asarray(values, dtype=float)
        if values.ndim == 0:
            return super().source(name, node, values)
        return f"{name} {node} 0 DC {fmt(values[0])} {self.waveform(values)}"

    def word_lines(self) -> list[str]:
        return [self.source(f"Vin{i}", f"in{i}", self.V[:, i]) for i in range(self.rows)]

    def card(self) -> str:
        line = f".tran {fmt(self.tstep)} {fmt(self.tstop)}"
        return line + (f" 0 {fmt(self.tmax)}" if self.tmax is not None else "")

    def describe(self) -> str:
        return (f"tran, {self.times.size} steps, rise time {fmt(self.rise)} s "
                f"(word line i holds V[k, i] from times[k] + rise)")


@dataclass(frozen=True)
class BatchStimulus(_Stimulus):
    """``.dc`` sweep of an index source ``Vidx`` over 0..K-1: sweep point k applies ``V[k]``.

    Word sources are B-sources ``Bin<i> = pwl(V(idx), k, V[k, i])``: K pure DC solves in
    one analysis.  (pwl breakpoints keep all digits, unlike a product's literals.)
    """
    V: np.ndarray
    analysis = "dc"

    def word_lines(self) -> list[str]:
        K = self.V.shape[0]
        out = ["Vidx idx 0 DC 0", "Ridx idx 0 1"]
        for i in range(self.rows):
            col = self.V[:, i] if K > 1 else np.array([self.V[0, i], self.V[0, i]])
            pts = ", ".join(f"{k}, {fmt(v)}" for k, v in enumerate(col))
            out.append(f"Bin{i} in{i} 0 V = pwl(V(idx), {pts})")
        return out

    def card(self) -> str:
        return f".dc Vidx 0 {self.V.shape[0] - 1} 1"

    def describe(self) -> str:
        return f"dc batch of {self.V.shape[0]} input vectors; sweep point k of Vidx = vector k"


@dataclass(frozen=True)
class ExternalStimulus(_Stimulus):
    """Word lines ``Vin<i> in<i> 0 external``: ngspice asks the shared library's caller for
    their values at every load (see :mod:`cosim.spice.libngspice`), so one loaded circuit
    is swept through any patterns without re-parsing: ``dc Vidx 0 K-1 1`` with sweep point
    k fed pattern k.  ``V`` (2, R): the lowest and highest word-line voltage the circuit
    will be fed (they choose the read cell, like a batch's own extremes).  Only the shared
    library runs such a deck (``ngspice -b`` has no one to ask for the values).
    """
    V: np.ndarray
    analysis = "dc"

    def word_lines(self) -> list[str]:
        return ["Vidx idx 0 DC 0", "Ridx idx 0 1"] + [
            f"Vin{i} in{i} 0 external" for i in range(self.rows)]

    def card(self) -> str:
        return ".dc Vidx 0 0 1"      # a placeholder: each read runs its own `dc` command

    def describe(self) -> str:
        low, high = self.extremes
        return (f"dc sweep of Vidx on a loaded circuit; word lines are EXTERNAL sources fed "
                f"per sweep point, within [{fmt(low)}, {fmt(high)}] V")


def build_stimulus(v_word, stimulus, batch, R, tstep, tstop, tmax, rise_time, external=None):
    """The stimulus of exactly one of ``v_word`` / ``stimulus`` / ``batch`` / ``external``,
    validated for R rows."""
    if sum(x is not None for x in (v_word, stimulus, batch, external)) != 1:
        raise ValueError("give exactly one of v_word (.op), stimulus (.tran), batch (.dc) or "
                         "external (a loaded circuit's word-line range)")
    if external is not None:
        rng = as_float_array("external", external, ndim=1)
        if rng.shape != (2,) or not rng[0] <= rng[1]:
            raise ValueError(f"external must be (lowest, highest) word-line voltage, got {rng}")
        return ExternalStimulus(np.repeat(rng[:, None], R, axis=1))
    if v_word is not None:
        V = as_float_array("v_word", v_word, ndim=1)
        if V.shape != (R,):
            raise ValueError(f"v_word must have shape ({R},), got {V.shape}")
        return OpStimulus(V)
    if batch is not None:
        V = as_float_array("batch", batch, ndim=2)
        if V.shape[1] != R or V.shape[0] < 1:
            raise ValueError(f"batch must have shape (K, {R}) with K >= 1, got {V.shape}")
        return BatchStimulus(V)
    try:
        times, V = stimulus
    except (TypeError, ValueError) as exc:
        raise ValueError("stimulus must be a pair (times, V)") from exc
    times = as_float_array("stimulus times", times, ndim=1)
    V = as_float_array("stimulus V", V, ndim=2)
    if V.shape != (times.size, R):
        raise ValueError(f"stimulus V must have shape ({times.size}, {R}), got {V.shape}")
    rise_time = positive("rise_time", rise_time)
    if times.size < 1 or times[0] < 0:
        raise ValueError("stimulus times must be non-empty and start at >= 0")
    if np.any(np.diff(times) <= rise_time):
        raise ValueError("stimulus times must increase by more than rise_time per step")
    if tstep is None or tstop is None:
        raise ValueError("a stimulus needs tstep and tstop")
    tstep, tstop = positive("tstep", tstep), positive("tstop", tstop)
    if tstop < times[-1]:
        raise ValueError("tstop must be >= the last stimulus time")
    tmax = None if tmax is None else positive("tmax", tmax)
    return TranStimulus(times, V, tstep, tstop, tmax, rise_time)
