"""Model-predictive control: plan over a horizon, act, replan (receding horizon).

Mayne et al. (2000), "Constrained model predictive control: Stability and optimality".
Between replans the controller plays the stored plan; each replan is warm-started with the
previous plan shifted by the steps already played.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from controllers.protocols import Plan, Planner


@dataclass(frozen=True)
class MPCConfig:
    """Settings of `MPC`."""

    #: Replan every this many steps, playing the stored plan in between.
    replan_every: int = 1
    #: Start each replan from the previous plan shifted in time.
    warm_start: bool = True

    def __post_init__(self) -> None:
        if self.replan_every < 1:
            raise ValueError(f"replan_every must be >= 1, got {self.replan_every}")


class MPC:
    """A `Controller` that runs `planner` in a receding horizon.

    `act(obs)` takes whatever state the planner's dynamics consume: an observation for a
    learned model, `env.get_state()` for the true simulator.
    """

    def __init__(self, planner: Planner, config: MPCConfig = MPCConfig()) -> None:
        if config.replan_every > planner.horizon:
            raise ValueError(
                f"replan_every ({config.replan_every}) exceeds the horizon ({planner.horizon})"
            )
        self.planner = planner
        self.config = config
        self.last_plan: Plan | None = None
        self._steps_since_plan = 0

    def reset(self) -> None:
        """Forget the stored plan, and the planner's own memory, before a new episode."""
        self.planner.reset()
        self.last_plan = None
        self._steps_since_plan = 0

    def act(self, obs: Any) -> torch.Tensor:
        """The next action `[du]` from the state `obs` `[dx]`."""
        if self.last_plan is None or self._steps_since_plan >= self.config.replan_every:
            warm = self._shifted_plan() if self.config.warm_start else None
            state = torch.as_tensor(obs, dtype=torch.float64)
            self.last_plan = self.planner.plan(state, warm_start=warm)
            self._steps_since_plan = 0
        action = self.last_plan.actions[self._steps_since_plan]
        self._steps_since_plan += 1
        return action

    def _shifted_plan(self) -> torch.Tensor | None:
        """The stored plan moved forward by the steps played, its last action repeated."""
        if self.last_plan is None:
            return None
        played = self._steps_since_plan
        actions = self.last_plan.actions
        tail = actions[-1:].expand(played, -1)
        return torch.cat([actions[played:], tail])
