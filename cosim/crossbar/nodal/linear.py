"""Exact solves of a crossbar of linear devices (G in S) with line resistance.

Two exact methods for inputs V (B, R) (V), both checked against the KCL residual (see
:mod:`~cosim.crossbar.nodal.kcl`):

* ``"cg"``: the word nodes are eliminated exactly through the factorised tridiagonal
  word-line blocks (Schur complement on the bit nodes); the reduced SPD system is solved by
  conjugate gradients preconditioned with the factorised tridiagonal bit-line blocks
  (LAPACK ``dpttrf``/``dpttrs``; one factorisation per line family, reused for every
  right-hand side and iteration).  Iterates until the relative KCL residual is <= ``tol/10``
  (or a tenth of the rounding floor); the final answer is checked against ``tol`` (or the
  floor) with an independent residual evaluation; if CG does not get there the direct
  method is used.
* ``"direct"``: one sparse factorisation (nested dissection + SuperLU,
  :mod:`~cosim.crossbar.nodal.sparse`) of the full SPD nodal matrix, reused for all
  right-hand sides.

``"auto"`` (default) uses the cached factorisation if there is one, CG for up to
``cg_max_batch`` input vectors and the factorisation otherwise.  If either r is zero the
remaining lines decouple into independent tridiagonal systems solved directly.
:meth:`LinearArray.transfer_matrix` uses column marching with dense blocks
(:mod:`~cosim.crossbar.nodal.transfer`).
"""

from __future__ import annotations

import numpy as np

from ... import _validate
from .kcl import (NodalSolution, absolute_balance, batch_max, bit_lines, check_G, check_V,
                  end_conductance, relative, rounding_floor, segment_conductance, within,
                  word_lines)
from .sparse import factorise, nodal_matrix, ordering
from .transfer import (BLOCK_MAX, BLOCK_MEM, MARCH_KEEP, probe_input, source_admittance,
                       source_admittance_by_rows, transfer_blocks, transfer_streamed)

_CG_TOL_FACTOR = 0.1      # CG stops at tol * this, then verifies against tol
_CG_MAX_ITER = 500
_SOLVE_CHUNK = 32         # right-hand sides per SuperLU solve call
STREAM_CHECK = 10.0       # a streamed transfer matrix vs its probe (_streamed_transfer)
STREAM_ASPECT = 8         # longest array (max/min side) whose transfer matrix is streamed


