"""Learned ensembles and task rewards in the form the gradient-based solvers take.

`controllers.ilqr` optimises through `dynamics(x [dx], u [du]) -> [dx]` and
`cost(x, u, t) -> []`, differentiated by `torch.func` or by their own derivatives. These
adapters give a learned ensemble that form, through the members' mean prediction or through
one member, and turn a task's torch reward into a cost. The ensemble's normalisers are inside
the model, so the Jacobians are those of the prediction in observation units.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mbrl.learning.propagation import Ensemble, TaskFunctions

Dynamics = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Cost = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class LearnedDynamics:
    """`x [do], u [du] -> [do]`: the members' mean prediction of the next observation
    (`member=None`), or one member's, in the dtype of `x`.

    `jacobians(xs [H, do], us [H, du])` gives the Jacobians at every step by reverse mode on
    the whole batch at once, one backward pass per output: each row's prediction depends on
    that row alone, so the gradient of an output's sum over rows is every row's gradient.
    That is many times faster than vmapped `torch.func.jacrev` through the member-batched
    layers; `ilqr` uses it (and DDP differences it).
    """

    def __init__(self, model: Ensemble, member: int | None = None) -> None:
        members = model.num_members
        if member is not None and not 0 <= member < members:
            raise ValueError(f"member must be in [0, {members}), got {member}")
        self.model, self.member = model, member

    def __call__(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """The next observation `[do]` after `obs` `[do]` and `act` `[du]`."""
        return self._predict(obs[None], act[None])[0]

    def jacobians(self, xs: torch.Tensor, us: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`A [H, do, do]` and `B [H, do, du]` of the prediction at each `(x_t, u_t)`."""
        with torch.enable_grad():
            x = xs.detach().requires_grad_(True)
            u = us.detach().requires_grad_(True)
            out = self._predict(x, u)  # [H, do]
            rows = [
                torch.autograd.grad(out[:, i].sum(), (x, u), retain_graph=i < out.shape[1] - 1)
                for i in range(out.shape[1])
            ]
        return torch.stack([r[0] for r in rows], dim=1), torch.stack([r[1] for r in rows], dim=1)

    def _predict(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        mean = self.model.predict(obs, act).mean  # [E, B, do]
        next_obs = mean.mean(dim=0) if self.member is None else mean[self.member]
        return next_obs.to(obs.dtype)


def ensemble_dynamics(model: Ensemble, member: int | None = None) -> LearnedDynamics:
    """The learned `dynamics(x, u)` of an ensemble for the solvers (see `LearnedDynamics`)."""
    return LearnedDynamics(model, member)


def reward_cost(task: TaskFunctions, dynamics: Dynamics) -> Cost:
    """`cost(x, u, t) = -reward(x, u, dynamics(x, u))`, the task's reward of the step the
    model predicts, negated (iLQR minimises)."""

    def cost(obs: torch.Tensor, act: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        next_obs = dynamics(obs, act)
        return -task.reward(obs[None], act[None], next_obs[None])[0]

    return cost
