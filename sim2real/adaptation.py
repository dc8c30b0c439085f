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

import csv
import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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
from mbrl.config import load as load_config
from mbrl.control.episodes import rollout
from mbrl.errors import RunDirError, UserError
from mbrl.files import read_json, write_csv, write_json
from mbrl.learning.data import ReplayBuffer
from mbrl.learning.models import EnsembleDynamics
from mbrl.learning.training import TrainConfig, fit_buffer
from mbrl.runs import plots
from mbrl.runs.rundir import (
    BUFFER,
    CONFIG,
    METRICS,
    MODEL,
    PROGRESS,
    PUBLISHED,
    checkpoint_episode,
    commit_checkpoint,
    discard_older_checkpoints,
    publish,
    recover,
    require_same_settings,
)
from sim2real.progressive import (
    ProgressiveEnsembleDynamics,
    load_progressive,
    save_progressive,
)


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
    #: The new column's start: "source" (a copy of the source column, adapters silent: the
    #: model starts as the source) or "random" (Rusu et al.'s).
    init: Literal["source", "random"] = "source"
    #: Seed of the episodes, the new column and its training.
    seed: int = 0
    #: Fitting the new column (None: the source run's settings, keeping the source's
    #: normalisers for a "source" start).
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
    resume: bool = False,
) -> list[dict[str, float]]:
    """Run the adaptation (see the module docstring) on `prepared` (or `prepare(config)`);
    write `run_dir` (config.json, metrics.csv, model.pt, replay_buffer.npz,
    learning_curve.png, checkpoints/) and return the metrics, a row an episode.

    With `resume`, continue the run in `run_dir` from its last committed episode; `config`
    must be the run's own (`config.json`) but for `episodes`.

    Raises:
        UserError: as `prepare`, before anything is written.
        RunDirError: on resume, for a damaged run directory or one of other settings.
    """
    prepared = prepared or prepare(config)
    target, source, env = prepared.target, prepared.source, prepared.env
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = ProgressiveEnsembleDynamics(source, config.adapter_size,
                                        torch.Generator().manual_seed(config.seed), config.init)
    buffer = ReplayBuffer(source.obs_dim, source.act_dim)
    rows: list[dict[str, float]] = []
    restored = _restore(run_dir, config, rng, generator) if resume else None
    if restored is not None:
        model, buffer, rows = restored
    if not resume:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / CONFIG, config)
    train = config.train or dataclasses.replace(target.train,
                                                fit_normalizers=config.init == "random")
    for episode in progress(range(len(rows), config.episodes)):
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
        _commit(run_dir, model, buffer, rows, rng, generator)
        plots.plot_learning_curve(rows, run_dir / "learning_curve.png",
                                  title=f"progressive adaptation to {_target_name(config, target)}")
    return rows


def _commit(run_dir: Path, model: ProgressiveEnsembleDynamics, buffer: ReplayBuffer,
            rows: list[dict[str, float]], rng: np.random.Generator,
            generator: torch.Generator) -> None:
    """Commit the episode's results as one checkpoint, then publish them."""

    def write(folder: Path) -> None:
        save_progressive(model, folder / MODEL)
        buffer.save(folder / BUFFER)
        write_csv(folder / METRICS, rows)
        write_json(folder / PROGRESS, {"episodes_done": len(rows), "buffer_len": len(buffer),
                                       "numpy_rng": rng.bit_generator.state,
                                       "torch_generator": generator.get_state().tolist()})

    checkpoint = commit_checkpoint(run_dir, int(rows[-1]["episode"]), write)
    publish(checkpoint, run_dir, PUBLISHED)
    discard_older_checkpoints(run_dir, keep=checkpoint)


def _restore(
    run_dir: Path, config: AdaptConfig, rng: np.random.Generator, generator: torch.Generator,
) -> tuple[ProgressiveEnsembleDynamics, ReplayBuffer, list[dict[str, float]]] | None:
    """The state after the last committed episode (None if none was), with `rng` and
    `generator` put back to theirs and the run directory to its commit.

    Raises:
        RunDirError: for a directory that is not an adaptation run, is damaged, or ran under
            other settings.
    """
    if not (run_dir / CONFIG).is_file():
        raise RunDirError(f"cannot resume {run_dir}: no {CONFIG} of an `mbrl adapt` run")
    stored = load_config(AdaptConfig, run_dir / CONFIG)
    require_same_settings(config, stored, ("episodes",), f"{run_dir / CONFIG}")
    if config.episodes != stored.episodes:
        write_json(run_dir / CONFIG, config)
    checkpoint = recover(run_dir, PUBLISHED)
    if checkpoint is None:
        return None  # killed before its first episode was committed: start again
    progress_path = checkpoint / PROGRESS
    progress = read_json(progress_path)
    try:
        done, buffer_len = int(progress["episodes_done"]), int(progress["buffer_len"])
        rng.bit_generator.state = progress["numpy_rng"]
        generator.set_state(torch.tensor(progress["torch_generator"], dtype=torch.uint8))
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise RunDirError(f"{progress_path} is damaged: {type(error).__name__}: {error}") from None
    if done != checkpoint_episode(checkpoint) + 1:
        raise RunDirError(f"{progress_path} counts {done} episodes, but the checkpoint is of "
                          f"episode {checkpoint_episode(checkpoint)}")
    buffer = ReplayBuffer.load(checkpoint / BUFFER)
    if len(buffer) != buffer_len:
        raise RunDirError(f"{checkpoint / BUFFER} holds {len(buffer)} transitions, but "
                          f"{progress_path} says {buffer_len}")
    with (checkpoint / METRICS).open() as handle:
        rows = [{key: float(value) for key, value in row.items()}
                for row in csv.DictReader(handle)]
    return load_progressive(checkpoint / MODEL), buffer, rows


def _target_name(config: AdaptConfig, target: Any) -> str:
    scales = ", ".join(f"{k} {v:g}" for k, v in sorted(config.physics.items()))
    return f"{target.env_id}" + (f" ({scales})" if scales else "")
