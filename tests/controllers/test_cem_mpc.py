"""Known-answer tests for CEM and the MPC loop on an analytic problem."""

from __future__ import annotations

import pytest
import torch

from controllers import CEM, MPC, CEMConfig, MPCConfig, Plan, sequence_returns


class PointMass:
    """x' = x + u: a 2-D point that should reach `goal`; reward -||x' - goal||^2."""

    def __init__(self, goal: torch.Tensor) -> None:
        self.goal = goal
        self.calls = 0

    def step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return state + action

    def reward(
        self, state: torch.Tensor, action: torch.Tensor, next_state: torch.Tensor
    ) -> torch.Tensor:
        return -((next_state - self.goal) ** 2).sum(-1)


class DivergesOnTheRight(PointMass):
    """The same point, but a step to x > 0.5 blows up (NaN): such plans must rank last."""

    def step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        nxt = state + action
        return torch.where(nxt[:, :1] > 0.5, torch.full_like(nxt, torch.nan), nxt)


LOW, HIGH = -torch.ones(2), torch.ones(2)


def test_cem_reaches_the_analytic_optimum_inside_bounds() -> None:
    goal = torch.tensor([2.5, -1.5], dtype=torch.float64)
    config = CEMConfig(horizon=4, population=300, elites=30, iterations=12)
    planner = CEM(PointMass(goal), LOW, HIGH, config, torch.Generator().manual_seed(0))
    plan = planner.plan(torch.zeros(2, dtype=torch.float64))
    assert plan.actions.shape == (4, 2)
    assert bool((plan.actions >= LOW).all() and (plan.actions <= HIGH).all())
    # Optimum: full speed towards the goal, then stop on it. Return of the optimum: -(1.5^2 +
    # 0.5^2) - 0.5^2 - 0 - 0 = -2.75 (x saturates at +-1 per step).
    assert plan.expected_return == pytest.approx(-2.75, abs=0.05)
    final = plan.actions.sum(0)
    assert torch.allclose(final, goal, atol=0.1)


def test_cem_is_deterministic_for_a_seed() -> None:
    goal = torch.tensor([0.3, 0.2], dtype=torch.float64)
    plans = [
        CEM(PointMass(goal), LOW, HIGH, CEMConfig(horizon=3, population=50, elites=5),
            torch.Generator().manual_seed(11)).plan(torch.zeros(2, dtype=torch.float64))
        for _ in range(2)
    ]
    assert torch.equal(plans[0].actions, plans[1].actions)


def test_diverged_rollouts_rank_last_never_first() -> None:
    goal = torch.tensor([3.0, 0.0], dtype=torch.float64)  # lures towards the NaN region
    dynamics = DivergesOnTheRight(goal)
    actions = torch.tensor([[[1.0, 0.0]], [[0.0, 0.0]]], dtype=torch.float64)
    returns = sequence_returns(dynamics, torch.zeros(2, dtype=torch.float64), actions)
    assert returns[0] == -torch.inf and torch.isfinite(returns[1])
    plan = CEM(dynamics, LOW, HIGH, CEMConfig(horizon=2, population=100, elites=10),
               torch.Generator().manual_seed(0)).plan(torch.zeros(2, dtype=torch.float64))
    assert float(plan.actions.cumsum(0)[:, 0].max()) <= 0.5 and plan.expected_return > -torch.inf


def test_bad_cem_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="elites"):
        CEMConfig(population=10, elites=20)
    with pytest.raises(ValueError, match="below action_high"):
        CEM(PointMass(torch.zeros(2)), HIGH, LOW)
    planner = CEM(PointMass(torch.zeros(2)), LOW, HIGH, CEMConfig(horizon=3))
    with pytest.raises(ValueError, match=r"warm_start has shape \(2, 2\), expected \(3, 2\)"):
        planner.plan(torch.zeros(2), warm_start=torch.zeros(2, 2))


def warm_start_recording_cem(horizon: int) -> tuple[CEM, list[torch.Tensor | None]]:
    """A one-iteration CEM towards (1, 1) and the list its `plan` appends each warm start to."""
    goal = torch.tensor([1.0, 1.0], dtype=torch.float64)
    planner = CEM(PointMass(goal), LOW, HIGH, CEMConfig(horizon=horizon, population=20, elites=4,
                                                       iterations=1))
    seen: list[torch.Tensor | None] = []
    original = planner.plan

    def recording_plan(state: torch.Tensor, warm_start: torch.Tensor | None = None, *,
                       deadline: float | None = None) -> Plan:
        seen.append(warm_start)
        return original(state, warm_start, deadline=deadline)

    planner.plan = recording_plan  # type: ignore[method-assign]
    return planner, seen


def test_mpc_replans_on_schedule_and_warm_starts_with_the_shifted_plan() -> None:
    planner, seen = warm_start_recording_cem(horizon=5)
    mpc = MPC(planner, MPCConfig(replan_every=2))
    first = mpc.act(torch.zeros(2))
    assert mpc.last_plan is not None
    stored = mpc.last_plan.actions.clone()
    second = mpc.act(torch.zeros(2))
    assert torch.equal(first, stored[0]) and torch.equal(second, stored[1])
    assert len(seen) == 1 and seen[0] is None
    mpc.act(torch.zeros(2))  # third step: replans, warm-started by the plan shifted by 2
    assert len(seen) == 2
    expected_warm = torch.cat([stored[2:], stored[-1:], stored[-1:]])
    assert seen[1] is not None and torch.equal(seen[1], expected_warm)
    mpc.reset()
    mpc.act(torch.zeros(2))
    assert seen[-1] is None, "no plan may leak into a new episode"


def test_a_coarse_plan_step_holds_each_planned_action_and_shifts_by_whole_plan_steps() -> None:
    """plan_step=3: the plan's actions are 3 control steps long; replanning every 4 control
    steps has played one whole plan step (and a third of the next), so the warm start moves
    by one."""
    planner, seen = warm_start_recording_cem(horizon=4)
    mpc = MPC(planner, MPCConfig(replan_every=4, plan_step=3))
    played = [mpc.act(torch.zeros(2)) for _ in range(4)]
    assert mpc.last_plan is not None
    stored = mpc.last_plan.actions.clone()
    for step, action in enumerate(played):
        assert torch.equal(action, stored[step // 3])
    mpc.act(torch.zeros(2))
    assert len(seen) == 2 and seen[1] is not None
    assert torch.equal(seen[1], torch.cat([stored[1:], stored[-1:]]))
    with pytest.raises(ValueError, match="exceeds the horizon"):
        MPC(planner, MPCConfig(replan_every=13, plan_step=3))


def test_mpc_refuses_replanning_less_often_than_the_horizon() -> None:
    planner = CEM(PointMass(torch.zeros(2)), LOW, HIGH, CEMConfig(horizon=3))
    with pytest.raises(ValueError, match="exceeds the horizon"):
        MPC(planner, MPCConfig(replan_every=4))
