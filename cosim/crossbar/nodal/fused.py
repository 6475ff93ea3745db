r"""Compiled kernel of the nonlinear read for gated-tanh cells (numba): device evaluation,
KCL and line sweeps fused, one pattern at a time, every pattern of a call in one call.

The cell family (the memtransistor's I-V at a fixed gate, :mod:`cosim.devices.memtransistor`)::

    i(v_w, v_b) = a * sp(x) * v_sat * tanh((v_w - v_b) / v_sat),
    x = (c - (v_w + v_b) / 2) / s_g,    sp(x) = ln(1 + e^x)

with a (A/V) and c (V) per cell, s_g and v_sat (V) scalars, and its exact partials
di/dv_w, di/dv_b (S).  A cell callable offers this form through an attribute
``fused_form = (a (R, C), c (R, C), s_g, v_sat)``; :func:`available` tells whether the
kernel can run it.

The algorithm is that of :mod:`.nonlinear` (``method="lines"``) step for step: damped
Newton in word-line drops u and bit voltages b from the given start, each Newton step by
block Gauss-Seidel sweeps between the word lines (L_w + D_w) and the bit lines (L_b - D_b),
each tridiagonal line factorised as L D L^T (the recurrence of LAPACK dpttrf / dpttrs,
written out here so that it runs inside the compiled loop), the same sweep stopping rule
(1e-6 of the outer residual), the same Armijo test, stall rule and convergence test on the
true residual and the update.  What differs is only where the numbers live: one pattern's
arrays (R x C each) stay in cache through a whole Newton step, the device is evaluated in
the same loop that forms the residual (one pass, no temporaries), and there is no Python
per step.  Anything the fast path does not handle (a Jacobian sign the line factorisation
cannot take, slow sweeps, damping to nothing, a stall, no convergence) marks the pattern
failed and the caller solves it again with the reference path, so failures never change a
result.

Results equal the numpy path to rounding: the same iterates, with ulp-level differences
from the order of floating-point sums and from the libm behind exp / log1p / tanh
(tests/test_nodal.py checks agreement to 1e-14 relative).  One more such difference: a
row whose cells all sit in the small-signal region (:data:`SERIES_SUM`) is evaluated by
Taylor series instead of exp / log1p / tanh (:func:`_device_small`; remainders < 0.2 ulp,
a third of the cost): the undriven rows of a spiking input, where exp / log1p / tanh take
their slow small-argument paths (~50 ns per cell against ~30 ns at read voltages).
"""

from __future__ import annotations

import math
import weakref

import numpy as np

from .kcl import EPS, FLOOR_ULPS

try:                                        # the compiled path is optional at import time
    import numba
except ImportError:                         # pragma: no cover - numba is a dependency
    numba = None

__all__ = ["available", "Prepared", "prepare", "solve_batch", "adjoint_batch",
           "device_currents"]

# the constants of the line Gauss-Seidel Newton method, here and in .nonlinear (which
# imports them: one home; numba freezes module globals when it compiles)
_SWEEP_ETA = 1e-6          # inner sweeps stop at this fraction of the outer residual
_MAX_SWEEPS = 30
_MIN_CONTRACTION = 0.5     # a sweep must shrink the inner residual at least this much
_STALL_LIMIT = 6           # consecutive Newton steps that fail to halve the residual
_UPDATE_FLOOR_ULPS = 16    # a step within this many residual floors is rounding noise
_ADJOINT_TOL = 1e-15       # adjoint sweeps: bound on the error left, relative to max|lam_b|

# status codes of a pattern
CONVERGED, FAILED = 0, 1


def available(cell, gw, gb) -> bool:
    """Whether the kernel can solve ``cell`` on lines g_w, g_b (both resistive)."""
    return (numba is not None and gw > 0 and gb > 0
            and getattr(cell, "fused_form", None) is not None)


def _jit(fn):
    return fn if numba is None else numba.njit(cache=True, nogil=True, error_model="numpy")(fn)


@_jit
def _device(vw, vb, a, c, inv_sg, inv_vsat, gate_k, v_sat):
    """One cell: (i, di/dv_w, di/dv_b) at v_w, v_b (module docstring; the arithmetic of
    Memtransistor.current_terminals, operation for operation); inv_sg = 1/s_g,
    inv_vsat = 1/v_sat, gate_k = -v_sat / (2 s_g)."""
    x = ((vw + vb) * -0.5 + c) * inv_sg
    e = math.exp(-abs(x))
    sp = math.log1p(e) + max(x, 0.0)           # softplus(x); sigmoid(x) below
    sig = (1.0 if x >= 0 else e) / (1.0 + e)
    t = math.tanh((vw - vb) * inv_vsat)
    af = sp * a
    gate = sig * (gate_k * a) * t              # -F'/2 A v_sat tanh
    chan = (1.0 - t * t) * af                  # A F sech^2
    return t * af * v_sat, gate + chan, gate - chan


