"""Logged task data: random episodes, then a noisy expert on the true simulator, seeded."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import envs
from mbrl.control.episodes import RandomAgent
from mbrl.experiments.logged_data import TaskDataConfig, log_episodes, log_task_data
from mbrl.learning.data import FIELDS, ReplayBuffer

#: A short, cheap pendulum log: 2 random and 1 expert episode of 8 steps, a tiny planner.
SMALL = TaskDataConfig(
    "mujoco/pendulum-swingup", action_repeat=2, episode_steps=8, random_episodes=2,
    expert_episodes=1, expert_horizon=5, expert_population=8, expert_iterations=2,
    expert_budget_ms=None, noise_std=0.3,
)


def test_task_data_has_every_episode_in_order_with_the_right_shapes() -> None:
    buffer = log_task_data(SMALL, seed=0)
    data = buffer.arrays()
    n = (SMALL.random_episodes + SMALL.expert_episodes) * SMALL.episode_steps
    assert len(buffer) == n
    assert data["obs"].shape == (n, 3) and data["next_obs"].shape == (n, 3)
    assert data["act"].shape == (n, 1) and data["reward"].shape == (n,)
    assert np.array_equal(data["episode"], np.repeat(np.arange(3), SMALL.episode_steps))
    # Each episode ends by its time limit, and its steps chain.
    ends = np.flatnonzero(data["truncated"])
    assert ends.tolist() == [7, 15, 23] and not data["terminated"].any()
    within = data["episode"][1:] == data["episode"][:-1]
    assert np.array_equal(data["obs"][1:][within], data["next_obs"][:-1][within])


@pytest.mark.parametrize("planner", ["cem", "mppi"])
def test_actions_stay_inside_the_bounds_even_with_large_noise(planner: str) -> None:
    config = dataclasses.replace(
        SMALL, random_episodes=1, expert_planner=planner, noise_std=2.0
    )
    act = log_task_data(config, seed=1).arrays()["act"]
    assert act.min() >= -1.0 and act.max() <= 1.0
    expert = act[SMALL.episode_steps :]
    assert np.isclose(np.abs(expert), 1.0).any()  # the noise did push some onto a bound


def test_the_same_seed_gives_the_same_data_and_another_seed_other_data() -> None:
    first, again = log_task_data(SMALL, seed=4).arrays(), log_task_data(SMALL, seed=4).arrays()
    for name in FIELDS:  # without a time budget, the expert's episodes repeat too
        assert np.array_equal(first[name], again[name]), name
    other = log_task_data(SMALL, seed=5).arrays()
    assert not np.array_equal(first["obs"], other["obs"])


def test_random_episodes_do_not_depend_on_the_expert_settings() -> None:
    random_steps = SMALL.random_episodes * SMALL.episode_steps
    base = log_task_data(SMALL, seed=2).arrays()
    changed = dataclasses.replace(
        SMALL, expert_episodes=2, expert_planner="mppi", expert_budget_ms=50.0
    )
    other = log_task_data(changed, seed=2).arrays()
    for name in ("obs", "act", "next_obs", "reward"):
        assert np.array_equal(base[name][:random_steps], other[name][:random_steps]), name


def test_log_episodes_appends_to_a_buffer_and_draws_reset_seeds_from_its_seed() -> None:
    env = envs.make("mujoco/reacher-2link", max_episode_steps=5)
    task = env.task
    buffer = ReplayBuffer(task.obs_dim, task.act_dim)
    rng = np.random.default_rng(0)
    log_episodes(env, RandomAgent(task.action_low, task.action_high, rng), 2, 7, buffer)
    log_episodes(env, RandomAgent(task.action_low, task.action_high, rng), 1, 7, buffer)
    data = buffer.arrays()
    assert len(buffer) == 15 and buffer.num_episodes == 3
    # The same seed resets to the same initial state: episodes 0 and 2 start alike.
    assert np.array_equal(data["obs"][0], data["obs"][10])
    assert not np.array_equal(data["obs"][0], data["obs"][5])


def test_a_bad_config_is_refused() -> None:
    with pytest.raises(ValueError, match="expert_planner"):
        dataclasses.replace(SMALL, expert_planner="ilqr")
    with pytest.raises(ValueError, match="noise_std"):
        dataclasses.replace(SMALL, noise_std=-0.1)
    with pytest.raises(ValueError, match="episode_steps"):
        dataclasses.replace(SMALL, episode_steps=0)
