"""Exact nodal (KCL) solution of a crossbar array with line resistance (IR drop).

Topology (EQUATIONS.md section 5, the convention of the public tool badcrossbar)
-------------------------------------------------------------------------------
R word lines (rows) x C bit lines (columns); device (i, j) connects the word-line node
w(i, j) to the bit-line node b(i, j)::

    V_0 --r_w-- w(0,0) --r_w-- w(0,1) --r_w-- ... w(0,C-1)        (far end open)
                  |              |
                device         device
                  |              |
                b(0,0)         b(0,1)          (row-0 end of every bit line open)
                  r_b            r_b
    V_1 --r_w-- w(1,0) --r_w-- w(1,1) ...
                  |              |
                b(1,0)         b(1,1)
                  :              :
                b(R-1,0)       b(R-1,1)
                  r_b            r_b
                sense (0 V)    sense (0 V)   --> I_j flows into the sense node

* Word line i: the source V_i at the column-0 end, one segment ``r_word`` from the source
  to w(i, 0) and one between w(i, j) and w(i, j+1).
* Bit line j: one segment ``r_bit`` between b(i, j) and b(i+1, j) and one from b(R-1, j)
  to the sense node, held at 0 V.  The output current I_j is the current of that last
  segment (into the sense node).
* ``r_word = 0`` shorts every word node to its source (w(i, j) = V_i); ``r_bit = 0`` shorts
  every bit node to the sense node (b(i, j) = 0, I_j = sum of the cell currents).  Shorted
  nodes are eliminated exactly (never modelled with a huge conductance).  With both zero
  I = V @ G exactly.

Node ordering
-------------
The natural numbering of the 2*R*C unknowns is ``w(i, j) -> i*C + j`` followed by
``b(i, j) -> R*C + i*C + j``; node-voltage arrays are returned as (R, C) (or (B, R, C))
arrays ``word_voltages[i, j] = w(i, j)``, ``bit_voltages[i, j] = b(i, j)``.

The conductance graph is a 2-D grid in which the word nodes are chained along rows and
the bit nodes along columns; a column of word nodes (or a row of bit nodes) is a separator.
For sparse factorisations the unknowns are permuted by a geometric nested-dissection order
(:func:`nested_dissection_order`): recursive bisection of the (i, j) cell grid, splitting
the longer side; for a cut at column m the separator is {w(i, m)} and the chain {b(i, m)}
becomes an independent path, ordered just before the separator.  The permuted matrix is
factorised by SuperLU with the natural column order and no pivoting (SPD case).

Solvers
-------
* :func:`solve` / :class:`LinearArray` (linear devices, G in siemens).  Two exact methods:

  - ``"cg"``: the word nodes are eliminated exactly through the factorised tridiagonal
    word-line blocks (Schur complement on the bit nodes); the reduced SPD system is solved
    by conjugate gradients preconditioned with the factorised tridiagonal bit-line blocks
    (LAPACK ``dpttrf``/``dpttrs``; one factorisation per line family, reused for every
    right-hand side and iteration).  Iterates until the relative KCL residual (below) is
    <= ``tol / 10`` (or a tenth of the rounding floor), and the final answer is checked
    against ``tol`` (or the floor) with an independent residual evaluation; if CG does not get there the direct method is used.
  - ``"direct"``: one sparse factorisation (nested dissection + SuperLU) of the full SPD
    nodal matrix, reused for all right-hand sides.

  :meth:`LinearArray.transfer_matrix` uses neither: it marches along the longer side with
  dense min(R, C) x min(R, C) blocks of bit-line load in word-line-drop variables
  (:func:`_transfer_blocks`, exact to a few ulps, verified on a probe input) and falls back to
  the factorisation only if that fails.

  ``"auto"`` (default) uses the cached factorisation if there is one, CG for up to
  ``cg_max_batch`` input vectors and the factorisation otherwise.  If either r is zero the
  remaining lines decouple into independent tridiagonal systems solved directly.
* :func:`solve_nonlinear`: damped Newton with a sparse LU inner step for arbitrary
  two-terminal cells ``cell(v_w, v_b) -> (i, di/dv_w, di/dv_b)``.
* :func:`kcl_residual`: the KCL residual at every node, independent of the solvers.

Residual definition
-------------------
F(node) is the net current leaving a node (A).  The *relative* KCL residual is
``max |F| / I_scale`` with ``I_scale`` the largest branch-current magnitude of the array:
all device currents and all line-segment currents, including the source segments
(V_i -> w(i, 0)) and the sense segments (b(R-1, j) -> sense).  In a shorted line (r = 0) the
segment currents follow from KCL (partial sums of the cell currents).  If ``I_scale`` is 0
the relative residual is 0 when F is exactly 0 and infinite otherwise.  For a batch the
maximum over the batch is reported.

Rounding floor: node voltages are stored as absolute doubles, so even the correctly rounded
exact solution has a KCL residual of about eps * g * |v| per segment (g = 1/r).  When the
devices carry small currents compared with g * |V| (short lines, 1 ohm segments, uS devices)
this exceeds 1e-12 of the largest branch current.  Every solver therefore accepts a solution
when ``max |F| <= max(tol * I_scale, floor)`` with the absolute floor
``4 eps (2 g_w max(|V|, |w|) + 2 g_b max |b| + max |i_dev|)``; the relative value of the floor
is reported as ``NodalSolution.residual_floor`` (``residual`` itself is never adjusted).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.linalg import lapack

from cosim import _validate
from cosim.errors import SolverError

__all__ = [
    "NodalSolution",
    "LinearArray",
    "solve",
    "solve_nonlinear",
    "kcl_residual",
    "nested_dissection_order",
]

_CG_TOL_FACTOR = 0.1      # CG stops at tol * this, then verifies against tol
_CG_MAX_ITER = 500
_SOLVE_CHUNK = 32         # right-hand sides per SuperLU solve call
_EPS = np.finfo(float).eps
_FLOOR_ULPS = 4.0


@dataclass
class NodalSolution:
    """Result of a nodal solve.

    currents: (C,) or (B, C) output currents into the sense nodes (A).
    word_voltages, bit_voltages: (R, C) or (B, R, C) node voltages (V).
    residual: maximum relative KCL residual (see the module docstring).
    iterations: Newton iterations (nonlinear, summed over a batch) or CG iterations
        (linear ``"cg"``, maximum over the batch); 0 for direct solves.
    method: which solver produced the result.
    residual_floor: the rounding floor of ``residual`` for this array and these voltages
        (module docstring); a solve is accepted when residual <= max(tol, residual_floor).
    """

    currents: np.ndarray
    word_voltages: np.ndarray
    bit_voltages: np.ndarray
    residual: float
    iterations: int = 0
    method: str = ""
    residual_floor: float = 0.0


# ----------------------------------------------------------------------------- validation

def _check_G(G) -> np.ndarray:
    G = _validate.as_float_array("G", G, ndim=2)
    if G.shape[0] < 1 or G.shape[1] < 1:
        raise ValueError(f"G must have at least one row and one column, got shape {G.shape}")
    if np.any(G < 0):
        raise ValueError("G must be >= 0 everywhere (conductances in siemens)")
    return np.ascontiguousarray(G)


def _check_r(name: str, r) -> float:
    return _validate.positive(name, r, allow_zero=True)


def _check_V(V, R: int) -> tuple[np.ndarray, bool]:
    """Return V as (B, R) and whether the input was a single vector."""
    V = _validate.as_float_array("V", V, ndim=(1, 2))
    if V.shape[-1] != R:
        raise ValueError(f"V must have {R} entries along its last axis (one per word line), "
                         f"got shape {V.shape}")
    single = V.ndim == 1
    return np.ascontiguousarray(V.reshape(-1, R)), single


def _check_shape(shape) -> tuple[int, int]:
    try:
        R, C = (int(s) for s in shape)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"shape must be a pair (R, C), got {shape!r}") from exc
    if R < 1 or C < 1:
        raise ValueError(f"shape must be positive, got {shape!r}")
    return R, C


# ----------------------------------------------------------------------------- ordering

@functools.lru_cache(maxsize=16)
def nested_dissection_order(R: int, C: int, leaf: int = 16) -> np.ndarray:
    """Nested-dissection permutation of the 2*R*C nodes (natural numbering, see module doc).

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


