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
