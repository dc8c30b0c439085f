"""PETS learning curves: episode return against environment steps, for several seeds.

    python -m benchmarks.pets_learning --config configs/pets_cartpole.json --seeds 0 1 2

Each seed is a full `train_pets` run of the config (its run directory is kept under `--runs`,
and a killed benchmark resumes each seed where it stopped); the results
file holds every seed's metrics, the configuration, and the machine, and the plot shows each
seed's curve and their mean. Writes benchmarks/results/pets_learning_<env>.json and .png.
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
from mbrl.algorithms.pets import PETSConfig, train_pets
from mbrl.config import load as load_config

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
#: Target mean return over seeds, and the env steps it must be reached within.
TARGETS = {"dmc/cartpole-swingup": (800.0, 20_000)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=CONFIGS / "pets_cartpole.json",
                        help="the PETS config every seed runs (JSON, as a run's config.json)")
    parser.add_argument("--env", help="override the config's env id")
    parser.add_argument("--episodes", type=int, help="override the config's episodes")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--runs", type=Path, default=Path("runs/bench-pets"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = load_config(PETSConfig, args.config)
    if args.env is not None:
        config = dataclasses.replace(config, env_id=args.env)
    if args.episodes is not None:
        config = dataclasses.replace(config, episodes=args.episodes)
    seeds: dict[str, Any] = {}
    for seed in args.seeds:
        seed_config = dataclasses.replace(config, seed=seed)
        started = time.perf_counter()
        run_dir = args.runs / f"{config.env_id.replace('/', '-')}-seed{seed}"
        # A killed benchmark resumes each seed's run where it stopped; a new one starts it.
        rows = train_pets(seed_config, run_dir, resume=run_dir.exists())
        seeds[str(seed)] = {"metrics": rows, "wall_s_this_call": time.perf_counter() - started}
        print(f"seed {seed}: returns {[round(r['return'], 1) for r in rows]}", flush=True)

    env_name = config.env_id.replace("/", "_")
    name = f"pets_learning_{env_name}"
    payload = {
        "benchmark": "pets_learning", **provenance(),
        "config": dataclasses.asdict(config) | {"seed": args.seeds},
        "config_file": str(args.config),
        "seeds": seeds,
        "summary": summarise(seeds, TARGETS.get(config.env_id)),
    }
    print(json.dumps(payload["summary"], indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    title = f"{config.env_id}, action repeat {config.action_repeat}"
    plot(seeds, title, TARGETS.get(config.env_id), args.out / f"{name}.png")


def summarise(seeds: dict[str, Any], target: tuple[float, int] | None) -> dict[str, Any]:
    """The mean curve over seeds (seeds share their episodes' env steps), its first crossing of
    the target return, and the final returns."""
    curves = np.array([[r["return"] for r in s["metrics"]] for s in seeds.values()])
    steps = [r["env_steps"] for r in next(iter(seeds.values()))["metrics"]]
    mean = curves.mean(axis=0)
    summary: dict[str, Any] = {
        "env_steps": steps,
        "mean_return": mean.tolist(),
        "final_returns": curves[:, -1].tolist(),
        "final_mean_return": float(mean[-1]),
        "best_mean_return": float(mean.max()),
    }
    if target is not None:
        goal, budget = target
        reached = [step for step, value in zip(steps, mean, strict=True) if value >= goal]
        summary |= {
            "target_return": goal,
            "target_env_steps": budget,
            "mean_first_reaches_target_at_env_steps": reached[0] if reached else None,
            "met": bool(reached) and reached[0] <= budget,
        }
    return summary


def plot(
    seeds: dict[str, Any], title: str, target: tuple[float, int] | None, path: Path
) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    curves = []
    for seed, result in seeds.items():
        steps = [r["env_steps"] for r in result["metrics"]]
        returns = [r["return"] for r in result["metrics"]]
        curves.append(returns)
        ax.plot(steps, returns, alpha=0.5, marker=".", label=f"seed {seed}")
    if len(curves) > 1:
        ax.plot(steps, np.mean(curves, axis=0), color="black", lw=2, label="mean")
    if target is not None:
        ax.axhline(target[0], color="red", ls="--", lw=1, label=f"target {target[0]:.0f}")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.set_title(f"PETS (CEM) on {title}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