# The small-signal region of a cell: |v_w + v_b| <= SERIES_SUM s_g and |v_w - v_b| <=
# SERIES_DIFF v_sat, i.e. |x - x0| <= SERIES_SUM / 2 = 0.0125 and |y| <= 0.01 with
# x0 = c / s_g and y = (v_w - v_b) / v_sat.  There sp and tanh are evaluated by their Taylor
# polynomials of degree 7, whose remainders are far below an ulp:
# * sp: the next term is sp^(8)(xi) (x - x0)^8 / 8! with |sp^(8)| <= 1.07 for every xi, so
#   <= 1.6e-20, and that of the partial (x - x0)^7 1.07 / 7! <= 1.0e-17, against sp >= ln 2
#   and sp' >= 1/2 for x0 >= 0; for x0 < 0 every derivative is ~ e^x0 and the bounds hold
#   relative to it (gate-off cells);
# * tanh: the next term, 62 y^9 / 2835, is <= 2.2e-18 of y.
# Measured against a long-double closed form: <= 2.3 ulp over x0 in [-40, 40], where the
# direct formula is off by up to 17 ulp (its rounding of x).  This is where the cells of
# undriven rows sit (their word and bit nodes carry only the IR drop): most cells of a
# spiking input.
SERIES_SUM = 0.025
SERIES_DIFF = 0.01


def softplus_series(x0):
    """Taylor coefficients p_n = sp^(n)(x0) / n!, n = 0..7 (..., 8), of the softplus at x0:
    sp(x0 + delta) = sum p_n delta^n (|delta| <= SERIES_SUM / 2 in the kernel; no power of
    1 / s_g is folded in, so no coefficient can overflow).

    sp^(n) is the (n-1)-th derivative of the logistic f = 1 / (1 + e^-x) for n >= 1, written
    in s = f(x0), q = 1 - s (each from e^-|x0|: no cancellation), w = s q and d = q - s:
    f' = w, f'' = w d, f''' = w (1 - 6 w), f'''' = w d (1 - 12 w), f^(5) = w (1 - 30 w +
    120 w^2), f^(6) = w d (1 - 60 w + 360 w^2).  Evaluated with the libm exp / log1p of
    :func:`_device` (compiled), not numpy's: numpy's SIMD versions (e.g. on AVX-512) may be
    several ulp off, and p_0 is the current of a cell at 0 V to that accuracy."""
    shape = np.shape(x0)
    out = np.empty(shape + (8,))
    _softplus_series(np.ascontiguousarray(x0, dtype=float).reshape(-1), out.reshape(-1, 8))
    return out


@_jit
def _softplus_series(x0, out):
    for k in range(x0.size):
        x = x0[k]
        e = math.exp(-abs(x))
        s = (1.0 if x >= 0 else e) / (1.0 + e)
        q = (e if x >= 0 else 1.0) / (1.0 + e)
        w = s * q
        d = q - s
        out[k, 0] = math.log1p(e) + max(x, 0.0)
        out[k, 1] = s
        out[k, 2] = w / 2.0
        out[k, 3] = w * d / 6.0
        out[k, 4] = w * (1.0 - 6.0 * w) / 24.0
        out[k, 5] = w * d * (1.0 - 12.0 * w) / 120.0
        out[k, 6] = w * (1.0 - 30.0 * w + 120.0 * w * w) / 720.0
        out[k, 7] = w * d * (1.0 - 60.0 * w + 360.0 * w * w) / 5040.0


@_jit
def _device_small(vw, vb, a, poly, i, j, inv_sg, inv_vsat, gate_k, v_sat):
    """:func:`_device` in the small-signal region from the series poly[i, j] (8,) of the
    cell (:func:`softplus_series`): the same (i, di/dv_w, di/dv_b) to rounding, without exp,
    log1p or tanh (~3x cheaper).  Indexed, not sliced: a view per cell costs more than
    the series."""
    delta = (vw + vb) * -0.5 * inv_sg          # x - x0
    y = (vw - vb) * inv_vsat
    sp = poly[i, j, 7]
    sig = 7.0 * sp                             # d sp / dx
    for n in range(6, 0, -1):
        p = poly[i, j, n]
        sp = p + delta * sp
        sig = n * p + delta * sig
    sp = poly[i, j, 0] + delta * sp
    y2 = y * y
    t = y * (1.0 + y2 * (-1.0 / 3.0 + y2 * (2.0 / 15.0 - y2 * (17.0 / 315.0))))
    af = sp * a
    gate = sig * (gate_k * a) * t              # as in _device
    chan = (1.0 - t * t) * af
    return t * af * v_sat, gate + chan, gate - chan


@_jit
def _row_small(vi, u, b, i, s_g, v_sat):
    """Whether every cell of row i is in the small-signal region at (u, b): the row is
    then evaluated by the series, else directly (one decision per row keeps the branch out
    of the cell loop; a NaN voltage: directly)."""
    small_sum = SERIES_SUM * s_g
    small_diff = SERIES_DIFF * v_sat
    for j in range(u.shape[1]):
        vw = vi - u[i, j]
        vb = b[i, j]
        if not (abs(vw + vb) <= small_sum and abs(vw - vb) <= small_diff):
            return False
    return True


