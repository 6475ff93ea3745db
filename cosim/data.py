"""Datasets and spike encoders.

``load_digits`` uses scikit-learn's bundled 8×8 digits (1797 images, offline) with a
stratified 80/20 split (``random_state=0``: 1437 train / 360 test) and encodes each image as a
spike train of T steps:

* ``"rate"``: 64 inputs, each a Bernoulli spike train with p = 0.5 · pixel / 16 per step;
* ``"rows"``: 8 inputs, row r of the image shown during steps [r·T/8, (r+1)·T/8), the
  8 pixel values of that row (scaled to [0, 1]) held as analog input levels.

All random draws come from the ``seed``.
"""

from __future__ import annotations

import numpy as np

from . import _validate as check

__all__ = ["load_digits", "digits_images", "EncodedImages", "rate_encode", "rows_encode",
           "ENCODINGS"]

ENCODINGS = ("rate", "rows")


def rate_encode(images, T: int, rng, max_rate: float = 0.5) -> np.ndarray:
    """Bernoulli spikes: images (N, P) in [0, 1] -> (N, T, P) of 0.0/1.0, p = max_rate·pixel."""
    images = check.as_float_array("images", images, ndim=2)
    if images.min() < 0 or images.max() > 1:
        raise ValueError("images must be scaled to [0, 1]")
    T = check.integer("T", T, minimum=1)
    rng = check.rng(rng)
    p = max_rate * images[:, None, :]
    return (rng.random((images.shape[0], T, images.shape[1])) < p).astype(np.float64)


def rows_encode(images, T: int, side: int = 8) -> np.ndarray:
    """Row-by-row: images (N, side*side) in [0, 1] -> (N, T, side), each row held T/side steps."""
    images = check.as_float_array("images", images, ndim=2)
    T = check.integer("T", T, minimum=1)
    if images.shape[1] != side * side:
        raise ValueError(f"images must have {side * side} pixels, got {images.shape[1]}")
    if T < side:
        raise ValueError(f"T must be >= {side} for row encoding, got {T}")
    rows = images.reshape(-1, side, side)
    which_row = np.minimum((np.arange(T) * side) // T, side - 1)
    return rows[:, which_row, :]


def load_digits(encoding: str = "rate", T: int = 50, seed=0):
    """Return ``(x_train, y_train), (x_test, y_test)`` of the encoded sklearn digits."""
    encoding = check.choice("encoding", encoding, ENCODINGS)
    T = check.integer("T", T, minimum=1)
    rng = check.rng(seed)
    (img_train, y_train), (img_test, y_test) = digits_images()
    if encoding == "rate":
        encode = lambda imgs: rate_encode(imgs, T, rng)  # noqa: E731
    else:
        encode = lambda imgs: rows_encode(imgs, T)  # noqa: E731
    return (encode(img_train), y_train), (encode(img_test), y_test)


class EncodedImages:
    """Images whose spike trains are drawn anew for each epoch (stochastic rate coding).

    ``Model.train`` accepts one in place of a fixed spike array: epoch k trains on
    ``sample(k)``, a fresh Bernoulli draw from a seed derived from (seed, k), so runs are
    reproducible while the network never sees the same spike train twice.
    """

    def __init__(self, images, T: int = 50, encoding: str = "rate", seed=0):
        self.images = check.as_float_array("images", images, ndim=2)
        if self.images.min() < 0 or self.images.max() > 1:
            raise ValueError("images must be scaled to [0, 1]")
        self.T = check.integer("T", T, minimum=1)
        self.encoding = check.choice("encoding", encoding, ENCODINGS)
        self.seed = check.integer("seed", seed)

    def __len__(self):
        return self.images.shape[0]

    @property
    def shape(self):
        width = self.images.shape[1] if self.encoding == "rate" else int(np.sqrt(self.images.shape[1]))
        return (len(self), self.T, width)

    def sample(self, epoch: int = 0) -> np.ndarray:
        if self.encoding == "rows":
            return rows_encode(self.images, self.T, self.shape[2])
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, int(epoch)]))
        return rate_encode(self.images, self.T, rng)


def digits_images():
    """The raw digits split: ``(images_train, y_train), (images_test, y_test)``, pixels in [0, 1]."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    data = sk_digits()
    images = data.data / 16.0
    labels = data.target.astype(np.int64)
    i_train, i_test = train_test_split(np.arange(len(labels)), test_size=0.2,
                                       stratify=labels, random_state=0)
    return (images[i_train], labels[i_train]), (images[i_test], labels[i_test])