# ----------------------------------------------------------------------------- residuals

def _currents_and_residual(i_dev, V, w, b, gw, gb):
    """KCL bookkeeping shared by every solver and by :func:`kcl_residual`.

    i_dev, w, b: (B, R, C); V: (B, R).  gw / gb are the segment conductances, 0 meaning a
    shorted line (r = 0).  Returns (F, currents, scale, shorted_mismatch) with F (B, 2, R, C)
    the net current leaving each node, currents (B, C), scale (B,) the largest branch current.
    """
    Bn, R, C = i_dev.shape
    F = np.zeros((Bn, 2, R, C))
    dev_abs = np.abs(i_dev).reshape(Bn, -1).max(axis=1)
    bad = np.zeros((Bn, 2, R, C), dtype=bool)
    if gw > 0:
        wl = np.concatenate([V[:, :, None], w[:, :, :-1]], axis=2)
        s_w = gw * (wl - w)                      # segment current into w(i, j) from the left
        Fw = i_dev - s_w
        Fw[:, :, :-1] += s_w[:, :, 1:]
        F[:, 0] = Fw
        seg_w = np.abs(s_w).reshape(Bn, -1).max(axis=1)
    else:
        bad[:, 0] = w != V[:, :, None]
        # segment currents of a shorted word line: partial sums from the far end
        s_w = np.cumsum(i_dev[:, :, ::-1], axis=2)
        seg_w = np.abs(s_w).reshape(Bn, -1).max(axis=1)
    if gb > 0:
        bd = np.concatenate([b[:, 1:, :], np.zeros((Bn, 1, C))], axis=1)
        s_b = gb * (b - bd)                      # segment current from b(i, j) downwards
        Fb = s_b - i_dev
        Fb[:, 1:, :] -= s_b[:, :-1, :]
        F[:, 1] = Fb
        currents = s_b[:, -1, :].copy()
        seg_b = np.abs(s_b).reshape(Bn, -1).max(axis=1)
    else:
        bad[:, 1] = b != 0.0
        s_b = np.cumsum(i_dev, axis=1)
        currents = s_b[:, -1, :].copy()
        seg_b = np.abs(s_b).reshape(Bn, -1).max(axis=1)
    if bad.any():
        F[bad] = np.inf
    scale = np.maximum(dev_abs, np.maximum(seg_w, seg_b))
    vw = np.maximum(np.abs(V).max(axis=1), np.abs(w).reshape(Bn, -1).max(axis=1)) if gw else 0.0
    vb = np.abs(b).reshape(Bn, -1).max(axis=1) if gb else 0.0
    floor = _FLOOR_ULPS * _EPS * (2.0 * gw * vw + 2.0 * gb * vb + dev_abs)
    return F, currents, scale, floor


def _converged(F, scale, floor, tol) -> np.ndarray:
    Bn = F.shape[0]
    fmax = np.abs(F).reshape(Bn, -1).max(axis=1)
    return fmax <= np.maximum(tol * scale, floor)


