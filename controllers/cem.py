"""The cross-entropy method for planning action sequences, with the iCEM refinements.

Rubinstein (1999), "The cross-entropy method for combinatorial and continuous optimization";
used as an MPC planner by Chua et al. (2018), "Deep Reinforcement Learning in a Handful of
Trials using Probabilistic Dynamics Models" (PETS). The refinements of Pinneri et al. (2020),
"Sample-efficient Cross-Entropy Method for Real-time Planning" (iCEM), are options, all off by
default: colored noise, elites kept from one iteration (and one replan) to the next, a shrinking
population, and returning the mean. Shapes: `H` horizon, `N` population, `du` action
dimension, `K` elites.

One call of `plan`:

    mean, std <- warm start (or mid-range), initial_std * range
    for each iteration (at least one; stop before one that would end past the deadline):
        N_i fresh samples clamp(mean + std * noise), noise white or 1/f**beta along H
        add the kept elites: those of the last iteration, or, on the first iteration of a
            replan that continues the previous plan, the previous replan's shifted in time
        K elites <- the best by return (a diverged rollout ranks last)
        mean, std <- momentum-weighted refit to the elites
    return the best sample seen, or the final mean; if every rollout diverged, raise
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from controllers.protocols import Dynamics, Plan, SequenceDynamics, sequence_returns
from controllers.sampling import (
    SamplingPlanner,
    colored_noise,
    diverged,
    initial_mean,
    next_iteration_ends_late,
)
from controllers.validation import check_types, checked_state, require, require_positive


@dataclass(frozen=True)
class CEMConfig:
    """Settings of `CEM`."""

    #: Planning horizon H, in control steps.
    horizon: int = 25
    #: Action sequences sampled per iteration, N (the first iteration's, if it decays).
    population: int = 400
    #: Best sequences that refit the sampling distribution, K; None: the one rule used
    #: everywhere, a tenth of the population, at least one (`num_elites`).
    elites: int | None = None
    #: Refits per call of `plan`.
    iterations: int = 5
    #: Weight of the previous distribution in each refit (0: none).
    momentum: float = 0.1
    #: Initial standard deviation, as a fraction of each action's range.
    initial_std: float = 0.5
    #: Exponent of the noise's power spectrum 1/f**beta along H: 0 white, 2 to 3 as in iCEM.
    noise_beta: float = 0.0
    #: Fraction of the K elites added to the next iteration's samples, and the next replan's.
    keep_elites_fraction: float = 0.0
    #: iCEM's gamma: iteration i samples max(K, N / gamma**i) fresh sequences (1: no decay).
    population_decay: float = 1.0
    #: Return the final sampling mean instead of the best sample (better for stochastic models).
    return_mean: bool = False

    def __post_init__(self) -> None:
        check_types(self)
        require_positive(self, "horizon", "population", "iterations")
        require(self, "elites", self.elites is None or 1 <= self.elites <= self.population,
                f"must be in [1, population ({self.population})] or null")
        require(self, "momentum", 0.0 <= self.momentum < 1.0, "must be in [0, 1)")
        require(self, "initial_std", self.initial_std > 0.0, "must be > 0")
        require(self, "noise_beta", self.noise_beta >= 0.0, "must be >= 0")
        require(self, "keep_elites_fraction", 0.0 <= self.keep_elites_fraction <= 1.0,
                "must be in [0, 1]")
        require(self, "population_decay", self.population_decay >= 1.0, "must be >= 1")

    @property
    def num_elites(self) -> int:
        """K: `elites`, or a tenth of the population (at least one) when it is None, the
        ratio of PETS (Chua et al. 2018: 40 of 400) and of mbrl-lib's `elite_ratio`."""
        return self.elites if self.elites is not None else max(1, self.population // 10)

    @property
    def kept_elites(self) -> int:
        """Elites carried into the next iteration: `keep_elites_fraction * K`, rounded."""
        return round(self.keep_elites_fraction * self.num_elites)

    def population_at(self, iteration: int) -> int:
        """Fresh samples drawn at `iteration` (0-based): `max(K, N / gamma**iteration)`."""
        return max(self.num_elites, int(self.population / self.population_decay**iteration))


class CEM(SamplingPlanner):
    """Cross-entropy method over open-loop action sequences, actions kept inside bounds.

    The only thing kept between calls is, with `keep_elites_fraction > 0`, the last replan's
    kept elites and plan; they are used only when the next call's warm start is that plan
    shifted in time (as `MPC` passes it), and `reset()` forgets them.

    Args:
        dynamics: what the sequences are scored on.
        action_low, action_high: bounds `[du]`.
        config: see `CEMConfig`.
        generator: the source of randomness; a fixed seed gives a fixed plan.
        dtype: of the sampled actions and the plan; None: the dynamics' own `dtype` where
            they state one (a learned model's float32), else float64.
        proposal: `state [dx] -> [k, H, du]`, sequences joined to every iteration's samples
            (a policy's own actions, `controllers.policy_penalty.PolicyProposal`, as TD-MPC
            joins its policy's trajectories); None: samples only.
    """

    def __init__(
        self,
        dynamics: Dynamics | SequenceDynamics,
        action_low: torch.Tensor,
        action_high: torch.Tensor,
        config: CEMConfig = CEMConfig(),
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        proposal: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__(dynamics, action_low, action_high, config.horizon, generator, dtype)
        self.config = config
        self.proposal = proposal
        # (plan returned, its last iteration's kept elites [k, H, du]) of the previous call.
        self._previous: tuple[torch.Tensor, torch.Tensor] | None = None

    def reset(self) -> None:
        """Forget the previous replan's elites: a new episode shares nothing with the last."""
        self._previous = None

    def plan(
        self,
        state: torch.Tensor,
        warm_start: torch.Tensor | None = None,
        *,
        deadline: float | None = None,
    ) -> Plan:
        """Plan `[H, du]` actions from `state` `[dx]`, from `warm_start` `[H, du]` if given.

        With a `deadline` (a `time.perf_counter()` time, seconds), iterations stop before one
        that, as long as the slowest so far, would end past it; the first always runs.
        """
        cfg = self.config
        state = checked_state(state, dim=getattr(self.dynamics, "state_dim", None))
        mean = initial_mean(self.action_low, self.action_high, cfg.horizon, warm_start)
        std = (cfg.initial_std * (self.action_high - self.action_low)).expand_as(mean).clone()
        kept = self._previous_elites_shifted(warm_start)
        self._previous = None
        proposed = None
        if self.proposal is not None:
            proposed = self.proposal(state).to(mean.dtype).clamp(self.action_low,
                                                                 self.action_high)
        best_actions, best_return = mean, -torch.inf
        elite_returns = torch.full((1,), -torch.inf, dtype=mean.dtype)
        done, slowest_s = 0, 0.0
        for i in range(cfg.iterations):
            started = time.perf_counter()
            noise = colored_noise(
                (cfg.population_at(i), *mean.shape), cfg.noise_beta, self.generator, mean.dtype
            )
            samples = (mean + std * noise).clamp(self.action_low, self.action_high)
            if kept is not None:
                samples = torch.cat([samples, kept])
            if proposed is not None:
                samples = torch.cat([samples, proposed])
            returns = sequence_returns(self.dynamics, state, samples)
            elite_returns, elite_index = torch.topk(returns, cfg.num_elites)
            elites = samples[elite_index]
            mean = cfg.momentum * mean + (1 - cfg.momentum) * elites.mean(dim=0)
            std = cfg.momentum * std + (1 - cfg.momentum) * elites.std(dim=0, unbiased=False)
            if float(elite_returns[0]) > best_return:
                best_return, best_actions = float(elite_returns[0]), elites[0]
            kept = elites[: cfg.kept_elites] if cfg.kept_elites > 0 else None
            done += 1
            slowest_s = max(slowest_s, time.perf_counter() - started)
            if next_iteration_ends_late(deadline, slowest_s):
                break
        if best_return == -torch.inf:
            raise diverged("CEM", sum(cfg.population_at(i) for i in range(done)))
        if cfg.return_mean:
            # The mean itself is never rolled out: the final elites' mean return stands for it.
            finite = elite_returns[torch.isfinite(elite_returns)]
            actions = mean
            expected = float(finite.mean()) if finite.numel() > 0 else -torch.inf
        else:
            actions, expected = best_actions, best_return
        if kept is not None:
            self._previous = (actions, kept)
        return Plan(
            actions=actions,
            expected_return=expected,
            iterations=done,
            info={"final_std": float(std.mean()), "stopped_early": done < cfg.iterations},
        )

    def _previous_elites_shifted(self, warm_start: torch.Tensor | None) -> torch.Tensor | None:
        """The previous replan's kept elites `[k, H, du]`, moved forward as its plan was.

        Only when `warm_start` is the previous plan shifted by `s >= 1` steps (its first
        `H - s` actions equal the plan's last `H - s`); the elites are then shifted by the same
        `s`, their last action repeated. Anything else starts a new chain: `None`.
        """
        if warm_start is None or self._previous is None:
            return None
        previous, elites = self._previous
        horizon = previous.shape[0]
        warm = warm_start.to(previous.dtype)
        for shift in range(1, horizon):
            if torch.equal(warm[: horizon - shift], previous[shift:]):
                tail = elites[:, -1:].expand(-1, shift, -1)
                return torch.cat([elites[:, shift:], tail], dim=1)
        return None
