"""Analytic models for the planner tests: a point mass, and variants that record, blow up or
take their time.

The point mass is x' = x + u with reward -||x' - goal||^2: its optimal plans are known by hand.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

F64 = torch.float64
LOW, HIGH = -torch.ones(2, dtype=F64), torch.ones(2, dtype=F64)
ORIGIN = torch.zeros(2, dtype=F64)


class PointMass:
    """x' = x + u: a point that should reach `goal`; reward -||x' - goal||^2."""

    def __init__(self, goal: torch.Tensor) -> None:
        self.goal = goal

    def step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return state + action

    def reward(
        self, state: torch.Tensor, action: torch.Tensor, next_state: torch.Tensor
    ) -> torch.Tensor:
        return -((next_state - self.goal) ** 2).sum(-1)


class RecordingPointMass(PointMass):
    """The point mass as `SequenceDynamics`: one call per planner iteration, all of them kept.

    Each call sleeps `sleep_s`, or, given a sequence, its i-th entry on the i-th call (cycled).
    `batches[i]` is the `[N, H, du]` batch of the i-th call, `starts[i]` its
    `time.perf_counter()` time and `seconds[i]` how long it took.
    """

    def __init__(self, goal: torch.Tensor, sleep_s: float | Sequence[float] = 0.0) -> None:
        super().__init__(goal)
        self.sleeps = [sleep_s] if isinstance(sleep_s, float | int) else list(sleep_s)
        self.batches: list[torch.Tensor] = []
        self.starts: list[float] = []
        self.seconds: list[float] = []

    def sequence_returns(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        started = time.perf_counter()
        self.starts.append(started)
        sleep_s = self.sleeps[len(self.batches) % len(self.sleeps)]
        self.batches.append(actions.clone())
        if sleep_s > 0:
            time.sleep(sleep_s)
        positions = state + actions.cumsum(dim=1)  # [N, H, dx]
        returns = -((positions - self.goal) ** 2).sum(dim=(1, 2))
        self.seconds.append(time.perf_counter() - started)
        return returns


class DivergesOnTheRight(PointMass):
    """The same point, but a step to x > 0.5 blows up (NaN): such plans must rank last."""

    def step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        nxt = state + action
        return torch.where(nxt[:, :1] > 0.5, torch.full_like(nxt, torch.nan), nxt)


class AlwaysDiverges(PointMass):
    """Every rollout blows up: +inf on odd samples, NaN on even ones."""

    def step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        index = torch.arange(state.shape[0])[:, None]
        return torch.where(index % 2 == 1, torch.inf, torch.nan).to(state.dtype).expand_as(state)


def rollout_return(goal: torch.Tensor, actions: torch.Tensor) -> float:
    """The point mass's return of one plan `[H, du]` from the origin."""
    positions = actions.cumsum(dim=0)
    return float(-((positions - goal) ** 2).sum())


def shifted(actions: torch.Tensor, steps: int = 1) -> torch.Tensor:
    """`actions` `[H, du]` moved forward by `steps`, the last repeated (as `MPC` does)."""
    return torch.cat([actions[steps:], actions[-1:].expand(steps, -1)])


class FakeClock:
    """A stand-in for `time.perf_counter` that moves only when told: timing tests without
    timing noise."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TimedPointMass(RecordingPointMass):
    """The recording point mass whose i-th call takes `durations_s[i]` (cycled) on `clock`."""

    def __init__(
        self, goal: torch.Tensor, clock: FakeClock, durations_s: Sequence[float]
    ) -> None:
        super().__init__(goal)
        self.clock = clock
        self.durations_s = list(durations_s)

    def sequence_returns(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        self.clock.now += self.durations_s[len(self.batches) % len(self.durations_s)]
        return super().sequence_returns(state, actions)
