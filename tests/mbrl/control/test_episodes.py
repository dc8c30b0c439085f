"""The one episode loop: what `rollout` records, and its hooks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import envs
from controllers import MPC, MPCConfig
from mbrl.control.episodes import RandomAgent, Step, rollout
from mbrl.control.planners import build_planner, simulator_problem
from mbrl.learning.data import ReplayBuffer


class Constant:
    """Always the same action; counts its resets and remembers what it was given."""

    def __init__(self, action: list[float]) -> None:
        self.action = torch.tensor(action)
        self.resets = 0
        self.given: list[Any] = []

    def reset(self) -> None:
        self.resets += 1

    def act(self, obs: Any) -> torch.Tensor:
        self.given.append(obs)
        return self.action


def test_the_trajectory_is_the_episode_the_env_played() -> None:
    env = envs.make("mujoco/pendulum-swingup", max_episode_steps=7)
    agent = Constant([2.0])  # out of bounds: the env applies 1
    episode = rollout(env, agent, seed=5)
    assert agent.resets == 1 and episode.steps == 7 and episode.truncated
    assert not episode.terminated and episode.seed == 5
    assert episode.observations.shape == (8, 3) and episode.actions.shape == (7, 1)
    assert np.all(episode.actions == 1.0), "the actions recorded are those the env applied"
    # Replaying the applied actions from the same reset gives the same observations and
    # rewards, summed in order.
    replay = envs.make("mujoco/pendulum-swingup", max_episode_steps=7)
    obs, _ = replay.reset(seed=5)
    np.testing.assert_array_equal(obs, episode.observations[0])
    total = 0.0
    for t, action in enumerate(episode.actions):
        obs, reward, *_ = replay.step(action)
        np.testing.assert_array_equal(obs, episode.observations[t + 1])
        assert reward == episode.rewards[t]
        total += reward
    assert episode.episode_return == total
    assert episode.stats is None  # the agent keeps no planning statistics


def test_observe_buffer_on_step_and_max_steps() -> None:
    env = envs.make("mujoco/pendulum-swingup")
    agent = Constant([0.5])
    buffer = ReplayBuffer(3, 1)
    steps: list[Step] = []
    episode = rollout(env, agent, seed=0, observe=lambda obs: ("seen", obs[0]), buffer=buffer,
                      on_step=steps.append, max_steps=4)
    assert episode.steps == 4 and not episode.truncated and len(buffer) == 4
    assert [given[0] for given in agent.given] == ["seen"] * 4
    assert [s.index for s in steps] == [0, 1, 2, 3]
    np.testing.assert_array_equal(steps[2].next_obs, episode.observations[3])
    np.testing.assert_allclose(buffer.arrays()["next_obs"], episode.observations[1:], atol=1e-6)


def test_a_controllers_planning_statistics_come_with_the_trajectory() -> None:
    env = envs.make("mujoco/pendulum-swingup", max_episode_steps=5)
    env.reset(seed=1)
    planner = build_planner("cem", simulator_problem(env, horizon=4, seed=1), population=16,
                            iterations=2)
    controller = MPC(planner, MPCConfig(replan_every=2))
    episode = rollout(env, controller, seed=1, observe=lambda _: env.get_state())
    assert episode.stats is not None and episode.stats.replans == 3  # steps 0, 2 and 4
    assert episode.stats is not controller.stats  # a copy: the next episode resets it
    assert np.all(episode.act_ms > 0)


def test_a_random_agent_draws_inside_the_bounds() -> None:
    env = envs.make("mujoco/reacher-2link", max_episode_steps=30)
    agent = RandomAgent(env.task.action_low, env.task.action_high, np.random.default_rng(0))
    episode = rollout(env, agent, seed=0)
    assert np.all(np.abs(episode.actions) <= 1.0) and episode.actions.std() > 0.3


@pytest.mark.parametrize("bad", [[float("nan")], [0.0, 0.0]])
def test_an_agents_bad_action_is_refused_naming_the_env(bad: list[float]) -> None:
    with pytest.raises(ValueError, match="mujoco/pendulum-swingup"):
        rollout(envs.make("mujoco/pendulum-swingup"), Constant(bad), seed=0)