def _relative(F, scale) -> np.ndarray:
    Bn = F.shape[0]
    fmax = np.abs(F).reshape(Bn, -1).max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(scale > 0, fmax / np.where(scale > 0, scale, 1.0),
                       np.where(fmax == 0, 0.0, np.inf))
    return rel


def kcl_residual(G_or_cell, V, r_word, r_bit, word_voltages, bit_voltages,
                 relative: bool = False) -> np.ndarray:
    """KCL residual at every node, independent of the solvers.

    ``G_or_cell`` is a conductance array (R, C) or a cell callable (see
    :func:`solve_nonlinear`).  Returns an array of shape (2, R, C) (or (B, 2, R, C) for batched
    V): ``[0]`` the net current leaving each word node, ``[1]`` each bit node (A).  Nodes of a
    shorted line (r = 0) have residual 0 if they sit exactly at their forced voltage (V_i or
    0 V) and +inf otherwise.  With ``relative=True`` the residuals are divided by the largest
    branch-current magnitude of that input (module docstring).
    """
    r_word = _check_r("r_word", r_word)
    r_bit = _check_r("r_bit", r_bit)
    w = _validate.as_float_array("word_voltages", word_voltages, ndim=(2, 3))
    b = _validate.as_float_array("bit_voltages", bit_voltages, ndim=(2, 3))
    if callable(G_or_cell):
        R, C = w.shape[-2:]
        Vb, single = _check_V(V, R)
    else:
        G = _check_G(G_or_cell)
        R, C = G.shape
        Vb, single = _check_V(V, R)
    Bn = Vb.shape[0]
    for name, arr in (("word_voltages", w), ("bit_voltages", b)):
        if arr.shape[-2:] != (R, C) or (arr.ndim == 3 and arr.shape[0] != Bn):
            raise ValueError(f"{name} must have shape {(R, C)} or {(Bn, R, C)}, got {arr.shape}")
    w = np.broadcast_to(w, (Bn, R, C))
    b = np.broadcast_to(b, (Bn, R, C))
    if callable(G_or_cell):
        i_dev = np.broadcast_to(np.asarray(G_or_cell(w, b)[0], dtype=float), (Bn, R, C))
    else:
        i_dev = G * (w - b)
    gw = 1.0 / r_word if r_word > 0 else 0.0
    gb = 1.0 / r_bit if r_bit > 0 else 0.0
    F, _, scale, _ = _currents_and_residual(i_dev, Vb, w, b, gw, gb)
    if relative:
        with np.errstate(divide="ignore", invalid="ignore"):
            F = np.where(scale[:, None, None, None] > 0,
                         F / np.where(scale > 0, scale, 1.0)[:, None, None, None],
                         np.where(F == 0, 0.0, np.inf))
    return F[0] if (single and w.shape[0] == 1) else F


# ----------------------------------------------------------------------------- tridiagonal blocks

class _Lines:
    """Block-diagonal SPD tridiagonal matrix (independent chains of equal length L).

    ``diag`` and ``off`` are (nlines, L); ``off[:, k]`` couples positions k and k+1 of a line
    (its last column is ignored).  Factorised once with LAPACK dpttrf (L D L^T).
    """

    def __init__(self, diag: np.ndarray, off: np.ndarray):
        self.shape = diag.shape
        e = np.array(off, dtype=float, copy=True)
        e[:, -1] = 0.0
        if diag.size == 1:                 # LAPACK wrapper rejects an empty off-diagonal
            d, e, info = diag.ravel().copy(), np.zeros(0), int(not diag.ravel()[0] > 0)
        else:
            d, e, info = lapack.dpttrf(np.ascontiguousarray(diag).ravel(), e.ravel()[:-1])
        if info != 0:
            raise SolverError(f"line matrix is not positive definite (dpttrf info={info})")
        self._d, self._e = d, e
        self._A = (diag, off)

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """rhs (..., nlines, L) -> solution of the same shape (all leading axes batched)."""
        lead = rhs.shape[:-2]
        n = self.shape[0] * self.shape[1]
        bmat = np.ascontiguousarray(rhs).reshape(-1, n).T     # (n, nrhs), Fortran order
        if n == 1:
            return (bmat / self._d[0]).T.reshape(lead + self.shape)
        x, info = lapack.dpttrs(self._d, self._e, bmat)
        if info != 0:
            raise SolverError(f"dpttrs failed (info={info})")
        return x.T.reshape(lead + self.shape)

    def matvec(self, x: np.ndarray) -> np.ndarray:
        diag, off = self._A
        y = diag * x
        y[..., :-1] += off[:, :-1] * x[..., 1:]
        y[..., 1:] += off[:, :-1] * x[..., :-1]
        return y


# ----------------------------------------------------------------------------- transfer matrix

_BLOCK_MAX = 320          # largest dense block (min(R, C)) of the column-marching method
_BLOCK_MEM = 2 ** 28      # bytes of stored block factors (16 m^2 n) allowed for that method


