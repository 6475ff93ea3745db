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
           "load_npz", "ENCODINGS", "MAX_STEPS"]

ENCODINGS = ("rate", "rows")
#: timesteps per sample at most (far beyond any use; a typo such as 1e8 fails at once)
MAX_STEPS = 1_000_000


def _check_encoding_memory(n, T, width):
    # the float64 spikes plus the float64 uniform draws they are made from
    check.fits_in_memory(f"encoding {n} samples x {T} steps x {width} inputs", 16.0 * n * T * width,
                         hint="use fewer timesteps (--steps / [data] T) or fewer samples")


def rate_encode(images, T: int, rng, max_rate: float = 0.5) -> np.ndarray:
    """Bernoulli spikes: images (N, P) in [0, 1] -> (N, T, P) of 0.0/1.0, p = max_rate·pixel."""
    images = check.as_float_array("images", images, ndim=2)
    if images.min() < 0 or images.max() > 1:
        raise ValueError("images must be scaled to [0, 1]")
    T = check.count("T", T, minimum=1, maximum=MAX_STEPS)
    _check_encoding_memory(images.shape[0], T, images.shape[1])
    rng = check.rng(rng)
    p = max_rate * images[:, None, :]
    return (rng.random((images.shape[0], T, images.shape[1])) < p).astype(np.float64)


def rows_encode(images, T: int, side: int = 8) -> np.ndarray:
    """Row-by-row: images (N, side*side) in [0, 1] -> (N, T, side), each row held T/side steps."""
    images = check.as_float_array("images", images, ndim=2)
    T = check.count("T", T, minimum=1, maximum=MAX_STEPS)
    _check_encoding_memory(images.shape[0], T, side)
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
    T = check.count("T", T, minimum=1, maximum=MAX_STEPS)
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
        self.T = check.count("T", T, minimum=1, maximum=MAX_STEPS)
        self.encoding = check.choice("encoding", encoding, ENCODINGS)
        _check_encoding_memory(self.images.shape[0], self.T, self.images.shape[1])
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


#: arrays of a data file larger than this are refused before they are read
MAX_DATA_BYTES = 8 * 2**30


def load_npz(path, n_in=None):
    """Spike data from an .npz file: ``(x, y), (x_test, y_test)``.

    The file holds ``x`` (N, T, n_in) of finite numbers and ``y`` (N,) integer labels >= 0,
    and optionally ``x_test`` / ``y_test`` of the same form; without them the test set is
    ``x``, ``y`` themselves (for predict / compare / sweep, which only evaluate) and training
    uses all of ``x``. The file is untrusted: no pickled objects are read, array sizes are
    checked from the headers before any array is loaded, and every error names the file and
    the array at fault (:class:`~cosim.errors.DataFileError`).
    """
    import zipfile
    from pathlib import Path

    from .errors import DataFileError

    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"data file {path}: no such file")
    try:
        with zipfile.ZipFile(path) as archive:
            members = {name[:-4]: name for name in archive.namelist() if name.endswith(".npy")}
            total = 0
            for key in ("x", "y", "x_test", "y_test"):
                if key in members:
                    with archive.open(members[key]) as fh:
                        version = np.lib.format.read_magic(fh)
                        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                       else np.lib.format.read_array_header_2_0)
                        shape, _, dtype = read_header(fh)
                    if dtype.hasobject:
                        raise DataFileError(f"data file {path}: array {key!r} holds Python "
                                            f"objects; only numbers are read")
                    total += int(np.prod(shape, dtype=np.float64)) * max(dtype.itemsize, 8)
    except DataFileError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise DataFileError(f"data file {path} is not a readable .npz file ({exc})") from None
    if "x" not in members or "y" not in members:
        raise DataFileError(f"data file {path} must hold arrays 'x' (N, T, n_in) and 'y' (N,); "
                            f"found {sorted(members)}")
    if total > MAX_DATA_BYTES:
        raise DataFileError(f"data file {path}: its arrays need {total / 2**30:.3g} GiB; at most "
                            f"{MAX_DATA_BYTES / 2**30:g} GiB are read")
    check.fits_in_memory(f"data file {path}", 2 * total)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in ("x", "y", "x_test", "y_test") if k in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataFileError(f"data file {path} could not be read ({exc})") from None
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataFileError(f"data file {path}: give both 'x_test' and 'y_test' or neither")

    def pair(xk, yk):
        try:
            xa = check.as_float_array(f"{xk}", arrays[xk], ndim=3)
        except (TypeError, ValueError) as exc:
            raise DataFileError(f"data file {path}: {exc}") from None
        if 0 in xa.shape:
            raise DataFileError(f"data file {path}: {xk} has an empty axis, shape {xa.shape}")
        if xa.shape[1] > MAX_STEPS:
            raise DataFileError(f"data file {path}: {xk} has {xa.shape[1]} steps; at most "
                                f"{MAX_STEPS}")
        if n_in is not None and xa.shape[2] != n_in:
            raise DataFileError(f"data file {path}: {xk} has {xa.shape[2]} inputs per step but "
                                f"the model has n_in = {n_in}")
        try:
            ya = check.labels(yk, arrays[yk], xa.shape[0], n_classes=2**31)
        except ValueError as exc:
            raise DataFileError(f"data file {path}: {exc}") from None
        return xa, ya

    train = pair("x", "y")
    test = pair("x_test", "y_test") if "x_test" in arrays else train
    if test[0].shape[1:] != train[0].shape[1:]:
        raise DataFileError(f"data file {path}: x_test has shape {test[0].shape} but x has "
                            f"{train[0].shape}: steps and inputs must agree")
    return train, test
