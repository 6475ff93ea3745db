r"""Gradients through a crossbar read with wire IR drop (adjoint of the nodal solve).

The array is the one of :mod:`cosim.crossbar.nodal` (docs/array.md §2): R word lines driven at
the column-0 end through ``r_word``, N bit lines sensed at the row-(R-1) end through
``r_bit``, cell (k, l) between word node w(k, l) and bit node b(k, l); ``r_driver`` /
``r_sense`` in series with the first word / last bit segment (EQUATIONS.md §7). The linear
part runs on the blocks of the column marching that built the transfer matrix
(:mod:`cosim.crossbar.nodal.transfer`: one home for the recursion), reusing them when the
programmed array kept them; the nonlinear part assembles its own sparse Jacobian.

Linear cells: the gradient of the transfer matrix
-------------------------------------------------
With cell conductances G (R, N) [S] the read is exactly ``I = V @ A(G)`` (``A`` [A/V] is
``LinearArray(G, r_word, r_bit).transfer_matrix()``). For a loss L with
``Ā = ∂L/∂A`` (R, N) [1/S], :func:`transfer_gradient` returns ``∂L/∂G`` (R, N) [1/S]:

Let Y be the nodal matrix (symmetric positive definite, S) and x⁽ⁱ⁾ = Y⁻¹ g_w e_{w(i,0)} the
node voltages for a 1 V source on word line i (other sources at 0 V). Then
A_ij = g_b x⁽ⁱ⁾_{b(R-1,j)} and, with d_kl = e_{w(k,l)} - e_{b(k,l)},
∂Y/∂G_kl = d_kl d_klᵀ, so

    ∂A_ij/∂G_kl = -(d_klᵀ Y⁻¹ g_b e_{b(R-1,j)}) (d_klᵀ x⁽ⁱ⁾) = -Δy⁽ʲ⁾_kl · Δv⁽ⁱ⁾_kl      (1)

Δv⁽ⁱ⁾_kl [V/V] is the voltage across cell kl for the 1 V source on word line i, Δy⁽ʲ⁾_kl
[V/V] the voltage across cell kl when the sense node of bit line j is driven at 1 V through
its last segment and all word-line sources are grounded (Y is symmetric, so this adjoint
problem uses the same matrix). Summed with Ā:

    ∂L/∂G_kl = -Σ_i Δv⁽ⁱ⁾_kl Δz⁽ⁱ⁾_kl,     Δz⁽ⁱ⁾ = Σ_j Ā_ij Δy⁽ʲ⁾                         (2)

i.e. R forward solves (unit sources, independent of L) and R adjoint solves (sense nodes
driven with the row Ā_i,: of the loss gradient). At r_word = r_bit = 0, Δv⁽ⁱ⁾_kl = δ_ik and
Δy⁽ʲ⁾_kl = -δ_jl, so ∂L/∂G = Ā: the ideal gradient.

How (2) is evaluated (R ≤ N; otherwise on the mirrored array, below). Eliminating bit line
l (tridiagonal T_l = L_b + diag G[:, l], SPD; its last segment in series with r_sense) leaves
the word nodes of column l loaded by K_l = D_l - D_l T_l⁻¹ D_l (D_l = diag G[:, l]) and gives
I_l = c_lᵀ w_l with c_l = D_l t_l, t_l = T_l⁻¹ g_b,end e_{R-1} [V/V]. The word nodes then
satisfy a block-tridiagonal SPD system 𝒜 W = g_w,end E₀ in columns (diagonal blocks
2g_w I + K_l, g_w,end + g_w for the first column, g_w I + K_{N-1} at the open end, off-diagonal
-g_w I), W_l = ∂w_l/∂V (R × R, [V/V]). The column marching of the transfer matrix
(:func:`~cosim.crossbar.nodal.transfer.transfer_blocks`) factorises it from the open end by
loads: S_l = g_w I + Z_l (g_w,end for l = 0), Z_{N-1} = K_{N-1},
Z_{l-1} = K_{l-1} + g_w Q_l with Q_l = S_l⁻¹ Z_l (every matrix a positive load, no
large-minus-large), so g_w S_l⁻¹ = I - Q_l and W_l = (I - Q_l) W_{l-1}, W_{-1} = I.
L = Σ_l c_lᵀ W_l ā_l (ā_l = Ā[:, l]), so the adjoint Λ = 𝒜⁻¹ F with F_l = c_l ā_lᵀ takes one
sweep from the open end, ρ_{N-1} = F_{N-1}, ρ_{l-1} = F_{l-1} + (I - Q_l) ρ_l, and one from the
source end, Λ_l = (I - Q_l)(Λ_{l-1} + ρ_l / g_w) (Λ_0 = (I - Q_0) ρ_0 / g_w,end): products with
the stored Q_l only, no factorisation. With P_lᵀ = I - T_l⁻¹ D_l = D_l⁻¹ K_l (word-node
voltages -> cell voltages, ∂K_l/∂G_kl = P_l e_k e_kᵀ P_lᵀ and ∂c_l/∂G_kl = P_l e_k t_lk):

    ∂L/∂G_kl = -Σ_i (P_lᵀ W_l)_ki (P_lᵀ Λ_l)_ki + t_lk (P_lᵀ W_l ā_l)_k                    (3)

the two terms of (2): P_lᵀ W_l = Δv, and P_lᵀ Λ_l plus the output-coupling term = Δz. The
periphery enters only through g_w,end and T_l, so (3) holds with r_driver, r_sense > 0. Δv
does not depend on L: the forward sweep of a programmed array computes it once
(``Marching.cells``) and every gradient of that programming reuses it; the adjoint then
costs two R × R products per column (≈ 4 R³ flops), one pass down and up each bit line for
P_lᵀ Λ_l = Λ_l - T_l⁻¹ D_l Λ_l (T_l⁻¹ semiseparable: O(R² N),
:meth:`Marching.cell_voltages`) and 8 R² N bytes (ρ, then Λ in its place). Without kept
blocks (arrays above ``transfer.MARCH_KEEP``) the marching is redone here.
Exact to rounding (no iteration, no truncation); the finite-difference tests in
tests/test_hardware_aware.py check it against the nodal solver's transfer matrix.

Mirror: relabelling word line i as bit line R-1-i and bit line j as word line N-1-j maps
(G, r_word, r_bit) onto (G[::-1, ::-1].T, r_bit, r_word) with the same nodal matrix and
transfer matrix A[::-1, ::-1].T, so an array with R > N is handled as its mirror.

Shorted lines are eliminated exactly: r_word = 0 gives W_l = I (only the second term of (3)
remains), r_bit = 0 gives T_l⁻¹ → 0, i.e. P_l = I, t_l = 1, K_l = D_l.

Nonlinear cells: the implicit-function theorem at the converged solve
-----------------------------------------------------------------------
For a cell function ``cell(v_w, v_b) -> (i, ∂i/∂v_w, ∂i/∂v_b)`` (``nodal.solve_nonlinear``)
and its converged node voltages u = (w, b) with KCL F(u, V) = 0, :func:`nonlinear_vjp`
assembles the Jacobian J = ∂F/∂u from the cell derivatives at u (sparse, nonsymmetric in
general) and, for ``c = ∂L/∂I`` [1/A], solves Jᵀ λ = (∂I/∂u)ᵀ c once. Then, exactly to the
extent that u solves F = 0 (KCL residual ≤ 1e-12 relative),

    ∂L/∂V = cᵀ ∂I/∂V - λᵀ ∂F/∂V         [1/V]
    ∂L/∂δi_kl = cᵀ ∂I/∂δi_kl - λᵀ ∂F/∂δi_kl   [1/A]

where δi_kl is an extra current injected in parallel with cell kl (word node to bit node).
Any cell parameter p enters through the cell current only, so ∂L/∂p = Σ ∂L/∂δi · ∂i/∂p;
for the memtransistor the state enters I_D as the factor g(w), so ∂i/∂g = i/g exactly. What
is not exact: the solve's own residual (≤ 1e-12 relative, so gradients carry errors of that
order relative to their scale), and nothing else — no truncation of the Newton iteration is
differentiated (the implicit-function theorem differentiates the solution, not the
iteration).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .. import _validate as check
from ..errors import SolverError
from .nodal import kcl
from .nodal import transfer as _transfer

__all__ = ["transfer_gradient", "nonlinear_vjp", "nonlinear_vjp_batch", "mapping_gradient"]


# ----------------------------------------------------------------------------- linear cells

def _line_gradient(G: np.ndarray, gb, grad: np.ndarray) -> np.ndarray:
    """Equation (3) with shorted word lines (W_l = I, Λ = 0): ∂L/∂G_kl = t_lk (P_lᵀ ā_l)_k."""
    R, N = G.shape
    G_T = np.ascontiguousarray(G.T)                       # (N, R): column l = G[:, l]
    bit = kcl.bit_lines(G_T, gb)                          # T_l, r_sense in the last segment
    e_last = np.zeros((N, R))
    e_last[:, -1] = kcl.end_conductance(gb)
    t = bit.solve(e_last)                                 # t_l = g_b,end T_l⁻¹ e_{R-1}
    abar = np.ascontiguousarray(grad.T)                   # ā_l
    return (t * (abar - bit.solve(G_T * abar))).T         # P_lᵀ ā_l = ā_l - T_l⁻¹ D_l ā_l


def _marching_gradient(marching, grad: np.ndarray) -> np.ndarray:
    """Equation (3) of the module docstring on the blocks of a column marching (R <= N)."""
    G, Q, c, t = marching.G, marching.Q, marching.c, marching.t
    R, N = G.shape
    gw, g_first = float(marching.gw), kcl.end_conductance(marching.gw)
    cells = marching.cells
    if cells is None:
        cells = _transfer.forward_sweep(marching, with_cells=True)[2]
    abar = np.ascontiguousarray(grad.T)                   # (N, R): ā_l
    # sweep from the open end: reduced adjoint sources σ_l = ρ_l / g_w with ρ_{N-1} = F_{N-1},
    # ρ_{l-1} = F_{l-1} + g_w S_l⁻¹ ρ_l = F_{l-1} + (I - Q_l) ρ_l,  F_l = c_l ā_lᵀ
    sigma = np.empty((N, R, R))
    product = np.empty((R, R))
    c_scaled = c / gw
    np.multiply.outer(c_scaled[N - 1], abar[N - 1], out=sigma[N - 1])
    for l in range(N - 1, 0, -1):
        np.matmul(Q[l], sigma[l], out=product)
        _transfer.outer_plus(c_scaled[l - 1], abar[l - 1], sigma[l], product, sigma[l - 1])
    # sweep from the source end: Λ_0 = S_0⁻¹ ρ_0, Λ_l = S_l⁻¹ (g_w Λ_{l-1} + ρ_l), with
    # S_l⁻¹ = (I - Q_l) / g_w (g_w,end for l = 0: the first segment, with r_driver), i.e.
    # Λ_l = (I - Q_l) x_l, x_l = Λ_{l-1} + σ_l; the cell voltages P_lᵀ Λ_l = D_l⁻¹ K_l Λ_l
    # Λ_l overwrites σ_l (x_l = σ_l + Λ_{l-1} is used once, and formed with Λ_{l-1})
    sigma[0] *= gw / g_first
    for l in range(N):
        np.matmul(Q[l], sigma[l], out=product)
        _transfer.subtract_and_carry(sigma[l], product, sigma[l + 1] if l + 1 < N else product,
                                     l + 1 < N)
    lam_cells = marching.cell_voltages(sigma)              # P_lᵀ Λ_l
    return (t * np.einsum("lki,li->lk", cells, abar)
            - np.einsum("lki,lki->lk", cells, lam_cells)).T


def transfer_gradient(G, r_word, r_bit, grad_transfer, *, r_driver=0.0, r_sense=0.0,
                      marching=None) -> np.ndarray:
    """∂L/∂G (R, N) [1/S] from ∂L/∂A (R, N) [1/S], A the transfer matrix of the array.

    ``G`` (R, N) cell conductances [S] (> 0), ``r_word`` / ``r_bit`` segment resistances [Ω]
    (>= 0), ``r_driver`` / ``r_sense`` [Ω] (>= 0) in series with the first word and the last
    bit segment, ``grad_transfer`` the gradient of the loss with respect to the transfer
    matrix A (``I = V @ A``). Exact (equations (1)-(3) of the module docstring).
    ``marching``: the :class:`~cosim.crossbar.nodal.transfer.Marching` of this array (of its
    mirror when R > N) if the caller has it (``LinearArray.marching``); otherwise the
    marching is done here.
    """
    G = check.as_float_array("G", G, ndim=2)
    if G.size == 0 or np.any(G <= 0):
        raise ValueError(f"G must be a non-empty array of conductances > 0, got shape {G.shape}")
    grad = check.as_float_array("grad_transfer", grad_transfer, ndim=2)
    if grad.shape != G.shape:
        raise ValueError(f"grad_transfer must have the shape of G {G.shape}, got {grad.shape}")
    gw = kcl.segment_conductance("r_word", r_word, "r_driver", r_driver)
    gb = kcl.segment_conductance("r_bit", r_bit, "r_sense", r_sense)
    R, N = G.shape
    if gw == 0 and gb == 0:
        return grad.copy()
    # the mirror (module docstring) when it is cheaper: shorted bit lines become shorted
    # word lines (closed form), and the dense blocks of the marching are min(R, N) wide
    mirror = gb == 0 or (gw > 0 and R > N)
    if mirror:
        G = np.ascontiguousarray(G[::-1, ::-1].T)
        grad = np.ascontiguousarray(grad[::-1, ::-1].T)
        gw, gb = gb, gw
    if gw == 0:
        out = _line_gradient(G, gb, grad)
    else:
        same = marching is not None and all(
            float(a) == float(b) and kcl.end_conductance(a) == kcl.end_conductance(b)
            for a, b in ((marching.gw, gw), (marching.gb, gb))) and np.array_equal(marching.G, G)
        # what this call allocates: the adjoint sources (then Λ), 8 R² N bytes, and unless
        # the caller's marching has them the blocks Q_l (8 R² N) and the cell voltages
        # (16 R² N); refused before allocating if that cannot fit
        blocks = R * R * N
        held = 8.0 * blocks + (0.0 if same else 8.0 * blocks) + (
            16.0 * blocks if not same or marching.cells is None else 0.0)
        check.fits_in_memory(f"the adjoint of a {min(R, N)} x {max(R, N)}-cell array", held,
                             hint="train on smaller (tiled) arrays")
        if not same:                                      # not this array's marching
            marching = _transfer.march(G, gw, gb)
            if marching is None:
                raise SolverError("the column marching of the adjoint failed (a block is not "
                                  "positive definite or the bit-line products underflow)")
        out = _marching_gradient(marching, grad)
    return np.ascontiguousarray(out[::-1, ::-1].T) if mirror else out


# ----------------------------------------------------------------------------- nonlinear cells

def nonlinear_vjp(cell, V, word_voltages, bit_voltages, r_word, r_bit, grad_currents):
    """Adjoint of one converged nonlinear read (implicit-function theorem).

    ``cell(v_w, v_b) -> (i, ∂i/∂v_w, ∂i/∂v_b)`` as for ``nodal.solve_nonlinear``; ``V`` (R,)
    word-line source voltages [V]; ``word_voltages``, ``bit_voltages`` (R, N) the converged
    node voltages of that read; ``grad_currents`` (N,) = ∂L/∂I [1/A] for the sense currents,
    or (m, N) for m loss gradients at the same read (one factorisation, m solves).
    Returns ``(∂L/∂V (R,) [1/V], ∂L/∂δi (R, N) [1/A])`` (with leading m for (m, N)), δi_kl a
    current injected in parallel with cell kl (see the module docstring). Exact at the
    converged solution.

    Batched: ``V`` (B, R), voltages (B, R, N) and ``grad_currents`` (B, N), one loss gradient
    per read, return ``(∂L/∂V (B, R), ∂L/∂δi (B, R, N))`` (:func:`nonlinear_vjp_batch`).
    """
    if np.ndim(V) == 2:
        V = np.asarray(V, dtype=float)
        w = np.asarray(word_voltages, dtype=float)
        if w.ndim != 3 or w.shape[:2] != V.shape:
            raise ValueError(f"batched nonlinear_vjp needs V (B, R) and word/bit voltages "
                             f"(B, R, N); got {V.shape}, {w.shape}")
        grad_V, grad_di, _ = nonlinear_vjp_batch(cell, V, V[:, :, None] - w, bit_voltages,
                                                 r_word, r_bit, grad_currents)
        return grad_V, grad_di
    w = np.asarray(word_voltages, dtype=float)
    b = np.asarray(bit_voltages, dtype=float)
    V = np.asarray(V, dtype=float)
    single = np.ndim(grad_currents) == 1
    c = np.atleast_2d(np.asarray(grad_currents, dtype=float))       # (m, N)
    m = c.shape[0]
    R, N = w.shape
    if b.shape != (R, N) or V.shape != (R,) or c.shape[1] != N:
        raise ValueError(f"nonlinear_vjp needs word/bit voltages of one shape (R, N), V (R,) and "
                         f"grad_currents (..., N); got {w.shape}, {b.shape}, {V.shape}, "
                         f"{np.shape(grad_currents)}")
    gw = float(kcl.segment_conductance("r_word", r_word))
    gb = float(kcl.segment_conductance("r_bit", r_bit))
    if gw == 0:
        w = np.broadcast_to(V[:, None], (R, N))
    if gb == 0:
        b = np.zeros((R, N))
    _, di_w, di_b = (np.broadcast_to(np.asarray(a, dtype=float), (R, N)) for a in cell(w, b))
    n_cells = R * N
    cells = np.arange(n_cells).reshape(R, N)
    has_w, has_b = gw > 0, gb > 0
    # unknowns: word nodes (if the word lines are resistive), then bit nodes
    w_of = cells if has_w else None
    b_of = (cells + (n_cells if has_w else 0)) if has_b else None
    n = (n_cells if has_w else 0) + (n_cells if has_b else 0)
    grad_V = np.zeros((m, R))
    grad_di = np.zeros((m, R, N))
    # ∂I/∂u, ∂I/∂V, ∂I/∂δi contracted with c
    rhs = np.zeros((n, m))
    if has_b:
        rhs[b_of[R - 1, :]] = gb * c.T
    else:
        grad_di += c[:, None, :]                           # I_l = Σ_k i_kl + δi_kl
        if has_w:
            rhs[w_of.ravel()] = (di_w[None] * c[:, None, :]).reshape(m, -1).T
        else:
            grad_V += (di_w[None] * c[:, None, :]).sum(axis=2)

    def result():
        return (grad_V[0], grad_di[0]) if single else (grad_V, grad_di)

    if n == 0:
        return result()
    rows, cols, vals = [], [], []

    def add(r, cc, v):
        rows.append(np.asarray(r).ravel())
        cols.append(np.asarray(cc).ravel())
        vals.append(np.broadcast_to(np.asarray(v, dtype=float), np.shape(r)).ravel())

    if has_w:       # F_w = i + g_w (w - w_left) + g_w (w - w_right)
        deg = np.full((R, N), 2.0 * gw)
        deg[:, -1] = gw
        add(w_of, w_of, deg + di_w)
        add(w_of[:, 1:], w_of[:, :-1], -gw)
        add(w_of[:, :-1], w_of[:, 1:], -gw)
        if has_b:
            add(w_of, b_of, di_b)
    if has_b:       # F_b = -i + g_b (b - b_up) + g_b (b - b_down)
        deg = np.full((R, N), 2.0 * gb)
        deg[0, :] = gb
        add(b_of, b_of, deg - di_b)
        add(b_of[1:, :], b_of[:-1, :], -gb)
        add(b_of[:-1, :], b_of[1:, :], -gb)
        if has_w:
            add(b_of, w_of, -di_w)
    J = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n, n))
    try:
        lam = spla.splu(J.T.tocsc()).solve(rhs)
    except RuntimeError as exc:
        raise SolverError(f"nonlinear adjoint: singular Jacobian ({exc})") from None
    lam = lam.reshape(n, m).T                               # (m, n)
    # -λᵀ ∂F/∂V and -λᵀ ∂F/∂δi
    if has_w:
        grad_V += gw * lam[:, w_of[:, 0]]                   # ∂F_w(k, 0)/∂V_k = -g_w
        grad_di -= lam[:, w_of]
    if has_b:
        grad_di += lam[:, b_of]
        if not has_w:                                      # w = V: ∂F_b/∂V_k = -∂i/∂v_w
            grad_V += (di_w[None] * lam[:, b_of]).sum(axis=2)
    return result()


def nonlinear_vjp_batch(cell, V, word_drops, bit_voltages, r_word, r_bit, grad_currents):
    """:func:`nonlinear_vjp` of B converged reads in the solver's own variables, with the
    device currents the adjoint evaluates along the way.

    ``V`` (B, R) source voltages [V]; ``word_drops`` u = V - w and ``bit_voltages`` b
    (B, R, N) [V] of the solutions; ``grad_currents`` (B, N) = ∂L/∂I [1/A].  Returns
    ``(∂L/∂V (B, R) [1/V], ∂L/∂δi (B, R, N) [1/A], device currents (B, R, N) [A])``.  A cell
    with a fused form (``cosim.devices.memtransistor.TerminalCell``) on resistive word and
    bit lines is solved by the compiled kernel (``nodal.fused.adjoint_batch``: Jᵀ λ = r by the
    same block Gauss-Seidel between the line families as the forward solve, swept until the
    error bound on λ is 1e-15 of its size); any read it cannot take, and every other cell,
    by the sparse LU of :func:`nonlinear_vjp`, one read at a time.
    """
    from .nodal import device_currents, fused

    V = np.asarray(V, dtype=float)
    u = np.asarray(word_drops, dtype=float)
    b = np.asarray(bit_voltages, dtype=float)
    c = np.asarray(grad_currents, dtype=float)
    B, R = V.shape
    if u.shape[:2] != (B, R) or u.ndim != 3 or b.shape != u.shape or \
            c.shape != (B, u.shape[2]):
        raise ValueError(f"batched nonlinear_vjp needs V (B, R), word drops and bit voltages "
                         f"(B, R, N) and grad_currents (B, N); got {V.shape}, {u.shape}, "
                         f"{b.shape}, {c.shape}")
    gw = float(kcl.segment_conductance("r_word", r_word))
    gb = float(kcl.segment_conductance("r_bit", r_bit))
    grad_V = np.zeros((B, R))
    grad_di = np.zeros(u.shape)
    i_dev = np.zeros(u.shape)
    ok = np.zeros(B, dtype=bool)
    if fused.available(cell, gw, gb):
        prepared = fused.prepare(cell, u.shape[1:])
        grad_V, grad_di, i_dev, ok = fused.adjoint_batch(prepared, V, u, b, gw, gb, c)
    rest = np.flatnonzero(~ok)
    if rest.size:
        i_dev[rest] = device_currents(cell, V[rest], u[rest], b[rest])
        for k in rest:
            grad_V[k], grad_di[k] = nonlinear_vjp(cell, V[k], V[k][:, None] - u[k], b[k],
                                                  r_word, r_bit, c[k])
    return grad_V, grad_di, i_dev


# ----------------------------------------------------------------------------- the mapping

def mapping_gradient(weights, g_min, g_max, w_max, scale, grad_g, grad_scale) -> np.ndarray:
    r"""∂L/∂W (R, C) through the weight-to-conductance map of ``cosim.devices.mapping``.

    The map (docs/array.md §1): G⁺ = g_min + clip(W, 0, w_max)·s, G⁻ = g_min +
    clip(-W, 0, w_max)·s in columns 2j / 2j+1, s = (g_max - g_min)/w_max [S per weight unit]
    with w_max fixed or (``w_max=None``) max|W|. ``grad_g`` (R, 2C) = ∂L/∂G [1/S] at fixed s,
    ``grad_scale`` = ∂L/∂s at fixed G (the read's own 1/s normalisation). Then

        ∂L/∂W_ij = s (∂L/∂G⁺_ij [W_ij > 0] - ∂L/∂G⁻_ij [W_ij < 0])    (0 where |W| > w_max)
                   + [ij = argmax|W|] (∂L/∂s + Σ ∂L/∂G ⊙ ∂G/∂s) (-s/w_max) sign(W_ij)

    (the second line only for w_max = max|W|; ∂G±/∂s = clip(±W, 0, w_max)). At W_ij = 0 the
    map has a kink and the mean of the two one-sided derivatives is used. Quantisation,
    programming variability, stuck-at faults and device-to-device spread are passed straight
    through: the derivative is that of the ideal map, evaluated at the stored weights.
    """
    W = np.asarray(weights, dtype=float)
    s = float(scale)
    gp, gn = grad_g[:, 0::2], grad_g[:, 1::2]
    auto = w_max is None
    if auto:
        w_max = float(np.max(np.abs(W))) if W.size else 0.0
    if w_max == 0.0:                     # all-zero W maps with w_max = 1, every weight at the kink
        return 0.5 * s * (gp - gn)
    inside = np.abs(W) <= w_max
    grad = s * np.where(W > 0, gp, np.where(W < 0, -gn, 0.5 * (gp - gn))) * inside
    if auto:
        u = np.clip(W, -w_max, w_max)
        total = grad_scale + np.sum(gp * np.maximum(u, 0.0)) + np.sum(gn * np.maximum(-u, 0.0))
        m = np.unravel_index(np.argmax(np.abs(W)), W.shape)
        grad[m] += total * (-s / w_max) * np.sign(W[m])
    return grad
