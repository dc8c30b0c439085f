"""The controller node against the simulated robot, over real ROS 2 on the loopback interface.

Robot and controller are separate `python -m mbrl` processes; this process joins the same
domain as an operator (it listens, presses the e-stop, sends bad commands). Each test reads
the robot's and the controller's MCAP logs afterwards. Times are the wall clock every process
shares (joint-state stamps, log times).
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray

import envs
from envs.dynamics import joint_state
from mbrl.control.episodes import rollout
from sim2real.deployment import SimulatorMPCConfig, controller_from_planner
from sim2real.ros.controller_node import QOS
from sim2real.ros.log import CYCLE_TOPIC, EVENT_TOPIC, LogRecord
from sim2real.ros.messages import stamp_seconds
from tests.sim2real.ros.conftest import RosProcesses

pytestmark = pytest.mark.xdist_group("ros")  # one worker: they share the two cores anyway

COMMANDS = "/forward_effort_controller/commands"
#: iLQR MPC through the simulator at 20 Hz, one iteration a replan: swings the cart-pole up.
SWING_UP = ("--planner", "ilqr", "--set", "max_iterations=1", "--rate", "20", "--horizon", "20")
#: A cheaper controller where only the safety around it is tested.
LIGHT = ("--planner", "ilqr", "--set", "max_iterations=1", "--rate", "20", "--horizon", "5")
PERIOD = 0.05
STALE = 2 * PERIOD  # the default --stale-periods 2
#: Long enough for a restarted controller (seconds to start under load) to swing up again.
ROBOT_SECONDS = 24


class Operator:
    """This process as a ROS 2 node in the test bed's domain."""

    def __init__(self) -> None:
        self.context = Context()
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node("test_operator", context=self.context)
        self.states: list[float] = []
        self.node.create_subscription(JointState, "/joint_states",
                                      lambda m: self.states.append(time.time()), QOS)
        self.estop = self.node.create_publisher(Bool, "/estop", QOS)
        self.estop_reset = self.node.create_publisher(Bool, "/estop_reset", QOS)
        self.command_publisher = self.node.create_publisher(Float64MultiArray, COMMANDS, QOS)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def wait_for(self, condition: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"no {what} within {timeout} s"
            time.sleep(0.02)

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def cycles(log: list[LogRecord]) -> list[dict[str, Any]]:
    return [r.json() for r in log if r.topic == CYCLE_TOPIC]


def received_commands(log: list[LogRecord]) -> list[tuple[float, list[float]]]:
    return [(r.time_s, list(r.message.data)) for r in log if r.topic == COMMANDS]


def in_process_return(seconds: float) -> float:
    """The deployed controller's return in process (`rollout`, no ROS, no real time)."""
    deployed = controller_from_planner(SimulatorMPCConfig(
        planner="ilqr", planner_settings={"max_iterations": 1}, rate_hz=20.0, horizon=20))
    env = envs.make("mujoco/cartpole-swingup", action_repeat=5)
    episode = rollout(env, deployed.controller, 0,
                      observe=lambda _: deployed.observe(joint_state(env)),
                      max_steps=round(seconds / PERIOD))
    return episode.episode_return


def test_the_cartpole_swings_up_through_ros_as_well_as_in_process(
        ros_processes: RosProcesses) -> None:
    reference = in_process_return(8.0)
    robot = ros_processes.robot("--duration", "8")
    controller = ros_processes.controller(*SWING_UP)
    assert ros_processes.wait(robot, "robot", 90) == 0, ros_processes.output("robot")
    stopped = ros_processes.interrupt(controller, "controller")
    assert stopped == 130, ros_processes.output("controller")
    through_ros = ros_processes.summary("robot")
    assert through_ros["steps"] == 800 and through_ros["lost_time_s"] == 0.0
    assert through_ros["episode_return"] >= 0.9 * reference, (through_ros, reference)
    assert ros_processes.summary("controller")["stopped_by"] == "SIGINT"
    assert "Traceback" not in ros_processes.output("controller")


def test_a_lost_link_gives_the_safe_command_within_one_period_every_time(
        ros_processes: RosProcesses) -> None:
    windows = [(1.0 + 0.5 * i, 1.25 + 0.5 * i) for i in range(20)]  # 20 trials of 0.25 s
    faults = (f"--fault=drop@{a}-{b}" for a, b in windows)
    robot = ros_processes.robot("--duration", "11.5", *faults)
    controller = ros_processes.controller(*LIGHT)
    assert ros_processes.wait(robot, "robot", 90) == 0, ros_processes.output("robot")
    ros_processes.interrupt(controller, "controller")
    robot_log, controller_log = ros_processes.log("robot"), ros_processes.log("controller")
    published = np.array([stamp_seconds(r.message.header.stamp) for r in robot_log
                          if r.topic == "/joint_states"])
    gaps = np.flatnonzero(np.diff(published) > 0.2)
    assert len(gaps) == 20, np.diff(published)[gaps]
    sent = [(c["tick_s"], c) for c in cycles(controller_log)]
    received = received_commands(robot_log)
    for gap in gaps:
        last, back = published[gap], published[gap + 1]
        stale_at = last + STALE
        first_safe = next(c for t, c in sent if t > stale_at)
        assert first_safe["safe"] and first_safe["tick_s"] <= stale_at + PERIOD, first_safe
        arrival = next(t for t, values in received if t >= first_safe["tick_s"])
        assert arrival <= stale_at + PERIOD + 0.005  # the transport's share: milliseconds
        assert all(c["safe"] for t, c in sent if stale_at < t < back)
        resumed = next(c for t, c in sent if t > back and not c["safe"])
        assert resumed["tick_s"] <= back + 3 * PERIOD  # fresh, planned, sent
    events = [r.json()["kind"] for r in controller_log if r.topic == EVENT_TOPIC]
    assert events.count("stale") == 20 + 1 and events.count("fresh") == 21  # and at the end


def test_a_frozen_driver_and_delayed_states_give_the_safe_command_then_control_resumes(
        ros_processes: RosProcesses) -> None:
    # Frozen: the same message again and again (its stamp never moves on); delayed: every
    # message 200 ms late with its true stamp, older than the 100 ms the watchdog allows.
    robot = ros_processes.robot("--duration", "5", "--fault=freeze@1.0-1.6",
                                "--fault=delay@2.6-3.4:200")
    controller = ros_processes.controller(*LIGHT)
    assert ros_processes.wait(robot, "robot", 90) == 0, ros_processes.output("robot")
    ros_processes.interrupt(controller, "controller")
    robot_log, controller_log = ros_processes.log("robot"), ros_processes.log("controller")
    steps = [r for r in robot_log if r.topic == "/mbrl/robot_step"]
    start = steps[0].time_s - 0.008  # the instant of the episode's first physics step
    events = [r.json() for r in controller_log if r.topic == EVENT_TOPIC]
    repeated = [e for e in events if e["kind"] == "rejected_state"
                and "is not after the last accepted" in e["reason"]]
    assert len(repeated) >= 50  # 0.6 s of a frozen driver at 100 Hz
    stale = [e["time_s"] - start for e in events if e["kind"] == "stale"]
    fresh = [e["time_s"] - start for e in events if e["kind"] == "fresh"]
    # Frozen at 1.0 s: stale once the last real state is 100 ms old, safe at the next period.
    assert any(1.0 + STALE - 0.02 < t <= 1.0 + STALE + PERIOD + 0.02 for t in stale), stale
    assert any(1.6 < t < 1.6 + 2 * PERIOD for t in fresh), fresh
    # Delayed from 2.6 s: the first late message arrives at 2.8 s, 200 ms old: stale by then;
    # at 3.4 s undelayed states overtake the late ones, which are then refused as out of order.
    assert any(2.6 + STALE - 0.02 < t <= 2.6 + STALE + PERIOD + 0.02 for t in stale), stale
    assert any(3.4 < t < 3.4 + 3 * PERIOD for t in fresh), fresh  # fresh states jump the queue
    sent = cycles(controller_log)
    assert all(c["safe"] for c in sent
               if 1.0 + STALE + PERIOD < c["tick_s"] - start < 1.6)


def test_estop_latches_and_resets_and_nothing_malformed_reaches_the_actuator(
        ros_processes: RosProcesses) -> None:
    robot = ros_processes.robot("--duration", "8", "--fault=garbage@0.5-1.5")
    controller = ros_processes.controller(*LIGHT)
    operator = Operator()
    try:
        operator.wait_for(lambda: len(operator.states) > 0, 60, "joint state")
        time.sleep(5.0)  # the controller is up, the garbage is over
        assert sockets_on_loopback_only(robot.pid) and sockets_on_loopback_only(controller.pid)
        engaged = time.time()
        operator.estop.publish(Bool(data=True))
        time.sleep(0.5)
        operator.estop.publish(Bool(data=False))  # releasing the button does not reset it
        time.sleep(0.5)
        reset = time.time()
        operator.estop_reset.publish(Bool(data=True))
        time.sleep(1.0)
        bad = [Float64MultiArray(data=[math.nan]), Float64MultiArray(data=[1.0, 2.0])]
        for message in bad:  # straight at the robot: it refuses them, as hardware must
            operator.command_publisher.publish(message)
        time.sleep(0.3)
        stopped = time.time()
        assert ros_processes.interrupt(controller, "controller") == 130
        assert ros_processes.wait(robot, "robot", 60) == 0, ros_processes.output("robot")
    finally:
        operator.close()
    robot_log = ros_processes.log("robot")
    received = received_commands(robot_log)
    during = [v for t, v in received if engaged + PERIOD < t < reset]
    assert during and all(v == [0.0] for v in during)
    after = [v for t, v in received if reset + 2 * PERIOD < t < stopped]
    assert any(v != [0.0] for v in after)
    last_time, last_command = received[-1]
    assert last_command == [0.0] and last_time >= stopped  # Ctrl-C sent the safe command
    assert ros_processes.summary("controller")["safe_command_acknowledged"] is True
    summary = ros_processes.summary("robot")
    assert summary["garbage_published"] >= 40
    assert summary["commands_not_finite"] == 1 and summary["commands_wrong_length"] == 1
    assert summary["commands_out_of_bounds"] == 0 and max(summary["max_abs_effort"]) <= 10.0
    controller_log = ros_processes.log("controller")
    reasons = " | ".join(r.json()["reason"] for r in controller_log if r.topic == EVENT_TOPIC
                         and r.json()["kind"] == "rejected_state")
    for reason in ("NaN or infinite", "unknown joints", "missing joints", "names,",
                   "is not after the last accepted", "ahead of its arrival"):
        assert reason in reasons, reason
    kinds = [r.json()["kind"] for r in controller_log if r.topic == EVENT_TOPIC]
    assert kinds.count("estop") == 1 and kinds.count("estop_reset") == 1
    sent = cycles(controller_log)
    assert all(all(math.isfinite(v) and abs(v) <= 10.0 for v in c["command"]) for c in sent)


def test_a_killed_controller_restarts_reconnects_and_swings_up_again(
        ros_processes: RosProcesses) -> None:
    robot = ros_processes.robot("--duration", str(ROBOT_SECONDS))
    first = ros_processes.controller(*SWING_UP, name="first")
    ros_processes.wait_for_file(ros_processes.folder / "robot", 30)
    time.sleep(8.0)
    first.kill()  # no safe command: the robot holds the last one, as ros2_control does
    killed = time.time()
    second = ros_processes.controller(*SWING_UP, name="second")
    assert ros_processes.wait(robot, "robot", 90) == 0, ros_processes.output("robot")
    ros_processes.interrupt(second, "second")
    robot_log = ros_processes.log("robot")
    received = received_commands(robot_log)
    resumed = next(t for t, _ in received if t > killed)  # the first has no voice left
    assert resumed < killed + 10.0
    steps = [(r.time_s, r.json()["reward"]) for r in robot_log
             if r.topic == "/mbrl/robot_step"]
    assert len(steps) == ROBOT_SECONDS * 100
    rewards = np.array([reward for t, reward in steps if t > resumed])
    balanced = np.convolve(rewards, np.ones(150) / 150, mode="valid") > 0.8
    # Upright again and balanced for 1.5 s, from wherever the held command left the pole, and
    # still balanced when the robot stops.
    assert balanced.any(), f"resumed {resumed - killed:.1f} s after the kill, never balanced"
    assert balanced[-1], f"balanced {np.argmax(balanced) / 100:.1f} s after resuming, then lost"


def sockets_on_loopback_only(pid: int) -> bool:
    """Whether every UDP and TCP socket of process `pid` is bound to 127.0.0.1."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    addresses = []
    for table in ("udp", "tcp", "udp6", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                addresses.append((table, fields[1].split(":")[0]))
    assert addresses, f"process {pid} has no sockets"
    return all(table in ("udp", "tcp") and address == "0100007F" for table, address in addresses)
