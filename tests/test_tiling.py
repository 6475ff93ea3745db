"""Tiled crossbars: tile grid, exact sums, per-tile IR drop against nodal solves, SRNN use."""

import numpy as np
import pytest

from cosim.crossbar import nodal
from cosim.crossbar.compact import Compact
from cosim.crossbar.ideal import Ideal
from cosim.crossbar.tiling import Tiled, tile_slices
from cosim.network import SRNN


def spikes(shape, p=0.3, seed=1):
    return (np.random.default_rng(seed).random(shape) < p).astype(float)


def weights(R, C, seed=0):
    return np.random.default_rng(seed).normal(0.0, 1.0, (R, C))


def test_tile_slices_cover_the_matrix_once_row_major():
    slices = tile_slices(300, 200, 128, 128)
    assert [(s.start, s.stop, c.start, c.stop) for s, c in slices] == [
        (0, 128, 0, 128), (0, 128, 128, 200), (128, 256, 0, 128), (128, 256, 128, 200),
        (256, 300, 0, 128), (256, 300, 128, 200)]
    count = np.zeros((300, 200), dtype=int)
    for rs, cs in slices:
        count[rs, cs] += 1
    assert np.all(count == 1)
    assert tile_slices(5, 3, 128, 128) == [(slice(0, 5), slice(0, 3))]
    assert len(tile_slices(10, 10, 1, 1)) == 100


