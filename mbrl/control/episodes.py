"""The episode loop: one place where an agent acts in an env, and what the episode was.

Everything that runs episodes (PETS, logged data, the planner grid, MPC on the true
simulator, evaluation) calls `rollout`, which returns a typed `Trajectory`. What differs
between them is passed in, not copied: what the agent sees (`observe`: the observation, or a
privileged controller's exact simulator state), where transitions go (`buffer`), and what
happens after each step (`on_step`: a video frame, a log line, a controller's statistics).

Shapes: `T` steps, `do` observation and `du` action dimension.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from numpy.typing import NDArray

from controllers import MPC
from controllers.mpc import MPCStats
from mbrl.learning.data import ReplayBuffer


class Agent(Protocol):
    """What `rollout` drives: a `controllers.Controller` (MPC, a policy) or any object that
    maps what it observes to an action (numpy or torch)."""

    def reset(self) -> None:
        """Start a new episode."""
        ...

    def act(self, obs: Any) -> Any:
        """The action `[du]` for what `observe` gives."""
        ...


class Env(Protocol):
    """The part of an `envs.RobotEnv` the loop uses."""

    def reset(self, *, seed: int | None = None) -> tuple[NDArray[np.float64], dict[str, Any]]:
        ...

    def step(
        self, action: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], float, bool, bool, dict[str, Any]]:
        ...

    def check_action(self, action: Any) -> NDArray[np.float64]:
        ...


@dataclass(frozen=True)
class Step:
    """One transition, as `on_step` receives it."""

    #: Index of the step in the episode, from 0.
    index: int
    #: The observation the action was chosen at, `[do]`.
    obs: NDArray[np.float64]
    #: The action the env applied (inside its bounds), `[du]`.
    action: NDArray[np.float64]
    #: The step's reward.
    reward: float
    #: The observation after the step, `[do]`.
    next_obs: NDArray[np.float64]
    #: Milliseconds the agent took to choose the action.
    act_ms: float
    #: Whether the task ended the episode at this step.
    terminated: bool = False
    #: Whether the time limit ended it at this step.
    truncated: bool = False


@dataclass(frozen=True)
class Trajectory:
    """What one episode was."""

    #: Observations `[T+1, do]`, the reset's first.
    observations: NDArray[np.float64]
    #: The actions the env applied, `[T, du]`.
    actions: NDArray[np.float64]
    #: Rewards `[T]`.
    rewards: NDArray[np.float64]
    #: Milliseconds the agent took to choose each action, `[T]`.
    act_ms: NDArray[np.float64]
    #: Whether the task ended the episode (rather than the time limit or `max_steps`).
    terminated: bool
    #: Whether the time limit ended it.
    truncated: bool
    #: The seed the env was reset with.
    seed: int | None
    #: The agent's planning statistics at the episode's end (replans, overruns, fallbacks,
    #: diverged replans, the last replan's time), where it keeps them (`MPC.stats`).
    stats: MPCStats | None = None

    @property
    def steps(self) -> int:
        """T, the steps taken."""
        return int(self.rewards.shape[0])

    @property
    def episode_return(self) -> float:
        """The sum of the rewards, added in order (as a running total adds them)."""
        return float(sum(self.rewards.tolist()))


def rollout(
    env: Env,
    agent: Agent,
    seed: int | None,
    *,
    observe: Callable[[NDArray[np.float64]], Any] | None = None,
    buffer: ReplayBuffer | None = None,
    on_step: Callable[[Step], object] | None = None,
    max_steps: int | None = None,
) -> Trajectory:
    """Run one episode of `agent` in `env` from `env.reset(seed=seed)`.

    Args:
        observe: what the agent is given, from the observation (None: the observation
            itself); a privileged controller on the true simulator is given the env's exact
            state by `lambda obs: env.get_state()`.
        buffer: where to store every transition (with the action the env applied).
        on_step: called after every step with its `Step`.
        max_steps: stop after this many steps (None: when the env terminates or truncates).
    """
    obs, _ = env.reset(seed=seed)
    agent.reset()
    observations: list[NDArray[np.float64]] = [obs]
    actions: list[NDArray[np.float64]] = []
    rewards: list[float] = []
    act_ms: list[float] = []
    terminated = truncated = False
    while not (terminated or truncated) and (max_steps is None or len(rewards) < max_steps):
        started = time.perf_counter()
        action = agent.act(obs if observe is None else observe(obs))
        elapsed_ms = (time.perf_counter() - started) * 1e3
        if isinstance(action, torch.Tensor):
            action = action.numpy()
        applied = env.check_action(action)
        next_obs, reward, terminated, truncated, _ = env.step(applied)
        if buffer is not None:
            buffer.add(obs, applied, next_obs, reward, terminated, truncated)
        if on_step is not None:
            on_step(Step(len(rewards), obs, applied, float(reward), next_obs, elapsed_ms,
                         bool(terminated), bool(truncated)))
        observations.append(next_obs)
        actions.append(applied)
        rewards.append(float(reward))
        act_ms.append(elapsed_ms)
        obs = next_obs
    return Trajectory(
        observations=np.asarray(observations, dtype=np.float64),
        actions=np.asarray(actions, dtype=np.float64).reshape(len(actions), -1),
        rewards=np.asarray(rewards, dtype=np.float64),
        act_ms=np.asarray(act_ms, dtype=np.float64),
        terminated=bool(terminated),
        truncated=bool(truncated),
        seed=seed,
        stats=copy.copy(stats) if isinstance(stats := getattr(agent, "stats", None), MPCStats)
        else None,
    )


def record_replan_ms(controller: MPC, times: list[float]) -> Callable[[Step], None]:
    """An `on_step` hook that appends `controller`'s last replan time (ms) to `times` after
    every step (the time of the plan the step's action came from)."""
    return lambda _: times.append(controller.stats.last_plan_ms)


class RandomAgent:
    """Actions drawn uniformly inside `[low, high]` (`[du]` each) from `rng`."""

    def __init__(self, low: NDArray[Any], high: NDArray[Any], rng: np.random.Generator) -> None:
        self.low, self.high, self.rng = np.asarray(low), np.asarray(high), rng

    def reset(self) -> None:
        """Nothing to forget."""

    def act(self, obs: Any) -> NDArray[np.float64]:
        """A uniform action `[du]`; `obs` is ignored."""
        return self.rng.uniform(self.low, self.high)
