"""A box-constrained quadratic program, solved by projected Newton steps.

    minimise 1/2 x' H x + g' x   subject to   lower <= x <= upper      (x: [n], H: [n, n] > 0)

Tassa, Mansard & Todorov (2014), "Control-limited differential dynamic programming", ICRA,
Algorithm 2: at each iteration the dimensions at a bound whose gradient pushes outward are
clamped; a Newton step on the free dimensions is followed by a projected Armijo line search.
Control-limited DDP solves one such QP per time step of its backward pass and uses the free
block's factor for the feedback gains.

The arithmetic is NumPy float64: the matrices are a handful of entries, where a NumPy call
costs a fraction of a torch op, and iLQR's backward pass solves one QP per time step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

Array = NDArray[np.float64]


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
        return t.detach().cpu().numpy().astype(np.float64)

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
    """`box_qp` on NumPy arrays: `(x, free, free_factor, stop_reason)`."""
    if (lower > upper).any():
        raise ValueError(f"lower bound above upper bound: {lower.tolist()} > {upper.tolist()}")
    if H.shape == (1, 1):  # a scalar QP's minimiser is the clipped unconstrained one
        if not H[0, 0] > 0:
            raise ValueError("H must be positive definite on the free dimensions")
        x = np.clip(-g / H[0], lower, upper)
        free = (x > lower) & (x < upper) | (g + H[0] * x == 0)
        return x, free, np.sqrt(H) if free[0] else np.empty((0, 0)), (
            "small_gradient" if free[0] else "all_clamped"
        )
    x = np.clip(x0 if x0 is not None else (lower + upper) / 2, lower, upper)
    x = np.where(np.isfinite(x), x, 0.0)
    value = 0.5 * x @ H @ x + g @ x
    free = np.ones(x.shape, dtype=bool)
    factor = _factor(H, free)
    reason = "max_iterations"
    for _ in range(max_iterations):
        gradient = g + H @ x
        clamped = ((x <= lower) & (gradient > 0)) | ((x >= upper) & (gradient < 0))
        if clamped.all():
            reason = "all_clamped"
            break
        if not np.array_equal(~clamped, free):
            free = ~clamped
            factor = _factor(H, free)
        if np.linalg.norm(gradient[free]) < min_gradient:
            reason = "small_gradient"
            break
        # Newton step on the free dimensions with the clamped ones held where they are.
        direction = np.zeros_like(x)
        target = cholesky_solve(factor, g[free] + H[np.ix_(free, ~free)] @ x[~free])
        direction[free] = -target - x[free]
        slope = float(gradient @ direction)
        if slope >= 0:  # no descent left (round-off)
            reason = "small_improvement"
            break
        step = 1.0
        while True:
            candidate = np.clip(x + step * direction, lower, upper)
            candidate_value = 0.5 * candidate @ H @ candidate + g @ candidate
            if (candidate_value - value) / (step * slope) >= armijo or step < 1e-12:
                break
            step *= step_factor
        improvement = float(value - candidate_value)
        x, value = candidate, candidate_value
        if improvement < min_relative_improvement * max(abs(float(value)), 1e-300):
            reason = "small_improvement"
            break
    # The free set and factor of the returned x itself.
    gradient = g + H @ x
    clamped = ((x <= lower) & (gradient > 0)) | ((x >= upper) & (gradient < 0))
    return x, ~clamped, _factor(H, ~clamped), reason


def cholesky_solve(factor: Array, b: Array) -> Array:
    """`M^-1 b` for `M = L L'` given the lower factor `L` `[n, n]` (`b`: `[n]` or `[n, m]`)."""
    return np.linalg.solve(factor.T, np.linalg.solve(factor, b))


def _factor(H: Array, free: NDArray[np.bool_]) -> Array:
    block = H[np.ix_(free, free)]
    if block.size == 0:
        return block
    try:
        return np.linalg.cholesky((block + block.T) / 2).astype(np.float64, copy=False)
    except np.linalg.LinAlgError:
        raise ValueError("H must be positive definite on the free dimensions") from None
