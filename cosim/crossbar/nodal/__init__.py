"""Exact nodal (KCL) solution of a crossbar array with line resistance (IR drop).

Topology (docs/array.md §2, the convention of the public tool badcrossbar)
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

* Word line i: the source V_i (V) at the column-0 end, one segment ``r_word`` (ohm) from the
  source to w(i, 0) and one between w(i, j) and w(i, j+1).
* Bit line j: one segment ``r_bit`` (ohm) between b(i, j) and b(i+1, j) and one from
  b(R-1, j) to the sense node, held at 0 V.  The output current I_j (A) is the current of
  that last segment (into the sense node).
* ``r_word = 0`` shorts every word node to its source (w(i, j) = V_i); ``r_bit = 0`` shorts
  every bit node to the sense node (b(i, j) = 0, I_j = sum of the cell currents).  Shorted
  nodes are eliminated exactly (never modelled with a huge conductance).  With both zero
  I = V @ G exactly.

Node-voltage arrays are (R, C) (or (B, R, C)): ``word_voltages[i, j] = w(i, j)``,
``bit_voltages[i, j] = b(i, j)``.

Modules (one algorithm each)
----------------------------
* :mod:`.kcl`: the result type, the KCL residual and its rounding floor (the definition
  every solver is checked against), tridiagonal line matrices.
* :mod:`.sparse`: the sparse nodal matrix, nested-dissection order, SuperLU.
* :mod:`.linear`: :class:`LinearArray` / :func:`solve` for linear devices (CG on the
  bit-node Schur complement, or the sparse factorisation).
* :mod:`.transfer`: the transfer matrix M (``currents = V @ M``) by column marching.
* :mod:`.nonlinear`: :func:`solve_nonlinear` for arbitrary two-terminal cells
  ``cell(v_w, v_b) -> (i, di/dv_w, di/dv_b)``, all patterns batched.
* :mod:`.fused`: the compiled kernel (numba) of that solve and of its adjoint for cells with
  a fused form (the memtransistor at a fixed gate), the numpy path's algorithm.
"""

from .kcl import NodalSolution, kcl_residual
from .linear import LinearArray, solve
from .nonlinear import device_currents, solve_nonlinear
from .sparse import nested_dissection_order

__all__ = ["NodalSolution", "LinearArray", "solve", "solve_nonlinear", "device_currents",
           "kcl_residual",
           "nested_dissection_order"]
