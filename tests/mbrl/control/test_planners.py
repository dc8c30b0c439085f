"""The planner registry: one table builds every planner by name, with one set of settings."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import envs
from controllers import CEM, MCTS, MPPI, CEMConfig, ILQRPlanner, MPPIConfig, RandomShooting
from controllers.validation import ConfigError
from mbrl.control.goals import GOALS
from mbrl.control.planners import (
    PlannerSpec,
    PlanningProblem,
    build_planner,
    model_problem,
    planner_config,
    planner_names,
    planner_spec,
    register,
    simulator_problem,
)
from mbrl.learning.models import EnsembleConfig, EnsembleDynamics

KINDS = {"random-shooting": RandomShooting, "cem": CEM, "icem": CEM, "mppi": MPPI,
         "ilqr": ILQRPlanner, "ddp": ILQRPlanner, "mcts": MCTS}


def pendulum_problem(horizon: int = 6) -> PlanningProblem:
    env = envs.make("mujoco/pendulum-swingup")
    env.reset(seed=0)
    return simulator_problem(env, horizon, seed=0)


def test_every_planner_of_the_design_is_registered_and_builds_on_the_simulator() -> None:
    assert planner_names() == tuple(KINDS)
    problem = pendulum_problem()
    for name, kind in KINDS.items():
        planner = build_planner(name, problem)
        assert isinstance(planner, kind) and planner.horizon == 6, name


def test_every_planner_builds_through_a_learned_model() -> None:
    env = envs.make("mujoco/pendulum-swingup")
    model = EnsembleDynamics(3, 1, EnsembleConfig(ensemble_size=2, hidden_size=8,
                                                  hidden_layers=1, weight_decay=0.0))
    problem = model_problem(model, env.task, 5, 0, env_id=env.env_id)
    obs = torch.from_numpy(env.reset(seed=0)[0]).float()
    for name in planner_names():
        plan = build_planner(name, problem, **({"simulations": 10} if name == "mcts" else {}),
                             ).plan(obs)
        assert plan.actions.shape == (5, 1) and bool(plan.actions.abs().le(1.0).all()), name


def test_one_elites_rule_a_tenth_of_the_population() -> None:
    for population, elites in ((400, 40), (350, 35), (32, 3), (5, 1)):
        config = planner_config("cem", 10, population=population)
        assert config.elites is None and config.num_elites == elites
    assert planner_config("cem", 10, population=32, elites=8).num_elites == 8
    assert CEMConfig(population=200).num_elites == 20  # the dataclass's own rule


def test_the_registrys_settings_over_the_dataclasses() -> None:
    icem = planner_config("icem", 12)
    assert (icem.noise_beta, icem.population_decay, icem.keep_elites_fraction) == (
        2.5, 1.25, 0.3)
    assert planner_config("ddp", 12).second_order and not planner_config("ilqr", 12).second_order
    mppi = planner_config("mppi", 12, temperature=0.3)
    assert mppi.normalize_returns and mppi.temperature == 0.3 and mppi.horizon == 12
    assert planner_config("mcts", 12).rollout_horizon == 12


def test_mistakes_name_the_planner_or_the_setting() -> None:
    with pytest.raises(ConfigError, match="unknown planner 'ddpg'; registered: random-shooting"):
        planner_config("ddpg", 5)
    with pytest.raises(ConfigError, match=r"^temprature: mppi has no such setting"):
        planner_config("mppi", 5, temprature=0.1)
    with pytest.raises(ConfigError, match=r"^horizon: is the problem's horizon"):
        planner_config("cem", 5, horizon=3)
    with pytest.raises(ConfigError, match=r"^planner\.population: must be >= 1, got 0"):
        build_planner("cem", pendulum_problem(), population=0)
    with pytest.raises(ConfigError, match="takes a CEMConfig, got MPPIConfig"):
        build_planner("cem", pendulum_problem(), config=MPPIConfig())
    with pytest.raises(ConfigError, match=r"planner\.horizon: 25 is not the problem's horizon"):
        build_planner("cem", pendulum_problem(6), config=CEMConfig())


def test_a_gradient_planner_is_refused_where_there_is_no_gradient_problem() -> None:
    kuka = envs.make("pybullet/kuka-reach")
    problem = simulator_problem(kuka, 5, seed=0)
    assert problem.gradient is None
    with pytest.raises(ConfigError, match="ilqr cannot plan this problem: no derivatives"):
        build_planner("ilqr", problem)
    assert isinstance(build_planner("cem", problem), CEM)
    dmc = simulator_problem(envs.make("dmc/cheetah-run"), 5, seed=0)
    assert "no quadratic goal" in dmc.no_gradient_reason and "dmc/cheetah-run" not in GOALS


def test_a_planner_registers_once() -> None:
    spec = planner_spec("cem")
    with pytest.raises(ValueError, match="'cem' is already registered"):
        register(spec)
    with pytest.raises(ValueError, match="defaults name no field of CEMConfig"):
        register(dataclasses.replace(spec, name="cem-2", defaults={"temperature": 1.0}))
    assert isinstance(spec, PlannerSpec) and "cem-2" not in planner_names()
