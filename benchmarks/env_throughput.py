"""Step throughput of each backend: the raw simulator against the same robot through `envs`.

"Raw" is the simulator's own API doing what our env's step must at least do, on the same robot
model: dm_control's `Environment.step` (physics, observation dict, reward); bare MuJoCo's
`mj_step` over the frame skip plus reading `qpos`/`qvel`; PyBullet's motor command,
`stepSimulation` and joint-state read (with our joint damping and friction motors). "Ours" is
`envs.make(id).step(a)`: validation and clipping of the action, the time limit, the flat
observation and the reward.

Raw and ours run in alternating blocks of the same actions (order swapped every repeat), and
the overhead is the median over blocks of ours/raw, so machine noise hits both alike. Every
block of both starts from the same exact state (our env's `reset(seed=0)`), since the cost of a
step depends on the state (contacts with the rail ends, joint limits).

    python -m benchmarks.env_throughput [--repeats 21] [--block 500]

Writes benchmarks/results/env_throughput.json and .png.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mujoco
import numpy as np
import pybullet
import pybullet_data
from dm_control import suite

import envs
from benchmarks.provenance import RESULTS, provenance
from envs import mujoco_physics
from envs.cartpole_bullet import CartpoleSwingupEnv

#: Envs whose wrapper cost has a target: at most 10% over the raw step.
TARGETS = {"dmc/cartpole-swingup": 1.10, "mujoco/cartpole-swingup": 1.10}

StepLoop = Callable[[np.ndarray], None]
#: Puts a simulator into the state our env's `get_state()` (without the step count) gives.
Reset = Callable[[np.ndarray], None]


def raw_dm_control(domain: str, task: str) -> tuple[Reset, StepLoop]:
    env = suite.load(domain, task, task_kwargs={"random": 0})

    def reset(state: np.ndarray) -> None:
        env.reset()
        mujoco_physics.set_state(env.physics.model.ptr, env.physics.data.ptr, state)

    def run(actions: np.ndarray) -> None:
        for a in actions:
            env.step(a)

    return reset, run


def raw_mujoco(asset: str, frame_skip: int) -> tuple[Reset, StepLoop]:
    model = mujoco.MjModel.from_xml_path(str(Path(envs.__file__).parent / "assets" / asset))
    data = mujoco.MjData(model)

    def reset(state: np.ndarray) -> None:
        mujoco_physics.set_state(model, data, state)

    def run(actions: np.ndarray) -> None:
        for a in actions:
            data.ctrl[:] = a
            mujoco.mj_step(model, data, frame_skip)
            np.concatenate([data.qpos, data.qvel])

    return reset, run


def raw_pybullet_cartpole(n_substeps: int) -> tuple[Reset, StepLoop]:
    client = pybullet.connect(pybullet.DIRECT)
    pybullet.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=client)
    robot = pybullet.loadURDF("cartpole.urdf", useFixedBase=True, physicsClientId=client)
    pybullet.setGravity(0, 0, -9.81, physicsClientId=client)
    pybullet.setPhysicsEngineParameter(
        fixedTimeStep=0.02, numSubSteps=n_substeps, physicsClientId=client
    )
    # The same robot as ours: joint damping, and Coulomb friction as zero-velocity motors.
    for joint, damping in enumerate(CartpoleSwingupEnv.JOINT_DAMPING):
        pybullet.changeDynamics(robot, joint, jointDamping=damping, physicsClientId=client)
    pybullet.setJointMotorControlArray(
        robot, [0, 1], pybullet.VELOCITY_CONTROL, targetVelocities=[0.0, 0.0],
        forces=[f / n_substeps for f in CartpoleSwingupEnv.JOINT_FRICTION],
        physicsClientId=client,
    )

    def reset(state: np.ndarray) -> None:  # [cart x, pole angle, cart v, pole w]
        pybullet.resetJointState(robot, 0, state[0], state[2], physicsClientId=client)
        pybullet.resetJointState(robot, 1, state[1], state[3], physicsClientId=client)

    def run(actions: np.ndarray) -> None:
        for a in actions:
            pybullet.setJointMotorControl2(
                robot, 0, pybullet.TORQUE_CONTROL, force=10.0 * float(a[0]),
                physicsClientId=client,
            )
            pybullet.stepSimulation(physicsClientId=client)
            pybullet.getJointStates(robot, [0, 1], physicsClientId=client)

    return reset, run


def ours(env_id: str) -> tuple[envs.RobotEnv, Reset, StepLoop]:
    env = envs.make(env_id)

    def reset(state: np.ndarray) -> None:
        env.reset(seed=0)

    def run(actions: np.ndarray) -> None:
        for a in actions:
            env.step(a)

    return env, reset, run


CASES: dict[str, Callable[[], tuple[Reset, StepLoop]]] = {
    "dmc/cartpole-swingup": lambda: raw_dm_control("cartpole", "swingup"),
    "dmc/walker-walk": lambda: raw_dm_control("walker", "walk"),
    "mujoco/cartpole-swingup": lambda: raw_mujoco("cartpole.xml", frame_skip=5),
    "pybullet/cartpole-swingup": lambda: raw_pybullet_cartpole(n_substeps=4),
}


def time_block(reset: Reset, run: StepLoop, state: np.ndarray, actions: np.ndarray) -> float:
    """Microseconds per step over one block from `state` (reset excluded)."""
    reset(state)
    started = time.perf_counter()
    run(actions)
    return (time.perf_counter() - started) / len(actions) * 1e6


def measure(env_id: str, repeats: int, block: int) -> dict[str, Any]:
    raw = CASES[env_id]()
    env, *wrapped = ours(env_id)
    env.reset(seed=0)
    start = env.get_state()[:-1]
    actions = np.random.default_rng(0).uniform(-1, 1, size=(block, env.task.act_dim))
    for reset, run in (raw, wrapped):  # warm up caches and lazy initialisation
        time_block(reset, run, start, actions[:50])
    raw_us: list[float] = []
    ours_us: list[float] = []
    ratios: list[float] = []
    for i in range(repeats):
        order = [(raw, raw_us), (wrapped, ours_us)]
        for (reset, run), sink in order if i % 2 == 0 else order[::-1]:
            sink.append(time_block(reset, run, start, actions))
        ratios.append(ours_us[-1] / raw_us[-1])
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    result: dict[str, Any] = {
        "env_id": env_id,
        "raw_us_per_step_median": statistics.median(raw_us),
        "ours_us_per_step_median": statistics.median(ours_us),
        "ratio_ours_over_raw_median": statistics.median(ratios),
        "ratio_iqr": [q1, q3],
        "blocks": repeats,
        "steps_per_block": block,
    }
    if env_id in TARGETS:
        result["target_max_ratio"] = TARGETS[env_id]
        result["target_met"] = result["ratio_ours_over_raw_median"] <= TARGETS[env_id]
    return result


def plot(results: list[dict[str, Any]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 4))
    x = np.arange(len(results))
    raw = [r["raw_us_per_step_median"] for r in results]
    wrapped = [r["ours_us_per_step_median"] for r in results]
    ax.bar(x - 0.2, raw, 0.4, label="raw simulator")
    ax.bar(x + 0.2, wrapped, 0.4, label="through envs")
    for i, r in enumerate(results):
        ax.annotate(f"x{r['ratio_ours_over_raw_median']:.3f}", (x[i], max(raw[i], wrapped[i])),
                    ha="center", va="bottom", fontsize=9)
    ax.set_xticks(x, [r["env_id"] for r in results], fontsize=8)
    ax.set_ylabel("microseconds per step (median)")
    ax.set_title("Step cost: raw simulator vs envs wrapper (ratio = median of paired blocks)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=21, help="paired blocks per env")
    parser.add_argument("--block", type=int, default=500, help="steps per block")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args()
    results = []
    for env_id in CASES:
        results.append(measure(env_id, args.repeats, args.block))
        r = results[-1]
        print(f"{env_id:28s} raw {r['raw_us_per_step_median']:8.1f} us  ours "
              f"{r['ours_us_per_step_median']:8.1f} us  ratio "
              f"{r['ratio_ours_over_raw_median']:.3f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": "env_throughput", **provenance(), "results": results}
    (args.out / "env_throughput.json").write_text(json.dumps(payload, indent=2) + "\n")
    plot(results, args.out / "env_throughput.png")


if __name__ == "__main__":
    main()
