"""iLQR and DDP side by side with Crocoddyl (DDP, FDDP, BoxDDP, BoxFDDP) and IPOPT.

Two problems, posed identically to every solver and scored by one shared evaluator:

- **pendulum**: a 1 kg point mass on a 1 m massless rod (theta 0 hanging, pi upright), the
  torque its control; semi-implicit Euler at 50 ms, from hanging at rest. Ours is a plain torch
  function, as a user would write it (derivatives by torch.func).
- **cart-pole**: the rigid bodies of `envs/assets/cartpole.xml` (1 kg cart on a slider, 0.1 kg
  pole on a hinge, qpos 0 upright), with its damping, dry friction and joint limit removed and
  one 20 ms semi-implicit Euler step a control step (what Pinocchio and Crocoddyl's
  `IntegratedActionModelEuler` model), the cart force in newtons; from hanging at rest. Ours is
  MuJoCo itself (`envs.dynamics.JointSpaceDynamics.of_model` on the edited model, centred
  finite differences of the control step in one `mujoco.rollout` call), and the same bodies'
  equations in torch (`envs.cartpole.CartpoleJointDynamics`) compiled. Crocoddyl's model is
  Pinocchio's, built from MuJoCo's compiled masses and inertias; its full actuation adds a pole
  torque, weighted 1e12 (unbounded) or boxed to 0 (bounded), and the evaluator applies it.

Costs (both): `sum_t 1/2 (x_t - goal)' Q (x_t - goal) + 1/2 u_t' R u_t + 1/2 (x_H - goal)'
Q_final (x_H - goal)`, quadratic in the angle to upright, the velocities and the control.
Every solver starts from zero controls (their rollout as states) and runs to its own stopping
rule (ours: relative decrease 1e-10; Crocoddyl: its default `th_stop`), at most 500
iterations. The bounded problems (|torque| <= 5 N m, |force| <= 10 N) are also transcribed by
multiple shooting and solved by IPOPT through CasADi, from zero controls and from the best
DDP-family solution: the lower of the two is the reference optimum.

Reported per problem, horizon (50, 100, 200) and solver: the evaluator's cost, iterations,
the median solve time over the repeats, time per iteration, and the time to come within 1e-6
(relative) of the best cost any solver found (the median solve time times the fraction of
iterations it took); and per pair, ours / Crocoddyl. Both sides run on one core, taking turns.

    python -m benchmarks.peers_optimal_control [--horizons 50 100 200] [--repeats 5]

Writes benchmarks/results/peers_optimal_control.json and .png.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from importlib import resources
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mujoco
import numpy as np
import torch

from benchmarks.peer_venvs import WORKERS, Worker, on_the_benchmark_core, peer_python
from benchmarks.provenance import RESULTS, provenance
from controllers.compiled import CompiledDynamics, compile_dynamics
from controllers.costs import QuadraticCost, QuadraticFinalCost
from controllers.ilqr import ILQRConfig, ilqr
from envs.cartpole import CartpoleJointDynamics
from envs.dynamics import JointSpaceDynamics

F64 = torch.float64
#: pin 4.0.0: crocoddyl 3.2.1 with pin 4.1.0 computes wrong dynamics (its forward dynamics
#: differed from pinocchio.aba by 2.6 on the sample manipulator; with 4.0.0 they agree).
REQUIREMENTS = ["crocoddyl==3.2.1", "pin==4.0.0", "casadi==3.8.2"]
OURS = ("iLQR", "DDP")
THEIRS = ("DDP", "FDDP")
#: "Reached" means within this relative distance of the best cost any solver found.
REACH_TOLERANCE = 1e-6
MAX_ITERATIONS = 500
#: Crocoddyl's weight on the pole torque its full actuation adds (per unit time): large enough
#: that the torque it plans is negligible (its size is reported). At 1e8 the cart-pole's
#: 7e-7 N m bought it a cost 1.1e-6 (relative) below the problem's optimum at H=50; at 1e12 the
#: torque is 7e-11 N m and the cost within 3e-9 of ours, at the same iterations and speed.
UNACTUATED_WEIGHT = 1e12
#: The issue's target: our time per iteration at most this many times Crocoddyl's FDDP's.
TARGET_RATIO = 5.0

PENDULUM: dict[str, Any] = {
    "kind": "pendulum", "mass": 1.0, "length": 1.0, "gravity": 9.81, "dt": 0.05,
    "x0": [0.0, 0.0], "goal": [math.pi, 0.0], "Q": [0.05 * 1.0, 0.05 * 0.1],
    "R": [0.05 * 0.01], "Q_final": [100.0, 10.0], "limit": 5.0,
}
CARTPOLE_DT = 0.02


def matched_cartpole_model() -> mujoco.MjModel:
    """`envs/assets/cartpole.xml` as Pinocchio sees it: no damping, dry friction, joint limit or
    control limit, gear 1 (the control is the force), one Euler step of 20 ms."""
    xml = resources.files("envs").joinpath("assets", "cartpole.xml").read_text(encoding="utf-8")
    model = mujoco.MjModel.from_xml_string(xml)
    model.opt.timestep = CARTPOLE_DT
    model.opt.integrator = mujoco.mjtIntegrator.mjINT_EULER
    model.dof_damping[:] = 0.0
    model.dof_frictionloss[:] = 0.0
    model.jnt_limited[:] = 0
    model.actuator_ctrllimited[:] = 0
    model.actuator_gear[0, 0] = 1.0
    return model


def cartpole_problem(model: mujoco.MjModel) -> dict[str, Any]:
    cart, pole = model.body("cart").id, model.body("pole").id
    dt = CARTPOLE_DT
    return {
        "kind": "cartpole", "cart_mass": float(model.body_mass[cart]),
        "pole_mass": float(model.body_mass[pole]), "pole_com": float(model.body_ipos[pole][2]),
        "pole_inertia": model.body_inertia[pole].tolist(), "gravity": 9.81, "dt": dt,
        "x0": [0.0, math.pi, 0.0, 0.0], "goal": [0.0, 0.0, 0.0, 0.0],
        "Q": [dt * 1.0, dt * 1.0, dt * 0.1, dt * 0.1], "R": [dt * 0.01],
        "Q_final": [100.0, 100.0, 10.0, 10.0], "limit": 10.0,
        "unactuated_weight": UNACTUATED_WEIGHT,
    }


class PendulumDynamics:
    """The pendulum step in plain torch: `x [2], u [1] -> [2]`."""

    def __init__(self, problem: dict[str, Any]) -> None:
        self.m, self.length, self.g, self.dt = (problem[k] for k in ("mass", "length", "gravity",
                                                                      "dt"))

    def __call__(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        acceleration = (u[0] - self.m * self.g * self.length * torch.sin(x[0])) / (
            self.m * self.length**2)
        velocity = x[1] + self.dt * acceleration
        return torch.stack([x[0] + self.dt * velocity, velocity])


#: Our dynamics of each problem: the plain torch function and its compiled twin, and for the
#: cart-pole MuJoCo itself.
VARIANTS = {"pendulum": ("torch", "compiled"), "cartpole": ("MuJoCo", "compiled")}
_COMPILED: dict[str, CompiledDynamics] = {}


def our_dynamics(problem: dict[str, Any], variant: str, bounded: bool) -> Any:
    torch_dynamics = PendulumDynamics(problem) if problem["kind"] == "pendulum" else (
        CartpoleJointDynamics.of_model(matched_cartpole_model(), substeps=1))
    if variant == "torch":
        return torch_dynamics
    if variant == "compiled":
        if problem["kind"] not in _COMPILED:
            _COMPILED[problem["kind"]] = compile_dynamics(
                torch_dynamics, len(problem["x0"]), 1)
        return _COMPILED[problem["kind"]]
    bound = problem["limit"] if bounded else math.inf
    return JointSpaceDynamics.of_model(
        matched_cartpole_model(), np.array([-bound]), np.array([bound]), substeps=1,
        finite_differences="control_step", centred=True,
    )


def our_costs(problem: dict[str, Any], bounded: bool) -> tuple[
    QuadraticCost, QuadraticFinalCost, torch.Tensor | None, torch.Tensor | None,
]:
    goal = torch.tensor(problem["goal"], dtype=F64)
    cost = QuadraticCost(torch.diag(torch.tensor(problem["Q"], dtype=F64)),
                         torch.diag(torch.tensor(problem["R"], dtype=F64)), goal)
    final = QuadraticFinalCost(torch.diag(torch.tensor(problem["Q_final"], dtype=F64)), goal)
    limit = problem["limit"]
    low, high = (torch.tensor([-limit], dtype=F64), torch.tensor([limit], dtype=F64)) if (
        bounded) else (None, None)
    return cost, final, low, high


class Evaluator:
    """Rolls a solution's controls out on one reference simulation and prices them: NumPy for
    the pendulum, the edited MuJoCo model for the cart-pole (a pole torque as an applied
    joint force)."""

    def __init__(self, problem: dict[str, Any]) -> None:
        self.problem = problem
        self.model = matched_cartpole_model() if problem["kind"] == "cartpole" else None
        self.data = None if self.model is None else mujoco.MjData(self.model)

    def step(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        p = self.problem
        if self.model is None or self.data is None:
            acceleration = (u[0] - p["mass"] * p["gravity"] * p["length"] * math.sin(x[0])) / (
                p["mass"] * p["length"] ** 2)
            velocity = x[1] + p["dt"] * acceleration
            return np.array([x[0] + p["dt"] * velocity, velocity])
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[:], self.data.qvel[:] = x[:2], x[2:]
        self.data.ctrl[0] = u[0]
        self.data.qfrc_applied[1] = u[1] if len(u) > 1 else 0.0
        mujoco.mj_step(self.model, self.data)
        return np.concatenate([self.data.qpos, self.data.qvel])

    def cost(self, controls: np.ndarray) -> float:
        p = self.problem
        Q, R, Q_final = (np.diag(p[k]) for k in ("Q", "R", "Q_final"))
        goal = np.array(p["goal"])
        x, total = np.array(p["x0"], dtype=float), 0.0
        for u in controls:
            e = x - goal
            total += 0.5 * (e @ Q @ e + u[:1] @ R @ u[:1])
            if len(u) > 1:  # Crocoddyl's pole torque, at the price it paid for it
                total += 0.5 * p["unactuated_weight"] * p["dt"] * u[1] ** 2
            x = self.step(x, u)
        e = x - goal
        return float(total + 0.5 * e @ Q_final @ e)


def check_dynamics(problem: dict[str, Any], worker: Worker, seed: int = 0) -> dict[str, float]:
    """The largest difference between the evaluator's step and Crocoddyl's, and each of ours,
    at random states and controls."""
    rng = np.random.default_rng(seed)
    n = len(problem["x0"])
    states = rng.uniform(-3, 3, size=(32, n))
    controls = rng.uniform(-problem["limit"], problem["limit"], size=(32, 1))
    peer_controls = controls if problem["kind"] == "pendulum" else np.concatenate(
        [controls, np.zeros((32, 1))], axis=1)
    theirs = np.array(worker.ask({"op": "step", "problem": problem, "states": states.tolist(),
                                  "controls": peer_controls.tolist()})["next_states"])
    evaluator = Evaluator(problem)
    reference = np.array([evaluator.step(x, u) for x, u in zip(states, controls, strict=True)])
    out = {"crocoddyl_vs_evaluator": float(np.abs(theirs - reference).max())}
    for variant in VARIANTS[problem["kind"]]:
        dynamics = our_dynamics(problem, variant, False)
        ours = np.array([dynamics(torch.tensor(x), torch.tensor(u)).numpy()
                         for x, u in zip(states, controls, strict=True)])
        out[f"ours ({variant})_vs_evaluator"] = float(np.abs(ours - reference).max())
    return out


def solve_ours(problem: dict[str, Any], solver: str, variant: str, horizon: int,
               bounded: bool, repeats: int) -> dict[str, Any]:
    dynamics = our_dynamics(problem, variant, bounded)
    cost, final, low, high = our_costs(problem, bounded)
    config = ILQRConfig(second_order=solver == "DDP", max_iterations=MAX_ITERATIONS,
                        cost_tolerance=1e-10)
    x0 = torch.tensor(problem["x0"], dtype=F64)
    times, result = [], None
    for repeat in range(repeats + 1):  # the first warms the compiled kernels and caches
        started = time.perf_counter()
        result = ilqr(dynamics, cost, final, x0, torch.zeros(horizon, 1, dtype=F64), config,
                      low, high)
        if repeat > 0:
            times.append(time.perf_counter() - started)
    assert result is not None
    return {"controls": result.controls.tolist(), "cost": result.cost,
            "iterations": result.iterations, "solve_s": times,
            "cost_history": result.cost_history, "stop_reason": result.stop_reason}


def compare(problem: dict[str, Any], worker: Worker, horizon: int, bounded: bool,
            repeats: int) -> dict[str, Any]:
    evaluator = Evaluator(problem)
    rows: dict[str, dict[str, Any]] = {}
    for ours, theirs in zip(OURS, THEIRS, strict=True):  # taking turns on the one core
        for variant in VARIANTS[problem["kind"]]:
            rows[f"ours {ours} ({variant})"] = solve_ours(problem, ours, variant, horizon,
                                                          bounded, repeats)
        peer = ("Box" if bounded else "") + theirs
        rows[f"Crocoddyl {peer}"] = worker.ask({
            "op": "solve", "problem": problem, "solver": peer, "horizon": horizon,
            "bounded": bounded, "repeats": repeats, "max_iterations": MAX_ITERATIONS})
    for row in rows.values():
        controls = np.array(row.pop("controls"))
        row.pop("states", None)
        row["evaluated_cost"] = evaluator.cost(controls)
        row["median_solve_s"] = statistics.median(row["solve_s"])
        row["ms_per_iteration"] = 1e3 * row["median_solve_s"] / max(row["iterations"], 1)
        if controls.shape[1] > 1:
            row["max_abs_pole_torque"] = float(np.abs(controls[:, 1]).max())
        row["controls_first_column"] = controls[:, 0].tolist()
    best = min(row["evaluated_cost"] for row in rows.values())
    reference = None
    if bounded:
        best_name = min(rows, key=lambda name: rows[name]["evaluated_cost"])
        ipopt = {
            "from_zero": worker.ask({"op": "ipopt", "problem": problem, "horizon": horizon,
                                     "controls": None}),
            "from_best_ddp": worker.ask({"op": "ipopt", "problem": problem, "horizon": horizon,
                                         "controls": rows[best_name]["controls_first_column"]}),
        }
        for start in ipopt.values():
            start["evaluated_cost"] = evaluator.cost(np.array(start.pop("controls")))
        reference = min(start["evaluated_cost"] for start in ipopt.values())
        best = min(best, reference)
    for row in rows.values():
        row.pop("controls_first_column")
        history = row.pop("cost_history")
        reached = [k for k, c in enumerate(history)
                   if c <= best + REACH_TOLERANCE * abs(best)]
        row["iterations_to_reach_best"] = reached[0] if reached else None
        row["s_to_reach_best"] = (row["median_solve_s"] * reached[0] / max(row["iterations"], 1)
                                  if reached else None)
        row["gap_to_best"] = (row["evaluated_cost"] - best) / abs(best)
        if reference is not None:
            row["gap_to_ipopt"] = (row["evaluated_cost"] - reference) / abs(reference)
    out: dict[str, Any] = {"best_cost": best, "solvers": rows}
    if bounded:
        out["ipopt"], out["ipopt_reference"] = ipopt, reference
    out["ratios"] = ratios(rows, bounded, VARIANTS[problem["kind"]])
    return out


def ratios(rows: dict[str, dict[str, Any]], bounded: bool,
           variants: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Ours / Crocoddyl per pair: time per iteration and time to reach the best cost."""
    prefix = "Box" if bounded else ""
    out = {}
    for ours in OURS:
        for variant in variants:
            for theirs in THEIRS:
                a, b = rows[f"ours {ours} ({variant})"], rows[f"Crocoddyl {prefix}{theirs}"]
                reach = (a["s_to_reach_best"] / b["s_to_reach_best"]
                         if a["s_to_reach_best"] and b["s_to_reach_best"] else None)
                out[f"{ours} ({variant}) / {prefix}{theirs}"] = {
                    "per_iteration": a["ms_per_iteration"] / b["ms_per_iteration"],
                    "to_reach_best": reach,
                }
    return out


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name, problem in results["problems"].items():
        for key, case in problem["cases"].items():
            summary[f"{name} {key}"] = {
                "ms_per_iteration": {s: round(r["ms_per_iteration"], 3)
                                     for s, r in case["solvers"].items()},
                "cost": {s: r["evaluated_cost"] for s, r in case["solvers"].items()},
                "ratios": case["ratios"],
                **({"ipopt_reference": case["ipopt_reference"]} if "ipopt" in case else {}),
            }
    targets = {}
    for name, problem in results["problems"].items():
        case = problem["cases"].get("H=100 unbounded")
        for variant in VARIANTS[name] if case is not None else ():
            ratio = case["ratios"][f"iLQR ({variant}) / FDDP"]["per_iteration"]
            targets[f"{name}: iLQR ({variant}) / FDDP per iteration at H=100"] = {
                "ratio": ratio, "target": TARGET_RATIO, "met": ratio <= TARGET_RATIO}
        for key, case in problem["cases"].items():
            if "ipopt" in case:
                for solver in (s for s in case["solvers"] if s.startswith("ours")):
                    gap = case["solvers"][solver]["gap_to_ipopt"]
                    targets[f"{name} {key} {solver}: cost vs IPOPT"] = {
                        "relative_gap": gap, "target": 1e-6, "met": gap <= 1e-6}
    summary["targets"] = targets
    return summary


