"""The pendulum: a torque-limited pole on a hinge, pumped up and held upright
(`mujoco/pendulum-swingup`, on `assets/pendulum.xml`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from envs.core import Array, Task
from envs.mujoco_env import MujocoEnv


class UprightTask(Task):
    """A pendulum's smooth swing-up reward, `(1 + cos(theta)) / 2` in [0, 1] (1 upright).

    obs: `[cos(theta), sin(theta), w]` (3), theta = 0 upright; act `[1]` in [-1, 1].
    """

    def __init__(self) -> None:
        super().__init__(3, np.array([-1.0]), np.array([1.0]))

    def reward(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        return (1 + next_obs[..., 0]) / 2


class PendulumSwingupEnv(MujocoEnv):
    """Swing a torque-limited pendulum up and hold it, on `assets/pendulum.xml`.

    obs `[cos(theta), sin(theta), w]` (3), theta = 0 upright; action: the hinge torque in
    [-1, 1] N m, under half of gravity's pull on the horizontal pole, so it must be pumped.
    Reward: how upright it is, `(1 + cos(theta)) / 2` (`UprightTask`). Energy pumping
    (torque along the velocity) first reaches upright after 2 s. Episodes start hanging
    (theta = pi) with 0.01-scale gaussian noise on the angle and velocity, last 100 steps
    (5 s) and never terminate.

    Physics: semi-implicit Euler at 10 ms, 5 physics steps per 50 ms control step.
    """

    def __init__(
        self,
        env_id: str = "mujoco/pendulum-swingup",
        max_episode_steps: int = 100,
        render_mode: str | None = None,
        rollout_threads: int | None = None,
    ) -> None:
        super().__init__(
            env_id, UprightTask(), "pendulum.xml", frame_skip=5,
            max_episode_steps=max_episode_steps, camera="fixed", render_mode=render_mode,
            rollout_threads=rollout_threads,
        )

    def _initialize_episode(self, rng: np.random.Generator) -> None:
        noise = 0.01 * rng.standard_normal(2)
        self._qpos[:] = math.pi + noise[0]
        self._qvel[:] = noise[1]

    def _outcome(self, action: Array) -> tuple[Array, float, bool]:
        theta, w = self._qpos.item(), self._qvel.item()
        cos = math.cos(theta)
        return np.array((cos, math.sin(theta), w)), (1.0 + cos) / 2.0, False

    def observation_of(
        self, qpos: torch.Tensor, qvel: torch.Tensor, mocap_pos: torch.Tensor
    ) -> torch.Tensor:
        theta = qpos[..., 0]
        return torch.stack([torch.cos(theta), torch.sin(theta), qvel[..., 0]], dim=-1)


def pendulum_swingup(
    env_id: str = "mujoco/pendulum-swingup", **kwargs: Any
) -> PendulumSwingupEnv:
    """`mujoco/pendulum-swingup`; kwargs: max_episode_steps, render_mode, rollout_threads."""
    return PendulumSwingupEnv(env_id, **kwargs)
