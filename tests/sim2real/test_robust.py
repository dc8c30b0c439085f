"""Robust planning across sampled physics: EPOpt's CVaR on a known set of returns, and the
K simulator copies' scores against each copy scored alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import envs
from controllers import CEM, CEMConfig
from envs.dynamics import SimulatorDynamics
from sim2real.randomization import RandomizationConfig, Range
from sim2real.robust import RobustSimulatorDynamics, aggregate_returns

RETURNS = torch.tensor([[1.0, 5.0], [2.0, 6.0], [3.0, 7.0], [4.0, 8.0], [10.0, 0.0]],
                       dtype=torch.float64)  # [K, N]


def test_the_objectives_on_a_known_set_of_returns() -> None:
    assert aggregate_returns(RETURNS, "mean").tolist() == [4.0, 5.2]
    assert aggregate_returns(RETURNS, "worst").tolist() == [1.0, 0.0]
    # CVaR at 0.4 of 5 models: the mean of the 2 lowest returns of each sequence.
    assert aggregate_returns(RETURNS, "cvar", 0.4).tolist() == [1.5, 2.5]
    assert aggregate_returns(RETURNS, "cvar", 0.1).tolist() == [1.0, 0.0]  # ceil: one model
    assert aggregate_returns(RETURNS, "cvar", 1.0).tolist() == [4.0, 5.2]  # all: the mean
    with pytest.raises(ValueError, match="epsilon must be in"):
        aggregate_returns(RETURNS, "cvar", 0.0)
    with pytest.raises(ValueError, match="objective must be mean, worst or cvar"):
        aggregate_returns(RETURNS, "median")  # type: ignore[arg-type]


def test_the_copies_score_each_sequence_as_their_physics_do_alone() -> None:
    env = envs.make("mujoco/cartpole-swingup", action_repeat=2)
    env.reset(seed=0)
    ranges = RandomizationConfig(mass_scale=Range(0.5, 2.0, "log-uniform"),
                                 actuator_gain_scale=Range(0.5, 1.5))
    robust = RobustSimulatorDynamics(env, ranges, copies=4, objective="mean", seed=7,
                                     rollout_threads=1)
    again = RobustSimulatorDynamics(env, ranges, copies=4, seed=7, rollout_threads=1)
    assert robust.draws == again.draws and len({d["mass_scale"] for d in robust.draws}) == 4
    state = torch.from_numpy(env.get_state())
    actions = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (6, 10, 1)))
    alone = []
    for draw in robust.draws:
        robot = envs.make("mujoco/cartpole-swingup", action_repeat=2)
        robot.set_physics_params(**draw)
        alone.append(SimulatorDynamics(robot, rollout_threads=1).sequence_returns(state, actions))
    expected = torch.stack(alone)
    torch.testing.assert_close(robust.sequence_returns(state, actions), expected.mean(dim=0))
    robust.objective = "worst"
    torch.testing.assert_close(robust.sequence_returns(state, actions), expected.min(dim=0).values)


def test_a_sampling_planner_plans_through_the_copies() -> None:
    env = envs.make("mujoco/cartpole-swingup", action_repeat=4)
    env.reset(seed=0)
    robust = RobustSimulatorDynamics(env, RandomizationConfig(mass_scale=Range(0.5, 2.0)),
                                     copies=3, objective="cvar", epsilon=0.34,
                                     rollout_threads=1)
    low, high = (torch.tensor(b) for b in (env.task.action_low, env.task.action_high))
    planner = CEM(robust, low, high, CEMConfig(horizon=10, population=32, elites=4,
                                               iterations=2),
                  generator=torch.Generator().manual_seed(0))
    plan = planner.plan(torch.from_numpy(env.get_state()))
    assert plan.actions.shape == (10, 1) and bool((plan.actions.abs() <= 1).all())
    assert np.isfinite(plan.expected_return)