def _bit_line_green(GT: np.ndarray, gb: float):
    """Inverse of every bit-line block T_j = L_b + diag(G[:, j]) in semiseparable form.

    GT (C, R).  Returns (a, bv, t) of shape (C, R) with ``T_j^{-1}[k, l] = a[j, min(k, l)] *
    bv[j, max(k, l)]`` and ``t[j] = gb T_j^{-1} e_{R-1}``, or None if the products
    under/overflow.  Built from the (positive) load conductances looking up (alpha) and down
    (beta) the line, so every quantity is a sum or product of positive numbers: no
    cancellation, relative accuracy ~ R eps even when G << g_b.
    """
    C, R = GT.shape
    alpha = np.zeros((C, R))                     # load above node k (excluding node k)
    beta = np.empty((C, R))                      # load below node k (to the sense node)
    beta[:, R - 1] = gb
    for k in range(1, R):
        y = alpha[:, k - 1] + GT[:, k - 1]
        alpha[:, k] = gb * y / (gb + y)
    for k in range(R - 2, -1, -1):
        y = beta[:, k + 1] + GT[:, k + 1]
        beta[:, k] = gb * y / (gb + y)
    diag = 1.0 / (alpha + beta + GT)             # T^{-1}[l, l]
    rho = gb / (gb + alpha + GT)                 # x_k / x_{k+1} above a unit source
    P = np.ones((C, R))
    np.cumprod(rho[:, :-1], axis=1, out=P[:, 1:])    # P_k = prod_{m<k} rho_m
    t = np.cumprod(rho[:, ::-1], axis=1)[:, ::-1]    # prod_{m>=k} rho_m = gb T^{-1} e_last
    if not (np.all(np.isfinite(diag)) and P.min() > 1e-150 and np.all(np.isfinite(t))):
        return None
    return 1.0 / P, diag * P, t


def _transfer_blocks(G: np.ndarray, gw: float, gb: float, tol: float):
    """Exact transfer matrix of an R x C array with R <= C (both lines resistive), or None.

    Column marching with dense R x R blocks in "drop" variables.  Eliminating bit line j
    (tridiagonal T_j) leaves the word nodes of column j loaded by the SPD conductance matrix
    K_j = D - D T_j^{-1} D (D = diag G[:, j]).  With the word-line drops u = V - w the word
    system reads  chain_gw(u) + K_j u_j = K_j V  (block tridiagonal, -gw I off the diagonal,
    u = 0 at the source).  Eliminating from the open end, the load seen from column j is
    Z_j = K_j + gw S_{j+1}^{-1} Z_{j+1} (S = gw I + Z, Z_{C-1} = K_{C-1}; the same recursion
    gives the reduced right-hand side, which is therefore Z_j V); then u_j = U_j V with
    U_j = S_j^{-1} (Z_j + gw U_{j-1}), U_{-1} = 0.  The output is I_j = c_j . (V - u_j) with
    c_j = G[:, j] * gb T_j^{-1} e_{R-1}, so M[:, j] = c_j - U_j^T c_j.  Every matrix formed is a
    small load (never a huge conductance minus a huge conductance), so the result is accurate
    to a few ulps even for G << 1/r, where a plain factorisation of the nodal matrix loses
    several digits.  Cost ~ 4.3 R^3 C flops (Cholesky + solves of the R x R blocks).

    The result is verified once on a probe input: the node voltages are rebuilt from the
    same recursion, the bit nodes solved independently (dpttrf/dpttrs), and the full KCL
    residual must meet ``tol`` (or its rounding floor) and ``v @ M`` must equal the output
    currents of that solution.  Returns None if anything fails (caller falls back).
    """
    R, C = G.shape
    GT = np.ascontiguousarray(G.T)
    green = _bit_line_green(GT, gb)
    if green is None:
        return None
    a, bv, t = green
    ga, gbv = GT * a, GT * bv
    cvec = GT * t                                # (C, R): c_j
    upper = np.triu(np.ones((R, R), dtype=bool))
    diag_idx = np.arange(R)
    eye_gw = gw * np.eye(R)

    def load(j):                                 # K_j = D - D T_j^{-1} D (dense, symmetric)
        O = np.multiply.outer(ga[j], gbv[j])
        K = np.where(upper, O, O.T)
        np.negative(K, out=K)
        K[diag_idx, diag_idx] += GT[j]
        return K

    potrf, potrs = lapack.dpotrf, lapack.dpotrs
    chol = [None] * C
    Q = [None] * C
    Z = load(C - 1)
    for j in range(C - 1, -1, -1):
        c, info = potrf(Z + eye_gw, lower=0, clean=0, overwrite_a=1)
        if info != 0:
            return None
        q, info = potrs(c, Z)
        if info != 0:
            return None
        chol[j], Q[j] = c, q
        if j:
            Z = load(j - 1)
            Z += gw * q
    rng = np.random.default_rng(0x5EED)
    v = rng.uniform(-1.0, 1.0, R)
    M = np.empty((R, C))
    u = np.empty((R, C))                         # drops of the probe input
    U = Q[0]
    M[:, 0] = cvec[0] - cvec[0] @ U
    u[:, 0] = U @ v
    for j in range(1, C):
        y, info = potrs(chol[j], U)
        if info != 0:
            return None
        y *= gw
        y += Q[j]
        U = y
        M[:, j] = cvec[j] - cvec[j] @ U
        u[:, j] = U @ v
    if not np.all(np.isfinite(M)):
        return None
    # ---- verification on the probe input
    w = v[:, None] - u
    db = np.full((C, R), 2.0 * gb)
    db[:, 0] = gb
    bit = _Lines(db + GT, np.full((C, R), -gb))
    b = bit.solve((GT * w.T)[None])[0].T         # T_j b_j = G_j w_j
    F, cur, scale, fl = _currents_and_residual((G * (w - b))[None], v[None], w[None], b[None],
                                               gw, gb)
    if not _converged(F, scale, fl, tol)[0]:
        return None
    if not np.abs(v @ M - cur[0]).max() <= max(tol * scale[0], fl[0]):
        return None
    return M


# ----------------------------------------------------------------------------- linear arrays

