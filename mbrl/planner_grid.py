"""The planner benchmark grid: which planner, at what compute, on which task.

Every cell of planners x tasks x budgets x seeds is one MPC episode on the true simulator
(`envs.dynamics.SimulatorDynamics`), replanning every control step under a wall-clock budget
per replan (the planners iterate until the budget, as `MPC` asks them to). A finished cell is
appended to `cells.jsonl` in the output folder at once (one JSON object a line, flushed and
synced), so a grid that was stopped resumes without recomputing what it finished. At the end:
`planner_grid.json` (provenance, the grid, every cell, the summary), a Pareto plot of return
against milliseconds per replan (`planner_grid.png`) and a markdown table (`planner_grid.md`).

The cells run one after another here, or fan out over Ray (a local instance or a cluster).
Still to come (issue 6): iLQR and DDP cells and the learned-ensemble dynamics source.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import envs
from controllers import (
    CEM,
    MCTS,
    MPC,
    MPPI,
    CEMConfig,
    MCTSConfig,
    MPCConfig,
    MPPIConfig,
    Planner,
    RandomShooting,
    RandomShootingConfig,
)
from envs.dynamics import SimulatorDynamics

#: Planners the grid knows, by name.
PLANNERS = ("random-shooting", "cem", "icem", "mppi", "mcts")


@dataclass(frozen=True)
class GridTask:
    """One task of the grid and the episode and horizon it is planned with."""

    #: Registered env id.
    env_id: str
    #: Simulator steps per control step.
    action_repeat: int
    #: Control steps per episode.
    episode_steps: int
    #: Planning horizon, in control steps.
    horizon: int


#: The default tasks: cart-pole and pendulum swing-up, a reacher, and a PyBullet arm.
TASKS = {
    "cartpole-swingup": GridTask("mujoco/cartpole-swingup", 2, 250, 50),
    "pendulum-swingup": GridTask("mujoco/pendulum-swingup", 1, 100, 30),
    "reacher": GridTask("mujoco/reacher-2link", 1, 100, 20),
    "kuka-reach": GridTask("pybullet/kuka-reach", 1, 100, 15),
}


@dataclass(frozen=True)
class Cell:
    """One cell of the grid: one episode of one planner on one task at one budget."""

    #: A name from `PLANNERS`.
    planner: str
    #: A key of `TASKS`.
    task: str
    #: Wall-clock budget per replan, milliseconds.
    budget_ms: float
    #: Episode and planner seed.
    seed: int

    @property
    def key(self) -> str:
        return f"{self.planner}|{self.task}|{self.budget_ms:g}|{self.seed}"


def grid(
    planners: Sequence[str], tasks: Sequence[str], budgets_ms: Sequence[float],
    seeds: Sequence[int],
) -> list[Cell]:
    """Every cell of the grid, tasks outermost; unknown names are refused with the known ones."""
    for name in planners:
        if name not in PLANNERS:
            raise ValueError(f"unknown planner {name!r}; known: {', '.join(PLANNERS)}")
    for name in tasks:
        if name not in TASKS:
            raise ValueError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    if any(not b > 0 for b in budgets_ms):
        raise ValueError(f"budgets must be > 0 ms, got {list(budgets_ms)}")
    return [Cell(p, t, float(b), s) for t in tasks for b in budgets_ms for p in planners
            for s in seeds]


def make_planner(name: str, task: GridTask, env: envs.RobotEnv, seed: int) -> Planner:
    """The planner `name` through the true simulator, its iterations bounded only by the
    budget (each replan's deadline)."""
    dynamics = SimulatorDynamics(env)
    low = torch.tensor(env.task.action_low, dtype=torch.float64)
    high = torch.tensor(env.task.action_high, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    many = 10**4
    if name == "random-shooting":
        return RandomShooting(dynamics, low, high, RandomShootingConfig(
            horizon=task.horizon, population=256), generator=generator)
    if name == "cem":
        return CEM(dynamics, low, high, CEMConfig(
            horizon=task.horizon, population=64, elites=8, iterations=many), generator=generator)
    if name == "icem":  # Pinneri et al. 2020: coloured noise, decaying population, kept elites
        return CEM(dynamics, low, high, CEMConfig(
            horizon=task.horizon, population=64, elites=8, iterations=many, noise_beta=2.5,
            population_decay=1.25, keep_elites_fraction=0.3), generator=generator)
    if name == "mppi":
        return MPPI(dynamics, low, high, MPPIConfig(
            horizon=task.horizon, population=64, iterations=many, temperature=0.5),
            generator=generator)
    if name == "mcts":
        return MCTS(dynamics, low, high, MCTSConfig(
            horizon=task.horizon, simulations=10**6, grid_points=3, rollouts_per_leaf=8),
            generator=generator)
    raise ValueError(f"unknown planner {name!r}; known: {', '.join(PLANNERS)}")


def run_cell(cell: Cell, task: GridTask) -> dict[str, Any]:
    """One MPC episode of the cell on `task` (the cell's task, passed along so that a worker
    process needs no registry); its return and the time of every replan."""
    env = envs.make(task.env_id, action_repeat=task.action_repeat,
                    max_episode_steps=task.episode_steps)
    env.reset(seed=cell.seed)
    controller = MPC(make_planner(cell.planner, task, env, cell.seed),
                     MPCConfig(replan_every=1, time_budget_ms=cell.budget_ms))
    env.reset(seed=cell.seed)
    total, plan_ms, done = 0.0, [], False
    started = time.perf_counter()
    while not done:
        action = controller.act(torch.from_numpy(env.get_state()))
        plan_ms.append(controller.stats.last_plan_ms)
        _, reward, terminated, truncated, _ = env.step(action.numpy())
        total += reward
        done = terminated or truncated
    return {
        **asdict(cell), "key": cell.key, "env_id": task.env_id, "return": total,
        "plan_ms_median": float(np.median(plan_ms)),
        "plan_ms_p95": float(np.percentile(plan_ms, 95)),
        "fallbacks": controller.stats.fallbacks, "steps": len(plan_ms),
        "wall_s": time.perf_counter() - started,
    }


def finished_cells(path: Path) -> dict[str, dict[str, Any]]:
    """The cells already in `cells.jsonl`, by key; a last line cut short by a kill is
    ignored (its cell runs again)."""
    if not path.exists():
        return {}
    done: dict[str, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        done[row["key"]] = row
    return done


def run_grid(
    cells: Sequence[Cell], out: Path,
    run: Callable[[Cell, GridTask], dict[str, Any]] = run_cell,
    progress: Callable[[Iterator[dict[str, Any]], int, int], Iterable[dict[str, Any]]] = (
        lambda rows, done, total: rows
    ),
    ray_address: str | None = None,
) -> list[dict[str, Any]]:
    """Run the cells not yet in `out/cells.jsonl`, appending each as it finishes; the rows
    of all `cells`, in their order.

    Locally the cells run one after another in this process. With `ray_address` they fan out
    over Ray, one cell per task on one CPU: `"local"` starts a Ray instance on this machine,
    anything else is the address of a running cluster (`"auto"`, `"ray://host:10001"`). A
    cell's result does not depend on where it ran, beyond the wall-clock budget's own timing.
    `progress(rows, already_done, total)` may wrap the stream of finished rows (a progress
    bar).
    """
    out.mkdir(parents=True, exist_ok=True)
    log = out / "cells.jsonl"
    done = finished_cells(log)
    todo = [c for c in cells if c.key not in done]
    finished = (
        (run(c, TASKS[c.task]) for c in todo) if ray_address is None
        else _on_ray(todo, run, ray_address)
    )
    cut_short = log.exists() and log.stat().st_size > 0 and not log.read_bytes().endswith(b"\n")
    with log.open("a", encoding="utf-8") as handle:
        if cut_short:  # end the partial line a kill left, so the next row starts its own
            handle.write("\n")
        for row in progress(finished, len(cells) - len(todo), len(cells)):
            handle.write(json.dumps(row) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
            done[row["key"]] = row
    return [done[c.key] for c in cells]


def _on_ray(
    cells: Sequence[Cell], run: Callable[[Cell, GridTask], dict[str, Any]], address: str
) -> Iterator[dict[str, Any]]:
    """The cells' rows in the order they finish on Ray."""
    try:
        import ray
    except ImportError:
        raise RuntimeError(
            "the grid fans out over Ray only where it is installed: pip install -e '.[ray]'"
        ) from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=None if address == "local" else address, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    try:
        remote = ray.remote(num_cpus=1)(run)
        pending = [remote.remote(cell, TASKS[cell.task]) for cell in cells]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            yield ray.get(ready[0])
    finally:
        if started_here:
            ray.shutdown()


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean return and median ms per replan of each (task, planner, budget), over seeds, with
    whether it is on its task's Pareto front (no other point both faster and better)."""
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["task"], row["planner"], row["budget_ms"]), []).append(row)
    points: list[dict[str, Any]] = [
        {"task": task, "planner": planner, "budget_ms": budget,
         "mean_return": float(np.mean([r["return"] for r in members])),
         "plan_ms": float(np.median([r["plan_ms_median"] for r in members])),
         "episodes": len(members)}
        for (task, planner, budget), members in groups.items()
    ]
    for point in points:
        rivals = [p for p in points if p["task"] == point["task"] and p is not point]
        point["pareto"] = not any(
            r["plan_ms"] <= point["plan_ms"] and r["mean_return"] >= point["mean_return"]
            and (r["plan_ms"] < point["plan_ms"] or r["mean_return"] > point["mean_return"])
            for r in rivals
        )
    return points


def markdown_table(points: Sequence[dict[str, Any]]) -> str:
    """The summary as a markdown table; Pareto-optimal points in bold."""
    lines = ["| task | planner | budget (ms) | ms per replan | mean return | episodes |",
             "|---|---|---|---|---|---|"]
    for p in sorted(points, key=lambda p: (p["task"], p["planner"], p["budget_ms"])):
        value = f"{p['mean_return']:.1f}"
        lines.append(f"| {p['task']} | {p['planner']} | {p['budget_ms']:g} | "
                     f"{p['plan_ms']:.1f} | {'**' + value + '**' if p['pareto'] else value} | "
                     f"{p['episodes']} |")
    return "\n".join(lines) + "\n"


def plot_pareto(points: Sequence[dict[str, Any]], path: Path) -> None:
    """Return against ms per replan, one panel per task, the Pareto front drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({p["task"] for p in points})
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        mine = [p for p in points if p["task"] == task]
        for planner in sorted({p["planner"] for p in mine}):
            ps = sorted((p for p in mine if p["planner"] == planner), key=lambda p: p["plan_ms"])
            ax.plot([p["plan_ms"] for p in ps], [p["mean_return"] for p in ps], marker="o",
                    label=planner)
        front = sorted((p for p in mine if p["pareto"]), key=lambda p: p["plan_ms"])
        ax.step([p["plan_ms"] for p in front], [p["mean_return"] for p in front], where="post",
                color="black", lw=1, ls="--", label="Pareto front")
        ax.set_xscale("log")
        ax.set_xlabel("ms per replan (median)")
        ax.set_ylabel("episode return (mean over seeds)")
        ax.set_title(task)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
