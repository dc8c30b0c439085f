"""Quadratic costs with their derivatives in closed form, for the LQR-family solvers.

    cost(x, u, t)  = 1/2 (x - r)' Q (x - r) + 1/2 (u - v)' R (u - v)
    final_cost(x)  = 1/2 (x - r)' Q_final (x - r)

(the cost of `controllers.lqr`'s problem with constant references). Both are torch functions
that `torch.func` can differentiate, and both carry a `derivatives` method that `ilqr` uses
instead: a cost given in closed form needs no automatic differentiation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class QuadraticCost:
    """The running cost `1/2 (x - x_ref)' Q (x - x_ref) + 1/2 (u - u_ref)' R (u - u_ref)`."""

    #: State weights `[dx, dx]`, symmetric positive semi-definite.
    Q: torch.Tensor
    #: Control weights `[du, du]`, symmetric positive definite.
    R: torch.Tensor
    #: Reference state `[dx]` (None: the origin).
    x_ref: torch.Tensor | None = None
    #: Reference control `[du]` (None: zero).
    u_ref: torch.Tensor | None = None

    def __post_init__(self) -> None:
        _check_weights(self.Q, "Q", definite=False)
        _check_weights(self.R, "R", definite=True)
        _check_reference(self.x_ref, self.Q.shape[0], "x_ref")
        _check_reference(self.u_ref, self.R.shape[0], "u_ref")

    def __call__(self, x: torch.Tensor, u: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The cost `[]` of `x` `[dx]` and `u` `[du]` (the same at every step `t`)."""
        dx, du = _offset(x, self.x_ref), _offset(u, self.u_ref)
        return 0.5 * (dx @ self.Q @ dx + du @ self.R @ du)

    def derivatives(
        self, xs: torch.Tensor, us: torch.Tensor, steps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """`l_x [H, dx]`, `l_u [H, du]`, `l_xx [H, dx, dx]`, `l_uu [H, du, du]` and
        `l_ux [H, du, dx]` at states `xs` `[H, dx]` and controls `us` `[H, du]`."""
        horizon, dx_size, du_size = xs.shape[0], xs.shape[1], us.shape[1]
        Q, R = self.Q.to(xs.dtype), self.R.to(xs.dtype)
        return (
            _offset(xs, self.x_ref) @ Q,
            _offset(us, self.u_ref) @ R,
            Q.expand(horizon, dx_size, dx_size),
            R.expand(horizon, du_size, du_size),
            xs.new_zeros(horizon, du_size, dx_size),
        )


@dataclass(frozen=True)
class QuadraticFinalCost:
    """The final cost `1/2 (x - x_ref)' Q_final (x - x_ref)`."""

    #: Final state weights `[dx, dx]`, symmetric positive semi-definite.
    Q_final: torch.Tensor
    #: Reference state `[dx]` (None: the origin).
    x_ref: torch.Tensor | None = None

    def __post_init__(self) -> None:
        _check_weights(self.Q_final, "Q_final", definite=False)
        _check_reference(self.x_ref, self.Q_final.shape[0], "x_ref")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The cost `[]` of the final state `x` `[dx]`."""
        dx = _offset(x, self.x_ref)
        return 0.5 * dx @ self.Q_final @ dx

    def derivatives(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`l_x [dx]` and `l_xx [dx, dx]` at the final state `x` `[dx]`."""
        Q = self.Q_final.to(x.dtype)
        return _offset(x, self.x_ref) @ Q, Q


def _offset(value: torch.Tensor, reference: torch.Tensor | None) -> torch.Tensor:
    return value if reference is None else value - reference.to(value.dtype)


def _check_weights(matrix: torch.Tensor, name: str, definite: bool) -> None:
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] < 1:
        raise ValueError(f"{name} must be a square matrix, got shape {list(matrix.shape)}")
    if not bool(torch.isfinite(matrix).all()):
        raise ValueError(f"{name} has NaN or infinite entries")
    m = matrix.to(torch.float64)
    if not torch.allclose(m, m.T, rtol=1e-10, atol=1e-12):
        raise ValueError(f"{name} must be symmetric")
    smallest = float(torch.linalg.eigvalsh(m)[0])
    scale = float(m.abs().max())
    if (smallest <= 0) if definite else (smallest < -1e-12 * max(scale, 1.0)):
        kind = "positive definite" if definite else "positive semi-definite"
        raise ValueError(f"{name} must be {kind}; its smallest eigenvalue is {smallest:.3g}")


def _check_reference(reference: torch.Tensor | None, size: int, name: str) -> None:
    if reference is None:
        return
    if tuple(reference.shape) != (size,) or not bool(torch.isfinite(reference).all()):
        raise ValueError(f"{name} must be finite [{size}], got shape {list(reference.shape)}")
