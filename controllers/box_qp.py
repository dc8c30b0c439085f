"""A box-constrained quadratic program, solved by projected Newton steps.

    minimise 1/2 x' H x + g' x   subject to   lower <= x <= upper      (x: [n], H: [n, n] > 0)

Tassa, Mansard & Todorov (2014), "Control-limited differential dynamic programming", ICRA,
Algorithm 2: at each iteration the dimensions at a bound whose gradient pushes outward are
clamped; a Newton step on the free dimensions is followed by a projected Armijo line search.
Control-limited DDP solves one such QP per time step of its backward pass and uses the free
block's factor for the feedback gains.

The arithmetic is float64 in a Numba-compiled kernel (`box_qp_kernel`), which iLQR's compiled
backward pass calls once per time step: the matrices are a handful of entries, where a NumPy
call from Python costs more than the arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numba import njit
from numpy.typing import NDArray

Array = NDArray[np.float64]

#: `box_qp_kernel`'s stop codes, indexing these names.
STOP_REASONS = ("all_clamped", "small_gradient", "small_improvement", "max_iterations")
#: `box_qp_kernel`'s code for a matrix not positive definite on the free dimensions.
NOT_POSITIVE_DEFINITE = -1


@dataclass(frozen=True)
class BoxQPResult:
    """The solution of `box_qp`."""

    #: The minimiser `[n]`, inside the box.
    x: torch.Tensor
    #: Dimensions not at an active bound `[n]` (bool).
    free: torch.Tensor
    #: Lower Cholesky factor of `H[free][:, free]` (`[n_free, n_free]`).
    free_factor: torch.Tensor
    #: Why it stopped: "all_clamped", "small_gradient", "small_improvement" or
    #: "max_iterations".
    stop_reason: str


def box_qp(
    H: torch.Tensor, g: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor,
    x0: torch.Tensor | None = None, max_iterations: int = 100, min_gradient: float = 1e-10,
    min_relative_improvement: float = 1e-12, armijo: float = 0.1, step_factor: float = 0.6,
) -> BoxQPResult:
    """Minimise `1/2 x'Hx + g'x` over the box `[lower, upper]` (all `[n]`), from `x0`
    (default: the box's centre), in float64.

    Raises:
        ValueError: an empty box (`lower > upper`), or `H` not positive definite on the free
            dimensions.
    """
    def numpy(t: torch.Tensor) -> Array:
        return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float64)

    x, free, factor, reason = solve_box_qp(
        numpy(H), numpy(g), numpy(lower), numpy(upper), None if x0 is None else numpy(x0),
        max_iterations, min_gradient, min_relative_improvement, armijo, step_factor,
    )
    return BoxQPResult(
        torch.from_numpy(x), torch.from_numpy(free), torch.from_numpy(factor), reason
    )


def solve_box_qp(
    H: Array, g: Array, lower: Array, upper: Array, x0: Array | None = None,
    max_iterations: int = 100, min_gradient: float = 1e-10,
    min_relative_improvement: float = 1e-12, armijo: float = 0.1, step_factor: float = 0.6,
) -> tuple[Array, NDArray[np.bool_], Array, str]:
    """`box_qp` on NumPy arrays: `(x, free, free_factor [n_free, n_free], stop_reason)`."""
    if (lower > upper).any():
        raise ValueError(f"lower bound above upper bound: {lower.tolist()} > {upper.tolist()}")
    start = (lower + upper) / 2 if x0 is None else x0
    x = np.empty_like(g)
    free = np.empty(g.shape, dtype=np.bool_)
    factor = np.zeros_like(H)
    code = box_qp_kernel(H, g, lower, upper, start, max_iterations, min_gradient,
                         min_relative_improvement, armijo, step_factor, x, free, factor)
    if code == NOT_POSITIVE_DEFINITE:
        raise ValueError("H must be positive definite on the free dimensions")
    n_free = int(free.sum())
    return x, free, np.ascontiguousarray(factor[:n_free, :n_free]), STOP_REASONS[code]


@njit(cache=True)
def box_qp_kernel(
    H: Array, g: Array, lower: Array, upper: Array, x0: Array, max_iterations: int,
    min_gradient: float, min_relative_improvement: float, armijo: float, step_factor: float,
    x: Array, free: NDArray[np.bool_], factor: Array,
) -> int:  # pragma: no cover - compiled; exercised through solve_box_qp and iLQR
    """The solver: writes the minimiser into `x`, the free set into `free` and the free
    block's lower Cholesky factor into `factor[:n_free, :n_free]`; returns a `STOP_REASONS`
    index, or `NOT_POSITIVE_DEFINITE`."""
    n = g.shape[0]
    if n == 1:  # a scalar QP's minimiser is the clipped unconstrained one
        if not H[0, 0] > 0:
            return NOT_POSITIVE_DEFINITE
        x[0] = min(max(-g[0] / H[0, 0], lower[0]), upper[0])
        free[0] = (lower[0] < x[0] < upper[0]) or g[0] + H[0, 0] * x[0] == 0
        factor[0, 0] = np.sqrt(H[0, 0])
        return 1 if free[0] else 0
    for i in range(n):
        value = min(max(x0[i], lower[i]), upper[i])
        x[i] = value if np.isfinite(value) else 0.0
    value = _quadratic(H, g, x)
    gradient, direction, candidate = np.empty(n), np.empty(n), np.empty(n)
    clamped = np.zeros(n, dtype=np.bool_)
    for i in range(n):
        free[i] = True
    if not _free_factor(H, free, factor):
        return NOT_POSITIVE_DEFINITE
    reason = 3
    for _ in range(max_iterations):
        _gradient(H, g, x, gradient)
        all_clamped, changed = True, False
        for i in range(n):
            clamped[i] = (x[i] <= lower[i] and gradient[i] > 0) or (
                x[i] >= upper[i] and gradient[i] < 0)
            all_clamped = all_clamped and clamped[i]
            changed = changed or clamped[i] == free[i]
        if all_clamped:
            reason = 0
            break
        if changed:
            for i in range(n):
                free[i] = not clamped[i]
            if not _free_factor(H, free, factor):
                return NOT_POSITIVE_DEFINITE
        norm = 0.0
        for i in range(n):
            if free[i]:
                norm += gradient[i] ** 2
        if np.sqrt(norm) < min_gradient:
            reason = 1
            break
        # Newton step on the free dimensions with the clamped ones held where they are.
        index = np.flatnonzero(free)
        rhs = np.empty(index.shape[0])
        for a in range(index.shape[0]):
            i = index[a]
            rhs[a] = g[i]
            for j in range(n):
                if not free[j]:
                    rhs[a] += H[i, j] * x[j]
        target = _cholesky_solve_vector(factor, rhs)
        direction[:] = 0.0
        for a in range(index.shape[0]):
            direction[index[a]] = -target[a] - x[index[a]]
        slope = 0.0
        for i in range(n):
            slope += gradient[i] * direction[i]
        if slope >= 0:  # no descent left (round-off)
            reason = 2
            break
        step = 1.0
        while True:
            for i in range(n):
                candidate[i] = min(max(x[i] + step * direction[i], lower[i]), upper[i])
            candidate_value = _quadratic(H, g, candidate)
            if (candidate_value - value) / (step * slope) >= armijo or step < 1e-12:
                break
            step *= step_factor
        improvement = value - candidate_value
        x[:] = candidate
        value = candidate_value
        if improvement < min_relative_improvement * max(abs(value), 1e-300):
            reason = 2
            break
    # The free set and factor of the returned x itself.
    _gradient(H, g, x, gradient)
    for i in range(n):
        free[i] = not ((x[i] <= lower[i] and gradient[i] > 0) or (
            x[i] >= upper[i] and gradient[i] < 0))
    if not _free_factor(H, free, factor):
        return NOT_POSITIVE_DEFINITE
    return reason


@njit(cache=True)
def cholesky(A: Array, L: Array) -> bool:  # pragma: no cover - compiled
    """The lower factor of the symmetric part of `A` `[n, n]` into `L`; False where `A` is not
    positive definite."""
    n = A.shape[0]
    for j in range(n):
        total = (A[j, j] + A[j, j]) / 2
        for k in range(j):
            total -= L[j, k] * L[j, k]
        if not total > 0:
            return False
        L[j, j] = np.sqrt(total)
        for i in range(j + 1, n):
            total = (A[i, j] + A[j, i]) / 2
            for k in range(j):
                total -= L[i, k] * L[j, k]
            L[i, j] = total / L[j, j]
        for i in range(j):
            L[i, j] = 0.0
    return True


@njit(cache=True)
def cholesky_solve_into(L: Array, b: Array, out: Array) -> None:  # pragma: no cover
    """`out = M^-1 b` for `M = L L'` (`L` `[n, n]` lower, `b` and `out` `[n]`)."""
    n = b.shape[0]
    for i in range(n):
        total = b[i]
        for k in range(i):
            total -= L[i, k] * out[k]
        out[i] = total / L[i, i]
    for i in range(n - 1, -1, -1):
        total = out[i]
        for k in range(i + 1, n):
            total -= L[k, i] * out[k]
        out[i] = total / L[i, i]


@njit(cache=True)
def _cholesky_solve_vector(L: Array, b: Array) -> Array:  # pragma: no cover - compiled
    out = np.empty(b.shape[0])
    cholesky_solve_into(L[: b.shape[0], : b.shape[0]], b, out)
    return out


@njit(cache=True)
def _free_factor(H: Array, free: NDArray[np.bool_], factor: Array) -> bool:  # pragma: no cover
    index = np.flatnonzero(free)
    m = index.shape[0]
    block = np.empty((m, m))
    for a in range(m):
        for b in range(m):
            block[a, b] = H[index[a], index[b]]
    return cholesky(block, factor[:m, :m]) if m > 0 else True


@njit(cache=True)
def _gradient(H: Array, g: Array, x: Array, out: Array) -> None:  # pragma: no cover
    n = g.shape[0]
    for i in range(n):
        total = g[i]
        for j in range(n):
            total += H[i, j] * x[j]
        out[i] = total


@njit(cache=True)
def _quadratic(H: Array, g: Array, x: Array) -> float:  # pragma: no cover - compiled
    n = g.shape[0]
    total = 0.0
    for i in range(n):
        inner = 0.0
        for j in range(n):
            inner += H[i, j] * x[j]
        total += x[i] * (0.5 * inner + g[i])
    return total
