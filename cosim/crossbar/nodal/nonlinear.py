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

Method ("lines"): the Newton step is solved by block Gauss-Seidel between the
two line families: du from the word lines (L_w + D_w, tridiagonal per word line), then db
from the bit lines (L_b - D_b, tridiagonal per bit line), both SPD whenever
di/dv_w >= 0 >= di/dv_b, factorised with LAPACK dpttrf for all lines of all patterns in one
call.  After a sweep the bit equations hold exactly and the word equations are off by
D_b (db_k - db_{k-1}), so the inner residual costs nothing; sweeps stop at 1e-6 of the
outer residual.  Each sweep contracts by about g_cell x (line resistance to the source)
(~3e-8 measured at 64x128 cells on 1 ohm lines), so one sweep per Newton step suffices, and
the outer iteration stays quadratic: 2 Newton steps (2 cell evaluations; the start's is
tabled) per pattern at 1 ohm from the ideal start u = 0, b = 0 (whose error is the
relative IR drop).  Every pattern of a call is iterated together (arrays (B, R, C));
converged patterns drop out.  A pattern whose D violates the sign condition, whose sweeps
contract by less than 0.5, or that stalls, is finished by the reference method.

Method ("fused", what "auto" runs for a cell with a ``fused_form``, i.e. the memtransistor
array of a Compact read, on resistive lines): the same algorithm compiled with numba
(:mod:`.fused`): one pattern at a time with all its arrays in cache, the device evaluation
in the loop that forms the residual, the line factorisations written out (dpttrf's
recurrence).  Same iterates as "lines" to rounding (tested to 1e-14 on the currents);
every pattern it cannot finish is solved again from its start by "lines" (then "lu").

Why this and not the alternatives (``benchmarks/bench_nonlinear.py``, 64x128 cells, 1 ohm,
64 random binary patterns in one call, one thread, CPU time on a shared 2-core machine at
load 0.5-1.8: 0.80-0.86 ms/pattern for the kernel path returning currents (0.83-0.92 ms
with every node voltage), 0.41-0.55x one fresh exact linear solve of the same array;
256x512 cells: 25-29 ms/pattern, 0.88-0.97x; per cell and pattern ~100 ns, about 45 of
them the two device evaluations (exp, log1p, tanh), ~40 the line sweeps):

* The same Newton in numpy ("lines"): 2.5-2.8 ms/pattern, 2-2.7x the kernel: the time goes
  to passes over (B, R, C) temporaries (the device model alone makes ~15), not to
  arithmetic; the kernel makes about 20 passes per Newton step over one pattern's arrays.
* Newton with a fresh sparse LU per step ("lu", kept as the reference and the fallback):
  exact steps, but one SuperLU factorisation of the 2RC Jacobian per iteration and
  pattern: 57-66 ms/pattern.
* Chord iterations on the factorised linear-read operator (cells g k, one SuperLU
  factorisation per array, 24-26 ms): the cell terms are a ~1e-3 perturbation of the line
  Laplacians, so even this fixed Jacobian converges in 3 solves per pattern, but each
  SuperLU solve of the whole array costs more than a line sweep: 6.4-7.3 ms/pattern.
* Newton-GMRES preconditioned by that factorisation: 2 preconditioned solves per Newton
  step, plus the Jacobian assembly: 21-23 ms/pattern.

