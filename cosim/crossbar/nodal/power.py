"""Power of a solved read (EQUATIONS.md §7), from the node voltages of the nodal solution.

For sources V (B, R) (V), word-line drops u = V - w and bit-node voltages b (B, R, C) (V),
device currents i_dev (B, R, C) (A) and the line conductances g_w, g_b (S; terminal segments
g_w,end = 1/(r_word + r_driver), g_b,end = 1/(r_bit + r_sense), see :mod:`.kcl`)::

    P_src  = Σ_i V_i I_i,          I_i = g_w,end u(i, 0)   (Σ_j i_dev(i, j) if r_word = 0)
    P_dev  = Σ_ij i_dev(i, j) (w(i, j) - b(i, j))
    P_wire = Σ_i [g_w,end u(i,0)² + g_w Σ_j (u(i,j) - u(i,j-1))²]
             + Σ_j [g_b Σ_i (b(i,j) - b(i+1,j))² + g_b,end b(R-1,j)²]

(W).  The driver and its first word segment carry the same current, so
g_w,end u(i,0)² = I_i² (r_driver + r_word); likewise at the sense end.  Tellegen's theorem
(KCL at every node) gives P_src = P_dev + P_wire; nothing here assumes it.

For a linear array every term is a quadratic form P = V^T Q V; :class:`QuadraticForms`
builds the three Q (R x R) from the R unit-input solutions, once per programming, so the
power of a batch costs one (B, R) x (R, 3R) product.  The source term alone (what the energy
of an inference needs per read) is :class:`SourceForm`: P_src = V^T Y V = |L^T V|² with the
Cholesky factor Y = L L^T of the source admittance, one triangular product (half the flops of
V Y).

The energy of a run needs only sums of P_src over groups of reads (per sample, per step).
When the reads are spikes (every driven row at one input value v) each group is a set of
binary patterns 1_A, and Σ_reads 1_A^T Y 1_A = Σ_ij Y_ij n_ij with n_ij the number of reads
of the group that drive both rows i and j: :meth:`SourceForm.set_sums` counts n_ij as the
popcount of two bit sets (bit r of row i's set: read r drives row i), one 64-bit word per 64
reads, instead of forming every read (R²/2 flops per read).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import blas

from .kcl import end_conductance
from .nonlinear import solve_nonlinear

__all__ = ["TERMS", "dissipation", "quadratic_form", "QuadraticForms", "SourceForm"]

TERMS = ("sources", "devices", "wires")
FORMS_MAX_BYTES = 2 ** 28      # unit-input node voltages kept while the forms are built
SOURCE_FORM_CHUNK = 2048       # reads per triangular product of SourceForm
# SourceForm sums the rows of L that a read drives when its reads are sparse: below a
# fraction SPARSE_FORM_DENSITY - 2 / R of nonzero inputs, judged on the first SPARSE_SAMPLE
# reads of each chunk.  The cost model: dense ~c_d R^2, sparse ~c_s R (1 + d R / 2) per read
# (the scan, then d R driven rows of ~R / 2 entries), c_d / c_s ~ 0.058, so the crossover
# is near d = 0.116 - 2 / R; measured (18000 reads, one thread, ms dense / sparse):
# R = 100: 7.7 / 2.4 at 1 %, 7.0 / 5.3 at 5 %, 6.9 / 6.2 at 8 %; R = 64: 3.9 / 1.8 at 1 %,
# 3.9 / 3.8 at 8 %; R = 200: 26.5 / 16.9 at 8 %; R = 32: 1.6 / 2.1 at 8 %
SPARSE_FORM_DENSITY = 0.08
SPARSE_SAMPLE = 128


def _segment_drops(u, b, gw, gb):
    """Voltages across every segment and their conductances: list of (drop, g) pairs, each
    drop (B, ...) and g broadcastable against it."""
    out = []
    R, C = u.shape[-2:]
    if gw > 0:
        g = np.full(C, float(gw))
        g[0] = end_conductance(gw)
        du = np.empty_like(u)
        du[..., 0] = u[..., 0]
        np.subtract(u[..., 1:], u[..., :-1], out=du[..., 1:])
        out.append((du, g))
    if gb > 0:
        g = np.full((R, 1), float(gb))
        g[-1] = end_conductance(gb)
        db = np.empty_like(b)
        np.subtract(b[..., :-1, :], b[..., 1:, :], out=db[..., :-1, :])
        db[..., -1, :] = b[..., -1, :]
        out.append((db, g))
    return out


def dissipation(i_dev, V, u, b, gw, gb, terms=TERMS) -> dict:
    """The power terms (module docstring) of a batch: dict name -> (B,) in watts."""
    out = {}
    if "sources" in terms:
        if gw > 0:
            drawn = end_conductance(gw) * u[:, :, 0]
        else:
            drawn = i_dev.sum(axis=2)
        out["sources"] = np.einsum("bi,bi->b", V, drawn)
    if "devices" in terms:
        w = V[:, :, None] - u
        out["devices"] = np.einsum("bij,bij->b", i_dev, w - b)
    if "wires" in terms:
        total = np.zeros(V.shape[0])
        for drop, g in _segment_drops(u, b, gw, gb):
            total += np.einsum("bij,bij->b", drop * g, drop)
        out["wires"] = total
    return out


def _linear_cell(G):
    """The cell callable of linear devices G (R, C) (S) for :func:`solve_nonlinear`."""
    def cell(v_w, v_b):
        return G * (v_w - v_b), np.broadcast_to(G, v_w.shape), np.broadcast_to(-G, v_w.shape)
    return cell


def quadratic_form(V, Q) -> np.ndarray:
    """V_b^T Q V_b (B,) for V (B, R) and Q (R, R): one dense product.  (Sparse products in
    numpy measured no faster, 18000 reads, one thread: scipy CSR x dense down to 1.5 % spike
    density; a sum of Q_ij V_i V_j over the pairs of driven rows of each read (cost Σ k²
    for k driven rows) only below ~1.5 % at R = 100 and never at R = 64, and 20-60x slower
    than BLAS at the 15-30 % of a trained network.  The compiled row sums of
    :class:`SourceForm` win below ~6 %.)"""
    return np.einsum("bi,bi->b", V @ Q, V)


class SourceForm:
    """P_src(V) = V^T Y V (W) for sources V (B, R) (V) and a symmetric positive definite
    source admittance Y (R, R) (S), e.g. ``LinearArray.source_admittance()``.

    Evaluated as |L^T V_b|² with the Cholesky factor Y = L L^T (computed once): one BLAS
    triangular product (R² B flops, half of V Y) and a sum of squares (P >= 0 by
    construction; an undriven read draws 0 W exactly).  Sparse reads (spiking inputs at a
    few % activity, ``SPARSE_FORM_DENSITY``) sum only the rows of L they drive, compiled:
    ~k R / 2 flops for k driven rows, 3x faster at 1 % on 100 rows.  Falls back to
    :func:`quadratic_form` if Y is not numerically positive definite.  Relative error
    ~ R eps, like the dense form.
    """

    def __init__(self, Y: np.ndarray):
        self.Y = Y
        try:
            self._L = np.linalg.cholesky(Y)          # lower: Y = L L^T
        except np.linalg.LinAlgError:
            self._L = None

    def __call__(self, V: np.ndarray) -> np.ndarray:
        out = np.empty(V.shape[0])
        # in cache-sized chunks (measured ~10-20 % faster than one call at 18000 x 100).  An
        # undriven read gives 0 W exactly (L^T 0 = 0).  Rows never driven in the batch are
        # not dropped: with the trained demo network (78 of 100 neurons fire on the digits
        # test set) gathering the other columns cost as much as the smaller product saved
        for k0 in range(0, V.shape[0], SOURCE_FORM_CHUNK):
            # a C-ordered (B, R) block is an F-ordered (R, B) one: the BLAS call copies it
            chunk = np.ascontiguousarray(V[k0:k0 + SOURCE_FORM_CHUNK], dtype=float)
            target = out[k0:k0 + chunk.shape[0]]
            if self._L is None:
                target[:] = quadratic_form(chunk, self.Y)
            elif _sparse_rows is not None and _sparse_enough(chunk[:SPARSE_SAMPLE]):
                _sparse_rows(self._L, chunk, target)    # L is C-ordered: row i contiguous
            else:
                W = blas.dtrmm(1.0, self._L, chunk.T, side=0, lower=1, trans_a=1)   # L^T V^T
                target[:] = np.einsum("ib,ib->b", W, W)
        return out

    def set_sums(self, sets: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Σ over the reads of each group of 1_A^T Y 1_A (S) for binary reads 1_A given as
        bit sets: ``sets`` (G, W, R) uint64, bit r % 64 of word ``sets[g, r // 64, i]``
        set when read r of group g drives row i.  ``mask`` (W,) uint64 keeps only
        the reads whose bits it has (default all).  Returns (G,): Σ_ij Y_ij n_ij with n_ij
        the popcount of (set_i & set_j & mask), the rows no read of the group drives left
        out.  Times V² it is the summed source power of reads that drive their rows at V.
        """
        sets = np.asarray(sets)
        if sets.ndim != 3 or sets.dtype != np.uint64:
            raise ValueError(f"sets must be a (groups, words, rows) uint64 array, got "
                             f"{sets.dtype} of shape {sets.shape}")
        G, W, R = sets.shape
        if R != self.Y.shape[0]:
            raise ValueError(f"sets have {R} rows, the source admittance {self.Y.shape[0]}")
        if mask is None:
            mask = np.full(W, np.iinfo(np.uint64).max, dtype=np.uint64)
        mask = np.asarray(mask)
        if mask.shape != (W,) or mask.dtype != np.uint64:
            raise ValueError(f"mask must be a ({W},) uint64 array (one word per word of the "
                             f"sets), got {mask.dtype} of shape {mask.shape}")
        out = np.empty(G)
        # the compiled loop does not check its indices: the shapes were checked above
        _set_pair_sums(np.ascontiguousarray(self.Y, dtype=float), np.ascontiguousarray(sets),
                       np.ascontiguousarray(mask), out)
        return out


