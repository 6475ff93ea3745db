r"""Compact model of a three-terminal MoS2 memtransistor (drain D, gate G, source S).

The channel conductance is *memristive* (a state :math:`w \in [0, 1]` moved by programming
pulses) and *gate-tunable* (a smooth transistor-like gate factor). The equations are those
of docs/device.md; the ngspice subcircuit uses the same equations and the same parameter
names (:attr:`Memtransistor.PARAM_NAMES`).

Gate factor, with the gate referred to the channel midpoint so that D and S are symmetric:

.. math::

    V_{GM} &= V_G - (V_D + V_S)/2 \\
    F(v)   &= s_g \cdot \mathrm{softplus}\big((v - v_{th})/s_g\big),
              \quad \mathrm{softplus}(u) = \ln(1 + e^u) \\
    F_r    &= F(V_{GM}) / F(v_{gref})

Channel current (positive from drain to source through the channel):

.. math::

    I_D = g_{max} \cdot g(w) \cdot F_r \cdot v_{sat} \tanh(V_{DS} / v_{sat})

with the state map ``"linear"`` (default) :math:`g(w) = 1/r_{sw} + (1 - 1/r_{sw})\,w` or
``"exponential"`` :math:`g(w) = r_{sw}^{\,w - 1}`. Both give :math:`g(0) = 1/r_{sw}` and
:math:`g(1) = 1`.

State equation (VTEAM-style thresholds, soft-bound windows, gate-scaled rate):

.. math::

    \frac{dw}{dt} = F_r \cdot \begin{cases}
        +k_{on}\,\big((V_{DS} - v_{on})/v_{on}\big)^{a_{on}}\,(1 - w)^{p_{on}}
            & V_{DS} > v_{on} \\
        -k_{off}\,\big((v_{off} - V_{DS})/|v_{off}|\big)^{a_{off}}\,w^{p_{off}}
            & V_{DS} < v_{off} \\
        0 & \text{otherwise}
    \end{cases} \;-\; invtau\,(w - w_{eq})

and :math:`w` is kept in :math:`[0, 1]`.

Symmetry: swapping drain and source leaves :math:`V_{GM}` unchanged and flips
:math:`V_{DS}`, so :math:`I(V_D, V_G, V_S) = -I(V_S, V_G, V_D)`. In source-referenced form
(:meth:`Memtransistor.current`) this reads
``current(-v_ds, v_gs - v_ds, w) == -current(v_ds, v_gs, w)``; at a fixed ``v_gs`` the
current is *not* odd in ``v_ds`` (the midpoint gate voltage ``v_gs - v_ds/2`` changes).

Measured with the default card (see ``tests/test_memtransistor.py``): a +4 V, 1 ms pulse
at V_G = 3 V (source at 0) has V_GM = 1 V, F_r = 0.2127 and moves w by
``1 - exp(-7.09e-3) = 0.00706 * (1 - w)``. (The design note quoted in docs/device.md
gives 0.0057; the equations as written give 0.0071.) The gate on/off current ratio
I(V_GS = 3 V)/I(V_GS = -2 V) tends to 2.20e5 as V_DS -> 0 (2.6e5 at V_DS = 0.1 V).

Parameter units: g_max [S], r_sw [-], v_th, s_g, v_gref, v_sat, v_on, v_off [V],
k_on, k_off [1/s], a_on, a_off, p_on, p_off [-], invtau [1/s], w_eq [-].

Why one module of ~570 lines: it is one device model (as Norse keeps one neuron model per
module) -- the I-V, the state equation and its pulse integrator, the parameter checks and
the card reader all work on the same parameter set (the shipped card and its defaults live
in ``cosim.device_models``); cutting it would scatter one set of equations over files.
"""

from __future__ import annotations

import math
import numbers
import tomllib
from pathlib import Path

import numpy as np
from scipy.integrate import solve_ivp

from .. import _validate, device_models
from ..errors import DeviceCardError

__all__ = ["Memtransistor", "TerminalCell", "DEFAULT_CARD", "DEFAULT_PARAMS", "STATE_MAPS"]

#: The default MoS2 parameter card shipped inside the package (cosim/device_models/).
DEFAULT_CARD = device_models.DEFAULT_CARD

#: Default parameter values: the ``[parameters]`` of ``DEFAULT_CARD``, the one source of
#: truth (names, units and meaning are commented in the card); a missing or damaged card is
#: an error at import, never a silent second copy of the values.
DEFAULT_PARAMS: dict[str, float] = device_models.default_parameters()

