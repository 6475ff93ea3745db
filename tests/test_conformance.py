"""One protocol, every backend: the same behavioural checks over ideal, compact (linear and
nonlinear reads), spice (when ngspice is installed) and tiled arrays of each.

Truths used: the read at zero input is zero; with ideal wires every backend computes
x @ effective_weights (docs/array.md §1 and §4, exact for binary inputs at the read point); when a
backend reports a linear map, its read equals x @ that map for arbitrary inputs; sense
currents have physical_columns bit lines per output and the differential ones give the
output by (I+ - I-) / (V_read s k); seeds make programming reproducible; no attribute
appears after __init__ (everything a backend holds is declared there).
"""

import numpy as np
import pytest

from _spice import HAVE_NGSPICE
from cosim.crossbar import Compact, Crossbar, Ideal, Spice, Tiled

R, C = 11, 7


def _spice(tmp_path, **kw):
    return Spice(cache=tmp_path / "spice", **kw)


def _backends(tmp_path, r):
    """name -> factory of an unprogrammed backend with segment resistance r."""
    out = {
        "ideal": lambda: Ideal(),
        "compact-linear": lambda: Compact(r_word=r, r_bit=r, read="linear"),
        "compact-nonlinear": lambda: Compact(r_word=r, r_bit=r, read="nonlinear"),
    }
    out["tiled-ideal"] = lambda: Tiled(Ideal(), max_array=(4, 3))
    out["tiled-compact-linear"] = lambda: Tiled(out["compact-linear"](), max_array=(4, 3))
    out["tiled-compact-nonlinear"] = lambda: Tiled(out["compact-nonlinear"](), max_array=(4, 3))
    out["spice-linear"] = lambda: _spice(tmp_path, r_word=r, r_bit=r, read="linear")
    out["spice-nonlinear"] = lambda: _spice(tmp_path, r_word=r, r_bit=r, read="nonlinear")
    out["tiled-spice-linear"] = lambda: Tiled(out["spice-linear"](), max_array=(6, 4))
    out["tiled-spice-nonlinear"] = lambda: Tiled(out["spice-nonlinear"](), max_array=(6, 4))
    return out


NAMES = ["ideal", "compact-linear", "compact-nonlinear", "tiled-ideal", "tiled-compact-linear",
         "tiled-compact-nonlinear", "spice-linear", "spice-nonlinear", "tiled-spice-linear",
         "tiled-spice-nonlinear"]
PARAMS = [pytest.param(n, marks=[pytest.mark.spice,
                                 pytest.mark.skipif(not HAVE_NGSPICE, reason="no ngspice")])
          if "spice" in n else n for n in NAMES]


def _data(seed=0):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(R, C))
    x = (rng.random((5, R)) < 0.5).astype(float)
    x[0] = 0.0
    return W, x


@pytest.mark.parametrize("name", PARAMS)
def test_protocol_shapes_and_zero_input(tmp_path, name):
    backend = _backends(tmp_path, 1.0)[name]()
    assert isinstance(backend, Crossbar) and not backend.programmed
    with pytest.raises(RuntimeError, match="program"):
        backend(np.ones(R))
    W, x = _data()
    backend.program(W)
    assert backend.shape == (R, C) and backend.effective_weights.shape == (R, C)
    out = backend(x)
    assert out.shape == (5, C) and np.all(np.isfinite(out))
    assert backend(x[1]).shape == (C,)
    assert backend(x.reshape(5, 1, R)).shape == (5, 1, C)
    np.testing.assert_array_equal(out[0], 0.0)
    currents = backend.bitline_currents(x)
    assert currents.shape == (5, backend.physical_columns * C)
    np.testing.assert_array_equal(currents[0], 0.0)
    with pytest.raises(ValueError, match="x"):
        backend(np.ones(R + 1))
    with pytest.raises(ValueError, match="x"):
        backend.bitline_currents(np.full(R, np.nan))


@pytest.mark.parametrize("name", PARAMS)
def test_ideal_wires_compute_the_effective_product(tmp_path, name):
    backend = _backends(tmp_path, 0.0)[name]()
    W, x = _data(1)
    backend.program(W)
    expected = x @ backend.effective_weights
    np.testing.assert_allclose(backend(x), expected, rtol=1e-9,
                               atol=1e-11 * np.abs(expected).max())


@pytest.mark.parametrize("name", PARAMS)
def test_linear_map_is_the_read_when_present(tmp_path, name):
    backend = _backends(tmp_path, 2.0)[name]()
    W, _ = _data(2)
    backend.program(W)
    M = backend.linear_map()
    linear = name in ("ideal", "tiled-ideal", "compact-linear", "tiled-compact-linear",
                      "spice-linear", "tiled-spice-linear")
    assert (M is not None) == linear
    if M is not None:
        x = np.random.default_rng(3).uniform(0.0, 1.0, size=(4, R))   # not only binary
        np.testing.assert_allclose(backend(x), x @ M, rtol=1e-12,
                                   atol=1e-13 * np.abs(x @ M).max())
        if "ideal" not in name:
            assert np.abs(M - backend.effective_weights).max() > 1e-6   # IR drop is in it


@pytest.mark.parametrize("name", [n for n in PARAMS if "tiled" not in str(n)])
def test_sense_currents_give_the_output(tmp_path, name):
    backend = _backends(tmp_path, 1.0)[name]()
    W, x = _data(4)
    backend.program(W)
    currents = backend.bitline_currents(x)
    if backend.physical_columns == 2:
        scale = backend.v_read * backend.scale * backend.read_factor
        out = (currents[:, 0::2] - currents[:, 1::2]) / scale
    else:
        out = currents
    np.testing.assert_allclose(backend(x), out, rtol=1e-12, atol=1e-14 * np.abs(out).max())


@pytest.mark.parametrize("name", PARAMS)
def test_fresh_and_seeds_reproduce(tmp_path, name):
    factory = _backends(tmp_path, 1.0)[name]
    W, x = _data(5)
    a, b = factory(), factory()
    a.program(W)
    b.program(W)
    np.testing.assert_array_equal(a(x), b(x))
    twin = a.fresh(0)
    assert type(twin) is type(a) and not twin.programmed
    twin.program(W)
    np.testing.assert_array_equal(twin(x), a(x))


@pytest.mark.parametrize("name", PARAMS)
def test_no_attribute_appears_after_init(tmp_path, name):
    backend = _backends(tmp_path, 1.0)[name]()
    declared = set(vars(backend))
    W, x = _data(6)
    backend.program(W)
    backend(x)
    backend.bitline_currents(x)
    backend.linear_map()
    backend.program(W * 0.5)
    assert set(vars(backend)) == declared
