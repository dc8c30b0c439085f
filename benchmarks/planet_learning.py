"""PlaNet learning from pixels: cart-pole swing-up from 64x64 frames, return against env steps.

    python -m benchmarks.planet_learning --preset planet_cpu --seeds 0 1
    python -m benchmarks.planet_learning --preset planet_cpu --seeds 0 1 --summarise-only
    python -m benchmarks.planet_learning --preset planet_paper --seeds 0 --workers 1 --threads 2

Each seed is one `train_planet` run of the preset (run directories under `--runs`; a killed
benchmark resumes each where it stopped), the seeds in parallel, one torch thread each.
`--summarise-only` writes the results from whatever the run directories have committed (a
run cut short is reported as far as it got). The plot draws the published 100k-step scores
on the same axes: PlaNet about 297 (CURL's and DrQ's tables), Dreamer 326, DreamerV3 about
550. Writes benchmarks/results/planet_learning_<preset>.json and .png.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import resource
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from benchmarks.jobs import Job, run_jobs
from benchmarks.provenance import RESULTS, provenance
from mbrl.algorithms.planet import PlaNetConfig, preset, train_planet

ENV = "dmc/cartpole-swingup"
#: Published returns at 100,000 env steps on the cart-pole swing-up from pixels.
PUBLISHED = {"PlaNet (CURL table)": 297.0, "Dreamer": 326.0, "DreamerV3": 550.0}
#: Per preset: the target mean return, within this many env steps and wall-clock hours.
TARGETS = {"planet_cpu": (400.0, 50_000, 2.5), "planet_paper": (600.0, 100_000, None)}


def run_seed(config: PlaNetConfig, run_dir: Path, threads: int = 1) -> dict[str, Any]:
    """One seed's run (resumed where it stopped) on `threads` torch threads; its metrics and
    the worker's peak memory."""
    torch.set_num_threads(threads)
    started = time.perf_counter()
    rows = train_planet(config, run_dir, resume=run_dir.exists())
    return {"metrics": rows, "wall_s_this_call": time.perf_counter() - started,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def read_metrics(run_dir: Path) -> list[dict[str, float]]:
    """The committed rows of a run directory (none if it has none)."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return []
    with path.open() as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="planet_cpu", choices=list(TARGETS))
    parser.add_argument("--episodes", type=int, help="override the preset's episodes")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per seed")
    parser.add_argument("--runs", type=Path, default=Path("runs/bench-planet"))
    parser.add_argument("--summarise-only", action="store_true",
                        help="write the results from the run directories as they are")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    config = preset(args.preset, ENV)
    if args.episodes is not None:
        config = dataclasses.replace(config, episodes=args.episodes)
    run_dirs = {seed: args.runs / f"{args.preset}-seed{seed}" for seed in args.seeds}
    jobs = {}
    if not args.summarise_only:
        planned = [Job(f"{args.preset}-seed{seed}", run_seed,
                       (dataclasses.replace(config, seed=seed), run_dirs[seed], args.threads),
                       [])
                   for seed in args.seeds]
        jobs = run_jobs(planned, args.runs / "jobs", args.workers)
    seeds = {str(seed): {"metrics": read_metrics(run_dirs[seed]),
                         **{k: v for k, v in jobs.get(f"{args.preset}-seed{seed}", {}).items()
                            if k != "metrics"}}
             for seed in args.seeds}
    payload = {
        "benchmark": "planet_learning", **provenance(),
        "preset": args.preset,
        "threads_per_seed": args.threads,
        "config": dataclasses.asdict(config) | {"seed": args.seeds},
        "published_100k": PUBLISHED,
        "seeds": seeds,
        "summary": summarise(seeds, TARGETS[args.preset]),
    }
    print(json.dumps(payload["summary"], indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"planet_learning_{args.preset}"
    (args.out / f"{name}.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    plot(seeds, args.preset, TARGETS[args.preset], args.out / f"{name}.png")


def summarise(seeds: dict[str, Any], target: tuple[float, int, float | None]) -> dict[str, Any]:
    """Per seed: episodes done, env steps, wall hours, the noise-free evaluation returns and
    the best and last ones; over seeds: the mean evaluation curve on the episodes all seeds
    reached, and whether it met the target."""
    goal, budget, hours = target
    per_seed = {}
    for seed, result in seeds.items():
        rows = result["metrics"]
        evaluated = [(r["env_steps"], r["eval_return"]) for r in rows
                     if not np.isnan(r["eval_return"])]
        per_seed[seed] = {
            "episodes": len(rows),
            "env_steps": rows[-1]["env_steps"] if rows else 0,
            "wall_hours": sum(r["wall_s"] for r in rows) / 3600,
            "env_steps_per_hour": (rows[-1]["env_steps"] / (sum(r["wall_s"] for r in rows)
                                                            / 3600)) if rows else None,
            "eval": evaluated,
            "best_eval_return": max((v for _, v in evaluated), default=None),
            "last_eval_return": evaluated[-1][1] if evaluated else None,
            "median_train_s_per_episode": float(np.nanmedian([r["train_s"] for r in rows]))
            if rows else None,
            "median_plan_ms": float(np.nanmedian([r["plan_ms"] for r in rows])) if rows else None,
            "peak_rss_mb": result.get("peak_rss_mb"),
        }
    common = min(len(s["eval"]) for s in per_seed.values())
    steps = [step for step, _ in next(iter(per_seed.values()))["eval"][:common]]
    mean = [float(np.mean([s["eval"][i][1] for s in per_seed.values()])) for i in range(common)]
    hours_used = max(s["wall_hours"] for s in per_seed.values())
    reached = [step for step, value in zip(steps, mean, strict=True) if value >= goal]
    return {
        "per_seed": per_seed,
        "mean_eval_env_steps": steps,
        "mean_eval_return": mean,
        "best_mean_eval_return": max(mean, default=None),
        "target_return": goal, "target_env_steps": budget, "target_wall_hours": hours,
        "mean_first_reaches_target_at_env_steps": reached[0] if reached else None,
        "met": bool(reached) and reached[0] <= budget and (hours is None or hours_used <= hours),
    }


def plot(seeds: dict[str, Any], name: str, target: tuple[float, int, float | None],
         path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for seed, result in seeds.items():
        rows = result["metrics"]
        if not rows:
            continue
        line, = ax.plot([r["env_steps"] for r in rows], [r["return"] for r in rows],
                        alpha=0.35, lw=1, label=f"seed {seed}, training episodes (noise 0.3)")
        evaluated = [(r["env_steps"], r["eval_return"]) for r in rows
                     if not np.isnan(r["eval_return"])]
        if evaluated:
            ax.plot(*zip(*evaluated, strict=True), marker="s", color=line.get_color(),
                    label=f"seed {seed}, evaluation (no noise)")
    for (label, score), style in zip(PUBLISHED.items(), ("o", "^", "D"), strict=True):
        ax.plot([100_000], [score], marker=style, ms=9, ls="none", color="grey",
                markerfacecolor="none", label=f"{label} at 100k: {score:.0f}")
    ax.axhline(target[0], color="red", ls="--", lw=1,
               label=f"target {target[0]:.0f} within {target[1]:,} steps")
    ax.set_xlim(0, 105_000)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.set_title(f"PlaNet ({name}) on cart-pole swing-up from 64x64 pixels")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
