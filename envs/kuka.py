"""The KUKA iiwa: pybullet_data's 7-joint arm bringing its end effector to a random target
(`pybullet/kuka-reach`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pybullet
import torch

from envs.bullet_env import BulletEnv, Camera
from envs.core import Array, Task


class KukaReachTask(Task):
    """Reach a target with the end effector; dense reward.

    obs: `[joint positions (7), joint velocities (7), end effector (3), end effector - target
    (3)]` (20); act `[7]` in [-1, 1]. Reward `-||ee - target|| - action_cost * ||a||^2`.
    """

    def __init__(self, action_cost: float = 0.01) -> None:
        super().__init__(20, -np.ones(7), np.ones(7))
        #: Weight of the squared action norm.
        self.action_cost = float(action_cost)

    def reward(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        distance = torch.linalg.vector_norm(next_obs[..., 17:20], dim=-1)
        return -distance - self.action_cost * (act * act).sum(dim=-1)


class KukaReachEnv(BulletEnv):
    """pybullet_data's `kuka_iiwa/model.urdf` (7 revolute joints, fixed base, gravity on).

    Control: a joint velocity servo. Action `a [7]` in [-1, 1] commands joint velocities
    `a * MAX_JOINT_VELOCITY * actuator_gain_scale` (rad/s), tracked by PyBullet's
    VELOCITY_CONTROL motors up to the URDF's effort limit (300 N m per joint). The servo holds
    the arm against gravity and makes the action nearly the joint velocity one step later, an
    almost first-order, well-conditioned system a sampling or gradient planner handles well; raw
    torques would leave the planner to fight gravity and the arm's stiff, coupled dynamics.
    Masses, damping and friction matter whenever the servo saturates (fast reversals of the
    proximal joints do). `actuator_gain_scale` scales the commanded velocity per unit action.

    Joint friction: a Coulomb torque `-f * tanh(qdot / FRICTION_VELOCITY)` from the velocities
    at the start of each control step, sent as a joint torque (the motors are the servo's),
    with `f = JOINT_FRICTION` N m; joint damping is the URDF's 0.5 N m s/rad.

    Episode: 200 steps of 0.02 s (4 substeps), no termination. Reset: joints at `HOME` plus
    uniform noise of `INIT_NOISE` rad, at rest; the target is the end effector's position at
    a random joint configuration within 90% of the joint limits, kept when it is at least
    `MIN_TARGET_HEIGHT` above the base and `MIN_TARGET_RADIUS` from its vertical axis, so it is
    reachable. The end effector is the origin of link 7's frame (the flange).
    State: `[q (7), qdot (7), target (3)]`.
    """

    EE_LINK = 6
    HOME = (0.0, 0.6, 0.0, -1.4, 0.0, 1.1, 0.0)
    INIT_NOISE = 0.1
    MAX_JOINT_VELOCITY = 2.0
    JOINT_FRICTION = 1.0
    FRICTION_VELOCITY = 0.05
    MIN_TARGET_HEIGHT = 0.15
    MIN_TARGET_RADIUS = 0.25

    def __init__(
        self, env_id: str, max_episode_steps: int = 200, render_mode: str | None = None
    ) -> None:
        task = KukaReachTask()
        self._action_cost = task.action_cost
        super().__init__(
            env_id, task, "kuka_iiwa/model.urdf",
            control_timestep=0.02, n_substeps=4, max_episode_steps=max_episode_steps,
            joint_damping=[0.5] * 7, joint_friction=[self.JOINT_FRICTION] * 7,
            camera=Camera(target=(0.0, 0.0, 0.4), distance=1.8, yaw=50.0, pitch=-25.0),
            render_mode=render_mode,
        )
        client = self._client
        infos = [
            pybullet.getJointInfo(self._robot, j, physicsClientId=client) for j in self._joints
        ]
        #: Joint limits (rad), `[7]` each, and the servo's per-substep force limits (see module).
        self._lower = np.array([i[8] for i in infos])
        self._upper = np.array([i[9] for i in infos])
        self._servo_forces = [i[10] / self._n_substeps for i in infos]
        self._target = np.zeros(3)
        #: Joint velocities of the current state, kept by `observe` and `_set_state` for the
        #: friction torque of the next step (saves reading them back from PyBullet).
        self._qdot = [0.0] * 7
        # A red sphere at the target and a floor, visual only (no collision shape): they show
        # up in images and take no part in the dynamics.
        sphere = pybullet.createVisualShape(
            pybullet.GEOM_SPHERE, radius=0.04, rgbaColor=[0.9, 0.1, 0.1, 1.0],
            physicsClientId=client,
        )
        self._marker: int = pybullet.createMultiBody(
            baseMass=0.0, baseVisualShapeIndex=sphere, physicsClientId=client
        )
        floor = pybullet.createVisualShape(
            pybullet.GEOM_BOX, halfExtents=[1.5, 1.5, 0.005], rgbaColor=[0.6, 0.6, 0.6, 1.0],
            physicsClientId=client,
        )
        pybullet.createMultiBody(
            baseMass=0.0, baseVisualShapeIndex=floor, basePosition=[0.0, 0.0, -0.005],
            physicsClientId=client,
        )


    @property
    def joint_limits(self) -> tuple[np.ndarray, np.ndarray]:
        """The joints' lower and upper limits (rad), `[7]` each."""
        return self._lower.copy(), self._upper.copy()
    def observe(self) -> Array:
        """`[q (7), qdot (7), end effector (3), end effector - target (3)]`, float64 (20)."""
        states = pybullet.getJointStates(self._robot, self._joints, physicsClientId=self._client)
        ee = pybullet.getLinkState(
            self._robot, self.EE_LINK, computeForwardKinematics=True, physicsClientId=self._client
        )[4]
        t = self._target
        self._qdot = [s[1] for s in states]
        return np.array([
            *(s[0] for s in states), *self._qdot, *ee, ee[0] - t[0], ee[1] - t[1], ee[2] - t[2]
        ])

    def _actuate(self, action: Array) -> None:
        client = self._client
        velocity = self.MAX_JOINT_VELOCITY * self._gain
        pybullet.setJointMotorControlArray(
            self._robot, self._joints, pybullet.VELOCITY_CONTROL,
            targetVelocities=(action * velocity).tolist(), forces=self._servo_forces,
            physicsClientId=client,
        )
        slip = np.tanh(np.array(self._qdot) / self.FRICTION_VELOCITY)
        pybullet.setJointMotorControlArray(
            self._robot, self._joints, pybullet.TORQUE_CONTROL,
            forces=(-self._joint_friction * slip).tolist(), physicsClientId=client,
        )

    def _configure_joint_friction(self) -> None:
        """Nothing to configure: the friction torque is computed at every step, in `_actuate`."""

    def _reward(self, obs: Array, action: Array) -> float:
        dx, dy, dz = float(obs[17]), float(obs[18]), float(obs[19])
        cost = self._action_cost * float(np.dot(action, action))
        return -math.sqrt(dx * dx + dy * dy + dz * dz) - cost

    def _reset(self, rng: np.random.Generator) -> Array:
        self._target = self._draw_target(rng)
        q = np.asarray(self.HOME) + rng.uniform(-self.INIT_NOISE, self.INIT_NOISE, size=7)
        self._reset_joints(np.clip(q, self._lower, self._upper), np.zeros(7))
        self._place_marker()
        return self.observe()

    def _draw_target(self, rng: np.random.Generator) -> Array:
        """The end effector's position at a random joint configuration (moves the joints)."""
        while True:
            q = rng.uniform(0.9 * self._lower, 0.9 * self._upper)
            self._reset_joints(q, np.zeros(7))
            ee = pybullet.getLinkState(
                self._robot, self.EE_LINK, computeForwardKinematics=True,
                physicsClientId=self._client,
            )[4]
            high_enough = ee[2] >= self.MIN_TARGET_HEIGHT
            if high_enough and math.hypot(ee[0], ee[1]) >= self.MIN_TARGET_RADIUS:
                return np.array(ee)

    def _place_marker(self) -> None:
        pybullet.resetBasePositionAndOrientation(
            self._marker, self._target.tolist(), [0.0, 0.0, 0.0, 1.0],
            physicsClientId=self._client,
        )

    def _set_state(self, state: Array) -> None:
        super()._set_state(state)
        self._qdot = state[7:14].tolist()

    def _task_state(self) -> Array:
        return self._target.copy()

    def _set_task_state(self, state: Array) -> None:
        self._target = np.array(state, dtype=np.float64)
        self._place_marker()


def kuka_reach(env_id: str, **kwargs: Any) -> KukaReachEnv:
    return KukaReachEnv(env_id, **kwargs)
