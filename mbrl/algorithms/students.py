"""What the distillation algorithms share: teachers, labelled data, mixed agents, safety.

A teacher is a `Controller` (MPC over any registered planner, on the true simulator or a
learned model) and the view it acts on (the env's exact state for a planner on the simulator,
the observation for a learned model). Every state the student's training visits is labelled
with the teacher's action there (a *query*), and the labels aggregate in `LabelledData`.
`LabellingAgent` is what `mbrl.control.episodes.rollout` drives: at each step it asks the
labelling teacher, then plays the teacher's action (with probability beta, DAgger's mixture),
an acting controller's (PLATO's adaptive teacher) or the student's.

Safety violations are counted per task where one is defined (`SAFETY`): for the cart-pole,
the cart leaving the middle of its rail (|x| > 1.8 m of the 2.5 m slider range) or the pole
falling below the horizontal after it was balanced; each entry into violation is one event.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from controllers import Controller
from controllers.policy import NeuralPolicy
from mbrl.control.episodes import Env, Step, Trajectory, rollout
from mbrl.learning.policy_training import PolicyFitReport

Array = NDArray[np.float64]


@dataclass
class Teacher:
    """A controller that labels states, and what it acts on."""

    #: The controller (an `MPC`); its `act` is one query.
    controller: Controller
    #: What the controller is given, from the observation `[do]` (the env's exact state, or
    #: the observation as a float32 tensor).
    view: Callable[[Array], Any]
    #: Builds the controller anew at each episode's start (a planner on the simulator whose
    #: physics each episode draws: it plans with the drawn physics); None: reset it.
    rebuild: Callable[[], Controller] | None = None

    def label(self, obs: Array) -> Array:
        """The teacher's action `[du]` at the state whose observation is `obs`."""
        action = self.controller.act(self.view(obs))
        if isinstance(action, torch.Tensor):
            return action.detach().cpu().double().numpy()
        return np.asarray(action, dtype=np.float64)

    def reset(self) -> None:
        """Start a new episode."""
        if self.rebuild is not None:
            self.controller = self.rebuild()
        self.controller.reset()


@dataclass
class LabelledData:
    """Aggregated states and labels: observations `[N, do]`, teacher actions `[N, du]`, and
    where the algorithm weighs them, precisions `[N, du, du]`."""

    obs_dim: int
    act_dim: int
    observations: list[Array] = field(default_factory=list)
    labels: list[Array] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    def add(self, observations: list[Array], labels: list[Array]) -> None:
        """Aggregate one episode's labelled states."""
        self.observations.extend(observations)
        self.labels.extend(labels)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """`(obs [N, do], labels [N, du])`, float32."""
        obs = np.asarray(self.observations, dtype=np.float64).reshape(-1, self.obs_dim)
        labels = np.asarray(self.labels, dtype=np.float64).reshape(-1, self.act_dim)
        return torch.from_numpy(obs).float(), torch.from_numpy(labels).float()

    def save(self, path: Path) -> None:
        """Write the data to `path` (`.npz`, no pickles)."""
        obs, labels = self.tensors()
        with path.open("wb") as handle:
            np.savez(handle, observations=obs.double().numpy(), labels=labels.double().numpy())

    @classmethod
    def load(cls, path: Path, obs_dim: int, act_dim: int) -> LabelledData:
        """The data `save` wrote.

        Raises:
            ValueError: naming the file, if it is not such data or of other dimensions.
        """
        try:
            with np.load(path, allow_pickle=False) as saved:
                obs, labels = saved["observations"], saved["labels"]
        except (OSError, KeyError, ValueError) as error:
            raise ValueError(f"{path} is not labelled data: {error}") from None
        if obs.shape[1:] != (obs_dim,) or labels.shape != (obs.shape[0], act_dim):
            raise ValueError(f"{path} holds observations {list(obs.shape)} and labels "
                             f"{list(labels.shape)}, not [N, {obs_dim}] and [N, {act_dim}]")
        return cls(obs_dim, act_dim, list(obs), list(labels))


class LabellingAgent:
    """Labels every state with `teacher`'s action and plays, at each step, the teacher's action
    with probability `beta`, else `actor`'s (None: the student's mean)."""

    def __init__(self, teacher: Teacher, student: NeuralPolicy, beta: float,
                 rng: np.random.Generator, actor: Teacher | None = None) -> None:
        self.teacher, self.student, self.beta, self.rng = teacher, student, beta, rng
        self.actor = actor
        self.observations: list[Array] = []
        self.labels: list[Array] = []
        #: Queries of the teacher (labels) and of the acting controller.
        self.queries = 0
        self.actor_queries = 0

    def reset(self) -> None:
        """Start a new episode (the labels gathered so far are kept)."""
        self.teacher.reset()
        if self.actor is not None:
            self.actor.reset()

    def act(self, obs: Array) -> Array | torch.Tensor:
        """Label `obs` and return the action to play `[du]`."""
        label = self.teacher.label(obs)
        self.queries += 1
        self.observations.append(np.array(obs, dtype=np.float64))
        self.labels.append(label)
        # beta = 1 and beta = 0 draw nothing, so behaviour cloning and pure DAgger iterations
        # leave the generator as they found it.
        if self.beta >= 1 or (self.beta > 0 and self.rng.random() < self.beta):
            return label
        if self.actor is not None:
            self.actor_queries += 1
            return self.actor.label(obs)
        return self.student.act(obs)


