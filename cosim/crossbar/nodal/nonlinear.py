r"""Exact solution of a crossbar of nonlinear two-terminal cells (all patterns batched).

Unknowns (per input pattern): the word-line drops u(i, j) = V_i - w(i, j) and the bit-node
voltages b(i, j) (V); the cell ``cell(v_w, v_b) -> (i, di/dv_w, di/dv_b)`` (A, S, S) is
evaluated at v_w = V_i - u, v_b = b.  KCL (:mod:`~cosim.crossbar.nodal.kcl`) reads

.. math::

    F_w = i(V - u, b) - L_w u = 0, \qquad F_b = L_b b - i(V - u, b) = 0

with L_w (L_b) the Laplacian of the word (bit) chains of g_w = 1/r_word (g_b = 1/r_bit)
siemens, grounded at the source (at the sense node).  Newton's step (du, db) solves

.. math::

    (L_w + D_w)\,du - D_b\,db = F_w, \qquad D_w\,du + (L_b - D_b)\,db = -F_b

with D_w = diag(di/dv_w), D_b = diag(di/dv_b) (S; not symmetric: the gate of a
memtransistor is referred to the channel midpoint).

Method ("lines", the default): the Newton step is solved by block Gauss-Seidel between the
two line families: du from the word lines (L_w + D_w, tridiagonal per word line), then db
from the bit lines (L_b - D_b, tridiagonal per bit line), both SPD whenever
di/dv_w >= 0 >= di/dv_b, factorised with LAPACK dpttrf for all lines of all patterns in one
call.  After a sweep the bit equations hold exactly and the word equations are off by
D_b (db_k - db_{k-1}), so the inner residual costs nothing; sweeps stop at 1e-6 of the
outer residual.  Each sweep contracts by about g_cell x (line resistance to the source),
~1e-3 for uS devices on 1 ohm lines, so one or two sweeps per Newton step suffice, and the
outer iteration stays quadratic: 2-3 cell evaluations per pattern from the ideal start
u = 0, b = 0 (whose error is the relative IR drop).  Every pattern of a call is iterated
together (arrays (B, R, C)); converged patterns drop out.  A pattern whose D violates the
sign condition, whose sweeps contract by less than 0.5, or that stalls, is finished by the
reference method.

Why this and not the alternatives (measured in ``benchmarks/bench_nonlinear.py``):

* Newton with a fresh sparse LU per step ("lu", kept as the reference and the fallback):
  exact steps but one SuperLU factorisation of the 2RC Jacobian per iteration per pattern
  (~80 % of its time), ~1e5 x a dense matvec.
* Chord / Shamanskii with one factorised linear-read operator: the Jacobian at the read
  point depends on which rows are driven (V_GM and tanh change by O(1) between driven and
  idle rows), so a pattern-independent factorisation contracts only by the relative
  difference of the cell conductances (~2-20 %): ~10-20 SuperLU solves of the whole
  array per pattern, each more expensive than a full line sweep above.
* Newton-Krylov (GMRES preconditioned by that factorisation) needs about as many
  preconditioner solves; line sweeps are cheaper solves with a better preconditioner
  (the exact per-pattern Jacobian of each line).

Convergence (cannot stop early): a pattern is done when its relative KCL residual, computed
from the stored (u, b) with a fresh cell evaluation, is <= ``tol`` AND the last update
changed no branch current by more than sqrt(tol) of the largest (so the error after it is
O(tol) for a Newton step).  There is no rounding-floor shortcut: in drop variables the floor
(~4 eps of the largest branch current) is far below tol.  Each step is damped
(alpha = 1, 1/2, ...) until ||F(x + alpha d)||_2 <= (1 - 1e-4 alpha) ||F(x)||_2.
"""

from __future__ import annotations

import numpy as np

from ... import _validate
from ...errors import SolverError
from .kcl import (NodalSolution, batch_max, bit_lines, branch_balance, check_shape, check_V, relative,
                  segment_conductance, word_lines)
from .sparse import factorise, nodal_matrix, ordering

__all__ = ["solve_nonlinear"]

