"""PETS learning curves: episode return against environment steps, for several seeds.

    python -m benchmarks.pets_learning --env dmc/cartpole-swingup --seeds 0 1 2 --episodes 20

Each seed is a full `train_pets` run (its run directory is kept under `--runs`); the results
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="dmc/cartpole-swingup")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--action-repeat", type=int, default=4)
    parser.add_argument("--population", type=int, default=350)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--horizon", type=int, default=15)
    parser.add_argument("--particles", type=int, default=20)
    parser.add_argument("--hidden-layers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--runs", type=Path, default=Path("runs/bench-pets"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    base = PETSConfig()
    model = base.model if args.hidden_layers == 4 else dataclasses.replace(
        base.model, hidden_layers=args.hidden_layers, weight_decay=5e-5
    )
    seeds: dict[str, Any] = {}
    for seed in args.seeds:
        config = dataclasses.replace(
            base, env_id=args.env, episodes=args.episodes, action_repeat=args.action_repeat,
            seed=seed, particles=args.particles, model=model,
            planner=dataclasses.replace(
                base.planner, horizon=args.horizon, population=args.population,
                elites=max(1, args.population // 10), iterations=args.iterations,
            ),
        )
        started = time.perf_counter()
        rows = train_pets(config, args.runs / f"{args.env.replace('/', '-')}-seed{seed}")
        seeds[str(seed)] = {"metrics": rows, "wall_s": time.perf_counter() - started}
        print(f"seed {seed}: returns {[round(r['return'], 1) for r in rows]}", flush=True)

    name = f"pets_learning_{args.env.replace('/', '_')}"
    payload = {
        "benchmark": "pets_learning", **provenance(),
        "config": dataclasses.asdict(config) | {"seed": args.seeds},
        "seeds": seeds,
        "final_mean_return": float(np.mean([s["metrics"][-1]["return"] for s in seeds.values()])),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    plot(seeds, args.env, args.out / f"{name}.png")


def plot(seeds: dict[str, Any], env_id: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    curves = []
    for seed, result in seeds.items():
        steps = [r["env_steps"] for r in result["metrics"]]
        returns = [r["return"] for r in result["metrics"]]
        curves.append(returns)
        ax.plot(steps, returns, alpha=0.5, marker=".", label=f"seed {seed}")
    if len(curves) > 1:
        ax.plot(steps, np.mean(curves, axis=0), color="black", lw=2, label="mean")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.set_title(f"PETS (CEM) on {env_id}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
