r"""Device-aware weight writes: Δw as whole programming pulses on a gate-selected array.

:class:`PulseProgrammer` is what ``mode="pulses"`` of :mod:`cosim.learning.stdp` and the
device-aware :class:`~cosim.networks.diehl_cook.DiehlCook` write through. It knows a device
only by its ``apply_pulses`` method (docs/device.md, array wiring: drains and gates on the rows, sources on the
columns) and a weight range only by ``w_min``/``w_max``; see the class for the write scheme.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from .. import _validate as check

__all__ = ["PulseProgrammer"]


def real_field(name, value) -> float:
    """A finite real dataclass field; a value of the wrong type is a ValueError naming it."""
    try:
        return check.real(name, value)
    except TypeError as exc:
        raise ValueError(str(exc)) from None


@dataclass(frozen=True)
class PulseProgrammer:
    r"""Writes Δw as whole programming pulses on a gate-selected array (``mode="pulses"``).

    ``device`` is any object with ``apply_pulses(state, v_pulse, width, count, v_gs=None,
    c2c_sigma=0.0, rng=None)`` acting on states in [0, 1] with the source as reference
    (e.g. :class:`cosim.devices.Memtransistor`; duck-typed, nothing is imported). A weight
    maps to the state s = (w - w_min)/(w_max - w_min); w is (R, C) with row i on word line i
    (drains and gate of row i) and column j on bit line j (sources).

    Pulse counts (``count_model``): with ``"linear"`` a cell owed Δw gets n = Δw / δ pulses,
    δ the nominal weight change of one pulse (``dw_per_pulse``; default: the device's change of
    one SET pulse from s = 0 for Δw > 0, of one RESET pulse from s = 1 for Δw < 0, times the
    weight span), so the device's state dependence acts on top of the request; with
    ``"device"`` (default) the controller inverts the one-pulse response of a device with
    p_on = p_off = 1 windows (the default card: one SET pulse maps 1 - s to (1 - s)(1 - δ_+),
    one RESET pulse maps s to s (1 - δ_-)), n = ln((1 - s)/(1 - s')) / -ln(1 - δ_+) or
    ln(s/s') / -ln(1 - δ_-) for the target s' — the write then lands on the target up to
    whole pulses and noise. n is rounded to the nearest integer (``rounding="nearest"``) or
    stochastically (``"stochastic"``, unbiased, seeded) and capped at ``max_pulses``. The
    device decides what the pulses do: saturating, state-dependent steps, each pulse's change
    times e^{σ N} with ``c2c_sigma`` = σ (cycle-to-cycle noise from the seeded ``rng``).

    Write scheme (rows selected one at a time by their gate; voltages in volts):

    * SET phase, row i selected for m_i = max_j n_ij pulse slots: its drain at ``v_set``, its
      gate at ``v_gate_on``; in each slot the source of a column still owed pulses is at 0
      (cell sees V_DS = v_set, V_GS = v_gate_on), the other sources at ``v_inhibit``·v_set
      (V_DS = (1 - v_inhibit) v_set). Unselected rows: drain at 0, gate at ``v_gate_off``.
    * RESET phase likewise with the pulse on the source side (docs/device.md, array wiring: a drain-side negative
      pulse still writes through an off gate, referred to the channel midpoint): selected and
      unselected drains at 0, the source of a column owed pulses at |v_reset|
      (V_DS = v_reset, V_GS = v_gate_on + v_reset), the others at v_inhibit·|v_reset|;
      selected gate ``v_gate_on``, unselected ``v_gate_off``.

    Every cell gets every exposure of the scheme through ``device.apply_pulses`` — its own
    pulses, the inhibited slots of its row, and the half-selected slots while other rows are
    written — so sneak writes are whatever the device model gives (for the default card:
    exactly zero in SET, below 1e-10 per RESET pulse in the same column). Order: SET phase
    then RESET phase; within a phase own pulses (with c2c noise) then the other exposures
    (deterministic). Random draws: stochastic rounding, then the SET pulses, then RESET.
    Write currents flow through ideal drivers (no IR drop on the write lines).
    """

    device: object
    dw_per_pulse: float | None = None
    v_set: float = 4.0
    v_reset: float = -4.0
    width: float = 1e-3
    v_gate_on: float | None = None
    v_gate_off: float = -2.0
    v_inhibit: float = 0.5
    c2c_sigma: float = 0.0
    max_pulses: int = 1000
    rounding: str = "stochastic"
    count_model: str = "device"

    def __post_init__(self):
        if not callable(getattr(self.device, "apply_pulses", None)):
            raise ValueError("device must have an apply_pulses(state, v_pulse, width, count, "
                             "v_gs=None, c2c_sigma=0.0, rng=None) method")
        if self.dw_per_pulse is not None and real_field("dw_per_pulse", self.dw_per_pulse) <= 0:
            raise ValueError(f"dw_per_pulse must be > 0, got {self.dw_per_pulse}")
        if real_field("width", self.width) <= 0:
            raise ValueError(f"width must be > 0, got {self.width}")
        if real_field("c2c_sigma", self.c2c_sigma) < 0:
            raise ValueError(f"c2c_sigma must be >= 0, got {self.c2c_sigma}")
        if real_field("v_set", self.v_set) <= 0:
            raise ValueError(f"v_set must be > 0, got {self.v_set}")
        if real_field("v_reset", self.v_reset) >= 0:
            raise ValueError(f"v_reset must be < 0, got {self.v_reset}")
        if not 0 <= real_field("v_inhibit", self.v_inhibit) <= 1:
            raise ValueError(f"v_inhibit must be in [0, 1] (a fraction of the pulse), "
                             f"got {self.v_inhibit}")
        real_field("v_gate_off", self.v_gate_off)
        if self.v_gate_on is not None:
            real_field("v_gate_on", self.v_gate_on)
        check.integer("max_pulses", self.max_pulses, minimum=1)
        if self.rounding not in ("nearest", "stochastic"):
            raise ValueError(f"rounding must be 'nearest' or 'stochastic', got {self.rounding!r}")
        if self.count_model not in ("linear", "device"):
            raise ValueError(f"count_model must be 'linear' or 'device', got "
                             f"{self.count_model!r}")

    @property
    def gate_on(self) -> float:
        """Gate voltage of the selected row (default the device's v_gref)."""
        if self.v_gate_on is not None:
            return float(self.v_gate_on)
        params = getattr(self.device, "params", None)
        return float(params["v_gref"]) if isinstance(params, dict) and "v_gref" in params else 3.0

    def state_steps(self) -> tuple[float, float]:
        """(change of s by one SET pulse from s = 0, by one RESET pulse from s = 1), > 0."""
        up = float(np.asarray(self.device.apply_pulses(0.0, self.v_set, self.width, 1,
                                                       v_gs=self.gate_on)))
        down = 1.0 - float(np.asarray(self.device.apply_pulses(
            1.0, self.v_reset, self.width, 1, v_gs=self.gate_on + self.v_reset)))
        if not (up > 0 and down > 0):
            raise ValueError(f"one pulse must move the device state (SET step {up}, RESET "
                             f"step {down}): raise |v_set|, |v_reset| or width")
        return up, down

    def counts(self, w, dw, params, rng=None) -> np.ndarray:
        """Signed whole pulse counts that move weights ``w`` by ``dw`` (see ``count_model``).

        ``params``: the weight range, any object with ``w_min`` and ``w_max`` (e.g.
        :class:`~cosim.learning.stdp.STDPParams`).
        """
        w = np.asarray(w, dtype=np.float64)
        dw = np.asarray(dw, dtype=np.float64)
        span = params.w_max - params.w_min
        if self.count_model == "linear":
            if self.dw_per_pulse is not None:
                n = dw / self.dw_per_pulse
            else:
                up, down = self.state_steps()
                n = np.where(dw > 0, dw / (up * span), dw / (down * span))
        else:
            up, down = self.state_steps()
            s = np.clip((w - params.w_min) / span, 0.0, 1.0)
            target = np.clip(s + dw / span, 0.0, 1.0)
            with np.errstate(divide="ignore", invalid="ignore"):
                n_up = np.log((1.0 - s) / (1.0 - target)) / -math.log1p(-up)
                n_down = np.log(s / target) / -math.log1p(-down)
            n = np.where(target > s, n_up, np.where(target < s, -n_down, 0.0))
            n = np.nan_to_num(n, nan=0.0, posinf=self.max_pulses, neginf=-self.max_pulses)
        if self.rounding == "nearest":
            k = np.rint(n)
        else:
            floor = np.floor(n)
            k = floor + (check.rng(rng).random(n.shape) < (n - floor))
        return np.clip(k, -self.max_pulses, self.max_pulses).astype(np.int64)

    def exposures(self, k) -> list:
        """The write scheme's exposures of every cell for signed counts k (R, C).

        Returns ``[(count (R, C), v_ds, v_gs, noisy), ...]`` in the order applied:
        source-referenced biases of each kind of slot a cell sees and how many of them.
        """
        k = np.asarray(k, dtype=np.int64)
        out = []
        g_on, g_off = self.gate_on, float(self.v_gate_off)
        for pulse, sign in ((self.v_set, 1), (self.v_reset, -1)):
            n = np.where(k * sign > 0, np.abs(k), 0)
            slots = n.max(axis=1, keepdims=True)                 # m_i: slots of row i
            col = n.sum(axis=0, keepdims=True)                   # Σ_i n_ij per column
            others_pulsed = col - n                              # Σ_{i≠k} n_ij
            others_inhibited = (slots.sum() - slots) - others_pulsed
            v_inh = self.v_inhibit * pulse
            if sign > 0:   # drain of the selected row at v_set, sources at 0 or v_inh
                kinds = [(n, pulse, g_on, True),
                         (slots - n, pulse - v_inh, g_on - v_inh, False),
                         (others_pulsed, 0.0, g_off, False),
                         (others_inhibited, -v_inh, g_off - v_inh, False)]
            else:          # drains at 0, sources at |v_reset| or v_inh·|v_reset|
                kinds = [(n, pulse, g_on + pulse, True),
                         (slots - n, v_inh, g_on + v_inh, False),
                         (others_pulsed, pulse, g_off + pulse, False),
                         (others_inhibited, v_inh, g_off + v_inh, False)]
            out.extend(kinds)
        return out

    def write(self, w, dw, params, rng=None) -> np.ndarray:
        """New weights after writing ``dw`` (R, C) as pulses (returns a new array).

        ``params`` gives the weight range (``w_min``, ``w_max``), as in :meth:`counts`.
        """
        w = np.asarray(w, dtype=np.float64)
        if w.ndim != 2:
            raise ValueError(f"w must be 2-D (rows = word lines), got shape {w.shape}")
        rng = check.rng(rng)
        k = self.counts(w, dw, params, rng)
        span = params.w_max - params.w_min
        state = np.clip((w - params.w_min) / span, 0.0, 1.0)
        for count, v_ds, v_gs, noisy in self.exposures(k):
            mask = count > 0
            if not mask.any():
                continue
            new = self.device.apply_pulses(state[mask], v_ds, self.width, count[mask],
                                           v_gs=v_gs,
                                           c2c_sigma=self.c2c_sigma if noisy else 0.0,
                                           rng=rng)
            state[mask] = np.clip(np.asarray(new, dtype=np.float64), 0.0, 1.0)
        return params.w_min + state * span

    def to_dict(self) -> dict:
        """JSON-able settings; the device (a Memtransistor) as its registry spec."""
        from ..crossbar import device_to_spec

        try:
            device = device_to_spec(self.device)
        except TypeError:
            raise ValueError("only a programmer of a Memtransistor device can be saved") from None
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "device"}
        return {"device": device, **out}

    @classmethod
    def from_dict(cls, d) -> "PulseProgrammer":
        """Rebuild from :meth:`to_dict`; the device goes through the registry's checked spec
        reader (a saved file is untrusted data)."""
        from ..crossbar import device_from_spec

        if not isinstance(d, dict) or not isinstance(d.get("device"), dict):
            raise ValueError("programmer must be a dict with a 'device' card")
        allowed = {f.name for f in fields(cls)}
        unknown = set(d) - allowed
        if unknown:
            raise ValueError(f"programmer has unknown keys {sorted(unknown)}")
        device = device_from_spec(d["device"], where="programmer.device")
        return cls(device=device, **{k: v for k, v in d.items() if k != "device"})
