"""The planner benchmark grid: which planner, at what compute, on which task, through which
dynamics.

Every cell of planners x tasks x dynamics sources x budgets x seeds is one MPC episode of a
planner built by the registry (`mbrl.control.planners`, with the grid's `GRID_SETTINGS`),
replanning every control step under a wall-clock budget per replan (the iterative planners
iterate until the budget, as `MPC` asks them to). The dynamics source is what the planner plans
through; the episode itself always runs on the real simulator:

- `simulator`: the true simulator (`envs.dynamics.SimulatorDynamics` for the sampling planners
  and MCTS; `envs.dynamics.JointSpaceDynamics`, MuJoCo's finite-difference Jacobians, for iLQR
  and DDP, on the robots whose observation map from the joint state is known,
  `RobotEnv.joint_observation`);
- `ensemble`: a PETS probabilistic ensemble fitted once per task to logged data
  (`mbrl.experiments.logged_data`: random episodes and a noisy MPC expert), saved under
  `OUT/models/`; the sampling planners propagate particles through it (trajectory sampling),
  MCTS and the gradient-based solvers its members' mean.

The sampling planners and MCTS maximise the task's reward; iLQR and DDP minimise each task's
quadratic goal (`mbrl.control.goals`; Gauss-Newton on the simulator). Named presets
(`PRESETS`) are the grids the README quotes: `default`, and `tree-search` (MCTS against the
sampling planners with longer budgets, on the pendulum and on a sparse reward behind a wall).
A cell that cannot be run (iLQR on a PyBullet arm's simulator: no derivatives) is left out of
the grid and listed with its reason.

A finished cell is appended to `cells.jsonl` in the output folder at once (one JSON object a
line, flushed and synced), so a grid that was stopped resumes without recomputing what it
finished. At the end: `planner_grid.json` (provenance, the grid, every cell, the summary), a
Pareto plot of return against milliseconds per replan (`planner_grid.png`) and a markdown
table (`planner_grid.md`). Each cell plans on one core (one torch thread, MuJoCo's batched
rollouts on the calling thread), so a budget is one core's milliseconds; the cells run one
after another here, or fan out over Ray (a local instance or a cluster), one CPU a cell.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import envs
from controllers import MPC, MPCConfig, Planner
from envs.dynamics import joint_state
from mbrl.control.episodes import record_replan_ms, rollout
from mbrl.control.goals import GOALS
from mbrl.control.planners import (
    build_planner,
    gradient_unavailable,
    model_problem,
    planner_names,
    planner_spec,
    simulator_problem,
)
from mbrl.experiments.logged_data import TaskDataConfig, log_task_data
from mbrl.learning.checkpoint import load_model, save_model
from mbrl.learning.models import EnsembleConfig, EnsembleDynamics
from mbrl.learning.training import TrainConfig, fit_buffer
from mbrl.runs.plots import new_figure, save_png

log = logging.getLogger(__name__)

#: What the planners plan through (see the module docstring).
SOURCES = ("simulator", "ensemble")


@dataclass(frozen=True)
class GridTask:
    """One task of the grid and the episode and horizon it is planned with. iLQR and DDP
    minimise the task's quadratic goal (`mbrl.control.goals.GOALS`), the other planners its
    reward."""

    #: Registered env id.
    env_id: str
    #: Simulator steps per control step.
    action_repeat: int
    #: Control steps per episode.
    episode_steps: int
    #: Planning horizon, in control steps.
    horizon: int


#: The tasks: cart-pole and pendulum swing-up, a reacher, a PyBullet arm, and a point mass
#: whose sparse reward lies behind a wall (where tree search earns its keep).
TASKS = {
    "cartpole-swingup": GridTask("mujoco/cartpole-swingup", 4, 150, 20),
    "pendulum-swingup": GridTask("mujoco/pendulum-swingup", 1, 100, 30),
    "reacher": GridTask("mujoco/reacher-2link", 1, 100, 20),
    "kuka-reach": GridTask("pybullet/kuka-reach", 1, 100, 15),
    "pointmass-wall": GridTask("mujoco/pointmass-wall", 1, 200, 40),
}

#: Named grids: `mbrl bench planners --preset NAME` (options given alongside override them).
PRESETS: dict[str, dict[str, Any]] = {
    # Every planner on the four dense-reward tasks, through both sources.
    "default": {"planners": list(planner_names()),
                "tasks": ["cartpole-swingup", "pendulum-swingup", "reacher", "kuka-reach"],
                "dynamics": list(SOURCES), "budgets_ms": [10.0, 40.0, 160.0], "seeds": [0, 1]},
    # Tree search against the sampling planners on the true physics, longer budgets: the
    # pendulum (pumping, smooth reward) and the point mass (sparse reward behind a wall).
    "tree-search": {"planners": ["mcts", "cem", "icem", "mppi"],
                    "tasks": ["pendulum-swingup", "pointmass-wall"], "dynamics": ["simulator"],
                    "budgets_ms": [20.0, 80.0, 320.0], "seeds": [0, 1]},
}


@dataclass(frozen=True)
class Cell:
    """One cell of the grid: one episode of one planner on one task, through one dynamics
    source, at one budget."""

    #: A name from `PLANNERS`.
    planner: str
    #: A key of `TASKS`.
    task: str
    #: A name from `SOURCES`.
    dynamics: str
    #: Wall-clock budget per replan, milliseconds.
    budget_ms: float
    #: Episode and planner seed.
    seed: int

    @property
    def key(self) -> str:
        return f"{self.planner}|{self.task}|{self.dynamics}|{self.budget_ms:g}|{self.seed}"


def grid(
    planners: Sequence[str], tasks: Sequence[str], budgets_ms: Sequence[float],
    seeds: Sequence[int], sources: Sequence[str] = ("simulator",),
) -> tuple[list[Cell], list[dict[str, str]]]:
    """Every cell of the grid, tasks outermost, and the combinations left out with the reason
    (one entry per planner, task and source). Unknown names are refused with the known ones."""
    for name in planners:
        planner_spec(name)  # refuses an unknown one, listing the registered
    for name in tasks:
        if name not in TASKS:
            raise ValueError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    for name in sources:
        if name not in SOURCES:
            raise ValueError(f"unknown dynamics source {name!r}; known: {', '.join(SOURCES)}")
    if any(not b > 0 for b in budgets_ms):
        raise ValueError(f"budgets must be > 0 ms, got {list(budgets_ms)}")
    cells, left_out = [], []
    for t in tasks:
        for d in sources:
            for p in planners:
                reason = unavailable(p, TASKS[t], d)
                if reason is not None:
                    left_out.append({"planner": p, "task": t, "dynamics": d, "reason": reason})
                    continue
                cells += [Cell(p, t, d, float(b), s) for b in budgets_ms for s in seeds]
    return cells, left_out


def unavailable(planner: str, task: GridTask, source: str) -> str | None:
    """Why `planner` cannot plan `task` through `source`, or None if it can."""
    if not planner_spec(planner).gradient_based or source != "simulator":
        return None
    env = envs.make(task.env_id)
    try:
        return gradient_unavailable(env, named=False)
    finally:
        env.close()


#: The grid's planner settings over the registry's: iterations bounded only by each replan's
#: deadline, and small populations, so that an iteration fits the smaller budgets.
GRID_SETTINGS: dict[str, dict[str, Any]] = {
    "random-shooting": {"population": 64},
    "cem": {"population": 32, "iterations": 10**4},
    "icem": {"population": 32, "iterations": 10**4},
    "mppi": {"population": 32, "iterations": 10**4},
    "ilqr": {"max_iterations": 10**4},
    "ddp": {"max_iterations": 10**4},
    "mcts": {"simulations": 10**6},
}


def make_planner(
    name: str, task: GridTask, env: envs.RobotEnv, seed: int,
    model: EnsembleDynamics | None = None,
) -> Planner:
    """Planner `name` of the registry through the true simulator, or through `model` if
    given (one particle per member, TS-infinity), with the grid's settings (`GRID_SETTINGS`).
    On the simulator a cell plans on one core, here and on Ray (one CPU a cell)."""
    if model is None:
        threads = 1 if task.env_id.startswith("mujoco/") else None
        problem = simulator_problem(env, task.horizon, seed, rollout_threads=threads)
    else:
        problem = model_problem(model, env.task, task.horizon, seed, env_id=task.env_id)
    return build_planner(name, problem, **GRID_SETTINGS.get(name, {}))


def planner_state(cell: Cell, env: envs.RobotEnv) -> torch.Tensor:
    """What the cell's planner plans from: the observation for a model, the joint state for
    iLQR and DDP on the simulator, else the simulator's full state."""
    if cell.dynamics == "ensemble":
        return torch.from_numpy(env.observe())
    if planner_spec(cell.planner).gradient_based:
        return torch.from_numpy(joint_state(env))
    return torch.from_numpy(env.get_state())


