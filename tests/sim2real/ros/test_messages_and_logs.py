"""Message definitions, MCAP logs and their replay, the DDS settings and the command line's
errors: everything of the ROS bridge that needs no second process."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray, String

from mbrl.cli import main
from mbrl.errors import UserError
from sim2real.ros import dds
from sim2real.ros.controller_node import QOS
from sim2real.ros.log import EVENT_TOPIC, McapLog, read_log
from sim2real.ros.messages import (
    command_message,
    joint_state_message,
    message_definition,
    stamp_seconds,
    to_stamp,
)
from tests.sim2real.ros.conftest import RosProcesses

#: sensor_msgs/msg/JointState as ROS 2 defines it (comments dropped), with its dependencies
#: as rosbag2 appends them.
JOINT_STATE_SCHEMA = """\
std_msgs/Header header
string[] name
float64[] position
float64[] velocity
float64[] effort
================================================================================
MSG: std_msgs/Header
builtin_interfaces/Time stamp
string frame_id
================================================================================
MSG: builtin_interfaces/Time
int32 sec
uint32 nanosec
"""


def test_message_definitions_are_the_ros2msg_text_rosbag2_stores() -> None:
    assert message_definition(JointState) == JOINT_STATE_SCHEMA
    assert message_definition(Bool) == "bool data\n"
    assert message_definition(Float64MultiArray).startswith(
        "std_msgs/MultiArrayLayout layout\nfloat64[] data\n")


def test_stamps_round_trip_to_the_nanosecond() -> None:
    for seconds in (0.0, 1.5, 1796033854.028183):
        assert abs(stamp_seconds(to_stamp(seconds)) - seconds) < 1e-9 * max(1.0, seconds) * 1e3


def test_a_log_reads_back_every_message_as_written_even_cut_short(tmp_path: Path) -> None:
    path = tmp_path / "run.mcap"
    with McapLog(path) as log:
        for i in range(3000):
            log.write("/joint_states", joint_state_message(
                ["slider", "hinge"], [0.1 * i, math.nan], [1.0, -1.0], 100.0 + i), 10**9 + i)
            log.write("/forward_effort_controller/commands", command_message(np.array([i])),
                      10**9 + i)
        log.write("/estop", Bool(data=True), 10**9 + 5000)
        log.write_json(EVENT_TOPIC, {"kind": "estop", "reason": "test", "time_s": 1.0}, 10**9)
    records = read_log(path)
    assert len(records) == 6002
    states = [r for r in records if r.topic == "/joint_states"]
    assert list(states[7].message.name) == ["slider", "hinge"]
    assert states[7].message.position[0] == pytest.approx(0.7)
    assert math.isnan(states[7].message.position[1])
    assert stamp_seconds(states[7].message.header.stamp) == pytest.approx(107.0)
    events = [r.json() for r in records if r.topic == EVENT_TOPIC]
    assert events == [{"kind": "estop", "reason": "test", "time_s": 1.0}]
    cut = tmp_path / "killed.mcap"
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])  # as a killed writer leaves it
    assert 1000 < len(read_log(cut)) < 6002


def test_replay_summarises_and_plots_a_log_and_refuses_what_is_not_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "deploy.mcap"
    with McapLog(path) as log:
        for i in range(50):
            log.write("/joint_states", joint_state_message(["slider", "hinge"], [0.0, 3.0],
                                                           [0.0, 0.0], 10.0 + 0.01 * i),
                      int((10.0 + 0.01 * i) * 1e9))
            log.write_json("/mbrl/control_cycle", {
                "tick_s": 10.0 + 0.01 * i, "decided_s": 10.0 + 0.01 * i,
                "state_stamp_s": 10.0 + 0.01 * i - 0.005, "plan_ms": 3.0, "command": [0.5],
                "safe": i < 5, "reason": "", "overrun": False}, int((10.0 + 0.01 * i) * 1e9))
    assert main(["replay", str(path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["periods"] == 50 and summary["safe_periods"] == 5
    assert summary["state_age_ms"]["p50"] == pytest.approx(5.0)
    assert Path(summary["figure"]).stat().st_size > 10_000
    (tmp_path / "not.mcap").write_text("hello")
    for bad, message in (("missing.mcap", "no such log file"), ("not.mcap", "not a readable")):
        with pytest.raises(SystemExit) as exit_info:
            main(["replay", str(tmp_path / bad)])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


def test_domain_claims_are_exclusive_and_each_test_run_has_its_own_domain(
        ros_processes: RosProcesses) -> None:
    first, second = dds.DomainClaim(), dds.DomainClaim()
    try:
        assert first.domain_id != second.domain_id
        assert ros_processes.domain_id not in (first.domain_id, second.domain_id)
        assert os.environ["ROS_DOMAIN_ID"] == str(ros_processes.domain_id)
        assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SYSTEM_DEFAULT"
        assert "127.0.0.1" in Path(os.environ["FASTDDS_DEFAULT_PROFILES_FILE"]).read_text()
    finally:
        first.release()
        second.release()


def test_nodes_hear_their_own_domain_only(ros_processes: RosProcesses) -> None:
    other = dds.DomainClaim()
    heard: dict[int, list[str]] = {ros_processes.domain_id: [], other.domain_id: []}
    contexts, executors = [], []
    try:
        for domain in heard:
            context = Context()
            rclpy.init(context=context, domain_id=domain,
                       signal_handler_options=SignalHandlerOptions.NO)
            node = rclpy.create_node(f"listener_{domain}", context=context)
            node.create_subscription(String, "/chatter",
                                     lambda m, d=domain: heard[d].append(m.data), QOS)
            executor = SingleThreadedExecutor(context=context)
            executor.add_node(node)
            contexts.append(context)
            executors.append(executor)
        talker = rclpy.create_node("talker", context=contexts[0])
        publisher = talker.create_publisher(String, "/chatter", QOS)
        deadline = time.monotonic() + 10
        while not heard[ros_processes.domain_id] and time.monotonic() < deadline:
            publisher.publish(String(data="hello"))
            for executor in executors:
                executor.spin_once(timeout_sec=0.05)
        for _ in range(20):
            for executor in executors:
                executor.spin_once(timeout_sec=0.01)
        assert heard[ros_processes.domain_id] and not heard[other.domain_id]
    finally:
        for executor, context in zip(executors, contexts, strict=True):
            executor.shutdown()
            rclpy.shutdown(context=context)
        other.release()


def test_without_the_ros_extra_the_commands_say_what_to_install(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    real = dds.importlib.util.find_spec
    monkeypatch.setattr(dds.importlib.util, "find_spec",
                        lambda name, *a: None if name == "rclpy" else real(name, *a))
    with pytest.raises(UserError, match=r"the ROS 2 extra is not installed \(rclpy"):
        dds.require_ros()
    for argv in (["deploy", "ros", "--planner", "ilqr"], ["sim-robot"], ["replay", "x.mcap"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert 'pip install -e ".[ros]"' in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("argv", "message"), [
    (["deploy", "ros"], "give one of --controller RUN_DIR"),
    (["deploy", "ros", "--planner", "ilqr", "--rate", "30"],
     "--rate 30: the period 33.3333 ms is not a whole number"),
    (["deploy", "ros", "--planner", "nope"], "planner"),
    (["deploy", "ros", "--controller", "no/such/run"], "no/such/run"),
    (["deploy", "ros", "--planner", "ilqr", "--robot", "pendulum"],
     "--robot pendulum: the controller is for the cartpole"),
    (["deploy", "ros", "--planner", "cem", "--env", "pybullet/cartpole-swingup", "--rate", "25"],
     "has no joint interface"),
    (["deploy", "ros", "--planner", "ilqr", "--safe-command", "1", "2"],
     "--safe-command: give one effort for each of ['slider'], got 2"),
    (["deploy", "ros", "--planner", "ilqr", "--robust", "peng2018"],
     "planner: plans through one model; robust MPC takes a sampling planner"),
    (["deploy", "ros", "--planner", "cem", "--risk", "cvar"],
     "--risk: with --planner, robust MPC needs --robust FILE"),
    (["deploy", "ros", "--controller", "x", "--copies", "3"], "--copies: with --planner only"),
    (["sim-robot", "--env", "dmc/nope"], "env_id"),
    (["sim-robot", "--physics", "mass_scale"], "--physics takes NAME=SCALE"),
    (["sim-robot", "--physics", "mass=2"], "--physics: mujoco/cartpole-swingup: no physics"),
    (["sim-robot", "--fault", "melt@1-2"], "--fault 'melt@1-2'"),
])
def test_bad_deployment_options_end_in_one_line_before_anything_is_written(
        argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1], err
    assert not (tmp_path / "runs").exists()