def plot(results: dict[str, Any], path: Path) -> None:
    problems = list(results["problems"])
    fig, axes = plt.subplots(2, len(problems), figsize=(6.5 * len(problems), 8), squeeze=False)
    for column, name in enumerate(problems):
        cases = results["problems"][name]["cases"]
        for row_index, bounded in enumerate((False, True)):
            ax = axes[row_index][column]
            keys = [k for k in cases if k.endswith("bounded") and (
                k.endswith(" bounded") == bounded)]
            solvers = list(cases[keys[0]]["solvers"]) if keys else []
            width = 0.8 / max(len(solvers), 1)
            for i, solver in enumerate(solvers):
                values = [cases[k]["solvers"][solver]["ms_per_iteration"] for k in keys]
                ax.bar(np.arange(len(keys)) + i * width, values, width, label=solver)
            ax.set_xticks(np.arange(len(keys)) + 0.4 - width / 2,
                          [k.split()[0] for k in keys])
            ax.set_yscale("log")
            ax.set_ylabel("ms per iteration (median)")
            ax.set_title(f"{name}, {'bounded' if bounded else 'unbounded'}")
            ax.legend(fontsize=8)
    fig.suptitle(f"iLQR/DDP vs Crocoddyl, one core ({results['git_revision'][:7]})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--horizons", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--repeats", type=int, default=5, help="timed solves per solver")
    parser.add_argument("--problems", nargs="+", choices=("pendulum", "cartpole"),
                        default=["pendulum", "cartpole"])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    on_the_benchmark_core()
    worker = Worker(peer_python("crocoddyl", REQUIREMENTS), WORKERS / "crocoddyl_worker.py", {})
    problems = {"pendulum": PENDULUM, "cartpole": cartpole_problem(matched_cartpole_model())}
    results: dict[str, Any] = {"benchmark": "peers_optimal_control", "problems": {}}
    try:
        for name in args.problems:
            problem = problems[name]
            entry: dict[str, Any] = {"problem": problem,
                                     "dynamics_check": check_dynamics(problem, worker),
                                     "cases": {}}
            print(name, entry["dynamics_check"], flush=True)
            for horizon in args.horizons:
                for bounded in (False, True):
                    key = f"H={horizon} {'bounded' if bounded else 'unbounded'}"
                    case = compare(problem, worker, horizon, bounded, args.repeats)
                    entry["cases"][key] = case
                    print(name, key, json.dumps({s: (round(r["ms_per_iteration"], 3),
                                                     r["iterations"], r["evaluated_cost"])
                                                 for s, r in case["solvers"].items()}),
                          json.dumps(case.get("ipopt_reference")), flush=True)
            results["problems"][name] = entry
    finally:
        worker.close()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {**results, **provenance()}
    results["summary"] = summarise(results)
    (args.out / "peers_optimal_control.json").write_text(
        json.dumps(results, indent=2, default=str) + "\n")
    plot(results, args.out / "peers_optimal_control.png")
    print(json.dumps(results["summary"], indent=2, default=str))


if __name__ == "__main__":
    main()