def run_cell(cell: Cell, task: GridTask, model: EnsembleDynamics | None = None) -> dict[str, Any]:
    """One MPC episode of the cell on `task` (the cell's task, passed along so that a worker
    process needs no registry), through `model` for the ensemble source; its return and the
    time of every replan."""
    if (model is None) != (cell.dynamics == "simulator"):
        raise ValueError(f"cell {cell.key} needs a model exactly when it plans on the ensemble")
    torch.manual_seed(cell.seed)  # the model's particles draw from torch's generator too
    torch.set_num_threads(1)  # one core a cell: the budgets are one core's milliseconds
    env = envs.make(task.env_id, action_repeat=task.action_repeat,
                    max_episode_steps=task.episode_steps * task.action_repeat)  # substeps
    env.reset(seed=cell.seed)
    controller = MPC(make_planner(cell.planner, task, env, cell.seed, model),
                     MPCConfig(replan_every=1, time_budget_ms=cell.budget_ms))
    if planner_spec(cell.planner).gradient_based:  # torch.func's set-up is not a replan's cost
        controller.planner.plan(planner_state(cell, env))
    plan_ms: list[float] = []
    started = time.perf_counter()
    episode = rollout(env, controller, cell.seed, observe=lambda _: planner_state(cell, env),
                      on_step=record_replan_ms(controller, plan_ms))
    return {
        **asdict(cell), "key": cell.key, "env_id": task.env_id, "return": episode.episode_return,
        "plan_ms_median": float(np.median(plan_ms)),
        "plan_ms_p95": float(np.percentile(plan_ms, 95)),
        "fallbacks": controller.stats.fallbacks, "steps": len(plan_ms),
        "wall_s": time.perf_counter() - started,
    }


