"""Quadratic goals: the cost that iLQR and DDP minimise on a task, where the task has one.

The sampling planners and MCTS maximise a task's reward as it is. The gradient-based solvers
minimise a smooth cost instead:

    cost(x, u)    = 1/2 sum_i w_i (obs_i - goal_i)^2 + 1/2 action_weight |u|^2   a step
    final_cost(x) = final_scale * 1/2 sum_i w_i (obs_i - goal_i)^2              at the horizon

on the observation, which is the planner's state through a learned model, or a torch function
of the joint state (`RobotEnv.joint_observation`) through the simulator (Gauss-Newton
derivatives of the residual `obs(x) - goal`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from controllers.costs import QuadraticCost, QuadraticFinalCost, ResidualCost, ResidualFinalCost

JointObservation = Callable[[torch.Tensor], torch.Tensor]
F64 = torch.float64


@dataclass(frozen=True)
class QuadraticGoal:
    """A goal observation and the weights of the distance from it (see the module docstring)."""

    #: The goal observation `[do]`.
    goal: tuple[float, ...]
    #: Weights `[do]` of the observation's squared distance from the goal.
    weights: tuple[float, ...]
    #: Weight of the squared action, every action dimension alike.
    action_weight: float
    #: Factor on the observation weights at the end of the horizon.
    final_scale: float = 5.0

    def costs(
        self, action_dim: int, joint_observation: JointObservation | None = None
    ) -> tuple[QuadraticCost | ResidualCost, QuadraticFinalCost | ResidualFinalCost]:
        """The running and final costs on the observation, or on the joint state through
        `joint_observation` (a residual cost, Gauss-Newton) when it is given."""
        goal = torch.tensor(self.goal, dtype=F64)
        weights = torch.diag(torch.tensor(self.weights, dtype=F64))
        action = self.action_weight * torch.eye(action_dim, dtype=F64)
        if joint_observation is None:
            return (QuadraticCost(weights, action, x_ref=goal),
                    QuadraticFinalCost(self.final_scale * weights, x_ref=goal))
        to_obs = joint_observation

        def residual(x: torch.Tensor) -> torch.Tensor:
            return to_obs(x) - goal.to(x.dtype)

        return (ResidualCost(residual, weights, action),
                ResidualFinalCost(residual, self.final_scale * weights))


#: The goals known for registered tasks, by env id.
GOALS: dict[str, QuadraticGoal] = {
    # Upright (cos 1), the cart centred; obs [x, cos, sin, v, w].
    "mujoco/cartpole-swingup": QuadraticGoal(
        goal=(0.0, 1.0, 0.0, 0.0, 0.0), weights=(0.2, 1.0, 1.0, 0.0, 0.01), action_weight=0.02),
    # Upright; obs [cos, sin, w].
    "mujoco/pendulum-swingup": QuadraticGoal(
        goal=(1.0, 0.0, 0.0), weights=(1.0, 1.0, 0.0), action_weight=0.01),
    # The fingertip-to-target offset (obs 6, 7), in metres: 1 cm costs as 0.01 of the action.
    "mujoco/reacher-2link": QuadraticGoal(
        goal=(0.0,) * 10, weights=(0.0,) * 6 + (100.0, 100.0, 0.0, 0.0), action_weight=0.01),
    # The end effector's offset from the target (obs 17 .. 19), in metres.
    "pybullet/kuka-reach": QuadraticGoal(
        goal=(0.0,) * 20, weights=(0.0,) * 17 + (100.0,) * 3, action_weight=0.001),
}
