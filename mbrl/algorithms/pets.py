"""PETS: probabilistic ensembles with trajectory sampling.

Chua, Calandra, McAllister & Levine (2018), "Deep Reinforcement Learning in a Handful of Trials
using Probabilistic Dynamics Models", Algorithm 1:

    collect random episodes into the replay buffer
    for each further episode:
        fit the probabilistic ensemble to every transition so far
        for each step: plan with CEM through the ensemble (P particles, trajectory sampling),
                       apply the first action, store the transition
        log the episode

Any planner of the registry may stand in for CEM (`planner`, `mbrl train pets --planner`).

A run directory holds the resolved config, `metrics.csv` (one row per episode; also TensorBoard
scalars where `tensorboard` is installed), the model checkpoint, the replay buffer and a
learning curve. Each episode ends at one commit point (`mbrl.runs.rundir.commit_checkpoint`): the
buffer, model, metrics and `progress.json` (the random generators' states, the env id and
dimensions, the settings the episodes ran under) become `checkpoints/episode-NNNN` all at once,
so that `resume=True` continues a run killed at any instant from its last completed episode
exactly as if it had not stopped. A resume refuses a run directory whose checkpoint is damaged
or whose config, data and model do not belong together; of the settings, only `episodes` may
change on resume (a run extended or cut short), and the change is recorded.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

import envs
from controllers import MPC, MPCConfig
from controllers.policy_penalty import PolicyMean
from controllers.risk import OBJECTIVES, Objective
from controllers.validation import ConfigError, check_types, require, require_positive
from mbrl.config import env_wrapper, from_dict, require_known_env
from mbrl.control.episodes import Agent, RandomAgent, rollout
from mbrl.control.planners import build_planner, model_problem, planner_config, require_planner
from mbrl.errors import RunDirError, UserError
from mbrl.files import read_json, write_csv, write_json
from mbrl.learning.checkpoint import load_model, save_model
from mbrl.learning.data import ReplayBuffer
from mbrl.learning.models import EnsembleConfig, EnsembleDynamics
from mbrl.learning.propagation import Propagation
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
    latest_checkpoint,
    publish,
    read_run_config,
    read_run_file,
    recover,
    require_same_settings,
    tensorboard_writer,
)
from mbrl.runs.video import try_render, write_video

log = logging.getLogger(__name__)

#: The settings that may change when a run resumes.
RESUMABLE_CHANGES = ("episodes",)


@dataclass(frozen=True)
class PETSConfig:
    """Settings of one PETS run."""

    #: Registered env id (`backend/task`).
    env_id: str = "dmc/cartpole-swingup"
    #: Simulator steps per control step (PlaNet and PETS use 4-8 on dm_control).
    action_repeat: int = 4
    #: Episodes in all, the random ones included.
    episodes: int = 20
    #: Episodes of uniformly random actions before the first model.
    random_episodes: int = 1
    #: Control steps per episode (None: the env's own time limit).
    episode_steps: int | None = None
    #: Seed of the env, the planner and the model.
    seed: int = 0
    #: Particles per candidate sequence (P).
    particles: int = 20
    #: How particles move through the ensemble.
    propagation: str = Propagation.TS_INFINITY.value
    #: How a candidate's particle returns become its score: "mean" (PETS), or risk-averse
    #: "worst" or "cvar" (EPOpt's CVaR of the worst `risk_epsilon` fraction of particles).
    risk: str = "mean"
    #: The fraction of the worst particles "cvar" averages, in (0, 1].
    risk_epsilon: float = 0.1
    #: The dynamics ensemble.
    model: EnsembleConfig = field(default_factory=EnsembleConfig)
    #: Fitting the ensemble after each episode.
    train: TrainConfig = field(default_factory=TrainConfig)
    #: The planner, by its name in the registry (`mbrl.control.planners`): PETS's is cem.
    planner: str = "cem"
    #: Planning horizon, in control steps.
    horizon: int = 15
    #: The planner's settings over the registry's (for cem: population, elites, iterations,
    #: momentum, ...; see its config dataclass, `CEMConfig`).
    planner_settings: dict[str, Any] = field(
        default_factory=lambda: {"population": 350, "iterations": 5}
    )
    #: Receding horizon: replanning period, warm start and the per-replan time budget.
    mpc: MPCConfig = field(default_factory=MPCConfig)
    #: Domain randomisation of the training episodes (`sim2real.randomization`'s
    #: `RandomizationConfig` settings, through the "randomize" env wrapper; each episode's
    #: draw goes into metrics.csv); None: the nominal robot. Evaluation is on the nominal robot.
    randomize: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        check_types(self)
        require_known_env(self)
        require_positive(self, "action_repeat", "episodes", "random_episodes", "particles",
                         "horizon")
        require_planner(self)
        require(self, "random_episodes", self.random_episodes <= self.episodes,
                f"must not exceed episodes ({self.episodes})")
        require(self, "episode_steps", self.episode_steps is None or self.episode_steps >= 1,
                "must be >= 1 or null")
        require(self, "propagation", self.propagation in {p.value for p in Propagation},
                f"must be one of {[p.value for p in Propagation]}")
        require(self, "risk", self.risk in OBJECTIVES, f"must be one of {list(OBJECTIVES)}")
        require(self, "risk_epsilon", 0.0 < self.risk_epsilon <= 1.0, "must be in (0, 1]")
        if self.propagation == Propagation.EXPECTATION.value:
            require(self, "particles", self.particles == 1, "must be 1 for expectation")
        else:
            require(self, "particles", self.particles % self.model.ensemble_size == 0,
                    f"must be a multiple of model.ensemble_size ({self.model.ensemble_size})")


def resolved_planner(config: PETSConfig) -> Any:
    """The config dataclass of `config`'s planner (`CEMConfig` for cem), settings resolved."""
    return planner_config(config.planner, config.horizon, **config.planner_settings)