def test_ideal_inner_equals_untiled_product():
    W = weights(300, 200)
    x = spikes((7, 300))
    tiled = Tiled(Ideal(), max_rows=128, max_cols=128)
    tiled.program(W)
    assert len(tiled.tiles) == 6 and tiled.grid_shape == (3, 2)
    np.testing.assert_allclose(tiled(x), x @ W, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(tiled.effective_weights, W)
    for rs, cs, backend in tiled.tiles:
        np.testing.assert_array_equal(backend.weights, W[rs, cs])
    # the per-tile partial outputs add up to the tiled output
    parts = tiled.tile_outputs(x)
    total = np.zeros((7, 200))
    for (rs, cs, _), part in zip(tiled.tiles, parts):
        total[:, cs] += part
    np.testing.assert_allclose(total, tiled(x), rtol=0, atol=1e-12)
    # leading batch dimensions, like every backend
    assert tiled(x.reshape(7, 1, 300)).shape == (7, 1, 200)


def test_compact_inner_without_wires_equals_effective_product():
    W = weights(300, 200, seed=2)
    x = spikes((6, 300), seed=3)
    tiled = Tiled(Compact(r_word=0.0, r_bit=0.0), max_array=(128, 128))
    tiled.program(W)
    eff = tiled.effective_weights
    np.testing.assert_allclose(eff, W, rtol=0, atol=1e-9 * np.abs(W).max())
    np.testing.assert_allclose(tiled(x), x @ eff, rtol=0, atol=1e-12)
    # every tile is an array of its own, physically: 2 bit lines per output
    assert tiled.physical_columns == 2
    for rs, cs, backend in tiled.tiles:
        assert backend.conductances.shape == (rs.stop - rs.start, 2 * (cs.stop - cs.start))


@pytest.mark.parametrize("r", [1.0, 10.0])
def test_each_tile_matches_its_own_nodal_solve(r):
    W = weights(150, 90, seed=4)
    x = spikes((4, 150), p=0.4, seed=5)
    tiled = Tiled(Compact(r_word=r, r_bit=r), max_array=(64, 48))
    tiled.program(W)
    assert tiled.grid_shape == (3, 2)
    total = np.zeros((4, 90))
    for rs, cs, tile in tiled.tiles:
        k = tile.read_factor
        G = tile.conductances * k
        sol = nodal.solve(G, tile.v_read * x[:, rs], r, r)
        I = sol.currents
        out = (I[:, 0::2] - I[:, 1::2]) / (tile.v_read * tile.scale * k)
        # the nodal solve meets KCL to 1e-12 relative; the differential pair cancels most of
        # the current, so compare on the scale of the outputs
        tol = 1e-10 * np.abs(out).max()
        np.testing.assert_allclose(tile.forward(x[:, rs]), out, rtol=0, atol=tol)
        total[:, cs] += out
    got = tiled(x)
    np.testing.assert_allclose(got, total, rtol=0, atol=1e-10 * np.abs(total).max())
    # IR drop is real, and smaller arrays suffer less of it than one big array
    untiled = Compact(r_word=r, r_bit=r)
    untiled.program(W)
    ideal = x @ tiled.effective_weights
    assert np.abs(got - ideal).max() > 1e-6
    assert np.abs(got - ideal).max() < np.abs(untiled(x) - x @ untiled.effective_weights).max()


def test_nonlinear_reads_sum_tile_by_tile():
    W = weights(10, 6, seed=6)
    x = spikes((3, 10), p=0.5, seed=7)
    tiled = Tiled(Compact(r_word=2.0, r_bit=2.0, read="nonlinear"), max_array=(4, 4))
    tiled.program(W)
    assert tiled.linear_map() is None              # nonlinear tiles: no single map
    total = np.zeros((3, 6))
    for rs, cs, tile in tiled.tiles:
        total[:, cs] += tile(x[:, rs])
    np.testing.assert_allclose(tiled(x), total, rtol=1e-12, atol=1e-14)


def test_tiles_have_decorrelated_seeds_and_are_kept_on_reprogram():
    tiled = Tiled(Compact(r_word=0.0, r_bit=0.0, program_sigma=0.1, seed=3), max_array=(8, 8))
    W = weights(16, 16)
    tiled.program(W)
    seeds = [b.seed for _, _, b in tiled.tiles]
    assert len(set(seeds)) == 4
    backends = [b for _, _, b in tiled.tiles]
    tiled.program(2 * W)
    assert [b for _, _, b in tiled.tiles] == backends      # same arrays, new states
    tiled.program(weights(20, 16))
    assert len(tiled.tiles) == 6                              # new shape, new grid


def test_fresh_and_get_params():
    template = Tiled(Compact(seed=5), max_array=(64, 32))
    params = template.get_params()
    assert params["max_rows"] == 64 and params["max_cols"] == 32
    assert isinstance(params["inner"], Compact)
    same = template.fresh(0)
    other = template.fresh(7)
    assert isinstance(other, Tiled) and not other.programmed
    assert other.max_array == (64, 32)
    assert same.inner.seed == 5 and other.inner.seed != 5
    assert Tiled("ideal").max_array == (128, 128)
    assert Tiled(Ideal(), max_array=16).max_array == (16, 16)


@pytest.mark.parametrize("inner", ["ideal", "compact0"])
@pytest.mark.parametrize("n_delay", [1, 2])
def test_srnn_on_tiled_backend_equals_untiled_ideal(inner, n_delay):
    backend = Ideal() if inner == "ideal" else Compact(r_word=0.0, r_bit=0.0)
    x = spikes((5, 20, 20), p=0.2, seed=8)
    kwargs = dict(neuron="lif", seed=0, n_delay=n_delay, input_scale=20.0)
    ref = SRNN(20, 30, 5, crossbar="ideal", **kwargs).run(x)
    net = SRNN(20, 30, 5, crossbar=Tiled(backend, max_array=(8, 8)), **kwargs)
    assert all(isinstance(b, Tiled) for b in net.backends().values())
    assert net.backends()[("in", 1)].grid_shape == (3, 4)
    rec = net.run(x)
    assert ref.z.sum() > 0
    np.testing.assert_array_equal(rec.z, ref.z)
    np.testing.assert_allclose(rec.logits, ref.logits, rtol=1e-9, atol=1e-12)


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="max_rows"):
        Tiled(Ideal(), max_rows=0)
    with pytest.raises(ValueError, match="max_cols"):
        Tiled(Ideal(), max_cols=-3)
    with pytest.raises(TypeError, match="max_rows"):
        Tiled(Ideal(), max_rows=2.5)
    with pytest.raises(TypeError, match="max_cols"):
        Tiled(Ideal(), max_cols="64")
    with pytest.raises(TypeError, match="max_rows"):
        Tiled(Ideal(), max_rows=True)
    with pytest.raises(TypeError, match="max_array"):
        Tiled(Ideal(), max_array=(64, 64, 64))
    with pytest.raises(ValueError, match="max_array"):
        Tiled(Ideal(), max_array=(0, 64))
    with pytest.raises(ValueError, match="contradicts"):
        Tiled(Ideal(), max_rows=32, max_array=(64, 64))
    with pytest.raises(TypeError, match="inner"):
        Tiled(42)
    with pytest.raises(ValueError, match="max_cols"):
        tile_slices(10, 10, 4, 0)
    tiled = Tiled(Ideal(), max_array=(4, 4))
    with pytest.raises(RuntimeError, match="not programmed"):
        tiled.tiles
    tiled.program(weights(6, 6))
    with pytest.raises(ValueError, match="last dimension"):
        tiled(np.ones((2, 5)))