STATE_MAPS = ("linear", "exponential")

# Parameters that may be arrays (per-instance device-to-device variability).
_ARRAY_PARAMS = ("g_max", "v_th")

# name -> (test, description of the physical range)
_CHECKS = {
    "g_max": (lambda x: x > 0, "> 0"),
    "r_sw": (lambda x: x > 1, "> 1"),
    "v_th": (lambda x: np.ones_like(x, dtype=bool), "finite"),
    "s_g": (lambda x: x > 0, "> 0"),
    "v_gref": (lambda x: True, "finite"),
    "v_sat": (lambda x: x > 0, "> 0"),
    "v_on": (lambda x: x > 0, "> 0"),
    "v_off": (lambda x: x < 0, "< 0"),
    "k_on": (lambda x: x >= 0, ">= 0"),
    "k_off": (lambda x: x >= 0, ">= 0"),
    "a_on": (lambda x: x > 0, "> 0"),
    "a_off": (lambda x: x > 0, "> 0"),
    "p_on": (lambda x: x >= 0, ">= 0"),
    "p_off": (lambda x: x >= 0, ">= 0"),
    "invtau": (lambda x: x >= 0, ">= 0"),
    "w_eq": (lambda x: 0 <= x <= 1, "in [0, 1]"),
}


def _softplus(u):
    """ln(1 + e^u), stable for any u (the first half of :func:`_softplus_sigmoid`)."""
    u = np.asarray(u, dtype=float)
    sp = np.log1p(np.exp(-np.abs(u)))
    sp += np.maximum(u, 0.0)
    return sp


def _softplus_sigmoid(u):
    """(ln(1 + e^u), 1/(1 + e^-u)) from one exponential, stable for any u.

    With e = exp(-|u|) in (0, 1]: softplus(u) = max(u, 0) + log1p(e) and
    sigmoid(u) = 1/(1 + e) for u >= 0, e/(1 + e) for u < 0 (~4x cheaper than logaddexp).
    """
    u = np.asarray(u, dtype=float)
    e = np.exp(-np.abs(u))
    sp = np.log1p(e)
    sp += np.maximum(u, 0.0)
    one_e = 1.0 + e
    sig = np.where(u >= 0, 1.0, e)
    sig /= one_e
    return sp, sig