def _nodal_matrix_coo(G, gw, gb, di_dvw=None, di_dvb=None):
    """COO triplets of the nodal matrix (or Newton Jacobian) in natural numbering.

    Linear case: di_dvw = G, di_dvb = -G.  Unknown classes with g = 0 are absent; the
    numbering then is w only (row-major) or b only (still indexed i*C + j).
    Returns rows, cols, vals, n_unknowns, offset of the b block.
    """
    R, C = G.shape
    N = R * C
    if di_dvw is None:
        di_dvw, di_dvb = G, -G
    idx = np.arange(N).reshape(R, C)
    rows, cols, vals = [], [], []
    has_w, has_b = gw > 0, gb > 0
    boff = N if has_w else 0
    if has_w:
        dw = np.full((R, C), 2.0 * gw)
        dw[:, -1] = gw
        dw = dw + di_dvw
        rows += [idx.ravel(), idx[:, :-1].ravel(), idx[:, 1:].ravel()]
        cols += [idx.ravel(), idx[:, 1:].ravel(), idx[:, :-1].ravel()]
        off = np.full(R * (C - 1), -gw)
        vals += [dw.ravel(), off, off]
    if has_b:
        db = np.full((R, C), 2.0 * gb)
        db[0, :] = gb
        db = db - di_dvb
        bi = idx + boff
        rows += [bi.ravel(), bi[:-1, :].ravel(), bi[1:, :].ravel()]
        cols += [bi.ravel(), bi[1:, :].ravel(), bi[:-1, :].ravel()]
        off = np.full((R - 1) * C, -gb)
        vals += [db.ravel(), off, off]
    if has_w and has_b:
        rows += [idx.ravel(), idx.ravel() + boff]
        cols += [idx.ravel() + boff, idx.ravel()]
        vals += [np.broadcast_to(di_dvb, (R, C)).ravel(), -np.broadcast_to(di_dvw, (R, C)).ravel()]
    n = (N if has_w else 0) + (N if has_b else 0)
    return (np.concatenate(rows), np.concatenate(cols),
            np.concatenate([np.asarray(v, dtype=float).ravel() for v in vals]), n, boff)


def _ordering(R, C, has_w, has_b) -> np.ndarray:
    """Fill-reducing order of the unknowns present (see _nodal_matrix_coo numbering)."""
    if has_w and has_b:
        return nested_dissection_order(R, C)
    if has_w:
        return np.arange(R * C)                     # word chains are contiguous row-major
    return np.arange(R * C).reshape(R, C).T.ravel()  # bit chains: column-major


