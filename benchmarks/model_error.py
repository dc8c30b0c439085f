"""Model benchmark: multi-step prediction error against horizon, for three kinds of model.

    python -m benchmarks.model_error

On three tasks (cart-pole and pendulum swing-up, a two-link reacher), data is logged as a
PETS user would have it (`mbrl.experiments.logged_data`: uniformly random episodes and
episodes of a noisy CEM expert on the true simulator), and three models are fitted to it with
`mbrl.learning.training.fit`:

- a single network (one deterministic member, trained by MSE);
- a deterministic ensemble (5 members on bootstrap samples, MSE);
- a probabilistic ensemble (5 members, Gaussian outputs trained by NLL, as in PETS).

On held-out episodes logged from other seeds, each model predicts open loop from every start,
fed the logged actions, feeding back its members' mean
(`mbrl.learning.multistep.rollout_mean`). The
error after `h` steps is the RMSE over observation dimensions, each divided by the held-out
data's standard deviation; the results give its median and quartiles over starts for
h = 1 .. H. The ensembles' spread is scored too: TS-infinity particles (member trajectories
for the deterministic one) give a Gaussian whose negative log-likelihood of the logged
observation, and the fraction of dimensions it covers within two standard deviations, are
reported per horizon. Each model is fitted twice on the same data: with its snapshots and
elites picked by the normalised holdout MSE (`fit`'s rule, reported in full) and by the
raw-unit MSE (mbrl-lib's rule; its median error is reported beside it, dotted in the plot).
Writes benchmarks/results/model_error.json and .png.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from benchmarks.provenance import RESULTS, provenance
from mbrl.experiments.logged_data import TaskDataConfig, log_task_data
from mbrl.learning.data import ReplayBuffer
from mbrl.learning.models import EnsembleConfig, EnsembleDynamics
from mbrl.learning.multistep import (
    TWO_STD_NOMINAL,
    Windows,
    gaussian_nll,
    normalised_rmse,
    rollout_mean,
    rollout_particles,
    windows,
    within_two_std,
)
from mbrl.learning.training import TrainConfig, fit_buffer

#: Logged training data per task; the expert's budget and horizon keep each task's logging
#: near a minute on a shared two-core machine (cart-pole's physics costs most per step).
TASKS = {
    "cartpole-swingup": TaskDataConfig(
        "mujoco/cartpole-swingup", action_repeat=2, episode_steps=150, random_episodes=2,
        expert_episodes=4, expert_horizon=25, expert_population=32, expert_budget_ms=60.0,
    ),
    "pendulum-swingup": TaskDataConfig(
        "mujoco/pendulum-swingup", action_repeat=1, episode_steps=100, random_episodes=2,
        expert_episodes=4, expert_horizon=30, expert_population=32, expert_budget_ms=60.0,
    ),
    "reacher-2link": TaskDataConfig(
        "mujoco/reacher-2link", action_repeat=1, episode_steps=100, random_episodes=2,
        expert_episodes=4, expert_horizon=20, expert_population=32, expert_budget_ms=30.0,
    ),
}
#: Held-out random and expert episodes per task (the training config otherwise), logged from
#: another seed.
TEST_RANDOM_EPISODES, TEST_EXPERT_EPISODES = 1, 2
#: The models compared, by name.
MODELS = {
    "single network": EnsembleConfig(ensemble_size=1, probabilistic=False),
    "deterministic ensemble": EnsembleConfig(ensemble_size=5, probabilistic=False),
    "probabilistic ensemble": EnsembleConfig(ensemble_size=5, probabilistic=True),
}
#: Fitting, the same for every model: a fixed number of epochs, each member keeping its
#: weights of lowest holdout MSE (with early stopping, a single network stopped far sooner
#: than an ensemble, in which any one member's improvement goes on). `num_elites` is set to
#: the ensemble size: every member predicts.
TRAIN = TrainConfig(max_epochs=200, patience=None)
#: Particles per start for the ensembles' spread (TS-infinity; a multiple of 5).
PARTICLES = 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--horizon", type=int, default=30, help="longest prediction, H")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the training data and models; the held-out data uses "
                             "seed + 1000")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    started = time.perf_counter()
    results: dict[str, Any] = {}
    for name in args.tasks:
        results[name] = run_task(TASKS[name], args.horizon, args.seed)
        print(f"{name}: done at {time.perf_counter() - started:.0f} s", flush=True)

    payload = {
        "benchmark": "model_error", **provenance(),
        "config": {
            "horizon": args.horizon, "seed": args.seed, "test_seed": args.seed + 1000,
            "threads": args.threads, "particles": PARTICLES,
            "train": dataclasses.asdict(TRAIN),
            "models": {name: config.to_dict() for name, config in MODELS.items()},
            "selection": "snapshots and elites by normalised holdout MSE (models); by raw-unit "
                         "MSE on the same data (raw_selection)",
            "error": "RMSE over observation dimensions, each divided by the held-out data's "
                     "standard deviation; median and quartiles over starts",
            "within_two_std_nominal": TWO_STD_NOMINAL,
        },
        "tasks": results,
        "wall_s": time.perf_counter() - started,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "model_error.json").write_text(json.dumps(payload, indent=2) + "\n")
    plot(results, args.out / "model_error.png")
    print(summary_table(results))
    print(f"wrote {args.out / 'model_error.json'} in {payload['wall_s']:.0f} s")


def run_task(data_config: TaskDataConfig, horizon: int, seed: int) -> dict[str, Any]:
    """Log the task's training and held-out data, fit every model, and score each."""
    started = time.perf_counter()
    train = log_task_data(data_config, seed)
    test_config = dataclasses.replace(
        data_config, random_episodes=TEST_RANDOM_EPISODES, expert_episodes=TEST_EXPERT_EPISODES
    )
    test = log_task_data(test_config, seed + 1000)
    logging_s = time.perf_counter() - started
    print(f"{data_config.env_id}: logged {len(train)} training and {len(test)} held-out "
          f"transitions in {logging_s:.0f} s", flush=True)

    held_out = windows(test, horizon)
    scale = observation_scale(test)
    is_random = held_out.episode < test_config.random_episodes
    models: dict[str, Any] = {}
    raw_selection: dict[str, Any] = {}
    for name, model_config in MODELS.items():
        for selection in ("normalized", "raw"):
            train_config = dataclasses.replace(TRAIN, selection=selection)
            model, fit_summary = fit_model(train, model_config, seed, train_config)
            scores = score(model, held_out, scale, is_random, seed)
            error = scores["error"]["median"]
            print(f"  {name}, {selection} selection: trained in {fit_summary['train_s']:.0f} s "
                  f"({fit_summary['epochs']} epochs); median error at h=1/10/{horizon}: "
                  f"{error[0]:.3g} / {error[min(9, horizon - 1)]:.3g} / {error[-1]:.3g}",
                  flush=True)
            if selection == "normalized":
                models[name] = {**fit_summary, **scores}
            else:
                raw_selection[name] = {"best_epochs": fit_summary["best_epochs"],
                                       "error_median": error}
    return {
        "data": {
            "train": dataclasses.asdict(data_config) | {"seed": seed},
            "test": dataclasses.asdict(test_config) | {"seed": seed + 1000},
            "train_transitions": len(train),
            "test_transitions": len(test),
            "test_starts": int(held_out.obs.shape[0]),
            "test_starts_random_episodes": int(is_random.sum()),
            "train_returns": episode_returns(train),
            "test_returns": episode_returns(test),
            "observation_scale": scale.tolist(),
            "logging_s": logging_s,
        },
        "models": models,
        # The same models on the same data with snapshots picked by raw-unit holdout MSE
        # (mbrl-lib's rule, ours before issue 13): what normalised selection changed.
        "raw_selection": raw_selection,
    }


