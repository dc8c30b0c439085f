"""The bare-`mujoco` tasks: `mujoco/cartpole-swingup` and `mujoco/reacher-2link`."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; must precede importing mujoco

from collections.abc import Iterator

import mujoco
import numpy as np
import pytest
import torch

import envs
from envs.mujoco_env import MujocoEnv

ENV_IDS = ["mujoco/cartpole-swingup", "mujoco/reacher-2link"]


@pytest.fixture(params=ENV_IDS)
def env(request: pytest.FixtureRequest) -> Iterator[MujocoEnv]:
    made = envs.make(request.param)
    assert isinstance(made, MujocoEnv)
    yield made
    made.close()


def _advance(env: MujocoEnv, seed: int, steps: int) -> np.ndarray:
    """Reset with `seed`, take `steps` random actions; return the resulting state."""
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        env.step(rng.uniform(-1, 1, env.task.act_dim))
    return env.get_state()


def _qpos_qvel_slice(env: MujocoEnv) -> slice:
    """Where qpos and qvel sit in a `get_state()` vector (after the time)."""
    model = env.model
    return slice(1, 1 + model.nq + model.nv)


def test_rollout_equals_stepping(env: MujocoEnv) -> None:
    state = _advance(env, seed=3, steps=7)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1.5, 1.5, (6, 9, env.task.act_dim))  # some out of bounds: clipped
    observations = env.rollout(state, actions)
    assert observations.shape == (6, 9, env.task.obs_dim)
    assert observations.dtype == np.float64
    assert np.array_equal(env.get_state(), state), "rollout must not touch the env's simulator"

    expected = np.empty_like(observations)
    for n in range(actions.shape[0]):
        env.set_state(state)
        for t in range(actions.shape[1]):
            expected[n, t] = env.step(actions[n, t])[0]
    np.testing.assert_allclose(observations, expected, rtol=0, atol=1e-9)


def test_rollout_rejects_bad_input(env: MujocoEnv) -> None:
    state = _advance(env, seed=0, steps=1)
    with pytest.raises(ValueError, match="actions have shape"):
        env.rollout(state, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="state has shape"):
        env.rollout(state[:-1], np.zeros((2, 3, env.task.act_dim)))
    with pytest.raises(ValueError, match="NaN"):
        env.rollout(state, np.full((2, 3, env.task.act_dim), np.nan))


def test_linearize_matches_finite_differences(env: MujocoEnv) -> None:
    env.reset(seed=1)
    state = env.get_state()
    tangent = _qpos_qvel_slice(env)
    # A state away from joint limits and from rest, where the dry friction is sliding.
    nq = env.model.nq
    if env.env_id == "mujoco/cartpole-swingup":
        state[tangent] = [0.3, 0.5, 0.7, -1.2]
    else:
        state[tangent] = [0.4, -0.8, 1.5, -2.0]
    action = np.full(env.task.act_dim, 0.3)
    A, B = env.linearize(state, action)
    nx = 2 * nq
    assert A.shape == (nx, nx) and B.shape == (nx, env.task.act_dim)

    def next_state(x_offset: np.ndarray, u: np.ndarray) -> np.ndarray:
        s = state.copy()
        s[tangent] += x_offset
        env.set_state(s)
        env.step(u)
        return env.get_state()[tangent]

    eps = 1e-6
    A_fd = np.empty_like(A)
    for i in range(nx):
        dx = np.zeros(nx)
        dx[i] = eps
        A_fd[:, i] = (next_state(dx, action) - next_state(-dx, action)) / (2 * eps)
    B_fd = np.empty_like(B)
    for j in range(env.task.act_dim):
        du = np.zeros(env.task.act_dim)
        du[j] = eps
        B_fd[:, j] = (next_state(np.zeros(nx), action + du)
                      - next_state(np.zeros(nx), action - du)) / (2 * eps)
    assert np.abs(A - A_fd).max() <= 1e-6 * np.abs(A).max()
    assert np.abs(B - B_fd).max() <= 1e-6 * np.abs(B).max()


def test_linearize_leaves_the_state_unchanged(env: MujocoEnv) -> None:
    state = _advance(env, seed=2, steps=3)
    env.linearize(_advance(env, seed=5, steps=4), np.zeros(env.task.act_dim))
    assert not np.array_equal(env.get_state(), state)  # linearize restored seed 5's state
    current = env.get_state()
    env.linearize(state, np.zeros(env.task.act_dim))
    assert np.array_equal(env.get_state(), current)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_cartpole_force_pushes_the_cart_its_way(sign: float) -> None:
    env = envs.make("mujoco/cartpole-swingup")
    env.reset(seed=0)
    for _ in range(20):
        obs = env.step(np.array([sign]))[0]
    assert sign * obs[0] > 0.05  # cart position
    assert sign * obs[3] > 0.5  # cart velocity
    env.close()


def test_reset_is_seeded(env: MujocoEnv) -> None:
    first = env.reset(seed=11)[0]
    first_next = env.step(np.full(env.task.act_dim, 0.5))[0]
    again = env.reset(seed=11)[0]
    again_next = env.step(np.full(env.task.act_dim, 0.5))[0]
    assert np.array_equal(first, again) and np.array_equal(first_next, again_next)
    assert not np.array_equal(env.reset(seed=12)[0], first)


def test_cartpole_starts_hanging_down() -> None:
    env = envs.make("mujoco/cartpole-swingup")
    obs = env.reset(seed=4)[0]
    assert obs.shape == (5,) and obs[1] < -0.99  # cos(theta) near -1
    assert env.control_timestep == pytest.approx(0.01) and env.max_episode_steps == 1000


def test_torch_reward_reproduces_the_env(env: MujocoEnv) -> None:
    obs = env.reset(seed=6)[0]
    rng = np.random.default_rng(6)
    obs_b, act_b, next_b, rewards = [], [], [], []
    for _ in range(60):
        action = rng.uniform(-1.2, 1.2, env.task.act_dim)
        next_obs, reward, terminated, _, _ = env.step(action)
        assert not terminated
        obs_b.append(obs)
        act_b.append(action)
        next_b.append(next_obs)
        rewards.append(reward)
        obs = next_obs

    def tensor(rows: list[np.ndarray]) -> torch.Tensor:
        return torch.tensor(np.array(rows), dtype=torch.float64)

    torch_reward = env.task.reward(tensor(obs_b), tensor(act_b), tensor(next_b)).numpy()
    np.testing.assert_allclose(torch_reward, rewards, rtol=0, atol=1e-12)


def test_observation_matches_the_simulator(env: MujocoEnv) -> None:
    _advance(env, seed=8, steps=5)
    obs = env.observe()
    data = mujoco.MjData(env.model)
    mujoco.mj_setState(env.model, data, env.get_state()[:-1], mujoco.mjtState.mjSTATE_INTEGRATION)
    mujoco.mj_forward(env.model, data)
    if env.env_id == "mujoco/cartpole-swingup":
        expected = [data.qpos[0], np.cos(data.qpos[1]), np.sin(data.qpos[1]), *data.qvel]
        np.testing.assert_allclose(obs, expected, rtol=0, atol=1e-15)
        assert obs[1] == pytest.approx(data.body("pole").xmat[8])  # zz: cosine from upright
    else:
        fingertip = data.site("fingertip").xpos[:2]
        target = data.body("target").xpos[:2]
        np.testing.assert_allclose(obs[6:8], fingertip - target, rtol=0, atol=1e-12)
        np.testing.assert_allclose(obs[8:10], target, rtol=0, atol=1e-15)
        np.testing.assert_allclose(obs[4:6], data.qvel, rtol=0, atol=0)
        reach = np.linalg.norm(target)
        assert 0.05 <= reach <= 0.2


def test_get_set_state_reproduces_steps_exactly(env: MujocoEnv) -> None:
    state = _advance(env, seed=9, steps=4)
    actions = np.random.default_rng(9).uniform(-1, 1, (5, env.task.act_dim))
    first = [env.step(a)[0] for a in actions]
    env.set_state(state)
    second = [env.step(a)[0] for a in actions]
    assert np.array_equal(np.array(first), np.array(second))


@pytest.mark.parametrize(
    "param", ["mass_scale", "friction_scale", "damping_scale", "actuator_gain_scale"]
)
def test_physics_params_change_dynamics_and_keep_the_state(env: MujocoEnv, param: str) -> None:
    state = _advance(env, seed=10, steps=5)
    actions = np.random.default_rng(10).uniform(-1, 1, (10, env.task.act_dim))
    nominal = [env.step(a)[0] for a in actions]
    env.set_state(state)
    env.set_physics_params(**{param: 3.0})
    assert np.array_equal(env.get_state(), state), "changing the physics must keep the state"
    changed = [env.step(a)[0] for a in actions]
    assert np.abs(np.array(changed) - np.array(nominal)).max() > 1e-6
    env.set_physics_params(**{param: 1.0})
    env.set_state(state)
    assert np.array_equal(np.array([env.step(a)[0] for a in actions]), np.array(nominal))


def test_render_rgb(env: MujocoEnv) -> None:
    _advance(env, seed=0, steps=2)
    image = env.render_rgb(64, 64)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert image.min() != image.max()
