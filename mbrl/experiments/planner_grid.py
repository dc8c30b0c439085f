"""The planner benchmark grid: which planner, at what compute, on which task, through which
dynamics.

Every cell of planners x tasks x dynamics sources x budgets x seeds is one MPC episode,
replanning every control step under a wall-clock budget per replan (the iterative planners
iterate until the budget, as `MPC` asks them to). The dynamics source is what the planner plans
through; the episode itself always runs on the real simulator:

- `simulator`: the true simulator (`envs.dynamics.SimulatorDynamics` for the sampling planners
  and MCTS; `envs.dynamics.JointSpaceDynamics`, MuJoCo's finite-difference Jacobians, for iLQR
  and DDP, on the tasks whose observation is written below as a torch function of the joint
  state);
- `ensemble`: a PETS probabilistic ensemble fitted once per task to logged data
  (`mbrl.experiments.logged_data`: random episodes and a noisy MPC expert), saved under
  `OUT/models/`;
  the sampling planners propagate particles through it (trajectory sampling), MCTS and the
  gradient-based solvers its members' mean.

The sampling planners and MCTS maximise the task's reward; iLQR and DDP minimise each task's
quadratic cost of the observation's distance from its goal (Gauss-Newton on the simulator).
A cell that cannot be run (iLQR on a PyBullet arm's simulator: no derivatives) is left out of
the grid and listed with its reason.

A finished cell is appended to `cells.jsonl` in the output folder at once (one JSON object a
line, flushed and synced), so a grid that was stopped resumes without recomputing what it
finished. At the end: `planner_grid.json` (provenance, the grid, every cell, the summary), a
Pareto plot of return against milliseconds per replan (`planner_grid.png`) and a markdown
table (`planner_grid.md`). Each cell plans on one core (one torch thread, MuJoCo's batched rollouts
on the calling thread), so a budget is one core's milliseconds; the cells run one after another
here, or fan out over Ray (a local instance or a cluster), one CPU a cell.
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
from controllers import (
    CEM,
    MCTS,
    MPC,
    MPPI,
    CEMConfig,
    ILQRConfig,
    ILQRPlanner,
    MCTSConfig,
    MPCConfig,
    MPPIConfig,
    Planner,
    RandomShooting,
    RandomShootingConfig,
)
from controllers.costs import QuadraticCost, QuadraticFinalCost, ResidualCost, ResidualFinalCost
from envs.dynamics import JointSpaceDynamics, SimulatorDynamics, joint_state
from mbrl.control.episodes import record_replan_ms, rollout
from mbrl.experiments.logged_data import TaskDataConfig, log_task_data
from mbrl.learning.checkpoint import load_model, save_model
from mbrl.learning.models import EnsembleConfig, EnsembleDynamics
from mbrl.learning.propagation import ModelDynamics, Propagation
from mbrl.learning.solver_dynamics import ensemble_dynamics
from mbrl.learning.training import TrainConfig, fit_buffer
from mbrl.runs.plots import new_figure, save_png

log = logging.getLogger(__name__)

#: Planners the grid knows, by name.
PLANNERS = ("random-shooting", "cem", "icem", "mppi", "ilqr", "ddp", "mcts")
#: The gradient-based ones, which minimise the task's quadratic cost instead of its reward.
GRADIENT_BASED = ("ilqr", "ddp")
#: What the planners plan through (see the module docstring).
SOURCES = ("simulator", "ensemble")

F64 = torch.float64
JointObservation = Callable[[torch.Tensor], torch.Tensor]


def cartpole_observation(x: torch.Tensor) -> torch.Tensor:
    """`[cart x, cos, sin, cart v, pole w]` of the joint state `[x, theta, v, w]`."""
    return torch.stack([x[0], torch.cos(x[1]), torch.sin(x[1]), x[2], x[3]])


def pendulum_observation(x: torch.Tensor) -> torch.Tensor:
    """`[cos, sin, w]` of the joint state `[theta, w]`."""
    return torch.stack([torch.cos(x[0]), torch.sin(x[0]), x[1]])


@dataclass(frozen=True)
class GridTask:
    """One task of the grid, the episode and horizon it is planned with, and the quadratic
    cost of the observation that iLQR and DDP minimise (the other planners use the reward):
    `1/2 sum_i w_i (obs_i - goal_i)^2 + 1/2 action_weight |u|^2` a step, and
    `final_scale` times the observation part at the horizon's end."""

    #: Registered env id.
    env_id: str
    #: Simulator steps per control step.
    action_repeat: int
    #: Control steps per episode.
    episode_steps: int
    #: Planning horizon, in control steps.
    horizon: int
    #: The goal observation `[do]` of the quadratic cost.
    goal: tuple[float, ...]
    #: Weights `[do]` of the observation's squared distance from the goal.
    weights: tuple[float, ...]
    #: Weight of the squared action, every action dimension alike.
    action_weight: float
    #: Factor on the observation weights at the end of the horizon.
    final_scale: float = 5.0
    #: The observation as a torch function of the MuJoCo joint state `[qpos, qvel]`, for iLQR
    #: and DDP on the simulator; None where there is none (they then plan only on the model).
    joint_observation: JointObservation | None = None

    def costs(self, simulator: bool, action_dim: int) -> tuple[
        QuadraticCost | ResidualCost, QuadraticFinalCost | ResidualFinalCost
    ]:
        """The running and final costs on the planner's state: the joint state through
        `joint_observation` (Gauss-Newton) on the simulator, else the observation itself."""
        goal = torch.tensor(self.goal, dtype=F64)
        weights = torch.diag(torch.tensor(self.weights, dtype=F64))
        action = self.action_weight * torch.eye(action_dim, dtype=F64)
        if not simulator:
            return (QuadraticCost(weights, action, x_ref=goal),
                    QuadraticFinalCost(self.final_scale * weights, x_ref=goal))
        if self.joint_observation is None:
            raise ValueError(f"{self.env_id} has no joint-state observation for iLQR")
        to_obs = self.joint_observation

        def residual(x: torch.Tensor) -> torch.Tensor:
            return to_obs(x) - goal.to(x.dtype)

        return (ResidualCost(residual, weights, action),
                ResidualFinalCost(residual, self.final_scale * weights))


