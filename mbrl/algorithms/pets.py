"""PETS: probabilistic ensembles with trajectory sampling.

Chua, Calandra, McAllister & Levine (2018), "Deep Reinforcement Learning in a Handful of Trials
using Probabilistic Dynamics Models", Algorithm 1:

    collect random episodes into the replay buffer
    for each further episode:
        fit the probabilistic ensemble to every transition so far
        for each step: plan with CEM through the ensemble (P particles, trajectory sampling),
                       apply the first action, store the transition
        log the episode

A run directory holds the resolved config, `metrics.csv` (one row per episode; also TensorBoard
scalars where `tensorboard` is installed), the model checkpoint, the replay buffer and a
learning curve; `progress.json`, written last after each
episode, marks it complete and holds the random generators' states, so that `resume=True`
continues a killed run from its last completed episode exactly as if it had not stopped.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import envs
from controllers import CEM, MPC, CEMConfig, MPCConfig
from controllers.validation import check_types, require, require_positive
from mbrl import plots
from mbrl.checkpoint import load_model, save_model
from mbrl.config import load as load_config
from mbrl.config import require_known_env
from mbrl.data import ReplayBuffer
from mbrl.models import EnsembleConfig, EnsembleDynamics
from mbrl.propagation import ModelDynamics, Propagation
from mbrl.rundir import write_csv, write_json
from mbrl.training import TrainConfig, fit_buffer
from mbrl.video import try_render, write_video

METRICS = "metrics.csv"
PROGRESS = "progress.json"
CHECKPOINT = "model.pt"
BUFFER = "replay_buffer.npz"


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
    #: The dynamics ensemble.
    model: EnsembleConfig = field(default_factory=EnsembleConfig)
    #: Fitting the ensemble after each episode.
    train: TrainConfig = field(default_factory=TrainConfig)
    #: The CEM planner (iCEM options included).
    planner: CEMConfig = field(
        default_factory=lambda: CEMConfig(
            horizon=15, population=350, elites=35, iterations=5, momentum=0.1
        )
    )
    #: Receding horizon: replanning period, warm start and the per-replan time budget.
    mpc: MPCConfig = field(default_factory=MPCConfig)

    def __post_init__(self) -> None:
        check_types(self)
        require_known_env(self)
        require_positive(self, "action_repeat", "episodes", "random_episodes", "particles")
        require(self, "random_episodes", self.random_episodes <= self.episodes,
                f"must not exceed episodes ({self.episodes})")
        require(self, "episode_steps", self.episode_steps is None or self.episode_steps >= 1,
                "must be >= 1 or null")
        require(self, "propagation", self.propagation in {p.value for p in Propagation},
                f"must be one of {[p.value for p in Propagation]}")
        if self.propagation == Propagation.EXPECTATION.value:
            require(self, "particles", self.particles == 1, "must be 1 for expectation")
        else:
            require(self, "particles", self.particles % self.model.ensemble_size == 0,
                    f"must be a multiple of model.ensemble_size ({self.model.ensemble_size})")


def train_pets(
    config: PETSConfig,
    run_dir: Path,
    resume: bool = False,
    progress: Callable[[Iterable[int]], Iterable[int]] = lambda episodes: episodes,
) -> list[dict[str, float]]:
    """Run PETS, writing `run_dir` (created if missing); return the metrics, one row per
    episode."""
    run_dir.mkdir(parents=True, exist_ok=True)
    env = _make_env(config)
    task = env.task
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    buffer = ReplayBuffer(task.obs_dim, task.act_dim)
    model = EnsembleDynamics(
        task.obs_dim, task.act_dim, config.model,
        generator=torch.Generator().manual_seed(config.seed),
    )
    rows: list[dict[str, float]] = []
    first_episode = 0
    if resume and (run_dir / PROGRESS).exists():
        first_episode, buffer, model, rows = _restore(run_dir, config, rng, generator)
    else:
        write_json(run_dir / "config.json", config)

    board = _tensorboard(run_dir)
    for episode in progress(range(first_episode, config.episodes)):
        report = None
        if episode < config.random_episodes:
            policy = _random_policy(task, rng)
        else:
            report = fit_buffer(model, buffer, config.train, generator)
            policy = planning_policy(model, task, config, generator)
        episode_return, steps, plan_ms = run_episode(
            env, policy, seed=int(rng.integers(2**31)), buffer=buffer
        )
        rows.append(
            {
                "episode": episode,
                "return": episode_return,
                "env_steps": (rows[-1]["env_steps"] if rows else 0) + steps * config.action_repeat,
                "holdout_nll": _mean_or_nan(report.holdout_nll_mean if report else None),
                "holdout_mse": _mean_or_nan(report.holdout_mse_mean if report else None),
                "plan_ms": float(np.median(plan_ms)) if report else float("nan"),
            }
        )
        _save(run_dir, buffer, model, rows, rng, generator, config)
        if board is not None:
            for key, value in rows[-1].items():
                board.add_scalar(f"pets/{key}", value, global_step=int(rows[-1]["env_steps"]))
            board.flush()
    if board is not None:
        board.close()
    return rows


def _tensorboard(run_dir: Path) -> Any:
    """A TensorBoard writer into `run_dir/tensorboard`, or None where it is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # the `tensorboard` extra is optional
        return None
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))