@_jit
def _bit_kcl(r, b, gb, gb_end, Fb):
    """F_b = s_b(r) - i - s_b(r-1) on row r (Fb[r] holds the device currents on entry);
    returns (max|F_b|, sum F_b^2, max|s_b(r)|) of the row."""
    R, C = b.shape
    fmax = 0.0
    ss = 0.0
    smax = 0.0
    for j in range(C):
        s_down = gb * (b[r, j] - b[r + 1, j]) if r + 1 < R else gb_end * b[r, j]
        f = s_down - Fb[r, j]
        if r > 0:
            f -= gb * (b[r - 1, j] - b[r, j])
        Fb[r, j] = f
        smax = max(smax, abs(s_down))
        fmax = max(fmax, abs(f))
        ss += f * f
    return fmax, ss, smax


@_jit
def _evaluate(Vk, u, b, amp, off, poly, s_g, v_sat, gw, gw_end, gb, gb_end, Dw, Db, Fw, Fb,
              cur, out, step, u0, du, b0, db, alpha):
    """Cells, KCL residual (Fw, Fb), output currents and the scalars of one pattern at
    (u, b).  out[:] = (max|F|, I_scale, ||F||_2, max|i_dev|).  With ``step`` the point is
    first formed as (u, b) = (u0, b0) + alpha (du, db).  One pass over the rows: each row's
    cells, then its word-line KCL, and the bit-line KCL of the row above (which needs this
    row's bit voltages)."""
    R, C = u.shape
    inv_sg = 1.0 / s_g
    inv_vsat = 1.0 / v_sat
    gate_k = -0.5 * v_sat / s_g
    dev = 0.0
    smax = 0.0
    fmax = 0.0
    ss = 0.0
    for i in range(R):
        vi = Vk[i]
        if step:
            for j in range(C):
                u[i, j] = u0[i, j] + alpha * du[i, j]
                b[i, j] = b0[i, j] + alpha * db[i, j]
        small = _row_small(vi, u, b, i, s_g, v_sat)
        # the two branches are written out in both callers (here and _cells): behind a
        # shared helper numba compiles the loop 1.5-1.8x slower
        for j in range(C):
            if small:
                cell, Dw[i, j], Db[i, j] = _device_small(vi - u[i, j], b[i, j], amp[i, j],
                                                         poly, i, j, inv_sg, inv_vsat,
                                                         gate_k, v_sat)
            else:
                cell, Dw[i, j], Db[i, j] = _device(vi - u[i, j], b[i, j], amp[i, j],
                                                   off[i, j], inv_sg, inv_vsat, gate_k, v_sat)
            Fb[i, j] = cell                     # the device current, until the bit KCL
            dev = max(dev, abs(cell))
            s_left = gw_end * u[i, 0] if j == 0 else gw * (u[i, j] - u[i, j - 1])
            f = cell - s_left                   # word lines: F_w = i - s_w(j) + s_w(j+1),
            if j > 0:                           # completed at node j-1 by s_w(j)
                g = Fw[i, j - 1] + s_left
                Fw[i, j - 1] = g
                fmax = max(fmax, abs(g))
                ss += g * g
            Fw[i, j] = f
            smax = max(smax, abs(s_left))
        g = Fw[i, C - 1]
        fmax = max(fmax, abs(g))
        ss += g * g
        if i > 0:
            m, q, sb = _bit_kcl(i - 1, b, gb, gb_end, Fb)
            fmax = max(fmax, m)
            ss += q
            smax = max(smax, sb)
    m, q, sb = _bit_kcl(R - 1, b, gb, gb_end, Fb)
    fmax = max(fmax, m)
    ss += q
    smax = max(smax, sb, dev)
    for j in range(C):
        cur[j] = gb_end * b[R - 1, j]
    out[0] = fmax
    out[1] = smax
    out[2] = math.sqrt(ss)
    out[3] = dev


@_jit
def _evaluate_ideal(level, table, Dw, Db, Fw, Fb, cur, out):
    """:func:`_evaluate` at the ideal point u = 0, b = 0 from the tabled cell values
    ``table`` (levels, 3, R, C) (i, di/dv_w, di/dv_b at v_w = level, v_b = 0) and the
    level index of every row ``level`` (R,): the segments carry no current there."""
    R, C = Dw.shape
    dev = 0.0
    ss = 0.0
    for i in range(R):
        t = table[level[i]]
        for j in range(C):
            cell = t[0, i, j]
            Dw[i, j] = t[1, i, j]
            Db[i, j] = t[2, i, j]
            Fw[i, j] = cell
            Fb[i, j] = -cell
            dev = max(dev, abs(cell))
            ss += 2.0 * cell * cell
    for j in range(C):
        cur[j] = 0.0
    out[0] = dev
    out[1] = dev
    out[2] = math.sqrt(ss)
    out[3] = dev