# --------------------------------------------------------------------------- safety


@dataclass
class SafetyMonitor:
    """Counts a task's safety violations over the steps it is shown (see the module
    docstring); `on_step` is `rollout`'s hook."""

    #: The events: entries into an unsafe state.
    violations: int = 0
    cart_limit: float = 1.8
    _unsafe: bool = False
    _balanced: bool = False
    _fallen: bool = False

    def reset(self) -> None:
        """A new episode: nothing balanced yet (the count is kept)."""
        self._unsafe = self._balanced = self._fallen = False

    def on_step(self, step: Step) -> None:
        """Look at the state the step reached."""
        x, cos = float(step.next_obs[0]), float(step.next_obs[1])
        unsafe = abs(x) > self.cart_limit
        if unsafe and not self._unsafe:
            self.violations += 1
        self._unsafe = unsafe
        if cos > 0.95:
            self._balanced, self._fallen = True, False
        elif self._balanced and cos < 0.0 and not self._fallen:
            self.violations += 1
            self._fallen = True


#: The tasks whose safety is defined: the cart-pole of every backend (obs `[x, cos, sin, v,
#: w]`).
SAFETY: dict[str, Callable[[], SafetyMonitor]] = {
    env_id: SafetyMonitor for env_id in ("mujoco/cartpole-swingup", "dmc/cartpole-swingup",
                                         "pybullet/cartpole-swingup")
}


def episode(env: Env, agent: Any, seed: int, safety: SafetyMonitor | None) -> Trajectory:
    """One episode of `agent` through the episode loop, its violations counted."""
    if safety is not None:
        safety.reset()
    return rollout(env, agent, seed=seed, on_step=None if safety is None else safety.on_step)


def run_episodes(env: Env, agent: Any, episodes: int, progress: DistillProgress,
                 monitor: SafetyMonitor | None) -> list[float]:
    """`episodes` episodes of `agent` from seeds drawn from the run's generator; their
    returns."""
    return [episode(env, agent, int(progress.rng.integers(2**31)), monitor).episode_return
            for _ in range(episodes)]


def iteration_metrics(progress: DistillProgress, agent: LabellingAgent,
                      monitor: SafetyMonitor | None, returns: list[float],
                      report: PolicyFitReport, student_return: float) -> dict[str, float]:
    """The metrics every labelling iteration reports: the data's and the student's return,
    the teacher's, the queries and violations so far, the fit."""
    return {
        "data_return": float(np.mean(returns)),
        "student_return": student_return,
        "teacher_return": progress.teacher_return,
        "teacher_queries": progress.queries_so_far() + agent.queries,
        "violations": progress.violations_so_far() + (monitor.violations if monitor else 0),
        "samples": report.samples,
        "train_loss": report.train_loss,
        "holdout_loss": report.holdout_loss,
    }


def beta_at(iteration: int, schedule: str, p: float) -> float:
    """DAgger's mixing weight beta_i of the teacher at iteration `iteration` (from 0): "once"
    is 1 at the first iteration and 0 after (Ross et al.'s choice in practice); "geometric"
    is `p ** i` (their `beta_i = p^(i-1)` counting from 1); "always" is 1 (behaviour
    cloning)."""
    if schedule == "always":
        return 1.0
    if schedule == "once":
        return 1.0 if iteration == 0 else 0.0
    if schedule == "geometric":
        return float(p**iteration)
    raise ValueError(f"unknown beta schedule {schedule!r}")


def evaluate_policy(env: Env, student: NeuralPolicy, seeds: list[int]) -> float:
    """The student's mean return over episodes from `seeds` (its mean actions)."""
    if not seeds:
        return math.nan
    return float(np.mean([rollout(env, student, seed=s).episode_return for s in seeds]))


@dataclass
class DistillProgress:
    """What the iterations so far leave for the next: the labelled data, one metrics row per
    iteration, and the random generators (a checkpoint keeps all of it)."""

    data: LabelledData
    rows: list[dict[str, float]]
    #: Seeds of episodes and teachers, and DAgger's mixing draws.
    rng: np.random.Generator
    #: The student's fitting (minibatch order).
    generator: torch.Generator
    #: The teacher's own mean return on the evaluation episodes (NaN until measured).
    teacher_return: float = math.nan
    #: An algorithm's own state between iterations, as arrays (MDGPS's local controllers).
    extra: dict[str, Any] = field(default_factory=dict)

    def queries_so_far(self) -> int:
        """Teacher queries of the iterations done."""
        return int(self.rows[-1]["teacher_queries"]) if self.rows else 0

    def violations_so_far(self) -> int:
        """Safety violations during training so far."""
        return int(self.rows[-1]["violations"]) if self.rows else 0
