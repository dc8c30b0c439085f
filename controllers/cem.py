"""The cross-entropy method for planning action sequences.

Rubinstein (1999), "The cross-entropy method for combinatorial and continuous optimization";
used as an MPC planner by Chua et al. (2018), "Deep Reinforcement Learning in a Handful of
Trials using Probabilistic Dynamics Models" (PETS). Shapes: `H` horizon, `N` population,
`du` action dimension.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from controllers.protocols import Dynamics, Plan, SequenceDynamics, sequence_returns


@dataclass(frozen=True)
class CEMConfig:
    """Settings of `CEM`."""

    #: Planning horizon H, in control steps.
    horizon: int = 25
    #: Action sequences sampled per iteration, N.
    population: int = 400
    #: Best sequences that refit the sampling distribution.
    elites: int = 40
    #: Refits per call of `plan`.
    iterations: int = 5
    #: Weight of the previous distribution in each refit (0: none).
    momentum: float = 0.1
    #: Initial standard deviation, as a fraction of each action's range.
    initial_std: float = 0.5

    def __post_init__(self) -> None:
        if min(self.horizon, self.population, self.elites, self.iterations) < 1:
            raise ValueError(f"horizon, population, elites and iterations must be >= 1: {self}")
        if self.elites > self.population:
            raise ValueError(f"elites ({self.elites}) exceed population ({self.population})")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if not self.initial_std > 0.0:
            raise ValueError(f"initial_std must be > 0, got {self.initial_std}")


class CEM:
    """Cross-entropy method over open-loop action sequences, actions kept inside bounds.

    Args:
        dynamics: what the sequences are scored on.
        action_low, action_high: bounds `[du]`.
        config: see `CEMConfig`.
        generator: the source of randomness; a fixed seed gives a fixed plan.
    """

    def __init__(
        self,
        dynamics: Dynamics | SequenceDynamics,
        action_low: torch.Tensor,
        action_high: torch.Tensor,
        config: CEMConfig = CEMConfig(),
        generator: torch.Generator | None = None,
    ) -> None:
        self.dynamics = dynamics
        self.low = torch.as_tensor(action_low, dtype=torch.float64)
        self.high = torch.as_tensor(action_high, dtype=torch.float64)
        if self.low.shape != self.high.shape or self.low.ndim != 1:
            raise ValueError(
                f"action bounds must both be [du], got {self.low.shape}, {self.high.shape}"
            )
        if not bool((self.low < self.high).all()):
            raise ValueError(f"every action_low must be below action_high: {self.low}, {self.high}")
        self.config = config
        self.horizon = config.horizon
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)

    def reset(self) -> None:
        """CEM keeps nothing between calls; warm starts come in through `plan`."""

    def plan(self, state: torch.Tensor, warm_start: torch.Tensor | None = None) -> Plan:
        """Plan `[H, du]` actions from `state` `[dx]`, from `warm_start` `[H, du]` if given."""
        cfg = self.config
        shape = (cfg.horizon, self.low.shape[0])
        if warm_start is None:
            mean = ((self.low + self.high) / 2).expand(shape).clone()
        else:
            if warm_start.shape != shape:
                raise ValueError(
                    f"warm_start has shape {tuple(warm_start.shape)}, expected {shape}"
                )
            mean = warm_start.to(torch.float64).clamp(self.low, self.high)
        std = (cfg.initial_std * (self.high - self.low)).expand(shape).clone()
        best_actions, best_return = mean, -torch.inf
        for _ in range(cfg.iterations):
            noise = torch.randn(
                (cfg.population, *shape), generator=self.generator, dtype=torch.float64
            )
            samples = (mean + std * noise).clamp(self.low, self.high)
            returns = sequence_returns(self.dynamics, state, samples)
            elite_returns, elite_index = torch.topk(returns, cfg.elites)
            elites = samples[elite_index]
            mean = cfg.momentum * mean + (1 - cfg.momentum) * elites.mean(dim=0)
            std = cfg.momentum * std + (1 - cfg.momentum) * elites.std(dim=0, unbiased=False)
            if float(elite_returns[0]) > best_return:
                best_return, best_actions = float(elite_returns[0]), elites[0]
        return Plan(
            actions=best_actions,
            expected_return=best_return,
            info={"final_std": float(std.mean()), "iterations": cfg.iterations},
        )