_TILE = 16                 # transposes go tile by tile: power-of-two strides alias in cache


@_jit
def _rhs(P, Q, S, out, word_layout):
    """A right-hand side, tile by tile over the (R, C) arrays P, S: in word-line layout
    (``word_layout``) out[j, i] = P[i, j] Q[i, j] + S[i, j]; in bit-line layout
    out[i, j] = -(P[i, j] Q[j, i] + S[i, j]) (Q in word-line layout)."""
    R, C = P.shape
    for i0 in range(0, R, _TILE):
        for j0 in range(0, C, _TILE):
            for i in range(i0, min(R, i0 + _TILE)):
                for j in range(j0, min(C, j0 + _TILE)):
                    if word_layout:
                        out[j, i] = P[i, j] * Q[i, j] + S[i, j]
                    else:
                        out[i, j] = -(P[i, j] * Q[j, i] + S[i, j])


@_jit
def _from_lines(xt, out):
    """out[i, j] = xt[j, i]."""
    R, C = out.shape
    for i0 in range(0, R, _TILE):
        for j0 in range(0, C, _TILE):
            for i in range(i0, min(R, i0 + _TILE)):
                for j in range(j0, min(C, j0 + _TILE)):
                    out[i, j] = xt[j, i]


@_jit
def _factor_words(Dw, gw, gw_end, d, e):
    """L D L^T of every word line (L_w + D_w) in line-last layout: pivots d and multipliers
    e (C, R) (d[j, i] is node j of word line i); False if some di/dv_w < 0 or a pivot is
    not positive.  All
    lines advance together position by position: the recurrence of one line is a chain of
    divisions, the lines are independent (and contiguous in this layout)."""
    R, C = Dw.shape
    for i0 in range(0, R, _TILE):
        for j0 in range(0, C, _TILE):
            for i in range(i0, min(R, i0 + _TILE)):
                for j in range(j0, min(C, j0 + _TILE)):
                    if Dw[i, j] < 0:          # the sign condition of the line method
                        return False
                    g = 2.0 * gw
                    if j == 0:
                        g += gw_end - gw
                    if j == C - 1:
                        g -= gw
                    d[j, i] = g + Dw[i, j]
    return _factor_lines(d, e, -gw)


@_jit
def _factor_bits(Db, gb, gb_end, d, e):
    """L D L^T of every bit line (L_b - D_b) along the rows, all lines at once (layout
    (R, C): the lines are already the contiguous axis); False if some di/dv_b > 0 or a
    pivot is not positive."""
    R, C = Db.shape
    for i in range(R):
        g = 2.0 * gb
        if i == R - 1:
            g += gb_end - gb
        if i == 0:
            g -= gb
        for j in range(C):
            if Db[i, j] > 0:
                return False
            d[i, j] = g - Db[i, j]
    return _factor_lines(d, e, -gb)


@_jit
def _factor_lines(d, e, off):
    """L D L^T in place of tridiagonal lines (dpttrf's recurrence): diagonals d (L, M), one
    line per column, the coupling ``off`` between neighbours; pivots left in d, multipliers
    in e.  False if a pivot is not positive (the line is not SPD)."""
    L, M = d.shape
    for k in range(L - 1):
        for m in range(M):
            if not d[k, m] > 0:
                return False
            e[k, m] = off / d[k, m]
            d[k + 1, m] -= e[k, m] * off
    for m in range(M):
        if not d[L - 1, m] > 0:
            return False
    return True


@_jit
def _solve_lines(d, e, x):
    """x <- T^-1 x in place for the tridiagonal lines factorised by :func:`_factor_words`
    / :func:`_factor_bits` (dpttrs' recurrence along the first axis, lines along the
    second)."""
    L, M = d.shape
    for k in range(1, L):
        for m in range(M):
            x[k, m] -= x[k - 1, m] * e[k - 1, m]
    for m in range(M):
        x[L - 1, m] /= d[L - 1, m]
    for k in range(L - 2, -1, -1):
        for m in range(M):
            x[k, m] = x[k, m] / d[k, m] - x[k + 1, m] * e[k, m]


