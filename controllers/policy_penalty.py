"""Planning near a policy: PLATO's KL-penalised objective, and policy-seeded candidates.

PLATO (Kahn, Zhang, Levine & Abbeel 2017, "PLATO: Policy Learning using Adaptive
Trajectory Optimization", eq. 3) lets an MPC teacher act by

    minimise  sum_t  cost(x_t, u_t) + lambda * KL( pi(u_t | x_t) || pi_student(u_t | o_t) )

For Gaussian actions of the student's covariance `Sigma` the KL of a teacher action `u` is the
precision-weighted pull `1/2 (u - mu(o))' Sigma^{-1} (u - mu(o))` toward the student's mean
`mu` at the observation `o` of the predicted state. `PolicyPull` is that term, batched and
differentiable; `penalized_reward` subtracts it from a reward (the sampling planners and MCTS
maximise rewards), `PenalizedTask` does the same for a task a learned model scores with, and
`PenalizedCost` adds it to an iLQR running cost with Gauss-Newton derivatives (so a cost with
positive semi-definite curvature keeps it). `lambda = 0` is the plain teacher; as lambda grows
the plan tends to the student's own actions.

`PolicyProposal` is the other direction (TD-MPC's policy trajectories, Hansen, Wang & Su
2022): the student rolled through the planner's own dynamics gives an action sequence that a
sampling planner adds to its candidates, or iLQR starts from.

Shapes: `B` batch, `H` horizon, `dx` state, `do` observation and `du` action dimension.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch.func import jacrev, vmap

from controllers.ilqr import CostFn, cost_derivatives

#: The student's action mean `[B, du]` at observations `[B, do]`, differentiable.
PolicyMean = Callable[[torch.Tensor], torch.Tensor]
#: A batched step `(x [B, dx], u [B, du]) -> [B, dx]`.
Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: A batched reward `(obs [B, do], act [B, du], next_obs [B, do]) -> [B]`.
Reward = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class PolicyPull:
    """`weight * 1/2 (u - mu(o))' P (u - mu(o))`: lambda times the KL of a Gaussian action
    from the student's of precision `P` (see the module docstring)."""

    #: The student's mean action at observations.
    mean: PolicyMean
    #: The student's action precision `[du, du]` (its covariance's inverse).
    precision: torch.Tensor
    #: lambda, >= 0.
    weight: float

    def __post_init__(self) -> None:
        if not self.weight >= 0:
            raise ValueError(f"the penalty weight lambda must be >= 0, got {self.weight}")
        p = self.precision
        if p.ndim != 2 or p.shape[0] != p.shape[1] or not bool(torch.isfinite(p).all()):
            raise ValueError(f"precision must be a finite [du, du] matrix, got {list(p.shape)}")

    def __call__(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """The penalty `[B]` of actions `[B, du]` at observations `[B, do]`."""
        gap = act - self.mean(obs).to(act.dtype)
        precision = self.precision.to(act.dtype)
        return 0.5 * self.weight * torch.einsum("bi,ij,bj->b", gap, precision, gap)

    def residual(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """`r` with `r' r` = the penalty of one `obs [do]`, `act [du]`: `sqrt(lambda) L' (u -
        mu(o))` with `P = L L'`."""
        factor = torch.linalg.cholesky(self.precision.to(act.dtype))
        gap = act - self.mean(obs[None]).to(act.dtype)[0]
        return (self.weight ** 0.5 / 2 ** 0.5) * (factor.T @ gap)


def penalized_reward(reward: Reward, pull: PolicyPull) -> Reward:
    """`reward(o, u, o') - pull(o, u)`: the reward a PLATO teacher maximises."""

    def penalized(obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():  # a score for sampling planners, never differentiated
            return reward(obs, act, next_obs) - pull(obs, act).to(obs.dtype)

    return penalized


class TaskFunctions(Protocol):
    """A task's batched reward and termination (`envs.Task`)."""

    def reward(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        ...

    def terminated(
        self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor
    ) -> torch.Tensor:
        ...


class PenalizedTask:
    """`task` with the reward `penalized_reward(task.reward, pull)`; everything else
    (termination, bounds, dimensions) passed through."""

    def __init__(self, task: TaskFunctions, pull: PolicyPull) -> None:
        self.task, self.pull = task, pull
        self.reward = penalized_reward(task.reward, pull)

    def terminated(
        self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor
    ) -> torch.Tensor:
        """The task's own termination `[B]`."""
        return self.task.terminated(obs, act, next_obs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.task, name)


class PenalizedCost:
    """An iLQR running cost plus `pull` at the observation `observe(x)` of the state: value,
    and derivatives = the cost's own (closed form or by torch.func) plus the pull's
    Gauss-Newton terms `J' J` of its residual in `(x, u)`."""

    def __init__(self, cost: CostFn, pull: PolicyPull,
                 observe: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.cost, self.pull = cost, pull
        self.observe = observe if observe is not None else (lambda x: x)

    def __call__(self, x: torch.Tensor, u: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The cost `[]` of `x` `[dx]` and `u` `[du]` at step `t`."""
        r = self.pull.residual(self.observe(x), u)
        return self.cost(x, u, t) + r @ r

    def derivatives(
        self, xs: torch.Tensor, us: torch.Tensor, steps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """`l_x [H, dx]`, `l_u [H, du]`, `l_xx`, `l_uu`, `l_ux` along the trajectory."""
        own = getattr(self.cost, "derivatives", None)
        if own is not None:
            l_x, l_u, l_xx, l_uu, l_ux = own(xs, us, steps)
        else:
            l_x, l_u, l_xx, l_uu, l_ux = cost_derivatives(self.cost, xs, us, steps)

        def residual(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
            return self.pull.residual(self.observe(x), u)

        r = vmap(residual)(xs, us)  # [H, dr]
        J_x, J_u = vmap(jacrev(residual, argnums=(0, 1)))(xs, us)  # [H, dr, dx], [H, dr, du]
        gx, gu = 2 * (J_x.mT @ r[..., None])[..., 0], 2 * (J_u.mT @ r[..., None])[..., 0]
        return (l_x + gx, l_u + gu, l_xx + 2 * J_x.mT @ J_x, l_uu + 2 * J_u.mT @ J_u,
                l_ux + 2 * J_u.mT @ J_x)


class PolicyProposal:
    """The student's action sequence `[1, H, du]` from a state `[dx]`: its mean action at each
    state, the state stepped by `dynamics` (the planner's own model), as a candidate for a
    planner (see the module docstring).

    Args:
        mean: the student's mean action at observations, in the bounds.
        step: the batched step `(x [B, dx], u [B, du]) -> [B, dx]` of the planner's model.
        horizon: H.
        observe: the observation `[B, do]` of states `[B, dx]` (None: the state is the
            observation, as for a learned model).
    """

    def __init__(self, mean: PolicyMean, step: Step, horizon: int,
                 observe: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.mean, self.step, self.horizon = mean, step, horizon
        self.observe = observe

    @torch.no_grad()
    def __call__(self, state: torch.Tensor) -> torch.Tensor:
        """The proposal `[1, H, du]` from `state` `[dx]`."""
        x = state[None]
        actions = []
        for _ in range(self.horizon):
            obs = x if self.observe is None else self.observe(x)
            u = self.mean(obs.to(torch.float32)).to(state.dtype)
            actions.append(u)
            x = self.step(x, u)
        return torch.stack(actions, dim=1)
