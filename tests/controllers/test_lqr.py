"""LQR known answers: the DARE against SciPy, the measured cost against x'Px, and the
finite-horizon tracking law against the same problem solved as one least-squares QP."""

from __future__ import annotations

import pytest
import scipy.linalg
import torch

from controllers.lqr import lqr_gain, solve_dare, solve_lqr

F64 = torch.float64


def random_system(seed: int, dx: int = 4, du: int = 2) -> tuple[torch.Tensor, ...]:
    """An open-loop unstable but controllable system with a positive definite cost."""
    generator = torch.Generator().manual_seed(seed)
    A = torch.eye(dx, dtype=F64) + 0.3 * torch.randn(dx, dx, generator=generator, dtype=F64)
    B = torch.randn(dx, du, generator=generator, dtype=F64)
    M = torch.randn(dx, dx, generator=generator, dtype=F64)
    N = torch.randn(du, du, generator=generator, dtype=F64)
    return A, B, M @ M.T + 0.1 * torch.eye(dx, dtype=F64), N @ N.T + 0.5 * torch.eye(du, dtype=F64)


def cartpole_upright(dt: float = 0.02) -> tuple[torch.Tensor, ...]:
    """The cart-pole linearised about upright (Euler, unit masses and pole length)."""
    A = torch.eye(4, dtype=F64)
    A[0, 2] = A[1, 3] = dt
    A[2, 1], A[3, 1] = -9.81 * dt, 2 * 9.81 * dt
    B = torch.tensor([[0.0], [0.0], [dt], [-dt]], dtype=F64)
    return A, B, torch.diag(torch.tensor([1.0, 10.0, 0.1, 0.1], dtype=F64)), torch.eye(1, dtype=F64)


SYSTEMS = {**{f"random{seed}": random_system(seed) for seed in range(4)},
           "cartpole": cartpole_upright()}


@pytest.mark.parametrize("name", SYSTEMS)
def test_the_riccati_solution_is_scipys(name: str) -> None:
    A, B, Q, R = SYSTEMS[name]
    ours = solve_dare(A, B, Q, R)
    expected = torch.from_numpy(scipy.linalg.solve_discrete_are(A.numpy(), B.numpy(),
                                                                 Q.numpy(), R.numpy()))
    relative = torch.linalg.matrix_norm(ours - expected) / torch.linalg.matrix_norm(expected)
    assert float(relative) <= 1e-8


@pytest.mark.parametrize("name", SYSTEMS)
def test_the_regulator_stabilises_and_costs_what_the_riccati_solution_says(name: str) -> None:
    """dm_control's lqr_test habit: run the law and measure its cost."""
    A, B, Q, R = SYSTEMS[name]
    K, P = lqr_gain(A, B, Q, R)
    assert float(torch.linalg.eigvals(A - B @ K).abs().max()) < 1.0
    x0 = torch.linspace(-0.5, 0.5, A.shape[0], dtype=F64)
    x, cost = x0, torch.zeros((), dtype=F64)
    for _ in range(3000):
        u = -K @ x
        cost = cost + x @ Q @ x + u @ R @ u
        x = A @ x + B @ u
    torch.testing.assert_close(cost, x0 @ P @ x0, rtol=1e-9, atol=1e-12)


def test_a_long_finite_horizon_recovers_the_infinite_horizon_law() -> None:
    A, B, Q, R = cartpole_upright()
    solution = solve_lqr(A, B, Q, R, Q_final=Q, horizon=2000)
    K, P = lqr_gain(A, B, Q, R)
    torch.testing.assert_close(solution.value_hessians[0], P, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(solution.gains[0], -K, rtol=1e-8, atol=1e-8)


def least_squares_controls(
    A: torch.Tensor, B: torch.Tensor, c: torch.Tensor, Q: torch.Tensor, R: torch.Tensor,
    Q_final: torch.Tensor, x0: torch.Tensor, x_ref: torch.Tensor, u_ref: torch.Tensor,
) -> torch.Tensor:
    """The same tracking problem with the states eliminated: x = x_free + G U, then the
    quadratic cost in U minimised by its normal equations."""
    horizon, dx, du = B.shape
    G = torch.zeros(horizon + 1, dx, horizon, du, dtype=F64)
    x_free = [x0]
    for t in range(horizon):
        x_free.append(A[t] @ x_free[-1] + c[t])
        G[t + 1] = torch.einsum("ij,jku->iku", A[t], G[t])
        G[t + 1, :, t] = B[t]
    free = torch.stack(x_free)
    G = G.reshape(horizon + 1, dx, horizon * du)
    hessian = torch.zeros(horizon * du, horizon * du, dtype=F64)
    gradient = torch.zeros(horizon * du, dtype=F64)
    for t in range(horizon + 1):
        weight = Q[t] if t < horizon else Q_final
        hessian += G[t].T @ weight @ G[t]
        gradient += G[t].T @ weight @ (free[t] - x_ref[t])
    for t in range(horizon):
        hessian[t * du:(t + 1) * du, t * du:(t + 1) * du] += R[t]
        gradient[t * du:(t + 1) * du] -= R[t] @ u_ref[t]
    return torch.linalg.solve(hessian, -gradient).reshape(horizon, du)


def test_time_varying_tracking_matches_the_least_squares_optimum() -> None:
    generator = torch.Generator().manual_seed(7)
    horizon, dx, du = 12, 3, 2

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=F64)

    A = torch.eye(dx, dtype=F64) + 0.2 * randn(horizon, dx, dx)
    B, c = randn(horizon, dx, du), 0.1 * randn(horizon, dx)
    M, N = randn(horizon, dx, dx), randn(horizon, du, du)
    Q = M @ M.mT + 0.1 * torch.eye(dx, dtype=F64)
    R = N @ N.mT + 0.5 * torch.eye(du, dtype=F64)
    Q_final = 5 * torch.eye(dx, dtype=F64)
    x0, x_ref, u_ref = randn(dx), randn(horizon + 1, dx), randn(horizon, du)
    solution = solve_lqr(A, B, Q, R, Q_final, horizon, c=c, x_ref=x_ref, u_ref=u_ref)
    _, controls = solution.rollout(x0, A, B, c)
    expected = least_squares_controls(A, B, c, Q, R, Q_final, x0, x_ref, u_ref)
    torch.testing.assert_close(controls, expected, rtol=1e-9, atol=1e-9)


def test_bad_input_is_named() -> None:
    A, B, Q, R = cartpole_upright()
    with pytest.raises(ValueError, match="B must be"):
        solve_dare(A, B.T, Q, R)
    with pytest.raises(ValueError, match="R must be symmetric positive definite"):
        solve_dare(A, B, Q, -R)
    with pytest.raises(ValueError, match="A has NaN"):
        solve_dare(A * torch.nan, B, Q, R)
    with pytest.raises(ValueError, match="did not converge"):
        solve_dare(2 * torch.eye(2, dtype=F64), torch.zeros(2, 1, dtype=F64),
                   torch.eye(2, dtype=F64), torch.eye(1, dtype=F64))  # not stabilisable
    with pytest.raises(ValueError, match="R at every step"):
        solve_lqr(A, B, Q, torch.stack([R, -R]), Q, horizon=2)
    with pytest.raises(ValueError, match="x_ref must be"):
        solve_lqr(A, B, Q, R, Q, horizon=3, x_ref=torch.zeros(3, 4, dtype=F64))
    with pytest.raises(ValueError, match="horizon must be"):
        solve_lqr(A, B, Q, R, Q, horizon=0)
