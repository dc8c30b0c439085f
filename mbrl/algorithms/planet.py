"""PlaNet: a latent dynamics model learned from camera frames, planned through with CEM.

Hafner, Lillicrap, Fischer, Villegas, Ha, Lee & Davidson (2019), "Learning Latent Dynamics for
Planning from Pixels", Algorithm 1:

    collect S seed episodes of random actions into the frame replay
    for each further episode:
        for C update steps: draw B chunks of L steps, take a gradient step on the ELBO
        for each control step: filter the frame into the belief, plan with CEM in latent
            space, add exploration noise, apply the action (repeated R simulator steps)
        log the episode

The model is `mbrl.learning.rssm.RSSM`, the data `mbrl.learning.frames.FrameReplay`, the
controller `mbrl.control.latent_mpc.LatentMPC` over any registered sampling planner. A run
directory is PETS's: `config.json`, `metrics.csv` (per episode: return, env steps, the ELBO's
terms averaged over the episode's updates, gradient norm, seconds of training, median plan
time, the open-loop prediction error on a held-out episode, and the episode's wall-clock
seconds), `model.pt` (weights and the
optimiser's state), `replay_buffer.npz` (the frames), `learning_curve.png`, TensorBoard
scalars, and PlaNet's figure: a held-out episode's frames beside the model's open-loop
predictions after `CONTEXT` filtered frames (`prediction.png`, `prediction.mp4`). Each episode
ends at one commit point (`mbrl.runs.rundir.commit_checkpoint`), so a run killed at any
instant resumes (`resume=True`) to exactly the results of a run never stopped (on the same
number of torch threads: reductions split across threads add in another order).
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import envs
from controllers import MPC, MPCConfig
from controllers.validation import ConfigError, check_types, require, require_positive
from mbrl.config import from_dict, require_known_env
from mbrl.control.episodes import Agent, RandomAgent, Step, rollout
from mbrl.control.latent_mpc import LatentMPC, frame_tensor
from mbrl.control.planners import (
    build_planner,
    latent_problem,
    planner_names,
    planner_spec,
    require_planner,
)
from mbrl.errors import RunDirError, UserError
from mbrl.files import read_json, write_csv, write_json
from mbrl.learning.checkpoint import load_rssm, save_rssm
from mbrl.learning.frames import FrameReplay
from mbrl.learning.latent_dynamics import LatentDynamics
from mbrl.learning.rssm import RSSM, RSSMConfig, preprocess
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
from mbrl.runs.video import write_video

log = logging.getLogger(__name__)

#: The settings that may change when a run resumes.
RESUMABLE_CHANGES = ("episodes",)
#: Frames of the held-out episode filtered before the open-loop prediction.
CONTEXT = 5
#: Steps predicted open loop in the figure and the `open_loop_mse` metric.
PREDICTED = 45
#: The seed of the held-out episode's reset and random actions (not a training episode's).
HELDOUT_SEED = 999_983


@dataclass(frozen=True)
class PlaNetConfig:
    """Settings of one PlaNet run (the defaults are the paper's, `PRESETS["planet_paper"]`
    on the cart-pole)."""

    #: Registered env id (`backend/task`); it must render.
    env_id: str = "dmc/cartpole-swingup"
    #: Simulator steps per control step (the paper: 8 on the cart-pole, 4 on the cheetah).
    action_repeat: int = 8
    #: Episodes in all, the seed episodes included.
    episodes: int = 100
    #: Episodes of uniformly random actions before the first update (S).
    seed_episodes: int = 5
    #: Control steps per episode (None: the env's own time limit).
    episode_steps: int | None = None
    #: Seed of the env, the model, the planner and the data.
    seed: int = 0
    #: The model and its objective.
    model: RSSMConfig = field(default_factory=RSSMConfig)
    #: Chunks per gradient step (B).
    batch_size: int = 50
    #: Steps per chunk (L).
    chunk_length: int = 50
    #: Adam's step size.
    learning_rate: float = 1e-3
    #: Adam's epsilon.
    adam_epsilon: float = 1e-4
    #: The gradient's norm is clipped to this.
    grad_clip: float = 1000.0
    #: Gradient steps before each episode (C).
    train_steps: int = 100
    #: Std of the Gaussian noise added to the planner's actions while collecting data.
    exploration_noise: float = 0.3
    #: The planner, by its name in the registry (a sampling planner or MCTS): PlaNet's is cem.
    planner: str = "cem"
    #: Planning horizon in control steps (H).
    horizon: int = 12
    #: The planner's settings over the registry's (PlaNet: 1000 candidates, 10 iterations,
    #: the top 100 refit).
    planner_settings: dict[str, Any] = field(
        default_factory=lambda: {"population": 1000, "elites": 100, "iterations": 10}
    )
    #: Receding horizon: PlaNet replans every step from a fresh N(0, 1) (no warm start).
    mpc: MPCConfig = field(default_factory=lambda: MPCConfig(warm_start=False))
    #: Run one episode without exploration noise after every this many episodes
    #: (`eval_return` in metrics.csv; 0: never).
    eval_every: int = 0

    def __post_init__(self) -> None:
        check_types(self)
        require_known_env(self)
        require_positive(self, "action_repeat", "episodes", "seed_episodes", "batch_size",
                         "chunk_length", "train_steps", "horizon")
        for name in ("learning_rate", "adam_epsilon", "grad_clip"):
            require(self, name, getattr(self, name) > 0, "must be > 0")
        require(self, "planner", self.planner not in planner_names()
                or not planner_spec(self.planner).gradient_based,
                "must be a sampling planner or mcts: a latent model has no quadratic cost")
        require_planner(self)
        require(self, "seed_episodes", self.seed_episodes <= self.episodes,
                f"must not exceed episodes ({self.episodes})")
        require(self, "episode_steps", self.episode_steps is None or self.episode_steps >= 1,
                "must be >= 1 or null")
        require(self, "exploration_noise", self.exploration_noise >= 0, "must be >= 0")
        require(self, "eval_every", self.eval_every >= 0, "must be >= 0")


#: The paper's action repeat per task (PlaNet, table 1 / appendix).
PAPER_ACTION_REPEAT = {
    "dmc/cartpole-swingup": 8, "dmc/reacher-easy": 4, "dmc/cheetah-run": 4,
    "dmc/finger-spin": 2, "dmc/ball_in_cup-catch": 4, "dmc/walker-walk": 2,
}

#: Named settings: `mbrl train planet --preset NAME` (options given alongside override them).
#: `planet_paper` is the paper's agent; `planet_cpu` is sized from the throughput measured on
#: a 2-core laptop CPU (`benchmarks/planet_speed.py`): there a gradient step of the paper's
#: model on B=50 chunks of L=50 takes 11.2 s on one thread (5.8 s on two) and a CEM replan
#: with 1000 candidates x 10 iterations 1.3 s, so an episode of the cart-pole takes about 20
#: minutes on one core; the CPU preset's step takes 0.77 s and its replan 0.13 s on one
#: thread, and two seeds side by side ran 50 episodes (50,000 env steps) in 1.8 hours
#: (`benchmarks/planet_learning.py`).
PRESETS: dict[str, dict[str, Any]] = {
    "planet_paper": {},
    "planet_cpu": {
        "episodes": 50,
        "model": {"deterministic": 100, "stochastic": 20, "hidden": 100, "depth": 16},
        "batch_size": 16,
        "chunk_length": 32,
        "train_steps": 150,
        "planner_settings": {"population": 500, "elites": 50, "iterations": 5},
        "eval_every": 5,
    },
}


def preset(name: str, env_id: str | None = None) -> PlaNetConfig:
    """The config of preset `name` (on `env_id`, at the paper's action repeat for it).

    Raises:
        ConfigError: naming `preset`, for an unknown name.
    """
    if name not in PRESETS:
        raise ConfigError("preset", f"unknown PlaNet preset {name!r}; known: "
                          f"{', '.join(PRESETS)}")
    values = dict(PRESETS[name])
    if env_id is not None:
        values["env_id"] = env_id
        values["action_repeat"] = PAPER_ACTION_REPEAT.get(env_id, 4)
    return from_dict(PlaNetConfig, values)


# --------------------------------------------------------------------------- the run


def train_planet(
    config: PlaNetConfig,
    run_dir: Path,
    resume: bool = False,
    progress: Callable[[Iterable[int]], Iterable[int]] = lambda episodes: episodes,
) -> list[dict[str, float]]:
    """Run PlaNet, writing `run_dir` (created if missing); return the metrics, one row per
    episode.

    With `resume`, continue the run in `run_dir` from its last committed episode; `config`
    must be the run's own (`config.json`) but for `RESUMABLE_CHANGES`.

    Raises:
        ConfigError: naming the setting, for a chunk longer than the env's episodes or an env
            that cannot render (before anything is written).
        RunDirError: on resume, if the run directory is damaged or does not belong with
            `config`.
    """
    env = make_env(config)
    check_env(config, env)
    task = env.task
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    frame_shape = (3, env.height, env.width)
    replay = FrameReplay(frame_shape, task.act_dim)
    model = RSSM(task.act_dim, config.model, seed=config.seed)
    optimiser = make_optimiser(config)(model)
    rows: list[dict[str, float]] = []
    changes: list[dict[str, Any]] = []
    if resume:
        restored = _restore(run_dir, config, rng, generator)
        if restored is not None:
            replay, model, optimiser, rows, changes = restored
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / CONFIG, config)

    heldout = heldout_episode(config)
    board = tensorboard_writer(run_dir, purge_after=int(rows[-1]["env_steps"]) if rows else None)
    for episode in progress(range(len(rows), config.episodes)):
        started = time.perf_counter()
        losses = dict.fromkeys(LOSS_COLUMNS, math.nan)
        agent: Agent = RandomAgent(task.action_low, task.action_high, rng)
        trained = episode >= config.seed_episodes
        if trained:
            losses = train_model(model, optimiser, replay, config, rng, generator)
            agent = latent_controller(model, task, config, generator,
                                      exploration_noise=config.exploration_noise, rng=rng)
        model.eval()
        run = rollout(env, agent, seed=int(rng.integers(2**31)),
                      on_step=lambda step: record_step(replay, step))
        row: dict[str, float] = {
            "episode": episode,
            "return": run.episode_return,
            "env_steps": (rows[-1]["env_steps"] if rows else 0) + run.steps * config.action_repeat,
            "eval_return": math.nan,
            **losses,
            "plan_ms": float(np.median(run.act_ms)) if trained else math.nan,
            "open_loop_mse": math.nan,
        }
        if trained and config.eval_every and (episode + 1) % config.eval_every == 0:
            row["eval_return"] = evaluate_once(model, env, config, episode)
        if trained:
            row["open_loop_mse"] = prediction_figure(model, heldout, run_dir, env)
        row["wall_s"] = time.perf_counter() - started
        rows.append(row)
        if board is not None:
            for key, value in row.items():
                board.add_scalar(f"planet/{key}", value, global_step=int(row["env_steps"]))
            board.flush()
        _save(run_dir, replay, model, optimiser, rows, rng, generator, config, changes)
    if board is not None:
        board.close()
    return rows


#: The columns of the ELBO's terms and the update statistics, as `train_model` names them.
LOSS_COLUMNS = ("reconstruction", "reward_loss", "kl", "overshooting", "loss", "grad_norm",
                "train_s")


def train_model(model: RSSM, optimiser: torch.optim.Optimizer, replay: FrameReplay,
                config: PlaNetConfig, rng: np.random.Generator, generator: torch.Generator
                ) -> dict[str, float]:
    """`config.train_steps` gradient steps on the ELBO of chunks drawn from `replay`; the
    terms averaged over the steps (`LOSS_COLUMNS`)."""
    model.train()
    started = time.perf_counter()
    sums = dict.fromkeys(LOSS_COLUMNS[:-1], 0.0)
    for _ in range(config.train_steps):
        chunks = replay.sample(config.batch_size, config.chunk_length, rng)
        losses = model.loss(chunks.frames, chunks.actions, chunks.rewards, generator)
        optimiser.zero_grad(set_to_none=True)
        losses.total.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimiser.step()
        for name, value in (("reconstruction", losses.reconstruction),
                            ("reward_loss", losses.reward), ("kl", losses.kl),
                            ("overshooting", losses.overshooting), ("loss", losses.total),
                            ("grad_norm", norm)):
            sums[name] += float(value.detach())
    means = {name: total / config.train_steps for name, total in sums.items()}
    return {**means, "train_s": time.perf_counter() - started}


def make_optimiser(config: PlaNetConfig) -> Callable[[RSSM], torch.optim.Optimizer]:
    """How the run's optimiser is built for a model: Adam at the config's step size and eps."""
    return lambda model: torch.optim.Adam(model.parameters(), lr=config.learning_rate,
                                          eps=config.adam_epsilon)


def latent_controller(model: RSSM, task: envs.Task, config: PlaNetConfig,
                      generator: torch.Generator, exploration_noise: float = 0.0,
                      rng: np.random.Generator | None = None) -> LatentMPC:
    """The config's planner in MPC through `model`'s latent space, behind its belief filter."""
    problem = latent_problem(LatentDynamics(model), task, config.horizon, generator)
    mpc = MPC(build_planner(config.planner, problem, **config.planner_settings), config.mpc)
    return LatentMPC(model, mpc, exploration_noise, rng)


def record_step(replay: FrameReplay, step: Step) -> None:
    """An `on_step` hook that stores a pixel episode's steps in `replay` (its first step
    begins the episode)."""
    if step.index == 0:
        replay.start_episode(frame_tensor(step.obs, replay.frame_shape[0], "obs").numpy())
    replay.add_step(step.action, step.reward,
                    frame_tensor(step.next_obs, replay.frame_shape[0], "obs").numpy(),
                    terminated=step.terminated, last=step.terminated or step.truncated)


def evaluate_once(model: RSSM, env: envs.RobotEnv, config: PlaNetConfig, episode: int) -> float:
    """The return of one noise-free episode after `episode`, from its own seeds (the run's
    generators are untouched, so evaluating changes nothing else)."""
    seed = config.seed * 1_000_003 + episode
    agent = latent_controller(model, env.task, config, torch.Generator().manual_seed(seed))
    return rollout(env, agent, seed=seed).episode_return


def make_env(config: PlaNetConfig | Any) -> Any:
    """The robot observed through 64x64 RGB frames, at the run's action repeat and length.

    Raises:
        UserError: for an env id that is not registered.
    """
    length = ({"max_episode_steps": config.episode_steps * config.action_repeat}
              if config.episode_steps else {})
    try:
        return envs.make(config.env_id, action_repeat=config.action_repeat, pixels=True,
                         **length)
    except KeyError:
        raise UserError(f"--env {config.env_id}: unknown env id (see `mbrl envs`)") from None


def check_env(config: PlaNetConfig, env: Any) -> None:
    """Refuse, before anything is written, an env that cannot render or whose episodes are
    shorter than a chunk.

    Raises:
        ConfigError: naming `env_id` or `chunk_length`.
    """
    try:
        env.reset(seed=0)
    except Exception as error:  # no OpenGL here: nothing to learn from
        raise ConfigError("env_id", f"{config.env_id} cannot render frames here "
                          f"({type(error).__name__}: {error}); set MUJOCO_GL=egl") from None
    steps = env.max_episode_steps
    if steps is not None and steps < config.chunk_length:
        raise ConfigError("chunk_length", f"{config.chunk_length} steps is longer than an "
                          f"episode of {config.env_id} ({steps} control steps at action "
                          f"repeat {config.action_repeat})")


# --------------------------------------------------------------------------- the figure


@dataclass(frozen=True)
class HeldoutEpisode:
    """An episode the model never trains on: frames `[T+1, C, 64, 64]` uint8 and actions
    `[T, du]`."""

    frames: torch.Tensor
    actions: torch.Tensor


def heldout_episode(config: PlaNetConfig) -> HeldoutEpisode:
    """`CONTEXT + PREDICTED` steps of random actions from the held-out seed, on the run's
    robot at its action repeat, whatever the run's episode length (the same on every call)."""
    env = make_env(dataclasses.replace(config, episode_steps=None))
    rng = np.random.default_rng(HELDOUT_SEED)
    task = env.task
    replay = FrameReplay((3, env.height, env.width), task.act_dim)
    run = rollout(env, RandomAgent(task.action_low, task.action_high, rng), seed=HELDOUT_SEED,
                  max_steps=CONTEXT + PREDICTED, on_step=lambda step: record_step(replay, step))
    env.close()
    chunk = replay.sample(1, run.steps, np.random.default_rng(0))
    return HeldoutEpisode(chunk.frames[0], chunk.actions[0])


