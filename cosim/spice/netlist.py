"""ngspice deck writer for crossbar arrays (EQUATIONS.md section 5, DEVICE.md).

This module knows arrays of cells, voltages and wire resistances -- nothing of networks,
neurons or learning.  Every number that reaches a deck is validated finite and written
with ``repr(float(x))`` (exact round trip); every element and node name is generated here,
never taken from a user string; user text only ever lands in ``*`` comment lines, and only
after it was checked to be one printable line.  No ``.control`` block is ever written by
this module (the runner appends its own, fixed, control lines).

Topology (badcrossbar convention), R word lines x C bit lines::

    Vin<i>: in<i> -- 0            word-line source of row i (value V_i)
    r_word: in<i> -- w<i>_0 -- w<i>_1 -- ... -- w<i>_<C-1>   (far end open)
    cell  : w<i>_<j> (drain) -- b<i>_<j> (source), gate g<i>
    r_bit : b0_<j> -- b1_<j> -- ... -- b<R-1>_<j> -- s<j>    (row-0 end open)
    Vsense<j>: s<j> -- 0, 0 V     virtual ground of the sense amplifier of column j
    Vg<i> : g<i> -- 0             gate line of row i (no IR drop: gates draw no DC current)

``i(vsense<j>)`` is the current flowing from the bit line into the sense node (positive
for positive word-line voltages), i.e. the column output current I_j of EQUATIONS.md.
A segment with resistance 0 is written as a 0 V source (ngspice rejects 0 Ohm resistors).
"""

from __future__ import annotations

import math
import numbers
import os
import re
from pathlib import Path

import numpy as np

from .._validate import as_float_array, positive
from ..errors import UnsafeDeckError

__all__ = [
    "PARAM_NAMES", "DEFAULT_PARAMS", "DEFAULT_LIBRARY", "crossbar_deck", "check_deck_safe",
    "sense_vectors", "state_vector", "fmt", "include_line", "header_lines", "resolve_deck",
]

#: Device parameters of the compact model, same names and defaults as the Python model
#: (``cosim.devices.memtransistor.Memtransistor``) and the subcircuits in
#: ``device_models/memtransistor.lib``.
DEFAULT_PARAMS: dict[str, float] = {
    "g_max": 10e-6, "r_sw": 100.0, "v_th": 0.5, "s_g": 0.25, "v_gref": 3.0, "v_sat": 2.0,
    "v_on": 3.0, "v_off": -3.0, "k_on": 300.0, "k_off": 300.0, "a_on": 2.0, "a_off": 2.0,
    "p_on": 1.0, "p_off": 1.0, "invtau": 0.0, "w_eq": 0.0,
}
PARAM_NAMES: tuple[str, ...] = tuple(DEFAULT_PARAMS)
STATE_MAPS = {"linear": 0, "exp": 1, "exponential": 1}

#: The model library shipped with cosim.
DEFAULT_LIBRARY = Path(__file__).resolve().parents[2] / "device_models" / "memtransistor.lib"

_HEADER_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_ ]*")
_OPTION_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_MAX_HEADER_VALUE = 200
_MAX_HEADER_KEY = 64


def fmt(x, name: str = "value") -> str:
    """``repr(float(x))`` of a finite real number (ValueError for NaN/inf)."""
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (numbers.Real, np.floating,
                                                             np.integer)):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
    v = float(x)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    return repr(v)


def sense_vectors(n_cols: int) -> list[str]:
    """Names of the column output currents: ``['i(vsense0)', ...]``."""
    return [f"i(vsense{j})" for j in range(int(n_cols))]


def state_vector(i: int, j: int) -> str:
    """Name of the state-node voltage of cell (i, j) of a full ``memtransistor`` deck."""
    return f"v(x{int(i)}_{int(j)}.w)"