class LinearArray:
    """A programmed crossbar of linear devices with line resistance.

    ``G`` (R, C) conductances in siemens (>= 0), ``r_word`` / ``r_bit`` segment resistances in
    ohms (>= 0).  Line factorisations are built at construction (cheap); the factorisation of
    the full nodal matrix is built on first need and cached, as is the transfer matrix.
    """

    def __init__(self, G, r_word, r_bit, *, tol: float = 1e-12, cg_max_batch: int = 8):
        self.G = _check_G(G)
        self.r_word = _check_r("r_word", r_word)
        self.r_bit = _check_r("r_bit", r_bit)
        self.tol = _validate.positive("tol", tol)
        self.cg_max_batch = _validate.integer("cg_max_batch", cg_max_batch, minimum=0)
        self.shape = self.G.shape
        R, C = self.shape
        self.gw = 1.0 / self.r_word if self.r_word > 0 else 0.0
        self.gb = 1.0 / self.r_bit if self.r_bit > 0 else 0.0
        G = self.G
        self._word = self._bit = None
        if self.gw > 0:                              # word chains, layout (R, C)
            dw = np.full((R, C), 2.0 * self.gw)
            dw[:, -1] = self.gw
            self._word = _Lines(dw + G, np.full((R, C), -self.gw))
        if self.gb > 0:                              # bit chains, layout (C, R)
            GT = np.ascontiguousarray(G.T)
            db = np.full((C, R), 2.0 * self.gb)
            db[:, 0] = self.gb
            self._GT = GT
            self._bit = _Lines(db + GT, np.full((C, R), -self.gb))
        self._lu = None
        self._perm = None
        self._M = None

    # -- full factorisation -------------------------------------------------------------
    def _factor(self):
        if self._lu is None:
            R, C = self.shape
            rows, cols, vals, n, _ = _nodal_matrix_coo(self.G, self.gw, self.gb)
            p = _ordering(R, C, True, True)
            inv = np.empty(n, dtype=np.int64)
            inv[p] = np.arange(n)
            A = sp.csc_matrix((vals, (inv[rows], inv[cols])), shape=(n, n))
            self._lu = spla.splu(A, permc_spec="NATURAL", diag_pivot_thresh=0.0,
                                 options=dict(SymmetricMode=True))
            self._perm = p
        return self._lu

    def _solve_factor(self, rhs: np.ndarray) -> np.ndarray:
        """rhs (n, k) in natural numbering -> solution (n, k)."""
        lu = self._factor()
        p = self._perm
        x = np.empty_like(rhs)
        x[p] = lu.solve(np.asfortranarray(rhs[p]))
        return x

    # -- solves -------------------------------------------------------------------------
    def solve(self, V, method: str = "auto") -> NodalSolution:
        """Node voltages and output currents for input voltages V of shape (R,) or (B, R)."""
        method = _validate.choice("method", method, {"auto", "cg", "direct"})
        R, C = self.shape
        Vb, single = _check_V(V, R)
        Bn = Vb.shape[0]
        G = self.G
        iters = 0
        if self.gw == 0 and self.gb == 0:
            w = np.broadcast_to(Vb[:, :, None], (Bn, R, C)).copy()
            b = np.zeros((Bn, R, C))
            used = "exact"
        elif self.gw == 0:
            w = np.broadcast_to(Vb[:, :, None], (Bn, R, C)).copy()
            b = self._bit.solve(self._GT[None] * Vb[:, None, :]).transpose(0, 2, 1)
            used = "lines"
        elif self.gb == 0:
            s = np.zeros((Bn, R, C))
            s[:, :, 0] = self.gw * Vb
            w = self._word.solve(s)
            b = np.zeros((Bn, R, C))
            used = "lines"
        else:
            if method == "auto":
                method = "direct" if (self._lu is not None or Bn > self.cg_max_batch) else "cg"
            w = b = None
            if method == "cg":
                w, b, iters = self._solve_cg(Vb)
                used = "cg"
            if w is None:
                n = 2 * R * C
                w = np.empty((Bn, R, C))
                b = np.empty((Bn, R, C))
                for k0 in range(0, Bn, _SOLVE_CHUNK):
                    k1 = min(Bn, k0 + _SOLVE_CHUNK)
                    rhs = np.zeros((n, k1 - k0))
                    rhs[np.arange(R) * C, :] = self.gw * Vb[k0:k1].T
                    x = self._solve_factor(rhs)
                    w[k0:k1] = x[:R * C].T.reshape(-1, R, C)
                    b[k0:k1] = x[R * C:].T.reshape(-1, R, C)
                used = "direct"
        if used == "exact":
            i_dev = G * w
            currents = Vb @ G
            res = np.zeros(Bn)
            floor = np.zeros(Bn)
        else:
            i_dev = G * (w - b)
            F, currents, scale, fl = _currents_and_residual(i_dev, Vb, w, b, self.gw, self.gb)
            res = _relative(F, scale)
            floor = _relative(np.broadcast_to(fl[:, None], (Bn, 1)), scale)
        if single:
            return NodalSolution(currents[0], w[0], b[0], float(res.max()), iters, used,
                                 float(floor.max()))
        return NodalSolution(currents, w, b, float(res.max()), iters, used, float(floor.max()))

    def _solve_cg(self, Vb):
        """Schur complement on the bit nodes + preconditioned CG; None if not converged."""
        R, C = self.shape
        Bn = Vb.shape[0]
        G, GT, gw, gb = self.G, self._GT, self.gw, self.gb
        word, bit = self._word, self._bit
        s = np.zeros((Bn, R, C))
        s[:, :, 0] = gw * Vb
        inner = self.tol * _CG_TOL_FACTOR
        x = np.zeros((Bn, C, R))                    # bit voltages, layout (C, R)
        total = 0
        for _restart in range(3):
            w = word.solve(s + G * x.transpose(0, 2, 1))
            # true Schur residual  r = G w - A_bb x   (b-node KCL with the sign flipped)
            r = GT * w.transpose(0, 2, 1) - bit.matvec(x)
            active = np.ones(Bn, dtype=bool)
            z = bit.solve(r)
            p = z.copy()
            rz = np.einsum("kij,kij->k", r, z)
            while total < _CG_MAX_ITER:
                # convergence test on the current iterate
                idev = np.abs(G * (w - x.transpose(0, 2, 1))).reshape(Bn, -1).max(axis=1)
                isense = np.abs(gb * x[:, :, -1]).max(axis=1)
                isrc = np.abs(gw * (Vb - w[:, :, 0])).max(axis=1)
                scale = np.maximum(idev, np.maximum(isense, isrc))
                floor = _FLOOR_ULPS * _EPS * (2.0 * gw * np.maximum(
                    np.abs(Vb).max(axis=1), np.abs(w).reshape(Bn, -1).max(axis=1))
                    + 2.0 * gb * np.abs(x).reshape(Bn, -1).max(axis=1) + idev)
                rmax = np.abs(r).reshape(Bn, -1).max(axis=1)
                active = rmax > np.maximum(inner * scale, 0.1 * floor)
                if not active.any():
                    break
                total += 1
                u = word.solve(G * p.transpose(0, 2, 1))
                q = bit.matvec(p) - GT * u.transpose(0, 2, 1)
                pq = np.einsum("kij,kij->k", p, q)
                alpha = np.where(active & (pq > 0), rz / np.where(pq > 0, pq, 1.0), 0.0)
                a3 = alpha[:, None, None]
                x += a3 * p
                w += a3 * u
                r -= a3 * q
                z = bit.solve(r)
                rz_new = np.einsum("kij,kij->k", r, z)
                beta = np.where(active & (rz > 0), rz_new / np.where(rz > 0, rz, 1.0), 0.0)
                rz = rz_new
                p *= beta[:, None, None]
                p += z
            # independent check of the full KCL residual with w recomputed exactly
            w = word.solve(s + G * x.transpose(0, 2, 1))
            b = x.transpose(0, 2, 1).copy()
            F, _, scale, fl = _currents_and_residual(G * (w - b), Vb, w, b, gw, gb)
            if np.all(_converged(F, scale, fl, self.tol)):
                return w, b, total
            if total >= _CG_MAX_ITER:
                break
        return None, None, total

    def transfer_matrix(self) -> np.ndarray:
        """M (R, C) with ``currents = V @ M`` for any input V (the read is linear in V).

        Computed once and cached; the returned array is read-only.  With both lines
        resistive it is built by column marching with dense min(R, C)-sized blocks
        (:func:`_transfer_blocks`; for R > C on the mirrored array, below), verified on a probe
        input, and otherwise (or when min(R, C) > ``_BLOCK_MAX`` or the 2 m^2 n stored block
        factors would exceed ``_BLOCK_MEM`` bytes) from the cached factorisation
        (min(R, C) solves, by reciprocity).

        Mirror: relabelling word line i as bit line R-1-i and bit line j as word line C-1-j
        maps the array (G, r_word, r_bit) onto (G[::-1, ::-1].T, r_bit, r_word) with the same
        nodal matrix; by reciprocity (M[i, j] = g_w g_b A^{-1}[w(i, 0), b(R-1, j)]) its
        transfer matrix is M[::-1, ::-1].T.
        """
        if self._M is not None:
            return self._M
        R, C = self.shape
        G, gw, gb = self.G, self.gw, self.gb
        if gw == 0 and gb == 0:
            M = G.copy()
        elif gw == 0:
            e = np.zeros((C, R))
            e[:, -1] = 1.0
            y = self._bit.solve(e)                  # T_j^{-1} e_last, layout (C, R)
            M = gb * G * y.T
        elif gb == 0:
            e = np.zeros((R, C))
            e[:, 0] = 1.0
            y = self._word.solve(e)                 # T_i^{-1} e_0, layout (R, C)
            M = gw * G * y
        else:
            M = None
            m, nb = min(R, C), max(R, C)
            if m <= _BLOCK_MAX and 16 * m * m * nb <= _BLOCK_MEM:
                if R <= C:
                    M = _transfer_blocks(G, gw, gb, self.tol)
                else:                               # the mirrored array (see docstring)
                    Mt = _transfer_blocks(np.ascontiguousarray(G[::-1, ::-1].T), gb, gw,
                                          self.tol)
                    M = None if Mt is None else Mt[::-1, ::-1].T
        if M is None:
            n, N = 2 * R * C, R * C
            M = np.empty((R, C))
            src = np.arange(R) * C                  # w(i, 0)
            sense = N + (R - 1) * C + np.arange(C)  # b(R-1, j)
            if R <= C:
                for k0 in range(0, R, _SOLVE_CHUNK):
                    k1 = min(R, k0 + _SOLVE_CHUNK)
                    rhs = np.zeros((n, k1 - k0))
                    rhs[src[k0:k1], np.arange(k1 - k0)] = gw
                    M[k0:k1, :] = gb * self._solve_factor(rhs)[sense].T
            else:
                for k0 in range(0, C, _SOLVE_CHUNK):
                    k1 = min(C, k0 + _SOLVE_CHUNK)
                    rhs = np.zeros((n, k1 - k0))
                    rhs[sense[k0:k1], np.arange(k1 - k0)] = gb
                    M[:, k0:k1] = gw * self._solve_factor(rhs)[src]
        M = np.ascontiguousarray(M)
        M.setflags(write=False)
        self._M = M
        return M


