"""Model predictive path integral control (MPPI) over open-loop action sequences.

Williams et al. (2017), "Information theoretic MPC for model-based reinforcement learning".
The nominal sequence is perturbed by Gaussian noise, every perturbed sequence is rolled out, and
the nominal becomes their average weighted by `softmax(return / lambda)`. As in PDDM (Nagabandi
et al. 2019) and mbrl-lib, the weights use the returns alone, without the paper's control-cost
term. The warm start is the previous plan shifted in time, which `MPC` passes in; the planner
itself keeps nothing between calls. Shapes: `H` horizon, `N` population, `du` action dimension.

One call of `plan`:

    mean <- warm start (or mid-range)
    for each iteration (at least one; stop before one that would end past the deadline):
        N samples clamp(mean + noise_std * range * white noise)
        weights <- softmax(returns / lambda) (returns over their spread if normalised);
            a diverged rollout (-inf) weighs exactly 0
        if every rollout diverged: raise on the first iteration, else stop with the mean
        mean <- sum of weights * samples (inside the bounds: a convex combination)
    return the mean
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from controllers.protocols import Dynamics, Plan, SequenceDynamics, sequence_returns
from controllers.sampling import (
    SamplingPlanner,
    diverged,
    initial_mean,
    next_iteration_ends_late,
)
from controllers.validation import check_types, checked_state, require, require_positive


@dataclass(frozen=True)
class MPPIConfig:
    """Settings of `MPPI`."""

    #: Planning horizon H, in control steps.
    horizon: int = 25
    #: Action sequences sampled per iteration, N.
    population: int = 400
    #: Weighted-average updates per call of `plan`.
    iterations: int = 1
    #: Temperature lambda of the weights softmax(return / lambda), in units of return (or, with
    #: `normalize_returns`, of the iteration's spread of returns).
    temperature: float = 1.0
    #: Divide the returns by their spread (best minus worst finite return) before the softmax,
    #: so that `temperature` means the same on any task's reward scale.
    normalize_returns: bool = False
    #: Standard deviation of the perturbations, as a fraction of each action's range.
    noise_std: float = 0.3

    def __post_init__(self) -> None:
        check_types(self)
        require_positive(self, "horizon", "population", "iterations")
        require(self, "temperature", self.temperature > 0.0, "must be > 0")
        require(self, "noise_std", self.noise_std > 0.0, "must be > 0")


def path_integral_weights(
    returns: torch.Tensor, temperature: float, normalize: bool = False
) -> torch.Tensor | None:
    """Weights `[N]` = softmax(`returns` `[N]` / `temperature`), or `None` if all are -inf;
    with `normalize`, the returns are first divided by their spread (largest minus smallest
    finite return; equal returns weigh equally).

    The softmax subtracts the largest return before exponentiating, so no return overflows; a
    `-inf` return (a diverged rollout) gets weight exactly 0.
    """
    best = float(returns.max())
    if not math.isfinite(best):
        return None
    if normalize:
        finite = returns[torch.isfinite(returns)]
        spread = best - float(finite.min())
        if spread > 0.0:
            returns = returns / spread
    return torch.softmax(returns / temperature, dim=0)


class MPPI(SamplingPlanner):
    """MPPI over open-loop action sequences, actions kept inside bounds.

    Args:
        dynamics: what the sequences are scored on.
        action_low, action_high: bounds `[du]`.
        config: see `MPPIConfig`.
        generator: the source of randomness; a fixed seed gives a fixed plan.
        dtype: of the sampled actions and the plan; None: the dynamics' own `dtype` where
            they state one (a learned model's float32), else float64.
    """

    def __init__(
        self,
        dynamics: Dynamics | SequenceDynamics,
        action_low: torch.Tensor,
        action_high: torch.Tensor,
        config: MPPIConfig = MPPIConfig(),
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(dynamics, action_low, action_high, config.horizon, generator, dtype)
        self.config = config

    def reset(self) -> None:
        """MPPI keeps nothing between calls; warm starts come in through `plan`."""

    def plan(
        self,
        state: torch.Tensor,
        warm_start: torch.Tensor | None = None,
        *,
        deadline: float | None = None,
    ) -> Plan:
        """Plan `[H, du]` actions from `state` `[dx]`, from `warm_start` `[H, du]` if given.

        With a `deadline` (a `time.perf_counter()` time, seconds), iterations stop before one
        that, as long as the slowest so far, would end past it; the first always runs. If every
        rollout of a later iteration diverges, the mean of the iterations before is returned
        and `info["diverged_iteration"]` is set.

        Raises:
            ModelDivergedError: if every rollout of the first iteration diverges.
        """
        cfg = self.config
        state = checked_state(state, dim=getattr(self.dynamics, "state_dim", None))
        mean = initial_mean(self.action_low, self.action_high, cfg.horizon, warm_start)
        std = cfg.noise_std * (self.action_high - self.action_low)
        expected, effective_samples, diverged_iteration, done = -torch.inf, 0.0, False, 0
        slowest_s = 0.0
        for _ in range(cfg.iterations):
            started = time.perf_counter()
            noise = torch.randn(
                (cfg.population, *mean.shape), generator=self.generator, dtype=mean.dtype
            )
            samples = torch.addcmul(mean, std, noise).clamp_(self.action_low, self.action_high)
            returns = sequence_returns(self.dynamics, state, samples)
            done += 1
            weights = path_integral_weights(returns, cfg.temperature, cfg.normalize_returns)
            if weights is None:
                if done == 1:
                    raise diverged("MPPI", cfg.population)
                diverged_iteration = True
                break
            mean = torch.tensordot(weights, samples, dims=1)
            # Only diverged rollouts (-inf) weigh 0; a 0 stands for them in the expectation.
            expected = float(weights @ torch.nan_to_num(returns, neginf=0.0))
            effective_samples = 1.0 / float(weights @ weights)
            slowest_s = max(slowest_s, time.perf_counter() - started)
            if next_iteration_ends_late(deadline, slowest_s):
                break
        return Plan(
            # A convex combination of in-bound samples is in bounds up to rounding: clamp it.
            actions=mean.clamp(self.action_low, self.action_high),
            expected_return=expected,
            iterations=done,
            info={
                "stopped_early": done < cfg.iterations and not diverged_iteration,
                "diverged_iteration": diverged_iteration,
                "effective_samples": effective_samples,
            },
        )
