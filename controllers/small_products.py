"""Products of small matrices and vectors as Numba-compiled loops.

The compiled solvers (`controllers.ilqr`'s backward pass, `controllers.compiled`'s dynamics)
multiply matrices of a few entries, where a BLAS call costs more than the arithmetic, and BLAS
may start threads of its own: on a process pinned to one core they made whole solver processes
1.8x slower at random. All arguments are float64 arrays.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numpy.typing import NDArray

Array = NDArray[np.float64]


@njit(cache=True)
def times(M: Array, v: Array) -> Array:  # pragma: no cover - compiled
    """`M v` (`[m, n] @ [n]`)."""
    return transposed_times(M.T, v)


@njit(cache=True)
def transposed_times(M: Array, v: Array) -> Array:  # pragma: no cover - compiled
    """`M' v` (`[m, n]' @ [m]`), also `v M`."""
    out = np.zeros(M.shape[1])
    for i in range(M.shape[0]):
        for j in range(M.shape[1]):
            out[j] += M[i, j] * v[i]
    return out


@njit(cache=True)
def product(L: Array, R: Array) -> Array:  # pragma: no cover - compiled
    """`L R` (`[m, n] @ [n, q]`)."""
    out = np.zeros((L.shape[0], R.shape[1]))
    for i in range(L.shape[0]):
        for j in range(L.shape[1]):
            for b in range(R.shape[1]):
                out[i, b] += L[i, j] * R[j, b]
    return out


@njit(cache=True)
def transposed_product(L: Array, R: Array) -> Array:  # pragma: no cover - compiled
    """`L' R` (`[m, p]' @ [m, q]`)."""
    return product(np.ascontiguousarray(L.T), R)


@njit(cache=True)
def congruence(L: Array, M: Array, R: Array) -> Array:  # pragma: no cover - compiled
    """`L' M R` (`[m, p]' @ [m, m] @ [m, q]`)."""
    return transposed_product(L, product(M, R))


@njit(cache=True)
def dot(a: Array, b: Array) -> float:  # pragma: no cover - compiled
    """`a . b` (`[n]`, `[n]`)."""
    total = 0.0
    for i in range(a.shape[0]):
        total += a[i] * b[i]
    return total
