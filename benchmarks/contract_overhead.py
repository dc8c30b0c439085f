"""What the output contract costs a real-time controller: the boundary checks of one MPC step
against the step itself.

Every `MPC.act` checks its observation, every replan checks the state and the shifted warm start
(`controllers.validation`), and every action is clamped into the bounds. This times, in
alternating blocks on one core, (a) `MPC.act` of the 50 Hz PETS controller
(`configs/pets_cartpole_realtime.json`: CEM through a 5-member ensemble, replanning every step)
and (b) those checks alone, as one step makes them, on the same shapes. The share is

    checks time / step time

per block; the figures are medians with their interquartile range. The ensemble's weights are
random (as in `benchmarks/planning_speed.py`): the cost of a replan does not depend on them.

    python -m benchmarks.contract_overhead [--repeats 15]

Writes benchmarks/results/contract_overhead.json and .png.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

import envs
from benchmarks.provenance import RESULTS, provenance
from controllers import MPC
from controllers.validation import checked_state, checked_warm_start
from mbrl.algorithms.pets import PETSConfig, planning_controller
from mbrl.config import load as load_config
from mbrl.learning.models import EnsembleDynamics

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "pets_cartpole_realtime.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="alternating blocks")
    parser.add_argument("--steps", type=int, default=20, help="MPC steps per block")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)

    config = load_config(PETSConfig, CONFIG)
    env = envs.make(config.env_id, action_repeat=config.action_repeat)
    task = env.task
    model = EnsembleDynamics(task.obs_dim, task.act_dim, config.model,
                             torch.Generator().manual_seed(0)).eval()
    controller = planning_controller(model, task, config, torch.Generator().manual_seed(0))
    obs = torch.from_numpy(env.reset(seed=0)[0]).float()
    controller.act(obs)  # first-call set-up outside the clock

    step_s, checks_s = [], []
    for _ in range(args.repeats):
        step_s.append(_per_call(lambda: controller.act(obs), args.steps))
        checks_s.append(_per_call(lambda: _checks_of_one_step(controller, obs), args.steps * 50))
    shares = [c / s for c, s in zip(checks_s, step_s, strict=True)]
    quartiles = statistics.quantiles(shares, n=4)
    result: dict[str, Any] = {
        "step_ms": statistics.median(step_s) * 1e3,
        "checks_us": statistics.median(checks_s) * 1e6,
        "share": statistics.median(shares),
        "share_iqr": [quartiles[0], quartiles[2]],
        "times_s": {"step": step_s, "checks": checks_s},
    }
    print(f"MPC step {result['step_ms']:.2f} ms, its checks {result['checks_us']:.1f} us: "
          f"{100 * result['share']:.3f}% (IQR {100 * quartiles[0]:.3f}-"
          f"{100 * quartiles[2]:.3f}%)")
    payload = {"benchmark": "contract_overhead", **provenance(), "config": str(CONFIG.name),
               "repeats": args.repeats, "steps_per_block": args.steps, "result": result}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "contract_overhead.json").write_text(json.dumps(payload, indent=2) + "\n")
    _plot(shares, result, args.out / "contract_overhead.png")


def _checks_of_one_step(controller: MPC, obs: torch.Tensor) -> torch.Tensor:
    """What `MPC.act` and `CEM.plan` check at a replan, on the same shapes."""
    planner = controller.planner
    state = checked_state(obs, "obs", controller.state_dim).to(planner.action_low.dtype)
    checked_state(state, dim=controller.state_dim)
    plan = controller.last_plan
    assert plan is not None
    checked_warm_start(plan.actions, (planner.horizon, planner.action_low.shape[0]))
    action = plan.actions[0]
    return torch.clamp(action, controller.action_low.to(action.dtype),
                       controller.action_high.to(action.dtype))


def _per_call(call: object, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        call()  # type: ignore[operator]
    return (time.perf_counter() - started) / calls


def _plot(shares: list[float], result: dict[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(range(1, len(shares) + 1), [100 * s for s in shares], marker="o")
    ax.set_xlabel("block")
    ax.set_ylabel("checks / MPC step (%)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Contract checks of a 50 Hz PETS MPC step: median "
                 f"{100 * result['share']:.3f}%", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
