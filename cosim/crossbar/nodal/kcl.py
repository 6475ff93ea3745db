"""KCL bookkeeping shared by every nodal solver: the result type, input checks, the residual
and its rounding floor, and the tridiagonal line matrices.

Residual
--------
F(node) is the net current leaving a node (A).  In word-line *drop* variables
u(i, j) = V_i - w(i, j) (V) and bit-node voltages b(i, j) (V), with g_w = 1/r_word and
g_b = 1/r_bit (S) and i_dev(i, j) the device current from w(i, j) to b(i, j) (A)::

    F_w(i, j) = i_dev(i, j) - s_w(i, j) + s_w(i, j+1),   s_w(i, j) = g_w (u(i, j) - u(i, j-1))
    F_b(i, j) = s_b(i, j) - s_b(i-1, j) - i_dev(i, j),   s_b(i, j) = g_b (b(i, j) - b(i+1, j))

with u(i, -1) = 0 (the source), s_w(i, C) = 0 (open far end), b(R, j) = 0 (ground behind
the sense resistor) and s_b(-1, j) = 0 (open top end).  The output current is
I_j = s_b(R-1, j).  The terminal segments are in series with the periphery (EQUATIONS.md
§7): s_w(i, 0) = g_w,end u(i, 0) with g_w,end = 1/(r_driver + r_word) (the driver resistor
and the first word segment carry the same current, no node between them), and
s_b(R-1, j) = g_b,end b(R-1, j) with g_b,end = 1/(r_bit + r_sense); the sense node sits at
v(s_j) = I_j r_sense.  :class:`LineConductance` carries both conductances of a line family.  The
*relative* residual is ``max |F| / I_scale`` with I_scale the largest branch-current
magnitude (devices, word and bit segments; in a shorted line the segment currents are the
partial sums of the cell currents).  If I_scale is 0 the relative residual is 0 when F is
exactly 0 and infinite otherwise.

Rounding floor: evaluating F in doubles from stored voltages x_w (u, or the absolute w) and
b costs about ``4 eps (2 g_w max|x_w| + 2 g_b max|b| + max|i_dev|)`` (A) even at the exact
solution (:func:`rounding_floor`).  With absolute word voltages max|x_w| ~ |V| and the floor
can exceed 1e-12 I_scale (short lines, small device currents); in drop variables
max|u| << |V| and it practically vanishes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
from scipy.linalg import lapack

from ... import _validate
from ...errors import SolverError

EPS = np.finfo(float).eps
FLOOR_ULPS = 4.0


@dataclass
class NodalSolution:
    """Result of a nodal solve.

    currents: (C,) or (B, C) output currents into the sense nodes (A).
    word_voltages, bit_voltages: (R, C) or (B, R, C) node voltages (V); None when a
        nonlinear solve was asked for currents only (``voltages=False``).
    residual: maximum relative KCL residual over the batch (module docstring).
    iterations: Newton iterations (nonlinear, summed over a batch) or CG iterations
        (linear ``"cg"``, maximum over the batch); 0 for direct solves.
    method: which solver produced the result.
    residual_floor: the rounding floor of ``residual`` for this array and these voltages;
        linear solves accept residual <= max(tol, residual_floor).
    word_drops: (R, C) or (B, R, C) word-line drops V_i - w(i, j) (V) as the solver held them
        (nonlinear solves; exact to the last bit, unlike ``V - word_voltages``), else None.
    pattern_residuals, pattern_iterations: (B,) relative residual and iterations of each
        input (nonlinear solves), else None.
    """

    currents: np.ndarray
    word_voltages: np.ndarray
    bit_voltages: np.ndarray
    residual: float
    iterations: int = 0
    method: str = ""
    residual_floor: float = 0.0
    word_drops: np.ndarray | None = field(default=None, repr=False)
    pattern_residuals: np.ndarray | None = field(default=None, repr=False)
    pattern_iterations: np.ndarray | None = field(default=None, repr=False)


# ----------------------------------------------------------------------------- checks

def check_G(G) -> np.ndarray:
    G = _validate.as_float_array("G", G, ndim=2)
    if G.shape[0] < 1 or G.shape[1] < 1:
        raise ValueError(f"G must have at least one row and one column, got shape {G.shape}")
    if np.any(G < 0):
        raise ValueError("G must be >= 0 everywhere (conductances in siemens)")
    return np.ascontiguousarray(G)


class LineConductance(float):
    """Segment conductance g = 1/r (S) of a line family (a float), with ``end`` (S) the
    conductance of its terminal segment, which is in series with the periphery resistor:
    1/(r + r_driver) for word lines (source end), 1/(r + r_sense) for bit lines (sense end).
    Arithmetic gives plain floats; only the terminal-segment code reads ``end``."""

    end: float

    def __new__(cls, g: float, end: float | None = None):
        obj = super().__new__(cls, g)
        obj.end = float(g) if end is None else float(end)
        return obj

    def __reduce__(self):
        return (LineConductance, (float(self), self.end))


def end_conductance(g) -> float:
    """Conductance (S) of the terminal segment of a line family g (g itself for a float)."""
    return getattr(g, "end", float(g))


def segment_conductance(name: str, r, end_name: str | None = None,
                        r_end=0.0) -> LineConductance:
    """g = 1/r (S) of a wire segment r (ohm, >= 0); 0 means a shorted line (r = 0).

    ``r_end`` (ohm, >= 0, named ``end_name``) is the periphery resistor in series with the
    terminal segment (r_driver for word lines, r_sense for bit lines).  A shorted line with a
    periphery resistor (r = 0 < r_end) would make the whole line one node; that topology is
    refused with a ValueError (the solvers eliminate shorted lines exactly instead).
    """
    r = _validate.positive(name, r, allow_zero=True)
    r_end = _validate.positive(end_name or "r_end", r_end, allow_zero=True)
    if r == 0:
        if r_end > 0:
            raise ValueError(f"{end_name} = {r_end!r} ohm needs {name} > 0: a shorted line "
                             f"({name} = 0) with a periphery resistor is not supported; use "
                             f"{end_name} = 0 or a wire resistance {name} > 0 (a nearly "
                             f"ideal line: {name} = 1e-3 ohm per segment)")
        return LineConductance(0.0, 0.0)
    return LineConductance(1.0 / r, 1.0 / (r + r_end))


def check_V(V, R: int) -> tuple[np.ndarray, bool]:
    """Return V as (B, R) and whether the input was a single vector."""
    V = _validate.as_float_array("V", V, ndim=(1, 2))
    if V.shape[-1] != R:
        raise ValueError(f"V must have {R} entries along its last axis (one per word line), "
                         f"got shape {V.shape}")
    return np.ascontiguousarray(V.reshape(-1, R)), V.ndim == 1


def check_shape(shape) -> tuple[int, int]:
    try:
        R, C = (int(s) for s in shape)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"shape must be a pair (R, C), got {shape!r}") from exc
    if R < 1 or C < 1:
        raise ValueError(f"shape must be positive, got {shape!r}")
    return R, C


# ----------------------------------------------------------------------------- residuals

def batch_max(a) -> np.ndarray:
    """max |a| over all but the first (batch) axis."""
    if a.shape[0] == 0 or a.size == 0:
        return np.zeros(a.shape[0])
    flat = a.reshape(a.shape[0], -1)
    return np.maximum(flat.max(axis=1), -flat.min(axis=1))    # no |a| temporary: 2x faster


def rounding_floor(gw, xw_max, gb, b_max, idev_max):
    """Absolute rounding floor of max |F| (A): 4 eps (2 g_w |x_w| + 2 g_b |b| + |i_dev|)."""
    return FLOOR_ULPS * EPS * (2.0 * gw * xw_max + 2.0 * gb * b_max + idev_max)


def branch_balance(i_dev, u, b, gw, gb):
    """KCL of a batch in drop variables (module docstring).

    i_dev, u, b: (B, R, C).  g = 0 marks a shorted line, whose nodes must sit exactly at
    their forced voltage (u = 0, b = 0; +inf residual otherwise).  Returns (F, currents,
    scale, dev): F (B, 2, R, C) the net current leaving each node, currents (B, C), scale
    (B,) the largest branch current and dev (B,) the largest device current (A).
    """
    Bn, R, C = i_dev.shape
    F = np.empty((Bn, 2, R, C))
    dev = batch_max(i_dev)
    if gw > 0:
        s_w = np.empty_like(u)                   # segment current into w(i, j) from the left
        s_w[:, :, 0] = end_conductance(gw) * u[:, :, 0]
        np.subtract(u[:, :, 1:], u[:, :, :-1], out=s_w[:, :, 1:])
        s_w[:, :, 1:] *= gw
        np.subtract(i_dev, s_w, out=F[:, 0])
        F[:, 0, :, :-1] += s_w[:, :, 1:]
    else:
        F[:, 0] = np.where(u != 0.0, np.inf, 0.0)
        s_w = np.cumsum(i_dev[:, :, ::-1], axis=2)
    if gb > 0:
        s_b = np.empty_like(b)                   # segment current from b(i, j) downwards
        np.subtract(b[:, :-1, :], b[:, 1:, :], out=s_b[:, :-1, :])
        s_b[:, :-1, :] *= gb
        s_b[:, -1, :] = end_conductance(gb) * b[:, -1, :]
        np.subtract(s_b, i_dev, out=F[:, 1])
        F[:, 1, 1:, :] -= s_b[:, :-1, :]
    else:
        F[:, 1] = np.where(b != 0.0, np.inf, 0.0)
        s_b = np.cumsum(i_dev, axis=1)
    currents = s_b[:, -1, :].copy()
    scale = np.maximum(dev, np.maximum(batch_max(s_w), batch_max(s_b)))
    return F, currents, scale, dev


def drops_floor(u, b, dev, gw, gb):
    """Rounding floor (A) of max |F| for stored drops u and bit voltages b (B, R, C) and the
    largest device current dev (B,)."""
    return rounding_floor(gw, batch_max(u) if gw else 0.0, gb, batch_max(b) if gb else 0.0, dev)


def absolute_balance(i_dev, V, w, b, gw, gb):
    """:func:`branch_balance` for absolute word voltages w (B, R, C) and inputs V (B, R);
    the floor accounts for the rounding of the stored w (|x_w| = max(|V|, |w|))."""
    u = V[:, :, None] - w
    F, currents, scale, dev = branch_balance(i_dev, u, b, gw, gb)
    xw = np.maximum(batch_max(V), batch_max(w)) if gw else 0.0
    floor = rounding_floor(gw, xw, gb, batch_max(b) if gb else 0.0, dev)
    return F, currents, scale, floor


def relative(F, scale) -> np.ndarray:
    """max |F| / scale per batch entry (0 if both vanish, inf if only the scale does)."""
    fmax = batch_max(F)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(scale > 0, fmax / np.where(scale > 0, scale, 1.0),
                        np.where(fmax == 0, 0.0, np.inf))


def within(F, scale, floor, tol) -> np.ndarray:
    """max |F| <= max(tol * scale, floor) per batch entry."""
    return batch_max(F) <= np.maximum(tol * scale, floor)


def kcl_residual(G_or_cell, V, r_word, r_bit, word_voltages, bit_voltages,
                 relative: bool = False, *, word_drops=None, r_driver=0.0,
                 r_sense=0.0) -> np.ndarray:
    """KCL residual at every node, independent of the solvers.

    ``G_or_cell`` is a conductance array (R, C) in S or a cell callable (see
    :func:`~cosim.crossbar.nodal.solve_nonlinear`).  Returns an array of shape (2, R, C) (or
    (B, 2, R, C) for batched V): ``[0]`` the net current leaving each word node, ``[1]`` each
    bit node (A).  Nodes of a shorted line (r = 0) have residual 0 if they sit exactly at
    their forced voltage (V_i or 0 V) and +inf otherwise.  With ``relative=True`` the
    residuals are divided by the largest branch-current magnitude of that input.

    ``word_drops`` (V_i - w, as :attr:`NodalSolution.word_drops`) replaces
    ``word_voltages`` (pass None): the word segments are then evaluated from the drops,
    without the rounding of |V| that absolute word voltages carry (module docstring).
    ``r_driver`` / ``r_sense`` (ohm) are in series with the terminal segments.
    """
    gw = segment_conductance("r_word", r_word, "r_driver", r_driver)
    gb = segment_conductance("r_bit", r_bit, "r_sense", r_sense)
    if word_drops is not None:
        u = _validate.as_float_array("word_drops", word_drops, ndim=(2, 3))
    else:
        w = _validate.as_float_array("word_voltages", word_voltages, ndim=(2, 3))
    b = _validate.as_float_array("bit_voltages", bit_voltages, ndim=(2, 3))
    if callable(G_or_cell):
        R, C = b.shape[-2:]
    else:
        G = check_G(G_or_cell)
        R, C = G.shape
    Vb, single = check_V(V, R)
    Bn = Vb.shape[0]
    given = (("word_drops", u) if word_drops is not None else ("word_voltages", w),
             ("bit_voltages", b))
    for name, arr in given:
        if arr.shape[-2:] != (R, C) or (arr.ndim == 3 and arr.shape[0] != Bn):
            raise ValueError(f"{name} must have shape {(R, C)} or {(Bn, R, C)}, got {arr.shape}")
    b = np.broadcast_to(b, (Bn, R, C))
    if word_drops is not None:
        u = np.broadcast_to(u, (Bn, R, C))
        w = Vb[:, :, None] - u
    else:
        w = np.broadcast_to(w, (Bn, R, C))
        u = Vb[:, :, None] - w
    if callable(G_or_cell):
        i_dev = np.broadcast_to(np.asarray(G_or_cell(w, b)[0], dtype=float), (Bn, R, C))
    else:
        i_dev = G * (w - b)
    F, _, scale, _ = branch_balance(i_dev, u, b, gw, gb)
    if relative:
        with np.errstate(divide="ignore", invalid="ignore"):
            F = np.where(scale[:, None, None, None] > 0,
                         F / np.where(scale > 0, scale, 1.0)[:, None, None, None],
                         np.where(F == 0, 0.0, np.inf))
    return F[0] if (single and b.shape[0] == 1) else F


# ----------------------------------------------------------------------------- line matrices

def line_diagonals(g: float, nlines: int, length: int, first_open: bool) -> np.ndarray:
    """Diagonal (nlines, length) of the Laplacian of ``nlines`` chains of segments g (S).

    Every node has two segments (2 g) except the ends of the chain: the open end (one
    segment g) is the last node of a word line (``first_open=False``: the source is at
    position 0) or the first node of a bit line (``first_open=True``: the sense node is
    after position length-1); the node at the fixed end has g plus the terminal segment
    ``end_conductance(g)`` (a single node: that one alone).
    """
    d = np.full((nlines, length), 2.0 * g)
    d[:, -1 if first_open else 0] += end_conductance(g) - g
    d[:, 0 if first_open else -1] -= g
    return d


@functools.lru_cache(maxsize=8)
def _couplings(shape, off):
    """Off-diagonal of ``shape[0]`` concatenated chains: ``off`` inside a line, 0 between
    consecutive lines (read-only, cached: the same for every factorisation of a family)."""
    e = np.full(shape, off)
    e[:, -1] = 0.0
    e = e.ravel()[:-1]
    e.setflags(write=False)
    return e


class Lines:
    """Block-diagonal SPD tridiagonal matrix (independent chains of equal length L).

    ``diag`` (nlines, L) and the coupling ``off`` (S) between neighbours of every line (a
    scalar: all segments of a family are equal).  Factorised once with LAPACK dpttrf
    (L D L^T); ``solve`` and ``matvec`` batch over any leading axes.
    """

    def __init__(self, diag: np.ndarray, off: float):
        self.shape = diag.shape
        self._diag, self._off = diag, float(off)
        n = diag.size
        if n == 1:                         # LAPACK wrapper rejects an empty off-diagonal
            d, e, info = diag.ravel().copy(), np.zeros(0), int(not diag.ravel()[0] > 0)
        else:
            d, e, info = lapack.dpttrf(np.ascontiguousarray(diag).ravel(),
                                       _couplings(self.shape, self._off))
        if info != 0:
            raise SolverError(f"line matrix is not positive definite (dpttrf info={info})")
        self._d, self._e = d, e

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """rhs of any shape holding k * nlines * L values, each consecutive block of
        nlines * L one right-hand side (e.g. (..., nlines, L)) -> solution of that shape."""
        n = self._d.size
        bmat = np.ascontiguousarray(rhs).reshape(-1, n).T     # (n, nrhs), Fortran order
        if n == 1:
            return (bmat / self._d[0]).T.reshape(rhs.shape)
        x, info = lapack.dpttrs(self._d, self._e, bmat)
        if info != 0:
            raise SolverError(f"dpttrs failed (info={info})")
        return x.T.reshape(rhs.shape)

    def matvec(self, x: np.ndarray) -> np.ndarray:
        y = self._diag * x
        y[..., :-1] += self._off * x[..., 1:]
        y[..., 1:] += self._off * x[..., :-1]
        return y


def word_lines(G, gw) -> Lines:
    """Word-line blocks (R lines of C nodes): g_w chain (source at column 0) + diag(G)."""
    R, C = G.shape[-2:]
    return Lines((line_diagonals(gw, R, C, first_open=False) + G).reshape(-1, C), -gw)


def bit_lines(GT, gb) -> Lines:
    """Bit-line blocks from GT (C, R) (layout: line j, position i): g_b chain (sense node
    after row R-1) + diag(G[:, j])."""
    C, R = GT.shape[-2:]
    return Lines((line_diagonals(gb, C, R, first_open=True) + GT).reshape(-1, R), -gb)