def with_planner(config: PETSConfig, name: str, settings: Any) -> PETSConfig:
    """`config` planning with registered planner `name` under `settings`, a config dataclass
    of that planner (its horizon becomes the run's)."""
    values = dataclasses.asdict(settings)
    horizon = values.pop("horizon")
    return dataclasses.replace(config, planner=name, horizon=horizon, planner_settings=values)


def train_pets(
    config: PETSConfig,
    run_dir: Path,
    resume: bool = False,
    progress: Callable[[Iterable[int]], Iterable[int]] = lambda episodes: episodes,
) -> list[dict[str, float]]:
    """Run PETS, writing `run_dir` (created if missing); return the metrics, one row per
    episode.

    With `resume`, continue the run in `run_dir` from its last committed episode; `config`
    must be the run's own (`config.json`) but for `RESUMABLE_CHANGES`, which are applied and
    recorded.

    Raises:
        RunDirError: on resume, if the run directory is damaged or does not belong with
            `config`.
    """
    env = make_training_env(config)
    task = env.task
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    buffer = ReplayBuffer(task.obs_dim, task.act_dim)
    model = EnsembleDynamics(
        task.obs_dim, task.act_dim, config.model,
        generator=torch.Generator().manual_seed(config.seed),
    )
    rows: list[dict[str, float]] = []
    changes: list[dict[str, Any]] = []
    if resume:
        restored = _restore(run_dir, config, env, rng, generator)
        if restored is not None:
            buffer, model, rows, changes = restored
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / CONFIG, config)

    board = tensorboard_writer(run_dir, purge_after=int(rows[-1]["env_steps"]) if rows else None)
    for episode in progress(range(len(rows), config.episodes)):
        report, controller = None, None
        agent: Agent = RandomAgent(task.action_low, task.action_high, rng)
        if episode >= config.random_episodes:
            report = fit_buffer(model, buffer, config.train, generator)
            agent = controller = planning_controller(model, task, config, generator)
        episode_run = rollout(env, agent, seed=int(rng.integers(2**31)),
                              observe=model_input, buffer=buffer)
        rows.append(
            {
                "episode": episode,
                "return": episode_run.episode_return,
                "env_steps": (rows[-1]["env_steps"] if rows else 0)
                + episode_run.steps * config.action_repeat,
                "holdout_nll": _mean_or_nan(report.holdout_nll_mean if report else None),
                "holdout_mse": _mean_or_nan(report.holdout_mse_mean if report else None),
                "plan_ms": float(np.median(episode_run.act_ms)) if report else float("nan"),
                "diverged_replans": controller.stats.diverged if controller else 0,
                **_randomization_record(env),
            }
        )
        if board is not None:
            for key, value in rows[-1].items():
                board.add_scalar(f"pets/{key}", value, global_step=int(rows[-1]["env_steps"]))
            board.flush()
        _save(run_dir, buffer, model, rows, rng, generator, config, changes)
    if board is not None:
        board.close()
    return rows


