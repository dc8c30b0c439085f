"""Learned ensembles and task rewards in the form the gradient-based solvers take.

`controllers.ilqr` optimises through `dynamics(x [dx], u [du]) -> [dx]` and
`cost(x, u, t) -> []`, differentiated by `torch.func`. These adapters give a learned ensemble
that form, through the members' mean prediction or through one member, and turn a task's
torch reward into a cost. The ensemble's normalisers are inside the model, so the Jacobians
are those of the prediction in observation units.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mbrl.propagation import Ensemble, TaskFunctions

Dynamics = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Cost = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def ensemble_dynamics(model: Ensemble, member: int | None = None) -> Dynamics:
    """`x [do], u [du] -> [do]`: the mean over members of the predicted next observation
    (`member=None`), or that one member's prediction."""
    members = model.num_members
    if member is not None and not 0 <= member < members:
        raise ValueError(f"member must be in [0, {members}), got {member}")

    def step(obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        mean = model.predict(obs[None], act[None]).mean[:, 0]  # [E, do]
        next_obs = mean.mean(dim=0) if member is None else mean[member]
        return next_obs.to(obs.dtype)

    return step


def reward_cost(task: TaskFunctions, dynamics: Dynamics) -> Cost:
    """`cost(x, u, t) = -reward(x, u, dynamics(x, u))`, the task's reward of the step the
    model predicts, negated (iLQR minimises)."""

    def cost(obs: torch.Tensor, act: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        next_obs = dynamics(obs, act)
        return -task.reward(obs[None], act[None], next_obs[None])[0]

    return cost
