"""Robust planning across sampled physics: the K simulator copies' scores against each copy
scored alone."""

from __future__ import annotations

import numpy as np
import torch

import envs
from controllers import CEM, CEMConfig
from envs.dynamics import SimulatorDynamics
from sim2real.randomization import RandomizationConfig, Range
from sim2real.robust import RobustSimulatorDynamics


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
