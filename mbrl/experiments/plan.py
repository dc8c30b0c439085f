"""MPC with the cross-entropy method on the true simulator: the planner's upper bound.

Planning through the exact physics (`envs.dynamics.SimulatorDynamics`) shows what a planner
achieves with a perfect model; a learned model can at best match it. One episode:

    for each control step:
        plan a horizon of actions by CEM from the simulator's exact state (warm-started)
        apply the first action to the robot, log state, action, reward and planning time
    write the run directory: config, trajectory CSV, plot, video
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import envs
from controllers import CEM, MPC, CEMConfig, MPCConfig
from controllers.validation import check_types, require, require_positive
from envs.dynamics import SimulatorDynamics
from mbrl.config import require_known_env
from mbrl.control.episodes import Step, rollout
from mbrl.files import write_csv, write_json
from mbrl.runs import plots
from mbrl.runs.video import try_render, write_video


@dataclass(frozen=True)
class TrueModelMPCConfig:
    """Settings of one MPC episode on the true simulator."""

    #: Registered env id (`backend/task`).
    env_id: str = "mujoco/cartpole-swingup"
    #: Control steps to run (each holds the action for `action_repeat` simulator steps).
    steps: int = 200
    #: Simulator steps per control step.
    action_repeat: int = 2
    #: CEM planning horizon, in control steps.
    horizon: int = 30
    #: CEM samples per iteration.
    population: int = 200
    #: CEM elites per iteration.
    elites: int = 20
    #: CEM iterations per replan.
    iterations: int = 4
    #: Replan every this many control steps.
    replan_every: int = 1
    #: Seed of the episode's initial state and of the planner.
    seed: int = 0
    #: Record a video (needs working headless rendering and imageio-ffmpeg).
    video: bool = True

    def __post_init__(self) -> None:
        check_types(self)
        require_known_env(self)
        require_positive(self, "steps", "action_repeat", "horizon", "population", "elites",
                         "iterations", "replan_every")
        require(self, "elites", self.elites <= self.population,
                f"must not exceed population ({self.population})")


def run_true_model_mpc(
    config: TrueModelMPCConfig,
    run_dir: Path,
    progress: Callable[[Iterable[int]], Iterable[int]] = lambda steps: steps,
) -> dict[str, Any]:
    """Run one episode, write `run_dir`, and return its summary."""
    env = envs.make(config.env_id, action_repeat=config.action_repeat)
    env.reset(seed=config.seed)
    planner = CEM(
        SimulatorDynamics(env),
        torch.tensor(env.task.action_low),
        torch.tensor(env.task.action_high),
        CEMConfig(
            horizon=config.horizon, population=config.population, elites=config.elites,
            iterations=config.iterations,
        ),
        generator=torch.Generator().manual_seed(config.seed),
    )
    controller = MPC(planner, MPCConfig(replan_every=config.replan_every))
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
    episode = rollout(env, controller, config.seed, observe=lambda _: env.get_state(),
                      on_step=record, max_steps=config.steps)
    getattr(ticks, "close", lambda: None)()
    episode_return = episode.episode_return

    write_csv(run_dir / "trajectory.csv", rows)
    plots.plot_trajectory(rows, run_dir / "trajectory.png", title=f"CEM-MPC on {config.env_id}")
    video = write_video(frames, run_dir / "episode.mp4", fps=round(1 / env.control_timestep))
    summary = {
        "env_id": config.env_id, "steps": len(rows), "return": episode_return,
        "median_plan_ms": float(np.median([r["plan_ms"] for r in rows])),
        "final_obs": [r[f"obs_{i}"] for r in rows[-1:] for i in range(env.task.obs_dim)],
        "video": str(video) if video else None,
    }
    write_json(run_dir / "summary.json", summary)
    return summary
