"""`mbrl plan`: any registered planner through the true simulator or a trained run's model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controllers.validation import ConfigError
from mbrl.algorithms.pets import train_pets
from mbrl.errors import UserError
from mbrl.experiments.plan import PlanConfig, prepare_plan, run_plan
from tests.mbrl.algorithms.test_pets import TINY


@pytest.mark.slow
def test_cem_mpc_on_the_true_physics_swings_the_cart_pole_up(tmp_path: Path) -> None:
    config = PlanConfig(planner_settings={"population": 200, "iterations": 4}, video=False)
    summary = run_plan(config, tmp_path)
    cart_x, cos_theta = summary["final_obs"][0], summary["final_obs"][1]
    assert cos_theta > 0.95, f"the pole should end upright, cos(theta) = {cos_theta}"
    assert abs(cart_x) < 2.5
    # Upright and still for the last second earns about 2 per control step (2 substeps).
    assert summary["return"] > 120
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 200


@pytest.mark.parametrize("planner", ["mppi", "ilqr", "mcts"])
def test_any_planner_plans_through_the_simulator(planner: str, tmp_path: Path) -> None:
    settings = {"ilqr": {"max_iterations": 3}, "mcts": {"simulations": 20}}.get(planner, {})
    config = PlanConfig(env_id="mujoco/pendulum-swingup", planner=planner, steps=4, horizon=5,
                        action_repeat=1, planner_settings=settings, video=False)
    summary = run_plan(config, tmp_path)
    assert summary["planner"] == planner and summary["steps"] == 4
    assert summary["through"] == "the true simulator"


def test_a_trained_runs_model_is_planned_through_with_the_runs_env(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train_pets(TINY, run)
    config = PlanConfig(env_id=None, action_repeat=None, model=str(run), planner="icem",
                        steps=3, horizon=4, planner_settings={"population": 12}, video=False)
    (tmp_path / "plan").mkdir()
    summary = run_plan(config, tmp_path / "plan")
    assert summary["env_id"] == TINY.env_id and summary["through"] == "a trained model"
    with pytest.raises(UserError, match="is not the one the model"):
        prepare_plan(PlanConfig(env_id="mujoco/cartpole-swingup", model=str(run)))


def test_a_planner_the_problem_cannot_serve_is_refused() -> None:
    with pytest.raises(ConfigError, match="no derivatives of pybullet/kuka-reach"):
        prepare_plan(PlanConfig(env_id="pybullet/kuka-reach", planner="ddp"))
    with pytest.raises(ConfigError, match=r"planner_settings\.population: ilqr has no such"):
        PlanConfig(planner="ilqr", planner_settings={"population": 10})
