"""Robust MPC across sampled physics: what K simulator copies cost per replan, and what they buy
on a robot whose actuator is weaker than the nominal one.

    python -m benchmarks.robust_mpc [--steps 100] [--out benchmarks/results]

CEM (population 100, 3 iterations, horizon 15) plans the MuJoCo cart-pole swing-up at 25 Hz
through the nominal simulator (K = 1) or through `RobustSimulatorDynamics` with K copies whose
mass and actuator gain are drawn from x0.5-2 and x0.4-1.2 (log-uniform), scored by the mean,
EPOpt's CVaR of the worst quarter, or the worst case. Each controller runs one episode of
`--steps` control steps on the nominal robot and on a robot with half the actuator gain, from
the same start; every replan is timed. One rollout thread per copy (a core for the planner).
Writes robust_mpc.json and robust_mpc.png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import envs
from benchmarks.provenance import RESULTS, provenance
from controllers import CEM, MPC, CEMConfig
from envs.dynamics import SimulatorDynamics
from sim2real.randomization import RandomizationConfig, Range
from sim2real.robust import Objective, RobustSimulatorDynamics

ENV_ID = "mujoco/cartpole-swingup"
REPEAT = 4
RANGES = RandomizationConfig(mass_scale=Range(0.5, 2.0, "log-uniform"),
                             actuator_gain_scale=Range(0.4, 1.2, "log-uniform"))
#: (name, copies, objective)
CONTROLLERS: list[tuple[str, int, Objective]] = [
    ("nominal", 1, "mean"), ("mean K=4", 4, "mean"), ("cvar0.25 K=4", 4, "cvar"),
    ("worst K=4", 4, "worst"), ("cvar0.25 K=8", 8, "cvar"),
]
TARGETS = {"nominal robot": {}, "actuator gain x0.5": {"actuator_gain_scale": 0.5}}


def episode(name: str, copies: int, objective: Objective, physics: dict[str, float],
            steps: int) -> dict[str, Any]:
    """One MPC episode on a robot with `physics`; its return and replan times."""
    robot = envs.make(ENV_ID, action_repeat=REPEAT)
    robot.set_physics_params(**physics)
    robot.reset(seed=0)
    planning = envs.make(ENV_ID, action_repeat=REPEAT)
    planning.reset(seed=0)
    dynamics: Any = (SimulatorDynamics(planning, rollout_threads=1) if copies == 1 else
                     RobustSimulatorDynamics(planning, RANGES, copies, objective, epsilon=0.25,
                                             seed=0, rollout_threads=1))
    low, high = (torch.tensor(b) for b in (robot.task.action_low, robot.task.action_high))
    controller = MPC(CEM(dynamics, low, high,
                         CEMConfig(horizon=15, population=100, elites=10, iterations=3),
                         generator=torch.Generator().manual_seed(0)))
    total, times = 0.0, []
    for _ in range(steps):
        started = time.perf_counter()
        action = controller.act(torch.from_numpy(robot.get_state()))
        times.append(1000 * (time.perf_counter() - started))
        _, reward, terminated, truncated, _ = robot.step(action.numpy())
        total += reward
        if terminated or truncated:
            break
    return {"controller": name, "copies": copies, "objective": objective, "physics": physics,
            "return": total, "replan_ms_median": float(np.median(times)),
            "replan_ms_p90": float(np.percentile(times, 90))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100, help="control steps an episode")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = []
    for target, physics in TARGETS.items():
        for name, copies, objective in CONTROLLERS:
            result = {"target": target, **episode(name, copies, objective, physics,
                                                  args.steps)}
            results.append(result)
            print(json.dumps(result), flush=True)
    nominal_ms = np.median([r["replan_ms_median"] for r in results if r["copies"] == 1])
    summary = {
        "replan_ms_ratio_to_nominal": {
            name: float(np.median([r["replan_ms_median"] for r in results
                                   if r["controller"] == name]) / nominal_ms)
            for name, _, _ in CONTROLLERS},
        "returns": {f"{r['controller']} on {r['target']}": r["return"] for r in results},
    }
    print(json.dumps(summary, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": "robust_mpc", **provenance(), "steps": args.steps,
               "ranges": {k: v.__dict__ for k, v in RANGES.physics().items()},
               "results": results, "summary": summary}
    (args.out / "robust_mpc.json").write_text(json.dumps(payload, indent=2) + "\n")
    plot(results, args.out / "robust_mpc.png")


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [name for name, _, _ in CONTROLLERS]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    x = np.arange(len(names))
    for offset, target in zip((-0.2, 0.2), TARGETS, strict=True):
        mine = {r["controller"]: r for r in results if r["target"] == target}
        left.bar(x + offset, [mine[n]["return"] for n in names], 0.4, label=target)
        right.bar(x + offset, [mine[n]["replan_ms_median"] for n in names], 0.4, label=target)
    for axis, label in ((left, "return"), (right, "ms per replan (median)")):
        axis.set_xticks(x, names, rotation=20, fontsize=8)
        axis.set_ylabel(label)
        axis.legend()
    left.set_title("CEM MPC on the cart-pole: nominal and robust")
    right.set_title("cost of planning across K copies")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