def fit_model(
    buffer: ReplayBuffer, config: EnsembleConfig, seed: int, train: TrainConfig = TRAIN
) -> tuple[EnsembleDynamics, dict[str, Any]]:
    """A model of `config` fitted to every transition of `buffer` under `train`, and what
    fitting did."""
    model = EnsembleDynamics(
        buffer.obs_dim, buffer.act_dim, config, generator=torch.Generator().manual_seed(seed)
    )
    train_config = dataclasses.replace(train, num_elites=config.ensemble_size)
    started = time.perf_counter()
    report = fit_buffer(model, buffer, train_config, torch.Generator().manual_seed(seed))
    return model, {
        "train_s": time.perf_counter() - started,
        "epochs": report.epochs,
        "stopped_early": report.stopped_early,
        "holdout_mse_one_step": report.holdout_mse_mean,
        "holdout_nll_one_step": report.holdout_nll_mean,
        "best_epochs": list(report.best_epochs),
    }


def score(
    model: EnsembleDynamics,
    held_out: Windows,
    scale: torch.Tensor,
    is_random: torch.Tensor,
    seed: int,
) -> dict[str, Any]:
    """The model's error per horizon on the held-out windows (all starts, and those of the
    random and the expert episodes apart) and, for an ensemble, its spread's calibration."""
    prediction = rollout_mean(model, held_out.obs, held_out.act)
    error = normalised_rmse(prediction, held_out.next_obs, scale)  # [B, H]
    out: dict[str, Any] = {
        "error": quartiles(error),
        "error_median_random_episodes": median(error[is_random]),
        "error_median_expert_episodes": median(error[~is_random]),
    }
    if model.num_members > 1:
        particles = PARTICLES if model.config.probabilistic else model.num_members
        paths = rollout_particles(
            model, held_out.obs, held_out.act, particles, torch.Generator().manual_seed(seed)
        )
        out["spread"] = {
            "particles": particles,
            "nll_median": median(gaussian_nll(paths, held_out.next_obs, scale)),
            "within_two_std_mean": within_two_std(paths, held_out.next_obs).mean(0).tolist(),
        }
    return out


