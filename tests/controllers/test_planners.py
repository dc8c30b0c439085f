"""Known-answer and conformance tests that every sampling planner must pass.

Random shooting, CEM (plain, with the iCEM options, and returning its mean) and MPPI each
reach a hand-computed optimum of the point mass, keep every sampled action inside the bounds,
rank diverged rollouts last, give the same plan for the same seed and carry nothing from one
episode to the next.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Protocol

import pytest
import torch

from controllers import (
    CEM,
    MPPI,
    CEMConfig,
    Dynamics,
    ModelDivergedError,
    MPPIConfig,
    Planner,
    RandomShooting,
    RandomShootingConfig,
    SequenceDynamics,
)
from tests.controllers.analytic import (
    F64,
    HIGH,
    LOW,
    ORIGIN,
    AlwaysDiverges,
    DivergesOnTheRight,
    PointMass,
    RecordingPointMass,
    rollout_return,
    shifted,
)

SamplingPlanner = RandomShooting | CEM | MPPI


class Make(Protocol):
    """Builds one kind of planner, seeded, for a horizon and bounds."""

    __name__: str

    def __call__(
        self,
        dynamics: Dynamics | SequenceDynamics,
        horizon: int,
        seed: int,
        low: torch.Tensor = LOW,
        high: torch.Tensor = HIGH,
    ) -> SamplingPlanner: ...


def random_shooting(
    dynamics: Dynamics | SequenceDynamics, horizon: int, seed: int,
    low: torch.Tensor = LOW, high: torch.Tensor = HIGH,
) -> SamplingPlanner:
    config = RandomShootingConfig(horizon=horizon, population=20000)
    return RandomShooting(dynamics, low, high, config, torch.Generator().manual_seed(seed))


CEM_SETTINGS = CEMConfig(population=300, elites=30, iterations=12)
ICEM_SETTINGS = dataclasses.replace(
    CEM_SETTINGS, noise_beta=2.0, keep_elites_fraction=0.3, population_decay=1.1
)


def cem(
    dynamics: Dynamics | SequenceDynamics, horizon: int, seed: int,
    low: torch.Tensor = LOW, high: torch.Tensor = HIGH,
) -> SamplingPlanner:
    config = dataclasses.replace(CEM_SETTINGS, horizon=horizon)
    return CEM(dynamics, low, high, config, torch.Generator().manual_seed(seed))


def icem(
    dynamics: Dynamics | SequenceDynamics, horizon: int, seed: int,
    low: torch.Tensor = LOW, high: torch.Tensor = HIGH,
) -> SamplingPlanner:
    config = dataclasses.replace(ICEM_SETTINGS, horizon=horizon)
    return CEM(dynamics, low, high, config, torch.Generator().manual_seed(seed))


def icem_mean(
    dynamics: Dynamics | SequenceDynamics, horizon: int, seed: int,
    low: torch.Tensor = LOW, high: torch.Tensor = HIGH,
) -> SamplingPlanner:
    config = dataclasses.replace(ICEM_SETTINGS, horizon=horizon, return_mean=True)
    return CEM(dynamics, low, high, config, torch.Generator().manual_seed(seed))


def mppi(
    dynamics: Dynamics | SequenceDynamics, horizon: int, seed: int,
    low: torch.Tensor = LOW, high: torch.Tensor = HIGH,
) -> SamplingPlanner:
    config = MPPIConfig(
        horizon=horizon, population=300, iterations=10, temperature=0.05, noise_std=0.15
    )
    return MPPI(dynamics, low, high, config, torch.Generator().manual_seed(seed))


PLANNERS: list[Make] = [random_shooting, cem, icem, icem_mean, mppi]
ITERATIVE: list[Make] = [cem, icem, icem_mean, mppi]
#: Planners whose plan is a sample they rolled out, so its return is known exactly.
BEST_SAMPLE: list[Make] = [random_shooting, cem, icem]


@pytest.mark.parametrize("make", PLANNERS)
def test_each_planner_reaches_the_analytic_optimum(make: Make) -> None:
    if make is random_shooting:
        # Uniform samples only get close in few dimensions: H = 2, du = 2. Optimum: x1 =
        # (1, -0.5) at cost 0.5^2, x2 = goal at cost 0: return -0.25.
        goal, horizon, optimum = torch.tensor([1.5, -0.5], dtype=F64), 2, -0.25
    else:
        # Full speed towards the goal, then stop on it (|u| <= 1 per step): x = (1, -1),
        # (2, -1.5), (2.5, -1.5), (2.5, -1.5): return -(1.5^2 + 0.5^2) - 0.5^2 - 0 - 0 = -2.75.
        goal, horizon, optimum = torch.tensor([2.5, -1.5], dtype=F64), 4, -2.75
    planner: Planner = make(PointMass(goal), horizon, 0)  # each one is a `Planner`
    plan = planner.plan(ORIGIN)
    achieved = rollout_return(goal, plan.actions)
    assert plan.actions.shape == (horizon, 2)
    assert bool((plan.actions >= LOW).all() and (plan.actions <= HIGH).all())
    assert achieved == pytest.approx(optimum, abs=0.1)  # no plan beats the optimum
    assert achieved <= optimum + 1e-12
    if make in BEST_SAMPLE:
        assert plan.expected_return == pytest.approx(achieved, abs=1e-12)
    else:  # an estimate (elites' mean, weighted average) of a plan never rolled out itself
        assert plan.expected_return == pytest.approx(achieved, abs=0.25)


@pytest.mark.parametrize("make", PLANNERS)
def test_every_sampled_action_stays_inside_asymmetric_bounds(make: Make) -> None:
    low, high = torch.tensor([-0.5, -2.0], dtype=F64), torch.tensor([1.0, 0.25], dtype=F64)
    dynamics = RecordingPointMass(torch.tensor([5.0, 5.0], dtype=F64))  # pushes past `high`
    planner = make(dynamics, 3, 0, low, high)
    outside = torch.tensor([[3.0, -3.0]], dtype=F64).expand(3, 2)
    plans = [planner.plan(ORIGIN), planner.plan(ORIGIN, warm_start=outside)]
    samples = torch.cat(dynamics.batches)  # every sequence ever rolled out
    for actions in [samples, *(plan.actions for plan in plans)]:
        assert bool((actions >= low).all() and (actions <= high).all())
    assert torch.isclose(samples, high).any(), "the bound should be reached, not avoided"


@pytest.mark.parametrize("make", PLANNERS)
def test_diverged_rollouts_rank_last_never_first(make: Make) -> None:
    goal = torch.tensor([3.0, 0.0], dtype=F64)  # lures towards the NaN region x > 0.5
    plan = make(DivergesOnTheRight(goal), 2, 0).plan(ORIGIN)
    assert float(plan.actions.cumsum(0)[:, 0].max()) <= 0.5
    assert torch.isfinite(torch.tensor(plan.expected_return))


@pytest.mark.parametrize("make", PLANNERS)
def test_when_every_rollout_diverges_the_planner_says_so_instead_of_making_up_a_plan(
    make: Make,
) -> None:
    warm = torch.tensor([[0.5, -0.25], [0.1, 0.2], [-0.3, 0.9]], dtype=F64)
    planner = make(AlwaysDiverges(ORIGIN), 3, 0)
    for warm_start in (warm, None):
        with pytest.raises(ModelDivergedError, match="rollouts returned NaN or infinity"):
            planner.plan(ORIGIN, warm_start=warm_start)


@pytest.mark.parametrize("make", PLANNERS)
def test_the_same_seed_gives_the_same_plan(make: Make) -> None:
    goal = torch.tensor([0.7, -1.2], dtype=F64)
    first, second = (make(PointMass(goal), 4, 11).plan(ORIGIN) for _ in range(2))
    assert torch.equal(first.actions, second.actions)
    other = make(PointMass(goal), 4, 12).plan(ORIGIN)
    assert not torch.equal(first.actions, other.actions)


@pytest.mark.parametrize("make", PLANNERS)
def test_reset_leaves_nothing_of_the_last_episode(make: Make) -> None:
    goal = torch.tensor([1.7, 0.4], dtype=F64)
    used = make(PointMass(goal), 4, 5)
    plan = used.plan(ORIGIN)
    for _ in range(3):  # an episode's replans, each warm-started as MPC does
        plan = used.plan(ORIGIN, warm_start=shifted(plan.actions))
    warm = shifted(plan.actions)  # also what would continue the chain, were it not reset
    used.reset()
    used.generator.manual_seed(5)
    fresh = make(PointMass(goal), 4, 5)
    assert torch.equal(used.plan(ORIGIN, warm).actions, fresh.plan(ORIGIN, warm).actions)


@pytest.mark.parametrize("make", ITERATIVE)
def test_a_past_deadline_still_gets_exactly_one_iteration(make: Make) -> None:
    dynamics = RecordingPointMass(torch.tensor([1.0, 1.0], dtype=F64))
    plan = make(dynamics, 3, 0).plan(ORIGIN, deadline=time.perf_counter() - 1.0)
    assert plan.iterations == 1 and plan.info["stopped_early"]
    assert len(dynamics.batches) == 1 and torch.isfinite(plan.actions).all()
    far = make(dynamics, 3, 0).plan(ORIGIN, deadline=time.perf_counter() + 60.0)
    assert far.iterations > 1 and not far.info["stopped_early"]


@pytest.mark.parametrize("make", PLANNERS)
def test_a_float32_planner_samples_and_plans_in_float32(make: Make) -> None:
    goal = torch.tensor([2.5, -1.5], dtype=torch.float32)
    dynamics = RecordingPointMass(goal)
    planner = make(dynamics, 4, 0)
    f32 = type(planner)(dynamics, LOW, HIGH, planner.config, torch.Generator().manual_seed(0),
                        dtype=torch.float32)  # type: ignore[arg-type]
    plan = f32.plan(ORIGIN.float(), warm_start=torch.zeros(4, 2, dtype=F64))
    assert plan.actions.dtype == torch.float32
    assert all(batch.dtype == torch.float32 for batch in dynamics.batches)
    assert bool((plan.actions >= -1).all() and (plan.actions <= 1).all())
    assert rollout_return(goal.double(), plan.actions.double()) == pytest.approx(
        rollout_return(goal.double(), make(PointMass(goal.double()), 4, 0).plan(ORIGIN).actions),
        abs=0.3,
    )
    with pytest.raises(ValueError, match="floating-point dtype"):
        type(planner)(dynamics, LOW, HIGH, dtype=torch.int64)


def test_random_shooting_keeps_the_warm_start_when_it_is_best() -> None:
    goal = torch.tensor([1.5, -0.5], dtype=F64)
    optimum = torch.tensor([[1.0, -0.5], [0.5, 0.0]], dtype=F64)  # return -0.25, see above
    planner = RandomShooting(
        PointMass(goal), LOW, HIGH, RandomShootingConfig(horizon=2, population=10)
    )
    plan = planner.plan(ORIGIN, warm_start=optimum)
    assert torch.equal(plan.actions, optimum) and plan.expected_return == pytest.approx(-0.25)


def test_bad_configurations_are_refused() -> None:
    with pytest.raises(ValueError, match="population"):
        RandomShootingConfig(population=0)
    with pytest.raises(ValueError, match="temperature"):
        MPPIConfig(temperature=0.0)
    with pytest.raises(ValueError, match="noise_std"):
        MPPIConfig(noise_std=-0.1)
    with pytest.raises(ValueError, match="below action_high"):
        MPPI(PointMass(ORIGIN), HIGH, LOW)
    with pytest.raises(ValueError, match=r"warm_start has shape \(2, 2\), expected \(3, 2\)"):
        RandomShooting(PointMass(ORIGIN), LOW, HIGH, RandomShootingConfig(horizon=3)).plan(
            ORIGIN, warm_start=torch.zeros(2, 2)
        )