METHODS = ("auto", "lines", "lu")
_SWEEP_ETA = 1e-6          # inner sweeps stop at this fraction of the outer residual
_MAX_SWEEPS = 30
_MIN_CONTRACTION = 0.5     # a sweep must shrink the inner residual at least this much
_STALL_LIMIT = 6           # consecutive Newton steps that fail to halve the residual
_CHUNK_CELLS = 2 ** 20     # patterns x cells iterated together (bounds the memory)


def _l2(a):
    flat = a.reshape(a.shape[0], -1)
    return np.sqrt(np.einsum("ki,ki->k", flat, flat))


def _call_cell(cell, w, b):
    out = cell(w, b)
    try:
        i, dw, db = out
    except (TypeError, ValueError) as exc:
        raise TypeError("cell must return a tuple (i, di_dvw, di_dvb)") from exc
    return tuple(np.broadcast_to(np.asarray(a, dtype=float), w.shape) for a in (i, dw, db))


class _State:
    """Iterates (u, b) of a batch with the cell evaluation and KCL bookkeeping at them."""

    def __init__(self, cell, V, gw, gb, u, b):
        self.cell, self.V, self.gw, self.gb = cell, V, gw, gb
        self.u, self.b = u, b
        n = V.shape[0]
        self.F = np.empty((n, 2) + u.shape[1:])
        self.Dw = np.empty(u.shape)
        self.Db = np.empty(u.shape)
        self.cur = np.empty((n, u.shape[2]))
        self.scale = np.empty(n)
        self.floor = np.empty(n)
        ok = self.store(np.arange(n), *self.evaluate(np.arange(n), u, b))
        if not ok.all():
            raise SolverError("nonlinear solve: the cell returned non-finite values at the "
                              "starting point (KCL residual = nan)")

    def evaluate(self, idx, u, b):
        with np.errstate(all="ignore"):
            i, dw, db = _call_cell(self.cell, self.V[idx][:, :, None] - u, b)
            F, cur, scale, floor = branch_balance(i, u, b, self.gw, self.gb)
            ok = (np.isfinite(batch_max(F)) & np.isfinite(scale) & np.isfinite(batch_max(i))
                  & np.isfinite(batch_max(dw)) & np.isfinite(batch_max(db)))
        return u, b, F, dw, db, cur, scale, floor, ok

    def store(self, idx, u, b, F, dw, db, cur, scale, floor, ok):
        keep = idx[ok]
        for dst, src in ((self.u, u), (self.b, b), (self.F, F), (self.Dw, dw), (self.Db, db),
                         (self.cur, cur), (self.scale, scale), (self.floor, floor)):
            dst[keep] = src[ok]
        return ok

    def relative(self):
        return relative(self.F, self.scale)


def _lines_step(F, Dw, Db, gw, gb):
    """Newton step (du, db) by block Gauss-Seidel sweeps over the line families (module
    docstring); ok[k] False when pattern k needs the reference method."""
    n = F.shape[0]
    du = np.zeros(Dw.shape)
    db = np.zeros(Dw.shape)
    ok = np.ones(n, dtype=bool)
    if gw > 0:
        ok &= Dw.reshape(n, -1).min(axis=1) >= 0
    if gb > 0:
        ok &= Db.reshape(n, -1).max(axis=1) <= 0
    s = np.flatnonzero(ok)
    if s.size == 0:
        return du, db, ok
    Fw, Fb, dws, dbs = F[s, 0], F[s, 1], Dw[s], Db[s]
    word = word_lines(dws, gw) if gw > 0 else None
    bit = bit_lines(-dbs.transpose(0, 2, 1), gb) if gb > 0 else None

    def bit_solve(rhs):                        # (n, R, C) in, bit-line layout (n, C, R) inside
        return bit.solve(rhs.transpose(0, 2, 1)).transpose(0, 2, 1)

    if bit is None:
        du[s] = word.solve(Fw)
        return du, db, ok
    if word is None:
        db[s] = bit_solve(-Fb)
        return du, db, ok
    target = _SWEEP_ETA * batch_max(F[s])
    x_u = word.solve(Fw)
    x_b = bit_solve(-Fb - dws * x_u)
    last = None
    for _ in range(_MAX_SWEEPS):
        x_u = word.solve(Fw + dbs * x_b)
        nb = bit_solve(-Fb - dws * x_u)
        res = batch_max(dbs * (nb - x_b))          # word-equation residual after this sweep
        x_b = nb
        if np.all(res <= target):
            break
        if last is not None:
            slow = (res > _MIN_CONTRACTION * last) & (res > target)
            if slow.any():
                ok[s[slow]] = False
        last = res
    else:
        ok[s[res > target]] = False
    du[s], db[s] = x_u, x_b
    return du, db, ok