def _popcount_py(word):
    """Number of set bits of a 64-bit word (Python: int.bit_count)."""
    return int(word).bit_count()


_popcount = _popcount_py


def _set_pair_sums_py(Y, sets, mask, out):
    """out[g] = Σ_ij Y[i, j] popcount(sets[g, i] & sets[g, j] & mask) over the rows whose
    masked set is not empty (Y symmetric: the diagonal plus twice the lower triangle)."""
    G, W, R = sets.shape
    rows = np.empty(R, np.int64)
    words = np.empty((R, W), np.uint64)
    for g in range(G):
        n = 0
        for i in range(R):
            empty = True
            for w in range(W):
                word = sets[g, w, i] & mask[w]
                words[n, w] = word
                if word != 0:
                    empty = False
            if not empty:
                rows[n] = i
                n += 1
        total = 0.0
        for a in range(n):
            i = rows[a]
            count = 0
            for w in range(W):
                count += _popcount(words[a, w])
            lower = 0.0
            for b in range(a):
                both = 0
                for w in range(W):
                    both += _popcount(words[a, w] & words[b, w])
                lower += Y[i, rows[b]] * both
            total += Y[i, i] * count + 2.0 * lower
        out[g] = total


def _sparse_enough(sample: np.ndarray) -> bool:
    """Whether reads like ``sample`` (k, R) drive few enough rows for :func:`_sparse_rows`
    (the crossover of ``SPARSE_FORM_DENSITY``)."""
    R = sample.shape[1]
    return np.count_nonzero(sample) < (SPARSE_FORM_DENSITY - 2.0 / max(R, 1)) * sample.size


