"""Every registered env honours the `envs` contract (after dm_control's suite_test.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import envs
from envs.core import RobotEnv

ENV_IDS = list(envs.registry())


def random_actions(env: RobotEnv, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(env.action_space.low, env.action_space.high, size=(n, env.task.act_dim))


def rollout(env: RobotEnv, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    observations, rewards = [], []
    for a in actions:
        obs, reward, _, _, _ = env.step(a)
        observations.append(obs)
        rewards.append(reward)
    return np.array(observations), np.array(rewards)


def test_registry_lists_every_backend() -> None:
    backends = {spec.backend for spec in envs.registry().values()}
    assert backends == {"dmc", "mujoco", "pybullet"}
    assert len(ENV_IDS) >= 10


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_seed_same_trajectory(env_id: str) -> None:
    first, second = envs.make(env_id), envs.make(env_id)
    obs_a, _ = first.reset(seed=7)
    obs_b, _ = second.reset(seed=7)
    actions = random_actions(first, 30)
    np.testing.assert_array_equal(obs_a, obs_b)
    traj_a, rew_a = rollout(first, actions)
    traj_b, rew_b = rollout(second, actions)
    np.testing.assert_array_equal(traj_a, traj_b)
    np.testing.assert_array_equal(rew_a, rew_b)
    other_seed, _ = second.reset(seed=8)
    assert not np.array_equal(obs_a, other_seed), "the initial state should depend on the seed"


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_spaces_are_honoured(env_id: str) -> None:
    env = envs.make(env_id)
    obs, info = env.reset(seed=0)
    assert isinstance(info, dict)
    assert obs.shape == env.observation_space.shape == (env.task.obs_dim,)
    assert obs.dtype == np.float64
    assert env.action_space.shape == (env.task.act_dim,)
    for a in random_actions(env, 20):
        obs, reward, terminated, truncated, _ = env.step(a)
        assert env.observation_space.contains(obs)
        assert np.isfinite(reward) and isinstance(terminated, bool) and isinstance(truncated, bool)
    # Out-of-range actions are clipped to the bounds: the same step as the bound itself.
    state = env.get_state()
    too_big = env.step(env.action_space.high * 5 + 1)[0]
    env.set_state(state)
    at_bound = env.step(env.action_space.high)[0]
    np.testing.assert_array_equal(too_big, at_bound)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_torch_reward_and_termination_match_the_simulator(env_id: str) -> None:
    env = envs.make(env_id)
    obs, _ = env.reset(seed=1)
    rows: list[tuple[np.ndarray, np.ndarray, np.ndarray, float, bool]] = []
    for a in random_actions(env, 60, seed=1):
        next_obs, reward, terminated, truncated, _ = env.step(a)
        rows.append((obs, env.check_action(a), next_obs, reward, terminated))
        obs = next_obs
        if terminated or truncated:
            obs, _ = env.reset()
    o, a, n = (torch.tensor(np.array([r[i] for r in rows])) for i in range(3))
    rewards = np.array([r[3] for r in rows])
    terminations = np.array([r[4] for r in rows])
    np.testing.assert_allclose(env.task.reward(o, a, n).numpy(), rewards, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(env.task.terminated(o, a, n).numpy(), terminations)
    as_float32 = env.task.reward(o.float(), a.float(), n.float())
    assert as_float32.dtype == torch.float32
    np.testing.assert_allclose(as_float32.numpy(), rewards, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_set_state_reproduces_the_next_steps_exactly(env_id: str) -> None:
    env = envs.make(env_id)
    env.reset(seed=2)
    rollout(env, random_actions(env, 15, seed=2))
    state = env.get_state()
    actions = random_actions(env, 5, seed=3)
    expected, expected_rewards = rollout(env, actions)
    env.set_state(state)
    again, again_rewards = rollout(env, actions)
    np.testing.assert_array_equal(again, expected)
    np.testing.assert_array_equal(again_rewards, expected_rewards)
    # A second env of the same id, in another episode, continues the same way.
    other = envs.make(env_id)
    other.reset(seed=99)
    other.set_state(state)
    np.testing.assert_array_equal(rollout(other, actions)[0], expected)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_physics_params_change_the_dynamics(env_id: str) -> None:
    env = envs.make(env_id)
    env.reset(seed=4)
    rollout(env, random_actions(env, 10, seed=4))
    state = env.get_state()
    actions = random_actions(env, 20, seed=5)
    nominal, _ = rollout(env, actions)
    params = env.physics_params()
    assert {"mass_scale", "damping_scale", "actuator_gain_scale"} <= params.keys()
    assert all(value == 1.0 for value in params.values())
    before = env.get_state()
    env.set_physics_params(**{name: 1.5 for name in params})
    np.testing.assert_array_equal(env.get_state(), before, "a parameter change moved the robot")
    for name in params:
        changed = envs.make(env_id)
        changed.reset(seed=4)
        changed.set_physics_params(**{name: 3.0})
        assert changed.physics_params()[name] == 3.0
        changed.set_state(state)
        scaled, _ = rollout(changed, actions)
        assert not np.allclose(scaled, nominal, atol=1e-9), f"{name} changed nothing"
        changed.set_physics_params(**{name: 1.0})
        changed.set_state(state)
        np.testing.assert_allclose(rollout(changed, actions)[0], nominal, atol=1e-9)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_episode_is_truncated_at_the_time_limit(env_id: str) -> None:
    env = envs.make(env_id, max_episode_steps=5)
    env.reset(seed=0)
    flags = [env.step(a)[2:4] for a in random_actions(env, 5)]
    assert flags[-1] == (False, True) or flags[-1][0], flags
    assert all(not truncated for _, truncated in flags[:-1])
    with pytest.raises(RuntimeError, match="reset"):
        env.step(random_actions(env, 1)[0])


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gymnasium_make_builds_the_same_env_and_its_checker_passes(env_id: str) -> None:
    import warnings

    import gymnasium
    from gymnasium.utils.env_checker import check_env

    gym_id = envs.spec(env_id).gymnasium_id
    assert gym_id == f"{env_id}-v0" and gym_id in gymnasium.registry
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unbounded observation boxes: velocities are unbounded
        through_gym = gymnasium.make(gym_id, action_repeat=2)
        ours = envs.make(env_id, action_repeat=2)
        obs_gym, _ = through_gym.reset(seed=5)
        obs_ours, _ = ours.reset(seed=5)
        np.testing.assert_array_equal(obs_gym, obs_ours)
        action = random_actions(ours, 1)[0]
        np.testing.assert_array_equal(through_gym.step(action)[0], ours.step(action)[0])
        check_env(through_gym.unwrapped, skip_render_check=True)
