"""ngspice deck writer for crossbar arrays (docs/array.md: topology; docs/device.md: the cell).

This module knows arrays of cells, voltages and wire resistances -- nothing of networks,
neurons or learning.  Every number that reaches a deck is validated finite and written
with ``repr(float(x))`` (exact round trip); every element and node name is generated here,
never taken from a user string; user text only ever lands in ``*`` comment lines, and only
after it was checked to be one printable line.  No ``.control`` block is ever written.

A deck is assembled from two small parts that render their own lines:

* a stimulus (:mod:`cosim.spice.stimuli`) -- :class:`OpStimulus` (``.op``),
  :class:`TranStimulus` (``.tran`` with PWL sources) or :class:`BatchStimulus` (``.dc``
  stepping through K input vectors) -- writes the word-line sources, any other source it
  drives, and the analysis card;
* a cell writer -- :class:`ResistorCells` or :class:`MemtransistorCells` -- writes its
  definitions (for memtransistors: the device card once, as a ``.param`` block, and a
  ``cell`` subcircuit whose defaults are that card), its gate lines, and one short
  instance line per cell holding only that cell's state (and any parameter that varies
  from cell to cell).

Topology (badcrossbar convention), R word lines x C bit lines::

    Vin<i>: in<i> -- 0            word-line source of row i (value V_i)
    Rdrv<i>: in<i> -- d<i>        driver output resistance r_driver (only if > 0; else
                                  the first segment starts at in<i>)
    r_word: d<i> -- w<i>_0 -- w<i>_1 -- ... -- w<i>_<C-1>   (far end open)
    cell  : w<i>_<j> (drain) -- b<i>_<j> (source), gate g<i>
    r_bit : b0_<j> -- b1_<j> -- ... -- b<R-1>_<j> -- s<j>    (row-0 end open)
    Rsense<j>: s<j> -- t<j>       sense-amplifier input resistance r_sense (only if > 0;
                                  else s<j> is t<j>)
    Vsense<j>: t<j> -- 0, 0 V     ammeter into ground of the sense amplifier of column j
    Vg<i> : g<i> -- 0             gate line of row i (no IR drop: gates draw no DC current)

``i(vsense<j>)`` is the current flowing from the bit line into the sense node (positive
for positive word-line voltages), i.e. the column output current I_j of docs/array.md.
A segment with resistance 0 is written as a 0 V source (ngspice rejects 0 Ohm resistors).

Precision: ngspice re-prints a number written inside a B-source expression with 11
significant digits, but substitutes ``.param`` values and subcircuit parameters with 16;
so every constant a B-source uses is a parameter (the device card, the per-cell state).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .. import device_models
from .._validate import as_float_array, positive
from .deck_text import fmt, header_lines, include_line
from .safety import check_deck_safe, resolve_deck
from .stimuli import BatchStimulus, ExternalStimulus, OpStimulus, TranStimulus, build_stimulus

__all__ = [
    "PARAM_NAMES", "DEFAULT_PARAMS", "DEFAULT_LIBRARY", "crossbar_deck", "check_deck_safe",
    "resolve_deck", "sense_vectors", "state_vector", "fmt", "include_line", "header_lines",
    "OpStimulus", "TranStimulus", "BatchStimulus", "ExternalStimulus", "ResistorCells",
    "MemtransistorCells",
]

#: Device parameters of the compact model: the ``[parameters]`` of the default card
#: ``cosim/device_models/mos2_memtransistor.toml`` (their one source); the same names as
#: the Python model and the subcircuits of ``memtransistor.lib``.
DEFAULT_PARAMS: dict[str, float] = device_models.default_parameters()
PARAM_NAMES: tuple[str, ...] = tuple(DEFAULT_PARAMS)
STATE_MAPS = {"linear": 0, "exp": 1, "exponential": 1}

#: The model library shipped inside the package.
DEFAULT_LIBRARY = device_models.LIBRARY

_OPTION_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_UNITS = {"g_max": "S", "r_sw": "-", "v_th": "V", "s_g": "V", "v_gref": "V", "v_sat": "V",
          "v_on": "V", "v_off": "V", "k_on": "1/s", "k_off": "1/s", "a_on": "-",
          "a_off": "-", "p_on": "-", "p_off": "-", "invtau": "1/s", "w_eq": "-"}


def sense_vectors(n_cols: int) -> list[str]:
    """Names of the column output currents: ``['i(vsense0)', ...]``."""
    return [f"i(vsense{j})" for j in range(int(n_cols))]


def state_vector(i: int, j: int) -> str:
    """Name of the state-node voltage of cell (i, j) of a full ``memtransistor`` deck."""
    return f"v(x{int(i)}_{int(j)}.x1.w)"


# ---------------------------------------------------------------------------------------
# cell writers
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ResistorCells:
    """Plain resistor cells of conductance ``G`` (R, C) siemens; G == 0 leaves a cell open."""
    G: np.ndarray
    needs_library = False

    def describe(self) -> str:
        return "resistor"

    def definitions(self) -> list[str]:
        return []

    def gate_lines(self, stimulus) -> list[str]:
        return []

    def instances(self) -> list[str]:
        R, C = self.G.shape
        return [f"R{i}_{j} w{i}_{j} b{i}_{j} {fmt(1.0 / self.G[i, j])}"
                for i in range(R) for j in range(C) if self.G[i, j] > 0]


#: u = (V_GM - v_th)/s_g above which memtransistor_read_on is exact (~1e-13)
GATE_ON_MIN_U = -9.0


@dataclass(frozen=True)
class MemtransistorCells:
    """Memtransistor cells with states ``W`` (R, C) in [0, 1].

    ``card``: every parameter of PARAM_NAMES (scalars, written once as ``.param``);
    ``per_cell``: parameters that vary from cell to cell, name -> (R, C) (written on each
    instance); ``subckt``: ``memtransistor`` (state node), ``memtransistor_read`` or
    ``memtransistor_read_on`` (state fixed); ``v_gate``: (R,) or (T, R) volts.

    ``memtransistor_read_on`` takes its gate voltage as the parameter ``v_g`` (it does not
    read V(g)); the deck writes each row's DC gate voltage once, as ``.param vgate`` (all
    rows equal) or ``.param vgate<i>``, and both the gate-line source and the cells of the
    row use it, so the two cannot disagree.
    """
    W: np.ndarray
    card: dict
    per_cell: dict
    state_map: int
    subckt: str
    v_gate: np.ndarray
    needs_library = True

    def describe(self) -> str:
        return (f"{self.subckt} (state node)" if self.subckt == "memtransistor"
                else f"{self.subckt} (state fixed)")

    def definitions(self) -> list[str]:
        out = ["* device card: one place for every cell (SI units; see memtransistor.lib)"]
        for name, value in self.card.items():
            out.append(f".param {name} = {fmt(value, name)}"
                       + ("" if name in self.per_cell else f"  $ [{_UNITS.get(name, '-')}]"))
        out.append(f".param state_map = {self.state_map}  $ 0: linear g(w), 1: exponential")
        own = list(self.per_cell)          # parameters each instance gives
        gate = ""
        if self.gate_parameter:
            if self.uniform_gate:
                out.append(f".param vgate = {fmt(self.v_gate[0])}  $ DC gate voltage of "
                           f"every row [V] (gate lines and cells)")
                gate = " v_g={vgate}"
            else:
                out.append("* DC gate voltage of row i [V] (its gate line and its cells)")
                out += [f".param vgate{i} = {fmt(v)}" for i, v in enumerate(self.v_gate)]
                gate = " v_g={vg}"
                own.append("vg")
        out.append(f"* cell: one memtransistor; instances give its state w0"
                   f"{''.join(' and ' + n for n in own)}")
        defaults = "".join(f" {n}={{{n}}}" for n in self.per_cell)
        out.append(f".subckt cell d g s params: w0=0.5{defaults}"
                   f"{' vg=0' if 'vg' in own else ''}")
        args = " ".join(f"{n}={{{n}}}" for n in self.card)
        out.append(f"X1 d g s {self.subckt} {args} state_map={{state_map}} w0={{w0}}{gate}")
        out.append(".ends cell")
        return out

    @property
    def gate_parameter(self) -> bool:
        """True when the cells take the DC gate voltage as a parameter (not V(g))."""
        return self.subckt == "memtransistor_read_on"

    @property
    def uniform_gate(self) -> bool:
        return self.v_gate.ndim == 1 and bool(np.all(self.v_gate == self.v_gate[0]))

    def _gate_name(self, i) -> str:
        return "vgate" if self.uniform_gate else f"vgate{i}"

    def gate_lines(self, stimulus) -> list[str]:
        R = self.W.shape[0]
        out = ["* gate lines (no IR drop: gates draw no DC current)"]
        if self.gate_parameter:
            return out + [f"Vg{i} g{i} 0 DC {{{self._gate_name(i)}}}" for i in range(R)]
        series = self.v_gate.ndim == 2
        return out + [
            stimulus.source(f"Vg{i}", f"g{i}", self.v_gate[:, i] if series else self.v_gate[i])
            for i in range(R)]

    def instances(self) -> list[str]:
        R, C = self.W.shape
        row_gate = self.gate_parameter and not self.uniform_gate
        out = []
        for i in range(R):
            gate = f" vg={{vgate{i}}}" if row_gate else ""
            for j in range(C):
                extra = "".join(f" {n}={fmt(v[i, j])}" for n, v in self.per_cell.items())
                out.append(f"X{i}_{j} w{i}_{j} g{i} b{i}_{j} cell w0={fmt(self.W[i, j])}"
                           f"{extra}{gate}")
        return out


def _card_and_variation(device_params, shape):
    """Validated device parameters: the card (every name, scalars) and the per-cell arrays."""
    if device_params is None:
        device_params = {}
    if not isinstance(device_params, dict):
        raise TypeError("device_params must be a dict")
    card, per_cell = dict(DEFAULT_PARAMS), {}
    for name, value in device_params.items():
        if name not in DEFAULT_PARAMS:
            raise ValueError(f"unknown device parameter {name!r}; known: {list(PARAM_NAMES)}")
        arr = as_float_array(f"device_params[{name!r}]", value)
        if arr.ndim == 0:
            card[name] = float(arr)
        elif arr.shape == shape:
            if np.all(arr == arr.flat[0]):
                card[name] = float(arr.flat[0])
            else:
                per_cell[name] = arr
                card[name] = float(np.median(arr))   # the default only; every cell sets it
        else:
            raise ValueError(f"device_params[{name!r}] must be a scalar or of shape {shape}, "
                             f"got {arr.shape}")
    both = {**card, **per_cell}
    for name in ("g_max", "r_sw", "s_g", "v_sat", "v_on"):
        if np.any(np.asarray(both[name]) <= 0):
            raise ValueError(f"device_params[{name!r}] must be > 0")
    if np.any(np.asarray(both["v_off"]) >= 0):
        raise ValueError("device_params['v_off'] must be < 0")
    return card, per_cell


def _gate_on(card, per_cell, v_gate, extremes) -> bool:
    """True when every cell's gate drive stays in the range of the cheap read cell.

    Node voltages of a passive array lie between min(0, V) and max(0, V), so
    V_GM = V_G - (V_D + V_S)/2 >= min(V_G) - max(0, max V); the same bound is needed at
    the reference point v_gref.
    """
    get = lambda k: np.asarray(per_cell.get(k, card[k]), dtype=float)  # noqa: E731
    v_th, s_g, v_gref = get("v_th").max(), get("s_g").min(), get("v_gref").min()
    v_high = max(0.0, extremes[1])
    u_min = (float(np.min(v_gate)) - v_high - v_th) / s_g
    return min(u_min, (v_gref - v_th) / s_g) >= GATE_ON_MIN_U


def _segment(kind, name, a, b, r, param):
    """A wire segment: resistor of value ``{param}``, or a 0 V source if r == 0."""
    if r == 0.0:
        return f"V{kind}{name} {a} {b} DC 0"
    return f"R{kind}{name} {a} {b} {{{param}}}"


def _wires(R, C, r_word, r_bit, r_driver=0.0, r_sense=0.0) -> list[str]:
    out = []
    if r_word or r_bit:
        out.append(f".param rw = {fmt(r_word)} rb = {fmt(r_bit)}  $ wire segment resistances [Ohm]")
    if r_driver or r_sense:
        out.append(f".param rdrv = {fmt(r_driver)} rsense = {fmt(r_sense)}  "
                   f"$ driver output and sense input resistances [Ohm]")
    out.append("* word-line drivers and segments")
    for i in range(R):
        start = f"in{i}"
        if r_driver:
            start = f"d{i}"
            out.append(f"Rdrv{i} in{i} d{i} {{rdrv}}")
        out.append(_segment("w", f"{i}_0", start, f"w{i}_0", r_word, "rw"))
        out += [_segment("w", f"{i}_{j}", f"w{i}_{j - 1}", f"w{i}_{j}", r_word, "rw")
                for j in range(1, C)]
    out.append("* bit-line segments and sense sources")
    for j in range(C):
        for i in range(R):
            below = f"b{i + 1}_{j}" if i < R - 1 else f"s{j}"
            out.append(_segment("b", f"{i}_{j}", f"b{i}_{j}", below, r_bit, "rb"))
        if r_sense:
            out.append(f"Rsense{j} s{j} t{j} {{rsense}}")
            out.append(f"Vsense{j} t{j} 0 DC 0")
        else:
            out.append(f"Vsense{j} s{j} 0 DC 0")
    return out


def _check_block(expected, C) -> list[str]:
    """Sources that print each sense current's deviation from cosim's prediction.

    ``dev<j> = (I_j - I_expected_j) / max |I_expected|`` is a node voltage, so
    ``ngspice -b`` prints it with the operating point (7 digits); with I_expected written
    here with all 17 digits, I_j = ie<j> + iscale * dev<j> is known to >= 12 significant
    digits from the printed output alone.
    """
    ie = as_float_array("expected currents", expected, ndim=1)
    if ie.shape != (C,):
        raise ValueError(f"expected currents must have shape ({C},), got {ie.shape}")
    scale = float(np.abs(ie).max()) or 1.0
    out = ["* self-check: cosim's predicted sense currents ie<j> [A]; v(dev<j>) = "
           "(i(vsense<j>) - ie<j>) / iscale",
           f".param iscale = {fmt(scale)}"]
    out += [f".param ie{j} = {fmt(v)}" for j, v in enumerate(ie)]
    out += [f"Bdev{j} dev{j} 0 V = (i(vsense{j}) - ie{j})/iscale" for j in range(C)]
    return out


def _memtransistor_cells(states, device_params, state_map, read_only, v_gate, stim):
    W = as_float_array("states", states, ndim=2)
    if np.any(W < 0) or np.any(W > 1):
        raise ValueError("states must lie in [0, 1]")
    if not isinstance(state_map, str) or state_map.lower() not in STATE_MAPS:
        raise ValueError(f"state_map must be one of {sorted(STATE_MAPS)}, got {state_map!r}")
    R, C = W.shape
    card, per_cell = _card_and_variation(device_params, (R, C))
    if v_gate is None:
        gref = np.broadcast_to(np.asarray(per_cell.get("v_gref", card["v_gref"])), (R, C))
        if np.any(gref != gref[:, :1]):
            raise ValueError("v_gref varies along a row: give v_gate explicitly")
        vg = gref[:, 0].copy()
    else:
        vg = as_float_array("v_gate", v_gate, ndim=(1, 2))
        if vg.ndim == 2 and (stim.analysis != "tran" or vg.shape != (stim.times.size, R)):
            n_t = stim.times.size if stim.analysis == "tran" else 0
            raise ValueError(f"a 2-D v_gate needs a stimulus and shape ({n_t}, {R})")
        if vg.ndim == 1 and vg.shape != (R,):
            raise ValueError(f"v_gate must have shape ({R},), got {vg.shape}")
    sub = "memtransistor"
    if read_only:
        # the gate-on cell reads its gate as a DC parameter: only for DC gate lines
        sub = "memtransistor_read_on" if vg.ndim == 1 and _gate_on(
            card, per_cell, vg, stim.extremes) else "memtransistor_read"
    return MemtransistorCells(W, card, per_cell, STATE_MAPS[state_map.lower()], sub, vg)


def crossbar_deck(*, conductances=None, states=None, device_params=None,
                  state_map: str = "linear", read_only: bool = True,
                  v_word=None, stimulus=None, batch=None, external=None, v_gate=None,
                  r_word: float = 0.0, r_bit: float = 0.0,
                  r_driver: float = 0.0, r_sense: float = 0.0,
                  tstep: float | None = None, tstop: float | None = None,
                  tmax: float | None = None, rise_time: float = 1e-9,
                  options: dict | None = None, klu: bool = True,
                  model_library=None, include_relative_to=None,
                  header: dict | None = None, expected_currents=None,
                  title: str = "cosim crossbar") -> str:
    """Write an ngspice deck of an R x C crossbar (topology of docs/array.md).

    Cells (exactly one of):
      conductances : (R, C) siemens, >= 0 -> plain resistor cells ("linear" read);
                     G == 0 leaves the cell open.
      states       : (R, C) in [0, 1] -> memtransistor cells; ``device_params`` maps
                     PARAM_NAMES to scalars or (R, C) arrays (device-to-device variation;
                     missing names take the default card); ``state_map`` "linear" |
                     "exp"; ``read_only`` selects the fixed-state read cell or the full
                     ``memtransistor`` cell (state node, initial value = states).
    Analysis (exactly one of): ``v_word`` (R,) -> ``.op``; ``stimulus`` (times (T,),
      V (T, R)) -> ``.tran tstep tstop [0 tmax]`` with PWL sources (``rise_time`` ramps);
      ``batch`` (K, R) -> one ``.dc`` stepping through the K input vectors; ``external``
      (lowest, highest) volts -> EXTERNAL word-line sources fed by the shared library's
      caller (:class:`~cosim.spice.stimuli.ExternalStimulus`; shared library only).
    v_gate: per-row gate voltages (R,) (or (T, R) with ``stimulus``); default the device's
            v_gref. Ignored for resistor cells.
    r_word, r_bit: wire segment resistances in ohms (>= 0; 0 -> 0 V sources).
    r_driver, r_sense: driver output resistance in series with each word-line source and
      sense input resistance from each bit line's end to ground, in ohms (>= 0; 0 -> none).
    options: extra ``.options`` name -> number; ``klu`` adds ``.options klu``.
    model_library: the model library (default: the one inside the package).
    include_relative_to: write the ``.include`` path relative to this folder (the deck's).
    header: descriptive key -> value written as ``*`` comment lines only.
    expected_currents: (C,) amperes (``.op`` only): add sources printing each sense
      current's deviation from these (see :func:`_check_block`).
    """
    if (conductances is None) == (states is None):
        raise ValueError("give exactly one of conductances (resistor cells) or states "
                         "(memtransistor cells)")
    if not isinstance(title, str) or not title.isprintable() or len(title) > 80:
        raise ValueError("title must be one printable line of at most 80 characters")
    r_word = positive("r_word", r_word, allow_zero=True)
    r_bit = positive("r_bit", r_bit, allow_zero=True)
    r_driver = positive("r_driver", r_driver, allow_zero=True)
    r_sense = positive("r_sense", r_sense, allow_zero=True)
    shape = np.shape(conductances if states is None else states)
    if len(shape) != 2 or shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"the array must be 2-D with at least one row and one column, "
                         f"got shape {shape}")
    R, C = shape
    stim = build_stimulus(v_word, stimulus, batch, R, tstep, tstop, tmax, rise_time, external)
    if conductances is not None:
        if device_params:
            raise ValueError("device_params apply to memtransistor cells only")
        G = as_float_array("conductances", conductances, ndim=2)
        if np.any(G < 0):
            raise ValueError("conductances must be >= 0")
        cells = ResistorCells(G)
    else:
        cells = _memtransistor_cells(states, device_params, state_map, read_only, v_gate, stim)
    opts = {}
    if options is not None:
        if not isinstance(options, dict):
            raise TypeError("options must be a dict name -> number")
        for k, v in options.items():
            if not isinstance(k, str) or not _OPTION_NAME.fullmatch(k) or len(k) > 32:
                raise ValueError(f"option name {k!r} must match ^[A-Za-z][A-Za-z0-9_]*$")
            opts[k.lower()] = fmt(v, f"options[{k!r}]")
    check = None
    if expected_currents is not None:
        if stim.analysis != "op":
            raise ValueError("expected_currents are printed by .op decks only")
        check = _check_block(expected_currents, C)
    user_header = header_lines(header)

    out = [f"* {title}",
           f"* array: {R} word lines (rows) x {C} bit lines (columns); cell: {cells.describe()}",
           f"* analysis: {stim.describe()}",
           f"* wire segments: r_word = {fmt(r_word)} Ohm, r_bit = {fmt(r_bit)} Ohm "
           f"(0 -> 0 V source); r_driver = {fmt(r_driver)} Ohm, r_sense = {fmt(r_sense)} Ohm "
           f"(0 -> none); units: V, A, Ohm, S, s",
           "* nodes: in<i> word-line source, w<i>_<j> word line at cell (i,j) (drain),",
           "*        b<i>_<j> bit line at cell (i,j) (source), s<j> sense node of column j,",
           "*        g<i> gate line of row i",
           "* i(vsense<j>): current from bit line j into its sense node (> 0 for V > 0)"]
    out += user_header
    out.append("*")
    if cells.needs_library:
        out.append(include_line(model_library or DEFAULT_LIBRARY, include_relative_to))
    if klu:
        out.append(".options klu")
    if opts:
        out.append(".options " + " ".join(f"{k}={v}" for k, v in opts.items()))
    out += cells.definitions()
    out.append("* word-line sources")
    out += stim.word_lines()
    out += cells.gate_lines(stim)
    out += _wires(R, C, r_word, r_bit, r_driver, r_sense)
    out.append("* cells")
    out += cells.instances()
    if check:
        out += check
    out.append(stim.card())
    out.append(".end")
    return "\n".join(out) + "\n"