def include_line(path, relative_to=None) -> str:
    """A safe ``.include "<path>"`` line (rejects quotes, newlines, control chars).

    The path is absolute, or relative to the folder ``relative_to`` (where the deck will be
    written: ngspice resolves a relative ``.include`` from the including deck's folder), so
    that a deck and the model library can move together.
    """
    target = Path(path).expanduser().resolve()
    text = str(target)
    if relative_to is not None:
        text = os.path.relpath(target, Path(relative_to).expanduser().resolve())
    for candidate in (str(path), text):
        if any(c in candidate for c in "\"'\n\r") or not candidate.isprintable():
            raise ValueError(f"model library path contains quotes, newlines or control "
                             f"characters: {candidate!r}")
    if not target.is_file():
        raise FileNotFoundError(f"model library not found: {target}")
    return f'.include "{text}"'


def header_lines(header) -> list[str]:
    """Descriptive ``* key: value`` comment lines from a dict (validated, truncated)."""
    if header is None:
        return []
    if not isinstance(header, dict):
        raise TypeError(f"header must be a dict, got {type(header).__name__}")
    lines = []
    for key, value in header.items():
        if not isinstance(key, str) or not _HEADER_KEY.fullmatch(key) \
                or len(key) > _MAX_HEADER_KEY:
            raise ValueError(f"header key {key!r} must match ^[A-Za-z_][A-Za-z0-9_ ]*$ "
                             f"(at most {_MAX_HEADER_KEY} characters)")
        if isinstance(value, (bool, np.bool_)):
            text = str(bool(value))
        elif isinstance(value, (numbers.Real, np.floating, np.integer)):
            if isinstance(value, (numbers.Integral, np.integer)):
                text = str(int(value))
            else:
                text = fmt(value, f"header[{key!r}]")
        elif isinstance(value, str):
            if not value.isprintable():
                raise ValueError(f"header[{key!r}] must be one line of printable characters")
            text = value
            if len(text) > _MAX_HEADER_VALUE:
                text = text[:_MAX_HEADER_VALUE - 3] + "..."
        else:
            raise TypeError(f"header[{key!r}] must be a number or a string, "
                            f"got {type(value).__name__}")
        lines.append(f"* {key}: {text}")
    return lines


_UNSAFE_PREFIXES = (".control", ".endc", "*#", "shell", ".exec", "!", "*ng_script")
_INCLUDE_CARD = re.compile(r"^\s*\.(include|inc|lib)\b(.*)$", re.I)
_MAX_INCLUDE_DEPTH = 8
_MAX_DECK_BYTES = 256 * 2**20


def check_deck_safe(text: str, allowed: tuple[str, ...] = (), source: str = "deck") -> None:
    """Raise UnsafeDeckError if a deck holds lines that would execute commands.

    Flags (case-insensitive, after leading blanks) lines starting with ``.control``,
    ``.endc``, ``*#`` (ngspice runs ``*#`` comment lines as commands), ``*ng_script`` (makes
    the file a command script), ``shell``, ``.exec`` or ``!``, and NUL characters.
    ``allowed`` lists exact lines the caller itself appended that are exempt.  This checks
    one text; :func:`resolve_deck` checks a deck together with every file it includes.
    """
    if not isinstance(text, str):
        raise TypeError(f"deck must be a string, got {type(text).__name__}")
    allowed_set = {a.strip() for a in allowed}
    bad = []
    for n, line in enumerate(text.splitlines(), 1):
        s = line.lstrip().lower()
        if s.startswith(_UNSAFE_PREFIXES) and line.strip() not in allowed_set:
            bad.append(f"line {n}: {line[:60]!r}")
    if "\x00" in text:
        bad.append("NUL character")
    if bad:
        raise UnsafeDeckError(f"{source} contains command lines (ngspice would execute "
                              f"them): " + "; ".join(bad[:5]))


def _include_target(rest: str, source: str) -> str:
    """The file name of an ``.include`` card (quotes optional), checked to be one name."""
    name = rest.strip()
    if len(name) >= 2 and name[0] == name[-1] and name[0] in "\"'":
        name = name[1:-1]
    if not name or any(c in name for c in "\"'") or not name.isprintable():
        raise UnsafeDeckError(f"{source}: bad .include file name {rest.strip()[:80]!r}")
    return name


