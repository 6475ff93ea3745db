"""Transfer matrix of a linear array by column marching with dense blocks (exact to ulps).

``currents = V @ M`` for every input V (A per V).  See :func:`transfer_blocks` for the
recursion and :class:`~cosim.crossbar.nodal.LinearArray.transfer_matrix` for when it is used.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import lapack

from .kcl import absolute_balance, bit_lines, end_conductance, within

BLOCK_MAX = 320          # largest dense block (min(R, C)) of the column-marching method
BLOCK_MEM = 2 ** 28      # bytes of stored blocks Q_j (8 m^2 n) allowed for that method


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


def _march(G, GT, gw, gb):
    """The column-marching blocks Q_j = S_j^{-1} Z_j (list of C (R, R)) and the output rows
    c_j (C, R) of :func:`transfer_blocks`, or None if a block is not positive definite."""
    R, C = G.shape
    green = _bit_line_green(GT, gb)
    if green is None:
        return None
    a, bv, t = green
    ga, gbv = GT * a, GT * bv
    cvec = GT * t                                # (C, R): c_j
    upper = np.triu(np.ones((R, R), dtype=bool))
    diag_idx = np.arange(R)
    eye_gw = gw * np.eye(R)
    eye_source = end_conductance(gw) * np.eye(R)  # first segment, in series with r_driver

    def load(j):                                 # K_j = D - D T_j^{-1} D (dense, symmetric)
        O = np.multiply.outer(ga[j], gbv[j])
        K = np.where(upper, O, O.T)
        np.negative(K, out=K)
        K[diag_idx, diag_idx] += GT[j]
        return K

    potrf, potrs = lapack.dpotrf, lapack.dpotrs
    Q = [None] * C                               # Q_j = S_j^{-1} Z_j, the only blocks kept
    Z = load(C - 1)
    for j in range(C - 1, -1, -1):
        c, info = potrf(Z + (eye_gw if j else eye_source), lower=0, clean=0, overwrite_a=1)
        if info != 0:
            return None
        q, info = potrs(c, Z)
        if info != 0:
            return None
        Q[j] = q
        if j:
            Z = load(j - 1)
            Z += gw * q
    return Q, cvec


def source_admittance(G: np.ndarray, gw: float, gb: float):
    """Y (R, R) (S) with the source currents I = Y V drawn from the word-line drivers of a
    linear array (both lines resistive), or None.

    From the same marching as :func:`transfer_blocks`: the drops of the first word nodes
    are u_0 = Q_0 V and the first segment (with the driver) carries I = g_w,end u_0, so
    Y = g_w,end Q_0, symmetric (reciprocity) and accurate to a few ulps (no cancellation).
    Cost ~2.3 R^3 C flops (cheap when R > C); memory 8 R^2 C bytes.
    """
    marched = _march(G, np.ascontiguousarray(G.T), gw, gb)
    if marched is None:
        return None
    Y = end_conductance(gw) * marched[0][0]
    Y = 0.5 * (Y + Y.T)
    return Y if np.all(np.isfinite(Y)) else None


def transfer_blocks(G: np.ndarray, gw: float, gb: float, tol: float,
                    with_admittance: bool = False):
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
    With ``with_admittance`` returns (M, Y), Y the source admittance of
    :func:`source_admittance` (free: Q_0 is one of the blocks).
    """
    R, C = G.shape
    GT = np.ascontiguousarray(G.T)
    marched = _march(G, GT, gw, gb)
    if marched is None:
        return None
    Q, cvec = marched
    rng = np.random.default_rng(0x5EED)
    v = rng.uniform(-1.0, 1.0, R)
    M = np.empty((R, C))
    u = np.empty((R, C))                         # drops of the probe input
    U = Q[0]
    M[:, 0] = cvec[0] - cvec[0] @ U
    u[:, 0] = U @ v
    for j in range(1, C):
        # U_j = S_j^{-1} (Z_j + gw U_{j-1}) = Q_j + (I - Q_j) U_{j-1}  (gw S^{-1} = I - Q):
        # small quantities only, one product instead of a triangular solve
        y = U - Q[j] @ U
        y += Q[j]
        U = y
        M[:, j] = cvec[j] - cvec[j] @ U
        u[:, j] = U @ v
    if not np.all(np.isfinite(M)):
        return None
    # ---- verification on the probe input
    w = v[:, None] - u
    b = bit_lines(GT, gb).solve((GT * w.T)[None])[0].T     # T_j b_j = G_j w_j
    F, cur, scale, fl = absolute_balance((G * (w - b))[None], v[None], w[None], b[None],
                                         gw, gb)
    if not within(F, scale, fl, tol)[0]:
        return None
    if not np.abs(v @ M - cur[0]).max() <= max(tol * scale[0], fl[0]):
        return None
    if with_admittance:
        Y = end_conductance(gw) * Q[0]
        return M, 0.5 * (Y + Y.T)
    return M