@_jit
def _lines_step(Fw, Fb, Dw, Db, gw, gw_end, gb, gb_end, target, du, db, nb, dW, eW, dB, eB,
                xt):
    """Newton step (du, db) by block Gauss-Seidel sweeps (.nonlinear._lines_step for one
    pattern); False when the pattern needs the reference method.  dW, eW, xt are (C, R)
    (word-line layout), the rest (R, C)."""
    R, C = Fw.shape
    if not _factor_words(Dw, gw, gw_end, dW, eW):
        return False
    if not _factor_bits(Db, gb, gb_end, dB, eB):
        return False
    db[:, :] = 0.0
    _rhs(Db, db, Fw, xt, True)                # = F_w exactly
    _solve_lines(dW, eW, xt)
    _rhs(Dw, xt, Fb, db, False)
    _solve_lines(dB, eB, db)
    last = -1.0
    for _ in range(_MAX_SWEEPS):
        _rhs(Db, db, Fw, xt, True)
        _solve_lines(dW, eW, xt)
        _rhs(Dw, xt, Fb, nb, False)
        _solve_lines(dB, eB, nb)
        res = 0.0                       # word-equation residual: |D_b (db_k - db_{k-1})|
        for i in range(R):
            for j in range(C):
                res = max(res, abs((db[i, j] - nb[i, j]) * -Db[i, j]))
                db[i, j] = nb[i, j]
        if res <= target:
            _from_lines(xt, du)
            return True
        if last >= 0 and res > _MIN_CONTRACTION * last:
            return False
        last = res
    return False


@_jit
def _step_current(du, db, Dw, Db, gw, gb):
    """Largest change of a branch current (A) that the step (du, db) makes."""
    R, C = du.shape
    change = 0.0
    wire_w = 0.0
    wire_b = 0.0
    for i in range(R):
        for j in range(C):
            change = max(change, abs(-Dw[i, j] * du[i, j] + Db[i, j] * db[i, j]))
            wire_w = max(wire_w, abs(du[i, j] - du[i, j - 1]) if j > 0 else abs(du[i, 0]))
            if i + 1 < R:
                wire_b = max(wire_b, abs(db[i + 1, j] - db[i, j]))
            else:
                wire_b = max(wire_b, abs(db[i, j]))
    return max(change, max(gw * wire_w, gb * wire_b))


@_jit
def _relative(fmax, scale):
    if scale > 0:
        return fmax / scale
    return 0.0 if fmax == 0 else np.inf


@_jit
def _update_small(step, prev, scale, tol, floor):
    """.nonlinear._update_small for one pattern."""
    s_k = step / scale if scale > 0 else np.inf
    s_prev = prev / scale if scale > 0 else np.inf
    estimate = s_k ** 3 / s_prev ** 2 if (np.isfinite(s_prev) and s_prev > 0) else np.inf
    return s_k <= max(math.sqrt(tol), _UPDATE_FLOOR_ULPS * floor) or estimate <= tol


@_jit
def _floor(u, b, dev, gw, gb, scale):
    """Relative rounding floor of the residual at (u, b) (.kcl.drops_floor / scale)."""
    umax = 0.0
    bmax = 0.0
    R, C = u.shape
    for i in range(R):
        for j in range(C):
            umax = max(umax, abs(u[i, j]))
            bmax = max(bmax, abs(b[i, j]))
    if gw == 0:
        umax = 0.0
    if gb == 0:
        bmax = 0.0
    return _relative(FLOOR_ULPS * EPS * (2.0 * gw * umax + 2.0 * gb * bmax + dev), scale)


@_jit
def _solve_one(Vk, u_out, b_out, amp, off, poly, s_g, v_sat, gw, gw_end, gb, gb_end, tol,
               max_iter, cur_out, scal_out, w, level, table):
    """Damped Newton of one pattern from (u_out, b_out) (overwritten with the result);
    returns (status, iterations).  scal_out[:6] the final (max|F|, I_scale, ||F||_2,
    max|i_dev|, max|u|, max|b|).  With a non-empty ``table`` the start is the ideal point,
    evaluated from the table.  The current point and the trial live in two buffers that
    swap roles."""
    u, b, Dw, Db, Fw, Fb, tu, tb, tDw, tDb, tFw, tFb, du, db, nb, dB, eB = w[0]
    dW, eW, xt = w[1]
    cur, tcur, scal, tscal = w[2]
    u[:, :] = u_out
    b[:, :] = b_out
    if table.shape[0] > 0:
        _evaluate_ideal(level, table, Dw, Db, Fw, Fb, cur, scal)
    else:
        _evaluate(Vk, u, b, amp, off, poly, s_g, v_sat, gw, gw_end, gb, gb_end, Dw, Db, Fw, Fb,
                  cur, scal, False, u, u, b, b, 0.0)
    status = FAILED
    iters = 0
    if np.isfinite(scal[0]) and np.isfinite(scal[1]):
        status, iters = _newton(Vk, amp, off, poly, s_g, v_sat, gw, gw_end, gb, gb_end, tol,
                                max_iter, (u, b, Dw, Db, Fw, Fb, cur, scal),
                                (tu, tb, tDw, tDb, tFw, tFb, tcur, tscal),
                                du, db, nb, dW, eW, dB, eB, xt, u_out, b_out, cur_out,
                                scal_out)
    return status, iters