def _mean_or_nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def model_input(obs: np.ndarray) -> torch.Tensor:
    """An observation as the learned model takes it (float32)."""
    return torch.from_numpy(obs).float()


def planning_controller(
    model: EnsembleDynamics, task: envs.Task, config: PETSConfig, generator: torch.Generator,
    policy: PolicyMean | None = None,
) -> MPC:
    """MPC with the config's planner through the ensemble (TS particles, the task's reward);
    with `policy` (a student's mean action at observations), policy-seeded: its own actions,
    rolled through the members' mean, join the planner's candidates (CEM) or start iLQR."""
    problem = model_problem(model, task, config.horizon, generator, env_id=config.env_id,
                            particles=config.particles,
                            propagation=Propagation(config.propagation),
                            objective=cast(Objective, config.risk), epsilon=config.risk_epsilon,
                            policy=policy)
    return MPC(build_planner(config.planner, problem, **config.planner_settings), config.mpc)


def load_run(run_dir: Path) -> tuple[PETSConfig, EnsembleDynamics]:
    """A PETS run's config and its last committed model.

    Raises:
        RunDirError: naming the folder or file, if it is not a complete run directory.
    """
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir} is not a run directory (no such folder)")
    config = _read_config(run_dir / CONFIG)
    # The last committed checkpoint is the run's own; the published copy may lag it by a kill.
    checkpoint = latest_checkpoint(run_dir)
    return config, read_run_file(load_model, (checkpoint or run_dir) / MODEL)


