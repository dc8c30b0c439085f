"""iLQR's time per iteration now against an earlier revision, in the same run.

The same two problems are solved by `controllers.ilqr.ilqr` of this tree and of `--before` (a
git worktree made for the run), each in its own process on one core, taking turns:

- **pendulum**: a torch function (`x [2], u [1] -> [2]`, semi-implicit Euler at 50 ms, from
  hanging at rest) with `controllers.costs.QuadraticCost` on the angle to upright, velocity
  and torque, and with the same cost written as torch functions (derivatives by torch.func):
  the problem of issue 18's report (25 ms an iteration at horizon 100);
- **cart-pole**: `mujoco/cartpole-swingup` (20 ms control steps) through
  `envs.dynamics.JointSpaceDynamics` with finite differences of the control step, a quadratic
  cost on the joint state's distance from upright.

Both revisions run the same code (below, `SOLVE`), in `--blocks` processes a side that take
turns; the median over all their solves is reported; the compiled routes of the newer tree
(`compile_dynamics`) are not used here: `benchmarks/peers_optimal_control.py` measures those.

    python -m benchmarks.ilqr_speedup [--before 3586c81] [--horizons 50 100 200] [--repeats 5]
        [--blocks 3]

Writes benchmarks/results/ilqr_speedup.json and .png.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from benchmarks.peer_venvs import on_the_benchmark_core
from benchmarks.provenance import RESULTS, provenance

ROOT = Path(__file__).resolve().parent.parent
#: The last revision before issue 18's work.
BEFORE = "3586c81"

#: Run by each revision's interpreter with that revision's tree first on the path; prints one
#: JSON line: per problem, the solve times, iterations and final cost.
SOLVE = r'''
import json, math, sys, time
import torch
torch.set_num_threads(1)
import envs
from controllers.costs import QuadraticCost, QuadraticFinalCost
from controllers.ilqr import ILQRConfig, ilqr
from envs.dynamics import JointSpaceDynamics

F64 = torch.float64
horizon, repeats = int(sys.argv[1]), int(sys.argv[2])

def pendulum(x, u):
    velocity = x[1] + 0.05 * (u[0] - 9.81 * torch.sin(x[0]))
    return torch.stack([x[0] + 0.05 * velocity, velocity])

def costs(goal, q, r, q_final, dt):
    goal = torch.tensor(goal, dtype=F64)
    return (QuadraticCost(dt * torch.diag(torch.tensor(q, dtype=F64)),
                          dt * torch.tensor([[r]], dtype=F64), goal),
            QuadraticFinalCost(torch.diag(torch.tensor(q_final, dtype=F64)), goal))

env = envs.make("mujoco/cartpole-swingup", action_repeat=2)
env.reset(seed=0)
def running_cost(x, u, t):  # the same cost as a plain torch function (torch.func derivatives)
    return 0.05 * 0.5 * ((x[0] - math.pi) ** 2 + 0.1 * x[1] ** 2 + 0.01 * u[0] ** 2)

def final_cost(x):
    return 0.5 * (100.0 * (x[0] - math.pi) ** 2 + 10.0 * x[1] ** 2)

problems = {
    "pendulum": (pendulum, *costs([math.pi, 0.0], [1.0, 0.1], 0.01, [100.0, 10.0], 0.05),
                 torch.zeros(2, dtype=F64)),
    "pendulum, cost in torch": (pendulum, running_cost, final_cost, torch.zeros(2, dtype=F64)),
    "cart-pole": (JointSpaceDynamics(env, "control_step"),
                  *costs([0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.1, 0.1], 0.01,
                         [100.0, 100.0, 10.0, 10.0], 0.02),
                  torch.tensor([0.0, math.pi, 0.0, 0.0], dtype=F64)),
}
out = {}
for name, (dynamics, cost, final, x0) in problems.items():
    times = []
    for repeat in range(repeats + 1):  # the first warms caches (and compiles, where Numba is)
        started = time.perf_counter()
        result = ilqr(dynamics, cost, final, x0, torch.zeros(horizon, 1, dtype=F64),
                      ILQRConfig(max_iterations=100))
        if repeat:
            times.append(time.perf_counter() - started)
    out[name] = {"solve_s": times, "iterations": result.iterations, "cost": result.cost,
                 "stop_reason": result.stop_reason}
print(json.dumps(out))
'''


def solve(tree: Path, horizon: int, repeats: int) -> dict[str, Any]:
    """`SOLVE` with `tree`'s packages, in a process on the benchmark core."""
    completed = subprocess.run(
        [sys.executable, "-c", SOLVE, str(horizon), str(repeats)], cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True, text=True, check=False, preexec_fn=on_the_benchmark_core,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{tree}: {completed.stderr[-2000:]}")
    answer: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default=BEFORE, help="the earlier revision")
    parser.add_argument("--horizons", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--repeats", type=int, default=5, help="timed solves per process")
    parser.add_argument("--blocks", type=int, default=3,
                        help="processes per side and horizon, the sides taking turns")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        before_tree = Path(scratch) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(before_tree), args.before],
                       cwd=ROOT, check=True, capture_output=True)
        try:
            for horizon in args.horizons:
                blocks: dict[str, list[dict[str, Any]]] = {"now": [], "before": []}
                for _ in range(args.blocks):  # alternating processes, against drift
                    blocks["now"].append(solve(ROOT, horizon, args.repeats))
                    blocks["before"].append(solve(before_tree, horizon, args.repeats))
                for problem in blocks["now"][0]:
                    row: dict[str, Any] = {}
                    for side, answers in blocks.items():
                        entry = {**answers[0][problem], "solve_s": [
                            s for answer in answers for s in answer[problem]["solve_s"]]}
                        entry["ms_per_iteration"] = 1e3 * statistics.median(
                            entry["solve_s"]) / max(entry["iterations"], 1)
                        row[side] = entry
                    row["speedup_per_iteration"] = (row["before"]["ms_per_iteration"]
                                                    / row["now"]["ms_per_iteration"])
                    rows[f"{problem} H={horizon}"] = row
                    print(f"{problem} H={horizon}: {row['before']['ms_per_iteration']:.2f} -> "
                          f"{row['now']['ms_per_iteration']:.2f} ms an iteration "
                          f"({row['speedup_per_iteration']:.1f}x); costs "
                          f"{row['before']['cost']:.10g} / {row['now']['cost']:.10g}",
                          flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before_tree)],
                           cwd=ROOT, check=False, capture_output=True)
    results = {"benchmark": "ilqr_speedup", "before": args.before, "rows": rows,
               **provenance()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ilqr_speedup.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.out / "ilqr_speedup.png")


def plot(results: dict[str, Any], path: Path) -> None:
    names = list(results["rows"])
    fig, ax = plt.subplots(figsize=(9, 4))
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], [results["rows"][n]["before"]["ms_per_iteration"]
                                  for n in names], 0.4, label=f"before ({results['before']})")
    ax.bar([i + 0.2 for i in x], [results["rows"][n]["now"]["ms_per_iteration"]
                                  for n in names], 0.4,
           label=f"now ({results['git_revision'][:7]})")
    ax.set_xticks(list(x), names, rotation=20)
    ax.set_yscale("log")
    ax.set_ylabel("ms per iteration (median, one core)")
    ax.set_title("iLQR through a torch function and through MuJoCo, same run")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
