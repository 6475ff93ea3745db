"""The ngspice memtransistor subcircuits against the Python compact model (docs/device.md)."""

import re

import numpy as np
import pytest

from cosim.spice.netlist import DEFAULT_LIBRARY, DEFAULT_PARAMS, PARAM_NAMES, include_line
from cosim.spice.ngspice import run_dc, run_op, run_tran

from _spice import needs_spice  # noqa: E402

from cosim.devices.memtransistor import Memtransistor  # noqa: E402


# Newton must converge far below the default reltol=1e-3 for a 1e-10 comparison.
TIGHT_DC = ".options reltol=1e-12 abstol=1e-20 vntol=1e-12"
# docs/device.md (SPICE notes): tolerances for programming transients.
TRAN_OPTS = ".options reltol=1e-6 abstol=1e-15 vntol=1e-9 chgtol=1e-16"


def _params_text(params):
    return " ".join(f"{k}={float(v)!r}" for k, v in params.items())


def _sweep_deck(sub, vg, w, params=None, state_map="linear"):
    extra = _params_text(params or {})
    if state_map != "linear":
        extra += " state_map=1"
    return f"""* single device sweep
{include_line(DEFAULT_LIBRARY)}
{TIGHT_DC}
Vd d 0 DC 0
Vg g 0 DC {float(vg)!r}
X1 d g 0 {sub} w0={float(w)!r} {extra}
.dc Vd -2.5 2.5 0.05
.end
"""


def _rel(a, b):
    """Relative error per point, floored at 1e-9 of the curve's scale (V_DS ~ 0 points)."""
    scale = np.maximum(np.abs(b), 1e-9 * np.abs(b).max())
    return np.abs(a - b) / scale


def test_param_names_and_defaults_match_python_and_library():
    m = Memtransistor()
    assert tuple(PARAM_NAMES) == tuple(Memtransistor.PARAM_NAMES)
    assert {k: float(v) for k, v in m.params.items()} == DEFAULT_PARAMS
    text = DEFAULT_LIBRARY.read_text()
    for sub in ("memtransistor", "memtransistor_read"):
        m_sub = re.search(rf"^\.subckt {sub} d g s params:(.*?)\n(?!\+)", text, re.M | re.S)
        assert m_sub, sub
        body = m_sub.group(1).replace("\n+", " ")
        found = dict(re.findall(r"(\w+)=([-+0-9.eE]+)", body))
        assert set(found) == set(PARAM_NAMES) | {"state_map", "w0"}
        for k in PARAM_NAMES:
            assert float(found[k]) == DEFAULT_PARAMS[k], (sub, k)


@pytest.mark.parametrize("sub", ["memtransistor", "memtransistor_read"])
@pytest.mark.parametrize("state_map", ["linear", "exponential"])
@pytest.mark.parametrize("vg", [-2.0, 0.0, 0.6, 1.5, 3.0, 5.0])
@pytest.mark.parametrize("w", [0.0, 0.37, 1.0])
@needs_spice
def test_dc_sweep_matches_python(sub, state_map, vg, w):
    r = run_dc(_sweep_deck(sub, vg, w, state_map=state_map), ["i(vd)"])
    vds = r["v(v-sweep)"]
    assert vds.size == 101
    model = Memtransistor(state_map=state_map)
    i_py = model.current(vds, vg, w)
    i_sp = -r["i(vd)"]  # i(Vd) flows into the + terminal of Vd: minus the drain current
    assert np.max(_rel(i_sp, i_py)) < 1e-10


@needs_spice
@pytest.mark.parametrize("sub", ["memtransistor", "memtransistor_read"])
def test_dc_sweep_nondefault_card(sub):
    params = dict(g_max=3.3e-6, r_sw=20.0, v_th=-0.2, s_g=0.4, v_gref=2.5, v_sat=0.8)
    model = Memtransistor(**params)
    for vg in (-3.0, 0.1, 2.5):
        r = run_dc(_sweep_deck(sub, vg, 0.62, params), ["i(vd)"])
        i_py = model.current(r["v(v-sweep)"], vg, 0.62)
        assert np.max(_rel(-r["i(vd)"], i_py)) < 1e-10


@needs_spice
def test_read_and_full_variants_give_identical_dc_currents():
    out = {}
    for sub in ("memtransistor", "memtransistor_read"):
        out[sub] = -run_dc(_sweep_deck(sub, 2.2, 0.81), ["i(vd)"])["i(vd)"]
    assert np.max(_rel(out["memtransistor"], out["memtransistor_read"])) < 1e-13
    # and the state did matter: another state gives another current
    other = -run_dc(_sweep_deck("memtransistor_read", 2.2, 0.2), ["i(vd)"])["i(vd)"]
    assert np.max(np.abs(other - out["memtransistor_read"])) > 1e-7