Convergence (cannot stop early): a pattern is done when its relative KCL residual, computed
from the stored (u, b) with a fresh cell evaluation, is <= ``tol`` AND the last update s_k
(the largest change of a branch current it made, relative to the largest branch current)
is small: s_k <= sqrt(tol), or Newton's error estimate C s_k^2 <= tol with the constant
C = s_k / s_{k-1}^2 measured from the last two full steps.  The residual test uses
max(tol, floor), the rounding floor of the stored drops (4 eps of the largest line term):
in drop variables it is far below tol except on very stiff lines (milliohm segments behind
a driver resistor of tens of ohms, where u carries the driver's drop), and the update test
keeps it from stopping while iterations can still reduce the residual.  Each step is damped
(alpha = 1, 1/2, ...) until ||F(x + alpha d)||_2 <= (1 - 1e-4 alpha) ||F(x)||_2.
"""

from __future__ import annotations

import numpy as np

from ... import _validate
from ...errors import SolverError
from . import fused
from .fused import _MAX_SWEEPS, _MIN_CONTRACTION, _STALL_LIMIT, _SWEEP_ETA, _UPDATE_FLOOR_ULPS
from .kcl import (NodalSolution, batch_max, bit_lines, branch_balance, check_shape, check_V,
                  drops_floor, end_conductance, relative, rounding_floor, segment_conductance,
                  word_lines)
from .sparse import factorise, nodal_matrix, ordering

__all__ = ["solve_nonlinear", "device_currents"]

METHODS = ("auto", "fused", "lines", "lu")
# _SWEEP_ETA, _MAX_SWEEPS, _MIN_CONTRACTION, _STALL_LIMIT, _UPDATE_FLOOR_ULPS: imported
# from .fused (one home)
_CHUNK_CELLS = 2 ** 16     # patterns x cells iterated together: arrays of 512 kB stay in cache
_FUSED_CHUNK_CELLS = 2 ** 20   # the kernel works one pattern at a time: chunks bound memory
_VOLTAGES_MAX_BYTES = 2 ** 31   # node voltages (w, b, drops) returned for a whole batch
_TABLE_LEVELS = 8          # input levels up to which the ideal-point cell values are tabled


def _l2(a):
    flat = a.reshape(a.shape[0], -1)
    return np.sqrt(np.einsum("ki,ki->k", flat, flat))


def _call_cell(cell, w, b):
    out = cell(w, b)
    try:
        i, dw, db = out
    except (TypeError, ValueError) as exc:
        raise TypeError("cell must return a tuple (i, di_dvw, di_dvb)") from exc
    out = []
    for a in (i, dw, db):
        a = np.asarray(a, dtype=float)
        ready = a.shape == w.shape and a.flags.writeable
        out.append(a if ready else np.array(np.broadcast_to(a, w.shape)))
    return out


class _Point:
    """An iterate (u, b) of a batch with the cell evaluation and KCL bookkeeping there."""

    __slots__ = ("u", "b", "F", "Dw", "Db", "cur", "scale", "dev", "fmax", "ok")

    def __init__(self, cell, V, gw, gb, u, b, values=None):
        self.u, self.b = u, b
        with np.errstate(all="ignore"):
            i, self.Dw, self.Db = values if values is not None else \
                _call_cell(cell, V[:, :, None] - u, b)
            self.F, self.cur, self.scale, self.dev = branch_balance(i, u, b, gw, gb)
            self.fmax = batch_max(self.F)
            self.ok = np.isfinite(self.fmax) & np.isfinite(self.scale)

    def take(self, keep):
        """The iterate restricted to the patterns ``keep`` (an index array)."""
        out = object.__new__(_Point)
        for name in self.__slots__:
            setattr(out, name, getattr(self, name)[keep])
        return out

    def put(self, where, other):
        """Overwrite the patterns ``where`` with ``other`` (same length as where)."""
        for name in self.__slots__:
            getattr(self, name)[where] = getattr(other, name)

    def relative(self):
        return relative(self.fmax[:, None], self.scale)

    def floor(self, gw, gb):
        """Relative rounding floor of the residual at the stored (u, b) (n,)."""
        return relative(drops_floor(self.u, self.b, self.dev, gw, gb)[:, None], self.scale)


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
    if not ok.any():
        return du, db, ok
    s = slice(None) if ok.all() else np.flatnonzero(ok)
    Fw, dws, dbs = F[s, 0], Dw[s], Db[s]
    T = (0, 2, 1)                              # (n, R, C) <-> bit-line layout (n, C, R)
    if gb > 0:
        FbT = np.ascontiguousarray(F[s, 1].transpose(T))
        dbT = np.ascontiguousarray(dbs.transpose(T))
        np.negative(dbT, out=dbT)              # -di/dv_b >= 0 on the diagonal
        bit = bit_lines(dbT, gb)
    if gw > 0:
        word = word_lines(dws, gw)
    if gb == 0:
        du[s] = word.solve(Fw)
        return du, db, ok
    if gw == 0:
        db[s] = bit.solve(np.negative(FbT)).transpose(T)
        return du, db, ok
    dwT = np.ascontiguousarray(dws.transpose(T))
    target = _SWEEP_ETA * batch_max(F[s])
    x_u = word.solve(Fw)
    rhs = dwT * x_u.transpose(T)
    rhs += FbT
    x_bT = bit.solve(np.negative(rhs, out=rhs))
    last = None
    for _ in range(_MAX_SWEEPS):
        rhs = dbs * x_bT.transpose(T)
        rhs += Fw
        x_u = word.solve(rhs)
        rhs = dwT * x_u.transpose(T)
        rhs += FbT
        nbT = bit.solve(np.negative(rhs, out=rhs))
        x_bT -= nbT
        x_bT *= dbT                            # = -D_b (db_k - db_{k-1}) in bit layout
        res = batch_max(x_bT)                  # word-equation residual after this sweep
        x_bT = nbT
        if np.all(res <= target):
            break
        if last is not None:
            slow = (res > _MIN_CONTRACTION * last) & (res > target)
            if slow.any():
                ok[np.arange(n)[s][slow]] = False
        last = res
    else:
        ok[np.arange(n)[s][res > target]] = False
    du[s], db[s] = x_u, x_bT.transpose(T)
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


def _newton(cell, V, gw, gb, pt: _Point, tol, max_iter, step):
    """Damped Newton on the batch V (n, R) from the iterate ``pt`` with the inner solver
    ``step``.  Returns (final point, iterations (n,), failed (n,)); the final point holds
    the last accepted iterate of every pattern (converged or not)."""
    n = V.shape[0]
    final = pt.take(np.arange(n))           # results, filled in as patterns finish
    iters = np.zeros(n, dtype=int)
    failed = np.zeros(n, dtype=bool)
    act = np.arange(n)                      # patterns still iterating (rows of pt)
    step_i = np.full(n, np.inf)             # branch-current change of the last step (A)
    step_prev = np.full(n, np.inf)          # ... and of the one before
    stall = np.zeros(n, dtype=int)
    at_floor = np.zeros(n, dtype=bool)      # no step can lower a residual at its floor
    for it in range(max_iter + 1):
        rel = pt.relative()
        # the residual cannot go below its rounding floor: ~4 eps of the largest line term
        # g_w |u|, which exceeds tol only for very stiff lines (milliohm wires behind a
        # driver resistor, where u holds the driver's drop); there the update test alone
        # says whether iterations can still reduce it
        floor = pt.floor(gw, gb)
        limit = np.maximum(tol, floor)
        done = (rel <= limit) & (_update_small(step_i[act], step_prev[act], pt.scale, tol,
                                               floor) | (pt.fmax == 0) | at_floor[act])
        stop = done | failed[act] | (it == max_iter)
        if stop.any():
            final.put(act[stop], pt.take(np.flatnonzero(stop)))
            failed[act[stop & ~done]] = True
            keep = np.flatnonzero(~stop)
            if keep.size == 0:
                break
            pt, act, rel = pt.take(keep), act[keep], rel[keep]
        du, db, ok = step(pt.F, pt.Dw, pt.Db, gw, gb)
        change = _step_currents(du, db, pt.Dw, pt.Db, gw, gb)
        ok &= np.isfinite(change)           # NaN and inf steps propagate into the maximum
        failed[act[~ok]] = True             # leaves at the next test, at its current point
        f0 = _l2(pt.F)
        alpha = np.ones(act.size)
        alpha[~ok] = 0.0
        trial = _Point(cell, V[act], gw, gb, pt.u + du, pt.b + db)
        good = _accept(trial, f0, alpha, tol) | ~ok
        while not good.all():
            bad = np.flatnonzero(~good)
            alpha[bad] *= 0.5
            lost = bad[alpha[bad] < 1e-10]
            # damped to nothing: converged if the residual already sits at its floor
            floored = rel[lost] <= limit[lost]
            at_floor[act[lost[floored]]] = True
            failed[act[lost[~floored]]] = True
            good[lost] = True
            bad = bad[alpha[bad] >= 1e-10]
            if bad.size == 0:
                break
            a = alpha[bad][:, None, None]
            retry = _Point(cell, V[act[bad]], gw, gb, pt.u[bad] + a * du[bad],
                           pt.b[bad] + a * db[bad])
            trial.put(bad, retry)
            good[bad] = _accept(retry, f0[bad], alpha[bad], tol)
        moved = ok & (alpha > 1e-10)
        if not moved.all():                 # keep the old point where no step was taken
            trial.put(np.flatnonzero(~moved), pt.take(np.flatnonzero(~moved)))
        step_prev[act] = np.where(moved & (alpha == 1), step_i[act], np.inf)
        step_i[act] = np.where(moved, alpha * change, step_i[act])
        iters[act] += moved
        new_rel = trial.relative()
        stall[act] = np.where(new_rel > 0.5 * rel, stall[act] + 1, 0)
        failed[act[(stall[act] >= _STALL_LIMIT)
                   & ~(new_rel <= np.maximum(tol, trial.floor(gw, gb)))]] = True
        pt = trial
    return final, iters, failed


def _update_small(step, prev, scale, tol, floor=0.0):
    """The update test: the last step s_k (relative to the largest branch current) is
    <= sqrt(tol), or Newton's error estimate C s_k^2 <= tol with C = s_k / s_{k-1}^2 measured
    from the last two full steps (quadratic convergence observed, not assumed), or s_k is
    within a few times the residual's relative rounding ``floor`` (a step measured in line
    currents g |du| has that floor too: rounding noise, nothing left to converge)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        s_k = np.where(scale > 0, step / np.where(scale > 0, scale, 1.0), np.inf)
        s_prev = np.where(scale > 0, prev / np.where(scale > 0, scale, 1.0), np.inf)
        estimate = np.where(np.isfinite(s_prev) & (s_prev > 0), s_k ** 3 / s_prev ** 2, np.inf)
    return (s_k <= np.maximum(np.sqrt(tol), _UPDATE_FLOOR_ULPS * floor)) | (estimate <= tol)


