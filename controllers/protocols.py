"""The structural contracts between planners and whatever they plan through.

A planner never knows whether it runs on a learned ensemble, on the true simulator or on an
analytic model: it speaks to `Dynamics` (one batched step plus the task's reward) or, when the
model can score whole action sequences faster itself (the simulator in C, an ensemble with
particles), to `SequenceDynamics`. `sequence_returns` picks the fast path when it exists.

The output contract: whatever a `Planner` or `Controller` returns is finite and inside the
action bounds. Non-finite bounds, states and warm starts are refused with a `ValueError` naming
the argument (`controllers.validation`); a model whose every rollout diverges makes a planner
raise `ModelDivergedError`, never return a made-up plan; `MPC` turns that into its safe
fallback, counted in `MPCStats`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, cast, runtime_checkable

import torch


class ModelDivergedError(RuntimeError):
    """The dynamics returned NaN or infinity where a plan needs finite values (every rollout
    of a sampling planner or MCTS; iLQR's starting rollout or its derivatives along it): a
    diverged learned model or an unstable simulation, and no plan can be ranked."""


@runtime_checkable
class Dynamics(Protocol):
    """Batched one-step dynamics and the task's reward.

    Dynamics that know their state dimension say so in an attribute `state_dim`; planners and
    `MPC` then refuse a state of another size (the protocol does not require it: an analytic
    model may take any).
    """

    def step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Next states, `[B, dx]`, of states `[B, dx]` under actions `[B, du]`."""
        ...

    def reward(
        self, state: torch.Tensor, action: torch.Tensor, next_state: torch.Tensor
    ) -> torch.Tensor:
        """Reward of each transition, `[B]`."""
        ...


@runtime_checkable
class SequenceDynamics(Protocol):
    """Dynamics that score whole open-loop action sequences at once."""

    def sequence_returns(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Return (sum of rewards) of each sequence `[N, H, du]` from one state `[dx]`: `[N]`."""
        ...


def sequence_returns(
    dynamics: Dynamics | SequenceDynamics, state: torch.Tensor, actions: torch.Tensor
) -> torch.Tensor:
    """Return of each action sequence `[N, H, du]` from `state` `[dx]`, `[N]`.

    A NaN or infinite return (a diverged rollout) becomes `-inf`, so it ranks last, never first.
    """
    # The attribute, not `isinstance` against the runtime-checkable protocol: that check costs
    # about 25 us, a percent of a fast replan, and this runs once per planner iteration.
    score = getattr(dynamics, "sequence_returns", None)
    if callable(score):
        returns = score(state, actions)
    else:
        model = cast(Dynamics, dynamics)
        x = state.expand(actions.shape[0], -1)
        returns = torch.zeros(actions.shape[0], dtype=actions.dtype, device=actions.device)
        for action in actions.unbind(dim=1):
            x_next = model.step(x, action)
            returns.add_(model.reward(x, action, x_next))
            x = x_next
    return torch.nan_to_num(returns, nan=-torch.inf, posinf=-torch.inf, neginf=-torch.inf)


@dataclass(frozen=True)
class Plan:
    """What a planner returns: the fields `MPC` acts on, typed, and diagnostics in `info`."""

    #: The planned open-loop actions, `[H, du]`.
    actions: torch.Tensor
    #: The planner's estimate of the plan's return (NaN where not estimated).
    expected_return: float
    #: Iterations (or simulations) the planner ran; `MPC`'s budget rule reads it.
    iterations: int = 1
    #: Feedback gains K `[H, du, dx]` about `planned_states`, for closed-loop play between
    #: replans (`u_t + K_t (x - x_t)`), or None for an open-loop plan.
    feedback_gains: torch.Tensor | None = None
    #: The states `[H+1, dx]` the plan expects to visit, where the planner knows them.
    planned_states: torch.Tensor | None = None
    #: Whether this is `MPC`'s stand-in for a replan that came too late or diverged.
    fallback: bool = False
    #: Planner-specific diagnostics (spread, stop reason, tree statistics); nothing acts on them.
    info: dict[str, Any] = field(default_factory=dict)


class Planner(Protocol):
    """Anything that turns a state into a plan whose actions lie inside its bounds."""

    #: Plan length H.
    horizon: int
    #: Lower action bounds `[du]`, finite.
    action_low: torch.Tensor
    #: Upper action bounds `[du]`, finite.
    action_high: torch.Tensor

    def plan(
        self,
        state: torch.Tensor,
        warm_start: torch.Tensor | None = None,
        *,
        deadline: float | None = None,
    ) -> Plan:
        """Plan from `state` `[dx]`, optionally starting from actions `[H, du]`.

        `deadline`, a `time.perf_counter()` time in seconds, asks an iterative planner to stop
        early enough to return by then; it still completes at least one iteration, so the
        caller must be ready for a late plan. `None`: no deadline.

        Raises:
            ValueError: naming `state` or `warm_start` if it is not finite or of the wrong
                shape.
            ModelDivergedError: if no rollout gave a finite return.
        """
        ...

    def reset(self) -> None:
        """Forget anything carried between calls (a new episode begins)."""
        ...


class Controller(Protocol):
    """Anything that acts: MPC over a planner, a neural policy, a teacher in distillation."""

    def reset(self) -> None:
        """Start a new episode."""
        ...

    def act(self, obs: Any) -> torch.Tensor:
        """The action `[du]` for this observation."""
        ...
