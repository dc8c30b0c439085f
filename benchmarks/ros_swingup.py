"""The cart-pole swing-up through ROS 2 against the same controller in process.

    python -m benchmarks.ros_swingup [--seeds 0 1 2] [--pets-run RUN_DIR] [--out DIR]

For each seed, `mbrl sim-robot` (the robot, its own process) and `mbrl deploy ros` (the
controller node, another) run the episode over DDS on the loopback interface in real time;
the return is the robot's, over 8 s. In process, the same controller acts on the same robot
from the same initial state (`env.reset(seed)`), each action held for one control period, with
no clock: what the controller achieves when nothing is late. Controllers: iLQR MPC through the
MuJoCo simulator at 20 Hz (the tests' controller), and, with `--pets-run`, a trained PETS run's
learned-model MPC on the dm_control cart-pole at the run's own rate. Writes ros_swingup.json
and ros_swingup.png.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import envs
from benchmarks.provenance import RESULTS, provenance
from envs.dynamics import joint_state
from sim2real.deployment import (
    DeployedController,
    SimulatorMPCConfig,
    controller_from_planner,
    controller_from_run,
)

SECONDS = 8.0
ILQR = ("--planner", "ilqr", "--set", "max_iterations=1", "--rate", "20", "--horizon", "20")


def through_ros(env_id: str, controller_args: tuple[str, ...], seed: int, domain_id: int,
                folder: Path) -> float:
    """The robot's return over `SECONDS` with the controller node in another process."""
    out = folder / f"{env_id.replace('/', '-')}-{seed}"
    command = [sys.executable, "-m", "mbrl"]
    robot = subprocess.Popen(
        [*command, "sim-robot", "--env", env_id, "--seed", str(seed), "--duration",
         str(SECONDS), "--start-on-first-command", "--domain-id", str(domain_id), "--out",
         str(out / "robot")], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    controller = subprocess.Popen(
        [*command, "deploy", "ros", *controller_args, "--loopback-only", "--domain-id",
         str(domain_id), "--out", str(out / "controller")],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        if robot.wait(timeout=120) != 0:
            raise RuntimeError(f"the robot failed; see {out}")
    finally:
        controller.send_signal(2)
        controller.wait(timeout=30)
    (robot_dir,) = (out / "robot").iterdir()
    return float(json.loads((robot_dir / "summary.json").read_text())["episode_return"])


def in_process(deployed: DeployedController, env_id: str, seed: int) -> float:
    """The same controller on the same robot from the same start, nothing late."""
    robot = envs.make(env_id, max_episode_steps=10**9)
    robot.reset(seed=seed)
    deployed.controller.reset()
    hold = round(deployed.period_s / robot.control_timestep)
    total = 0.0
    for _ in range(round(SECONDS / deployed.period_s)):
        action = deployed.controller.act(deployed.observe(joint_state(robot)))
        for _ in range(hold):
            total += robot.step(action.detach().double().numpy())[1]
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pets-run", type=Path, help="a `mbrl train pets` run on a cart-pole")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    from sim2real.ros.dds import DomainClaim

    claim = DomainClaim()
    cases: list[tuple[str, str, tuple[str, ...], DeployedController]] = [
        ("ilqr-mpc-simulator-20hz", "mujoco/cartpole-swingup", ILQR, controller_from_planner(
            SimulatorMPCConfig(planner="ilqr", planner_settings={"max_iterations": 1},
                               rate_hz=20.0, horizon=20)))]
    if args.pets_run is not None:
        deployed = controller_from_run(args.pets_run)
        cases.append((f"pets-cem-learned-model-{deployed.rate_hz:g}hz", deployed.env.env_id,
                      ("--controller", str(args.pets_run)), deployed))
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        for name, env_id, controller_args, deployed in cases:
            for seed in args.seeds:
                ros = through_ros(env_id, controller_args, seed, claim.domain_id, Path(folder))
                local = in_process(deployed, env_id, seed)
                results.append({"controller": name, "env_id": env_id, "seed": seed,
                                "through_ros": ros, "in_process": local,
                                "fraction": ros / local})
                print(json.dumps(results[-1]), flush=True)
    claim.release()
    summary = {}
    for name, *_ in cases:
        mine = [r for r in results if r["controller"] == name]
        summary[name] = {
            "mean_through_ros": float(np.mean([r["through_ros"] for r in mine])),
            "mean_in_process": float(np.mean([r["in_process"] for r in mine])),
            "fractions": [r["fraction"] for r in mine],
            "min_fraction": float(min(r["fraction"] for r in mine)),
        }
    print(json.dumps(summary, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": "ros_swingup", **provenance(), "seconds": SECONDS,
               "pets_run": str(args.pets_run) if args.pets_run else None,
               "results": results, "summary": summary}
    (args.out / "ros_swingup.json").write_text(json.dumps(payload, indent=2) + "\n")
    plot(results, args.out / "ros_swingup.png")


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['controller']}\nseed {r['seed']}" for r in results]
    x = np.arange(len(results))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(results)), 4.5))
    ax.bar(x - 0.2, [r["in_process"] for r in results], 0.4, label="in process")
    ax.bar(x + 0.2, [r["through_ros"] for r in results], 0.4, label="through ROS 2")
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel(f"return over {SECONDS:g} s")
    ax.set_title("cart-pole swing-up: through ROS 2 against in process")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
