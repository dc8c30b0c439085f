"""Action repeat, pixel observations, and the simulator as planning dynamics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import envs
from envs.dynamics import SimulatorDynamics


def test_action_repeat_sums_rewards_of_the_inner_steps() -> None:
    repeated = envs.make("dmc/cartpole-swingup", action_repeat=4)
    plain = envs.make("dmc/cartpole-swingup")
    repeated.reset(seed=3)
    plain.set_state(repeated.inner.get_state())
    rng = np.random.default_rng(0)
    for _ in range(5):
        a = rng.uniform(-1, 1, size=1)
        obs, reward, _, _, _ = repeated.step(a)
        expected = sum(plain.step(a)[1] for _ in range(4))
        np.testing.assert_array_equal(obs, plain.observe())
        assert reward == pytest.approx(expected, abs=1e-12)
    assert repeated.control_timestep == pytest.approx(4 * plain.control_timestep)
    assert repeated.max_episode_steps == math.ceil(plain.max_episode_steps / 4)
    assert repeated.physics_params() == plain.physics_params()  # no friction on this robot
    assert isinstance(repeated.task, envs.RepeatedTask)


def test_action_repeat_keeps_the_contract() -> None:
    env = envs.make("mujoco/cartpole-swingup", action_repeat=3, max_episode_steps=10)
    env.reset(seed=0)
    assert env.physics_params() == env.inner.physics_params()
    env.set_physics_params(mass_scale=2.0)
    assert env.inner.physics_params()["mass_scale"] == 2.0
    flags = [env.step(np.zeros(1))[2:4] for _ in range(4)]
    assert flags == [(False, False)] * 3 + [(False, True)]  # ceil(10 / 3) wrapped steps
    assert not hasattr(env, "rollout"), "the inner one-step rollout means something else here"
    pixels = envs.make("mujoco/cartpole-swingup", pixels=True)
    assert pixels.rollout.__self__ is pixels.inner  # extras that mean the same pass through


@pytest.mark.parametrize("env_id", ["dmc/cartpole-swingup", "mujoco/reacher-2link",
                                    "pybullet/kuka-reach"])
def test_pixel_observations(env_id: str) -> None:
    env = envs.make(env_id, pixels=True, pixel_size=48)
    obs, info = env.reset(seed=0)
    assert obs.shape == (48, 48, 3) and obs.dtype == np.uint8
    assert env.observation_space.contains(obs)
    assert obs.std() > 0, "the image should show something"
    assert info["state"].shape == (env.task.obs_dim,)
    next_obs, _, _, _, info = env.step(env.action_space.high)
    assert next_obs.shape == (48, 48, 3) and info["state"].shape == (env.task.obs_dim,)


@pytest.mark.parametrize("env_id,repeat", [("mujoco/cartpole-swingup", 1),
                                           ("mujoco/cartpole-swingup", 3),
                                           ("dmc/pendulum-swingup", 2)])
def test_simulator_dynamics_returns_equal_the_envs_returns(env_id: str, repeat: int) -> None:
    env = envs.make(env_id, action_repeat=repeat)
    env.reset(seed=5)
    dynamics = SimulatorDynamics(env)
    state = env.get_state()
    actions = torch.rand(6, 8, env.task.act_dim, generator=torch.Generator().manual_seed(0),
                         dtype=torch.float64) * 2 - 1
    returns = dynamics.sequence_returns(torch.from_numpy(state), actions)
    for n in range(actions.shape[0]):
        env.set_state(state)
        expected = sum(env.step(actions[n, t].numpy())[1] for t in range(actions.shape[1]))
        assert float(returns[n]) == pytest.approx(expected, abs=1e-9)
    next_states = dynamics.step(torch.from_numpy(np.stack([state, state])), actions[:2, 0])
    env.set_state(state)
    _, reward, _, _, _ = env.step(actions[0, 0].numpy())
    np.testing.assert_array_equal(next_states[0].numpy(), env.get_state())
    if repeat == 1:  # with a repeat the task's reward approximates the intermediate states
        rewards = dynamics.reward(torch.from_numpy(state[None]), actions[:1, 0], next_states[:1])
        assert float(rewards[0]) == pytest.approx(reward, abs=1e-9)


def test_rollouts_on_the_calling_thread_equal_the_threaded_ones() -> None:
    env = envs.make("mujoco/cartpole-swingup", action_repeat=2)
    env.reset(seed=2)
    state = torch.from_numpy(env.get_state())
    actions = torch.rand(16, 6, 1, generator=torch.Generator().manual_seed(1),
                         dtype=torch.float64) * 2 - 1
    threaded = SimulatorDynamics(env, rollout_threads=2).sequence_returns(state, actions)
    alone = SimulatorDynamics(env, rollout_threads=1).sequence_returns(state, actions)
    assert torch.equal(threaded, alone)
    with pytest.raises(ValueError, match="applies to mujoco/ envs only, not dmc/"):
        SimulatorDynamics(envs.make("dmc/cartpole-swingup"), rollout_threads=1)


def test_planning_does_not_disturb_the_acting_env() -> None:
    env = envs.make("mujoco/cartpole-swingup")
    env.reset(seed=1)
    state = env.get_state()
    dynamics = SimulatorDynamics(env)
    dynamics.sequence_returns(torch.from_numpy(state), torch.zeros(4, 5, 1, dtype=torch.float64))
    np.testing.assert_array_equal(env.get_state(), state)


@pytest.mark.parametrize("env_id,repeat", [("dmc/cartpole-swingup", 1),
                                           ("mujoco/cartpole-swingup", 1),
                                           ("mujoco/cartpole-swingup", 3)])
def test_linearize_matches_finite_differences_of_env_steps(env_id: str, repeat: int) -> None:
    """The cart-poles' tangent state is [qpos, qvel]; check B and one column of A by stepping."""
    env = envs.make(env_id, action_repeat=repeat)
    env.reset(seed=0)
    env.step(np.array([0.4]))
    state = env.get_state()
    action = np.array([0.2])
    A, B = env.linearize(state, action)
    assert A.shape == (4, 4) and B.shape == (4, 1)
    np.testing.assert_array_equal(env.get_state(), state)  # the simulator is left as it was

    def next_qpos_qvel(s: np.ndarray, a: np.ndarray) -> np.ndarray:
        env.set_state(s)
        env.step(a)
        return env.get_state()[1:5]  # MuJoCo's state begins with time, qpos (2), qvel (2)

    eps = 1e-6
    fd_b = (next_qpos_qvel(state, action + eps) - next_qpos_qvel(state, action - eps)) / (2 * eps)
    np.testing.assert_allclose(B[:, 0], fd_b, rtol=1e-4, atol=1e-6)
    plus, minus = state.copy(), state.copy()
    plus[4] += eps  # pole angular velocity
    minus[4] -= eps
    fd_a = (next_qpos_qvel(plus, action) - next_qpos_qvel(minus, action)) / (2 * eps)
    np.testing.assert_allclose(A[:, 3], fd_a, rtol=1e-4, atol=1e-6)