def observation_scale(buffer: ReplayBuffer) -> torch.Tensor:
    """Standard deviation of each observation dimension over `buffer`, `[do]` (1 where a
    dimension is constant)."""
    std = torch.from_numpy(np.asarray(buffer.arrays()["obs"], dtype=np.float64).std(axis=0))
    return torch.where(std < 1e-6, torch.ones_like(std), std).float()


def quartiles(values: torch.Tensor) -> dict[str, list[float]]:
    """Median and quartiles over starts of `[B, H]` values, `[H]` each."""
    q = torch.quantile(values.double(), torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64), 0)
    return {"q25": q[0].tolist(), "median": q[1].tolist(), "q75": q[2].tolist()}


def median(values: torch.Tensor) -> list[float]:
    """Median over starts of `[B, H]` values, `[H]`."""
    return values.double().quantile(0.5, dim=0).tolist()


def episode_returns(buffer: ReplayBuffer) -> list[float]:
    """Each logged episode's return, in episode order."""
    data = buffer.arrays()
    episodes = data["episode"]
    return [float(data["reward"][episodes == e].sum()) for e in np.unique(episodes)]


def summary_table(results: dict[str, Any]) -> str:
    """Median error at horizons 1, 10 and H of every task and model, as text."""
    lines = []
    for task, result in results.items():
        for name, scores in result["models"].items():
            median_error = scores["error"]["median"]
            picks = sorted({1, min(10, len(median_error)), len(median_error)})
            raw = result["raw_selection"][name]["error_median"]
            cells = "  ".join(f"h={h}: {median_error[h - 1]:.3g} (raw {raw[h - 1]:.3g})"
                              for h in picks)
            lines.append(f"{task:18s} {name:24s} {cells}")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    """One panel per task: median error against horizon per model, quartiles shaded; dotted,
    the same model with its snapshots picked by raw-unit holdout MSE."""
    fig, axes = plt.subplots(1, len(results), figsize=(4.5 * len(results), 3.8), squeeze=False)
    for ax, (task, result) in zip(axes[0], results.items(), strict=True):
        for name, scores in result["models"].items():
            error = scores["error"]
            steps = np.arange(1, len(error["median"]) + 1)
            (line,) = ax.plot(steps, error["median"], label=name)
            ax.fill_between(steps, error["q25"], error["q75"], color=line.get_color(), alpha=0.2)
            ax.plot(steps, result["raw_selection"][name]["error_median"], ls=":",
                    color=line.get_color(), label=f"{name}, raw-unit selection")
        ax.set_yscale("log")
        ax.set_title(f"{task} ({result['data']['train_transitions']} transitions)")
        ax.set_xlabel("prediction horizon (control steps)")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("RMSE / held-out std (median, IQR)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