def solve(G, V, r_word, r_bit, *, method: str = "auto", tol: float = 1e-12) -> NodalSolution:
    """Solve a linear crossbar (G (R, C) in S) for inputs V (R,) or (B, R).

    See :class:`LinearArray` and the module docstring for the methods and the residual.
    """
    return LinearArray(G, r_word, r_bit, tol=tol).solve(V, method=method)


# ----------------------------------------------------------------------------- nonlinear

def _call_cell(cell, w, b):
    out = cell(w, b)
    try:
        i, dw, db = out
    except (TypeError, ValueError) as exc:
        raise TypeError("cell must return a tuple (i, di_dvw, di_dvb)") from exc
    shp = w.shape
    return tuple(np.broadcast_to(np.asarray(a, dtype=float), shp) for a in (i, dw, db))


def _initial_arrays(initial, Bn, R, C):
    if initial is None:
        return None
    if isinstance(initial, NodalSolution):
        w, b = initial.word_voltages, initial.bit_voltages
    else:
        try:
            w, b = initial
        except (TypeError, ValueError) as exc:
            raise ValueError("initial must be a NodalSolution or a pair "
                             "(word_voltages, bit_voltages)") from exc
    w = _validate.as_float_array("initial", w, ndim=(2, 3))
    b = _validate.as_float_array("initial", b, ndim=(2, 3))
    for arr in (w, b):
        if arr.shape[-2:] != (R, C) or (arr.ndim == 3 and arr.shape[0] not in (1, Bn)):
            raise ValueError(f"initial node voltages must have shape {(R, C)} or "
                             f"{(Bn, R, C)}, got {arr.shape}")
    return np.broadcast_to(w, (Bn, R, C)), np.broadcast_to(b, (Bn, R, C))