def evaluate_pets(
    run_dir: Path, episodes: int = 1, seed: int = 12345, video: bool = True,
    env_id: str | None = None, physics: dict[str, float] | None = None,
    risk: str | None = None, risk_epsilon: float | None = None,
) -> dict[str, Any]:
    """Replay a run's saved model and planner for `episodes`; write `eval.json` (and a video
    of the first episode where rendering works) into `run_dir`.

    `risk` and `risk_epsilon` replace the run's scoring of particle returns (robust MPC
    through the same model); the file name then ends in `-risk=<risk>`.

    With `env_id` (another robot with the same observation and action layout, such as
    another backend's cart-pole) or `physics` (scales, `RobotEnv.set_physics_params`), the
    episodes run there instead, the nominal-robot model unchanged: how the run transfers;
    the results go to `eval-<env>-<scales>.json`.

    Raises:
        UserError: for a robot whose observations or actions differ from the model's, a
            physics scale the robot does not have or takes, or a bad risk setting.
    """
    config, model = load_run(run_dir)
    target = on_robot(config, env_id) if env_id is not None else config
    config = with_risk(config, risk, risk_epsilon)
    env = _make_env(target)
    if (env.task.obs_dim, env.task.act_dim) != (model.obs_dim, model.act_dim):
        raise UserError(f"--env {target.env_id}: observations [{env.task.obs_dim}] and "
                        f"actions [{env.task.act_dim}], but the model in {run_dir} takes "
                        f"[{model.obs_dim}] and [{model.act_dim}]")
    try:
        env.set_physics_params(**(physics or {}))
    except ValueError as error:
        raise UserError(f"--physics: {error}") from None
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    returns, frames = [], []
    for episode in range(episodes):
        on_step = (lambda _: frames.append(try_render(env))) if video and episode == 0 else None
        episode_run = rollout(
            env,
            planning_controller(model, env.task, config, generator),
            seed=int(rng.integers(2**31)),
            observe=model_input,
            on_step=on_step,
        )
        returns.append(episode_run.episode_return)
    shifted = env_id is not None or bool(physics)
    parts = [target.env_id, *(f"{k}={v:g}" for k, v in sorted((physics or {}).items()))]
    tag = "".join(c if c.isalnum() or c in "._=" else "-" for c in "-".join(parts))
    name = f"eval-{tag}" if shifted else "eval"
    if risk is not None or risk_epsilon is not None:
        name += f"-risk={config.risk}" + (f"{config.risk_epsilon:g}"
                                          if config.risk == "cvar" else "")
    clip = write_video(frames, run_dir / f"{name}.mp4", fps=round(1 / env.control_timestep))
    result = {
        "env_id": target.env_id,
        "physics": env.physics_params(),
        "returns": returns,
        "mean_return": float(np.mean(returns)),
        "risk": config.risk,
        "risk_epsilon": config.risk_epsilon,
        "seed": seed,
        "video": str(clip) if clip else None,
    }
    write_json(run_dir / f"{name}.json", result)
    return result


def _make_env(config: PETSConfig | Any) -> envs.RobotEnv:
    """The nominal robot at the run's action repeat and episode length."""
    return envs.make(config.env_id, action_repeat=config.action_repeat, **_length(config))


def with_risk(config: PETSConfig, risk: str | None, risk_epsilon: float | None) -> PETSConfig:
    """`config` scoring plans by `risk` and `risk_epsilon` where given (robust MPC across the
    ensemble's particles).

    Raises:
        UserError: naming the option, for an unknown objective or epsilon out of (0, 1].
    """
    given = {"risk": risk, "risk_epsilon": risk_epsilon}
    scoring: dict[str, Any] = {name: value for name, value in given.items() if value is not None}
    try:
        return dataclasses.replace(config, **scoring)
    except ConfigError as error:
        raise UserError(f"--{error.path.replace('_', '-')}: {error.problem}") from None


def on_robot(config: PETSConfig, env_id: str) -> PETSConfig:
    """`config` driving robot `env_id` (same observations and actions) at the run's control
    period: the action repeat becomes the one that makes `env_id`'s control step as long (the
    PyBullet cart-pole steps 20 ms, the MuJoCo one 10 ms), so the model's steps mean the same.

    Raises:
        UserError: for an unknown env id, or one whose control step does not divide the
            run's control period.
    """
    if env_id == config.env_id:
        return config
    period = _control_step(config.env_id) * config.action_repeat
    step = _control_step(env_id)
    repeat = round(period / step)
    if repeat < 1 or not math.isclose(repeat * step, period, rel_tol=1e-6):
        raise UserError(f"--env {env_id}: its control step ({step * 1e3:g} ms) does not divide "
                        f"the run's control period ({period * 1e3:g} ms)")
    return dataclasses.replace(config, env_id=env_id, action_repeat=repeat)


def _control_step(env_id: str) -> float:
    """The control step of robot `env_id` without action repeat, seconds."""
    try:
        robot = envs.make(env_id)
    except KeyError:
        raise UserError(f"--env {env_id}: unknown env id (see `mbrl envs`)") from None
    step = robot.control_timestep
    robot.close()
    return step


def _length(config: PETSConfig | Any) -> dict[str, Any]:
    """The simulator's episode length, where the config sets one."""
    if not config.episode_steps:
        return {}
    return {"max_episode_steps": config.episode_steps * config.action_repeat}