@needs_spice
@pytest.mark.parametrize("vd,invtau", [(0.1, 0.0), (0.1, 50.0), (4.0, 0.0), (-4.5, 5.0)])
def test_op_holds_state_at_w0(vd, invtau):
    """.op keeps w = w0 even under programming bias or relaxation (state rate is off
    at time 0), so a read .op never disturbs the state."""
    deck = f"""* op state
{include_line(DEFAULT_LIBRARY)}
{TIGHT_DC}
Vd d 0 DC {vd!r}
Vg g 0 DC 3.0
X1 d g 0 memtransistor w0=0.4321 invtau={invtau!r} w_eq=0.9
.op
.end
"""
    r = run_op(deck, ["v(x1.w)", "i(vd)"])
    assert abs(r["v(x1.w)"][0] - 0.4321) < 1e-12
    assert np.isclose(-r["i(vd)"][0], Memtransistor(invtau=invtau, w_eq=0.9)
                      .current(vd, 3.0, 0.4321), rtol=1e-10, atol=0)


def _pulse_deck(v_pulse, v_gate, w0, n=16, width=1e-3, params=None):
    return f"""* programming pulses
{include_line(DEFAULT_LIBRARY)}
{TRAN_OPTS}
Vd d 0 DC 0 PULSE(0 {float(v_pulse)!r} 1e-4 1e-9 1e-9 {float(width)!r} {2 * width!r} {n})
Vg g 0 DC {float(v_gate)!r}
X1 d g 0 memtransistor w0={float(w0)!r} {_params_text(params or {})}
.tran 1e-5 {(2 * n + 1) * width + 1e-4!r} 0 1e-4
.end
"""


@needs_spice
@pytest.mark.parametrize("v_pulse,w0", [(4.0, 0.2), (4.0, 0.9), (-4.0, 0.8), (5.0, 0.5)])
def test_programming_pulses_match_apply_pulses(v_pulse, w0):
    """16 x 1 ms pulses at V_G = 3 V: Delta w agrees to ~1e-6 relative (bound 1e-5)."""
    r = run_tran(_pulse_deck(v_pulse, 3.0, w0), ["v(x1.w)"])
    w_sp = r["v(x1.w)"]
    dw_sp = w_sp[-1] - w0
    dw_py = float(Memtransistor().apply_pulses(w0, v_pulse, 1e-3, 16, v_gs=3.0)) - w0
    assert abs(dw_py) > 1e-3  # the pulses really program
    assert abs(dw_sp - dw_py) / abs(dw_py) < 1e-5
    assert np.all((w_sp >= -1e-12) & (w_sp <= 1 + 1e-12))
    assert np.all(np.diff(w_sp) * np.sign(v_pulse) >= -1e-12)  # monotone


@needs_spice
def test_gate_off_pulses_do_nothing():
    on = run_tran(_pulse_deck(4.0, 3.0, 0.5), ["v(x1.w)"])["v(x1.w)"][-1] - 0.5
    off = run_tran(_pulse_deck(4.0, -2.0, 0.5), ["v(x1.w)"])["v(x1.w)"][-1] - 0.5
    dw_py = float(Memtransistor().apply_pulses(0.5, 4.0, 1e-3, 16, v_gs=-2.0)) - 0.5
    assert on > 0.01
    assert abs(off) < 1e-9  # ~2e5 x below the gate-on change
    assert abs(off - dw_py) < 1e-13


@needs_spice
def test_sub_threshold_reads_do_not_program():
    deck = _pulse_deck(2.9, 3.0, 0.5)
    w = run_tran(deck, ["v(x1.w)"])["v(x1.w)"]
    assert np.max(np.abs(w - 0.5)) < 1e-12


@needs_spice
def test_relaxation_and_p_window_match_python():
    params = dict(invtau=20.0, w_eq=0.1, p_on=2.0)
    model = Memtransistor(**params)
    # relaxation at zero bias: w(t) = w_eq + (w0 - w_eq) exp(-invtau t)
    w_sp = run_tran(_pulse_deck(0.0, 3.0, 0.8, n=8, params=params), ["v(x1.w)"])["v(x1.w)"]
    w_py = float(model.apply_pulses(0.8, 0.0, 17 * 1e-3 + 1e-4, 1))
    assert abs((w_sp[-1] - 0.8) - (w_py - 0.8)) / abs(w_py - 0.8) < 1e-5
    # potentiation with p_on = 2 and relaxation together (scipy reference integration)
    params = dict(p_on=2.0)
    w_sp = run_tran(_pulse_deck(4.5, 3.0, 0.3, params=params), ["v(x1.w)"])["v(x1.w)"]
    w_py = float(Memtransistor(**params).apply_pulses(0.3, 4.5, 1e-3, 16, v_gs=3.0))
    assert abs((w_sp[-1] - 0.3) - (w_py - 0.3)) / abs(w_py - 0.3) < 1e-5