@_jit
def _newton(Vk, amp, off, poly, s_g, v_sat, gw, gw_end, gb, gb_end, tol, max_iter, P, T,
            du, db, nb, dW, eW, dB, eB, xt, u_out, b_out, cur_out, scal_out):
    """The Newton loop of :func:`_solve_one`: P the current point, T the trial (tuples
    (u, b, Dw, Db, Fw, Fb, currents, scalars)); the final point is copied out."""
    step_i = np.inf
    step_prev = np.inf
    stall = 0
    iters = 0
    status = FAILED
    R, C = du.shape
    for it in range(max_iter + 1):
        u, b, Dw, Db, Fw, Fb, cur, scal = P
        rel = _relative(scal[0], scal[1])
        floor = _floor(u, b, scal[3], gw, gb, scal[1])
        limit = max(tol, floor)          # .nonlinear._newton: the residual's rounding floor
        if rel <= limit and (_update_small(step_i, step_prev, scal[1], tol, floor)
                             or scal[0] == 0):
            status = CONVERGED
            break
        if it == max_iter:
            break
        if not _lines_step(Fw, Fb, Dw, Db, gw, gw_end, gb, gb_end, _SWEEP_ETA * scal[0],
                           du, db, nb, dW, eW, dB, eB, xt):
            break
        change = _step_current(du, db, Dw, Db, gw, gb)
        if not np.isfinite(change):
            break
        tu, tb, tDw, tDb, tFw, tFb, tcur, tscal = T
        f0 = scal[2]
        alpha = 1.0
        while alpha >= 1e-10:
            _evaluate(Vk, tu, tb, amp, off, poly, s_g, v_sat, gw, gw_end, gb, gb_end, tDw, tDb,
                      tFw, tFb, tcur, tscal, True, u, du, b, db, alpha)
            ok = np.isfinite(tscal[0]) and np.isfinite(tscal[1])
            if ok and (tscal[2] <= (1.0 - 1e-4 * alpha) * f0
                       or _relative(tscal[0], tscal[1]) <= tol):
                break
            alpha *= 0.5
        if alpha < 1e-10:
            if rel <= limit:             # damped to nothing at the floor: converged
                status = CONVERGED
            break
        P, T = T, P                     # accept the trial
        step_prev = step_i if alpha == 1.0 else np.inf
        step_i = alpha * change
        iters += 1
        new_rel = _relative(tscal[0], tscal[1])
        stall = stall + 1 if new_rel > 0.5 * rel else 0
        if stall >= _STALL_LIMIT and not new_rel <= max(
                tol, _floor(tu, tb, tscal[3], gw, gb, tscal[1])):
            break
    u, b, Dw, Db, Fw, Fb, cur, scal = P
    umax = 0.0
    bmax = 0.0
    for i in range(R):
        for j in range(C):
            u_out[i, j] = u[i, j]
            b_out[i, j] = b[i, j]
            umax = max(umax, abs(u[i, j]))
            bmax = max(bmax, abs(b[i, j]))
    cur_out[:] = cur
    scal_out[:4] = scal
    scal_out[4] = umax
    scal_out[5] = bmax
    return status, iters


@_jit
def _solve_all(V, u, b, amp, off, poly, s_g, v_sat, gw, gw_end, gb, gb_end, tol, max_iter,
               cur, scal, status, iters, levels, table):
    n, R, C = u.shape
    a = np.empty((17, R, C))
    t = np.empty((3, C, R))
    w = ((a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12],
          a[13], a[14], a[15], a[16]), (t[0], t[1], t[2]),
         (np.empty(C), np.empty(C), np.empty(4), np.empty(4)))
    for k in range(n):
        status[k], iters[k] = _solve_one(V[k], u[k], b[k], amp, off, poly, s_g, v_sat, gw,
                                         gw_end, gb, gb_end, tol, max_iter, cur[k], scal[k],
                                         w, levels[k], table)


@_jit
def _ideal_table(levels, amp, off, poly, s_g, v_sat, table):
    """table[l] = (i, di/dv_w, di/dv_b) (3, R, C) at v_w = levels[l], v_b = 0: the ideal
    point u = b = 0 of a pattern whose rows all sit at that level."""
    R, C = amp.shape
    zero = np.zeros((R, C))
    cur = np.empty(C)
    out = np.empty(4)
    Fb = np.empty((R, C))
    for k in range(levels.size):
        Vk = np.full(R, levels[k])
        _evaluate(Vk, zero, zero, amp, off, poly, s_g, v_sat, 1.0, 1.0, 1.0, 1.0, table[k, 1],
                  table[k, 2], table[k, 0], Fb, cur, out, False, zero, zero, zero, zero,
                  0.0)                                        # F_w = i at u = b = 0