@torch.no_grad()
def open_loop_prediction(model: RSSM, episode: HeldoutEpisode, context: int = CONTEXT
                         ) -> torch.Tensor:
    """Predicted frames `[K, C, 64, 64]` uint8 of `episode` after its first `context` frames:
    the posterior's means filter `o_0 .. o_{context-1}`, then the prior's means run open loop
    under the episode's actions and are decoded."""
    images = preprocess(episode.frames[:context][None], model.config.bits, None)
    embeddings = model.encode(images)
    actions = episode.actions[None]
    state = model.posterior(model.prior(model.initial(1), torch.zeros(1, model.act_dim)),
                            embeddings[:, 0])
    if context > 1:
        _, posteriors = model.observe(embeddings[:, 1:], actions[:, : context - 1], state)
        state = posteriors[-1]
    imagined = model.imagine(state, actions[:, context - 1:])
    decoded = model.decode(torch.stack([s.features() for s in imagined], dim=1))[0]
    return ((decoded + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)


def prediction_figure(model: RSSM, episode: HeldoutEpisode, run_dir: Path, env: Any) -> float:
    """Write PlaNet's figure of `episode` (truth over open-loop prediction, `prediction.png`
    and side by side `prediction.mp4`) into `run_dir`; return the predictions' mean squared
    error per pixel (frames scaled to [0, 1])."""
    predicted = open_loop_prediction(model, episode)
    truth = episode.frames[CONTEXT:]
    plots.plot_open_loop(truth.numpy(), predicted.numpy(), run_dir / "prediction.png",
                         context=CONTEXT, title=f"PlaNet on {env.env_id}: held-out episode")
    side_by_side = torch.cat([truth, predicted], dim=-1).permute(0, 2, 3, 1).numpy()
    big = side_by_side.repeat(4, axis=1).repeat(4, axis=2)
    write_video(list(big), run_dir / "prediction.mp4",
                fps=max(1, round(1 / env.control_timestep)))
    diff = (truth.float() - predicted.float()) / 255
    return float(diff.pow(2).mean())


# --------------------------------------------------------------------------- loading


def is_planet_run(run_dir: Path) -> bool:
    """Whether `run_dir` holds a PlaNet run (its config has PlaNet's settings)."""
    path = run_dir / CONFIG
    if not path.is_file():
        return False
    try:
        values = read_json(path)
    except (OSError, ValueError):
        return False
    return isinstance(values, dict) and "seed_episodes" in values and "chunk_length" in values


def load_run(run_dir: Path) -> tuple[PlaNetConfig, RSSM]:
    """A PlaNet run's config and its last committed model.

    Raises:
        RunDirError: naming the folder or file, if it is not a complete run directory.
    """
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir} is not a run directory (no such folder)")
    config = read_run_config(PlaNetConfig, run_dir / CONFIG, "mbrl train planet")
    checkpoint = latest_checkpoint(run_dir)
    model, _, _ = read_run_file(lambda path: load_rssm(path), (checkpoint or run_dir) / MODEL)
    return config, model