def _sparse_rows_py(L, V, out):
    """out[b] = |L^T V_b|^2 from the driven rows of each read only: L^T v = sum over driven
    i of v_i L[i, :i+1] (~k R / 2 flops for k driven rows instead of R^2 / 2)."""
    B, R = V.shape
    w = np.zeros(R)
    driven = np.empty(R, np.int64)
    for b in range(B):
        n = 0
        for i in range(R):
            if V[b, i] != 0.0:
                driven[n] = i
                n += 1
        if n == 0:
            out[b] = 0.0
            continue
        for m in range(n):
            i = driven[m]
            v = V[b, i]
            for k in range(i + 1):
                w[k] += v * L[i, k]
        total = 0.0
        for k in range(driven[n - 1] + 1):
            total += w[k] * w[k]
            w[k] = 0.0
        out[b] = total


try:                                         # numba is a dependency; without it: dense only
    import numba
    from numba.extending import intrinsic
except ImportError:                          # pragma: no cover
    numba = None
    _sparse_rows = None
    _set_pair_sums = _set_pair_sums_py        # (slow) Python with int.bit_count
else:
    @intrinsic
    def _popcount(typingctx, word):
        """LLVM's ctpop (one POPCNT instruction where the CPU has it) of an integer, int64."""
        from numba import types
        if not isinstance(word, types.Integer):
            return None

        def codegen(context, builder, signature, args):
            count = builder.ctpop(args[0])
            wide = context.get_value_type(types.int64)
            return builder.zext(count, wide) if count.type.width < 64 else count
        return types.int64(word), codegen

    _sparse_rows = numba.njit(cache=True, nogil=True)(_sparse_rows_py)
    # compiled with the global _popcount bound to the intrinsic above
    _set_pair_sums = numba.njit(cache=True, nogil=True)(_set_pair_sums_py)