def solve_nonlinear(cell, V, r_word, r_bit, shape, initial=None, tol: float = 1e-12,
                    max_iter: int = 100) -> NodalSolution:
    """Damped Newton solve of a crossbar of nonlinear two-terminal cells.

    ``cell(v_w, v_b)`` takes arrays (..., R, C) of word- and bit-node voltages and returns
    ``(i, di_dvw, di_dvb)``: the current from the word node to the bit node through each
    device and its partial derivatives (the Jacobian need not be symmetric).

    All unknown node voltages (2*R*C, fewer when a line is shorted) are solved together.
    Each step solves J d = -F with a sparse LU (SuperLU on the nested-dissection ordering,
    threshold pivoting), then backtracks (alpha = 1, 1/2, ...) until
    ``||F(x + alpha d)||_2 <= (1 - 1e-4 alpha) ||F(x)||_2`` (non-finite trial values are
    rejected).  Converged when ``max |F| <= max(tol * I_scale, floor)`` (relative KCL residual
    and rounding floor, module docstring).  Batched V (B, R) is solved row by row, each warm-started from the previous
    solution unless ``initial`` (a NodalSolution or (word_voltages, bit_voltages)) is given;
    the default start is w = V_i, b = 0.  Raises SolverError (with the residual) on failure.
    """
    if not callable(cell):
        raise TypeError("cell must be callable: cell(v_w, v_b) -> (i, di_dvw, di_dvb)")
    R, C = _check_shape(shape)
    Vb, single = _check_V(V, R)
    r_word = _check_r("r_word", r_word)
    r_bit = _check_r("r_bit", r_bit)
    tol = _validate.positive("tol", tol)
    max_iter = _validate.integer("max_iter", max_iter, minimum=1)
    Bn = Vb.shape[0]
    init = _initial_arrays(initial, Bn, R, C)
    gw = 1.0 / r_word if r_word > 0 else 0.0
    gb = 1.0 / r_bit if r_bit > 0 else 0.0

    W = np.empty((Bn, R, C))
    Bv = np.empty((Bn, R, C))
    I = np.empty((Bn, C))
    res = np.empty(Bn)
    flo = np.empty(Bn)
    total = 0
    prev = None
    for k in range(Bn):
        if init is not None:
            w0, b0 = init[0][k].copy(), init[1][k].copy()
        elif prev is not None:
            w0, b0 = prev[0].copy(), prev[1].copy()
        else:
            w0 = np.broadcast_to(Vb[k][:, None], (R, C)).copy()
            b0 = np.zeros((R, C))
        w, b, cur, r, fl, it = _newton(cell, Vb[k], gw, gb, w0, b0, tol, max_iter)
        W[k], Bv[k], I[k], res[k], flo[k] = w, b, cur, r, fl
        total += it
        prev = (w, b)
    if single:
        return NodalSolution(I[0], W[0], Bv[0], float(res[0]), total, "newton", float(flo[0]))
    return NodalSolution(I, W, Bv, float(res.max()), total, "newton", float(flo.max()))


def _newton(cell, V, gw, gb, w, b, tol, max_iter):
    R, C = w.shape
    N = R * C
    has_w, has_b = gw > 0, gb > 0
    if not has_w:
        w[:] = V[:, None]
    if not has_b:
        b[:] = 0.0
    p = _ordering(R, C, has_w, has_b) if (has_w or has_b) else None
    n = (N if has_w else 0) + (N if has_b else 0)
    if p is not None:
        inv = np.empty(n, dtype=np.int64)
        inv[p] = np.arange(n)
    Vb = V[None]

    def evaluate(w, b):
        with np.errstate(all="ignore"):
            i, di_w, di_b = _call_cell(cell, w, b)
            F, cur, scale, fl = _currents_and_residual(i[None], Vb, w[None], b[None], gw, gb)
        parts = []
        if has_w:
            parts.append(F[0, 0].ravel())
        if has_b:
            parts.append(F[0, 1].ravel())
        f = np.concatenate(parts) if parts else np.zeros(0)
        ok = (np.all(np.isfinite(f)) and np.all(np.isfinite(i)) and np.isfinite(scale[0])
              and np.all(np.isfinite(di_w)) and np.all(np.isfinite(di_b)))
        return f, F, cur[0], (scale, fl), (di_w, di_b), ok

    def rel_of(F, sc):
        return float(_relative(F, sc[0])[0])

    def done(F, sc):
        return bool(_converged(F, sc[0], sc[1], tol)[0])

    f, F, cur, scale, jac, ok = evaluate(w, b)
    if not ok:
        raise SolverError("nonlinear solve: the cell returned non-finite values at the "
                          "starting point (KCL residual = nan)")
    rel = rel_of(F, scale)
    it = 0
    while True:
        if done(F, scale):
            return w, b, cur, rel, float(_relative(scale[1][:, None], scale[0])[0]), it
        if it >= max_iter or n == 0:
            raise SolverError(f"Newton did not converge in {it} iterations: relative KCL "
                              f"residual {rel:.3e} > tol {tol:.1e}")
        it += 1
        rows, cols, vals, n_, _ = _nodal_matrix_coo(np.zeros((R, C)), gw, gb, jac[0], jac[1])
        J = sp.csc_matrix((vals, (inv[rows], inv[cols])), shape=(n, n))
        try:
            lu = spla.splu(J, permc_spec="NATURAL", diag_pivot_thresh=0.1,
                           options=dict(SymmetricMode=True))
            dp = lu.solve(-f[p])
        except RuntimeError:
            try:
                lu = spla.splu(J, permc_spec="COLAMD")
                dp = lu.solve(-f[p])
            except RuntimeError:
                raise SolverError(f"Newton: singular Jacobian at iteration {it}; relative "
                                  f"KCL residual {rel:.3e}") from None
        d = np.empty(n)
        d[p] = dp
        if not np.all(np.isfinite(d)):
            raise SolverError(f"Newton: non-finite step at iteration {it}; relative KCL "
                              f"residual {rel:.3e}")
        dw = d[:N].reshape(R, C) if has_w else 0.0
        db = d[n - N:].reshape(R, C) if has_b else 0.0
        fnorm = np.linalg.norm(f)
        alpha = 1.0
        while True:
            w_t = w + alpha * dw
            b_t = b + alpha * db
            f_t, F_t, cur_t, scale_t, jac_t, ok_t = evaluate(w_t, b_t)
            if ok_t and np.linalg.norm(f_t) <= (1.0 - 1e-4 * alpha) * fnorm:
                break
            if ok_t and done(F_t, scale_t):
                break
            alpha *= 0.5
            if alpha < 1e-10:
                raise SolverError(f"Newton line search failed at iteration {it}: relative "
                                  f"KCL residual {rel:.3e} > tol {tol:.1e}")
        w, b, f, F, cur, scale, jac = w_t, b_t, f_t, F_t, cur_t, scale_t, jac_t
        rel = rel_of(F, scale)