def evaluate_planet(run_dir: Path, episodes: int = 1, seed: int = 12345,
                    video: bool = True) -> dict[str, Any]:
    """Run a PlaNet run's model and planner without exploration noise for `episodes`; write
    `eval.json` (and `eval.mp4` of the first episode's frames, as the model saw them)."""
    config, model = load_run(run_dir)
    model.eval()
    env = make_env(config)
    rng = np.random.default_rng(seed)
    returns, frames = [], []
    for episode in range(episodes):
        agent = latent_controller(model, env.task, config, torch.Generator().manual_seed(seed))
        on_step = (lambda step: frames.append(step.next_obs)) if video and episode == 0 else None
        returns.append(rollout(env, agent, seed=int(rng.integers(2**31)),
                               on_step=on_step).episode_return)
    clip = None
    if frames:
        big = [np.asarray(f).repeat(4, axis=0).repeat(4, axis=1) for f in frames]
        clip = write_video(big, run_dir / "eval.mp4", fps=max(1, round(1 / env.control_timestep)))
    result = {"env_id": config.env_id, "returns": returns,
              "mean_return": float(np.mean(returns)), "seed": seed,
              "video": str(clip) if clip else None}
    write_json(run_dir / "eval.json", result)
    return result


# --------------------------------------------------------------------------- commit, resume