def _lu_step(F, Dw, Db, gw, gb):
    """Newton step of each pattern by a fresh sparse LU of its Jacobian (the reference)."""
    n, R, C = Dw.shape
    N = R * C
    has_w, has_b = gw > 0, gb > 0
    p = ordering(R, C, has_w, has_b)
    du = np.zeros(Dw.shape)
    db = np.zeros(Dw.shape)
    ok = np.ones(n, dtype=bool)
    for k in range(n):
        rhs = np.concatenate(([F[k, 0].ravel()] if has_w else [])
                             + ([F[k, 1].ravel()] if has_b else []))
        try:
            lu = factorise(nodal_matrix(gw, gb, Dw[k], Db[k]), symmetric=False)
            d = np.empty(rhs.size)
            d[p] = lu.solve(-rhs[p])
        except RuntimeError:
            ok[k] = False
            continue
        if not np.all(np.isfinite(d)):
            ok[k] = False
            continue
        if has_w:
            du[k] = -d[:N].reshape(R, C)          # dw = -du
        if has_b:
            db[k] = d[d.size - N:].reshape(R, C)
    return du, db, ok


def _step_currents(du, db, Dw, Db, gw, gb):
    """Largest change of a branch current (A) that a step (du, db) makes, per pattern."""
    change = batch_max(-Dw * du + Db * db)
    if gw > 0:
        change = np.maximum(change, gw * np.maximum(batch_max(du[:, :, :1]),
                                                    batch_max(np.diff(du, axis=2))))
    if gb > 0:
        change = np.maximum(change, gb * np.maximum(batch_max(db[:, -1:, :]),
                                                    batch_max(np.diff(db, axis=1))))
    return change


def _newton(st: _State, idx, tol, max_iter, step):
    """Damped Newton on the patterns ``idx`` of ``st`` with the inner solver ``step``.

    Returns (iterations, failed) per pattern of idx."""
    gw, gb = st.gw, st.gb
    iters = np.zeros(idx.size, dtype=int)
    failed = np.zeros(idx.size, dtype=bool)
    done = np.zeros(idx.size, dtype=bool)
    step_i = np.full(idx.size, np.inf)
    stall = np.zeros(idx.size, dtype=int)
    update_tol = np.sqrt(tol)
    for it in range(max_iter + 1):
        rel = st.relative()[idx]
        fmax = batch_max(st.F[idx])
        done |= (rel <= tol) & ((step_i <= update_tol * st.scale[idx]) | (fmax == 0))
        run = np.flatnonzero(~done & ~failed)
        if run.size == 0 or it == max_iter:
            break
        g = idx[run]
        du, db, ok = step(st.F[g], st.Dw[g], st.Db[g], gw, gb)
        failed[run[~ok]] = True
        run, g, du, db = run[ok], g[ok], du[ok], db[ok]
        if run.size == 0:
            continue
        change = _step_currents(du, db, st.Dw[g], st.Db[g], gw, gb)
        f0 = _l2(st.F[g])
        alpha = np.ones(run.size)
        pending = np.arange(run.size)
        while pending.size:
            a = alpha[pending][:, None, None]
            gp = g[pending]
            trial = st.evaluate(gp, st.u[gp] + a * du[pending], st.b[gp] + a * db[pending])
            F_t, scale_t, ok_t = trial[2], trial[6], trial[8]
            f_t = _l2(F_t)
            with np.errstate(invalid="ignore"):
                good = ok_t & ((f_t <= (1.0 - 1e-4 * alpha[pending]) * f0[pending])
                               | (relative(F_t, scale_t) <= tol))
            st.store(gp, *trial[:8], good)
            step_i[run[pending[good]]] = alpha[pending[good]] * change[pending[good]]
            rest = pending[~good]
            alpha[rest] *= 0.5
            lost = rest[alpha[rest] < 1e-10]
            failed[run[lost]] = True
            pending = rest[alpha[rest] >= 1e-10]
        iters[run] += 1
        new_rel = st.relative()[g]
        stall[run] = np.where(new_rel > 0.5 * rel[run], stall[run] + 1, 0)
        failed[run[(stall[run] >= _STALL_LIMIT) & ~(new_rel <= tol)]] = True
    failed |= ~done
    return iters, failed


