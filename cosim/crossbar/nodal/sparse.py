"""Sparse nodal matrices of the whole array: assembly, fill-reducing order, SuperLU.

The natural numbering of the 2*R*C unknowns is ``w(i, j) -> i*C + j`` followed by
``b(i, j) -> R*C + i*C + j`` (an absent family, i.e. a shorted line, is dropped).  The
conductance graph is a 2-D grid in which the word nodes are chained along rows and the bit
nodes along columns; a column of word nodes (or a row of bit nodes) is a separator.  The
unknowns are permuted by a geometric nested-dissection order
(:func:`nested_dissection_order`): recursive bisection of the (i, j) cell grid, splitting
the longer side; for a cut at column m the separator is {w(i, m)} and the chain {b(i, m)}
becomes an independent path, ordered just before the separator.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .kcl import line_diagonals


@functools.lru_cache(maxsize=16)
def nested_dissection_order(R: int, C: int, leaf: int = 16) -> np.ndarray:
    """Nested-dissection permutation of the 2*R*C nodes (natural numbering, module doc).

    Returns ``p`` with ``A[p][:, p]`` the reordered matrix (separators last).  Rectangles of
    at most ``leaf`` cells are ordered cell by cell (w then b).
    """
    N = R * C
    widx = np.arange(N).reshape(R, C)
    bidx = widx + N
    cells = np.stack([widx, bidx], axis=-1)          # (R, C, 2): w then b per cell
    out: list[np.ndarray] = []

    def rec(r0, r1, c0, c1):
        h, w = r1 - r0, c1 - c0
        if h <= 0 or w <= 0:
            return
        if h * w <= leaf or (h == 1 and w == 1):
            out.append(cells[r0:r1, c0:c1].ravel())
            return
        if w >= h:
            m = (c0 + c1) // 2
            rec(r0, r1, c0, m)
            rec(r0, r1, m + 1, c1)
            out.append(bidx[r0:r1, m])               # bit chain of column m: a path
            out.append(widx[r0:r1, m])               # separator
        else:
            m = (r0 + r1) // 2
            rec(r0, m, c0, c1)
            rec(m + 1, r1, c0, c1)
            out.append(widx[m, c0:c1])               # word chain of row m: a path
            out.append(bidx[m, c0:c1])               # separator

    rec(0, R, 0, C)
    p = np.concatenate(out)
    p.setflags(write=False)
    return p


def ordering(R, C, has_w, has_b) -> np.ndarray:
    """Fill-reducing order of the unknowns present (natural numbering, module doc)."""
    if has_w and has_b:
        return nested_dissection_order(R, C)
    if has_w:
        return np.arange(R * C)                     # word chains are contiguous row-major
    return np.arange(R * C).reshape(R, C).T.ravel()  # bit chains: column-major


def nodal_matrix(gw, gb, di_dvw, di_dvb) -> sp.csc_matrix:
    """The nodal matrix (linear cells: di_dvw = G, di_dvb = -G, in S) or the Newton
    Jacobian of the net node currents with respect to the absolute voltages (w, b), in the
    order of :func:`ordering` (rows and columns permuted alike)."""
    R, C = di_dvw.shape
    N = R * C
    idx = np.arange(N).reshape(R, C)
    rows, cols, vals = [], [], []
    has_w, has_b = gw > 0, gb > 0
    boff = N if has_w else 0
    for present, g, first_open, cell, ids, axis in (
            (has_w, gw, False, di_dvw, idx, 1), (has_b, gb, True, -di_dvb, idx + boff, 0)):
        if not present:
            continue
        if axis == 1:
            diag = line_diagonals(g, R, C, first_open) + cell
            a, c = ids[:, :-1].ravel(), ids[:, 1:].ravel()
        else:
            diag = (line_diagonals(g, C, R, first_open).T + cell)
            a, c = ids[:-1, :].ravel(), ids[1:, :].ravel()
        off = np.full(a.size, -g)
        rows += [ids.ravel(), a, c]
        cols += [ids.ravel(), c, a]
        vals += [diag.ravel(), off, off]
    if has_w and has_b:
        rows += [idx.ravel(), idx.ravel() + boff]
        cols += [idx.ravel() + boff, idx.ravel()]
        vals += [np.asarray(di_dvb, dtype=float).ravel(), -np.asarray(di_dvw, dtype=float).ravel()]
    n = (N if has_w else 0) + (N if has_b else 0)
    p = ordering(R, C, has_w, has_b)
    inv = np.empty(n, dtype=np.int64)
    inv[p] = np.arange(n)
    return sp.csc_matrix((np.concatenate(vals), (inv[np.concatenate(rows)],
                                                 inv[np.concatenate(cols)])), shape=(n, n))


def factorise(A, symmetric: bool):
    """SuperLU of a matrix from :func:`nodal_matrix` (already in fill-reducing order):
    natural column order; no pivoting for the SPD nodal matrix, threshold pivoting for a
    Jacobian.  Raises RuntimeError if singular."""
    if symmetric:
        return spla.splu(A, permc_spec="NATURAL", diag_pivot_thresh=0.0,
                         options=dict(SymmetricMode=True))
    try:
        return spla.splu(A, permc_spec="NATURAL", diag_pivot_thresh=0.1,
                         options=dict(SymmetricMode=True))
    except RuntimeError:
        return spla.splu(A, permc_spec="COLAMD")