# --------------------------------------------------------------------------- the models


#: How each task's ensemble is made: logged data (random episodes and a noisy MPC expert on
#: the true simulator), then PETS's probabilistic ensemble fitted to it.
MODEL_ENSEMBLE = EnsembleConfig(ensemble_size=5, hidden_size=200, hidden_layers=3,
                                weight_decay=(2.5e-5, 5e-5, 7.5e-5, 1e-4))
MODEL_TRAINING = TrainConfig(max_epochs=60, patience=5)
MODEL_DATA_EPISODES = (2, 4)  # random, expert


def describe(name: str) -> dict[str, Any]:
    """Task `name`'s settings as plain values (for the results file)."""
    task = TASKS[name]
    goal = GOALS.get(task.env_id)
    return {**asdict(task), "goal": None if goal is None else asdict(goal)}


def model_settings() -> dict[str, Any]:
    """How the ensembles are made (for the results file)."""
    random_episodes, expert_episodes = MODEL_DATA_EPISODES
    return {"ensemble": asdict(MODEL_ENSEMBLE), "training": asdict(MODEL_TRAINING),
            "random_episodes": random_episodes, "expert_episodes": expert_episodes,
            "particles": "1 per member, trajectory sampling (TS-inf)"}


def task_model(name: str, out: Path, seed: int = 0) -> EnsembleDynamics:
    """Task `name`'s ensemble from `out/models/<name>.pt`, logged and fitted first if the file
    is not there (a stopped grid does not fit it again)."""
    path = out / "models" / f"{name}.pt"
    if path.exists():
        return load_model(path)
    task = TASKS[name]
    random_episodes, expert_episodes = MODEL_DATA_EPISODES
    data_config = TaskDataConfig(
        task.env_id, action_repeat=task.action_repeat, episode_steps=task.episode_steps,
        random_episodes=random_episodes, expert_episodes=expert_episodes,
        expert_horizon=task.horizon,
    )
    log.info("%s: logging %d random and %d expert episodes for its ensemble", name,
             random_episodes, expert_episodes)
    data = log_task_data(data_config, seed)
    torch.manual_seed(seed)
    model = EnsembleDynamics(data.obs_dim, data.act_dim, MODEL_ENSEMBLE)
    started = time.perf_counter()
    report = fit_buffer(model, data, MODEL_TRAINING, torch.Generator().manual_seed(seed))
    log.info("%s: ensemble fitted to %d transitions in %d epochs (%.0f s)", name,
             len(data), report.epochs, time.perf_counter() - started)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, path, extra={
        "task": name, "seed": seed, "transitions": len(data),
        "data": asdict(data_config), "training": asdict(MODEL_TRAINING),
        "fit_s": time.perf_counter() - started, "epochs": report.epochs,
        "holdout_mse": list(report.holdout_mse),
    })
    return model


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


