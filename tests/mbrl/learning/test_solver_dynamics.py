"""iLQR through a learned ensemble: its Jacobians are the model's, and planning through a model
of a pendulum swings the true pendulum up."""

from __future__ import annotations

import math

import pytest
import torch

from controllers.ilqr import ILQRConfig, ilqr
from mbrl.learning.models import EnsembleConfig, EnsembleDynamics
from mbrl.learning.solver_dynamics import ensemble_dynamics, reward_cost
from mbrl.learning.training import TrainConfig, fit

F64 = torch.float64
DT = 0.05


def pendulum(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """[theta, omega], 0 hanging down, semi-implicit Euler, |u| acts as torque."""
    omega = x[..., 1] + DT * (-9.81 * torch.sin(x[..., 0]) - 0.1 * x[..., 1] + u[..., 0])
    return torch.stack([x[..., 0] + DT * omega, omega], dim=-1)


class Upright:
    """Reward: minus the distance from upright, minus a little effort."""

    def reward(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        return -0.1 * (1 + torch.cos(next_obs[..., 0])) - 0.05 * (act**2).sum(-1)

    def terminated(
        self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor
    ) -> torch.Tensor:
        return torch.zeros(obs.shape[:-1], dtype=torch.bool)


@pytest.fixture(scope="module")
def pendulum_model() -> EnsembleDynamics:
    """An ensemble fitted to 4000 random transitions of the analytic pendulum."""
    generator = torch.Generator().manual_seed(0)
    obs = torch.stack([
        (torch.rand(4000, generator=generator) * 2 - 1) * math.pi * 1.2,
        torch.randn(4000, generator=generator) * 3,
    ], dim=-1)
    act = (torch.rand(4000, 1, generator=generator) * 2 - 1) * 3
    model = EnsembleDynamics(2, 1, EnsembleConfig(ensemble_size=3, hidden_size=64,
                                                 hidden_layers=2, probabilistic=False,
                                                 weight_decay=1e-6),
                             generator=torch.Generator().manual_seed(0))
    fit(model, obs, act, pendulum(obs, act), TrainConfig(batch_size=64, max_epochs=60,
                                                          patience=None, num_elites=3),
        torch.Generator().manual_seed(0))
    return model


def test_the_solvers_jacobians_of_the_ensemble_are_the_models(
    pendulum_model: EnsembleDynamics,
) -> None:
    step = ensemble_dynamics(pendulum_model)
    x, u = torch.tensor([0.4, -1.0]), torch.tensor([0.5])
    jac_x, jac_u = torch.func.jacrev(step, argnums=(0, 1))(x, u)
    eps = 1e-2  # float32 model: wide differences
    for i in range(2):
        dx = torch.zeros(2)
        dx[i] = eps
        column = (step(x + dx, u) - step(x - dx, u)) / (2 * eps)
        torch.testing.assert_close(jac_x[:, i], column, atol=2e-3, rtol=2e-2)
    du = torch.tensor([eps])
    torch.testing.assert_close(jac_u[:, 0], (step(x, u + du) - step(x, u - du)) / (2 * eps),
                               atol=2e-3, rtol=2e-2)
    batch_x = torch.stack([x, torch.tensor([-2.0, 0.3]), torch.tensor([1.0, 2.0])])
    batch_u = torch.tensor([[0.5], [-1.0], [2.0]])
    A, B = step.jacobians(batch_x, batch_u)
    for t in range(3):  # the batched reverse mode is torch.func's Jacobian at every row
        expected_x, expected_u = torch.func.jacrev(step, argnums=(0, 1))(batch_x[t], batch_u[t])
        torch.testing.assert_close(A[t], expected_x)
        torch.testing.assert_close(B[t], expected_u)
    member = ensemble_dynamics(pendulum_model, member=1)
    members = pendulum_model.predict(x[None], u[None]).mean[:, 0]
    torch.testing.assert_close(member(x, u), members[1])
    torch.testing.assert_close(step(x, u), members.mean(dim=0))
    with pytest.raises(ValueError, match="member must be"):
        ensemble_dynamics(pendulum_model, member=3)


def test_ilqr_through_the_learned_model_swings_the_true_pendulum_up(
    pendulum_model: EnsembleDynamics,
) -> None:
    """Plan 100 steps (5 s) through the model, then play it on the analytic pendulum with iLQR's
    feedback gains, `u_t + K_t (x - x_t)` clipped to the limits, which absorb the model's
    error: the true pendulum ends near upright."""
    step = ensemble_dynamics(pendulum_model)
    low, high = torch.full((1,), -3.0), torch.full((1,), 3.0)
    result = ilqr(
        step, reward_cost(Upright(), step),
        lambda x: 50.0 * (1 + torch.cos(x[0])) + 5.0 * x[1] ** 2,
        torch.tensor([0.1, 0.0]), torch.zeros(100, 1), ILQRConfig(max_iterations=100),
        control_low=low, control_high=high,
    )
    assert bool((result.controls >= low).all() and (result.controls <= high).all())
    x = torch.tensor([0.1, 0.0])
    planned_end = float(result.states[-1, 0])
    for t in range(100):
        u = result.controls[t] + result.gains[t] @ (x - result.states[t])
        x = pendulum(x, torch.clamp(u, low, high))
    assert math.cos(planned_end) < -0.99
    assert math.cos(float(x[0])) < -0.95, x
