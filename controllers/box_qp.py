"""A box-constrained quadratic program, solved by projected Newton steps.

    minimise 1/2 x' H x + g' x   subject to   lower <= x <= upper      (x: [n], H: [n, n] > 0)

Tassa, Mansard & Todorov (2014), "Control-limited differential dynamic programming", ICRA,
Algorithm 2: at each iteration the dimensions at a bound whose gradient pushes outward are
clamped; a Newton step on the free dimensions is followed by a projected Armijo line search.
Control-limited DDP solves one such QP per time step of its backward pass and uses the free
block's factor for the feedback gains.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class BoxQPResult:
    """The solution of `box_qp`."""

    #: The minimiser `[n]`, inside the box.
    x: torch.Tensor
    #: Dimensions not at an active bound `[n]` (bool).
    free: torch.Tensor
    #: Cholesky factor of `H[free][:, free]` (`[n_free, n_free]`).
    free_factor: torch.Tensor
    #: Why it stopped: "all_clamped", "small_gradient", "small_improvement" or
    #: "max_iterations".
    stop_reason: str


def box_qp(
    H: torch.Tensor, g: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor,
    x0: torch.Tensor | None = None, max_iterations: int = 100, min_gradient: float = 1e-10,
    min_relative_improvement: float = 1e-12, armijo: float = 0.1, step_factor: float = 0.6,
) -> BoxQPResult:
    """Minimise `1/2 x'Hx + g'x` over the box `[lower, upper]` (all `[n]`), from `x0`.

    Raises:
        ValueError: an empty box (`lower > upper`), or `H` not positive definite on the free
            dimensions.
    """
    if bool((lower > upper).any()):
        raise ValueError(f"lower bound above upper bound: {lower.tolist()} > {upper.tolist()}")
    x = torch.clamp(x0 if x0 is not None else (lower + upper) / 2, lower, upper)
    x = torch.where(torch.isfinite(x), x, torch.zeros_like(x))
    value = 0.5 * x @ H @ x + g @ x
    free = torch.ones_like(x, dtype=torch.bool)
    factor = _factor(H, free)
    for _ in range(max_iterations):
        gradient = g + H @ x
        clamped = ((x <= lower) & (gradient > 0)) | ((x >= upper) & (gradient < 0))
        if bool(clamped.all()):
            return _finish(H, g, x, lower, upper, "all_clamped")
        if not torch.equal(~clamped, free):
            free = ~clamped
            factor = _factor(H, free)
        if float(gradient[free].norm()) < min_gradient:
            return _finish(H, g, x, lower, upper, "small_gradient")
        # Newton step on the free dimensions with the clamped ones held where they are.
        direction = torch.zeros_like(x)
        target = torch.cholesky_solve((g[free] + H[free][:, ~free] @ x[~free])[:, None], factor)
        direction[free] = -target[:, 0] - x[free]
        slope = float(gradient @ direction)
        if slope >= 0:  # no descent left (round-off)
            return _finish(H, g, x, lower, upper, "small_improvement")
        step = 1.0
        while True:
            candidate = torch.clamp(x + step * direction, lower, upper)
            candidate_value = 0.5 * candidate @ H @ candidate + g @ candidate
            if float(candidate_value - value) / (step * slope) >= armijo or step < 1e-12:
                break
            step *= step_factor
        improvement = float(value - candidate_value)
        x, value = candidate, candidate_value
        if improvement < min_relative_improvement * max(abs(float(value)), 1e-300):
            return _finish(H, g, x, lower, upper, "small_improvement")
    return _finish(H, g, x, lower, upper, "max_iterations")


def _finish(
    H: torch.Tensor, g: torch.Tensor, x: torch.Tensor, lower: torch.Tensor,
    upper: torch.Tensor, reason: str,
) -> BoxQPResult:
    """The result at `x`, with the free set and factor of `x` itself."""
    gradient = g + H @ x
    clamped = ((x <= lower) & (gradient > 0)) | ((x >= upper) & (gradient < 0))
    return BoxQPResult(x, ~clamped, _factor(H, ~clamped), reason)


def _factor(H: torch.Tensor, free: torch.Tensor) -> torch.Tensor:
    block = H[free][:, free]
    if block.numel() == 0:
        return block
    factor, info = torch.linalg.cholesky_ex((block + block.mT) / 2)
    if int(info) != 0:
        raise ValueError("H must be positive definite on the free dimensions")
    return factor
