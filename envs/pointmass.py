"""The point mass: a ball pushed in a plane towards a goal behind a wall
(`mujoco/pointmass-wall`, on `assets/pointmass_wall.xml`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from envs.core import Array, Task
from envs.mujoco_env import MujocoEnv


class GoalBehindWallTask(Task):
    """1 while the point mass is within `GOAL_RADIUS` of the goal, else 0: a sparse reward.

    obs: `[x, y, vx, vy, goal_x - x, goal_y - y]` (6); act: the push `[2]` in [-1, 1] N.
    """

    GOAL = (0.5, 0.2)
    GOAL_RADIUS = 0.1

    def __init__(self) -> None:
        super().__init__(6, -np.ones(2), np.ones(2))

    def reward(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        distance = torch.linalg.vector_norm(next_obs[..., 4:6], dim=-1)
        return (distance <= self.GOAL_RADIUS).to(next_obs.dtype)


class PointMassWallEnv(MujocoEnv):
    """Bring a point mass to a goal behind a wall, on `assets/pointmass_wall.xml`: the reward is
    sparse (`GoalBehindWallTask`), and the way round the wall first leads away from the goal.

    The ball starts at (-0.5, 0.2) with 0.01-scale gaussian noise on position and velocity; the
    goal is at (0.5, 0.2) on the far side of a wall that leaves a gap only below y = -0.1.
    Episodes last 200 steps (10 s) and never terminate. Steering round the wall's end reaches
    the goal in 1.1 s.

    Physics: semi-implicit Euler at 10 ms with contacts, 5 physics steps per 50 ms control step.
    """

    def __init__(
        self,
        env_id: str = "mujoco/pointmass-wall",
        max_episode_steps: int = 200,
        render_mode: str | None = None,
        rollout_threads: int | None = None,
    ) -> None:
        super().__init__(
            env_id, GoalBehindWallTask(), "pointmass_wall.xml", frame_skip=5,
            max_episode_steps=max_episode_steps, camera="fixed", render_mode=render_mode,
            rollout_threads=rollout_threads,
        )

    def _initialize_episode(self, rng: np.random.Generator) -> None:
        noise = 0.01 * rng.standard_normal(4)
        self._qpos[:] = (-0.5 + noise[0], 0.2 + noise[1])
        self._qvel[:] = noise[2:]

    def _outcome(self, action: Array) -> tuple[Array, float, bool]:
        x, y = self._qpos.tolist()
        vx, vy = self._qvel.tolist()
        gx, gy = GoalBehindWallTask.GOAL
        dx, dy = gx - x, gy - y
        reward = 1.0 if math.hypot(dx, dy) <= GoalBehindWallTask.GOAL_RADIUS else 0.0
        return np.array((x, y, vx, vy, dx, dy)), reward, False

    def observation_of(
        self, qpos: torch.Tensor, qvel: torch.Tensor, mocap_pos: torch.Tensor
    ) -> torch.Tensor:
        gx, gy = GoalBehindWallTask.GOAL
        return torch.stack([qpos[..., 0], qpos[..., 1], qvel[..., 0], qvel[..., 1],
                            gx - qpos[..., 0], gy - qpos[..., 1]], dim=-1)


def pointmass_wall(env_id: str = "mujoco/pointmass-wall", **kwargs: Any) -> PointMassWallEnv:
    """`mujoco/pointmass-wall`; kwargs: max_episode_steps, render_mode, rollout_threads."""
    return PointMassWallEnv(env_id, **kwargs)
