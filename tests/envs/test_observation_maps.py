"""Conformance: each robot's observation map from its joint state (`RobotEnv.joint_observation`,
in torch) gives the observation its env steps to, and is differentiable.

The map is the one definition of a robot's observation that planners (iLQR's residual on the
simulator) and the ROS bridge use; the MuJoCo robots' per-step fast path must agree with it.
"""

from __future__ import annotations

import numpy as np
import pybullet
import pytest
import torch

import envs
from envs.bullet_env import BulletEnv
from envs.dynamics import joint_state

#: Every robot whose observation is a function of its joint state alone.
MAPPED = ["mujoco/cartpole-swingup", "mujoco/pendulum-swingup", "mujoco/pointmass-wall",
          "mujoco/reacher-2link", "pybullet/cartpole-swingup", "dmc/cartpole-swingup",
          "dmc/cartpole-balance"]


def joints_of(env: envs.RobotEnv) -> np.ndarray:
    """`[joint positions, joint velocities]` of the env's simulator."""
    if env.env_id.startswith("pybullet/"):
        robot = env.inner if isinstance(env, envs.ActionRepeat) else env
        assert isinstance(robot, BulletEnv)
        states = pybullet.getJointStates(robot.body_id, robot.joint_indices,
                                         physicsClientId=robot.client_id)
        return np.array([s[0] for s in states] + [s[1] for s in states])
    return joint_state(env)


def test_every_mujoco_robot_has_an_observation_map() -> None:
    mujoco_ids = [env_id for env_id in envs.registry() if env_id.startswith("mujoco/")]
    assert set(mujoco_ids) <= set(MAPPED)
    assert envs.make("pybullet/kuka-reach").joint_observation is None  # needs kinematics


@pytest.mark.parametrize("env_id", MAPPED)
def test_the_map_gives_the_observation_of_every_step(env_id: str) -> None:
    env = envs.make(env_id, action_repeat=2)  # through a wrapper, as planners see it
    to_obs = env.joint_observation
    assert to_obs is not None
    obs, _ = env.reset(seed=3)
    rng = np.random.default_rng(3)
    for _ in range(12):
        mapped = to_obs(torch.from_numpy(joints_of(env))).numpy()
        np.testing.assert_allclose(mapped, obs, rtol=0, atol=1e-12)
        obs = env.step(rng.uniform(-1, 1, env.task.act_dim))[0]
    env.close()


@pytest.mark.parametrize("env_id", MAPPED)
def test_the_map_is_batched_and_differentiable(env_id: str) -> None:
    env = envs.make(env_id)
    env.reset(seed=4)
    to_obs = env.joint_observation
    assert to_obs is not None
    x = torch.from_numpy(joints_of(env)).requires_grad_(True)
    batch = torch.stack([x.detach(), x.detach() + 0.1])
    assert to_obs(batch).shape == (2, env.task.obs_dim)
    jacobian = torch.autograd.functional.jacobian(to_obs, x)
    assert jacobian.shape == (env.task.obs_dim, x.shape[0])
    assert bool(torch.isfinite(jacobian).all()) and bool((jacobian != 0).any())
    env.close()


@pytest.mark.parametrize("env_id", [e for e in MAPPED if not e.startswith("pybullet/")])
def test_the_joint_interface_names_the_joint_state_and_the_motors(env_id: str) -> None:
    # What a ROS 2 robot publishes (joint_state_broadcaster) and takes (a forward effort
    # command controller), in the simulator's own order and units.
    env = envs.make(env_id)
    env.reset(seed=0)
    interface = env.joint_interface
    assert interface is not None
    assert 2 * len(interface.state_joints) == joint_state(env).shape[0]
    assert len(set(interface.state_joints)) == len(interface.state_joints)
    assert len(interface.command_joints) == env.task.act_dim
    assert set(interface.command_joints) <= set(interface.state_joints)
    low, high = interface.effort_bounds(env.task)
    gear = np.asarray(interface.effort_per_action)
    np.testing.assert_allclose(high, gear * env.task.action_high)
    np.testing.assert_allclose(low, gear * env.task.action_low)


def test_the_cartpoles_joints_are_named_as_in_their_models() -> None:
    mine, theirs = envs.make("mujoco/cartpole-swingup"), envs.make("dmc/cartpole-swingup")
    assert mine.joint_interface is not None and theirs.joint_interface is not None
    assert mine.joint_interface.state_joints == ("slider", "hinge")
    assert theirs.joint_interface.state_joints == ("slider", "hinge_1")
    assert mine.joint_interface.command_joints == ("slider",)
    assert mine.joint_interface.effort_per_action == (10.0,)  # gear 10: |force| <= 10 N


def test_robots_without_named_one_dof_joints_have_no_joint_interface() -> None:
    assert envs.make("pybullet/cartpole-swingup").joint_interface is None
    assert envs.make("mujoco/pointmass-wall").joint_interface is not None


def test_physics_steps_make_up_a_control_step_exactly() -> None:
    # `mbrl sim-robot` acts between control steps; frame_skip physics steps are a `step`.
    stepped, substepped = (envs.make("mujoco/cartpole-swingup") for _ in range(2))
    stepped.reset(seed=3)
    substepped.reset(seed=3)
    action = np.array([0.7])
    for _ in range(10):
        stepped.step(action)
        for _ in range(substepped.frame_skip):  # type: ignore[attr-defined]
            substepped.physics_step(action)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(joint_state(stepped), joint_state(substepped))
    np.testing.assert_array_equal(stepped.observe(), substepped.observe())