def resolve_deck(text: str, base=None) -> str:
    """The deck with every ``.include`` replaced by the checked text of that file.

    Every file ngspice would read is checked with :func:`check_deck_safe` and inlined, so
    ngspice reads exactly the checked text (no file can change between the check and the
    run).  Relative names are resolved from the including file's folder (``base`` for
    the top-level deck, default the current folder), as ngspice does.  Raises
    UnsafeDeckError for command lines, ``.lib`` cards, include cycles, more than
    8 levels, a missing or unreadable file or more than 256 MB in all.
    """
    check_deck_safe(text)
    base = Path.cwd() if base is None else Path(base)
    total = [len(text)]

    def expand(body: str, folder: Path, chain: tuple, source: str) -> list[str]:
        out = []
        for n, line in enumerate(body.splitlines(), 1):
            m = _INCLUDE_CARD.match(line)
            if m is None:
                out.append(line)
                continue
            where = f"{source} line {n}"
            if m.group(1).lower() == "lib":
                raise UnsafeDeckError(f"{where}: .lib cards are not supported; use .include "
                                      f"of the file (got {line.strip()[:80]!r})")
            target = (folder / Path(_include_target(m.group(2), where)).expanduser()).resolve()
            if target in chain:
                raise UnsafeDeckError(f"{where}: {target} includes itself (include cycle)")
            if len(chain) >= _MAX_INCLUDE_DEPTH:
                raise UnsafeDeckError(f"{where}: more than {_MAX_INCLUDE_DEPTH} levels of "
                                      f".include")
            try:
                size = target.stat().st_size
                if size + total[0] > _MAX_DECK_BYTES:
                    raise UnsafeDeckError(f"{where}: the deck with its includes exceeds "
                                          f"{_MAX_DECK_BYTES >> 20} MB ({target})")
                included = target.read_bytes().decode("utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise UnsafeDeckError(f"{where}: cannot read included file {target}: "
                                      f"{exc}") from exc
            total[0] += len(included)
            check_deck_safe(included, source=f"included file {target}")
            out.append(f"* ---- begin .include {target.name} (inlined by cosim)")
            out += expand(included, target.parent, chain + (target,), f"included file {target}")
            out.append(f"* ---- end .include {target.name}")
        return out

    lines = expand(text, base, (), "deck")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# crossbar deck
# ---------------------------------------------------------------------------------------

def _param_arrays(device_params, shape):
    """Validate device params: name -> scalar or (R, C) array."""
    if device_params is None:
        return {}
    if not isinstance(device_params, dict):
        raise TypeError("device_params must be a dict")
    out = {}
    for name, value in device_params.items():
        if name not in DEFAULT_PARAMS:
            raise ValueError(f"unknown device parameter {name!r}; known: {list(PARAM_NAMES)}")
        arr = as_float_array(f"device_params[{name!r}]", value)
        if arr.ndim == 0:
            out[name] = float(arr)
        elif arr.shape == shape:
            out[name] = arr
        else:
            raise ValueError(f"device_params[{name!r}] must be a scalar or of shape {shape}, "
                             f"got {arr.shape}")
    for name in ("g_max", "r_sw", "s_g", "v_sat", "v_on"):
        if name in out and np.any(np.asarray(out[name]) <= 0):
            raise ValueError(f"device_params[{name!r}] must be > 0")
    if "v_off" in out and np.any(np.asarray(out["v_off"]) >= 0):
        raise ValueError("device_params['v_off'] must be < 0")
    return out


#: u = (V_GM - v_th)/s_g above which memtransistor_read_on is exact (~1e-13)
GATE_ON_MIN_U = -9.0


def _gate_on(params, v_gate, V) -> bool:
    """True when every cell's gate drive stays in the range of the cheap read cell.

    Node voltages of a passive array lie between min(0, V) and max(0, V), so
    V_GM = V_G - (V_D + V_S)/2 >= min(V_G) - max(0, max V); the same bound is needed at
    the reference point v_gref.
    """
    get = lambda k: np.asarray(params.get(k, DEFAULT_PARAMS[k]), dtype=float)  # noqa: E731
    v_th, s_g, v_gref = get("v_th").max(), get("s_g").min(), get("v_gref").min()
    v_high = max(0.0, float(np.max(V)))
    u_min = (float(np.min(v_gate)) - v_high - v_th) / s_g
    return min(u_min, (v_gref - v_th) / s_g) >= GATE_ON_MIN_U