def make_training_env(config: PETSConfig | Any) -> envs.RobotEnv:
    """The robot the run trains on: the nominal one, or with `config.randomize`, the robot
    randomised under the action repeat (delays and noise act on each simulator step).
    `config` is any run config with `env_id`, `action_repeat`, `episode_steps` and
    `randomize` (PETS's, a distillation's).

    Raises:
        ConfigError: naming `randomize.<field>` for settings this robot cannot take.
    """
    if config.randomize is None:
        return _make_env(config)
    try:
        robot = env_wrapper("randomize").wrap(envs.make(config.env_id, **_length(config)),
                                             config.randomize)
    except ConfigError as error:
        raise error.inside("randomize") from None
    if config.action_repeat == 1:
        return robot
    return envs.ActionRepeat(robot, config.action_repeat)


def _randomization_record(env: envs.RobotEnv) -> dict[str, float]:
    """The last episode's randomisation draw (`episode_record`), if the env has one."""
    inner: Any = env
    while inner is not None:
        record = getattr(type(inner), "episode_record", None)
        if record is not None:
            return dict(record(inner))
        inner = getattr(inner, "inner", None)
    return {}


def _save(
    run_dir: Path,
    buffer: ReplayBuffer,
    model: EnsembleDynamics,
    rows: list[dict[str, float]],
    rng: np.random.Generator,
    generator: torch.Generator,
    config: PETSConfig,
    changes: list[dict[str, Any]],
) -> None:
    """Commit the episode's results as one checkpoint, then publish them and the plot."""
    episode = int(rows[-1]["episode"])

    def write(folder: Path) -> None:
        buffer.save(folder / BUFFER)
        save_model(model, folder / MODEL)
        write_csv(folder / METRICS, rows)
        write_json(folder / PROGRESS, {
            "episodes_done": len(rows),
            "buffer_len": len(buffer),
            "env_id": config.env_id,
            "obs_dim": buffer.obs_dim,
            "act_dim": buffer.act_dim,
            "config": config,
            "changes_on_resume": changes,
            "numpy_rng": rng.bit_generator.state,
            "torch_generator": generator.get_state().tolist(),
        })

    checkpoint = commit_checkpoint(run_dir, episode, write)
    publish(checkpoint, run_dir, PUBLISHED)
    plots.plot_learning_curve(
        rows, run_dir / "learning_curve.png", title=f"PETS on {config.env_id}"
    )
    discard_older_checkpoints(run_dir, keep=checkpoint)


