"""Our planners against other libraries', side by side in the same run.

Each peer is installed from PyPI into its own virtual environment under `.bench-venvs/`
(created here on first use, never a dependency of the toolkit) and runs in a worker process
of that environment (`benchmarks/peer_workers/`). Both sides plan the same problem
(`benchmarks/peer_problem.py`, a torque-limited pendulum swing-up in plain torch) with the
same samples, horizon, temperature and noise:

- timing: blocks of calls alternate between our controller and the peer's, both processes
  pinned to the same core, each call one receding-horizon command from the same state; the
  ratio ours / peer is taken block by block, and its median reported with the interquartile
  range;
- objective: the summed cost of an MPC episode from hanging, for each seed.

Peers: pytorch_mppi (`pytorch-mppi==0.9.1`: `MPPI.command` against our `MPPI` in `MPC`) and
mbrl-lib (`mbrl==0.2.0`: its CEM and MPPI optimizers on the same objective, and its PETS
planning step through the same learned ensemble; see `benchmarks/peer_mbrl_lib.py`).

    python -m benchmarks.peers [--peers pytorch_mppi mbrl_lib] [--blocks 15] [--calls 40]
        [--episodes 3] [--pets-episodes 2] [--model runs/bench-pets/...seed0/model.pt]

Writes benchmarks/results/peers.json, peers.png (pytorch_mppi) and peers_mbrl_lib.png.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from benchmarks import peer_mbrl_lib
from benchmarks.peer_venvs import (
    TORCH,
    WORKERS,
    Worker,
    load_problem,
    on_the_benchmark_core,
    peer_python,
)
from benchmarks.provenance import RESULTS, provenance
from controllers import MPC, MPCConfig, MPPIConfig
from mbrl.control.planners import PlanningProblem, build_planner


@dataclass(frozen=True)
class MPPISettings:
    """The configuration both MPPIs share."""

    #: Sampled sequences per command.
    samples: int = 1000
    #: Horizon in steps of 50 ms.
    horizon: int = 15
    #: Temperature lambda, in units of cost.
    temperature: float = 1.0
    #: Standard deviation of the action noise (N m).
    noise_sigma: float = 1.0


class ProblemDynamics:
    """The shared problem as our planners' `Dynamics`: reward = -cost."""

    #: The problem computes in float32, as pytorch_mppi does: the planner samples in it too.
    dtype = torch.float32

    def __init__(self, problem: ModuleType) -> None:
        self.problem = problem

    def step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        next_state: torch.Tensor = self.problem.dynamics(state.float(), action.float())
        return next_state

    def reward(
        self, state: torch.Tensor, action: torch.Tensor, next_state: torch.Tensor
    ) -> torch.Tensor:
        cost: torch.Tensor = self.problem.running_cost(next_state.float(), action.float())
        return -cost


def our_controller(problem: ModuleType, settings: MPPISettings, seed: int) -> MPC:
    low = torch.tensor([problem.ACTION_LOW])
    high = torch.tensor([problem.ACTION_HIGH])
    config = MPPIConfig(
        horizon=settings.horizon, population=settings.samples, iterations=1,
        temperature=settings.temperature,
        noise_std=settings.noise_sigma / (problem.ACTION_HIGH - problem.ACTION_LOW),
    )
    planning = PlanningProblem(ProblemDynamics(problem), low, high, settings.horizon,
                               torch.Generator().manual_seed(seed))
    return MPC(build_planner("mppi", planning, config=config), MPCConfig(replan_every=1))


