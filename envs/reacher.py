"""The two-link reacher: a planar arm whose fingertip must reach a random target
(`mujoco/reacher-2link`, on `assets/reacher_2link.xml`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from envs.core import Array, Task
from envs.mujoco_env import MujocoEnv


class ReachTask(Task):
    """Dense reaching reward, `-|fingertip - target| - control_cost * |a|^2` (gymnasium Reacher's
    form, scored after the step). obs: [cos q1, cos q2, sin q1, sin q2, qvel1, qvel2,
    fingertip_x - target_x, fingertip_y - target_y, target_x, target_y] (10).

    The control cost uses the action clipped into its bounds, as the simulator applies it.
    """

    def __init__(self, control_cost: float = 0.1) -> None:
        super().__init__(10, -np.ones(2), np.ones(2))
        #: Weight of the squared action in the reward.
        self.control_cost = float(control_cost)

    def reward(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        low = act.new_tensor(self.action_low.tolist())
        high = act.new_tensor(self.action_high.tolist())
        clipped = torch.minimum(torch.maximum(act, low), high)
        distance = torch.linalg.vector_norm(next_obs[..., 6:8], dim=-1)
        return -distance - self.control_cost * (clipped**2).sum(dim=-1)


class ReacherTwoLinkEnv(MujocoEnv):
    """Bring a planar two-link arm's fingertip to a random target, on `assets/reacher_2link.xml`.

    obs (10): see `ReachTask`; joint angles as cosines and sines, the fingertip-to-target offset
    and the target position in the arm's plane (metres, shoulder at the origin). Actions: the
    two joint torques in [-1, 1] x 0.05 N m. Episodes start with the shoulder uniform in
    [-pi, pi], the wrist uniform within its limits, velocities uniform in [-0.05, 0.05] rad/s
    and the target (a mocap body) uniform in angle at 0.05 .. 0.2 m from the shoulder (the arm
    reaches 0.21 m); they last 200 steps (4 s) and never terminate.

    Physics: semi-implicit Euler at 5 ms, 4 physics steps per 20 ms control step.
    """

    #: Range of the target's distance from the shoulder at reset (metres).
    TARGET_RADIUS = (0.05, 0.20)

    def __init__(
        self,
        env_id: str = "mujoco/reacher-2link",
        max_episode_steps: int = 200,
        render_mode: str | None = None,
        rollout_threads: int | None = None,
        control_cost: float = 0.1,
    ) -> None:
        super().__init__(
            env_id, ReachTask(control_cost), "reacher_2link.xml", frame_skip=4,
            max_episode_steps=max_episode_steps, camera="fixed", render_mode=render_mode,
            rollout_threads=rollout_threads,
        )
        model = self._model
        self._control_cost = float(control_cost)
        # Planar kinematics from the model: shoulder position, upper arm and forearm lengths.
        shoulder = model.body("arm").pos
        self._shoulder_xy = (float(shoulder[0]), float(shoulder[1]))
        self._upper = float(model.body("hand").pos[0])
        self._fore = float(model.site("fingertip").pos[0])
        self._wrist_range = model.jnt_range[model.joint("wrist").id].copy()
        self._target_z = float(model.body("target").pos[2])

    def _initialize_episode(self, rng: np.random.Generator) -> None:
        self._qpos[:] = (
            rng.uniform(-math.pi, math.pi), rng.uniform(*self._wrist_range.tolist())
        )
        self._qvel[:] = rng.uniform(-0.05, 0.05, size=2)
        angle = rng.uniform(0.0, 2 * math.pi)
        radius = rng.uniform(*self.TARGET_RADIUS)
        x0, y0 = self._shoulder_xy
        self._mocap_pos[0] = (
            x0 + radius * math.cos(angle), y0 + radius * math.sin(angle), self._target_z
        )

    def _outcome(self, action: Array) -> tuple[Array, float, bool]:
        q1, q2 = self._qpos.tolist()
        w1, w2 = self._qvel.tolist()
        tx, ty, _ = self._mocap_pos[0].tolist()
        x0, y0 = self._shoulder_xy
        fx = x0 + self._upper * math.cos(q1) + self._fore * math.cos(q1 + q2)
        fy = y0 + self._upper * math.sin(q1) + self._fore * math.sin(q1 + q2)
        dx, dy = fx - tx, fy - ty
        obs = np.array(
            (math.cos(q1), math.cos(q2), math.sin(q1), math.sin(q2), w1, w2, dx, dy, tx, ty)
        )
        a1, a2 = action.tolist()
        return obs, -math.hypot(dx, dy) - self._control_cost * (a1 * a1 + a2 * a2), False

    def observation_of(
        self, qpos: torch.Tensor, qvel: torch.Tensor, mocap_pos: torch.Tensor
    ) -> torch.Tensor:
        q1, q2 = qpos[..., 0], qpos[..., 1]
        tx, ty = mocap_pos[0, 0], mocap_pos[0, 1]
        x0, y0 = self._shoulder_xy
        fx = x0 + self._upper * torch.cos(q1) + self._fore * torch.cos(q1 + q2)
        fy = y0 + self._upper * torch.sin(q1) + self._fore * torch.sin(q1 + q2)
        return torch.stack(
            [torch.cos(q1), torch.cos(q2), torch.sin(q1), torch.sin(q2), qvel[..., 0],
             qvel[..., 1], fx - tx, fy - ty, tx.expand_as(q1), ty.expand_as(q1)],
            dim=-1,
        )


def reacher_two_link(env_id: str = "mujoco/reacher-2link", **kwargs: Any) -> ReacherTwoLinkEnv:
    """`mujoco/reacher-2link`; kwargs: max_episode_steps, render_mode, rollout_threads,
    control_cost."""
    return ReacherTwoLinkEnv(env_id, **kwargs)