@_jit
def _adjoint_all(V, u, b, amp, off, poly, s_g, v_sat, gw, gb, c, grad_V, grad_di, i_dev,
                 ok):
    """Transposed-Jacobian solves of the implicit-function theorem, pattern by pattern.

    At the converged (u, b) of pattern k (cell values recomputed here), J^T lam = r with
    r_b(R-1, j) = g_b c_j: (L_w + D_w) lam_w = D_w lam_b and (L_b - D_b) lam_b = r_b - D_b
    lam_w by block Gauss-Seidel from lam_w = 0, until a sweep changes lam_b by no more than
    a few ulp of its size (the contraction per sweep is the same small number as in the
    forward solve).  grad_V = g_w lam_w(:, 0), grad_di = lam_b - lam_w, i_dev the device
    currents; ok[k] False where the line method cannot run (the caller falls back)."""
    n, R, C = u.shape
    Dw = np.empty((R, C))
    Db = np.empty((R, C))
    dW = np.empty((C, R))
    eW = np.empty((C, R))
    xt = np.empty((C, R))
    dB = np.empty((R, C))
    eB = np.empty((R, C))
    lb = np.empty((R, C))
    nb = np.empty((R, C))
    zero = np.zeros((R, C))
    minus_r = np.zeros((R, C))                 # -r_b: -g_b c on the last row
    for k in range(n):
        _cells(V[k], u[k], b[k], amp, off, poly, s_g, v_sat, i_dev[k], Dw, Db)
        ok[k] = _factor_words(Dw, gw, gw, dW, eW) and _factor_bits(Db, gb, gb, dB, eB)
        if not ok[k]:
            continue
        lb[:, :] = 0.0
        for j in range(C):
            lb[R - 1, j] = gb * c[k, j]
        _solve_lines(dB, eB, lb)
        ok[k] = False
        last = np.inf
        for j in range(C):
            minus_r[R - 1, j] = -gb * c[k, j]
        for _ in range(_MAX_SWEEPS):
            _rhs(Dw, lb, zero, xt, True)        # D_w lam_b
            _solve_lines(dW, eW, xt)
            _rhs(Db, xt, minus_r, nb, False)    # r_b - D_b lam_w
            _solve_lines(dB, eB, nb)
            change = 0.0
            size = 0.0
            for i in range(R):
                for j in range(C):
                    change = max(change, abs(nb[i, j] - lb[i, j]))
                    size = max(size, abs(nb[i, j]))
                    lb[i, j] = nb[i, j]
            # the error left after a sweep contracting by rho is <= rho / (1 - rho) change
            rho = change / last if np.isfinite(last) else 1.0      # measured, not assumed
            if change <= _ADJOINT_TOL * size or (
                    rho < _MIN_CONTRACTION and rho / (1.0 - rho) * change <= _ADJOINT_TOL * size):
                ok[k] = True
                break
            if np.isfinite(last) and rho >= _MIN_CONTRACTION:
                break
            last = change
        _from_lines(xt, nb)                     # lam_w
        for i in range(R):
            grad_V[k, i] = gw * nb[i, 0]
            for j in range(C):
                grad_di[k, i, j] = lb[i, j] - nb[i, j]


@_jit
def _cells(Vk, u, b, amp, off, poly, s_g, v_sat, i_dev, Dw, Db):
    """Device currents and their partials at (u, b) (no KCL)."""
    R, C = u.shape
    inv_sg = 1.0 / s_g
    inv_vsat = 1.0 / v_sat
    gate_k = -0.5 * v_sat / s_g
    for i in range(R):
        small = _row_small(Vk[i], u, b, i, s_g, v_sat)
        for j in range(C):                  # (the branches of _evaluate: see there)
            if small:
                i_dev[i, j], Dw[i, j], Db[i, j] = _device_small(
                    Vk[i] - u[i, j], b[i, j], amp[i, j], poly, i, j, inv_sg, inv_vsat, gate_k,
                    v_sat)
            else:
                i_dev[i, j], Dw[i, j], Db[i, j] = _device(
                    Vk[i] - u[i, j], b[i, j], amp[i, j], off[i, j], inv_sg, inv_vsat, gate_k,
                    v_sat)


@_jit
def _currents_all(V, u, b, amp, off, poly, s_g, v_sat, i_dev, Dw, Db):
    """Cells of every read; the partials go to Dw[k], Db[k], or to one scratch pair
    (Dw, Db of length 1) when the caller wants the currents only."""
    last = Dw.shape[0] - 1
    for k in range(V.shape[0]):
        _cells(V[k], u[k], b[k], amp, off, poly, s_g, v_sat, i_dev[k], Dw[min(k, last)],
               Db[min(k, last)])


def device_currents(prepared, V, u, b, partials: bool = False):
    """Device currents (n, R, C) (A) of the reads V (n, R) at drops u, bit voltages b, as
    the kernel evaluates them; with ``partials`` also (di/dv_w, di/dv_b) (n, R, C) (S)."""
    shape = np.shape(u)
    i_dev = np.empty(shape)
    kept = shape if partials else (1,) + tuple(shape[1:])     # else one scratch pair
    Dw, Db = np.empty(kept), np.empty(kept)
    _currents_all(np.ascontiguousarray(V, dtype=float), np.ascontiguousarray(u, dtype=float),
                  np.ascontiguousarray(b, dtype=float), prepared.amp, prepared.off,
                  prepared.poly, prepared.s_g, prepared.v_sat, i_dev, Dw, Db)
    return (i_dev, Dw, Db) if partials else i_dev


