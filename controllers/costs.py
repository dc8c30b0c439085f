"""Costs with their own derivatives, for the LQR-family solvers.

Quadratic costs (the cost of `controllers.lqr`'s problem with constant references):

    cost(x, u, t)  = 1/2 (x - r)' Q (x - r) + 1/2 (u - v)' R (u - v)
    final_cost(x)  = 1/2 (x - r)' Q_final (x - r)

and residual costs `1/2 r(x)' W r(x) + 1/2 (u - v)' R (u - v)` with Gauss-Newton derivatives.
All are torch functions that `torch.func` can differentiate, and all carry a `derivatives`
method that `ilqr` uses instead: closed-form quadratic derivatives need no automatic
differentiation, and the Gauss-Newton ones are positive semi-definite by construction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.func import jacrev, vmap


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

    def values(self, xs: torch.Tensor, us: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """The cost `[H]` of each row of `xs` `[H, dx]` and `us` `[H, du]`."""
        dx, du = _offset(xs, self.x_ref), _offset(us, self.u_ref)
        Q, R = self.Q.to(xs.dtype), self.R.to(xs.dtype)
        return 0.5 * (((dx @ Q) * dx).sum(-1) + ((du @ R) * du).sum(-1))

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


#: `residual(x [dx]) -> [dr]`, differentiable by torch.func.
Residual = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ResidualCost:
    """The running cost `1/2 r(x)' W r(x) + 1/2 (u - u_ref)' R (u - u_ref)` of a residual
    `r`, with Gauss-Newton derivatives: `l_x = J' W r`, `l_xx = J' W J` (`J = dr/dx`).

    Dropping the residual's curvature keeps `l_xx` positive semi-definite where the exact
    Hessian is not: a pendulum's `1 - cos(theta)` is the residual `[1 - cos, sin]`, whose
    exact Hessian is negative at the bottom, where a swing-up starts (Gauss-Newton costs as
    in Crocoddyl; Mastalli et al. 2020).
    """

    #: The residual `r(x [dx]) -> [dr]`.
    residual: Residual
    #: Residual weights `[dr, dr]`, symmetric positive semi-definite.
    W: torch.Tensor
    #: Control weights `[du, du]`, symmetric positive definite.
    R: torch.Tensor
    #: Reference control `[du]` (None: zero).
    u_ref: torch.Tensor | None = None

    def __post_init__(self) -> None:
        _check_weights(self.W, "W", definite=False)
        _check_weights(self.R, "R", definite=True)
        _check_reference(self.u_ref, self.R.shape[0], "u_ref")

    def __call__(self, x: torch.Tensor, u: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The cost `[]` of `x` `[dx]` and `u` `[du]`."""
        r, du = self.residual(x), _offset(u, self.u_ref)
        return 0.5 * (r @ self.W @ r + du @ self.R @ du)

    def values(self, xs: torch.Tensor, us: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """The cost `[H]` of each row of `xs` `[H, dx]` and `us` `[H, du]`."""
        r, du = vmap(self.residual)(xs), _offset(us, self.u_ref)
        W, R = self.W.to(xs.dtype), self.R.to(xs.dtype)
        return 0.5 * (((r @ W) * r).sum(-1) + ((du @ R) * du).sum(-1))

    def derivatives(
        self, xs: torch.Tensor, us: torch.Tensor, steps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gauss-Newton `l_x [H, dx]`, `l_xx [H, dx, dx]`; exact `l_u`, `l_uu`; `l_ux` = 0."""
        horizon, du_size = xs.shape[0], us.shape[1]
        W, R = self.W.to(xs.dtype), self.R.to(xs.dtype)
        l_x, l_xx = _gauss_newton(self.residual, W, xs)
        return (
            l_x, _offset(us, self.u_ref) @ R, l_xx, R.expand(horizon, du_size, du_size),
            xs.new_zeros(horizon, du_size, xs.shape[1]),
        )


@dataclass(frozen=True)
class ResidualFinalCost:
    """The final cost `1/2 r(x)' W r(x)` with Gauss-Newton derivatives (see `ResidualCost`)."""

    #: The residual `r(x [dx]) -> [dr]`.
    residual: Residual
    #: Residual weights `[dr, dr]`, symmetric positive semi-definite.
    W: torch.Tensor

    def __post_init__(self) -> None:
        _check_weights(self.W, "W", definite=False)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The cost `[]` of the final state `x` `[dx]`."""
        r = self.residual(x)
        return 0.5 * r @ self.W @ r

    def derivatives(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gauss-Newton `l_x [dx]` and `l_xx [dx, dx]` at `x` `[dx]`."""
        l_x, l_xx = _gauss_newton(self.residual, self.W.to(x.dtype), x[None])
        return l_x[0], l_xx[0]


def _gauss_newton(
    residual: Residual, W: torch.Tensor, xs: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """`J' W r` `[H, dx]` and `J' W J` `[H, dx, dx]` at each row of `xs` `[H, dx]`."""
    def with_value(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = residual(x)
        return r, r.detach()

    J, r = vmap(jacrev(with_value, has_aux=True))(xs)  # [H, dr, dx], [H, dr]: one pass
    WJ = W @ J
    return (J.mT @ (W @ r[..., None]))[..., 0], J.mT @ WJ
