"""State-to-command latency through ROS 2, against the same controller in process.

    python -m benchmarks.ros_latency [--seconds 10] [--out benchmarks/results]

For each control rate (50 and 100 Hz) and controller (a policy: linear state feedback, LQR
about the upright pole, microseconds an act; MPC: iLQR through the simulator, one iteration a
replan, a horizon of 0.2 s), the simulated robot runs as its own process (`mbrl sim-robot`,
joint states at 100 Hz, or 250 Hz for control at 100 Hz) and the controller node runs
here, sending each command as soon as it is decided (no delay compensation, so that the state
a command came from is the one just received). From the two MCAP logs, on the clock both
processes share:

- state transport: the robot's publish time of a joint state to the node's receipt of it;
- command transport: the node's publish time of a command to the robot's receipt of it;
- transport per period: the two added, for the state each command was computed from and
  that command: what ROS adds (target: at most 2 ms at p99);
- end to end: the stamp of that state to the robot's receipt of the command (includes the
  wait for the period and the controller's own time);
- the controller's time from the start of a period to its command, through ROS and in
  process (the same `ControlLoop` fed by the simulator directly, in real time), the time a
  received state waited for the period to begin, and the periods that overran.

The first 0.5 s after the robot's first command are start-up: the messages sent just after
DDS matched the two nodes wait for its handshake (up to 150 ms); their transport is reported
apart (`startup_command_transport_ms`), and the figures above are of the steady state.

The controller shares this machine's two cores with the robot process, as it would share a
robot's computer with its drivers. Writes ros_latency.json and ros_latency.png.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import envs
from benchmarks.provenance import RESULTS, provenance
from controllers.lqr import lqr_gain
from envs.dynamics import joint_state, set_joint_state
from sim2real.deployment import (
    ControlLoop,
    DeployedController,
    SimulatorMPCConfig,
    controller_from_planner,
)
from sim2real.safety import SafetyConfig

ENV_ID = "mujoco/cartpole-swingup"
RATES_HZ = (50.0, 100.0)
KINDS = ("policy", "mpc")
TARGET_P99_MS = 2.0
#: Seconds after the robot's first command that count as start-up (DDS's match handshake).
SETTLE_S = 0.5


class LinearPolicy:
    """`u = -K (x - x_upright)` clipped into [-1, 1]: a policy in microseconds."""

    def __init__(self, gain: torch.Tensor) -> None:
        self.gain = gain

    def reset(self) -> None:
        pass

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.clamp(-self.gain @ obs, -1.0, 1.0)


def deployed_controller(kind: str, rate_hz: float) -> DeployedController:
    """The policy or the MPC at `rate_hz` (see the module docstring)."""
    if kind == "mpc":
        return controller_from_planner(SimulatorMPCConfig(
            env_id=ENV_ID, planner="ilqr", planner_settings={"max_iterations": 1},
            rate_hz=rate_hz, horizon=round(0.2 * rate_hz), compensate_delay=False))
    repeat = round(1.0 / (rate_hz * envs.make(ENV_ID).control_timestep))
    env = envs.make(ENV_ID, action_repeat=repeat)
    env.reset(seed=0)
    set_joint_state(env, np.array([0.0, 0.0, 0.05, 0.0]))  # sliding: dry friction is a force
    linearize = getattr(env, "linearize")  # noqa: B009  (a backend extra, not on every env)
    A, B = (torch.from_numpy(m) for m in linearize(env.get_state(), np.zeros(1)))
    gain, _ = lqr_gain(A, B, torch.diag(torch.tensor([1.0, 10.0, 0.1, 0.1], dtype=A.dtype)),
                       torch.eye(1, dtype=A.dtype) * 0.1)
    return DeployedController(
        LinearPolicy(gain), lambda x: torch.from_numpy(np.asarray(x, dtype=np.float64)), env,
        env.control_timestep, "LQR state feedback about the upright pole")


def through_ros(kind: str, rate_hz: float, seconds: float, domain_id: int,
                folder: Path) -> dict[str, Any]:
    """One run: the robot as a process, the node here; the latencies from both logs."""
    from sim2real.ros.controller_node import DEFAULT_TOPICS, Stop, run_controller
    from sim2real.ros.log import McapLog, read_log

    publish_hz = next(hz for hz in (100.0, 250.0, 500.0) if hz >= 2 * rate_hz)  # divide 500
    robot_out = folder / f"robot-{kind}-{rate_hz:g}"
    robot = subprocess.Popen(
        [sys.executable, "-m", "mbrl", "sim-robot", "--env", ENV_ID, "--duration", str(seconds),
         "--publish-rate", f"{publish_hz:g}", "--start-on-first-command", "--domain-id",
         str(domain_id), "--out", str(robot_out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deployed = deployed_controller(kind, rate_hz)
    loop = ControlLoop(deployed, SafetyConfig(period_s=deployed.period_s),
                       compensate_delay=False)
    loop.warm_up()
    log_path = folder / f"controller-{kind}-{rate_hz:g}.mcap"
    stop = Stop()

    def end_with_the_robot() -> None:  # it starts on the first command, after discovery
        robot.wait(timeout=seconds + 60)
        stop.event.set()

    threading.Thread(target=end_with_the_robot, daemon=True).start()
    with McapLog(log_path) as mcap:
        run_controller(loop, DEFAULT_TOPICS, mcap, seconds + 60, stop)
    (robot_dir,) = robot_out.iterdir()
    robot_log = read_log(robot_dir / "robot.mcap")
    controller_log = read_log(log_path)
    return {"kind": kind, "rate_hz": rate_hz, "controller": deployed.description,
            **latencies(robot_log, controller_log), "periods": loop.periods,
            "rate_overruns": loop.overruns,
            "robot": json.loads((robot_dir / "summary.json").read_text())}


def _stamp(message: Any) -> float:
    return float(message.header.stamp.sec) + 1e-9 * float(message.header.stamp.nanosec)


def latencies(robot_log: list[Any], controller_log: list[Any]) -> dict[str, Any]:
    """The latencies of one run, in milliseconds (see the module docstring)."""
    published = {_stamp(r.message): r.time_s for r in robot_log if r.topic == "/joint_states"}
    received = {_stamp(r.message): r.time_s for r in controller_log
                if r.topic == "/joint_states"}
    state_ms = {s: 1000 * (received[s] - published[s]) for s in received if s in published}
    sent = [(r.time_s, tuple(r.message.data)) for r in controller_log
            if r.topic == "/forward_effort_controller/commands"]
    got = [(r.time_s, tuple(r.message.data)) for r in robot_log
           if r.topic == "/forward_effort_controller/commands"]
    # Reliable QoS on loopback: the robot gets, in order, every command sent once it matched
    # the publisher; the earlier ones are lost. Pair them by position after that offset.
    offset = next(i for i in range(len(sent)) if all(
        sent[i + k][1] == got[k][1] for k in range(min(20, len(got), len(sent) - i))))
    pairs = list(zip(sent[offset:], got, strict=False))
    # The first messages after the match wait for DDS's handshake (up to 150 ms measured);
    # that is start-up, not the steady state a controller runs in: left out, and stated.
    settled = pairs[0][1][0] + SETTLE_S
    startup_ms = [1000 * (t_got - t_sent) for (t_sent, _), (t_got, _) in pairs
                  if t_sent < settled]
    pairs = [pair for pair in pairs if pair[0][0] >= settled]
    state_ms = {s: v for s, v in state_ms.items() if published[s] >= settled}
    command_ms = [1000 * (t_got - t_sent) for (t_sent, _), (t_got, _) in pairs]
    arrival = {t_sent: t_got for (t_sent, _), (t_got, _) in pairs}
    cycles = [r.json() for r in controller_log if r.topic == "/mbrl/control_cycle"]
    per_period, end_to_end, decide_ms, wait_ms = [], [], [], []
    sends = sorted(arrival)
    for cycle in cycles:
        stamp = cycle["state_stamp_s"]
        if stamp is None or cycle["safe"] or stamp not in state_ms:
            continue
        t_send = next((t for t in sends if t >= cycle["decided_s"] - 1e-6), None)
        if t_send is None or t_send - cycle["decided_s"] > 0.005:
            continue
        command = 1000 * (arrival[t_send] - t_send)
        per_period.append(state_ms[stamp] + command)
        end_to_end.append(1000 * (arrival[t_send] - stamp))
        decide_ms.append(1000 * (cycle["decided_s"] - cycle["tick_s"]))
        wait_ms.append(1000 * (cycle["tick_s"] - received[stamp]))
    return {"startup_command_transport_ms": percentiles(startup_ms),
            "state_transport_ms": percentiles(list(state_ms.values())),
            "command_transport_ms": percentiles(command_ms),
            "transport_per_period_ms": percentiles(per_period),
            "end_to_end_ms": percentiles(end_to_end),
            "controller_ms": percentiles(decide_ms),
            "state_wait_for_period_ms": percentiles(wait_ms),
            "raw": {"transport_per_period_ms": per_period, "end_to_end_ms": end_to_end}}


def in_process(kind: str, rate_hz: float, seconds: float) -> dict[str, Any]:
    """The same loop fed by the simulator directly, in real time: state read -> command."""
    deployed = deployed_controller(kind, rate_hz)
    loop = ControlLoop(deployed, SafetyConfig(period_s=deployed.period_s),
                       compensate_delay=False)
    loop.warm_up()
    robot = envs.make(ENV_ID, max_episode_steps=10**9)
    robot.reset(seed=0)
    names, gear = loop.interface.state_joints, 10.0
    latency, overruns = [], 0
    next_tick = time.monotonic()
    for _ in range(round(seconds * rate_hz)):
        read = time.time()
        x = joint_state(robot)
        loop.on_joint_state(names, x[:2], x[2:], read)
        commands: list[np.ndarray] = []
        cycle = loop.tick(commands.append)
        latency.append(1000 * (cycle.decided_s - read))
        for _ in range(round(deployed.period_s / robot.control_timestep)):
            robot.step(commands[0] / gear)
        next_tick += deployed.period_s
        wait = next_tick - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        else:
            overruns += 1
    return {"kind": kind, "rate_hz": rate_hz, "controller_ms": percentiles(latency),
            "rate_overruns": overruns, "periods": round(seconds * rate_hz)}


def percentiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    array = np.asarray(values)
    return {"p50": float(np.percentile(array, 50)), "p99": float(np.percentile(array, 99)),
            "max": float(array.max()), "n": int(array.size)}


def plot(runs: list[dict[str, Any]], local: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    labels = [f"{r['kind']} {r['rate_hz']:g} Hz" for r in runs]
    axes[0].boxplot([r["raw"]["transport_per_period_ms"] for r in runs], tick_labels=labels,
                    whis=(1, 99), showfliers=True)
    axes[0].axhline(TARGET_P99_MS, color="red", ls="--", label="target p99")
    axes[0].set_ylabel("ms")
    axes[0].set_title("transport per period (state + command), ROS 2 on loopback")
    axes[0].legend()
    width = 0.35
    x = np.arange(len(runs))
    axes[1].bar(x - width / 2, [r["controller_ms"]["p50"] for r in runs], width,
                label="through ROS, p50")
    axes[1].bar(x + width / 2, [r["controller_ms"]["p50"] for r in local], width,
                label="in process, p50")
    axes[1].errorbar(x - width / 2, [r["controller_ms"]["p50"] for r in runs],
                     yerr=[[0] * len(runs), [r["controller_ms"]["p99"] - r["controller_ms"]["p50"]
                                             for r in runs]], fmt="none", color="k")
    axes[1].errorbar(x + width / 2, [r["controller_ms"]["p50"] for r in local],
                     yerr=[[0] * len(local), [r["controller_ms"]["p99"]
                                              - r["controller_ms"]["p50"] for r in local]],
                     fmt="none", color="k")
    axes[1].set_xticks(x, labels)
    axes[1].set_yscale("log")
    axes[1].set_ylabel("ms (bars p50, whiskers to p99)")
    axes[1].set_title("controller: period start to command decided")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds a run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    from sim2real.ros.controller_node import init_ros
    from sim2real.ros.dds import DomainClaim, use_loopback_only

    claim = DomainClaim()
    use_loopback_only(claim.domain_id)
    init_ros()
    runs, local = [], []
    with tempfile.TemporaryDirectory() as folder:
        for rate in RATES_HZ:
            for kind in KINDS:
                run = through_ros(kind, rate, args.seconds, claim.domain_id, Path(folder))
                runs.append(run)
                local.append(in_process(kind, rate, args.seconds))
                print(json.dumps({k: v for k, v in run.items() if k not in ("raw", "robot")}),
                      flush=True)
    claim.release()
    worst = max(r["transport_per_period_ms"]["p99"] for r in runs)
    summary = {
        "transport_per_period_p99_ms": {f"{r['kind']} {r['rate_hz']:g} Hz":
                                        r["transport_per_period_ms"]["p99"] for r in runs},
        "worst_p99_ms": worst, "target_p99_ms": TARGET_P99_MS, "met": worst <= TARGET_P99_MS,
    }
    print(json.dumps(summary, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": "ros_latency", **provenance(), "summary": summary,
               "through_ros": [{k: v for k, v in r.items() if k != "raw"} for r in runs],
               "in_process": local}
    (args.out / "ros_latency.json").write_text(json.dumps(payload, indent=2) + "\n")
    plot(runs, local, args.out / "ros_latency.png")


if __name__ == "__main__":
    main()
