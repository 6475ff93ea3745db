"""Transfer matrix of a linear array by column marching with dense blocks (exact to ulps).

``currents = V @ M`` for every input V (A per V).  See :func:`transfer_blocks` for the
recursion and :class:`~cosim.crossbar.nodal.LinearArray.transfer_matrix` for when it is used.
The blocks of the marching (:class:`Marching`) are also what the adjoint of the transfer
matrix needs (:func:`cosim.crossbar.adjoint.transfer_gradient`): an array in training
(``LinearArray(keep_marching=True)``) keeps them when they are small enough (``MARCH_KEEP``),
so a hardware-aware training step pays the marching once, for the forward pass, and its
gradient reuses it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.linalg import blas, lapack

try:                                        # compiled loops; numba is a dependency
    import numba
except ImportError:                         # pragma: no cover
    numba = None

from .kcl import absolute_balance, bit_lines, end_conductance, within

BLOCK_MAX = 1024         # largest dense block (min(R, C)) of the column-marching method
BLOCK_MEM = 2 ** 28      # bytes of stored blocks Q_j (8 m^2 n) allowed; larger arrays stream
                         # (transfer_streamed: 24 m n bytes)
MARCH_KEEP = 2 ** 26     # bytes of kept blocks Q_j and cell voltages (16 m^2 n) per array


class Marching(NamedTuple):
    """The column marching of an R x C array (R <= C, both lines resistive).

    ``G`` (R, C) [S] the array marched, ``gw`` / ``gb`` its line conductances
    (:class:`~.kcl.LineConductance`: the terminal segments include r_driver / r_sense);
    ``Q`` (C, R, R) the blocks Q_j = S_j^{-1} Z_j [1]; ``c`` (C, R) [S] the output rows
    c_j = G[:, j] t_j; ``t`` (C, R) [V/V] the bit-line profiles t_j = g_b,end T_j^{-1} e_{R-1};
    ``green`` the semiseparable generators (a, bv) of T_j^{-1} (:func:`_bit_line_green`);
    ``cells`` (C, R, R) [V/V] the cell voltages per unit source, Δv_j = P_j^T W_j (column i:
    word line i at 1 V, the others at 0 V), when kept (:func:`forward_sweep`).  See
    :func:`transfer_blocks`.
    """

    G: np.ndarray
    gw: float
    gb: float
    Q: np.ndarray
    c: np.ndarray
    t: np.ndarray
    green: tuple
    cells: np.ndarray | None = None

    def cell_voltages(self, W: np.ndarray) -> np.ndarray:
        """P_j^T W_j = W_j - T_j^{-1} D_j W_j for word-node voltages W (C, R, k) [V] of every
        column j: the voltages across the cells (C, R, k) [V].  ``W`` is overwritten.

        P_j^T = D_j^{-1} K_j, applied through the semiseparable T_j^{-1}[k, l] =
        a[min(k, l)] bv[max(k, l)] (two running sums down and up each bit line, ~6 R k flops
        per column, compiled) instead of a dense product with K_j (2 R^2 k): 5x faster at
        100 x 200 cells, and as accurate (the same positive generators as the loads of
        :func:`_loads`).
        """
        a, bv = self.green
        _semiseparable_cells(a, bv, np.ascontiguousarray(self.G.T), W)
        return W


def _semiseparable_cells(a, bv, GT, W):
    """W[j] -= T_j^{-1} diag(GT[j]) W[j] in place, T_j^{-1}[k, l] = a[j, min] bv[j, max]:
    y_i = bv_i sum_{l<=i} a_l x_l + a_i sum_{l>i} bv_l x_l with x = GT[j] * W[j] (a running
    sum down the line, then one up it), vectorised over the last axis of W."""
    C, R, k = W.shape
    low = np.empty((R, k))
    s = np.empty(k)
    for j in range(C):
        s[:] = 0.0
        for i in range(R):
            f, g = a[j, i] * GT[j, i], bv[j, i]
            for q in range(k):
                s[q] += f * W[j, i, q]
                low[i, q] = g * s[q]
        s[:] = 0.0
        for i in range(R - 1, -1, -1):
            f, g = bv[j, i] * GT[j, i], a[j, i]
            for q in range(k):
                x = W[j, i, q]
                W[j, i, q] = x - low[i, q] - g * s[q]
                s[q] += f * x


def _sweep_column(Q, previous, product, c, U, M_column, W, first, with_cells):
    """One column of :func:`forward_sweep` in one pass: U = Q + previous - product
    (product = Q previous; U_0 = Q_0 for the ``first`` column), M_column = c - U^T c, and
    with ``with_cells`` W = I - U."""
    R = c.shape[0]
    for m in range(R):
        M_column[m] = c[m]
    for k in range(R):
        ck = c[k]
        for m in range(R):
            value = Q[k, m] if first else Q[k, m] + previous[k, m] - product[k, m]
            U[k, m] = value
            M_column[m] -= ck * value
            if with_cells:
                W[k, m] = (1.0 if k == m else 0.0) - value


def outer_plus(x, y, A, B, out):
    """out = x y^T + A - B (R, R) in one pass (the adjoint's reduced sources)."""
    R, N = A.shape
    for k in range(R):
        xk = x[k]
        for m in range(N):
            out[k, m] = xk * y[m] + A[k, m] - B[k, m]


def subtract_and_carry(X, B, nxt, carry):
    """X -= B, then (``carry``) nxt += X, in one pass (the adjoint's back substitution)."""
    R, N = X.shape
    for k in range(R):
        for m in range(N):
            value = X[k, m] - B[k, m]
            X[k, m] = value
            if carry:
                nxt[k, m] += value


def _loads(a, bv, g, Q_next, gw_next, g_diag, Z, S):
    """Z = K + gw_next Q_next and S = Z + g_diag I in place (R, R), K = D - D T^{-1} D the
    load of one column: the cells and bit line seen from its word nodes (dense, symmetric),
    K[k, l] = -g_k a_min g_l bv_max off the diagonal, g_k (1 - g_k a_k bv_k) on it, written
    as g_k - g_k^2 a_k bv_k: every entry from products of positive numbers."""
    R = g.shape[0]
    for k in range(R):
        gk = g[k]
        for m in range(R):
            if m < k:
                value = -gk * bv[k] * g[m] * a[m]
            elif m > k:
                value = -gk * a[k] * g[m] * bv[m]
            else:
                value = gk - gk * a[k] * gk * bv[k]
            if gw_next != 0.0:                  # (Q_next is not read at the open end)
                value += gw_next * Q_next[k, m]
            Z[k, m] = value
            S[k, m] = value + g_diag if m == k else value


if numba is not None:             # without numba the same loops run as (slow) Python
    _semiseparable_cells = numba.njit(cache=True, nogil=True)(_semiseparable_cells)
    _loads = numba.njit(cache=True, nogil=True)(_loads)
    _sweep_column = numba.njit(cache=True, nogil=True)(_sweep_column)
    outer_plus = numba.njit(cache=True, nogil=True)(outer_plus)
    subtract_and_carry = numba.njit(cache=True, nogil=True)(subtract_and_carry)


def _bit_line_green(GT: np.ndarray, gb: float):
    """Inverse of every bit-line block T_j = L_b + diag(G[:, j]) in semiseparable form.

    GT (C, R).  Returns (a, bv, t) of shape (C, R) with ``T_j^{-1}[k, l] = a[j, min(k, l)] *
    bv[j, max(k, l)]`` and ``t[j] = gb T_j^{-1} e_{R-1}``, or None if the products
    under/overflow.  Built from the (positive) load conductances looking up (alpha) and down
    (beta) the line, so every quantity is a sum or product of positive numbers: no
    cancellation, relative accuracy ~ R eps even when G << g_b.
    """
    C, R = GT.shape
    gb_end = end_conductance(gb)                 # last segment, in series with r_sense
    alpha = np.zeros((C, R))                     # load above node k (excluding node k)
    beta = np.empty((C, R))                      # load below node k (to the sense node)
    beta[:, R - 1] = gb_end
    for k in range(1, R):
        y = alpha[:, k - 1] + GT[:, k - 1]
        alpha[:, k] = gb * y / (gb + y)
    for k in range(R - 2, -1, -1):
        y = beta[:, k + 1] + GT[:, k + 1]
        beta[:, k] = gb * y / (gb + y)
    diag = 1.0 / (alpha + beta + GT)             # T^{-1}[l, l]
    seg = np.full(R, float(gb))                  # segment below node k
    seg[-1] = gb_end
    rho = seg / (seg + alpha + GT)               # x_k / x_{k+1} above a unit source
    P = np.ones((C, R))
    np.cumprod(rho[:, :-1], axis=1, out=P[:, 1:])    # P_k = prod_{m<k} rho_m
    t = np.cumprod(rho[:, ::-1], axis=1)[:, ::-1]    # prod_{m>=k} rho_m = gb,end T^{-1} e_last
    if not (np.all(np.isfinite(diag)) and P.min() > 1e-150 and np.all(np.isfinite(t))):
        return None
    return 1.0 / P, diag * P, t


def probe_input(R: int) -> np.ndarray:
    """The fixed input (R,) [V] on which a transfer matrix is verified (seeded, both signs)."""
    return np.random.default_rng(0x5EED).uniform(-1.0, 1.0, R)


def _march_down(green, GT, gw, j_hi, j_lo, q_next, store) -> bool:
    """Q_j for j = j_hi, j_hi - 1, ..., j_lo (the backward sweep of :func:`transfer_blocks`),
    each handed to ``store(j, Q_j)``, which returns the array it keeps (read as Q_{j+1} by
    the next column); ``q_next`` is Q_{j_hi+1} (not read at the open end, j_hi = C - 1).
    False if a block is not positive definite or not finite."""
    a, bv, _ = green
    C, R = GT.shape
    potrf, trsm = lapack.dpotrf, blas.dtrsm
    Z, S = np.empty((R, R)), np.empty((R, R))
    for j in range(j_hi, j_lo - 1, -1):
        # Z_j = K_j + g_w Q_{j+1} (K_{C-1} at the open end) and S_j = g_w I + Z_j (g_w,end for
        # the first segment: with r_driver), built in one pass
        open_end = j == C - 1
        _loads(a[j], bv[j], GT[j], Z if open_end else q_next, 0.0 if open_end else float(gw),
               float(gw if j else end_conductance(gw)), Z, S)
        c, info = potrf(S, lower=0, clean=0, overwrite_a=1)
        if info != 0:
            return False
        # Q_j = S_j^{-1} Z_j = (Z_j^T S_j^{-1})^T with S_j = U^T U: two triangular solves
        # from the right on the Fortran view Z_j^T (no copy; ~1.5x faster than from the
        # left at these sizes); its transpose is Q_j in C order
        q = trsm(1.0, c, Z.T, side=1, lower=0)
        q = trsm(1.0, c, q, side=1, lower=0, trans_a=1, overwrite_b=1)
        if not np.isfinite(q.sum()):                     # a NaN or an infinity anywhere
            return False
        q_next = store(j, q.T)
    return True


def march(G: np.ndarray, gw: float, gb: float) -> Marching | None:
    """The backward sweep of :func:`transfer_blocks` (blocks Q_j, outputs c_j) for an R x C
    array with R <= C and both lines resistive, or None if a block is not positive definite
    or the bit-line products under/overflow."""
    R, C = G.shape
    GT = np.ascontiguousarray(G.T)
    green = _bit_line_green(GT, gb)
    if green is None:
        return None
    a, bv, t = green
    Q = np.empty((C, R, R))

    def store(j, q):
        Q[j] = q
        return Q[j]

    if not _march_down(green, GT, gw, C - 1, 0, None, store):
        return None
    return Marching(G, gw, gb, Q, GT * t, t, (a, bv))


def transfer_streamed(G: np.ndarray, gw: float, gb: float):
    """(M (R, C) [A/V], Y (R, R) [S]) of :func:`transfer_blocks` without storing its blocks
    (arrays whose blocks do not fit in ``BLOCK_MEM``), or None if the march fails.  Not
    verified here: the caller checks M on a probe solved another way.

    The outputs of columns k >= j are affine in the inputs V and the drops u_{j-1} of the
    column before: I_k = A_j[k] V + B_j[k] u_{j-1}.  With u_j = Q_j V + (I - Q_j) u_{j-1}
    and I_j = c_j . (V - u_j) (:func:`transfer_blocks`), every column of the backward march
    adds one row and updates the rows after it:

        A_j[j] = c_j - Q_j^T c_j,  B_j[j] = -A_j[j]
        A_j[k] = A_{j+1}[k] + P[k],  B_j[k] = B_{j+1}[k] - P[k],  P = B_{j+1} Q_j  (k > j)

    and u_{-1} = 0 gives M = A_0^T.  The march's own order, so each Q_j is used as soon as
    it is formed: memory 24 R C bytes besides two blocks, ~R^2 C^2 flops for the products
    (the stored-block sweep: 2 R^3 C, plus the 8 R^2 C bytes of the blocks).
    """
    R, C = G.shape
    GT = np.ascontiguousarray(G.T)
    green = _bit_line_green(GT, gb)
    if green is None:
        return None
    cvec = GT * green[2]                                  # c_j (C, R)
    A = np.empty((C, R))                                  # rows j.. hold A_j
    B = np.empty((C, R))
    product = np.empty((C, R))
    Y = np.empty((R, R))

    def store(j, q):                                      # q = Q_j
        if j + 1 < C:
            P = product[j + 1:]
            np.matmul(B[j + 1:], q, out=P)
            A[j + 1:] += P
            B[j + 1:] -= P
        A[j] = cvec[j] - cvec[j] @ q
        B[j] = -A[j]
        if j == 0:
            Y[:] = end_conductance(gw) * q
        return q

    if not _march_down(green, GT, gw, C - 1, 0, None, store):
        return None
    M = np.ascontiguousarray(A.T)
    Y = 0.5 * (Y + Y.T)
    if not (np.all(np.isfinite(M)) and np.all(np.isfinite(Y))):
        return None
    return M, Y


def source_admittance(G: np.ndarray, gw: float, gb: float):
    """Y (R, R) (S) with the source currents I = Y V drawn from the word-line drivers of a
    linear array (both lines resistive), or None.

    From the same marching as :func:`transfer_blocks`: the drops of the first word nodes
    are u_0 = Q_0 V and the first segment (with the driver) carries I = g_w,end u_0, so
    Y = g_w,end Q_0, symmetric (reciprocity) and accurate to a few ulps (no cancellation).
    Cost ~2.3 R^3 C flops (cheap when R > C); memory 8 R^2 C bytes.
    """
    marched = march(G, gw, gb)
    if marched is None:
        return None
    Y = end_conductance(gw) * marched.Q[0]
    Y = 0.5 * (Y + Y.T)
    return Y if np.all(np.isfinite(Y)) else None


def forward_sweep(marching: Marching, v=None, with_cells: bool = False):
    """The sweep from the source end of :func:`transfer_blocks`: U_0 = Q_0,
    U_j = Q_j + (I - Q_j) U_{j-1}, M[:, j] = c_j - U_j^T c_j.

    Returns (M (R, C) [A/V], u (R, C) the drops U_j v of a probe input v (R,) [V] or None,
    cells (C, R, R) the cell voltages per unit source P_j^T (I - U_j) [V/V] or None
    (``with_cells``: the adjoint's fields Δv, :meth:`Marching.cell_voltages`)).
    """
    Q, cvec = marching.Q, marching.c
    C, R = cvec.shape
    M = np.empty((R, C))
    u = None if v is None else np.empty((R, C))
    cells = np.empty((C, R, R)) if with_cells else None
    U, previous, product = np.empty((R, R)), np.empty((R, R)), np.empty((R, R))
    for j in range(C):
        if j:
            # U_j = S_j^{-1} (Z_j + gw U_{j-1}) = Q_j + (I - Q_j) U_{j-1}  (gw S^{-1} = I - Q):
            # small quantities only, one product instead of a triangular solve
            U, previous = previous, U
            np.matmul(Q[j], previous, out=product)
            _sweep_column(Q[j], previous, product, cvec[j], U, M[:, j],
                          cells[j] if with_cells else product, False, with_cells)
        else:
            _sweep_column(Q[0], Q[0], Q[0], cvec[0], U, M[:, 0],
                          cells[0] if with_cells else product, True, with_cells)
        if u is not None:
            u[:, j] = U @ v
    if with_cells:
        marching.cell_voltages(cells)
    return M, u, cells


def transfer_blocks(G: np.ndarray, gw: float, gb: float, tol: float,
                    with_admittance: bool = False, with_marching: bool = False):
    """Exact transfer matrix of an R x C array with R <= C (both lines resistive), or None.

    Column marching with dense R x R blocks in "drop" variables.  Eliminating bit line j
    (tridiagonal T_j) leaves the word nodes of column j loaded by the SPD conductance matrix
    K_j = D - D T_j^{-1} D (D = diag G[:, j]).  With the word-line drops u = V - w the word
    system reads  chain_gw(u) + K_j u_j = K_j V  (block tridiagonal, -gw I off the diagonal,
    u = 0 at the source).  Eliminating from the open end, the load seen from column j is
    Z_j = K_j + gw S_{j+1}^{-1} Z_{j+1} (S = gw I + Z, Z_{C-1} = K_{C-1}; the same recursion
    gives the reduced right-hand side, which is therefore Z_j V); then u_j = U_j V with
    U_j = S_j^{-1} (Z_j + gw U_{j-1}) = Q_j + (I - Q_j) U_{j-1} with Q_j = S_j^{-1} Z_j (the
    only blocks stored: 8 R^2 C bytes), U_{-1} = 0.  The output is I_j = c_j . (V - u_j) with
    c_j = G[:, j] * gb T_j^{-1} e_{R-1}, so M[:, j] = c_j - U_j^T c_j.  Every matrix formed is a
    small load (never a huge conductance minus a huge conductance), so the result is accurate
    to a few ulps even for G << 1/r, where a plain factorisation of the nodal matrix loses
    several digits.  Cost ~ 4.3 R^3 C flops (Cholesky, solves and products of R x R blocks).

    The result is verified once on a probe input: the node voltages are rebuilt from the
    same recursion, the bit nodes solved independently (dpttrf/dpttrs), and the full KCL
    residual must meet ``tol`` (or its rounding floor) and ``v @ M`` must equal the output
    currents of that solution.  Returns None if anything fails (caller falls back).
    With ``with_admittance`` also returns Y, the source admittance of
    :func:`source_admittance` (free: Q_0 is one of the blocks), and with ``with_marching``
    the :class:`Marching` with the cell voltages kept (16 R^2 C bytes):
    ``M``, ``(M, Y)``, ``(M, marching)`` or ``(M, Y, marching)``.  Arrays whose blocks
    do not fit in memory: :func:`transfer_streamed`.
    """
    R, C = G.shape
    marched = march(G, gw, gb)
    if marched is None:
        return None
    v = probe_input(R)
    M, u, cells = forward_sweep(marched, v, with_marching)
    if with_marching:
        marched = marched._replace(cells=cells)
    if not np.all(np.isfinite(M)):
        return None
    # ---- verification on the probe input
    GT = np.ascontiguousarray(G.T)
    w = v[:, None] - u
    b = bit_lines(GT, gb).solve((GT * w.T)[None])[0].T     # T_j b_j = G_j w_j
    F, cur, scale, fl = absolute_balance((G * (w - b))[None], v[None], w[None], b[None],
                                         gw, gb)
    if not within(F, scale, fl, tol)[0]:
        return None
    if not np.abs(v @ M - cur[0]).max() <= max(tol * scale[0], fl[0]):
        return None
    out = [M]
    if with_admittance:
        Y = end_conductance(gw) * marched.Q[0]
        out.append(0.5 * (Y + Y.T))
    if with_marching:
        out.append(marched)
    return out[0] if len(out) == 1 else tuple(out)


def _word_line_green(G, gw):
    """Per word line i (bit nodes grounded, source V_i = 1 V behind the terminal segment):
    the source admittance alpha (R,) (S), the node voltages w (R, C) (V) and the inverse of
    the word-line matrix W_i = chain(gw) + diag(G_i) as the (R, C, C) array W_i^{-1}.

    A word line is a bit line read backwards (terminal segment at node 0 instead of the
    last, open at the other end): :func:`_bit_line_green` of the reversed lines
    gives W_i^{-1} in semiseparable form (sums and products of positive conductances, no
    cancellation) and w = g_end W_i^{-1} e_0; the source current is what the cells draw,
    alpha_i = sum_j G_ij w_ij (a sum of positive terms).
    """
    green = _bit_line_green(G[:, ::-1], gw)
    if green is None:
        return None
    a, bv, t = green
    node = np.arange(G.shape[1])
    lo, hi = np.minimum.outer(node, node), np.maximum.outer(node, node)
    inverse = (a[:, lo] * bv[:, hi])[:, ::-1, ::-1]
    w = t[:, ::-1]
    return (G * w).sum(axis=1), w, inverse


def _march_rows(K, f, alpha, gb, g_last):
    """The row march of :func:`source_admittance_by_rows` on the word-line loads K (R, C, C),
    injections f (R, C) and source admittances alpha (R,): Y (R, R) before symmetrising.
    Raises numpy.linalg.LinAlgError if a block is not positive definite."""
    R, C = f.shape
    eye = np.eye(C)
    # explicit inverses of the (well-conditioned: gb I + small loads) SPD blocks: small
    # products instead of many small triangular solves
    inverses = np.empty((R, C, C))                              # (L_i + g_below I)^{-1}
    J = np.zeros((R, C, R))                                     # reduced injections J_i
    load = K[0].copy()
    J[0, :, 0] = f[0]
    for i in range(R):
        below = gb if i < R - 1 else g_last
        block = load + below * eye
        np.linalg.cholesky(block)                               # positive definite, or raise
        inverses[i] = np.linalg.inv(block)
        if i < R - 1:
            # Phi_i = gb (gb I + L_i)^{-1} L_i as a product: I - gb (gb I + L_i)^{-1} would
            # cancel (L_i << gb)
            load = K[i + 1] + gb * (inverses[i] @ load)
            J[i + 1, :, :i + 1] = gb * (inverses[i] @ np.ascontiguousarray(J[i, :, :i + 1]))
            J[i + 1, :, i + 1] = f[i + 1]
    Y = np.diag(alpha)
    b = inverses[R - 1] @ J[R - 1]                              # bit voltages per unit V
    Y[R - 1] -= f[R - 1] @ b
    for i in range(R - 2, -1, -1):
        b = inverses[i] @ (J[i] + gb * b)
        Y[i] -= f[i] @ b
    return Y


if numba is not None:
    _march_rows = numba.njit(cache=True, nogil=True)(_march_rows)


def source_admittance_by_rows(G, gw, gb):
    """Y (R, R) (S) with source currents I = Y V (both lines resistive), by marching down the
    rows with C x C blocks: ~R² C² + R C³ flops where the column march of
    :func:`source_admittance` costs ~2.3 R³ C (the cheaper
    one for R > C).  None if a block is not positive definite or a product leaves range.

    Eliminating word line i exactly (:func:`_word_line_green`) leaves its bit nodes b_i (C)
    loaded by K_i = D_i - D_i W_i^{-1} D_i (D_i = diag G_i) and driven by f_i V_i
    (f_i = G_i w_i), and its source current I_i = alpha_i V_i - f_i . b_i.  The bit lines
    couple the rows: (K_i + (g_above + g_below) I) b_i - gb b_(i-1) - g_below b_(i+1) = f_i V_i,
    the last segment (g_below of row R-1) ending in the sense node at 0 V.  From the open end
    (row 0) the load seen below row i is Phi_i = gb (gb I + L_i)^{-1} L_i with
    L_0 = K_0, L_(i+1) = K_(i+1) + Phi_i, and the injections reduce likewise,
    J_(i+1) = F_(i+1) + gb (gb I + L_i)^{-1} J_i; back substitution (L_i + g_below I) b_i =
    J_i + g_below b_(i+1) gives b (C x R per row, per unit source), so
    Y = diag(alpha) - sum_i e_i f_i^T b_i.  Every step is a Cholesky solve of an SPD block.
    """
    R, C = G.shape
    green = _word_line_green(G, gw)
    if green is None:
        return None
    alpha, w, inverse = green
    f = G * w                                                   # (R, C) injection per volt
    K = -(G[:, :, None] * inverse * G[:, None, :])
    idx = np.arange(C)
    # K_jj = G_j - G_j² W^{-1}_jj = G_j (1 - G_j W^{-1}_jj): W^{-1}_jj < 1/G_j, no sign change
    K[:, idx, idx] = G * (1.0 - G * inverse[:, idx, idx])
    try:
        Y = _march_rows(K, f, alpha, float(gb), float(end_conductance(gb)))
    except np.linalg.LinAlgError:                # a block is not positive definite
        return None
    Y = 0.5 * (Y + Y.T)
    return Y if np.all(np.isfinite(Y)) else None
