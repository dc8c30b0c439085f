"""DAgger (and behaviour cloning): the student acts, the teacher labels every state it visits.

Ross, Gordon & Bagnell (2011), "A Reduction of Imitation Learning and Structured Prediction
to No-Regret Online Learning", Algorithm 3.1. Behaviour cloning is the same loop with the
teacher always acting (beta = 1): the data are the teacher's own states only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from controllers.policy import NeuralPolicy
from controllers.validation import check_types, require, require_positive
from mbrl.algorithms.students import (
    DistillProgress,
    LabellingAgent,
    SafetyMonitor,
    Teacher,
    beta_at,
    iteration_metrics,
    run_episodes,
)
from mbrl.control.episodes import Env
from mbrl.learning.policy_training import PolicyTrainConfig, fit_policy

#: beta schedules: "once" (1, then 0), "geometric" (p^(i-1)), "always" (behaviour cloning).
BETA_SCHEDULES = ("once", "geometric", "always")


@dataclass(frozen=True)
class DAggerConfig:
    """Settings of `dagger`."""

    #: Iterations N (each: episodes, labels, one refit).
    iterations: int = 10
    #: Episodes the mixed policy runs per iteration.
    episodes_per_iteration: int = 1
    #: How beta_i, the teacher's share of the mixture, falls: "once", "geometric", "always".
    beta_schedule: str = "once"
    #: p of the geometric schedule, in [0, 1].
    beta_p: float = 0.5

    def __post_init__(self) -> None:
        check_types(self)
        require_positive(self, "iterations", "episodes_per_iteration")
        require(self, "beta_schedule", self.beta_schedule in BETA_SCHEDULES,
                f"must be one of {list(BETA_SCHEDULES)}")
        require(self, "beta_p", 0.0 <= self.beta_p <= 1.0, "must be in [0, 1]")


def dagger(
    env: Env,
    make_teacher: Callable[[int], Teacher],
    student: NeuralPolicy,
    config: DAggerConfig,
    fit: PolicyTrainConfig,
    progress: DistillProgress,
    evaluate: Callable[[NeuralPolicy], float],
    safety: Callable[[], SafetyMonitor | None] = lambda: None,
    on_iteration: Callable[[DistillProgress], object] = lambda _: None,
) -> list[dict[str, float]]:
    """Run DAgger from `progress` (the iterations done) to `config.iterations`; return the
    metrics rows. Ross et al. (2011), Algorithm 3.1:

        D <- {}
        for i = 1 .. N:
            pi_i = beta_i pi* + (1 - beta_i) pi_hat_i        (per step, by a coin with beta_i)
            run pi_i; at every visited state s ask the teacher: D_i = {(s, pi*(s))}
            D <- D u D_i
            pi_hat_{i+1} <- the student fitted to D

    `make_teacher(seed)` builds the teacher (a fresh MPC) for one iteration; `evaluate` is the
    student's return on the evaluation episodes; `safety()` a monitor of the task's
    violations; `on_iteration` is called after each iteration (it commits a checkpoint).
    """
    for i in range(len(progress.rows), config.iterations):
        beta = beta_at(i, config.beta_schedule, config.beta_p)
        teacher = make_teacher(int(progress.rng.integers(2**31)))
        agent = LabellingAgent(teacher, student, beta, progress.rng)
        monitor = safety()
        returns = run_episodes(env, agent, config.episodes_per_iteration, progress, monitor)
        progress.data.add(agent.observations, agent.labels)
        report = fit_policy(student, *progress.data.tensors(), fit, progress.generator)
        progress.rows.append({
            "iteration": i, "beta": beta,
            **iteration_metrics(progress, agent, monitor, returns, report, evaluate(student)),
        })
        on_iteration(progress)
    return progress.rows
