"""PLATO: an adaptive MPC teacher that stays near the student, and labels from the plain one.

Kahn, Zhang, Levine & Abbeel (2017), "PLATO: Policy Learning using Adaptive Trajectory
Optimization", Algorithm 1. The states are visited by an MPC whose objective adds
`lambda * KL(pi || pi_student)` (`controllers.policy_penalty.PolicyPull`), so the data come
from near the student's own state distribution while a planner, not the untrained student,
keeps the robot safe; the student learns the unpenalised teacher's actions at those states.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from controllers.policy import NeuralPolicy
from controllers.policy_penalty import PolicyPull
from controllers.validation import check_types, require, require_positive
from mbrl.algorithms.students import (
    DistillProgress,
    LabellingAgent,
    SafetyMonitor,
    Teacher,
    iteration_metrics,
    run_episodes,
)
from mbrl.control.episodes import Env
from mbrl.learning.policy_training import PolicyTrainConfig, fit_policy


@dataclass(frozen=True)
class PLATOConfig:
    """Settings of `plato`."""

    #: Iterations N (each: episodes, labels, one refit).
    iterations: int = 10
    #: Episodes the adaptive teacher runs per iteration.
    episodes_per_iteration: int = 1
    #: lambda, the weight of the KL to the student in the adaptive teacher's objective (0:
    #: the plain teacher acts, as in behaviour cloning).
    kl_weight: float = 1.0

    def __post_init__(self) -> None:
        check_types(self)
        require_positive(self, "iterations", "episodes_per_iteration")
        require(self, "kl_weight", self.kl_weight >= 0, "must be >= 0")


def student_pull(student: NeuralPolicy, weight: float) -> PolicyPull:
    """lambda KL(. || student) for Gaussian actions of the student's covariance: the
    student's mean, pulled toward with its precision `diag(1 / std^2)`."""
    precision = torch.diag(student.std().detach().double() ** -2)
    return PolicyPull(student.mean_action, precision, weight)


def plato(
    env: Env,
    make_teacher: Callable[[int], Teacher],
    make_adaptive_teacher: Callable[[int, PolicyPull], Teacher],
    student: NeuralPolicy,
    config: PLATOConfig,
    fit: PolicyTrainConfig,
    progress: DistillProgress,
    evaluate: Callable[[NeuralPolicy], float],
    safety: Callable[[], SafetyMonitor | None] = lambda: None,
    on_iteration: Callable[[DistillProgress], object] = lambda _: None,
) -> list[dict[str, float]]:
    """Run PLATO from `progress` to `config.iterations`; return the metrics rows. Kahn et
    al. (2017), Algorithm 1:

        for i = 1 .. N:
            for each step t:
                act    u_t = argmin_pi  E[cost] + lambda KL(pi(.|x_t) || pi_theta(.|o_t))
                label  u*_t = pi*(x_t), the unpenalised MPC
            D <- D u {(o_t, u*_t)}
            theta <- the student fitted to D

    `make_teacher(seed)` builds the plain MPC, `make_adaptive_teacher(seed, pull)` the
    penalised one (the pull reads the student's current weights at each query).
    """
    for i in range(len(progress.rows), config.iterations):
        pull = student_pull(student, config.kl_weight)
        teacher = make_teacher(int(progress.rng.integers(2**31)))
        adaptive = make_adaptive_teacher(int(progress.rng.integers(2**31)), pull)
        agent = LabellingAgent(teacher, student, beta=0.0, rng=progress.rng, actor=adaptive)
        monitor = safety()
        returns = run_episodes(env, agent, config.episodes_per_iteration, progress, monitor)
        progress.data.add(agent.observations, agent.labels)
        report = fit_policy(student, *progress.data.tensors(), fit, progress.generator)
        progress.rows.append({
            "iteration": i, "kl_weight": config.kl_weight,
            **iteration_metrics(progress, agent, monitor, returns, report, evaluate(student)),
            "adaptive_queries": agent.actor_queries,
        })
        on_iteration(progress)
    return progress.rows