def _save(run_dir: Path, replay: FrameReplay, model: RSSM, optimiser: torch.optim.Optimizer,
          rows: list[dict[str, float]], rng: np.random.Generator, generator: torch.Generator,
          config: PlaNetConfig, changes: list[dict[str, Any]]) -> None:
    """Commit the episode's results as one checkpoint, then publish them and the plot."""
    episode = int(rows[-1]["episode"])

    def write(folder: Path) -> None:
        replay.save(folder / BUFFER)
        save_rssm(model, folder / MODEL, optimiser)
        write_csv(folder / METRICS, rows)
        write_json(folder / PROGRESS, {
            "episodes_done": len(rows),
            "frames": len(replay),
            "env_id": config.env_id,
            "act_dim": replay.act_dim,
            "config": config,
            "changes_on_resume": changes,
            "numpy_rng": rng.bit_generator.state,
            "torch_generator": generator.get_state().tolist(),
        })

    checkpoint = commit_checkpoint(run_dir, episode, write)
    publish(checkpoint, run_dir, PUBLISHED)
    plots.plot_learning_curve(rows, run_dir / "learning_curve.png",
                              title=f"PlaNet on {config.env_id}", error_key="open_loop_mse",
                              error_label="open-loop prediction MSE (held-out)")
    discard_older_checkpoints(run_dir, keep=checkpoint)