Policy = Callable[[np.ndarray], np.ndarray]


def _mean_or_nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _random_policy(task: envs.Task, rng: np.random.Generator) -> Policy:
    return lambda obs: rng.uniform(task.action_low, task.action_high)


def planning_controller(
    model: EnsembleDynamics, task: envs.Task, config: PETSConfig, generator: torch.Generator
) -> MPC:
    """MPC with CEM through the ensemble (TS particles, the task's reward), as `config` says."""
    dynamics = ModelDynamics(
        model, task, config.particles, Propagation(config.propagation), generator
    )
    planner = CEM(
        dynamics,
        torch.tensor(task.action_low),
        torch.tensor(task.action_high),
        config.planner,
        generator,
    )
    return MPC(planner, config.mpc)


def planning_policy(
    model: EnsembleDynamics, task: envs.Task, config: PETSConfig, generator: torch.Generator
) -> Policy:
    """`planning_controller` as a function of the observation (numpy in, numpy out)."""
    controller = planning_controller(model, task, config, generator)
    return lambda obs: controller.act(torch.from_numpy(obs).float()).numpy()


def evaluate_pets(
    run_dir: Path, episodes: int = 1, seed: int = 12345, video: bool = True
) -> dict[str, Any]:
    """Replay a run's saved model and planner for `episodes`; write `eval.json` (and a video
    of the first episode where rendering works) into `run_dir`."""
    config = load_config(PETSConfig, run_dir / "config.json")
    model = load_model(run_dir / CHECKPOINT)
    env = _make_env(config)
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    returns, frames = [], []
    for episode in range(episodes):
        on_step = (lambda: frames.append(try_render(env))) if video and episode == 0 else None
        episode_return, _, _ = run_episode(
            env,
            planning_policy(model, env.task, config, generator),
            seed=int(rng.integers(2**31)),
            on_step=on_step,
        )
        returns.append(episode_return)
    clip = write_video(frames, run_dir / "eval.mp4", fps=round(1 / env.control_timestep))
    result = {
        "returns": returns,
        "mean_return": float(np.mean(returns)),
        "seed": seed,
        "video": str(clip) if clip else None,
    }
    write_json(run_dir / "eval.json", result)
    return result


def _make_env(config: PETSConfig) -> envs.RobotEnv:
    steps: dict[str, Any] = {}
    if config.episode_steps:
        steps["max_episode_steps"] = config.episode_steps * config.action_repeat
    return envs.make(config.env_id, action_repeat=config.action_repeat, **steps)


