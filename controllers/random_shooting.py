"""Random shooting: the best of uniformly sampled open-loop action sequences.

Used as an MPC planner on a learned model by Nagabandi et al. (2018), "Neural Network Dynamics
for Model-Based Deep Reinforcement Learning with Model-Free Fine-Tuning". Shapes: `H` horizon,
`N` population, `du` action dimension.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from controllers.protocols import Dynamics, Plan, SequenceDynamics, sequence_returns
from controllers.sampling import (
    SamplingPlanner,
    diverged,
    initial_mean,
)
from controllers.validation import check_types, checked_state, require_positive


@dataclass(frozen=True)
class RandomShootingConfig:
    """Settings of `RandomShooting`."""

    #: Planning horizon H, in control steps.
    horizon: int = 25
    #: Action sequences sampled, N (the warm start, if any, replaces one of them).
    population: int = 1000

    def __post_init__(self) -> None:
        check_types(self)
        require_positive(self, "horizon", "population")


class RandomShooting(SamplingPlanner):
    """The best of `N` sequences sampled uniformly inside the bounds, the warm start among them.

    Args:
        dynamics: what the sequences are scored on.
        action_low, action_high: bounds `[du]`.
        config: see `RandomShootingConfig`.
        generator: the source of randomness; a fixed seed gives a fixed plan.
        dtype: of the sampled actions and the plan; None: the dynamics' own `dtype` where
            they state one (a learned model's float32), else float64.
    """

    def __init__(
        self,
        dynamics: Dynamics | SequenceDynamics,
        action_low: torch.Tensor,
        action_high: torch.Tensor,
        config: RandomShootingConfig = RandomShootingConfig(),
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(dynamics, action_low, action_high, config.horizon, generator, dtype)
        self.config = config

    def reset(self) -> None:
        """Random shooting keeps nothing between calls."""

    def plan(
        self,
        state: torch.Tensor,
        warm_start: torch.Tensor | None = None,
        *,
        deadline: float | None = None,
    ) -> Plan:
        """Plan `[H, du]` actions from `state` `[dx]`; `warm_start` `[H, du]` is one candidate.

        Sampling is one batch, so a `deadline` cannot shorten it: it is accepted and ignored.

        Raises:
            ModelDivergedError: if every rollout diverges.
        """
        cfg = self.config
        state = checked_state(state, dim=getattr(self.dynamics, "state_dim", None))
        start = initial_mean(self.action_low, self.action_high, cfg.horizon, warm_start)
        unit = torch.rand(
            (cfg.population, *start.shape), generator=self.generator, dtype=start.dtype
        )
        samples = self.action_low + (self.action_high - self.action_low) * unit
        if warm_start is not None:
            samples[0] = start
        returns = sequence_returns(self.dynamics, state, samples)
        best_return, best = torch.max(returns, dim=0)
        if not bool(torch.isfinite(best_return)):
            raise diverged("random shooting", cfg.population)
        return Plan(actions=samples[best], expected_return=float(best_return))