def _accept(trial, f0, alpha, tol):
    """Armijo test on ||F||_2, or a trial that already meets the tolerance."""
    with np.errstate(invalid="ignore"):
        return trial.ok & ((_l2(trial.F) <= (1.0 - 1e-4 * alpha) * f0)
                           | (trial.relative() <= tol))


def _ideal_point_table(cell, levels, R, C):
    """Cell values at the ideal point (v_w = V_i, v_b = 0) for the input levels (sorted).

    Each device sees only its own two node voltages, so at the ideal point a device of row
    i depends on V_i alone: with few distinct input levels (binary spikes: 2) one
    evaluation of (levels, R, C) replaces a full one per pattern.  Returns (levels, table).
    """
    shape = (levels.size, R, C)
    table = _call_cell(cell, np.broadcast_to(levels[:, None, None], shape).copy(),
                       np.zeros(shape))
    return levels, table


def _initial_arrays(initial, Bn, R, C):
    """Read-only (w, b) starts broadcast to (B, R, C), or None for the ideal point."""
    if initial is None:
        return None
    if isinstance(initial, NodalSolution):
        if initial.word_voltages is None:
            raise ValueError("initial is a NodalSolution without node voltages "
                             "(solved with voltages=False): it cannot start a solve")
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


def _numpy_chunk(cell, V, u, b, gw, gb, tol, max_iter, ideal, method, index):
    """Solve the patterns V (n, R) from (u, b) (n, R, C; overwritten with the solution) by
    the numpy path ("lines" with "lu" for what it cannot handle, or "lu").  Returns
    (currents, relative residuals, iterations, rounding floors, whether lu was needed);
    raises SolverError if a pattern does not converge (``index``: the patterns' numbers in
    the caller's batch)."""
    values = None
    if ideal is not None:
        level = np.searchsorted(ideal[0], V)            # (n, R) index of each V_i
        values = tuple(t[level, np.arange(V.shape[1])[None, :]] for t in ideal[1])
    pt = _Point(cell, V, gw, gb, u, b, values)
    if not pt.ok.all():
        raise SolverError("nonlinear solve: the cell returned non-finite values at the "
                          "starting point (KCL residual = nan)")
    pt, it, failed = _newton(cell, V, gw, gb, pt, tol, max_iter,
                             _lu_step if method == "lu" else _lines_step)
    more_lu = failed.any() and method == "auto"
    if more_lu:
        bad = np.flatnonzero(failed)
        sub, more, failed_lu = _newton(cell, V[bad], gw, gb, pt.take(bad), tol, max_iter,
                                       _lu_step)
        pt.put(bad, sub)
        it[bad] += more
        failed[bad] = failed_lu
    if failed.any():
        k = int(np.flatnonzero(failed)[0])
        raise SolverError(f"nonlinear solve ({method}) did not converge for input "
                          f"{int(index[k])} in {int(it[k])} iterations: relative KCL residual "
                          f"{float(pt.relative()[k]):.3e} > tol {tol:.1e}")
    u[:], b[:] = pt.u, pt.b
    return pt.cur, pt.relative(), it, pt.floor(gw, gb), more_lu