def run_episode(
    env: envs.RobotEnv,
    policy: Policy,
    seed: int,
    buffer: ReplayBuffer | None = None,
    on_step: Callable[[], object] | None = None,
) -> tuple[float, int, list[float]]:
    """One episode of `policy` (stored in `buffer` if given); its return, steps and the
    milliseconds each action took to choose."""
    obs, _ = env.reset(seed=seed)
    episode_return, steps, plan_ms = 0.0, 0, []
    done = False
    while not done:
        started = time.perf_counter()
        action = policy(obs)
        plan_ms.append((time.perf_counter() - started) * 1e3)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        if buffer is not None:
            buffer.add(obs, env.check_action(action), next_obs, reward, terminated, truncated)
        if on_step is not None:
            on_step()
        episode_return += reward
        steps += 1
        obs, done = next_obs, terminated or truncated
    return episode_return, steps, plan_ms


def _save(
    run_dir: Path,
    buffer: ReplayBuffer,
    model: EnsembleDynamics,
    rows: list[dict[str, float]],
    rng: np.random.Generator,
    generator: torch.Generator,
    config: PETSConfig,
) -> None:
    """Write the episode's results, each file atomically, `progress.json` last."""
    buffer.save(run_dir / BUFFER)
    save_model(model, run_dir / CHECKPOINT)
    write_csv(run_dir / METRICS, rows)
    plots.plot_learning_curve(
        rows, run_dir / "learning_curve.png", title=f"PETS on {config.env_id}"
    )
    write_json(
        run_dir / PROGRESS,
        {
            "episodes_done": len(rows),
            "buffer_len": len(buffer),
            "numpy_rng": rng.bit_generator.state,
            "torch_generator": generator.get_state().tolist(),
        },
    )


def _restore(
    run_dir: Path, config: PETSConfig, rng: np.random.Generator, generator: torch.Generator
) -> tuple[int, ReplayBuffer, EnsembleDynamics, list[dict[str, float]]]:
    """The state after the last completed episode; files written after it are cut back."""
    # As dataclasses, so that a setting added since the run began compares at its default.
    if load_config(PETSConfig, run_dir / "config.json") != config:
        raise ValueError(f"{run_dir}: resuming with a config that differs from config.json")
    progress = json.loads((run_dir / PROGRESS).read_text())
    done, buffer_len = int(progress["episodes_done"]), int(progress["buffer_len"])
    buffer = ReplayBuffer.load(run_dir / BUFFER)
    if len(buffer) < buffer_len:
        raise ValueError(
            f"{run_dir / BUFFER} holds {len(buffer)} transitions, expected "
            f"at least {buffer_len}: the run directory is damaged"
        )
    if len(buffer) > buffer_len:  # killed after saving the buffer, before progress.json
        buffer = _first_transitions(buffer, buffer_len)
    model = load_model(run_dir / CHECKPOINT)
    with (run_dir / METRICS).open() as handle:
        rows = [_parse_row(row) for row in csv.DictReader(handle)][:done]
    rng.bit_generator.state = progress["numpy_rng"]
    generator.set_state(torch.tensor(progress["torch_generator"], dtype=torch.uint8))
    return done, buffer, model, rows


def _parse_row(row: dict[str, str]) -> dict[str, float]:
    """A metrics row read back from CSV, with the counts as ints like the row first written."""
    return {k: int(v) if k in ("episode", "env_steps") else float(v) for k, v in row.items()}


def _first_transitions(buffer: ReplayBuffer, n: int) -> ReplayBuffer:
    arrays = buffer.arrays()
    trimmed = ReplayBuffer(buffer.obs_dim, buffer.act_dim)
    trimmed.add_batch(
        *(arrays[k][:n] for k in ("obs", "act", "next_obs", "reward", "terminated", "truncated"))
    )
    return trimmed
