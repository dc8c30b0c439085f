"""Known answers of distillation on a linear system with a quadratic cost (trajax's habit):
the LQR gain is what DAgger's and MDGPS's linear students must find, and PLATO's penalised
teacher must slide from the LQR action to the student's as lambda grows."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from controllers.ilqr import ILQRConfig, ilqr
from controllers.policy import NeuralPolicy, PolicyConfig
from controllers.policy_penalty import PenalizedCost, PolicyPull
from mbrl.algorithms.dagger import DAggerConfig, dagger
from mbrl.algorithms.gps import GPSConfig, mdgps
from mbrl.algorithms.students import DistillProgress, LabelledData, Teacher, evaluate_policy
from mbrl.learning.policy_training import PolicyTrainConfig
from tests.mbrl.algorithms.linear_system import (
    HIGH,
    LOW,
    A,
    B,
    K,
    LinearSystem,
    LQRTeacher,
    costs,
    effective_gain,
)

FIT = PolicyTrainConfig(epochs=200, learning_rate=1e-2, holdout_fraction=0.0)


def _progress(seed: int = 0) -> DistillProgress:
    return DistillProgress(LabelledData(2, 1), [], np.random.default_rng(seed),
                           torch.Generator().manual_seed(seed))


def _linear_student(gaussian: bool) -> NeuralPolicy:
    return NeuralPolicy(2, 1, LOW, HIGH, PolicyConfig(hidden_sizes=(), gaussian=gaussian,
                                                      initial_std=0.01))


def test_dagger_linear_student_converges_to_the_lqr_gain() -> None:
    student = _linear_student(gaussian=False)
    rows = dagger(LinearSystem(30), lambda seed: Teacher(LQRTeacher(), lambda obs: obs),
                  student, DAggerConfig(iterations=4), FIT, _progress(),
                  lambda policy: evaluate_policy(LinearSystem(30), policy, [100, 101]))
    # Tolerance: 1e-4 relative, what 200 epochs of Adam reach on 120 noise-free labels.
    np.testing.assert_allclose(effective_gain(student), -K.numpy(), rtol=1e-4)
    assert [row["beta"] for row in rows] == [1.0, 0.0, 0.0, 0.0]
    assert rows[-1]["teacher_queries"] == 4 * 30


def test_mdgps_with_the_known_model_converges_to_the_lqr_gain() -> None:
    student = _linear_student(gaussian=True)
    cost, final_cost = costs()
    mdgps(LinearSystem(30), student,
          GPSConfig(iterations=8, conditions=2, samples_per_condition=5, initial_std=0.01,
                    dynamics="model"),
          FIT, _progress(), lambda policy: 0.0, cost, final_cost, horizon=30,
          model=lambda x, u: A.to(x.dtype) @ x + B.to(x.dtype) @ u)
    # Tolerance 2%: it reaches 1e-5 by the fifth iteration, then the step rule's shrinking
    # bound and the fit's noise move it by up to 1% (measured).
    np.testing.assert_allclose(effective_gain(student), -K.numpy(), rtol=0.02)


def test_mdgps_with_fitted_dynamics_comes_near_the_lqr_gain() -> None:
    student = _linear_student(gaussian=True)
    cost, final_cost = costs()
    rows = mdgps(LinearSystem(30), student,
                 GPSConfig(iterations=6, conditions=2, samples_per_condition=5,
                           initial_std=0.01),
                 FIT, _progress(), lambda policy: 0.0, cost, final_cost, horizon=30)
    # Tolerance 10%: as the controllers' noise shrinks, actions follow the states and the
    # regression tells A from B less well (measured 2-7% after 3-12 iterations).
    np.testing.assert_allclose(effective_gain(student), -K.numpy(), rtol=0.10)
    assert rows[-1]["teacher_queries"] == 6 * 2 * 5 * 30


def test_the_penalised_teacher_moves_from_lqr_to_the_student_as_lambda_grows() -> None:
    """lambda = 0 is the LQR teacher, a large lambda the student; in between, as for any
    penalty method, the trajectory's distance from the student never grows with lambda and
    its task cost never falls."""
    cost, final_cost = costs()
    student_gain = torch.tensor([[-1.0, -0.5]])
    student = _linear_student(gaussian=True)
    with torch.no_grad():
        student.net[0].weight.copy_(student_gain)
        student.net[0].bias.zero_()
    student.weights_changed()
    x0 = torch.tensor([1.0, -0.5], dtype=torch.float64)
    precision = torch.eye(1, dtype=torch.float64) / 0.1**2
    horizon = 40

    def solve(weight: float) -> tuple[torch.Tensor, float, float]:
        pull = PolicyPull(student.mean_action, precision, weight)
        solved = ilqr(lambda x, u: A @ x + B @ u, PenalizedCost(cost, pull), final_cost, x0,
                      torch.zeros(horizon, 1, dtype=torch.float64),
                      ILQRConfig(max_iterations=50))
        xs, us = solved.states, solved.controls
        gap = us - xs[:-1] @ student_gain.double().T
        task_cost = sum(float(cost(x, u, torch.tensor(0))) for x, u in zip(xs[:-1], us,
                                                                          strict=True))
        return us, float((gap**2).sum()), task_cost + float(final_cost(xs[-1]))

    weights = (0.0, 1e-3, 1e-2, 1e-1, 1.0, 1e3)
    solutions = [solve(w) for w in weights]
    assert float(solutions[0][0][0, 0]) == pytest.approx(float(-(K @ x0)[0]), abs=1e-6)
    assert solutions[-1][1] < 1e-6  # the student's actions, step for step
    gaps = [gap for _, gap, _ in solutions]
    task_costs = [c for _, _, c in solutions]
    assert all(b <= a + 1e-9 for a, b in itertools.pairwise(gaps)), gaps
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(task_costs))
    assert gaps[0] > 100 * gaps[-1]