class LinearArray:
    """A programmed crossbar of linear devices with line resistance.

    ``G`` (R, C) conductances in siemens (>= 0), ``r_word`` / ``r_bit`` segment resistances in
    ohms (>= 0); ``r_driver`` / ``r_sense`` (ohms, >= 0) in series with the first word
    segment and the last bit segment (EQUATIONS.md §7; each needs its line resistive).
    ``keep_marching``: keep the blocks of the transfer matrix's column marching for the
    adjoint (:attr:`marching`; hardware-aware training).
    Line factorisations are built at construction (cheap); the factorisation of
    the full nodal matrix is built on first need and cached, as is the transfer matrix.
    """

    def __init__(self, G, r_word, r_bit, *, tol: float = 1e-12, cg_max_batch: int = 8,
                 r_driver: float = 0.0, r_sense: float = 0.0, keep_marching: bool = False):
        self.G = check_G(G)
        self.gw = segment_conductance("r_word", r_word, "r_driver", r_driver)
        self.gb = segment_conductance("r_bit", r_bit, "r_sense", r_sense)
        self.r_word, self.r_bit = float(r_word), float(r_bit)
        self.r_driver, self.r_sense = float(r_driver), float(r_sense)
        self.tol = _validate.positive("tol", tol)
        self.cg_max_batch = _validate.integer("cg_max_batch", cg_max_batch, minimum=0)
        self.shape = self.G.shape
        R, C = self.shape
        self._GT = np.ascontiguousarray(self.G.T)     # bit-line layout (C, R)
        self._word = word_lines(self.G, self.gw) if self.gw > 0 else None
        self._bit = bit_lines(self._GT, self.gb) if self.gb > 0 else None
        self._lu = None
        self._perm = None
        self._M = None
        self._Y = None
        self._marching = None
        self.keep_marching = bool(keep_marching)

    # -- full factorisation -------------------------------------------------------------
    def _factor(self):
        if self._lu is None:
            R, C = self.shape
            self._lu = factorise(nodal_matrix(self.gw, self.gb, self.G, -self.G), symmetric=True)
            self._perm = ordering(R, C, True, True)
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
        Vb, single = check_V(V, R)
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
            s[:, :, 0] = end_conductance(self.gw) * Vb
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
                    rhs[np.arange(R) * C, :] = end_conductance(self.gw) * Vb[k0:k1].T
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
            F, currents, scale, fl = absolute_balance(i_dev, Vb, w, b, self.gw, self.gb)
            res = relative(F, scale)
            floor = relative(fl[:, None], scale)
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
        gw_end, gb_end = end_conductance(gw), end_conductance(gb)
        s = np.zeros((Bn, R, C))
        s[:, :, 0] = gw_end * Vb
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
                idev = batch_max(G * (w - x.transpose(0, 2, 1)))
                isense = batch_max(gb_end * x[:, :, -1])
                isrc = batch_max(gw_end * (Vb - w[:, :, 0]))
                scale = np.maximum(idev, np.maximum(isense, isrc))
                floor = rounding_floor(gw, np.maximum(batch_max(Vb), batch_max(w)),
                                       gb, batch_max(x), idev)
                rmax = batch_max(r)
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
            F, _, scale, fl = absolute_balance(G * (w - b), Vb, w, b, gw, gb)
            if np.all(within(F, scale, fl, self.tol)):
                return w, b, total
            if total >= _CG_MAX_ITER:
                break
        return None, None, total

    def transfer_matrix(self) -> np.ndarray:
        """M (R, C) with ``currents = V @ M`` for any input V (the read is linear in V).

        Computed once and cached; the returned array is read-only.  With both lines
        resistive it is built by column marching with dense min(R, C)-sized blocks
        (:func:`~cosim.crossbar.nodal.transfer.transfer_blocks`; for R > C on the mirrored
        array, below; the terminal segments swap with the families), verified on a probe
        input.  When its m^2 n blocks (8 bytes each, m = min(R, C), n = max(R, C)) would
        exceed ``BLOCK_MEM``, the same march streams them
        (:func:`~cosim.crossbar.nodal.transfer.transfer_streamed`: 24 m n bytes, checked
        on a probe solved by CG, :meth:`_streamed_transfer`).  Otherwise (m >
        ``BLOCK_MAX``, or if the march or a check fails) it comes from the cached
        factorisation (m solves, by reciprocity).

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
            M = end_conductance(gb) * G * y.T
        elif gb == 0:
            e = np.zeros((R, C))
            e[:, 0] = 1.0
            y = self._word.solve(e)                 # T_i^{-1} e_0, layout (R, C)
            M = end_conductance(gw) * G * y
        else:
            M = None
            m, nb = min(R, C), max(R, C)
            if m <= BLOCK_MAX and 8 * m * m * nb <= BLOCK_MEM:
                keep = self.keep_marching and 16 * m * m * nb <= MARCH_KEEP
                if R <= C:
                    blocks = transfer_blocks(G, gw, gb, self.tol, with_admittance=True,
                                             with_marching=keep)
                    if blocks is not None:
                        M, self._Y = blocks[:2]
                        self._marching = blocks[2] if keep else None
                else:                               # the mirrored array (see docstring)
                    blocks = transfer_blocks(np.ascontiguousarray(G[::-1, ::-1].T), gb, gw,
                                             self.tol, with_marching=keep)
                    if blocks is not None:
                        Mt, self._marching = blocks if keep else (blocks, None)
                        M = Mt[::-1, ::-1].T
            elif m <= BLOCK_MAX and nb <= STREAM_ASPECT * m:
                # the blocks do not fit: stream them (its products, ~m^2 n^2 flops, grow
                # past the march's 2.3 m^3 n for very long arrays: those factorise)
                M = self._streamed_transfer()
        if M is None:
            n, N = 2 * R * C, R * C
            M = np.empty((R, C))
            src = np.arange(R) * C                  # w(i, 0)
            sense = N + (R - 1) * C + np.arange(C)  # b(R-1, j)
            if R <= C:
                for k0 in range(0, R, _SOLVE_CHUNK):
                    k1 = min(R, k0 + _SOLVE_CHUNK)
                    rhs = np.zeros((n, k1 - k0))
                    rhs[src[k0:k1], np.arange(k1 - k0)] = end_conductance(gw)
                    M[k0:k1, :] = end_conductance(gb) * self._solve_factor(rhs)[sense].T
            else:
                for k0 in range(0, C, _SOLVE_CHUNK):
                    k1 = min(C, k0 + _SOLVE_CHUNK)
                    rhs = np.zeros((n, k1 - k0))
                    rhs[sense[k0:k1], np.arange(k1 - k0)] = end_conductance(gb)
                    M[:, k0:k1] = end_conductance(gw) * self._solve_factor(rhs)[src]
        M = np.ascontiguousarray(M)
        M.setflags(write=False)
        self._M = M
        return M

    def _streamed_transfer(self):
        """M by :func:`~cosim.crossbar.nodal.transfer.transfer_streamed` (on the mirror when
        R > C), checked on a probe input solved independently (line-preconditioned CG, or
        the factorisation if CG does not converge): ``v @ M`` must equal its currents within
        ``STREAM_CHECK`` times max(tol, the probe's residual floor) of the largest current.
        None if the march fails or the check does."""
        R, C = self.shape
        mirror = R > C                          # see transfer_matrix
        out = (transfer_streamed(np.ascontiguousarray(self.G[::-1, ::-1].T), self.gb, self.gw)
               if mirror else transfer_streamed(self.G, self.gw, self.gb))
        if out is None:
            return None
        M, Y = out
        if mirror:                              # the mirror's Y admits its sense side
            M, Y = np.ascontiguousarray(M[::-1, ::-1].T), None
        v = probe_input(R)
        probe = self.solve(v)
        scale = np.abs(probe.currents).max()
        bound = STREAM_CHECK * max(self.tol, probe.residual_floor) * scale
        if not np.abs(v @ M - probe.currents).max() <= bound:
            return None
        if Y is not None:
            self._Y = Y
        return M

    @property
    def marching(self):
        """The :class:`~.transfer.Marching` behind :meth:`transfer_matrix` (of the mirrored
        array when R > C), kept for the adjoint with ``keep_marching`` when its blocks take
        at most ``MARCH_KEEP`` bytes; None otherwise (before :meth:`transfer_matrix`, or when
        the matrix came another way)."""
        return self._marching

    def source_admittance(self) -> np.ndarray | None:
        """Y (R, R) (S): the currents drawn from the word-line sources are I = Y V, so the
        source power is V^T Y V (W).  Exact to a few ulps by the cheaper exact march: for
        R <= C column marching (:func:`~cosim.crossbar.nodal.transfer.source_admittance`, a
        by-product of :meth:`transfer_matrix`), for R > C (a readout) down the rows with
        C x C blocks (:func:`~cosim.crossbar.nodal.transfer.source_admittance_by_rows`, then
        the column march if that fails); None when a line is shorted or the blocks would not
        fit (``BLOCK_MAX``, ``BLOCK_MEM``): use :mod:`.power` then.  Cached, read-only."""
        if self._Y is None and self.gw > 0 and self.gb > 0:
            R, C = self.shape
            # the row march holds (R x R x C) + 3 (R x C x C) doubles
            if R > C and 8 * R * C * (R + 3 * C) <= BLOCK_MEM:
                self._Y = source_admittance_by_rows(self.G, self.gw, self.gb)
            if self._Y is None and R <= BLOCK_MAX and 8 * R * R * C <= BLOCK_MEM:
                if R <= C and self._M is None:
                    self.transfer_matrix()
                if self._Y is None:
                    self._Y = source_admittance(self.G, self.gw, self.gb)
            if self._Y is not None:
                self._Y = np.ascontiguousarray(self._Y)
                self._Y.setflags(write=False)
        return self._Y


def solve(G, V, r_word, r_bit, *, method: str = "auto", tol: float = 1e-12,
          r_driver: float = 0.0, r_sense: float = 0.0) -> NodalSolution:
    """Solve a linear crossbar (G (R, C) in S) for inputs V (R,) or (B, R).

    See :class:`LinearArray` and the module docstring for the methods and the residual.
    """
    return LinearArray(G, r_word, r_bit, tol=tol, r_driver=r_driver,
                       r_sense=r_sense).solve(V, method=method)
