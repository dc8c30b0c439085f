"""Adapting a trained PETS run to a new robot with a progressive model (`mbrl adapt`).

    load the source run's model (frozen) and its planner settings
    grow a new column over it (`ProgressiveEnsembleDynamics`)
    for each target episode:
        MPC through the source model (the first episode) or the progressive one (the rest),
        on the target robot; its transitions join the target data
        fit the new column and its adapters to all the target data
        record the return, the target model's holdout error; save the model

The target is another robot with the same observations and actions (`env_id`, such as
another backend's cart-pole) and/or physics scales (`physics`). The source model is untouched,
so planning through it on the source robot gives exactly the return it gave before.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import envs
from controllers.validation import check_types, require
from mbrl.algorithms.pets import (
    PETSConfig,
    load_run,
    make_training_env,
    model_input,
    on_robot,
    planning_controller,
)
from mbrl.control.episodes import rollout
from mbrl.errors import UserError
from mbrl.files import write_csv, write_json
from mbrl.learning.data import ReplayBuffer
from mbrl.learning.models import EnsembleDynamics
from mbrl.learning.training import TrainConfig, fit_buffer
from mbrl.runs import plots
from sim2real.progressive import ProgressiveEnsembleDynamics, save_progressive


@dataclass(frozen=True)
class AdaptConfig:
    """Settings of `adapt`."""

    #: The source run directory (`mbrl train pets`).
    source_run: str
    #: The target robot's env id (None: the source run's).
    env_id: str | None = None
    #: The target's physics scales (`RobotEnv.set_physics_params`).
    physics: dict[str, float] = field(default_factory=dict)
    #: Target episodes.
    episodes: int = 3
    #: Units of each lateral adapter.
    adapter_size: int = 16
    #: Seed of the episodes, the new column and its training.
    seed: int = 0
    #: Fitting the new column (None: the source run's settings).
    train: TrainConfig | None = None

    def __post_init__(self) -> None:
        check_types(self)
        require(self, "episodes", self.episodes >= 1, "must be >= 1")
        require(self, "adapter_size", self.adapter_size >= 1, "must be >= 1")


@dataclass
class Prepared:
    """The source run and the target robot, checked."""

    #: The source run's settings, with the target's env id.
    target: PETSConfig
    #: The source model (frozen by the progressive model).
    source: EnsembleDynamics
    #: The target robot, at the run's action repeat, with the target's physics.
    env: envs.RobotEnv


def prepare(config: AdaptConfig) -> Prepared:
    """Load the source run and build the target robot.

    Raises:
        UserError: for a source run that is not one, a target robot the source model cannot
            drive, or a physics scale it does not have or take.
    """
    source_config, source = load_run(Path(config.source_run))
    # The target robot as it is: a source trained under randomisation is adapted to one robot.
    target = dataclasses.replace(on_robot(source_config, config.env_id or source_config.env_id),
                                 randomize=None)
    env = make_training_env(target)
    if (env.task.obs_dim, env.task.act_dim) != (source.obs_dim, source.act_dim):
        raise UserError(f"--env {target.env_id}: observations [{env.task.obs_dim}] and actions "
                        f"[{env.task.act_dim}], but the model in {config.source_run} takes "
                        f"[{source.obs_dim}] and [{source.act_dim}]")
    try:
        env.set_physics_params(**config.physics)
    except ValueError as error:
        raise UserError(f"--physics: {error}") from None
    return Prepared(target, source, env)


def adapt(
    config: AdaptConfig,
    run_dir: Path,
    progress: Callable[[Iterable[int]], Iterable[int]] = lambda episodes: episodes,
    prepared: Prepared | None = None,
) -> list[dict[str, float]]:
    """Run the adaptation (see the module docstring) on `prepared` (or `prepare(config)`);
    write `run_dir` (config.json, metrics.csv, model.pt, replay_buffer.npz,
    learning_curve.png) and return the metrics, a row an episode.

    Raises:
        UserError: as `prepare`, before anything is written.
    """
    prepared = prepared or prepare(config)
    target, source, env = prepared.target, prepared.source, prepared.env
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", config)

    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = ProgressiveEnsembleDynamics(source, config.adapter_size,
                                        torch.Generator().manual_seed(config.seed))
    train = config.train or target.train
    buffer = ReplayBuffer(source.obs_dim, source.act_dim)
    rows: list[dict[str, float]] = []
    for episode in progress(range(config.episodes)):
        planner_model = source if episode == 0 else model
        controller = planning_controller(planner_model, env.task, target, generator)
        run = rollout(env, controller, seed=int(rng.integers(2**31)), observe=model_input,
                      buffer=buffer)
        report = fit_buffer(model, buffer, train, generator)
        rows.append({
            "episode": episode, "return": run.episode_return,
            "env_steps": len(buffer) * target.action_repeat,
            "planned_through": 0.0 if episode == 0 else 1.0,  # 0: source, 1: progressive
            "holdout_mse": report.holdout_mse_mean,
        })
        write_csv(run_dir / "metrics.csv", rows)
        save_progressive(model, run_dir / "model.pt")
        buffer.save(run_dir / "replay_buffer.npz")
    plots.plot_learning_curve(rows, run_dir / "learning_curve.png",
                              title=f"progressive adaptation to {_target_name(config, target)}")
    return rows


def _target_name(config: AdaptConfig, target: Any) -> str:
    scales = ", ".join(f"{k} {v:g}" for k, v in sorted(config.physics.items()))
    return f"{target.env_id}" + (f" ({scales})" if scales else "")