def _initial_arrays(initial, V, R, C):
    """(u, b) starting arrays (B, R, C): the ideal point u = b = 0 unless ``initial``."""
    Bn = V.shape[0]
    if initial is None:
        return np.zeros((Bn, R, C)), np.zeros((Bn, R, C))
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
    return (V[:, :, None] - np.broadcast_to(w, (Bn, R, C)),
            np.array(np.broadcast_to(b, (Bn, R, C))))


def solve_nonlinear(cell, V, r_word, r_bit, shape, initial=None, tol: float = 1e-12,
                    max_iter: int = 100, method: str = "auto") -> NodalSolution:
    """Solve a crossbar of nonlinear two-terminal cells for inputs V (R,) or (B, R) (V).

    ``cell(v_w, v_b)`` takes arrays (..., R, C) of word- and bit-node voltages and returns
    ``(i, di_dvw, di_dvb)``: the current from the word node to the bit node through each
    device (A) and its partial derivatives (S; the Jacobian need not be symmetric).  It must
    broadcast over leading batch axes: all patterns of a call are solved together.

    ``method``: "lines" (Newton with line Gauss-Seidel steps, module docstring), "lu"
    (Newton with a sparse LU per step, the reference) or "auto" (lines, finishing any
    pattern it cannot handle with lu).  ``initial`` (a NodalSolution or a pair
    (word_voltages, bit_voltages)) replaces the default start w = V_i, b = 0.  Returns a
    NodalSolution with the per-pattern residuals and iterations; raises SolverError (with
    the residual) if a pattern does not converge.
    """
    if not callable(cell):
        raise TypeError("cell must be callable: cell(v_w, v_b) -> (i, di_dvw, di_dvb)")
    R, C = check_shape(shape)
    Vb, single = check_V(V, R)
    gw = segment_conductance("r_word", r_word)
    gb = segment_conductance("r_bit", r_bit)
    tol = _validate.positive("tol", tol)
    max_iter = _validate.integer("max_iter", max_iter, minimum=1)
    method = _validate.choice("method", method, METHODS)
    u, b = _initial_arrays(initial, Vb, R, C)
    if gw == 0:
        u[:] = 0.0
    if gb == 0:
        b[:] = 0.0
    Bn = Vb.shape[0]
    st = _State(cell, Vb, gw, gb, u, b)
    iters = np.zeros(Bn, dtype=int)
    used = "lu" if method == "lu" else "lines"
    chunk = max(1, _CHUNK_CELLS // (R * C))
    for k0 in range(0, Bn, chunk):
        idx = np.arange(k0, min(Bn, k0 + chunk))
        if method == "lu":
            it, failed = _newton(st, idx, tol, max_iter, _lu_step)
        else:
            it, failed = _newton(st, idx, tol, max_iter, _lines_step)
            if failed.any() and method == "auto":
                used = "lines+lu"
                more, failed_lu = _newton(st, idx[failed], tol, max_iter, _lu_step)
                it[failed] += more
                failed[failed] = failed_lu
        iters[idx] = it
        if failed.any():
            k = int(idx[failed][0])
            raise SolverError(f"nonlinear solve ({method}) did not converge for input {k} "
                              f"in {int(it[failed][0])} iterations: relative KCL residual "
                              f"{float(st.relative()[k]):.3e} > tol {tol:.1e}")
    rel = st.relative()
    floor = relative(st.floor[:, None], st.scale)
    w = Vb[:, :, None] - st.u
    sol = dict(residual=float(rel.max()), iterations=int(iters.sum()), method=f"newton-{used}",
               residual_floor=float(floor.max()))
    if single:
        return NodalSolution(st.cur[0], w[0], st.b[0], word_drops=st.u[0],
                             pattern_residuals=rel, pattern_iterations=iters, **sol)
    return NodalSolution(st.cur, w, st.b, word_drops=st.u, pattern_residuals=rel,
                         pattern_iterations=iters, **sol)