def _restore(
    run_dir: Path,
    config: PETSConfig,
    env: envs.RobotEnv,
    rng: np.random.Generator,
    generator: torch.Generator,
) -> tuple[ReplayBuffer, EnsembleDynamics, list[dict[str, float]], list[dict[str, Any]]] | None:
    """The state after the last committed episode (None if none was), with the run
    directory put back to it; `config.json` updated with any of `RESUMABLE_CHANGES`.

    Raises:
        RunDirError: if the directory is not a run directory, is damaged, or its config, data
            and model do not belong together or with `config`.
    """
    if not run_dir.is_dir():
        raise RunDirError(f"cannot resume {run_dir}: there is no such run directory")
    stored = _read_config(run_dir / CONFIG)
    require_same_settings(config, stored, RESUMABLE_CHANGES, f"{run_dir / CONFIG}")
    checkpoint = recover(run_dir, PUBLISHED)
    if checkpoint is None:
        left = [name for name in (*PUBLISHED, "progress.json") if (run_dir / name).exists()]
        if left:
            raise RunDirError(
                f"cannot resume {run_dir}: it holds {', '.join(left)} but no committed "
                f"checkpoint in {run_dir / 'checkpoints'}; the run directory is damaged"
            )
        _record_changes(run_dir, config, stored, [])
        return None  # killed before its first episode was committed: start again
    progress_path = checkpoint / PROGRESS
    progress = read_json(progress_path)
    try:
        ran_under = from_dict(PETSConfig, progress["config"])
        done, buffer_len = int(progress["episodes_done"]), int(progress["buffer_len"])
        env_id, dims = progress["env_id"], (int(progress["obs_dim"]), int(progress["act_dim"]))
        changes = list(progress["changes_on_resume"])
        rng_state, torch_state = progress["numpy_rng"], progress["torch_generator"]
    except (KeyError, TypeError, ValueError) as error:
        raise RunDirError(f"{progress_path} is damaged: {type(error).__name__}: {error}") from None
    require_same_settings(config, ran_under, RESUMABLE_CHANGES,
                          f"{progress_path} (the settings its episodes ran under)")
    task = env.task
    if env_id != config.env_id or dims != (task.obs_dim, task.act_dim):
        raise RunDirError(
            f"{checkpoint} holds data of {env_id} (obs {dims[0]}, act {dims[1]}), but the "
            f"config asks for {config.env_id} (obs {task.obs_dim}, act {task.act_dim})"
        )
    if done != checkpoint_episode(checkpoint) + 1:
        raise RunDirError(f"{progress_path} counts {done} episodes, but the checkpoint is "
                          f"of episode {checkpoint_episode(checkpoint)}")
    buffer = read_run_file(ReplayBuffer.load, checkpoint / BUFFER)
    model = read_run_file(load_model, checkpoint / MODEL)
    for what, (obs_dim, act_dim) in (("buffer", (buffer.obs_dim, buffer.act_dim)),
                                      ("model", (model.obs_dim, model.act_dim))):
        if (obs_dim, act_dim) != dims:
            raise RunDirError(f"the {what} in {checkpoint} has obs {obs_dim}, act {act_dim}, "
                              f"but {progress_path} says obs {dims[0]}, act {dims[1]}")
    if len(buffer) != buffer_len:
        raise RunDirError(f"{checkpoint / BUFFER} holds {len(buffer)} transitions, but "
                          f"{progress_path} says {buffer_len}")
    with (checkpoint / METRICS).open() as handle:
        rows = [_parse_row(row) for row in csv.DictReader(handle)]
    if len(rows) != done:
        raise RunDirError(f"{checkpoint / METRICS} holds {len(rows)} episodes, but "
                          f"{progress_path} says {done}")
    if config.episodes < done:
        raise RunDirError(f"cannot resume {run_dir} with episodes={config.episodes}: "
                          f"{done} episodes are done already")
    rng.bit_generator.state = rng_state
    generator.set_state(torch.tensor(torch_state, dtype=torch.uint8))
    return buffer, model, rows, _record_changes(run_dir, config, stored, changes, done)


def _read_config(path: Path) -> PETSConfig:
    return read_run_config(PETSConfig, path, "mbrl train pets")


def _record_changes(
    run_dir: Path, config: PETSConfig, stored: PETSConfig, changes: list[dict[str, Any]],
    at_episode: int = 0,
) -> list[dict[str, Any]]:
    """`changes` with this resume's changes of `RESUMABLE_CHANGES` appended, `config.json`
    rewritten to `config` if there are any."""
    changed = {
        name: [getattr(stored, name), getattr(config, name)]
        for name in RESUMABLE_CHANGES if getattr(stored, name) != getattr(config, name)
    }
    if not changed:
        return changes
    log.info("resuming %s at episode %d with %s", run_dir, at_episode, changed)
    write_json(run_dir / CONFIG, config)
    return [*changes, {"at_episode": at_episode, "changed": changed}]


def _parse_row(row: dict[str, str]) -> dict[str, float]:
    """A metrics row read back from CSV, with the counts as ints like the row first written."""
    counts = ("episode", "env_steps", "diverged_replans")
    return {k: int(v) if k in counts else float(v) for k, v in row.items()}
