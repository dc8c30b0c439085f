"""MPPI's weights and its warm start (the rest: the conformance tests in test_planners.py)."""

from __future__ import annotations

import math

import pytest
import torch

from controllers import MPC, MPPI, MPCConfig, MPPIConfig, path_integral_weights
from tests.controllers.analytic import F64, HIGH, LOW, ORIGIN, PointMass, rollout_return


def test_weights_are_a_stable_softmax_with_exact_zeros_for_diverged_rollouts() -> None:
    returns = torch.tensor([1e6, 1e6 - 1.0, -torch.inf, 1e6 - 2.0], dtype=F64)
    weights = path_integral_weights(returns, temperature=1.0)
    assert weights is not None and torch.isfinite(weights).all()
    assert weights[2] == 0.0 and float(weights.sum()) == pytest.approx(1.0, abs=1e-15)
    # softmax(r / lambda): the weights fall by a factor e per unit of return.
    expected = torch.tensor([1.0, math.exp(-1), 0.0, math.exp(-2)], dtype=F64)
    assert torch.allclose(weights, expected / expected.sum(), rtol=1e-12, atol=0)
    cold = path_integral_weights(returns, temperature=1e-9)  # lambda -> 0: the argmax
    assert cold is not None and torch.equal(cold, torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=F64))
    assert path_integral_weights(torch.full((3,), -torch.inf, dtype=F64), 1.0) is None


def test_the_warm_start_is_where_the_search_continues() -> None:
    goal = torch.tensor([2.5, -1.5], dtype=F64)
    optimum = torch.tensor([[1.0, -1.0], [1.0, -0.5], [0.5, 0.0], [0.0, 0.0]], dtype=F64)
    assert rollout_return(goal, optimum) == pytest.approx(-2.75)  # see test_planners.py
    config = MPPIConfig(horizon=4, population=200, iterations=1, temperature=0.05,
                        noise_std=0.02)
    planner = MPPI(PointMass(goal), LOW, HIGH, config, torch.Generator().manual_seed(0))
    warm = planner.plan(ORIGIN, warm_start=optimum)
    cold = planner.plan(ORIGIN)
    # Small noise around the optimum averages to near the optimum; from mid-range, one
    # iteration with that noise gets nowhere near it.
    assert rollout_return(goal, warm.actions) == pytest.approx(-2.75, abs=0.05)
    assert rollout_return(goal, cold.actions) < -10.0


def test_mppi_as_mpc_drives_the_point_to_its_goal_inside_bounds() -> None:
    goal = torch.tensor([2.5, -1.5], dtype=F64)
    config = MPPIConfig(horizon=4, population=200, iterations=3, temperature=0.05,
                        noise_std=0.15)
    planner = MPPI(PointMass(goal), LOW, HIGH, config, torch.Generator().manual_seed(0))
    controller = MPC(planner, MPCConfig(replan_every=1))
    state = ORIGIN.clone()
    for _ in range(6):
        action = controller.act(state)
        assert bool((action >= LOW).all() and (action <= HIGH).all())
        state = state + action
    assert torch.allclose(state, goal, atol=0.05)