def _fused_chunk(cell, V, u, b, gw, gb, tol, max_iter, prepared, index):
    """:func:`_numpy_chunk` by the compiled kernel (:mod:`.fused`); the patterns it marks
    failed are solved again from their start by the numpy path.  The last value returned
    names the methods used when that happened (else None)."""
    # the start: the ideal point (0, 0) when the kernel was given its table, else a copy
    start = None if prepared.levels is not None else (u.copy(), b.copy())
    cur, rel, it, failed, dev, scale, umax, bmax = fused.solve_batch(
        prepared, V, u, b, gw, end_conductance(gw), gb, end_conductance(gb), tol, max_iter)
    floor = relative(rounding_floor(gw, umax, gb, bmax, dev)[:, None], scale)
    if failed.any():
        bad = np.flatnonzero(failed)
        ub, bb = ((np.zeros((bad.size,) + u.shape[1:]), np.zeros((bad.size,) + u.shape[1:]))
                  if start is None else (start[0][bad], start[1][bad]))
        sub = _numpy_chunk(cell, V[bad], ub, bb, gw, gb, tol, max_iter, None, "auto",
                           index[bad])
        cur[bad], rel[bad], it[bad], floor[bad] = sub[:4]
        u[bad], b[bad] = ub, bb
        return cur, rel, it, floor, "fused+lines+lu" if sub[4] else "fused+lines"
    return cur, rel, it, floor, None