@dataclass
class QuadraticForms:
    """Q_src, Q_dev, Q_wire (R x R, W/V²) of a linear array, stacked as (R, 3R)."""

    stacked: np.ndarray

    @classmethod
    def build(cls, array, max_bytes: int = FORMS_MAX_BYTES):
        """From a :class:`~cosim.crossbar.nodal.LinearArray`; False if the R unit solutions
        (2 R² C node voltages) would exceed ``max_bytes`` (then solve per batch)."""
        R, C = array.shape
        if 8 * 4 * R * R * C > max_bytes:
            return False
        G, gw, gb = array.G, array.gw, array.gb
        unit = np.eye(R)
        # drop variables (the Newton solver, exact in one step for linear cells): u = V - w
        # to the last bit, where absolute word voltages would lose eps V / u of it
        sol = solve_nonlinear(_linear_cell(G), unit, array.r_word, array.r_bit, (R, C),
                              r_driver=array.r_driver, r_sense=array.r_sense)
        u, b = sol.word_drops.reshape(R, R, C), sol.bit_voltages.reshape(R, R, C)
        w = unit[:, :, None] - u
        # P(V) = V^T Q V with V = Σ_k V_k e_k: Q[k, l] = bilinear term of units k and l
        drawn = end_conductance(gw) * u[:, :, 0] if gw > 0 else (G * (w - b)).sum(axis=2)
        q_src = drawn.T                               # Σ_i e_k,i I_i(e_l)
        across = (w - b).reshape(R, -1)
        q_dev = (across * G.ravel()) @ across.T
        q_wire = np.zeros((R, R))
        for drop, g in _segment_drops(u, b, gw, gb):
            flat = drop.reshape(R, -1)
            q_wire += (flat * np.broadcast_to(g, (R, C)).ravel()) @ flat.T
        # symmetric parts: V^T Q V only sees them (the source form is symmetric by reciprocity)
        forms = [0.5 * (q + q.T) for q in (q_src, q_dev, q_wire)]
        return cls(np.ascontiguousarray(np.concatenate(forms, axis=1)))

    def evaluate(self, V, terms=TERMS) -> dict:
        """The power terms of sources V (B, R): dict name -> (B,) (W)."""
        R = self.stacked.shape[0]
        if tuple(terms) == ("sources",):
            return {"sources": quadratic_form(V, self.stacked[:, :R])}
        VQ = (V @ self.stacked).reshape(V.shape[0], 3, R)
        values = np.einsum("bki,bi->kb", VQ, V)
        return {name: values[k] for k, name in enumerate(TERMS) if name in terms}
