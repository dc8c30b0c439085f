"""Planning speed of CEM through a learned ensemble, against bare matmuls of the same FLOPs.

For each case (a model size and a CEM budget) the benchmark times one full replan,
`CEM.plan(obs)` on `ModelDynamics` with TS-infinity particles, and, in the same alternating
blocks, the work a replan cannot avoid: the batched matrix multiplications of the model's layers
for every CEM iteration and horizon step, on the same shapes (`[E, pop * P / E, width]`) and
nothing else. Those run both on the whole batch and in the row blocks the model uses without
gradients, and the faster of the two is the reference, so that the reference is the best this
machine does on those FLOPs. The efficiency of a block is

    reference time / planner time

(1.0: the planner costs no more than its matmuls; the target at the PETS-sized case is 0.85 or
more). A third timing, the model's own forward pass on the same shapes, splits the remainder into
what the network's activations cost and what the planner adds around the model (sampling,
particle bookkeeping, the reward, the ranking). Every figure is a median over the blocks.

    python -m benchmarks.planning_speed [--repeats 15] [--threads 1 2]

Writes benchmarks/results/planning_speed.json and .png.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

import envs
import mbrl.learning.models
from benchmarks.provenance import RESULTS, provenance
from mbrl.algorithms.pets import PETSConfig, planning_controller, resolved_planner
from mbrl.config import load as load_config
from mbrl.learning.models import EnsembleDynamics

#: Lowest acceptable efficiency (reference / planner) per case.
TARGETS = {"pets": 0.85}


CONFIGS = Path(__file__).resolve().parent.parent / "configs"
_PETS = PETSConfig()  # Chua et al. (2018): ensemble 5 of 200 x 4 swish, P 20, CEM 350 x 5, H 15

#: The cases: a model and a planner each (their `PETSConfig`'s model, particles and planner).
CASES = {
    "pets": _PETS,
    # The same with ReLU, whose activation costs a fraction of swish's: how much of the gap
    # to the bare matmuls is the activation itself.
    "pets_relu": dataclasses.replace(
        _PETS, model=dataclasses.replace(_PETS.model, activation="relu")
    ),
    # The real-time MPC of benchmarks/pets_realtime.py (50 Hz on two cores).
    "realtime": load_config(PETSConfig, CONFIGS / "pets_cartpole_realtime.json"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="dmc/cartpole-swingup", help="whose task scores plans")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=15, help="alternating blocks per case")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    env = envs.make(args.env)
    obs = torch.from_numpy(env.reset(seed=0)[0]).float()
    results = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name in args.cases:
            result = measure(CASES[name], env.task, obs, args.repeats)
            result |= {"case": name, "threads": threads, "target": TARGETS.get(name)}
            results.append(result)
            print(
                f"{name:>8} {threads} thread(s): {result['planner_ms']:8.1f} ms/replan, "
                f"efficiency {result['efficiency']:.3f} "
                f"(IQR {result['efficiency_iqr'][0]:.3f}-{result['efficiency_iqr'][1]:.3f})",
                flush=True,
            )
    payload = {
        "benchmark": "planning_speed", **provenance(), "env": args.env,
        "cases": {name: _case_dict(CASES[name]) for name in args.cases},
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "planning_speed.json").write_text(json.dumps(payload, indent=2) + "\n")
    plot(results, args.out / "planning_speed.png")


def measure(case: PETSConfig, task: envs.Task, obs: torch.Tensor, repeats: int) -> dict[str, Any]:
    """Alternating timings of a replan, the model's forward passes and the bare matmuls."""
    generator = torch.Generator().manual_seed(0)
    obs_dim, act_dim = task.obs_dim, len(task.action_low)
    model = EnsembleDynamics(obs_dim, act_dim, case.model, generator).eval()
    planner = planning_controller(model, task, case, generator).planner
    settings = resolved_planner(case)

    members = case.model.ensemble_size
    rows = settings.population * case.particles // members  # per member, per step
    steps = settings.horizon * settings.iterations
    parameters = dict(model.named_parameters())
    weights = [w.detach() for name, w in parameters.items() if name.endswith(".weight")]
    biases = [b.detach() for name, b in parameters.items() if name.endswith(".bias")]
    inputs = torch.randn(members, rows, obs_dim + act_dim, generator=generator)
    block = max(16, mbrl.learning.models.BLOCK_FLOATS // (members * case.model.hidden_size))
    model_obs = obs.expand(members, rows, obs_dim).contiguous()
    model_act = torch.zeros(members, rows, act_dim)

    def bare(block_rows: int) -> None:
        for _ in range(steps):
            for start in range(0, rows, block_rows):
                x = inputs[:, start : start + block_rows]
                for weight, bias in zip(weights, biases, strict=True):
                    x = torch.baddbmm(bias, x, weight)

    @torch.no_grad()
    def forward() -> None:
        for _ in range(steps):
            model(model_obs, model_act)

    timed: dict[str, Callable[[], object]] = {
        "planner": lambda: planner.plan(obs),
        "forward": forward,
        "bare_whole": lambda: bare(rows),
        "bare_blocked": lambda: bare(block),
    }
    for fn in timed.values():  # warm-up: allocator, caches, lazy initialisation
        fn()
    times: dict[str, list[float]] = {name: [] for name in timed}
    for repeat in range(repeats):
        order = list(timed) if repeat % 2 == 0 else list(reversed(timed))
        for name in order:
            started = time.perf_counter()
            timed[name]()
            times[name].append(time.perf_counter() - started)
    reference = [min(w, b) for w, b in zip(times["bare_whole"], times["bare_blocked"], strict=True)]
    efficiency = [r / p for r, p in zip(reference, times["planner"], strict=True)]
    forward_share = [f / p for f, p in zip(times["forward"], times["planner"], strict=True)]
    macs = rows * members * sum(w.shape[1] * w.shape[2] for w in weights) * steps
    quartiles = statistics.quantiles(efficiency, n=4)
    return {
        "planner_ms": 1e3 * statistics.median(times["planner"]),
        "forward_ms": 1e3 * statistics.median(times["forward"]),
        "bare_whole_ms": 1e3 * statistics.median(times["bare_whole"]),
        "bare_blocked_ms": 1e3 * statistics.median(times["bare_blocked"]),
        "reference_ms": 1e3 * statistics.median(reference),
        "efficiency": statistics.median(efficiency),
        "efficiency_iqr": [quartiles[0], quartiles[2]],
        "forward_share_of_planner": statistics.median(forward_share),
        "gflop_per_replan": 2 * macs / 1e9,
        "reference_gflops": 2 * macs / 1e9 / statistics.median(reference),
        "repeats": repeats,
        "times_s": times,
    }


def _case_dict(case: PETSConfig) -> dict[str, Any]:
    return {
        "model": case.model.to_dict(),
        "particles": case.particles,
        "planner": case.planner, "planner_settings": dataclasses.asdict(resolved_planner(case)),
    }


def plot(results: list[dict[str, Any]], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    labels = [f"{r['case']}\n{r['threads']} thr" for r in results]
    positions = range(len(results))
    width = 0.27
    for offset, key, label in (
        (-width, "reference_ms", "bare matmuls (same FLOPs)"),
        (0.0, "forward_ms", "model forward passes"),
        (width, "planner_ms", "CEM replan"),
    ):
        axes[0].bar([p + offset for p in positions], [r[key] for r in results], width, label=label)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("ms per replan (median)")
    axes[0].set_xticks(list(positions), labels)
    axes[0].legend(fontsize=8)
    axes[1].bar(list(positions), [r["efficiency"] for r in results], color="tab:green")
    for position, r in zip(positions, results, strict=True):
        low, high = r["efficiency_iqr"]
        axes[1].plot([position, position], [low, high], color="black")
        if r["target"] is not None:
            axes[1].plot([position - 0.4, position + 0.4], [r["target"]] * 2, "r--")
    axes[1].set_ylim(0, 1.1)
    axes[1].set_ylabel("efficiency: bare matmuls / replan")
    axes[1].set_xticks(list(positions), labels)
    axes[1].set_title("red dashes: target")
    fig.suptitle("CEM through a learned ensemble (TS-infinity)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
