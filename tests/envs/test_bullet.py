"""The PyBullet backend (`envs.bullet_env` and its robots): exact state, rewards, physics
parameters, isolation."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pybullet
import pytest
import torch

import envs
from envs.bullet_env import BulletEnv
from envs.cartpole_bullet import CartpoleSwingupEnv
from envs.kuka import KukaReachEnv

IDS = ["pybullet/kuka-reach", "pybullet/cartpole-swingup"]


def make(env_id: str, **kwargs: object) -> BulletEnv:
    env = envs.make(env_id, **kwargs)
    assert isinstance(env, BulletEnv)
    return env


@pytest.fixture(params=IDS)
def env(request: pytest.FixtureRequest) -> Iterator[BulletEnv]:
    bullet_env = make(request.param)
    yield bullet_env
    bullet_env.close()


def actions(env: BulletEnv, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 1.0, size=(n, env.task.act_dim))


def rollout(env: BulletEnv, acts: np.ndarray) -> np.ndarray:
    return np.array([env.step(a)[0] for a in acts])


def test_observation_is_the_documented_float64_vector(env: BulletEnv) -> None:
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float64 and obs.shape == (env.task.obs_dim,)
    np.testing.assert_array_equal(env.observe(), obs)
    stepped = env.step(np.zeros(env.task.act_dim))[0]
    np.testing.assert_array_equal(env.observe(), stepped)


def test_set_state_reproduces_the_next_observations_bit_exactly(env: BulletEnv) -> None:
    env.reset(seed=2)
    rollout(env, actions(env, 15, seed=2))
    state = env.get_state()
    acts = actions(env, 5, seed=3)
    expected = rollout(env, acts)
    env.set_state(state)
    assert np.array_equal(rollout(env, acts), expected)
    other = make(env.env_id)
    other.reset(seed=99)
    other.set_state(state)
    assert np.array_equal(rollout(other, acts), expected)
    other.close()


def test_set_state_is_exact_against_the_joint_limits() -> None:
    # Joint limits are constraints like contacts; check that they carry no warm start.
    kuka = make("pybullet/kuka-reach")
    kuka.reset(seed=0)
    push = np.array([0.0, 1.0, 0.0, -1.0, 0.0, 1.0, 0.0])
    rollout(kuka, np.tile(push, (45, 1)))
    state = kuka.get_state()
    _, upper = kuka.joint_limits
    assert np.isclose(state[1], upper[1], atol=1e-2), "joint 2 should be at its limit"
    acts = np.tile(push, (5, 1)) + 0.1 * actions(kuka, 5, seed=1)
    expected = rollout(kuka, acts)
    kuka.set_state(state)
    assert np.array_equal(rollout(kuka, acts), expected)
    kuka.close()

    cartpole = make("pybullet/cartpole-swingup")
    cartpole.reset(seed=0)
    cartpole.set_state([14.9, np.pi, 5.0, 0.0, 0.0])
    expected = rollout(cartpole, np.ones((10, 1)))
    assert np.abs(expected[:, 0]).max() <= 15.0 + 1e-2, "the URDF's rail limit holds the cart"
    cartpole.set_state([14.9, np.pi, 5.0, 0.0, 0.0])
    assert np.array_equal(rollout(cartpole, np.ones((10, 1))), expected)
    cartpole.close()


def test_torch_reward_reproduces_the_simulator_reward(env: BulletEnv) -> None:
    obs, _ = env.reset(seed=1)
    rng = np.random.default_rng(1)
    rows = []
    for i, a in enumerate(actions(env, 50, seed=1)):
        if isinstance(env, CartpoleSwingupEnv) and i % 10 == 0:
            # Random pole angles: from hanging, random forces earn almost no reward.
            x, theta = rng.uniform(-3, 3), rng.uniform(-np.pi, np.pi)
            env.set_state([x, theta, *rng.normal(0.0, 2.0, size=2), 0.0])
            obs = env.observe()
        next_obs, reward, terminated, _, _ = env.step(a)
        rows.append((obs, a, next_obs, reward, terminated))
        obs = next_obs
    o, a, n = (torch.tensor(np.array([r[i] for r in rows])) for i in range(3))
    assert o.dtype == torch.float64
    rewards = np.array([r[3] for r in rows])
    assert np.ptp(rewards) > 1e-3, "the reward should vary along a random trajectory"
    np.testing.assert_allclose(env.task.reward(o, a, n).numpy(), rewards, rtol=0, atol=1e-6)
    terminated = np.array([r[4] for r in rows])
    np.testing.assert_array_equal(env.task.terminated(o, a, n).numpy(), terminated)


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("name", list(envs.PHYSICS_PARAMS))
def test_each_physics_parameter_changes_the_dynamics(env_id: str, name: str) -> None:
    env = make(env_id)
    env.reset(seed=4)
    rollout(env, actions(env, 10, seed=4))
    state = env.get_state()
    acts = actions(env, 20, seed=5)
    nominal = rollout(env, acts)
    env.set_physics_params(**{name: 3.0})
    env.set_state(state)
    scaled = rollout(env, acts)
    assert np.abs(scaled - nominal).max() > 1e-4, f"{name} changed nothing measurable"
    env.set_physics_params(**{name: 1.0})
    env.set_state(state)
    assert np.array_equal(rollout(env, acts), nominal), "nominal values are restored exactly"
    env.close()


def test_mass_scale_scales_mass_and_inertia(env: BulletEnv) -> None:
    nominal = [pybullet.getDynamicsInfo(env.body_id, j, physicsClientId=env.client_id)
               for j in env.joint_indices]
    env.set_physics_params(mass_scale=2.0)
    for j, before in zip(env.joint_indices, nominal, strict=True):
        after = pybullet.getDynamicsInfo(env.body_id, j, physicsClientId=env.client_id)
        assert after[0] == pytest.approx(2 * before[0])
        np.testing.assert_allclose(after[2], 2 * np.array(before[2]), rtol=1e-12)


def test_motor_force_limit_is_the_force_asked_for() -> None:
    # PyBullet applies a motor's force limit at every substep: the backend divides it by the
    # number of substeps. With the slider's Coulomb friction at 5 N, 4 N must not move the cart
    # and 10 N must accelerate it at about (10 - 5) N / 1.1 kg.
    env = make("pybullet/cartpole-swingup")
    env.reset(seed=0)
    env.set_physics_params(friction_scale=5.0 / CartpoleSwingupEnv.JOINT_FRICTION[0])
    rest = [0.0, np.pi, 0.0, 0.0]
    env.set_state([*rest, 0.0])
    held = rollout(env, np.full((5, 1), 0.4))
    assert np.abs(held[:, 3]).max() < 1e-6
    env.set_state([*rest, 0.0])
    pushed = rollout(env, np.ones((5, 1)))
    assert pushed[-1, 3] == pytest.approx(5.0 / 1.1 * 0.1, rel=0.2)
    env.close()


def test_render_returns_a_non_constant_image_and_leaves_the_dynamics_alone(
    env: BulletEnv,
) -> None:
    env.reset(seed=0)
    state = env.get_state()
    acts = actions(env, 5, seed=0)
    expected = rollout(env, acts)
    env.set_state(state)
    image = env.render_rgb(width=64, height=64)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert image.std() > 5.0
    wide = env.render_rgb(width=80, height=48)
    assert wide.shape == (48, 80, 3)
    assert np.array_equal(rollout(env, acts), expected)


def test_render_mode_rgb_array() -> None:
    env = make("pybullet/cartpole-swingup", render_mode="rgb_array")
    env.reset(seed=0)
    image = env.render()
    assert image is not None and image.shape == (*env.render_size, 3)
    env.close()


def test_two_envs_at_once_do_not_interfere() -> None:
    first, second = make("pybullet/kuka-reach"), make("pybullet/kuka-reach")
    cartpole = make("pybullet/cartpole-swingup")
    first.reset(seed=3)
    second.reset(seed=3)
    cartpole.reset(seed=3)
    frozen, frozen_cartpole = second.observe(), cartpole.observe()
    acts = actions(first, 10, seed=3)
    alone = rollout(first, acts)
    np.testing.assert_array_equal(second.observe(), frozen)
    np.testing.assert_array_equal(cartpole.observe(), frozen_cartpole)
    # Interleaved stepping gives each env the trajectory it has alone.
    interleaved = []
    for a in acts:
        interleaved.append(second.step(a)[0])
        cartpole.step(a[:1])
    np.testing.assert_array_equal(np.array(interleaved), alone)
    for env in (first, second, cartpole):
        env.close()


def test_same_seed_same_first_observation_and_trajectory(env: BulletEnv) -> None:
    twin = make(env.env_id)
    obs, _ = env.reset(seed=7)
    twin_obs, _ = twin.reset(seed=7)
    np.testing.assert_array_equal(obs, twin_obs)
    acts = actions(env, 20, seed=7)
    np.testing.assert_array_equal(rollout(env, acts), rollout(twin, acts))
    other, _ = twin.reset(seed=8)
    assert not np.array_equal(obs, other)
    twin.close()


def test_kuka_target_is_above_the_floor_fixed_and_in_the_state() -> None:
    env = make("pybullet/kuka-reach")
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        target = obs[14:17] - obs[17:20]
        assert target[2] >= KukaReachEnv.MIN_TARGET_HEIGHT - 1e-12
        assert np.linalg.norm(target - [0.0, 0.0, 0.36]) < 1.3, "within the arm's reach"
        np.testing.assert_allclose(env.get_state()[14:17], target, atol=1e-12)
        moved = rollout(env, actions(env, 3, seed=seed))
        np.testing.assert_allclose(moved[:, 14:17] - moved[:, 17:20], [target] * 3, atol=1e-12)
    # The velocity servo tracks its command: one step after a constant action, qdot ~ command.
    env.reset(seed=0)
    command = np.full(7, 0.5)
    obs = rollout(env, np.tile(command, (3, 1)))[-1]
    np.testing.assert_allclose(obs[7:14], command * KukaReachEnv.MAX_JOINT_VELOCITY, atol=0.05)
    env.close()


def test_cartpole_angle_is_zero_upright_and_starts_hanging() -> None:
    env = make("pybullet/cartpole-swingup")
    obs, _ = env.reset(seed=0)
    assert obs[1] < -0.99, "the pole starts hanging down"
    env.set_state([0.0, 0.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(env.observe(), [0.0, 1.0, 0.0, 0.0, 0.0], atol=1e-12)
    pole_com = pybullet.getLinkState(env.body_id, 1, physicsClientId=env.client_id)[0]
    assert pole_com[2] == pytest.approx(0.5), "theta = 0 holds the pole upright"
    upright = env.step(np.zeros(1))[1]
    assert upright > 0.9
    env.close()


def test_episode_length_and_close() -> None:
    env = make("pybullet/cartpole-swingup", max_episode_steps=3)
    env.reset(seed=0)
    flags = [env.step(np.zeros(1))[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]
    client = env.client_id
    env.close()
    env.close()
    assert not pybullet.isConnected(physicsClientId=client)
    assert make("pybullet/kuka-reach").max_episode_steps == 200
