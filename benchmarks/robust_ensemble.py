"""What risk-averse scoring costs a PETS replan: the particles' mean against their worst
return and their CVaR, through the same ensemble.

    python -m benchmarks.robust_ensemble [--calls 300] [--out benchmarks/results]

`ModelDynamics.sequence_returns` scores CEM's population (60 candidates, horizon 15, PETS's
demo settings) through a 5-member probabilistic ensemble (3 x 200 units) with 5 and 20
particles, once per objective in turn, so that a busy machine slows every objective alike.
Time does not depend on the weights, so the ensemble is untrained. Reports the median ms per
call and its ratio to the mean objective's. Writes robust_ensemble.json and .png.
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
from controllers.risk import Objective
from mbrl.learning.models import EnsembleConfig, EnsembleDynamics
from mbrl.learning.propagation import ModelDynamics

OBJECTIVES: list[tuple[str, Objective, float]] = [
    ("mean", "mean", 0.1), ("worst", "worst", 0.1), ("cvar 0.4", "cvar", 0.4)]
PARTICLES = (5, 20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    task = envs.make("mujoco/cartpole-swingup").task
    model = EnsembleDynamics(5, 1, EnsembleConfig(hidden_layers=3, weight_decay=5e-5),
                             torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(0)
    state = torch.tensor([0.0, -1.0, 0.0, 0.0, 0.0])
    actions = torch.rand(60, 15, 1, generator=generator, dtype=torch.float64) * 2 - 1
    results: list[dict[str, Any]] = []
    for particles in PARTICLES:
        dynamics = {name: ModelDynamics(model, task, particles, generator=generator,
                                        objective=objective, epsilon=epsilon)
                    for name, objective, epsilon in OBJECTIVES}
        times: dict[str, list[float]] = {name: [] for name in dynamics}
        for _ in range(args.calls):
            for name, scorer in dynamics.items():
                started = time.perf_counter()
                scorer.sequence_returns(state, actions)
                times[name].append(1000 * (time.perf_counter() - started))
        mean_ms = float(np.median(times["mean"]))
        for name, values in times.items():
            results.append({"particles": particles, "objective": name,
                            "ms_median": float(np.median(values)),
                            "ms_p90": float(np.percentile(values, 90)),
                            "ratio_to_mean": float(np.median(values)) / mean_ms})
            print(json.dumps(results[-1]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": "robust_ensemble", **provenance(), "calls": args.calls,
               "candidates": 60, "horizon": 15, "results": results}
    (args.out / "robust_ensemble.json").write_text(json.dumps(payload, indent=2) + "\n")
    plot(results, args.out / "robust_ensemble.png")


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(6, 4))
    x = np.arange(len(OBJECTIVES))
    for offset, particles in zip((-0.2, 0.2), PARTICLES, strict=True):
        mine = [r for r in results if r["particles"] == particles]
        axis.bar(x + offset, [r["ms_median"] for r in mine], 0.4, label=f"{particles} particles")
    axis.set_xticks(x, [name for name, _, _ in OBJECTIVES])
    axis.set_ylabel("ms per scoring of 60 candidates (median)")
    axis.set_title("risk-averse scoring through a PETS ensemble")
    axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
