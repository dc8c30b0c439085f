"""One precision per replan: the PETS MPC step with its plan in the model's float32 against
the old chain, which planned in float64 around the float32 model.

Before issue 13 a PETS replan crossed precisions four times: the float32 observation went to
float64 in `MPC`, CEM sampled float64 actions, the ensemble cast them to float32 and its
returns back to float64. Now a sampling planner's dtype follows its dynamics (the model's
float32) and `MPC` casts the state once. The old chain is what a planner built with
`dtype=torch.float64` still does, so both are timed in one process, in alternating blocks on
one core, on the PETS configs:

- `configs/pets_cartpole.json`: the learning benchmark's controller (CEM, 200 samples x 3
  iterations, 10 particles through a 5-member ensemble);
- `configs/pets_cartpole_realtime.json`: the 50 Hz controller.

The ensembles' weights are random (as in `benchmarks/planning_speed.py`): a replan's cost does
not depend on them. The figure is the ratio of step times (float32 / float64) per block, its
median and interquartile range.

    python -m benchmarks.plan_precision [--repeats 11]

Writes benchmarks/results/plan_precision.json and .png.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

import envs
from benchmarks.provenance import RESULTS, provenance
from controllers import CEM, MPC
from mbrl.algorithms.pets import PETSConfig, model_input, resolved_planner
from mbrl.config import load as load_config
from mbrl.learning.models import EnsembleDynamics
from mbrl.learning.propagation import ModelDynamics, Propagation
from mbrl.runs.plots import new_figure, save_png

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=11, help="alternating blocks")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {name: measure(CONFIGS / name, args.repeats, steps)
               for name, steps in (("pets_cartpole.json", 3), ("pets_cartpole_realtime.json", 40))}
    payload = {"benchmark": "plan_precision", **provenance(), "repeats": args.repeats,
               "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "plan_precision.json").write_text(json.dumps(payload, indent=2) + "\n")
    plot(results, args.out / "plan_precision.png")


def controller(config: PETSConfig, model: EnsembleDynamics, task: envs.Task,
               dtype: torch.dtype | None) -> MPC:
    """PETS's MPC over CEM through the ensemble, planning in `dtype` (None: the model's)."""
    dynamics = ModelDynamics(model, task, config.particles, Propagation(config.propagation),
                             torch.Generator().manual_seed(0))
    planner = CEM(dynamics, torch.tensor(task.action_low), torch.tensor(task.action_high),
                  resolved_planner(config), torch.Generator().manual_seed(0), dtype=dtype)
    return MPC(planner, config.mpc)


def measure(path: Path, repeats: int, steps: int) -> dict[str, Any]:
    """Step times of both chains on the config at `path`, alternating blocks of `steps`."""
    config = load_config(PETSConfig, path)
    env = envs.make(config.env_id, action_repeat=config.action_repeat)
    model = EnsembleDynamics(env.task.obs_dim, env.task.act_dim, config.model,
                             torch.Generator().manual_seed(0)).eval()
    obs = model_input(env.reset(seed=0)[0])
    chains = {"float64 plan (before)": controller(config, model, env.task, torch.float64),
              "model's float32 (after)": controller(config, model, env.task, None)}
    for mpc in chains.values():
        mpc.act(obs)  # first-call set-up outside the clock
    times: dict[str, list[float]] = {name: [] for name in chains}
    for _ in range(repeats):
        for name, mpc in chains.items():
            started = time.perf_counter()
            for _ in range(steps):
                mpc.act(obs)
            times[name].append((time.perf_counter() - started) / steps * 1e3)
    before, after = times.values()
    ratios = [a / b for a, b in zip(after, before, strict=True)]
    quartiles = statistics.quantiles(ratios, n=4)
    row = {"step_ms_median": {name: statistics.median(t) for name, t in times.items()},
           "ratio_after_over_before_median": statistics.median(ratios),
           "ratio_iqr": [quartiles[0], quartiles[2]], "steps_per_block": steps,
           "step_ms": times}
    print(f"{path.name}: float64 {statistics.median(before):.2f} ms, float32 "
          f"{statistics.median(after):.2f} ms a step; ratio {statistics.median(ratios):.3f} "
          f"(IQR {quartiles[0]:.3f}-{quartiles[2]:.3f})", flush=True)
    return row


def plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    fig = new_figure(figsize=(5 * len(results), 3.6))
    for ax, (name, row) in zip(fig.subplots(1, len(results), squeeze=False).flat,
                               results.items(), strict=True):
        labels = list(row["step_ms"])
        ax.boxplot([row["step_ms"][label] for label in labels])
        ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=8)
        ax.set_ylabel("ms per MPC step (one core)")
        ax.set_ylim(bottom=0)
        ax.set_title(f"{name}: ratio {row['ratio_after_over_before_median']:.2f}", fontsize=10)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_png(fig, path)


if __name__ == "__main__":
    main()
