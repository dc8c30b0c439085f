"""MCTS against CEM and MPPI: episode return against the planning budget, on the true physics.

Two tasks, planned through the simulator itself
(`envs.dynamics.SimulatorDynamics`: tree steps through `set_state` / `step`, rollouts of many
sequences at once through `mujoco.rollout`):

- `mujoco/pendulum-swingup`: pump a torque-limited pendulum up (at least 2 s from hanging) and
  hold it; reward `(1 + cos)/2` per step. MCTS chooses among three torques (-1, 0, 1 N m:
  discretised torque); CEM and MPPI plan continuous torques.
- `mujoco/pointmass-wall`: reach a goal behind a wall; reward 1 within 0.1 m of the goal, and
  the way round the wall first leads away from it. MCTS chooses among the 9 pushes of a 3 x 3
  grid; CEM and MPPI plan continuous pushes.

Every planner runs as MPC (replanning every step, warm-started) with the same wall-clock
budget per replan, for each budget in `--budgets-ms`; the planners stop iterating (MCTS:
simulating) before an iteration that would end past the budget.

    python -m benchmarks.tree_search [--budgets-ms 20 80 320] [--seeds 0 1]

Writes benchmarks/results/tree_search.json and .png.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

import envs
from benchmarks.provenance import RESULTS, provenance
from controllers import CEM, MCTS, MPC, MPPI, CEMConfig, MCTSConfig, MPCConfig, MPPIConfig, Planner
from envs.dynamics import SimulatorDynamics
from mbrl.control.episodes import record_replan_ms, rollout


@dataclass(frozen=True)
class Task:
    """One benchmark task and its planners' settings."""

    #: Registered env id.
    env_id: str
    #: Planning horizon, in control steps (50 ms each).
    horizon: int
    #: Points per action dimension of MCTS's action grid.
    grid_points: int


TASKS = (
    Task(env_id="mujoco/pendulum-swingup", horizon=30, grid_points=3),
    Task(env_id="mujoco/pointmass-wall", horizon=40, grid_points=3),
)
PLANNERS = ("MCTS", "CEM", "MPPI")


def make_planner(name: str, task: Task, env: envs.RobotEnv, seed: int) -> Planner:
    """The planner `name` on the true simulator, its iterations bounded by the deadline."""
    dynamics = SimulatorDynamics(env)
    low = torch.tensor(env.task.action_low, dtype=torch.float64)
    high = torch.tensor(env.task.action_high, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    if name == "MCTS":
        return MCTS(dynamics, low, high, MCTSConfig(
            horizon=task.horizon, simulations=10**6, grid_points=task.grid_points,
            rollouts_per_leaf=8, rollout_horizon=task.horizon, exploration=1.0,
        ), generator=generator)
    if name == "CEM":
        return CEM(dynamics, low, high, CEMConfig(
            horizon=task.horizon, population=64, elites=8, iterations=10**4,
            keep_elites_fraction=0.3,
        ), generator=generator)
    if name == "MPPI":
        return MPPI(dynamics, low, high, MPPIConfig(
            horizon=task.horizon, population=64, iterations=10**4, temperature=0.5,
            noise_std=0.5,
        ), generator=generator)
    raise ValueError(f"unknown planner {name!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budgets-ms", type=float, nargs="+", default=[20.0, 80.0, 320.0],
                        help="wall-clock budgets per replan")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="episode seeds")
    parser.add_argument("--tasks", nargs="+", default=[t.env_id for t in TASKS],
                        choices=[t.env_id for t in TASKS])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)

    rows: list[dict[str, Any]] = []
    for task in (t for t in TASKS if t.env_id in args.tasks):
        for budget in args.budgets_ms:
            for name in PLANNERS:
                for seed in args.seeds:
                    row = run_episode(task, name, budget, seed)
                    rows.append(row)
                    print(f"{task.env_id} {name} {budget:.0f} ms seed {seed}: return "
                          f"{row['return']:.0f}, median replan {row['plan_ms_median']:.1f} ms, "
                          f"fallbacks {row['fallbacks']}", flush=True)
    summary = summarise(rows)
    print(json.dumps(summary, indent=2))
    payload = {
        "benchmark": "tree_search", **provenance(),
        "tasks": [asdict(t) for t in TASKS], "budgets_ms": args.budgets_ms, "seeds": args.seeds,
        "summary": summary, "episodes": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tree_search.json").write_text(json.dumps(payload, indent=2) + "\n")
    plot(summary, args.budgets_ms, args.out / "tree_search.png")


def run_episode(task: Task, name: str, budget_ms: float, seed: int) -> dict[str, Any]:
    """One MPC episode of `name` at `budget_ms` per replan from `env.reset(seed)`."""
    env = envs.make(task.env_id)
    env.reset(seed=seed)
    controller = MPC(make_planner(name, task, env, seed),
                     MPCConfig(replan_every=1, time_budget_ms=budget_ms))
    plan_ms: list[float] = []
    episode = rollout(env, controller, seed, observe=lambda _: torch.from_numpy(env.get_state()),
                      on_step=record_replan_ms(controller, plan_ms))
    rewarded = np.flatnonzero(episode.rewards > 0)
    return {
        "task": task.env_id, "planner": name, "budget_ms": budget_ms, "seed": seed,
        "return": episode.episode_return,
        "first_reward_s": float(rewarded[0]) * env.control_timestep if rewarded.size else None,
        "plan_ms_median": float(np.median(plan_ms)), "overruns": controller.stats.overruns,
        "fallbacks": controller.stats.fallbacks, "steps": episode.steps,
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean return and median replan time per task, planner and budget."""
    summary: dict[str, Any] = {}
    for task in (t for t in TASKS if any(r["task"] == t.env_id for r in rows)):
        per_planner: dict[str, Any] = {}
        for name in PLANNERS:
            cells = {}
            for budget in sorted({r["budget_ms"] for r in rows}):
                chosen = [r for r in rows if r["task"] == task.env_id
                          and r["planner"] == name and r["budget_ms"] == budget]
                if chosen:
                    cells[f"{budget:.0f}"] = {
                        "mean_return": float(np.mean([r["return"] for r in chosen])),
                        "returns": [r["return"] for r in chosen],
                        "median_plan_ms": float(np.median([r["plan_ms_median"] for r in chosen])),
                    }
            per_planner[name] = cells
        summary[task.env_id] = per_planner
    return summary


def plot(summary: dict[str, Any], budgets: list[float], path: Path) -> None:
    fig, axes = plt.subplots(1, len(summary), figsize=(6 * len(summary), 4.2))
    for ax, (task, per_planner) in zip(np.atleast_1d(axes), summary.items(), strict=True):
        for name, cells in per_planner.items():
            keys = [f"{b:.0f}" for b in budgets if f"{b:.0f}" in cells]
            ax.plot([float(k) for k in keys], [cells[k]["mean_return"] for k in keys],
                    marker="o", label=name)
            for k in keys:
                ax.scatter([float(k)] * len(cells[k]["returns"]), cells[k]["returns"],
                           s=10, alpha=0.4, color=ax.lines[-1].get_color())
        ax.set_xscale("log")
        ax.set_xticks(budgets, [f"{b:.0f}" for b in budgets])
        ax.minorticks_off()
        ax.set_xlabel("budget per replan (ms, one replan per 50 ms step)")
        ax.set_ylabel("episode return (mean; dots: episodes)")
        ax.set_title(f"{task}, true physics")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
