"""Quadratic costs: their closed-form derivatives are torch.func's, iLQR with them solves the
LQ problem as `solve_lqr` does, and bad weights are refused by name."""

from __future__ import annotations

import pytest
import torch

from controllers.costs import QuadraticCost, QuadraticFinalCost, ResidualCost, ResidualFinalCost
from controllers.ilqr import ILQRConfig, cost_derivatives, ilqr
from controllers.lqr import solve_lqr

F64 = torch.float64


def random_weights(generator: torch.Generator, n: int, definite: bool) -> torch.Tensor:
    M = torch.randn(n, n, generator=generator, dtype=F64)
    return M @ M.T + (0.1 if definite else 0.0) * torch.eye(n, dtype=F64)


def test_the_closed_form_derivatives_are_those_of_automatic_differentiation() -> None:
    generator = torch.Generator().manual_seed(0)
    cost = QuadraticCost(
        random_weights(generator, 3, definite=False), random_weights(generator, 2, True),
        x_ref=torch.randn(3, generator=generator, dtype=F64),
        u_ref=torch.randn(2, generator=generator, dtype=F64),
    )
    xs = torch.randn(7, 3, generator=generator, dtype=F64)
    us = torch.randn(7, 2, generator=generator, dtype=F64)
    steps = torch.arange(7)
    closed_form = cost.derivatives(xs, us, steps)
    automatic = cost_derivatives(lambda x, u, t: cost(x, u, t), xs, us, steps)
    for mine, theirs in zip(closed_form, automatic, strict=True):
        torch.testing.assert_close(mine, theirs)
    final = QuadraticFinalCost(random_weights(generator, 3, False), x_ref=xs[0])
    gradient, hessian = final.derivatives(xs[1])
    torch.testing.assert_close(gradient, torch.func.grad(final)(xs[1]))
    torch.testing.assert_close(hessian, torch.func.hessian(final)(xs[1]))


def test_ilqr_with_quadratic_costs_solves_the_lq_problem_in_one_iteration() -> None:
    generator = torch.Generator().manual_seed(1)
    A = torch.eye(3, dtype=F64) + 0.1 * torch.randn(3, 3, generator=generator, dtype=F64)
    B = torch.randn(3, 1, generator=generator, dtype=F64)
    Q, R, Q_final = torch.eye(3, dtype=F64), 0.3 * torch.eye(1, dtype=F64), 5 * torch.eye(3,
                                                                                         dtype=F64)
    x0, horizon = torch.tensor([1.0, -0.5, 2.0], dtype=F64), 12
    result = ilqr(lambda x, u: A @ x + B @ u, QuadraticCost(Q, R), QuadraticFinalCost(Q_final),
                  x0, torch.zeros(horizon, 1, dtype=F64), ILQRConfig(mu_init=0.0))
    _, expected = solve_lqr(A, B, Q, R, Q_final, horizon).rollout(x0, A, B)
    torch.testing.assert_close(result.controls, expected, rtol=1e-9, atol=1e-9)
    assert result.cost_history[1] == pytest.approx(result.cost, rel=1e-12)
    assert len(result.times) == len(result.cost_history)
    assert result.times == sorted(result.times)


def test_bad_weights_and_references_are_refused_by_name() -> None:
    eye2 = torch.eye(2, dtype=F64)
    with pytest.raises(ValueError, match="R must be positive definite"):
        QuadraticCost(eye2, torch.tensor([[0.0]], dtype=F64))
    with pytest.raises(ValueError, match="R must be positive definite"):
        QuadraticCost(eye2, torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=F64))  # indefinite
    with pytest.raises(ValueError, match="Q must be positive semi-definite"):
        QuadraticCost(-eye2, torch.eye(1, dtype=F64))
    with pytest.raises(ValueError, match="Q must be symmetric"):
        QuadraticCost(torch.tensor([[1.0, 1.0], [0.0, 1.0]], dtype=F64), torch.eye(1, dtype=F64))
    with pytest.raises(ValueError, match="square"):
        QuadraticCost(torch.ones(2, 3, dtype=F64), torch.eye(1, dtype=F64))
    with pytest.raises(ValueError, match="NaN"):
        QuadraticFinalCost(eye2 * torch.nan)
    with pytest.raises(ValueError, match=r"x_ref must be finite \[2\]"):
        QuadraticFinalCost(eye2, x_ref=torch.zeros(3, dtype=F64))


def pendulum_residual(x: torch.Tensor) -> torch.Tensor:
    """`[1 - cos, sin]` of the angle from upright."""
    return torch.stack([1 - torch.cos(x[0]), torch.sin(x[0])])


def test_residual_costs_have_gauss_newton_derivatives() -> None:
    W, R = torch.diag(torch.tensor([2.0, 3.0], dtype=F64)), torch.eye(1, dtype=F64)
    cost = ResidualCost(pendulum_residual, W, R)
    xs = torch.tensor([[0.3, 1.0], [3.1, -2.0], [-2.0, 0.5]], dtype=F64)
    us = torch.tensor([[0.5], [-1.0], [0.0]], dtype=F64)
    l_x, l_u, l_xx, l_uu, l_ux = cost.derivatives(xs, us, torch.arange(3))
    for t in range(3):
        J = torch.func.jacrev(pendulum_residual)(xs[t])  # [2, 2]
        r = pendulum_residual(xs[t])
        torch.testing.assert_close(l_x[t], J.T @ W @ r)
        gradient = torch.func.grad(cost)(xs[t], us[t], torch.tensor(t))
        torch.testing.assert_close(l_x[t], gradient)
        torch.testing.assert_close(l_xx[t], J.T @ W @ J)
    torch.testing.assert_close(l_u, us @ R)
    torch.testing.assert_close(l_uu, R.expand(3, 1, 1))
    assert not bool(l_ux.any())
    # Near the bottom (angle pi) the exact Hessian is negative; Gauss-Newton's is not.
    bottom = torch.tensor([3.1, 0.0], dtype=F64)
    exact = torch.func.hessian(lambda x: cost(x, us[0], torch.tensor(0)))(bottom)
    assert float(exact[0, 0]) < 0
    assert float(torch.linalg.eigvalsh(cost.derivatives(bottom[None], us[:1],
                                                        torch.arange(1))[2][0])[0]) >= 0
    final = ResidualFinalCost(pendulum_residual, W)
    final_x, final_xx = final.derivatives(bottom)
    J = torch.func.jacrev(pendulum_residual)(bottom)
    torch.testing.assert_close(final_xx, J.T @ W @ J)
    torch.testing.assert_close(final_x, torch.func.grad(final)(bottom))
    with pytest.raises(ValueError, match="W must be positive semi-definite"):
        ResidualCost(pendulum_residual, -W, R)
