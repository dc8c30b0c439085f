"""Runs pytorch_mppi's MPPI on the shared problem inside pytorch_mppi's own virtual environment.

Started by benchmarks/peers.py as `python pytorch_mppi_worker.py PROBLEM_FILE CONFIG_JSON`;
reads one JSON command a line on stdin and answers one JSON line on stdout:

- `{"op": "time", "calls": n}`: n `MPPI.command` calls from the problem's start (each one
  shifts the nominal trajectory, as in MPC), answered with their times in milliseconds;
- `{"op": "episode", "steps": n, "seed": s}`: a fresh controller runs an MPC episode,
  answered with its summed running cost.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from types import ModuleType
from typing import Any

import torch
from pytorch_mppi import MPPI  # type: ignore[import-not-found]  # only in the peer's venv


def load_problem(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("peer_problem", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make(problem: ModuleType, config: dict[str, Any]) -> Any:
    sigma = config["noise_sigma"]
    return MPPI(
        problem.dynamics, problem.running_cost, 2, torch.tensor([[sigma * sigma]]),
        num_samples=config["samples"], horizon=config["horizon"], lambda_=config["lambda"],
        u_min=torch.tensor([problem.ACTION_LOW]), u_max=torch.tensor([problem.ACTION_HIGH]),
        device="cpu",
    )


def main() -> None:
    problem = load_problem(sys.argv[1])
    config = json.loads(sys.argv[2])
    torch.set_num_threads(1)
    torch.manual_seed(0)
    controller = make(problem, config)
    start = torch.tensor(problem.START, dtype=torch.float32)
    for line in sys.stdin:
        request = json.loads(line)
        answer: dict[str, Any]
        if request["op"] == "time":
            times = []
            for _ in range(request["calls"]):
                began = time.perf_counter()
                controller.command(start)
                times.append((time.perf_counter() - began) * 1000)
            answer = {"ms": times}
        elif request["op"] == "episode":
            torch.manual_seed(request["seed"])
            fresh = make(problem, config)
            answer = {"cost": problem.episode_cost(fresh.command, request["steps"])}
        else:
            answer = {"error": f"unknown op {request['op']!r}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
