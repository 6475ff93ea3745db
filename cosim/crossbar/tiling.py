"""Tiling: a large weight matrix spread over several fixed-size physical arrays.

Real chips do not build one 784 × 512 crossbar: they have arrays of a fixed size (e.g. 128
word lines × 128 bit lines) and split a large weight matrix into a grid of tiles. Each tile
is a complete array of its own (own drivers, own wires, so its own IR drop); the partial
outputs of the tiles that feed the same outputs are added after sensing (digitally, or by
summing the sense-amplifier currents), which is what :class:`Tiled` computes.

Tile size and differential columns
----------------------------------
``max_rows`` counts **inputs** (word lines) per tile and ``max_cols`` counts **weight
columns** (outputs) per tile: a tile always holds the block ``W[row_slice, col_slice]`` of at
most ``max_rows × max_cols`` weights, whatever the backend. A differential physical backend
(``Compact``, ``Spice``: G+ and G- columns, docs/array.md §1) therefore uses
``2 · max_cols`` physical bit lines per tile; to model a chip whose arrays have 128 physical
bit lines with differential pairs, use ``max_array=(128, 64)``. :attr:`Tiled.physical_columns`
gives the number of bit lines per output of the wrapped backend (1 or 2).

Tiles are ordered row-major over the tile grid (all column blocks of the first row block
first); tile ``k`` is programmed on ``inner.fresh(k)``, so every tile has settings identical
to the template and a decorrelated seed.
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import _validate as check
from .base import Crossbar

__all__ = ["Tiled", "tile_slices"]

DEFAULT_MAX = 128


def _size(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer (>= 1), got {value}")
    return int(value)


def tile_slices(R, C, max_rows=DEFAULT_MAX, max_cols=DEFAULT_MAX):
    """The tile grid of an (R, C) matrix: a list of (row_slice, col_slice), row-major.

    Row blocks have ``max_rows`` rows except the last (the remainder), column blocks likewise
    with ``max_cols``; e.g. ``tile_slices(300, 200, 128, 128)`` gives 3 × 2 tiles with rows
    0:128, 128:256, 256:300 and columns 0:128, 128:200.
    """
    R, C = _size("R", R), _size("C", C)
    max_rows, max_cols = _size("max_rows", max_rows), _size("max_cols", max_cols)
    return [(slice(r0, min(r0 + max_rows, R)), slice(c0, min(c0 + max_cols, C)))
            for r0 in range(0, R, max_rows) for c0 in range(0, C, max_cols)]


class Tiled(Crossbar):
    """A crossbar backend that splits its weight matrix over fixed-size arrays.

    Parameters
    ----------
    inner : the backend of each tile: a name ("ideal", "compact", "spice") or an (unprogrammed)
        :class:`Crossbar` used as a template; tile ``k`` is ``inner.fresh(k)``.
    max_rows : inputs (word lines) per tile, default 128.
    max_cols : weight columns (outputs) per tile, default 128 (a differential backend uses two
        physical bit lines per weight column, see the module docstring).
    max_array : ``(max_rows, max_cols)`` in one argument, or one int for square tiles; an
        alternative to the two above (giving both with different values is an error).

    ``forward`` adds the partial outputs of the tiles in the same output columns.
    ``effective_weights`` is assembled from the tiles' effective weights, and :attr:`tiles`
    lists ``(row_slice, col_slice, backend)`` for netlist export and inspection.
    """

    name = "tiled"

    def __init__(self, inner="ideal", max_rows=None, max_cols=None, *, max_array=None):
        super().__init__()
        if isinstance(inner, str):
            from . import make_crossbar      # deferred: the package imports this module
            inner = make_crossbar(inner)
        if not isinstance(inner, Crossbar):
            raise TypeError(f"inner must be a Crossbar or a backend name, got {type(inner).__name__}")
        if max_array is not None:
            if isinstance(max_array, numbers.Integral) and not isinstance(max_array, bool):
                max_array = (max_array, max_array)
            if not isinstance(max_array, (tuple, list)) or len(max_array) != 2:
                raise TypeError(f"max_array must be (rows, cols) or an int, got {max_array!r}")
            rows = _size("max_array[0] (rows)", max_array[0])
            cols = _size("max_array[1] (cols)", max_array[1])
            for name, given, value in (("max_rows", max_rows, rows), ("max_cols", max_cols, cols)):
                if given is not None and _size(name, given) != value:
                    raise ValueError(f"{name}={given} contradicts max_array={tuple(max_array)}")
            max_rows, max_cols = rows, cols
        self.inner = inner
        self.max_rows = _size("max_rows", DEFAULT_MAX if max_rows is None else max_rows)
        self.max_cols = _size("max_cols", DEFAULT_MAX if max_cols is None else max_cols)
        self._tiles = []
        self._fused = None
        self._fused_forward = False

    # -- settings ----------------------------------------------------------------------------
    def get_params(self):
        # not the base's signature reading: ``max_array`` is an alias of the two stored sizes
        return {"inner": self.inner, "max_rows": self.max_rows, "max_cols": self.max_cols}

    def fresh(self, index: int = 0) -> "Tiled":
        """An unprogrammed tiled backend whose template is ``inner.fresh(index)``."""
        return Tiled(self.inner.fresh(index), self.max_rows, self.max_cols)

    @property
    def max_array(self) -> tuple[int, int]:
        return (self.max_rows, self.max_cols)

    @property
    def physical_columns(self) -> int:
        """Bit lines per weight column of the wrapped backend: 2 when differential, else 1."""
        return self.inner.physical_columns

    # -- programming -------------------------------------------------------------------------
    def _program(self, weights):
        R, C = weights.shape
        slices = tile_slices(R, C, self.max_rows, self.max_cols)
        same_grid = (len(self._tiles) == len(slices) and self._weights is not None
                     and self._weights.shape == weights.shape)
        if not same_grid:
            # new shape: new arrays (reprogramming the same shape keeps each tile's array,
            # hence its device-to-device spread and its solver caches)
            self._tiles = [(rs, cs, self.inner.fresh(k)) for k, (rs, cs) in enumerate(slices)]
        for rs, cs, backend in self._tiles:
            backend.program(weights[rs, cs])
        self._fused = self._fuse(R, C)
        # the forward pass may use the fused map only where each tile's read IS its map
        # (read noise, DAC or ADC: the tiles are read one by one)
        self._fused_forward = self._fused is not None and all(
            backend.linear_forward() for _, _, backend in self._tiles)

    def _fuse(self, R, C):
        """For linear reads the whole tiled read is one (R, C) map: assemble it once.

        Each tile's read is exactly x_tile @ M_tile (its ``linear_map()``), so the tiled
        output Σ_tiles x_tile @ M_tile equals x @ M with M the block matrix of the M_tile.
        Returns None when some tile is not linear (those reads go tile by tile).
        """
        M = np.empty((R, C))
        for rs, cs, backend in self._tiles:
            tile_map = backend.linear_map()
            if tile_map is None:
                return None
            M[rs, cs] = tile_map
        return M

    def linear_map(self):
        self._require_programmed()
        return self._fused

    def linear_forward(self) -> bool:
        self._require_programmed()
        return self._fused_forward

    @property
    def tiles(self) -> list:
        """``[(row_slice, col_slice, backend), ...]`` row-major; backend holds W[row, col]."""
        self._require_programmed()
        return list(self._tiles)

    @property
    def grid_shape(self) -> tuple[int, int]:
        """(row blocks, column blocks) of the tile grid."""
        R, C = self.shape
        return (-(-R // self.max_rows), -(-C // self.max_cols))

    @property
    def effective_weights(self):
        self._require_programmed()
        out = np.empty(self._weights.shape)
        for rs, cs, backend in self._tiles:
            out[rs, cs] = backend.effective_weights
        return out

    # -- reading -----------------------------------------------------------------------------
    def forward(self, x):
        if self._fused_forward:
            return x @ self._fused
        out = np.zeros((x.shape[0], self._weights.shape[1]))
        for rs, cs, backend in self._tiles:
            out[:, cs] += backend.forward(np.ascontiguousarray(x[:, rs]))
        return out

    def _currents(self, x):
        """Sense currents summed per physical column over the tiles of each column block
        (what summing the sense-amplifier currents measures; each tile keeps its own
        mapping scale, so ``forward`` adds outputs in weight units instead)."""
        pc = self.physical_columns
        out = np.zeros((x.shape[0], pc * self._weights.shape[1]))
        for rs, cs, backend in self._tiles:
            out[:, pc * cs.start:pc * cs.stop] += backend._currents(np.ascontiguousarray(x[:, rs]))
        return out

    def tile_outputs(self, x) -> list:
        """Per-tile partial outputs (weight units) of inputs x (B, R): a list aligned with
        :attr:`tiles`; ``forward(x)`` is their sum per output column."""
        self._require_programmed()
        x = check.as_float_array("x", x)
        if x.ndim == 0 or x.shape[-1] != self._weights.shape[0]:
            raise ValueError(f"x must have last dimension {self._weights.shape[0]}, got {x.shape}")
        x = x.reshape(-1, x.shape[-1])
        return [backend.forward(np.ascontiguousarray(x[:, rs])) for rs, _, backend in self._tiles]

    def __repr__(self):
        return f"Tiled({self.inner!r}, max_rows={self.max_rows}, max_cols={self.max_cols})"
