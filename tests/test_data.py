import numpy as np
import pytest

from cosim.data import EncodedImages, load_digits, rate_encode, rows_encode


def test_digits_split_and_rate_encoding():
    (xtr, ytr), (xte, yte) = load_digits(T=20, seed=0)
    assert xtr.shape == (1437, 20, 64) and xte.shape == (360, 20, 64)
    assert set(np.unique(xtr)) == {0.0, 1.0}
    # stratified: class proportions equal to within one sample
    assert np.all(np.abs(np.bincount(yte) - np.bincount(ytr) * 360 / 1437) <= 1.5)
    (xtr2, _), _ = load_digits(T=20, seed=0)
    np.testing.assert_array_equal(xtr, xtr2)


def test_rate_is_half_pixel_over_16():
    images = np.array([[0.0, 0.5, 1.0]])
    spikes = rate_encode(np.repeat(images, 2000, axis=0), 50, np.random.default_rng(0))
    np.testing.assert_allclose(spikes.mean(axis=(0, 1)), [0.0, 0.25, 0.5], atol=0.003)


def test_rows_encoding_holds_each_row():
    image = np.arange(64, dtype=float)[None] / 63
    x = rows_encode(image, 16)
    assert x.shape == (1, 16, 8)
    for t in range(16):
        np.testing.assert_array_equal(x[0, t], image[0].reshape(8, 8)[t // 2])


def test_encoded_images_resample_per_epoch():
    data = EncodedImages(np.full((3, 64), 0.5), T=10, seed=1)
    a, b = data.sample(0), data.sample(1)
    assert a.shape == (3, 10, 64) and not np.array_equal(a, b)
    np.testing.assert_array_equal(a, EncodedImages(np.full((3, 64), 0.5), T=10, seed=1).sample(0))


def test_bad_encoding():
    with pytest.raises(ValueError, match="encoding"):
        load_digits(encoding="phase")
    with pytest.raises(ValueError, match="T"):
        load_digits(encoding="rows", T=4)


def test_load_npz_own_data(tmp_path):
    from cosim.data import load_npz
    rng = np.random.default_rng(0)
    x = (rng.random((7, 5, 3)) < 0.5).astype(np.float32)
    y = rng.integers(0, 4, 7)
    np.savez(tmp_path / "d.npz", x=x, y=y.astype(float))      # float labels holding integers
    (xt, yt), (xs, ys) = load_npz(tmp_path / "d.npz")
    assert xt.dtype == np.float64 and np.array_equal(xt, x) and np.array_equal(yt, y)
    assert xs is xt and ys is yt                               # no test arrays: x, y
    np.savez(tmp_path / "e.npz", x=x, y=y, x_test=x[:2], y_test=y[:2])
    _, (xs, ys) = load_npz(tmp_path / "e.npz", n_in=3)
    assert xs.shape == (2, 5, 3) and ys.tolist() == y[:2].tolist()


def test_encoding_refuses_what_cannot_fit():
    from cosim.data import rate_encode
    from cosim.errors import MemoryLimitError
    with pytest.raises(MemoryLimitError, match="memory"):
        rate_encode(np.full((1000, 64), 0.5), 900_000, 0)       # ~7 TB of spikes