def compare_pytorch_mppi(
    settings: MPPISettings, blocks: int, calls: int, episodes: int
) -> dict[str, Any]:
    problem = load_problem()
    python = peer_python("pytorch_mppi", [TORCH, "pytorch-mppi==0.9.1"])
    worker = Worker(python, WORKERS / "pytorch_mppi_worker.py", {
        "samples": settings.samples, "horizon": settings.horizon,
        "lambda": settings.temperature, "noise_sigma": settings.noise_sigma,
    })
    try:
        ours = our_controller(problem, settings, seed=0)
        start = torch.tensor(problem.START, dtype=torch.float64)
        ours.act(start)  # the first call of each side is not timed
        worker.ask({"op": "time", "calls": 1})
        our_ms, peer_ms, ratios = [], [], []
        for _ in range(blocks):
            times = []
            for _ in range(calls):
                began = time.perf_counter()
                ours.act(start)
                times.append((time.perf_counter() - began) * 1000)
            theirs = worker.ask({"op": "time", "calls": calls})["ms"]
            our_ms.extend(times)
            peer_ms.extend(theirs)
            ratios.append(float(np.median(times) / np.median(theirs)))
        our_costs = [
            problem.episode_cost(our_controller(problem, settings, seed).act, 100)
            for seed in range(episodes)
        ]
        peer_costs = [worker.ask({"op": "episode", "steps": 100, "seed": seed})["cost"]
                      for seed in range(episodes)]
    finally:
        worker.close()
    return {
        "peer": "pytorch-mppi==0.9.1", "settings": asdict(settings),
        "ours_ms_median": float(np.median(our_ms)), "peer_ms_median": float(np.median(peer_ms)),
        "ratio_median": float(np.median(ratios)),
        "ratio_iqr": [float(np.percentile(ratios, 25)), float(np.percentile(ratios, 75))],
        "ratios": ratios, "our_episode_costs": our_costs, "peer_episode_costs": peer_costs,
        "target": "ours at least as fast (ratio <= 1) with an equal or lower episode cost",
        "met": bool(np.median(ratios) <= 1.0 and np.mean(our_costs) <= np.mean(peer_costs)),
    }


PEERS = ("pytorch_mppi", "mbrl_lib")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", nargs="+", choices=PEERS, default=list(PEERS))
    parser.add_argument("--blocks", type=int, default=15, help="alternating timing blocks")
    parser.add_argument("--calls", type=int, default=40, help="calls per block and side")
    parser.add_argument("--episodes", type=int, default=3, help="pendulum episodes per side")
    parser.add_argument("--pets-episodes", type=int, default=2,
                        help="learned cart-pole episodes per side (mbrl-lib)")
    parser.add_argument("--model", type=Path, default=peer_mbrl_lib.DEFAULT_MODEL,
                        help="the learned cart-pole ensemble both PETS planners use")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    on_the_benchmark_core()
    payload: dict[str, Any] = {"benchmark": "peers"}
    if "pytorch_mppi" in args.peers:
        payload["pytorch_mppi"] = compare_pytorch_mppi(
            MPPISettings(), args.blocks, args.calls, args.episodes)
        plot(payload["pytorch_mppi"], args.out / "peers.png")
    if "mbrl_lib" in args.peers:
        pets = peer_mbrl_lib.PetsComparison(model=args.model, episodes=args.pets_episodes)
        payload["mbrl_lib"] = peer_mbrl_lib.compare_mbrl_lib(
            args.blocks, args.calls, args.episodes, pets=pets)
        peer_mbrl_lib.plot(payload["mbrl_lib"], args.out / "peers_mbrl_lib.png")
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {**payload, **provenance()}  # the revision is read once the run is over
    (args.out / "peers.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(json.dumps(summary(payload), indent=2, default=str))


def summary(payload: dict[str, Any]) -> dict[str, Any]:
    """Each comparison's headline: ms per replan of both sides, the ratio, the objective."""
    lines: dict[str, Any] = {}
    if "pytorch_mppi" in payload:
        result = payload["pytorch_mppi"]
        lines["pytorch_mppi"] = {k: v for k, v in result.items() if k != "ratios"}
    if "mbrl_lib" in payload:
        lines["mbrl_lib"] = peer_mbrl_lib.headline(payload["mbrl_lib"])
    return lines


def plot(result: dict[str, Any], path: Path) -> None:
    fig, (timing, cost) = plt.subplots(1, 2, figsize=(10, 4))
    timing.plot(result["ratios"], marker="o")
    timing.axhline(1.0, color="red", ls="--", label="as fast as the peer")
    timing.set_xlabel("alternating block")
    timing.set_ylabel("ms per command, ours / pytorch_mppi")
    timing.set_title(f"median ratio {result['ratio_median']:.2f} "
                     f"({result['ours_ms_median']:.1f} vs {result['peer_ms_median']:.1f} ms)")
    timing.grid(alpha=0.3)
    timing.legend()
    seeds = np.arange(len(result["our_episode_costs"]))
    cost.bar(seeds - 0.2, result["our_episode_costs"], width=0.4, label="ours")
    cost.bar(seeds + 0.2, result["peer_episode_costs"], width=0.4, label="pytorch_mppi")
    cost.set_xlabel("episode seed")
    cost.set_ylabel("summed cost of a 5 s MPC episode (lower is better)")
    cost.set_title("the same objective")
    cost.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
