"""MPC with any registered planner, through the true simulator or a trained run's model.

Planning through the exact physics (`mbrl.control.planners.simulator_problem`) shows what a
planner achieves with a perfect model, the bound a learned model can at best reach; planning
through a PETS run's ensemble (`model_problem`) shows what the model is worth. One episode:

    for each control step:
        replan from the simulator's state (or the observation, through the model),
        warm-started with the previous plan shifted
        apply the first action to the robot, log state, action, reward and planning time
    write the run directory: config, trajectory CSV, plot, summary, video
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import envs
from controllers import MPC, MPCConfig
from controllers.validation import check_types, require, require_positive
from envs.dynamics import joint_state
from mbrl.algorithms.pets import load_run, model_input
from mbrl.config import require_known_env
from mbrl.control.episodes import Step, rollout
from mbrl.control.planners import (
    PlanningProblem,
    build_planner,
    model_problem,
    planner_spec,
    require_planner,
    simulator_problem,
)
from mbrl.errors import UserError
from mbrl.files import write_csv, write_json
from mbrl.learning.propagation import Propagation
from mbrl.runs import plots
from mbrl.runs.video import try_render, write_video


@dataclass(frozen=True)
class PlanConfig:
    """Settings of one MPC episode."""

    #: Registered env id (`backend/task`); with `model`, that run's env (None: the run's).
    env_id: str | None = "mujoco/cartpole-swingup"
    #: The planner, by its name in the registry (`mbrl.control.planners`).
    planner: str = "cem"
    #: The planner's settings over the registry's (see its config dataclass).
    planner_settings: dict[str, Any] = field(default_factory=dict)
    #: A PETS run directory whose model to plan through (None: the true simulator).
    model: str | None = None
    #: Control steps to run (each holds the action for `action_repeat` simulator steps).
    steps: int = 200
    #: Simulator steps per control step; with `model`, the run's (None: the run's).
    action_repeat: int | None = 2
    #: Planning horizon, in control steps.
    horizon: int = 30
    #: Replan every this many control steps.
    replan_every: int = 1
    #: Wall-clock budget of a replan, in milliseconds (None: unlimited).
    time_budget_ms: float | None = None
    #: Seed of the episode's initial state and of the planner.
    seed: int = 0
    #: Record a video (needs working headless rendering and imageio-ffmpeg).
    video: bool = True

    def __post_init__(self) -> None:
        check_types(self)
        if self.model is None:
            require(self, "env_id", self.env_id is not None, "is needed without a model")
            require(self, "action_repeat", self.action_repeat is not None,
                    "is needed without a model")
        if self.env_id is not None:
            require_known_env(self)
        require_positive(self, "steps", "horizon", "replan_every")
        require(self, "action_repeat", self.action_repeat is None or self.action_repeat >= 1,
                "must be >= 1 or null")
        require(self, "time_budget_ms", self.time_budget_ms is None or self.time_budget_ms > 0,
                "must be > 0 or null")
        require_planner(self)


@dataclass
class PreparedPlan:
    """An episode ready to run: the env, the controller and what the controller observes."""

    env: envs.RobotEnv
    controller: MPC
    observe: Callable[[np.ndarray], Any]


def prepare_plan(config: PlanConfig) -> PreparedPlan:
    """Everything `run_plan` needs, built and checked before anything is written.

    Raises:
        UserError: for a model run whose env differs from `config.env_id`, or a run
            directory that is not one (`RunDirError`).
        ConfigError: for a planner this problem cannot serve (iLQR where no quadratic goal
            or joint-state map is known).
    """
    env, problem, observe = _problem(config)
    controller = MPC(build_planner(config.planner, problem, **config.planner_settings),
                     MPCConfig(replan_every=config.replan_every,
                               time_budget_ms=config.time_budget_ms))
    return PreparedPlan(env, controller, observe)


def run_plan(
    config: PlanConfig,
    run_dir: Path,
    progress: Callable[[Iterable[int]], Iterable[int]] = lambda steps: steps,
    prepared: PreparedPlan | None = None,
) -> dict[str, Any]:
    """Run one episode (`prepared`, or `prepare_plan(config)`), write `run_dir`, and return
    its summary."""
    prepared = prepared or prepare_plan(config)
    env, controller, observe = prepared.env, prepared.controller, prepared.observe
    write_json(run_dir / "config.json", config)

    rows: list[dict[str, float]] = []
    frames = []

    def record(step: Step) -> None:
        rows.append({
            "step": step.index, "time_s": (step.index + 1) * env.control_timestep,
            "reward": step.reward, "return": (rows[-1]["return"] if rows else 0.0) + step.reward,
            "plan_ms": step.act_ms,
            **{f"action_{i}": float(a) for i, a in enumerate(step.action)},
            **{f"obs_{i}": float(o) for i, o in enumerate(step.next_obs)},
        })
        if config.video:
            frames.append(try_render(env))
        next(ticks, None)

    ticks = iter(progress(range(config.steps)))  # one tick a step, for a progress bar
    episode = rollout(env, controller, config.seed, observe=observe, on_step=record,
                      max_steps=config.steps)
    getattr(ticks, "close", lambda: None)()

    source = "a trained model" if config.model else "the true simulator"
    write_csv(run_dir / "trajectory.csv", rows)
    plots.plot_trajectory(rows, run_dir / "trajectory.png",
                          title=f"{config.planner} MPC on {env.env_id}, through {source}")
    video = write_video(frames, run_dir / "episode.mp4", fps=round(1 / env.control_timestep))
    summary = {
        "env_id": env.env_id, "planner": config.planner, "through": source,
        "steps": len(rows), "return": episode.episode_return,
        "median_plan_ms": float(np.median([r["plan_ms"] for r in rows])),
        "fallbacks": controller.stats.fallbacks, "diverged_replans": controller.stats.diverged,
        "final_obs": [r[f"obs_{i}"] for r in rows[-1:] for i in range(env.task.obs_dim)],
        "video": str(video) if video else None,
    }
    write_json(run_dir / "summary.json", summary)
    return summary


def _problem(
    config: PlanConfig,
) -> tuple[envs.RobotEnv, PlanningProblem, Callable[[np.ndarray], Any]]:
    """The env, what the planner plans through, and what the controller observes."""
    if config.model is None:
        assert config.env_id is not None and config.action_repeat is not None
        env = envs.make(config.env_id, action_repeat=config.action_repeat)
        env.reset(seed=config.seed)  # the problem plans from this episode's targets
        problem = simulator_problem(env, config.horizon, config.seed)
        if planner_spec(config.planner).gradient_based:
            return env, problem, lambda _: torch.from_numpy(joint_state(env))
        return env, problem, lambda _: torch.from_numpy(env.get_state())
    run, model = load_run(Path(config.model))
    for name, mine, theirs in (("env_id", config.env_id, run.env_id),
                               ("action_repeat", config.action_repeat, run.action_repeat)):
        if mine is not None and mine != theirs:
            raise UserError(f"{name} {mine!r} is not the one the model in {config.model} was "
                            f"trained on ({theirs!r}); leave it out to use the run's")
    env = envs.make(run.env_id, action_repeat=run.action_repeat)
    problem = model_problem(model, env.task, config.horizon, config.seed, env_id=run.env_id,
                            particles=run.particles,
                            propagation=Propagation(run.propagation))
    return env, problem, model_input