def solve_nonlinear(cell, V, r_word, r_bit, shape, initial=None, tol: float = 1e-12,
                    max_iter: int = 100, method: str = "auto",
                    voltages: bool = True, r_driver: float = 0.0,
                    r_sense: float = 0.0) -> NodalSolution:
    """Solve a crossbar of nonlinear two-terminal cells for inputs V (R,) or (B, R) (V).

    ``cell(v_w, v_b)`` takes arrays (..., R, C) of word- and bit-node voltages and returns
    ``(i, di_dvw, di_dvb)``: the current from the word node to the bit node through each
    device (A) and its partial derivatives (S; the Jacobian need not be symmetric).  It must
    be elementwise (each device sees only its own two node voltages; per-device parameters
    of shape (R, C) broadcast) and broadcast over leading batch axes: all patterns of a
    call are solved together (in chunks of about 2^16 cells, so memory stays bounded).

    ``method``: "lines" (Newton with line Gauss-Seidel steps, module docstring), "fused"
    (the same compiled with numba, for a cell with a ``fused_form`` on resistive lines),
    "lu" (Newton with a sparse LU per step, the reference) or "auto" (fused where it
    applies, else lines; any pattern either cannot finish is finished by lines, then lu).
    ``initial`` (a NodalSolution or a pair (word_voltages, bit_voltages)) replaces the
    default start w = V_i, b = 0.  With
    ``voltages=False`` only the currents and the per-pattern residuals and iterations are
    kept (node-voltage fields None): B x R x C node voltages need not fit in memory.
    ``r_driver`` / ``r_sense`` (ohm) are in series with the first word segment and the last
    bit segment (EQUATIONS.md §7).  Raises SolverError (with the residual) if a pattern does
    not converge.
    """
    if not callable(cell):
        raise TypeError("cell must be callable: cell(v_w, v_b) -> (i, di_dvw, di_dvb)")
    R, C = check_shape(shape)
    Vb, single = check_V(V, R)
    gw = segment_conductance("r_word", r_word, "r_driver", r_driver)
    gb = segment_conductance("r_bit", r_bit, "r_sense", r_sense)
    tol = _validate.positive("tol", tol)
    max_iter = _validate.integer("max_iter", max_iter, minimum=1)
    method = _validate.choice("method", method, METHODS)
    Bn = Vb.shape[0]
    if voltages and 3 * 8 * Bn * R * C > _VOLTAGES_MAX_BYTES:
        raise ValueError(f"the node voltages of {Bn} inputs on {R}x{C} cells need "
                         f"{3 * 8 * Bn * R * C / 2**30:.1f} GiB (limit "
                         f"{_VOLTAGES_MAX_BYTES / 2**30:.0f} GiB): pass voltages=False for "
                         f"the currents only, or fewer inputs per call")
    start = _initial_arrays(initial, Bn, R, C)
    cur = np.empty((Bn, C))
    rel = np.empty(Bn)
    floor = np.empty(Bn)
    iters = np.zeros(Bn, dtype=int)
    u_all = np.empty((Bn, R, C)) if voltages else None
    b_all = np.empty((Bn, R, C)) if voltages else None
    use_fused = method == "fused" or (method == "auto" and fused.available(cell, gw, gb))
    if use_fused and not fused.available(cell, gw, gb):
        raise ValueError("method='fused' needs numba, resistive word and bit lines "
                         "(r_word > 0, r_bit > 0) and a cell with a fused_form "
                         "(cosim.devices.memtransistor.TerminalCell); use method='lines' "
                         "or 'auto'")
    used = "lu" if method == "lu" else "fused" if use_fused else "lines"
    chunk = max(1, (_FUSED_CHUNK_CELLS if use_fused else _CHUNK_CELLS) // (R * C))
    levels = np.unique(Vb) if start is None else None     # a start at the ideal point:
    if levels is not None and levels.size > _TABLE_LEVELS:   # its cell values tabled
        levels = None
    prepared = ideal = None
    if use_fused:
        prepared = fused.prepare(cell, (R, C), levels)
    elif levels is not None:
        ideal = _ideal_point_table(cell, levels, R, C)
    for k0 in range(0, Bn, chunk):
        sl = slice(k0, min(Bn, k0 + chunk))
        Vc = Vb[sl]
        # the chunk's iterates live where the result goes (no copy when voltages are kept)
        u = u_all[sl] if voltages else np.empty((Vc.shape[0], R, C))
        b = b_all[sl] if voltages else np.empty((Vc.shape[0], R, C))
        if start is None:
            u[:], b[:] = 0.0, 0.0
        else:
            np.subtract(Vc[:, :, None], start[0][sl], out=u)
            b[:] = start[1][sl]
        if gw == 0:
            u[:] = 0.0
        if gb == 0:
            b[:] = 0.0
        if use_fused:
            c_cur, c_rel, c_it, c_floor, fell_back = _fused_chunk(
                cell, Vc, u, b, gw, gb, tol, max_iter, prepared,
                np.arange(sl.start, sl.stop))
            if fell_back and used != "fused+lines+lu":
                used = fell_back
        else:
            c_cur, c_rel, c_it, c_floor, more_lu = _numpy_chunk(
                cell, Vc, u, b, gw, gb, tol, max_iter, ideal, method,
                np.arange(sl.start, sl.stop))
            if more_lu:
                used = "lines+lu"
        cur[sl], rel[sl], iters[sl], floor[sl] = c_cur, c_rel, c_it, c_floor
    w_all = Vb[:, :, None] - u_all if voltages else None
    info = dict(residual=float(rel.max()), iterations=int(iters.sum()), method=f"newton-{used}",
                residual_floor=float(floor.max()), pattern_residuals=rel,
                pattern_iterations=iters)
    if single:
        first = (lambda a: None if a is None else a[0])
        return NodalSolution(cur[0], first(w_all), first(b_all), word_drops=first(u_all),
                             **info)
    return NodalSolution(cur, w_all, b_all, word_drops=u_all, **info)


def device_currents(cell, V, word_drops, bit_voltages) -> np.ndarray:
    """Device currents (B, R, C) (A) of the reads V (B, R) (V) at the word-line drops and
    bit voltages (B, R, C) (V) of their solutions: ``cell(V - u, b)[0]``, by the compiled
    kernel for a cell with a fused form (the same equations)."""
    V = np.asarray(V, dtype=float)
    if fused.available(cell, 1.0, 1.0):
        return fused.device_currents(fused.prepare(cell, np.shape(word_drops)[1:]), V,
                                     word_drops, bit_voltages)
    return np.asarray(cell(V[:, :, None] - word_drops, bit_voltages)[0], dtype=float)
