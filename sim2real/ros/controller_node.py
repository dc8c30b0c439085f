"""The controller node: joint states in, efforts out, at a fixed rate, through the gate.

    /joint_states (sensor_msgs/JointState) --> ControlLoop.on_joint_state (the gate's checks)
    timer, every period                    --> ControlLoop.tick --> Float64MultiArray
                                               --> /forward_effort_controller/commands
    /estop (std_msgs/Bool, true)           --> latch the safe command
    /estop_reset (std_msgs/Bool, true)     --> release it

Two threads, each with a single-threaded executor over a node of its own: one takes joint
states and e-stops as they arrive, the other runs the periods, so a state is never held up
behind a plan (with one thread, states waited up to 77 ms at p99
behind iLQR's 24 ms plans, and a slow plan made the watchdog fire); `ControlLoop.lock`
guards the gate. Every message in and out, each period's record (`Cycle`) and each
safety event go to the MCAP log. On SIGINT or SIGTERM the node publishes the safe command,
waits for the robot to acknowledge it (reliable QoS), and only then stops: rclpy's own
signal handler is off, because it would shut the context down before that command.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass
from types import FrameType
from typing import Any

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray

from sim2real.deployment import ControlLoop
from sim2real.ros.log import CYCLE_TOPIC, EVENT_TOPIC, McapLog
from sim2real.ros.messages import command_message, stamp_seconds

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Topics:
    """The topics of a deployment (ros2_control's names by default)."""

    #: Joint states from the robot (a `joint_state_broadcaster`).
    joint_states: str = "/joint_states"
    #: Efforts to the robot (a forward command controller).
    commands: str = "/forward_effort_controller/commands"
    #: `true` latches the safe command.
    estop: str = "/estop"
    #: `true` releases a latched e-stop.
    estop_reset: str = "/estop_reset"


#: ros2_control's topic names.
DEFAULT_TOPICS = Topics()

#: How often Python hands the interpreter lock between threads, seconds (its default, 5 ms,
#: let a thread that plans, or steps physics, hold a message-taking thread off for several
#: such slices: commands and joint states then waited up to 90 ms in a receiving process).
SWITCH_INTERVAL_S = 0.0002

#: Reliable, keep the last 10: what `joint_state_broadcaster` and the forward command
#: controllers use (the system default QoS).
QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


class ControllerNode:
    """`loop` as a ROS 2 node (see the module docstring)."""

    def __init__(self, loop: ControlLoop, topics: Topics = DEFAULT_TOPICS,
                 mcap: McapLog | None = None, name: str = "mbrl_controller") -> None:
        self.loop = loop
        self.topics = topics
        self.mcap = mcap
        #: Runs the periods and publishes; `inputs` takes the messages.
        self.node = Node(name)
        self.inputs = Node(f"{name}_inputs")
        self._publisher = self.node.create_publisher(Float64MultiArray, topics.commands, QOS)
        self.inputs.create_subscription(JointState, topics.joint_states, self._on_state, QOS)
        self.inputs.create_subscription(Bool, topics.estop, self._on_estop, QOS)
        self.inputs.create_subscription(Bool, topics.estop_reset, self._on_estop_reset, QOS)
        self._events_logged = 0
        self._events_lock = threading.Lock()
        self._publish_lock = threading.Lock()
        self.node.create_timer(loop.deployed.period_s, self._on_tick)

    # ----------------------------------------------------------------- callbacks
    def _on_state(self, message: JointState) -> None:
        self._log(self.topics.joint_states, message)
        self.loop.on_joint_state(message.name, message.position, message.velocity,
                                 stamp_seconds(message.header.stamp))
        self._log_events()

    def _on_estop(self, message: Bool) -> None:
        self._log(self.topics.estop, message)
        if message.data:
            self.publish(self.loop.engage_estop())  # now, not at the next period
        self._log_events()

    def _on_estop_reset(self, message: Bool) -> None:
        self._log(self.topics.estop_reset, message)
        if message.data:
            self.loop.reset_estop()
        self._log_events()

    def _on_tick(self) -> None:
        try:
            cycle = self.loop.tick(self.publish)
        except Exception:
            self.publish(self.loop.safe_command())  # a bug of ours: safe first, then raise
            raise
        if self.mcap is not None:
            self.mcap.write_json(CYCLE_TOPIC, cycle.record(), _ns(cycle.decided_s))
        self._log_events()

    # ----------------------------------------------------------------- output
    def publish(self, command: Any) -> None:
        message = command_message(command)
        with self._publish_lock:  # the e-stop publishes from the inputs' thread
            sent_s = self.loop.clock()  # before the call: its time is the transport's
            self._publisher.publish(message)
            if self.mcap is not None:
                self.mcap.write(self.topics.commands, message, _ns(sent_s))

    def stop_safely(self, timeout_s: float = 3.5) -> bool:
        """Publish the safe command and wait until every matched robot has it; whether it was
        acknowledged within `timeout_s` (longer than Fast DDS's 3 s heartbeat period, after
        which a reader that missed the piggybacked heartbeat acknowledges)."""
        self.publish(self.loop.safe_command())
        return bool(self._publisher.wait_for_all_acked(
            rclpy.duration.Duration(nanoseconds=int(timeout_s * 1e9))))

    def _log(self, topic: str, message: Any) -> None:
        if self.mcap is not None:
            self.mcap.write(topic, message, _ns(self.loop.clock()))

    def _log_events(self) -> None:
        with self._events_lock, self.loop.lock:
            events = self.loop.gate.events[self._events_logged:]
            self._events_logged += len(events)
        for event in events:
            log.info("safety: %s: %s", event.kind, event.reason)
            if self.mcap is not None:
                self.mcap.write_json(EVENT_TOPIC, {"time_s": event.time_s, "kind": event.kind,
                                                   "reason": event.reason}, _ns(self.loop.clock()))


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


class Stop:
    """Set by SIGINT / SIGTERM (or by a caller); what the spin loops wait on."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal: int | None = None

    def install(self) -> None:
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, self._handle)

    def _handle(self, number: int, frame: FrameType | None) -> None:
        self.signal = number
        self.event.set()


def init_ros() -> None:
    """rclpy without its signal handlers (see the module docstring)."""
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)


def run_controller(loop: ControlLoop, topics: Topics, mcap: McapLog | None,
                   duration_s: float | None, stop: Stop) -> bool:
    """Spin a `ControllerNode` until `duration_s` has passed or `stop` is set, then send the
    safe command; whether the robot acknowledged it. rclpy must be initialised."""
    controller = ControllerNode(loop, topics, mcap)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    periods, inputs = SingleThreadedExecutor(), SingleThreadedExecutor()
    periods.add_node(controller.node)
    inputs.add_node(controller.inputs)
    listening = threading.Event()
    listening.set()
    listener = spin_in_thread(inputs, listening, "controller-inputs")
    end = None if duration_s is None else time.monotonic() + duration_s
    try:
        while not stop.event.is_set() and (end is None or time.monotonic() < end):
            periods.spin_once(timeout_sec=0.05)
    finally:
        acknowledged = controller.stop_safely()
        listening.clear()
        listener.join()
        inputs.shutdown()
        periods.shutdown()
        controller.inputs.destroy_node()
        controller.node.destroy_node()
    return acknowledged


def spin_in_thread(executor: Any, running: threading.Event, name: str) -> threading.Thread:
    """A thread that spins `executor` while `running` is set (then returns, so the caller
    can shut the executor down: shutting it down under a spinning thread raises there)."""
    def spin() -> None:
        while running.is_set():
            executor.spin_once(timeout_sec=0.02)

    thread = threading.Thread(target=spin, name=name, daemon=True)
    thread.start()
    return thread
