"""The cart-pole on PyBullet (`pybullet/cartpole-swingup`): pybullet_data's `cartpole.urdf`
under the task and observation map of `envs.cartpole`."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pybullet
import torch

from envs.bullet_env import BulletEnv, Camera
from envs.cartpole import CartpoleSwingupTask, cartpole_swingup_reward, observation
from envs.core import Array


class CartpoleSwingupEnv(BulletEnv):
    """pybullet_data's `cartpole.urdf`: slider joint 0 (cart, m), hinge joint 1 (pole, rad).

    Control: force on the cart. Action `a [1]` in [-1, 1] is a slider force
    `a * FORCE * actuator_gain_scale` N (TORQUE_CONTROL, held over the control step), as
    dm_control's cart-pole (same masses: cart 1 kg, pole 0.1 kg and 1 m; same 10 N). Force
    control is what makes swing-up a dynamics problem; a velocity servo on the cart would hide
    the pole's reaction.

    The pole angle `theta` is the hinge angle, 0 upright (the URDF's pole points up at 0),
    positive tipping the pole toward +x. Joint friction is the joints' velocity motors with target
    0 (Coulomb, `JOINT_FRICTION`), damping `JOINT_DAMPING`, both small. The URDF limits the
    slider to +-15 m, which PyBullet enforces as a hard stop, so the cart cannot leave its rail
    and episodes do not terminate (the reward's `centered` term keeps it near 0).

    Episode: 500 steps of 0.02 s (4 substeps), 10 s as dm_control's. Reset (dm_control's
    swing-up): cart at `0.01 * N(0, 1)`, pole hanging at `pi + 0.01 * N(0, 1)`, both velocities
    `0.01 * N(0, 1)`. obs `[cart_x, cos theta, sin theta, cart_v, theta_dot]`; state
    `[cart_x, theta, cart_v, theta_dot]`.
    """

    FORCE = 10.0
    JOINT_FRICTION = (0.05, 0.002)
    JOINT_DAMPING = (0.1, 0.002)

    def __init__(
        self, env_id: str, max_episode_steps: int = 500, render_mode: str | None = None
    ) -> None:
        super().__init__(
            env_id, CartpoleSwingupTask(), "cartpole.urdf",
            control_timestep=0.02, n_substeps=4, max_episode_steps=max_episode_steps,
            joint_damping=self.JOINT_DAMPING, joint_friction=self.JOINT_FRICTION,
            camera=Camera(target=(0.0, 0.0, 0.0), distance=4.5, yaw=0.0, pitch=-5.0),
            render_mode=render_mode,
        )
        # A dark backdrop behind the rail, visual only, for contrast with the white pole.
        backdrop = pybullet.createVisualShape(
            pybullet.GEOM_BOX, halfExtents=[8.0, 0.01, 3.0], rgbaColor=[0.2, 0.25, 0.3, 1.0],
            physicsClientId=self._client,
        )
        pybullet.createMultiBody(
            baseMass=0.0, baseVisualShapeIndex=backdrop, basePosition=[0.0, 1.0, 0.0],
            physicsClientId=self._client,
        )

    @property
    def joint_observation(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The cart-pole's observation map (`envs.cartpole.observation`): this robot's joint
        state `[cart_x, theta, cart_v, theta_dot]` is the MuJoCo cart-pole's."""
        return observation

    def observe(self) -> Array:
        """`[cart_x, cos theta, sin theta, cart_v, theta_dot]`, float64 (5)."""
        cart, pole = pybullet.getJointStates(
            self._robot, self._joints, physicsClientId=self._client
        )
        theta = pole[0]
        return np.array([cart[0], math.cos(theta), math.sin(theta), cart[1], pole[1]])

    def _actuate(self, action: Array) -> None:
        pybullet.setJointMotorControl2(
            self._robot, 0, pybullet.TORQUE_CONTROL,
            force=float(action[0]) * self.FORCE * self._gain, physicsClientId=self._client,
        )

    def _reward(self, obs: Array, action: Array) -> float:
        return cartpole_swingup_reward(float(obs[0]), float(obs[1]), float(action[0]),
                                       float(obs[4]))

    def _reset(self, rng: np.random.Generator) -> Array:
        noise = 0.01 * rng.standard_normal(4)
        self._reset_joints(np.array([noise[0], math.pi + noise[1]]), noise[2:])
        return self.observe()


def cartpole_swingup(env_id: str, **kwargs: Any) -> CartpoleSwingupEnv:
    return CartpoleSwingupEnv(env_id, **kwargs)