def _check_param(name: str, value):
    """Return a validated parameter (float, or read-only float array for g_max/v_th)."""
    if isinstance(value, bool) or isinstance(value, str) or value is None:
        raise TypeError(f"device parameter {name} must be a real number, "
                        f"got {type(value).__name__}")
    if name in _ARRAY_PARAMS and not isinstance(value, numbers.Real):
        try:
            arr = np.array(value, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"device parameter {name} must be numeric, "
                            f"got {type(value).__name__}") from exc
        if arr.dtype == object or arr.size == 0:
            raise TypeError(f"device parameter {name} must be a non-empty numeric array")
        if not np.all(np.isfinite(arr)):
            raise DeviceCardError(f"device parameter {name} must be finite")
        test, bound = _CHECKS[name]
        if not np.all(test(arr)):
            raise DeviceCardError(f"device parameter {name} must be {bound} everywhere")
        if arr.ndim == 0:
            return float(arr)
        arr.setflags(write=False)
        return arr
    if not isinstance(value, numbers.Real):
        raise TypeError(f"device parameter {name} must be a real number, "
                        f"got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise DeviceCardError(f"device parameter {name} must be finite, got {value}")
    test, bound = _CHECKS[name]
    if not test(value):
        raise DeviceCardError(f"device parameter {name} must be {bound}, got {value}")
    return value


def _check_state(name: str, state) -> np.ndarray:
    arr = _validate.as_float_array(name, state)
    if np.any(arr < 0.0) or np.any(arr > 1.0):
        raise ValueError(f"{name} must lie in [0, 1]")
    return arr


class Memtransistor:
    """Compact memtransistor model; see the module docstring for the equations.

    ``Memtransistor(**params)`` takes the parameters of :attr:`PARAM_NAMES` as keywords
    (missing ones take the defaults of ``DEFAULT_PARAMS``) and ``state_map`` (``"linear"``
    or ``"exponential"``). ``g_max`` and ``v_th`` may be arrays: they then describe one
    device per element (device-to-device variability) and broadcast against the voltage
    and state arrays passed to the methods.

    Raises ``TypeError`` for unknown parameter names or non-numeric values and
    :class:`~cosim.errors.DeviceCardError` (a ``ValueError``) for non-physical values.
    """

    PARAM_NAMES: tuple[str, ...] = tuple(DEFAULT_PARAMS)

    def __init__(self, *, state_map: str = "linear", name: str = "mos2_memtransistor",
                 description: str = "", **params):
        unknown = sorted(set(params) - set(self.PARAM_NAMES))
        if unknown:
            raise TypeError(f"unknown memtransistor parameter(s): {', '.join(unknown)}; "
                            f"valid names are {', '.join(self.PARAM_NAMES)}")
        self.state_map = _validate.choice("state_map", state_map, STATE_MAPS)
        self.name = str(name)
        self.description = str(description)
        values = dict(DEFAULT_PARAMS)
        values.update(params)
        self._p = {k: _check_param(k, values[k]) for k in self.PARAM_NAMES}
        for k, v in self._p.items():
            setattr(self, k, v)
        # Precomputed constants of the hot paths.
        self._f_ref = self.s_g * _softplus((self.v_gref - self.v_th) / self.s_g)
        self._amp = self.g_max / self._f_ref  # I = amp * g(w) * F(V_GM) * v_sat tanh(.)
        self._log_rsw = math.log(self.r_sw)

    # ------------------------------------------------------------------ construction
    @classmethod
    def default(cls) -> "Memtransistor":
        """The default MoS2 card (``DEFAULT_CARD``), read and checked like any other card."""
        return cls.from_card(DEFAULT_CARD)

    @classmethod
    def from_card(cls, path) -> "Memtransistor":
        """Load a TOML parameter card.

        Format::

            [device]
            name = "..."
            description = "..."
            state_map = "linear"        # optional, "linear" or "exponential"
            [parameters]
            g_max = 10e-6               # S
            ...                         # every name of PARAM_NAMES, nothing else

        Every parameter is required. A missing, unknown, non-numeric or non-physical
        parameter raises :class:`~cosim.errors.DeviceCardError` naming the key.
        """
        path = Path(path)
        try:
            with open(path, "rb") as fh:
                card = tomllib.load(fh)
        except OSError as exc:
            raise DeviceCardError(f"cannot read device card {path}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise DeviceCardError(f"device card {path} is not valid TOML: {exc}") from exc
        device = card.get("device")
        if not isinstance(device, dict):
            raise DeviceCardError(f"device card {path}: missing [device] table")
        params = card.get("parameters")
        if not isinstance(params, dict):
            raise DeviceCardError(f"device card {path}: missing [parameters] table")
        unknown_tables = sorted(set(card) - {"device", "parameters"})
        if unknown_tables:
            raise DeviceCardError(f"device card {path}: unknown table(s) "
                                  f"{', '.join(unknown_tables)}")
        unknown_dev = sorted(set(device) - {"name", "description", "state_map"})
        if unknown_dev:
            raise DeviceCardError(f"device card {path}: unknown key(s) in [device]: "
                                  f"{', '.join(unknown_dev)}")
        if "name" not in device or not isinstance(device["name"], str):
            raise DeviceCardError(f"device card {path}: [device] needs a string 'name'")
        missing = [k for k in cls.PARAM_NAMES if k not in params]
        if missing:
            raise DeviceCardError(f"device card {path}: missing parameter(s) "
                                  f"{', '.join(missing)}")
        unknown = sorted(set(params) - set(cls.PARAM_NAMES))
        if unknown:
            raise DeviceCardError(f"device card {path}: unknown parameter(s) "
                                  f"{', '.join(unknown)}")
        for key in cls.PARAM_NAMES:
            value = params[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise DeviceCardError(f"device card {path}: parameter {key} must be a "
                                      f"number, got {value!r}")
            try:
                _check_param(key, value)
            except (DeviceCardError, TypeError) as exc:
                raise DeviceCardError(f"device card {path}: {exc}") from None
        try:
            return cls(state_map=device.get("state_map", "linear"), name=device["name"],
                       description=str(device.get("description", "")),
                       **{k: params[k] for k in cls.PARAM_NAMES})
        except (TypeError, ValueError) as exc:
            raise DeviceCardError(f"device card {path}: {exc}") from None

    @property
    def params(self) -> dict:
        """Parameter values by name, in :attr:`PARAM_NAMES` order (a fresh dict)."""
        return dict(self._p)

    def replace(self, **changes) -> "Memtransistor":
        """A copy with some parameters (or ``state_map``) changed."""
        kw = self.params
        kw.update(changes)
        kw.setdefault("state_map", self.state_map)
        kw.setdefault("name", self.name)
        kw.setdefault("description", self.description)
        return type(self)(**kw)

    def with_variability(self, shape, d2d_sigma: float, rng=None) -> "Memtransistor":
        """A copy whose ``g_max`` is an array of ``shape`` (device-to-device variability).

        ``g_max_i = g_max * exp(d2d_sigma * N_i)``, N_i ~ N(0, 1) i.i.d. from the seeded
        ``rng`` (int seed, Generator or None = seed 0): lognormal with median equal to the
        nominal ``g_max`` (mean ``g_max * exp(sigma^2 / 2)``).
        """
        sigma = _validate.positive("d2d_sigma", d2d_sigma, allow_zero=True)
        if isinstance(shape, numbers.Integral):
            shape = (int(shape),)
        shape = tuple(_validate.integer("shape", int(n) if isinstance(n, np.integer) else n,
                                        minimum=1) for n in shape)
        gen = _validate.rng(rng)
        factor = np.exp(sigma * gen.standard_normal(shape))
        return self.replace(g_max=np.broadcast_to(self.g_max, shape) * factor)

    def __repr__(self) -> str:
        def fmt(v):
            if isinstance(v, np.ndarray):
                return f"array(shape={v.shape}, median={np.median(v):.4g})"
            return f"{v:.6g}"
        body = ", ".join(f"{k}={fmt(v)}" for k, v in self._p.items())
        return f"Memtransistor({body}, state_map={self.state_map!r})"

    # ------------------------------------------------------------------ internals
    def _g_of_w(self, w):
        """State map g(w) (dimensionless, 1/r_sw at w = 0, 1 at w = 1)."""
        if self.state_map == "linear":
            return 1.0 / self.r_sw + (1.0 - 1.0 / self.r_sw) * w
        return np.exp((w - 1.0) * self._log_rsw)

    def _f_gate(self, v_gm):
        return self.s_g * _softplus((v_gm - self.v_th) / self.s_g)

    def _gate_ratio(self, v_gm):
        """F_r = F(V_GM) / F(v_gref)."""
        return self._f_gate(v_gm) / self._f_ref

    def _rate_terms(self, v_ds, v_gm):
        """Per-element (c_on, c_off, F_r): dw/dt = c_on (1-w)^p_on - c_off w^p_off - relax.

        c_on is zero unless V_DS > v_on, c_off zero unless V_DS < v_off.
        """
        fr = self._gate_ratio(v_gm)
        x_on = np.where(v_ds > self.v_on, (v_ds - self.v_on) / self.v_on, 0.0)
        x_off = np.where(v_ds < self.v_off, (self.v_off - v_ds) / abs(self.v_off), 0.0)
        c_on = fr * self.k_on * x_on ** self.a_on
        c_off = fr * self.k_off * x_off ** self.a_off
        return c_on, c_off, fr

    def _rate(self, w, c_on, c_off):
        w = np.clip(w, 0.0, 1.0)
        return (c_on * (1.0 - w) ** self.p_on - c_off * w ** self.p_off
                - self.invtau * (w - self.w_eq))

    # ------------------------------------------------------------------ currents
    def current(self, v_ds, v_gs, state):
        """Drain current I_D [A] with the source as reference (V_S = 0).

        ``V_GM = v_gs - v_ds/2``; ``I_D = g_max g(w) F_r v_sat tanh(v_ds/v_sat)``.
        All arguments broadcast (also against array-valued ``g_max``/``v_th``).
        """
        v_ds = _validate.as_float_array("v_ds", v_ds)
        v_gs = _validate.as_float_array("v_gs", v_gs)
        w = _check_state("state", state)
        return (self._amp * self._g_of_w(w) * self._f_gate(v_gs - 0.5 * v_ds)
                * self.v_sat * np.tanh(v_ds / self.v_sat))

    def current_terminals(self, v_d, v_g, v_s, state):
        """Drain current and its exact partial derivatives, for Newton nodal solvers.

        Returns ``(i, di_dvd, di_dvs)`` with ``i`` the current from drain to source through
        the channel [A] and the derivatives [S] with respect to the drain and source node
        voltages (the gate draws no current). With ``x = (v_d - v_s)/v_sat``,
        ``u = (V_GM - v_th)/s_g``, ``A = g_max g(w) / F(v_gref)``::

            di/dv_d = A [ -F'(V_GM)/2 * v_sat tanh(x) + F(V_GM) sech^2(x) ]
            di/dv_s = A [ -F'(V_GM)/2 * v_sat tanh(x) - F(V_GM) sech^2(x) ]

        where ``F'(v) = sigmoid(u)``. Hot path: inputs are not validated.
        """
        u = v_d + v_s
        u *= -0.5
        u += v_g - self.v_th
        u *= 1.0 / self.s_g
        sp, df = _softplus_sigmoid(u)                 # F = s_g sp, F' = df
        t = np.subtract(v_d, v_s)
        t *= 1.0 / self.v_sat
        np.tanh(t, out=t)
        a = self._amp * self.s_g * self._g_of_w(state)
        af = sp * a                                   # A F(V_GM)
        i = t * af
        i *= self.v_sat
        gate = df * ((-0.5 * self.v_sat / self.s_g) * a)
        gate *= t                                     # -F'/2 A v_sat tanh(x)
        chan = t * t
        np.subtract(1.0, chan, out=chan)
        chan = chan * af                              # A F sech^2(x)
        return i, gate + chan, np.subtract(gate, chan, out=gate)

    def terminal_cell(self, v_g, state) -> "TerminalCell":
        """The devices of ``state`` with their gates at ``v_g`` as a nodal cell
        ``cell(v_d, v_s) -> current_terminals(v_d, v_g, v_s, state)`` (see
        :class:`TerminalCell`, which also carries the parameters of its fused form)."""
        return TerminalCell(self, v_g, state)

    def read_conductance(self, state, v_read: float = 0.1, v_gate=None):
        """Chord conductance ``I_D(v_read, v_gate) / v_read`` [S] at the read point.

        Source at 0, drain at ``v_read``, gate at ``v_gate`` (default ``v_gref``), so
        ``V_GM = v_gate - v_read/2`` and the result equals
        ``g_max g(w) F_r(v_gate - v_read/2) * v_sat tanh(v_read/v_sat)/v_read``, slightly
        below :meth:`conductance` (2.1 % lower at the defaults with v_read = 0.1 V, mostly
        from F_r(2.95 V) = 0.980).
        """
        v_read = _validate.as_float_array("v_read", v_read)
        if np.any(v_read == 0):
            raise ValueError("v_read must be non-zero")
        v_gate = self.v_gref if v_gate is None else v_gate
        return self.current(v_read, v_gate, state) / v_read

    def conductance(self, state):
        """Small-signal conductance ``g_max g(w)`` [S].

        Exactly ``lim_{V_DS->0} I_D/V_DS = dI_D/dV_DS|_{V_DS=0}`` at ``V_GS = v_gref``
        (there V_GM = v_gref and F_r = 1; the gate term of the derivative vanishes because
        tanh(0) = 0). Range ``[g_max/r_sw, g_max]``.
        """
        w = _check_state("state", state)
        return self.g_max * self._g_of_w(w)

    def state_from_conductance(self, g):
        """Inverse of :meth:`conductance`: the state w with ``g_max g(w) = g``.

        ``g`` must lie in ``[g_max/r_sw, g_max]`` (a relative tolerance of 1e-12 is
        allowed for round-off; the result is clipped to [0, 1]); otherwise ``ValueError``.
        """
        g = _validate.as_float_array("g", g)
        ratio = g / self.g_max
        lo = 1.0 / self.r_sw
        tol = 1e-12
        if np.any(ratio < lo * (1 - tol)) or np.any(ratio > 1 + tol):
            raise ValueError("g must lie in [g_max/r_sw, g_max] of the device")
        if self.state_map == "linear":
            w = (ratio - lo) / (1.0 - lo)
        else:
            w = 1.0 + np.log(ratio) / self._log_rsw
        return np.clip(w, 0.0, 1.0)

    def g_range(self) -> tuple[float, float]:
        """(g at w = 0, g at w = 1) [S]; for array ``g_max`` the range every device reaches."""
        g_hi = np.asarray(self.g_max, dtype=np.float64)
        return float(np.max(g_hi) / self.r_sw), float(np.min(g_hi))

    # ------------------------------------------------------------------ state
    def state_rate(self, v_ds, v_gs, state):
        """dw/dt [1/s] at drain-source ``v_ds`` and gate-source ``v_gs`` (source at 0)."""
        v_ds = _validate.as_float_array("v_ds", v_ds)
        v_gs = _validate.as_float_array("v_gs", v_gs)
        w = _check_state("state", state)
        c_on, c_off, _ = self._rate_terms(v_ds, v_gs - 0.5 * v_ds)
        return self._rate(w, c_on, c_off)

    def apply_pulses(self, state, v_pulse, width, count=1, v_gs=None,
                     c2c_sigma: float = 0.0, rng=None):
        """State after ``count`` back-to-back rectangular pulses (source at 0).

        Each pulse holds ``V_DS = v_pulse`` and ``V_GS = v_gs`` (default ``v_gref``) for
        ``width`` seconds; there is no idle time between pulses. All arguments broadcast;
        ``count`` is a non-negative integer (array) per device.

        During a pulse the biases are constant, so the state equation is autonomous:

        - ``p = 1`` or ``p = 0`` of the active branch (or no branch active): it is linear,
          ``dw/dt = A - B w``, solved exactly:
          ``w(t) = w0 + (A - B w0) t (1 - e^{-Bt})/(Bt)``.
        - other ``p`` with ``invtau = 0``: separable, solved exactly with ``u = 1 - w``
          (potentiation) or ``u = w`` (depression), ``du/dt = -c u^p``:
          ``u^{1-p} = u0^{1-p} - (1-p) c t`` (clipped at 0 for p < 1).
        - otherwise: ``scipy.integrate.solve_ivp`` (DOP853, rtol 1e-10, atol 1e-13).

        w is clipped to [0, 1] (exact for these monotone 1-D flows).
        Cycle-to-cycle variability: with ``c2c_sigma > 0`` pulses are applied one at a
        time and each pulse's change ``Δw`` is multiplied by ``exp(c2c_sigma N)``,
        N ~ N(0, 1) per device and pulse, from the seeded ``rng`` (int, Generator, or None
        meaning seed 0). With ``c2c_sigma = 0`` the result is deterministic and ``count``
        pulses are applied as one pulse of length ``count * width`` (identical for an
        autonomous ODE).
        """
        w0 = _check_state("state", state)
        v_pulse = _validate.as_float_array("v_pulse", v_pulse)
        width = _validate.as_float_array("width", width)
        if np.any(width < 0):
            raise ValueError("width must be >= 0")
        count = self._check_count(count)
        v_gs = self.v_gref if v_gs is None else v_gs
        v_gs = _validate.as_float_array("v_gs", v_gs)
        sigma = _validate.positive("c2c_sigma", c2c_sigma, allow_zero=True)

        c_on, c_off, _ = self._rate_terms(v_pulse, v_gs - 0.5 * v_pulse)
        shape = np.broadcast_shapes(w0.shape, width.shape, count.shape, np.shape(c_on))
        w = np.array(np.broadcast_to(w0, shape), dtype=np.float64)
        c_on = np.broadcast_to(c_on, shape)
        c_off = np.broadcast_to(c_off, shape)
        width = np.broadcast_to(width, shape)
        count = np.broadcast_to(count, shape)

        if sigma == 0.0:
            return self._evolve(w, c_on, c_off, width * count)
        gen = _validate.rng(rng)
        n_max = int(count.max()) if count.size else 0
        for k in range(n_max):
            factor = np.exp(sigma * gen.standard_normal(shape))
            active = count > k
            w_next = self._evolve(w, c_on, c_off, width)
            w = np.where(active, np.clip(w + (w_next - w) * factor, 0.0, 1.0), w)
        return w

    @staticmethod
    def _check_count(count) -> np.ndarray:
        if isinstance(count, bool):
            raise TypeError("count must be an integer or an integer array")
        arr = np.asarray(count)
        if arr.dtype.kind not in "iu":
            if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
                arr = arr.astype(np.int64)
            else:
                raise TypeError("count must be an integer or an integer array")
        if np.any(arr < 0):
            raise ValueError("count must be >= 0")
        return arr.astype(np.int64)

    def _evolve(self, w0, c_on, c_off, duration):
        """Exact (or tightly integrated) solution of the state ODE for constant biases.

        All arrays have the same shape; returns w(duration) in [0, 1].
        """
        w0 = np.asarray(w0, dtype=np.float64)
        out = np.empty_like(w0)
        duration = np.broadcast_to(np.asarray(duration, dtype=np.float64), w0.shape)
        on = c_on > 0
        off = c_off > 0
        rest = ~(on | off)
        tau, weq = self.invtau, self.w_eq

        def linear(mask, a, b):
            t = duration[mask]
            x = b * t
            # phi(x) = (1 - e^-x)/x, phi(0) = 1
            with np.errstate(divide="ignore", invalid="ignore"):
                phi = np.where(x > 0, -np.expm1(-x) / np.where(x > 0, x, 1.0), 1.0)
            w = w0[mask]
            out[mask] = np.clip(w + (a - b * w) * t * phi, 0.0, 1.0)

        linear(rest, tau * weq, np.full(np.count_nonzero(rest), tau))
        for mask, c, p, sign in ((on, c_on, self.p_on, +1), (off, c_off, self.p_off, -1)):
            if not np.any(mask):
                continue
            c = c[mask]
            if p == 1.0:
                if sign > 0:
                    linear(mask, c + tau * weq, c + tau)
                else:
                    linear(mask, tau * weq + 0.0 * c, c + tau)
            elif p == 0.0:
                linear(mask, sign * c + tau * weq, np.full(c.shape, tau))
            elif tau == 0.0:
                u0 = 1.0 - w0[mask] if sign > 0 else w0[mask]
                u0 = np.clip(u0, 0.0, 1.0)
                ct = c * duration[mask]
                if p > 1.0:
                    q = p - 1.0
                    u = u0 * (1.0 + q * ct * u0 ** q) ** (-1.0 / q)
                else:
                    r = 1.0 - p
                    u = np.maximum(u0 ** r - r * ct, 0.0) ** (1.0 / r)
                out[mask] = np.clip(1.0 - u if sign > 0 else u, 0.0, 1.0)
            else:
                out[mask] = self._integrate(w0[mask], c if sign > 0 else 0.0 * c,
                                            c if sign < 0 else 0.0 * c, duration[mask])
        return out

    def _integrate(self, w0, c_on, c_off, duration):
        """Integrate the state ODE with solve_ivp on rescaled time s = t/duration."""
        if w0.size == 0:
            return w0

        def rhs(_s, w):
            return duration * self._rate(w, c_on, c_off)

        sol = solve_ivp(rhs, (0.0, 1.0), w0, method="DOP853", rtol=1e-10, atol=1e-13)
        if not sol.success:  # pragma: no cover - DOP853 on a smooth scalar ODE
            raise RuntimeError(f"state integration failed: {sol.message}")
        return np.clip(sol.y[:, -1], 0.0, 1.0)


class TerminalCell:
    r"""An array of devices at a fixed gate voltage as a two-terminal nodal cell.

    ``cell(v_d, v_s)`` returns :meth:`Memtransistor.current_terminals` ``(i, di/dv_d,
    di/dv_s)`` (A, S, S) at the gate voltage ``v_g`` (V) for the device states ``state``.
    ``fused_form`` is the same I-V as parameters, for compiled solvers
    (:mod:`cosim.crossbar.nodal.fused`):

    .. math::

        i = a \, \mathrm{softplus}\big((c - (v_d + v_s)/2)/s_g\big) \, v_{sat}
            \tanh\big((v_d - v_s)/v_{sat}\big)

    with ``a = g_max g(w) s_g / F(v_gref)`` (A/V) and ``c = v_g - v_th`` (V) per device
    (arrays of the state's shape) and the scalars ``s_g``, ``v_sat`` (V): the equations of
    the module docstring, F(V_GM) = s_g softplus((V_GM - v_th)/s_g).
    """

    def __init__(self, device: Memtransistor, v_g, state):
        self.device, self.v_g, self.state = device, float(v_g), state
        shape = np.shape(state)
        self.fused_form = (
            np.broadcast_to(device._amp * device.s_g * device._g_of_w(state), shape),
            np.broadcast_to(self.v_g - device.v_th, shape), float(device.s_g),
            float(device.v_sat))

    def __call__(self, v_d, v_s):
        return self.device.current_terminals(v_d, self.v_g, v_s, self.state)
