"""Model-predictive control: plan over a horizon, act, replan (receding horizon).

Mayne et al. (2000), "Constrained model predictive control: Stability and optimality".
Between replans the controller plays the stored plan; each replan is warm-started with the
previous plan shifted by the steps already played. With a time budget, the planner gets a
deadline and stops refining in time; if even its first iteration ends past the budget, the
replan is dropped for the previous plan shifted in time, which is what a real-time controller
would have had to play when the budget ran out.

Whatever `MPC.act` returns is finite and inside the planner's action bounds: an observation that
is not finite is refused (`ValueError` naming `obs`); a replan whose every rollout diverges
(`ModelDivergedError`) is replaced by the previous plan shifted in time or, with none, by the
safe plan (zero action where the bounds allow it), counted in `MPCStats.diverged` with a
warning; each action is clamped into the bounds.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from controllers.protocols import ModelDivergedError, Plan, Planner
from controllers.validation import (
    check_types,
    checked_bounds,
    checked_state,
    require,
    require_positive,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MPCConfig:
    """Settings of `MPC`."""

    #: Replan every this many steps, playing the stored plan in between.
    replan_every: int = 1
    #: Start each replan from the previous plan shifted in time.
    warm_start: bool = True
    #: Wall-clock budget of one replan, in milliseconds (None: unlimited); see `MPC`.
    time_budget_ms: float | None = None
    #: Control steps per plan step: each planned action is held this long, so the planner's
    #: model may step coarser than the controller acts (replanning stays every
    #: `replan_every` control steps; move blocking, Cagienard et al. 2007).
    plan_step: int = 1

    def __post_init__(self) -> None:
        check_types(self)
        require_positive(self, "replan_every", "plan_step")
        require(self, "time_budget_ms", self.time_budget_ms is None or self.time_budget_ms > 0,
                "must be > 0 or null")


@dataclass
class MPCStats:
    """What `MPC` measured of its replans since the episode began."""

    #: Replans asked of the planner.
    replans: int = 0
    #: Replans that ended past the time budget.
    overruns: int = 0
    #: Overruns after one iteration, replaced by the previous plan shifted in time.
    fallbacks: int = 0
    #: Replans whose every rollout diverged, replaced by the previous plan shifted in time or
    #: the safe plan.
    diverged: int = 0
    #: Wall-clock time of the last replan, in milliseconds (NaN before the first).
    last_plan_ms: float = math.nan


class MPC:
    """A `Controller` that runs `planner` in a receding horizon.

    `act(obs)` takes whatever state the planner's dynamics consume: an observation for a
    learned model, `env.get_state()` for the true simulator. The planner plans in the dtype
    of its bounds (a sampling planner's follows its dynamics), and the state is cast to it
    once, here; the action comes back in it.

    With `config.time_budget_ms`, each replan gets `deadline = start + budget`; an iterative
    planner stops before an iteration that would end past it, so it overruns by at most about
    one iteration, and such a plan is kept. If it ends past the budget after a single iteration
    (`Plan.iterations`), even the least planning does not fit: the plan is dropped for the
    previous plan shifted by the steps played, marked `Plan.fallback`, with a NaN
    `expected_return` (not estimated). On the episode's first
    replan there is no previous plan, and the late plan is played. `stats` counts both cases.
    A replan whose rollouts all diverge is replaced in the same way, or by the safe plan when
    there is no previous plan, and counted in `stats.diverged`. A plan
    with `feedback_gains` K `[H, du, dx]` and `planned_states` `[H+1, dx]` (iLQR's) is played
    in closed loop between replans, `u_t + K_t (x - x_t)` clipped into the bounds (with
    `plan_step` 1; under move blocking the held actions are played as they are).
    """

    def __init__(self, planner: Planner, config: MPCConfig = MPCConfig()) -> None:
        if config.replan_every > planner.horizon * config.plan_step:
            raise ValueError(
                f"replan_every ({config.replan_every}) exceeds the horizon ({planner.horizon} "
                f"plan steps of {config.plan_step} control steps)"
            )
        self.planner = planner
        self.config = config
        self.action_low, self.action_high = checked_bounds(
            planner.action_low, planner.action_high, strict=False
        )
        #: The state dimension where the planner's dynamics state it (`state_dim`), else None.
        self.state_dim: int | None = getattr(getattr(planner, "dynamics", None), "state_dim", None)
        self.last_plan: Plan | None = None
        self.stats = MPCStats()
        self._steps_since_plan = 0

    def reset(self) -> None:
        """Forget the stored plan, the planner's own memory and the stats: a new episode."""
        self.planner.reset()
        self.last_plan = None
        self.stats = MPCStats()
        self._steps_since_plan = 0

    def act(self, obs: Any) -> torch.Tensor:
        """The next action `[du]` from the state `obs` `[dx]`, finite and inside the bounds.

        Raises:
            ValueError: naming `obs` if it is not one vector of finite numbers.
        """
        state = checked_state(obs, "obs", self.state_dim)
        if self.last_plan is None or self._steps_since_plan >= self.config.replan_every:
            self.last_plan = self._replan(state.to(self.planner.action_low.dtype))
            self._steps_since_plan = 0
        index = self._steps_since_plan // self.config.plan_step
        action = self.last_plan.actions[index]
        plan = self.last_plan
        if self.config.plan_step == 1 and plan.feedback_gains is not None and (
            plan.planned_states is not None
        ):
            correction = plan.feedback_gains[index] @ (
                state.to(plan.feedback_gains.dtype) - plan.planned_states[index]
            )
            action = action + correction.to(action.dtype)
        self._steps_since_plan += 1
        low, high = self.action_low.to(action.dtype), self.action_high.to(action.dtype)
        return torch.clamp(action, low, high)

    def safe_action(self) -> torch.Tensor:
        """The action played when nothing better is known: zero where the bounds allow it,
        else the bound nearest to zero, `[du]`."""
        return torch.clamp(torch.zeros_like(self.action_low), self.action_low, self.action_high)

    def _replan(self, state: torch.Tensor) -> Plan:
        """A new plan from `state`, or the shifted previous one if one iteration overran."""
        shifted = self._shifted_plan()
        warm = shifted if self.config.warm_start else None
        budget_ms = self.config.time_budget_ms
        started = time.perf_counter()
        deadline = None if budget_ms is None else started + budget_ms / 1000
        try:
            plan = self.planner.plan(state, warm_start=warm, deadline=deadline)
        except ModelDivergedError as error:
            return self._diverged(error, shifted, started)
        elapsed_ms = (time.perf_counter() - started) * 1000
        self.stats.replans += 1
        self.stats.last_plan_ms = elapsed_ms
        if budget_ms is None or elapsed_ms <= budget_ms:
            return plan
        self.stats.overruns += 1
        if shifted is None or plan.iterations > 1:
            return plan
        self.stats.fallbacks += 1
        return self._fallback_plan(shifted, {"late_plan_ms": elapsed_ms})

    def _diverged(
        self, error: ModelDivergedError, shifted: torch.Tensor | None, started: float
    ) -> Plan:
        """The previous plan shifted in time, or the safe plan, in place of a diverged one."""
        self.stats.replans += 1
        self.stats.diverged += 1
        self.stats.last_plan_ms = (time.perf_counter() - started) * 1000
        info = {"diverged": str(error)}
        if shifted is None:
            actions = self.safe_action().expand(self.planner.horizon, -1).clone()
            plan = Plan(actions=actions, expected_return=math.nan, fallback=True, info=info)
            played = "the safe plan"
        else:
            plan, played = self._fallback_plan(shifted, info), "the previous plan shifted in time"
        if self.stats.diverged == 1:  # once an episode: the count keeps the rest
            log.warning("%s; playing %s (MPC.stats.diverged counts these)", error, played)
        return plan

    def _fallback_plan(self, shifted: torch.Tensor, info: dict[str, Any]) -> Plan:
        """The previous plan shifted in time, with its feedback gains and planned states
        shifted alike where it has them, so that an iLQR plan is still played in closed
        loop (open loop, a dropped replan in the middle of a balance was enough to lose it)."""
        assert self.last_plan is not None
        played = self._steps_since_plan // self.config.plan_step
        gains, states = self.last_plan.feedback_gains, self.last_plan.planned_states
        return Plan(actions=shifted, expected_return=math.nan, fallback=True, info=info,
                    feedback_gains=None if gains is None else _shift(gains, played),
                    planned_states=None if states is None else _shift(states, played))

    def _shifted_plan(self) -> torch.Tensor | None:
        """The stored plan moved forward by the whole plan steps played, its last action
        repeated."""
        if self.last_plan is None:
            return None
        return _shift(self.last_plan.actions, self._steps_since_plan // self.config.plan_step)


def _shift(sequence: torch.Tensor, played: int) -> torch.Tensor:
    """`sequence` `[T, ...]` moved forward by `played` steps, its last entry repeated."""
    tail = sequence[-1:].expand(played, *sequence.shape[1:])
    return torch.cat([sequence[played:], tail])

