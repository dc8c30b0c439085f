"""Real-time PETS: MPC at 50 Hz through a learned ensemble, and whether it still swings up.

PETS learns dm_control's cart-pole with a planner that has time to think: every 80 ms (action
repeat 8 on the 10 ms physics step; `configs/pets_cartpole.json`, the run of
`benchmarks/pets_learning.py`). On the robot, the controller should act every 20 ms with at most
20 ms per replan. This benchmark

1. takes that run's learned ensemble (training the run first if it is not complete);
2. plans through it with the smaller CEM budget of `configs/pets_cartpole_realtime.json`;
3. runs MPC at 50 Hz: the env steps 20 ms per action (repeat 2), CEM plans 80 ms steps
   (`MPCConfig.plan_step` 4: move blocking) and replans every 20 ms, each replan under a
   20 ms budget (CEM stops refining before an iteration that would end late; a replan whose
   first iteration already overran falls back to the previous plan);
4. reports the returns over fresh episodes and the time of every replan.

    python -m benchmarks.pets_realtime [--episodes 10] [--threads 1]

Writes benchmarks/results/pets_realtime.json and .png.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

import envs
from benchmarks.provenance import RESULTS, provenance
from controllers.policy_penalty import PolicyMean
from mbrl.algorithms.pets import PETSConfig, model_input, planning_controller, train_pets
from mbrl.config import load as load_config
from mbrl.control.episodes import record_replan_ms, rollout
from mbrl.learning.checkpoint import load_model
from mbrl.learning.models import EnsembleDynamics

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
#: The targets: a return of at least 800 with every replan inside 20 ms (50 Hz).
TARGET_RETURN, TARGET_MS = 800.0, 20.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=CONFIGS / "pets_cartpole.json",
                        help="the PETS config of the run whose model the controller uses")
    parser.add_argument("--source-run", type=Path,
                        default=Path("runs/bench-pets/dmc-cartpole-swingup-seed0"),
                        help="that run's directory (trained here first if incomplete)")
    parser.add_argument("--config", type=Path, default=CONFIGS / "pets_cartpole_realtime.json",
                        help="the real-time model, planner and MPC settings")
    parser.add_argument("--episodes", type=int, default=10, help="evaluation episodes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    source = load_config(PETSConfig, args.source)
    config = load_config(PETSConfig, args.config)
    if config.action_repeat != source.action_repeat or config.env_id != source.env_id:
        raise ValueError("the real-time config must have the source run's env and action repeat")
    if config.model != source.model:
        raise ValueError("the real-time config must name the source run's model")
    training = train_pets(source, args.source_run, resume=True)
    model = load_model(args.source_run / "model.pt")
    task = envs.make(config.env_id, action_repeat=config.action_repeat).task

    evaluation = evaluate(model, task, config, args.episodes)
    plan_ms = np.concatenate([np.asarray(e["plan_ms"]) for e in evaluation])
    returns = [e["return"] for e in evaluation]
    control_repeat = config.action_repeat // config.mpc.plan_step
    summary = {
        "control_hz": 1.0 / (control_repeat * envs.make(config.env_id).control_timestep),
        "mean_return": float(np.mean(returns)),
        "min_return": float(np.min(returns)),
        "plan_ms_median": float(np.median(plan_ms)),
        "plan_ms_p95": float(np.percentile(plan_ms, 95)),
        "plan_ms_p99": float(np.percentile(plan_ms, 99)),
        "plan_ms_max": float(np.max(plan_ms)),
        "replans": int(plan_ms.size),
        "over_budget": int(sum(e["overruns"] for e in evaluation)),
        "fallbacks": int(sum(e["fallbacks"] for e in evaluation)),
        "return_target": TARGET_RETURN,
        "ms_target": TARGET_MS,
    }
    summary["met"] = (
        summary["mean_return"] >= TARGET_RETURN and summary["plan_ms_median"] <= TARGET_MS
    )
    print(json.dumps(summary, indent=2))
    payload = {
        "benchmark": "pets_realtime", **provenance(),
        "config": dataclasses.asdict(config), "config_file": str(args.config),
        "source_config_file": str(args.source), "source_run": str(args.source_run),
        "source_training": training, "evaluation": evaluation, "summary": summary,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pets_realtime.json").write_text(json.dumps(payload, indent=2) + "\n")
    plot(training, plan_ms, summary, args.out / "pets_realtime.png")


def evaluate(
    model: EnsembleDynamics, task: envs.Task, config: PETSConfig, episodes: int,
    policy: PolicyMean | None = None, quiet: bool = False,
) -> list[dict[str, Any]]:
    """Fresh episodes at the control rate (`config.mpc.plan_step` control steps per model
    step), timing every replan; with `policy`, the MPC is policy-seeded (its actions, rolled
    through the model, join CEM's candidates)."""
    if config.action_repeat % config.mpc.plan_step:
        raise ValueError(
            f"plan_step {config.mpc.plan_step} must divide action_repeat {config.action_repeat}"
        )
    env = envs.make(config.env_id, action_repeat=config.action_repeat // config.mpc.plan_step)
    generator = torch.Generator().manual_seed(12345)
    results = []
    for episode in range(episodes):
        controller = planning_controller(model, task, config, generator, policy=policy)
        plan_ms: list[float] = []
        total = rollout(env, controller, seed=10_000 + episode, observe=model_input,
                        on_step=record_replan_ms(controller, plan_ms)).episode_return
        results.append({
            "return": total, "plan_ms": plan_ms,
            "overruns": controller.stats.overruns, "fallbacks": controller.stats.fallbacks,
        })
        if not quiet:
            print(f"eval episode {episode}: return {total:.1f}, median replan "
                  f"{np.median(plan_ms):.1f} ms, fallbacks {controller.stats.fallbacks}",
                  flush=True)
    return results


def plot(
    training: list[dict[str, float]], plan_ms: np.ndarray, summary: dict[str, Any], path: Path
) -> None:
    fig, (curve, hist) = plt.subplots(1, 2, figsize=(10, 4))
    curve.plot([r["env_steps"] for r in training], [r["return"] for r in training], marker=".")
    curve.axhline(TARGET_RETURN, color="red", ls="--", label=f"target {TARGET_RETURN:.0f}")
    curve.axhline(summary["mean_return"], color="green", ls=":",
                  label=f"evaluation mean {summary['mean_return']:.0f}")
    curve.set_xlabel("environment steps")
    curve.set_ylabel("episode return")
    curve.set_title("the PETS run (12.5 Hz) whose model the 50 Hz MPC uses")
    curve.legend()
    curve.grid(alpha=0.3)
    hist.hist(plan_ms, bins=60, color="tab:blue")
    hist.axvline(TARGET_MS, color="red", ls="--", label=f"{TARGET_MS:.0f} ms (50 Hz)")
    hist.axvline(summary["plan_ms_median"], color="black",
                 label=f"median {summary['plan_ms_median']:.1f} ms")
    hist.set_xlabel("ms per replan (evaluation)")
    hist.set_ylabel("replans")
    hist.set_title(f"{summary['control_hz']:.0f} Hz control, {summary['replans']} replans, "
                   f"{summary['fallbacks']} fallbacks")
    hist.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