def adjoint_batch(prepared, V, u, b, gw, gb, c):
    """The adjoint of the converged reads V (n, R) at drops u and bit voltages b (n, R, C)
    for the loss gradients c = dL/dI (n, C) (1/A), on lines g_w, g_b without periphery
    resistors (:func:`cosim.crossbar.adjoint.nonlinear_vjp`).  Returns (dL/dV (n, R),
    dL/d(delta i) (n, R, C), device currents (n, R, C) (A), ok (n,) bool: False where the
    caller must use its reference solve)."""
    n, R, C = u.shape
    grad_V = np.zeros((n, R))
    grad_di = np.zeros((n, R, C))
    i_dev = np.empty((n, R, C))
    ok = np.zeros(n, dtype=np.bool_)
    _adjoint_all(np.ascontiguousarray(V, dtype=float), np.ascontiguousarray(u, dtype=float),
                 np.ascontiguousarray(b, dtype=float), prepared.amp, prepared.off, prepared.poly,
                 prepared.s_g, prepared.v_sat, float(gw), float(gb),
                 np.ascontiguousarray(c, dtype=float), grad_V, grad_di, i_dev, ok)
    return grad_V, grad_di, i_dev, ok


class Prepared:
    """The arrays of one cell and one call: the fused form as contiguous (R, C) arrays, the
    softplus series of every cell (R, C, 8) and, for a start at the ideal point with few
    input levels (sorted, (L,)), the cell values there, (L, 3, R, C).  ``like``: a Prepared
    of the same cell and shape whose form and series are shared (not recomputed or copied)."""

    def __init__(self, form, shape, levels=None, like=None):
        R, C = shape
        if like is not None:
            self.amp, self.off, self.poly = like.amp, like.off, like.poly
            self.s_g, self.v_sat = like.s_g, like.v_sat
        else:
            amp, off, s_g, v_sat = form
            self.amp = np.ascontiguousarray(np.broadcast_to(amp, (R, C)), dtype=float)
            self.off = np.ascontiguousarray(np.broadcast_to(off, (R, C)), dtype=float)
            self.s_g, self.v_sat = float(s_g), float(v_sat)
            self.poly = softplus_series(self.off / self.s_g)    # (R, C, 8)
        self.levels = None if levels is None else np.ascontiguousarray(levels, dtype=float)
        self.table = np.zeros((0 if levels is None else self.levels.size, 3, R, C))
        if levels is not None:
            _ideal_table(self.levels, self.amp, self.off, self.poly, self.s_g, self.v_sat,
                         self.table)


_PREPARED = weakref.WeakKeyDictionary()      # cell -> {levels: Prepared}


def prepare(cell, shape, levels=None) -> Prepared:
    """:class:`Prepared` for ``cell`` (kept with the cell: a cell's fused form is fixed)."""
    key = (tuple(shape), None if levels is None else np.asarray(levels, dtype=float).tobytes())
    try:
        kept = _PREPARED.setdefault(cell, {})
    except TypeError:                          # not weak-referenceable: prepare every time
        return Prepared(cell.fused_form, shape, levels)
    if key not in kept:
        if len(kept) >= 8:
            kept.clear()
        like = next((p for k, p in kept.items() if k[0] == key[0]), None)
        kept[key] = Prepared(cell.fused_form, shape, levels, like)
    return kept[key]


def solve_batch(prepared, V, u, b, gw, gw_end, gb, gb_end, tol, max_iter):
    """Solve the patterns V (n, R) from (u, b) (n, R, C), overwritten with the results.

    ``prepared`` a :class:`Prepared`; when it holds an ideal-point table, (u, b) must be
    that point (0, 0): the start is then not evaluated again.  Returns (currents (n, C),
    relative residual (n,), iterations (n,), failed (n,) bool, largest device current (n,),
    I_scale (n,), max|u| (n,), max|b| (n,)).
    """
    n, R, C = u.shape
    cur = np.empty((n, C))
    scal = np.empty((n, 6))
    status = np.empty(n, dtype=np.int64)
    iters = np.empty(n, dtype=np.int64)
    if prepared.levels is None:
        levels = np.zeros((n, R), dtype=np.int64)
    else:
        levels = np.searchsorted(prepared.levels, V).astype(np.int64)
    _solve_all(np.ascontiguousarray(V, dtype=float), u, b, prepared.amp, prepared.off,
               prepared.poly, prepared.s_g, prepared.v_sat, float(gw), float(gw_end), float(gb),
               float(gb_end), float(tol), int(max_iter), cur, scal, status, iters, levels,
               prepared.table)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(scal[:, 1] > 0, scal[:, 0] / np.where(scal[:, 1] > 0, scal[:, 1], 1.0),
                       np.where(scal[:, 0] == 0, 0.0, np.inf))
    return (cur, rel, iters, status != CONVERGED, scal[:, 3], scal[:, 1], scal[:, 4],
            scal[:, 5])