def _restore(run_dir: Path, config: PlaNetConfig, rng: np.random.Generator,
             generator: torch.Generator
             ) -> tuple[FrameReplay, RSSM, torch.optim.Optimizer, list[dict[str, float]],
                        list[dict[str, Any]]] | None:
    """The state after the last committed episode (None if none was), with the run
    directory put back to it.

    Raises:
        RunDirError: if the directory is not a run directory, is damaged, or does not belong
            with `config`.
    """
    if not run_dir.is_dir():
        raise RunDirError(f"cannot resume {run_dir}: there is no such run directory")
    stored = read_run_config(PlaNetConfig, run_dir / CONFIG, "mbrl train planet")
    require_same_settings(config, stored, RESUMABLE_CHANGES, f"{run_dir / CONFIG}")
    checkpoint = recover(run_dir, PUBLISHED)
    if checkpoint is None:
        return None  # killed before its first episode was committed: start again
    progress_path = checkpoint / PROGRESS
    progress = read_json(progress_path)
    try:
        ran_under = from_dict(PlaNetConfig, progress["config"])
        done, frames = int(progress["episodes_done"]), int(progress["frames"])
        changes = list(progress["changes_on_resume"])
        rng_state, torch_state = progress["numpy_rng"], progress["torch_generator"]
    except (KeyError, TypeError, ValueError) as error:
        raise RunDirError(f"{progress_path} is damaged: {type(error).__name__}: {error}") from None
    require_same_settings(config, ran_under, RESUMABLE_CHANGES,
                          f"{progress_path} (the settings its episodes ran under)")
    if done != checkpoint_episode(checkpoint) + 1:
        raise RunDirError(f"{progress_path} counts {done} episodes, but the checkpoint is "
                          f"of episode {checkpoint_episode(checkpoint)}")
    if config.episodes < done:
        raise RunDirError(f"cannot resume {run_dir} with episodes={config.episodes}: "
                          f"{done} episodes are done already")
    replay = read_run_file(FrameReplay.load, checkpoint / BUFFER)
    if len(replay) != frames:
        raise RunDirError(f"{checkpoint / BUFFER} holds {len(replay)} frames, but "
                          f"{progress_path} says {frames}")
    model, optimiser, _ = read_run_file(lambda path: load_rssm(path, make_optimiser(config)),
                                        checkpoint / MODEL)
    assert optimiser is not None  # load_rssm refuses a checkpoint without one
    with (checkpoint / METRICS).open() as handle:
        rows: list[dict[str, float]] = [
            {k: int(v) if k in ("episode", "env_steps") else float(v) for k, v in row.items()}
            for row in csv.DictReader(handle)]
    if len(rows) != done:
        raise RunDirError(f"{checkpoint / METRICS} holds {len(rows)} episodes, but "
                          f"{progress_path} says {done}")
    rng.bit_generator.state = rng_state
    generator.set_state(torch.tensor(torch_state, dtype=torch.uint8))
    if config.episodes != stored.episodes:
        changes = [*changes, {"at_episode": done,
                              "changed": {"episodes": [stored.episodes, config.episodes]}}]
        write_json(run_dir / CONFIG, config)
    return replay, model, optimiser, rows, changes