def _segment(kind, name, a, b, r):
    """A wire segment: resistor, or a 0 V source if r == 0."""
    if r == 0.0:
        return f"V{kind}{name} {a} {b} DC 0"
    return f"R{kind}{name} {a} {b} {fmt(r)}"


def _pwl(times, values, rise):
    """PWL points of rectangular steps: value[k] from times[k] (+rise) to times[k+1]."""
    pts = [f"{fmt(times[0])} {fmt(values[0])}"]
    for k in range(1, len(times)):
        pts.append(f"{fmt(times[k])} {fmt(values[k - 1])}")
        pts.append(f"{fmt(times[k] + rise)} {fmt(values[k])}")
    return "PWL(" + " ".join(pts) + ")"


def crossbar_deck(*, conductances=None, states=None, device_params=None,
                  state_map: str = "linear", read_only: bool = True,
                  v_word=None, stimulus=None, batch=None, v_gate=None,
                  r_word: float = 0.0, r_bit: float = 0.0,
                  tstep: float | None = None, tstop: float | None = None,
                  tmax: float | None = None, rise_time: float = 1e-9,
                  options: dict | None = None, klu: bool = True,
                  model_library=None, include_relative_to=None,
                  header: dict | None = None,
                  title: str = "cosim crossbar") -> str:
    """Write an ngspice deck of an R x C crossbar (EQUATIONS.md section 5).

    Cells (exactly one of):
      conductances : (R, C) siemens, >= 0 -> plain resistor cells ("linear" read);
                     G == 0 leaves the cell open.
      states       : (R, C) in [0, 1] -> memtransistor cells; ``device_params`` maps
                     PARAM_NAMES to scalars or (R, C) arrays (device-to-device variation);
                     ``state_map`` "linear" | "exp"; ``read_only`` selects the
                     ``memtransistor_read`` cell (state fixed, no state node) or the full
                     ``memtransistor`` cell (state node, initial value = states).
    Analysis (exactly one of):
      v_word   : (R,) word-line voltages -> ``.op``.
      stimulus : (times (T,), V (T, R)) -> ``.tran tstep tstop [0 tmax]``; word line i is a
                 PWL source holding V[k, i] from times[k] + rise_time until times[k+1]
                 (linear ramps of ``rise_time`` between steps; times strictly increasing,
                 steps longer than ``rise_time``).
      batch    : (K, R) input vectors -> ``.dc`` sweep of an index source ``Vidx`` from 0 to
                 K-1; word sources are then B-sources ``Bin<i>`` = pwl(V(idx), k, V[k, i])
                 (K pure DC solves in ONE analysis, result k at sweep point k).
    v_gate: per-row gate voltages (R,) (or (T, R) with ``stimulus``); default the device's
            v_gref. Ignored for resistor cells.
    r_word, r_bit: wire segment resistances in ohms (>= 0; 0 -> 0 V sources).
    options: extra ``.options`` name -> number; ``klu`` adds ``.options klu``.
    model_library: path of the model library (default device_models/memtransistor.lib).
    include_relative_to: write the ``.include`` path relative to this folder (the deck's).
    header: descriptive key -> value written as ``*`` comment lines only.
    """
    if (conductances is None) == (states is None):
        raise ValueError("give exactly one of conductances (resistor cells) or states "
                         "(memtransistor cells)")
    n_an = sum(x is not None for x in (v_word, stimulus, batch))
    if n_an != 1:
        raise ValueError("give exactly one of v_word (.op), stimulus (.tran) or batch (.dc)")
    if not isinstance(title, str) or not title.isprintable() or len(title) > 80:
        raise ValueError("title must be one printable line of at most 80 characters")
    r_word = positive("r_word", r_word, allow_zero=True)
    r_bit = positive("r_bit", r_bit, allow_zero=True)

    if conductances is not None:
        cell = "resistor"
        G = as_float_array("conductances", conductances, ndim=2)
        if np.any(G < 0):
            raise ValueError("conductances must be >= 0")
        R, C = G.shape
    else:
        cell = "memtransistor"
        W = as_float_array("states", states, ndim=2)
        if np.any(W < 0) or np.any(W > 1):
            raise ValueError("states must lie in [0, 1]")
        R, C = W.shape
    if R < 1 or C < 1:
        raise ValueError("the array must have at least one row and one column")
    if not isinstance(state_map, str) or state_map.lower() not in STATE_MAPS:
        raise ValueError(f"state_map must be one of {sorted(STATE_MAPS)}, got {state_map!r}")
    smap = STATE_MAPS[state_map.lower()]
    params = _param_arrays(device_params, (R, C)) if cell == "memtransistor" else {}
    if cell == "resistor" and device_params:
        raise ValueError("device_params apply to memtransistor cells only")

    # --- analysis inputs
    times = None
    if v_word is not None:
        V = as_float_array("v_word", v_word, ndim=1)
        if V.shape != (R,):
            raise ValueError(f"v_word must have shape ({R},), got {V.shape}")
        analysis = "op"
    elif stimulus is not None:
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
        tstep = positive("tstep", tstep)
        tstop = positive("tstop", tstop)
        if tstop < times[-1]:
            raise ValueError("tstop must be >= the last stimulus time")
        if tmax is not None:
            tmax = positive("tmax", tmax)
        analysis = "tran"
    else:
        V = as_float_array("batch", batch, ndim=2)
        if V.shape[1] != R or V.shape[0] < 1:
            raise ValueError(f"batch must have shape (K, {R}) with K >= 1, got {V.shape}")
        analysis = "dc"

    # --- gate voltages
    vg = None
    if cell == "memtransistor":
        if v_gate is None:
            gref = params.get("v_gref", DEFAULT_PARAMS["v_gref"])
            gref = np.broadcast_to(np.asarray(gref, dtype=float), (R, C))
            if np.any(gref != gref[:, :1]):
                raise ValueError("v_gref varies along a row: give v_gate explicitly")
            vg = gref[:, 0].copy()
        else:
            vg = as_float_array("v_gate", v_gate, ndim=(1, 2))
            if vg.ndim == 2 and (analysis != "tran" or vg.shape != (times.size, R)):
                raise ValueError(f"a 2-D v_gate needs a stimulus and shape "
                                 f"({0 if times is None else times.size}, {R})")
            if vg.ndim == 1 and vg.shape != (R,):
                raise ValueError(f"v_gate must have shape ({R},), got {vg.shape}")

    opts = {}
    if options is not None:
        if not isinstance(options, dict):
            raise TypeError("options must be a dict name -> number")
        for k, v in options.items():
            if not isinstance(k, str) or not _OPTION_NAME.fullmatch(k) or len(k) > 32:
                raise ValueError(f"option name {k!r} must match ^[A-Za-z][A-Za-z0-9_]*$")
            opts[k.lower()] = fmt(v, f"options[{k!r}]")

    lib_line = include_line(model_library or DEFAULT_LIBRARY, include_relative_to) if cell == "memtransistor" \
        else None
    user_header = header_lines(header)

    sub = None
    if cell == "memtransistor":
        sub = "memtransistor"
        if read_only:
            sub = "memtransistor_read_on" if _gate_on(params, vg, V) else "memtransistor_read"

    # --- write
    out = [f"* {title}"]
    out += [
        "* Written by cosim.spice.netlist -- run with:  " + (
            "ngspice -b deck.cir  (prints the operating point)" if analysis == "op" else
            "ngspice -b -r out.raw deck.cir  (all vectors to out.raw)"),
        f"* array: {R} word lines (rows) x {C} bit lines (columns); cell: "
        + (cell if cell == "resistor" else
           (f"{sub} (state fixed)" if read_only else "memtransistor (state node)")),
        f"* analysis: {analysis}; wire segments: r_word = {fmt(r_word)} Ohm, "
        f"r_bit = {fmt(r_bit)} Ohm (0 -> 0 V source)",
        "* units: V, A, Ohm, S, s",
        "* nodes: in<i> word-line source, w<i>_<j> word line at cell (i,j) (drain),",
        "*        b<i>_<j> bit line at cell (i,j) (source), s<j> sense node of column j,",
        "*        g<i> gate line of row i" + (", x<i>_<j>.w state of cell (i,j)"
                                              if cell == "memtransistor" and not read_only
                                              else ""),
        "* sources: Vin<i> word line i (Bin<i> in a .dc batch deck), Vg<i> gate line i,",
        "*          Vsense<j> 0 V from s<j> to ground: i(vsense<j>) = current flowing from",
        "*          bit line j into its sense node (column output current, > 0 for V > 0)",
        "* wire elements: Rw<i>_<j>/Vw<i>_<j> into w<i>_<j>, Rb<i>_<j>/Vb<i>_<j> below b<i>_<j>",
    ]
    if analysis == "dc":
        out.append(f"* batch: {V.shape[0]} input vectors; sweep point k of Vidx = vector k")
    if user_header:
        out.append("* --- mapping info ---")
        out += user_header
    out.append("*")
    if lib_line:
        out.append(lib_line)
    if klu:
        out.append(".options klu")
    if opts:
        out.append(".options " + " ".join(f"{k}={v}" for k, v in opts.items()))

    # word-line sources
    out.append("* word-line sources")
    if analysis == "op":
        for i in range(R):
            out.append(f"Vin{i} in{i} 0 DC {fmt(V[i])}")
    elif analysis == "tran":
        for i in range(R):
            out.append(f"Vin{i} in{i} 0 DC {fmt(V[0, i])} {_pwl(times, V[:, i], rise_time)}")
    else:
        K = V.shape[0]
        out.append("Vidx idx 0 DC 0")
        out.append("Ridx idx 0 1")
        for i in range(R):
            pts = ", ".join(f"{k}, {fmt(V[k, i])}" for k in range(K))
            if K == 1:
                pts += f", 1, {fmt(V[0, i])}"
            out.append(f"Bin{i} in{i} 0 V = pwl(V(idx), {pts})")
    # gate lines
    if cell == "memtransistor":
        out.append("* gate lines (no IR drop: gates draw no DC current)")
        for i in range(R):
            if vg.ndim == 1:
                out.append(f"Vg{i} g{i} 0 DC {fmt(vg[i])}")
            else:
                out.append(f"Vg{i} g{i} 0 DC {fmt(vg[0, i])} {_pwl(times, vg[:, i], rise_time)}")
    # word-line segments
    out.append("* word-line segments")
    for i in range(R):
        out.append(_segment("w", f"{i}_0", f"in{i}", f"w{i}_0", r_word))
        for j in range(1, C):
            out.append(_segment("w", f"{i}_{j}", f"w{i}_{j - 1}", f"w{i}_{j}", r_word))
    # bit-line segments and sense sources
    out.append("* bit-line segments and sense sources")
    for j in range(C):
        for i in range(R):
            below = f"b{i + 1}_{j}" if i < R - 1 else f"s{j}"
            out.append(_segment("b", f"{i}_{j}", f"b{i}_{j}", below, r_bit))
        out.append(f"Vsense{j} s{j} 0 DC 0")
    # cells
    out.append("* cells")
    if cell == "resistor":
        for i in range(R):
            for j in range(C):
                if G[i, j] > 0:
                    out.append(f"R{i}_{j} w{i}_{j} b{i}_{j} {fmt(1.0 / G[i, j])}")
    else:
        extra_scalar = " ".join(f"{k}={fmt(v)}" for k, v in params.items()
                                if not isinstance(v, np.ndarray))
        if smap:
            extra_scalar = (extra_scalar + " state_map=1").strip()
        arrays = {k: v for k, v in params.items() if isinstance(v, np.ndarray)}
        for i in range(R):
            for j in range(C):
                per = " ".join(f"{k}={fmt(v[i, j])}" for k, v in arrays.items())
                line = f"X{i}_{j} w{i}_{j} g{i} b{i}_{j} {sub} w0={fmt(W[i, j])}"
                if per:
                    line += " " + per
                if extra_scalar:
                    line += " " + extra_scalar
                out.append(line)
    # analysis
    if analysis == "op":
        out.append(".op")
    elif analysis == "tran":
        line = f".tran {fmt(tstep)} {fmt(tstop)}"
        if tmax is not None:
            line += f" 0 {fmt(tmax)}"
        out.append(line)
    else:
        out.append(f".dc Vidx 0 {V.shape[0] - 1} 1")
    out.append(".end")
    return "\n".join(out) + "\n"