#: The default tasks: cart-pole and pendulum swing-up, a reacher, and a PyBullet arm.
TASKS = {
    "cartpole-swingup": GridTask(
        "mujoco/cartpole-swingup", 4, 150, 20, goal=(0.0, 1.0, 0.0, 0.0, 0.0),
        weights=(0.2, 1.0, 1.0, 0.0, 0.01), action_weight=0.02,
        joint_observation=cartpole_observation),
    "pendulum-swingup": GridTask(
        "mujoco/pendulum-swingup", 1, 100, 30, goal=(1.0, 0.0, 0.0),
        weights=(1.0, 1.0, 0.0), action_weight=0.01, joint_observation=pendulum_observation),
    # The fingertip-to-target offset (obs 6, 7), in metres: 1 cm costs as 0.01 of the action.
    "reacher": GridTask(
        "mujoco/reacher-2link", 1, 100, 20, goal=(0.0,) * 10,
        weights=(0.0,) * 6 + (100.0, 100.0, 0.0, 0.0), action_weight=0.01),
    # The end effector's offset from the target (obs 17 .. 19), in metres.
    "kuka-reach": GridTask(
        "pybullet/kuka-reach", 1, 100, 15, goal=(0.0,) * 20,
        weights=(0.0,) * 17 + (100.0,) * 3, action_weight=0.001),
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
        if name not in PLANNERS:
            raise ValueError(f"unknown planner {name!r}; known: {', '.join(PLANNERS)}")
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
    if planner in GRADIENT_BASED and source == "simulator" and task.joint_observation is None:
        if not task.env_id.startswith(("mujoco/", "dmc/")):
            return "no derivatives of this simulator (only MuJoCo's finite differences are wired)"
        return "no torch function from the joint state to this task's observation"
    return None


def make_planner(
    name: str, task: GridTask, env: envs.RobotEnv, seed: int,
    model: EnsembleDynamics | None = None,
) -> Planner:
    """The planner `name` through the true simulator, or through `model` if given, its
    iterations bounded only by the budget (each replan's deadline). Small populations (32 a
    CEM or MPPI iteration, 64 for random shooting), so that an iteration fits the smaller
    budgets. Through a model the sampling planners sample in float32, the model's precision,
    and propagate one particle per member (TS-infinity)."""
    low = torch.tensor(env.task.action_low, dtype=F64)
    high = torch.tensor(env.task.action_high, dtype=F64)
    generator = torch.Generator().manual_seed(seed)
    many = 10**4
    if name in GRADIENT_BASED:
        cost, final_cost = task.costs(simulator=model is None, action_dim=low.shape[0])
        dynamics_fn = (JointSpaceDynamics(env, "control_step", centred=False) if model is None
                       else ensemble_dynamics(model))
        # A small push off the cost's stationary points (a pendulum hanging at rest).
        initial = 0.3 * high.expand(task.horizon, -1)
        return ILQRPlanner(dynamics_fn, cost, final_cost, task.horizon, low, high,
                           ILQRConfig(max_iterations=many, second_order=name == "ddp"),
                           initial_controls=initial)
    dynamics: SimulatorDynamics | ModelDynamics
    dtype = F64
    if model is None:  # a cell plans on one core, here and on Ray (one CPU a cell)
        threads = 1 if task.env_id.startswith("mujoco/") else None
        dynamics = SimulatorDynamics(env, rollout_threads=threads)
    else:
        dynamics = ModelDynamics(model, env.task, particles=model.num_members,
                                 propagation=Propagation.TS_INFINITY, generator=generator)
        dtype = torch.float32
    if name == "random-shooting":
        return RandomShooting(dynamics, low, high, RandomShootingConfig(
            horizon=task.horizon, population=64), generator=generator, dtype=dtype)
    if name == "cem":
        return CEM(dynamics, low, high, CEMConfig(
            horizon=task.horizon, population=32, elites=4, iterations=many), generator=generator,
            dtype=dtype)
    if name == "icem":  # Pinneri et al. 2020: coloured noise, decaying population, kept elites
        return CEM(dynamics, low, high, CEMConfig(
            horizon=task.horizon, population=32, elites=4, iterations=many, noise_beta=2.5,
            population_decay=1.25, keep_elites_fraction=0.3), generator=generator, dtype=dtype)
    if name == "mppi":
        return MPPI(dynamics, low, high, MPPIConfig(
            horizon=task.horizon, population=32, iterations=many, temperature=0.5),
            generator=generator, dtype=dtype)
    if name == "mcts":
        return MCTS(dynamics, low, high, MCTSConfig(
            horizon=task.horizon, simulations=10**6, grid_points=3, rollouts_per_leaf=8),
            generator=generator)
    raise ValueError(f"unknown planner {name!r}; known: {', '.join(PLANNERS)}")


def planner_state(cell: Cell, env: envs.RobotEnv) -> torch.Tensor:
    """What the cell's planner plans from: the observation for a model, the joint state for
    iLQR and DDP on the simulator, else the simulator's full state."""
    if cell.dynamics == "ensemble":
        return torch.from_numpy(env.observe())
    if cell.planner in GRADIENT_BASED:
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
    if cell.planner in GRADIENT_BASED:  # torch.func's one-time set-up is not a replan's cost
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
    fields = {k: v for k, v in asdict(task).items() if k != "joint_observation"}
    observation = task.joint_observation
    return {**fields, "joint_observation": None if observation is None else observation.__name__}


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
        for i, planner in enumerate(PLANNERS):
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