RunCell = Callable[[Cell, GridTask, EnsembleDynamics | None], dict[str, Any]]


def run_grid(
    cells: Sequence[Cell], out: Path,
    run: RunCell = run_cell,
    progress: Callable[[Iterator[dict[str, Any]], int, int], Iterable[dict[str, Any]]] = (
        lambda rows, done, total: rows
    ),
    ray_address: str | None = None,
) -> list[dict[str, Any]]:
    """Run the cells not yet in `out/cells.jsonl`, appending each as it finishes; the rows
    of all `cells`, in their order.

    The ensemble of each task with `ensemble` cells to run comes from `task_model` first
    (fitted here, once, if `out/models/` does not have it). Locally the cells run one after
    another in this process. With `ray_address` they fan out over Ray, one cell per task on
    one CPU: `"local"` starts a Ray instance on this machine, anything else is the address of
    a running cluster (`"auto"`, `"ray://host:10001"`); the models travel with the tasks. A
    cell's result does not depend on where it ran, beyond the wall-clock budget's own timing.
    `progress(rows, already_done, total)` may wrap the stream of finished rows (a progress
    bar).
    """
    out.mkdir(parents=True, exist_ok=True)
    log = out / "cells.jsonl"
    done = finished_cells(log)
    todo = [c for c in cells if c.key not in done]
    models = {name: task_model(name, out)
              for name in dict.fromkeys(c.task for c in todo if c.dynamics == "ensemble")}
    finished = (
        (run(c, TASKS[c.task], models.get(c.task) if c.dynamics == "ensemble" else None)
         for c in todo) if ray_address is None
        else _on_ray(todo, models, run, ray_address)
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
    cells: Sequence[Cell], models: dict[str, EnsembleDynamics], run: RunCell, address: str
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
        shared: dict[str, Any] = {name: ray.put(model) for name, model in models.items()}
        pending = [
            remote.remote(cell, TASKS[cell.task],
                          shared[cell.task] if cell.dynamics == "ensemble" else None)
            for cell in cells
        ]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            yield ray.get(ready[0])
    finally:
        if started_here:
            ray.shutdown()


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean return, median ms per replan and the share of replans that fell back on the
    shifted previous plan (one iteration did not fit the budget) of each (task, planner,
    dynamics, budget), over seeds, with whether it is on its task's Pareto front (no other
    point of the task, through either source, both faster and better)."""
    groups: dict[tuple[str, str, str, float], list[dict[str, Any]]] = {}
    for row in rows:
        key = (row["task"], row["planner"], row.get("dynamics", "simulator"), row["budget_ms"])
        groups.setdefault(key, []).append(row)
    points: list[dict[str, Any]] = [
        {"task": task, "planner": planner, "dynamics": dynamics, "budget_ms": budget,
         "mean_return": float(np.mean([r["return"] for r in members])),
         "plan_ms": float(np.median([r["plan_ms_median"] for r in members])),
         "fallback_share": float(np.mean([r.get("fallbacks", 0) / r.get("steps", 1)
                                          for r in members])),
         "episodes": len(members)}
        for (task, planner, dynamics, budget), members in groups.items()
    ]
    for point in points:
        rivals = [p for p in points if p["task"] == point["task"] and p is not point]
        point["pareto"] = not any(
            r["plan_ms"] <= point["plan_ms"] and r["mean_return"] >= point["mean_return"]
            and (r["plan_ms"] < point["plan_ms"] or r["mean_return"] > point["mean_return"])
            for r in rivals
        )
    return points


def markdown_table(points: Sequence[dict[str, Any]], only_pareto: bool = False) -> str:
    """The summary as a markdown table; Pareto-optimal points in bold (`only_pareto`: just
    those, the table a README can include). "fell back" is the share of replans that played
    the previous plan shifted, because even one iteration did not fit the budget."""
    lines = ["| task | planner | dynamics | budget (ms) | ms per replan | fell back | "
             "mean return | episodes |", "|---|---|---|---|---|---|---|---|"]
    shown = [p for p in points if p["pareto"] or not only_pareto]
    for p in sorted(shown, key=lambda p: (p["task"], p["dynamics"], p["planner"],
                                          p["budget_ms"])):
        value = f"{p['mean_return']:.1f}"
        lines.append(f"| {p['task']} | {p['planner']} | {p['dynamics']} | {p['budget_ms']:g} | "
                     f"{p['plan_ms']:.1f} | {p['fallback_share']:.0%} | "
                     f"{'**' + value + '**' if p['pareto'] else value} | "
                     f"{p['episodes']} |")
    return "\n".join(lines) + "\n"


def plot_pareto(points: Sequence[dict[str, Any]], path: Path) -> None:
    """Return against ms per replan, one panel per task (two a row), the Pareto front drawn;
    one colour per planner, solid lines and circles through the simulator, dotted lines and
    squares through the ensemble; a hollow marker is a point whose replans mostly (over half)
    fell back on the previous plan."""
    tasks = sorted({p["task"] for p in points})
    columns = min(2, len(tasks))
    rows = -(-len(tasks) // columns)
    fig = new_figure(figsize=(7 * columns, 4.6 * rows))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat[len(tasks):]:
        ax.set_visible(False)
    for ax, task in zip(axes.flat, tasks, strict=False):
        mine = [p for p in points if p["task"] == task]
        for i, planner in enumerate(planner_names()):
            for dynamics, style, marker in (("simulator", "-", "o"), ("ensemble", ":", "s")):
                ps = sorted((p for p in mine if p["planner"] == planner
                             and p["dynamics"] == dynamics), key=lambda p: p["plan_ms"])
                if not ps:
                    continue
                ax.plot([p["plan_ms"] for p in ps], [p["mean_return"] for p in ps], ls=style,
                        color=f"C{i}", lw=1.2, label=f"{planner} ({dynamics})")
                for p in ps:
                    hollow = p.get("fallback_share", 0.0) > 0.5
                    ax.plot(p["plan_ms"], p["mean_return"], marker=marker, ms=6, color=f"C{i}",
                            markerfacecolor="white" if hollow else f"C{i}")
        front = sorted((p for p in mine if p["pareto"]), key=lambda p: p["plan_ms"])
        ax.step([p["plan_ms"] for p in front], [p["mean_return"] for p in front], where="post",
                color="black", lw=1.5, ls="--", label="Pareto front")
        ax.set_xscale("log")
        ax.set_xlabel("ms per replan (median, one core)")
        ax.set_ylabel("episode return (mean over seeds)")
        ax.set_title(task)
        ax.grid(alpha=0.3, which="both")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    for ax in axes.flat[1:len(tasks)]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.09, 1, 1))
    save_png(fig, path)
