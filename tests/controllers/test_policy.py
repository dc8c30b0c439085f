"""The neural policy's output contract, its fast path, and policy-seeded planning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from controllers import CEM, CEMConfig
from controllers.policy import NeuralPolicy, PolicyConfig
from controllers.policy_penalty import PenalizedTask, PolicyProposal, PolicyPull
from tests.controllers.analytic import HIGH, LOW, PointMass

F64 = torch.float64


def _policy(**settings: object) -> NeuralPolicy:
    return NeuralPolicy(3, 2, np.array([-1.0, -2.0]), np.array([1.0, 0.5]),
                        PolicyConfig(**settings))  # type: ignore[arg-type]


def test_act_matches_the_torch_module_and_stays_in_bounds() -> None:
    policy = _policy()
    with torch.no_grad():
        for layer in policy.net:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.mul_(20.0)  # saturate: outputs far outside the bounds
    policy.weights_changed()
    rng = np.random.default_rng(0)
    for obs in rng.normal(scale=50.0, size=(200, 3)):
        action = policy.act(obs).numpy()
        expected = policy.mean_action(torch.from_numpy(obs)[None].float())[0].detach().double()
        # float64 against float32 on pre-activations of order 1e3: a few 1e-5 apart.
        np.testing.assert_allclose(action, expected.numpy(), atol=2e-4)
        assert np.all(action >= [-1.0, -2.0]) and np.all(action <= [1.0, 0.5])
        explored = policy.act(obs, explore=True).numpy()
        assert np.all(np.isfinite(explored))
        assert np.all(explored >= [-1.0, -2.0]) and np.all(explored <= [1.0, 0.5])


def test_nan_weights_give_the_safe_action_counted() -> None:
    policy = _policy()
    with torch.no_grad():
        policy.net[0].weight.fill_(float("nan"))
    policy.weights_changed()
    action = policy.act(np.zeros(3)).numpy()
    np.testing.assert_array_equal(action, [0.0, 0.0])
    assert policy.nonfinite_actions == 1


@pytest.mark.parametrize("obs, problem", [
    (np.zeros(2), r"obs must be \[do=3\]"),
    (np.array([0.0, np.nan, 0.0]), "obs holds NaN"),
    (np.array([np.inf, 0.0, 0.0]), "obs holds NaN or infinite"),
])
def test_bad_observations_are_named(obs: np.ndarray, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        _policy().act(obs)


def test_bad_settings_are_named() -> None:
    with pytest.raises(ValueError, match="activation"):
        PolicyConfig(activation="gelu")
    with pytest.raises(ValueError, match="bounds"):
        NeuralPolicy(3, 2, np.array([-1.0]), np.array([1.0]))
    with pytest.raises(ValueError, match="std must be"):
        _policy().set_std(torch.tensor([1.0, -1.0]))


def test_a_linear_policy_is_affine_in_the_observation() -> None:
    policy = _policy(hidden_sizes=(), gaussian=False)
    obs = torch.randn(5, 3)
    jac = torch.autograd.functional.jacobian(lambda o: policy(o).sum(0), obs)
    assert torch.allclose(jac[:, 0], jac[:, 4])


def test_cem_joins_the_proposal_and_finds_the_proposed_optimum() -> None:
    """With one iteration of 4 random samples CEM cannot find the point mass's best plan; the
    proposal, the exact optimum, is among its candidates and wins."""
    goal = torch.tensor([0.7, -0.3], dtype=F64)
    best = torch.stack([goal, torch.zeros(2, dtype=F64), torch.zeros(2, dtype=F64)])[None]
    config = CEMConfig(horizon=3, population=4, iterations=1, elites=1)
    plain = CEM(PointMass(goal), LOW, HIGH, config, torch.Generator().manual_seed(0))
    seeded = CEM(PointMass(goal), LOW, HIGH, config, torch.Generator().manual_seed(0),
                 proposal=lambda state: best)
    start = torch.zeros(2, dtype=F64)
    assert plain.plan(start).expected_return < -1e-3
    plan = seeded.plan(start)
    assert plan.expected_return == pytest.approx(0.0, abs=1e-12)
    torch.testing.assert_close(plan.actions, best[0])


def test_policy_proposal_rolls_the_policy_through_the_model() -> None:
    goal = torch.tensor([0.5, 0.5], dtype=F64)
    # A policy that moves a tenth of the way home each step.
    proposal = PolicyProposal(lambda obs: -0.1 * obs, PointMass(goal).step, horizon=4)
    actions = proposal(torch.tensor([1.0, -2.0], dtype=F64))
    assert actions.shape == (1, 4, 2)
    x = torch.tensor([1.0, -2.0], dtype=F64)
    for t in range(4):
        torch.testing.assert_close(actions[0, t], -0.1 * x, atol=1e-6, rtol=1e-6)
        x = x + actions[0, t]


def test_the_penalised_task_subtracts_the_pull() -> None:
    class Task:
        def reward(self, o: torch.Tensor, a: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
            return torch.ones(o.shape[0], dtype=o.dtype)

        def terminated(self, o: torch.Tensor, a: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
            return torch.zeros(o.shape[0], dtype=torch.bool)

    pull = PolicyPull(lambda obs: torch.zeros(obs.shape[0], 1), torch.eye(1) * 4.0, 0.5)
    task = PenalizedTask(Task(), pull)
    obs, act = torch.zeros(2, 3), torch.tensor([[1.0], [-2.0]])
    # 1 - 0.5 * 1/2 * 4 * u^2
    torch.testing.assert_close(task.reward(obs, act, obs), torch.tensor([0.0, -3.0]))
    with pytest.raises(ValueError, match="lambda must be >= 0"):
        PolicyPull(lambda obs: obs, torch.eye(1), -1.0)
