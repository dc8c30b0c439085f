"""The simulated robot: a MuJoCo env behind the topics of a ros2_control robot.

It is what a user runs before trusting the real robot, and what the tests run the controller
node against. In real time (a step that starts late is caught up at once, so simulated time
keeps up with the wall clock the controller plans on), every physics step (the `mujoco/`
robots: `model.opt.timestep`, 500 Hz for the cart-pole; a `dmc/` robot, whose physics
dm_control steps, at its control step):

    command = the latest received command whose latency has passed (held, as ros2_control's
              forward command controllers hold the last command); one of the wrong length
              or not finite is refused and counted, as hardware must never see it
    action  = command / gear, clipped into the actuators' range (counted if it was outside)
    step the physics; at the end of each env step (the cart-pole: five physics steps), add
    the task's reward of that step to the return
    publish /joint_states stamped with the wall clock (100 Hz by default, ros2_control's
    default update rate), with optional noise, unless a fault window says otherwise:
        drop     publish nothing (a lost link)
        freeze   publish the last message again, same stamp and values (a hung driver)
        delay    publish each message DELAY ms late, with its true stamp
        garbage  publish malformed messages in turn: a NaN position, an extra unknown joint, a
                 missing joint, unequal lengths, an infinite velocity, a stamp from the
                 past, a stamp from the future

Physics shifts (`physics`, the env's `set_physics_params` scales) are applied after the
joint interface is read, so commands are converted with the nominal gear and a changed
actuator gain shows as the robot a controller would meet. Every published state, every
received command and each step's record go to the MCAP log; the summary (return, commands
refused, late steps) is written at the end.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray

import envs
from controllers.validation import check_types, require
from envs.dynamics import joint_state
from mbrl.config import require_known_env
from sim2real.ros.controller_node import (
    DEFAULT_TOPICS,
    QOS,
    SWITCH_INTERVAL_S,
    Stop,
    Topics,
    spin_in_thread,
)
from sim2real.ros.log import ROBOT_TOPIC, McapLog
from sim2real.ros.messages import joint_state_message

log = logging.getLogger(__name__)

#: How far behind the wall clock the physics may fall and still catch up, seconds.
_MAX_CATCH_UP_S = 0.05

#: The fault kinds `Fault` takes.
FAULT_KINDS = ("drop", "freeze", "delay", "garbage")


@dataclass(frozen=True)
class Fault:
    """A window of simulated time during which the robot's joint states go wrong."""

    #: One of `FAULT_KINDS`.
    kind: str
    #: Start and end, seconds since the episode began.
    start_s: float
    end_s: float
    #: For "delay": how late each message is published, milliseconds.
    delay_ms: float = 0.0

    def __post_init__(self) -> None:
        check_types(self)
        require(self, "kind", self.kind in FAULT_KINDS, f"must be one of {FAULT_KINDS}")
        require(self, "end_s", self.end_s > self.start_s >= 0.0, "must be after start_s >= 0")
        require(self, "delay_ms", self.delay_ms >= 0.0, "must be >= 0")

    @classmethod
    def parse(cls, text: str) -> Fault:
        """`KIND@START-END` or `delay@START-END:MS` (seconds; milliseconds)."""
        try:
            kind, window = text.split("@", 1)
            window, _, delay = window.partition(":")
            start, end = window.split("-", 1)
            return cls(kind, float(start), float(end), float(delay) if delay else 0.0)
        except ValueError as error:
            raise ValueError(f"--fault {text!r}: expected KIND@START-END or "
                             f"delay@START-END:MS with KIND in {FAULT_KINDS} ({error})") from None

    def active(self, t: float) -> bool:
        return self.start_s <= t < self.end_s


@dataclass(frozen=True)
class SimRobotConfig:
    """Settings of the simulated robot."""

    #: Registered env id of a MuJoCo-backed robot.
    env_id: str = "mujoco/cartpole-swingup"
    #: Seed of the episode's initial state and of the noise.
    seed: int = 0
    #: Seconds of simulated time to run (None: until stopped).
    duration_s: float | None = None
    #: Time from receiving a command to applying it, milliseconds.
    latency_ms: float = 0.0
    #: Standard deviation of gaussian noise on published positions and velocities.
    noise_std: float = 0.0
    #: Physics scales (`RobotEnv.set_physics_params`), e.g. {"mass_scale": 1.5}.
    physics: dict[str, float] = field(default_factory=dict)
    #: Fault windows.
    faults: tuple[Fault, ...] = ()
    #: Joint states published per second (None: every physics step), a divisor of the
    #: physics rate; 100 Hz is ros2_control's default update rate. Commands are applied at
    #: the physics rate either way. (At 500 Hz, taking every message cost the controller
    #: process on this 2-core machine enough time that iLQR missed its deadline 39 times in
    #: 8 s, against once at 100 Hz.)
    publish_rate_hz: float | None = 100.0
    #: Hold the episode (no physics steps, joint states still published) until the first
    #: command arrives, so a controller that is still starting loses no time.
    start_on_first_command: bool = False

    def __post_init__(self) -> None:
        check_types(self)
        require_known_env(self)
        require(self, "duration_s", self.duration_s is None or self.duration_s > 0,
                "must be > 0 or null")
        require(self, "latency_ms", self.latency_ms >= 0, "must be >= 0")
        require(self, "noise_std", self.noise_std >= 0, "must be >= 0")
        require(self, "publish_rate_hz", self.publish_rate_hz is None or self.publish_rate_hz > 0,
                "must be > 0 or null")


@dataclass
class RobotSummary:
    """What the simulated robot saw, written at its end."""

    env_id: str
    seed: int
    #: Env steps (control steps of the env; the return's steps).
    steps: int = 0
    #: Simulated seconds.
    duration_s: float = 0.0
    #: Sum of the env's rewards over the steps (the same scale as an in-process episode's
    #: return at any action repeat).
    episode_return: float = 0.0
    commands_received: int = 0
    #: Commands refused before the actuators: wrong length, or not finite.
    commands_wrong_length: int = 0
    commands_not_finite: int = 0
    #: Applied commands outside the actuators' range (clipped).
    commands_out_of_bounds: int = 0
    #: Largest |effort| received, per commanded joint.
    max_abs_effort: list[float] = field(default_factory=list)
    #: Physics steps that began more than one physics step late (then caught up).
    late_steps: int = 0
    #: Seconds of wall time the physics gave up on, falling too far behind to catch up (the
    #: machine could not keep real time).
    lost_time_s: float = 0.0
    joint_states_published: int = 0
    garbage_published: int = 0


class SimRobotNode:
    """`config`'s robot as a ROS 2 node; `run` steps it in real time on its own thread."""

    def __init__(self, config: SimRobotConfig, topics: Topics = DEFAULT_TOPICS,
                 mcap: McapLog | None = None, name: str = "mbrl_sim_robot") -> None:
        self.config = config
        self.topics = topics
        self.mcap = mcap
        env = envs.make(config.env_id, max_episode_steps=10**9)
        interface = env.joint_interface
        if interface is None:
            raise ValueError(f"{config.env_id} has no joint interface to publish")
        self.env = env
        self.interface = interface
        self._gear = np.asarray(interface.effort_per_action, dtype=np.float64)
        env.set_physics_params(**config.physics)
        env.reset(seed=config.seed)
        self._rng = np.random.default_rng(config.seed)
        self.summary = RobotSummary(config.env_id, config.seed,
                                    max_abs_effort=[0.0] * len(interface.command_joints))
        self._pending: deque[tuple[float, np.ndarray]] = deque()
        self._lock = threading.Lock()
        self._first_command = threading.Event()
        self._action = np.clip(np.zeros(env.task.act_dim), env.task.action_low,
                               env.task.action_high)
        self._last_message: JointState | None = None
        self._delayed: deque[tuple[float, JointState]] = deque()
        self.node = Node(name)
        self._publisher = self.node.create_publisher(JointState, topics.joint_states, QOS)
        self.node.create_subscription(Float64MultiArray, topics.commands, self._on_command, QOS)

    # ----------------------------------------------------------------- commands
    def _on_command(self, message: Float64MultiArray) -> None:
        now = time.time()
        self._log(self.topics.commands, message, now)
        values = np.asarray(message.data, dtype=np.float64)
        summary = self.summary
        with self._lock:
            summary.commands_received += 1
            if values.shape != self._gear.shape:
                summary.commands_wrong_length += 1
                return
            if not np.isfinite(values).all():
                summary.commands_not_finite += 1
                return
            summary.max_abs_effort = np.maximum(summary.max_abs_effort, np.abs(values)).tolist()
            self._pending.append((now + self.config.latency_ms / 1000.0, values))
        self._first_command.set()

    def _current_action(self, now: float) -> np.ndarray:
        with self._lock:
            while self._pending and self._pending[0][0] <= now:
                _, effort = self._pending.popleft()
                action = effort / self._gear
                low, high = self.env.task.action_low, self.env.task.action_high
                if (action < low - 1e-9).any() or (action > high + 1e-9).any():
                    self.summary.commands_out_of_bounds += 1
                self._action = np.clip(action, low, high)
            return self._action

    # ----------------------------------------------------------------- the loop
    def run(self, stop: Stop) -> RobotSummary:
        """Step in real time until the duration has passed or `stop` is set."""
        physics_step = getattr(self.env, "physics_step", None)
        substeps = int(getattr(self.env, "frame_skip", 1)) if physics_step else 1
        dt = self.env.control_timestep / substeps
        steps_wanted = (math.inf if self.config.duration_s is None
                        else round(self.config.duration_s / self.env.control_timestep))
        publish_every = 1
        if self.config.publish_rate_hz is not None:
            ratio = 1.0 / (self.config.publish_rate_hz * dt)
            if ratio < 1 - 1e-9 or abs(ratio - round(ratio)) > 1e-6:
                raise ValueError(f"publish_rate_hz {self.config.publish_rate_hz:g} does not "
                                 f"divide the physics rate {1 / dt:g} Hz")
            publish_every = round(ratio)
        waiting = self.config.start_on_first_command
        ticks = 0
        substep = 0
        obs = self.env.observe()
        start_wall, start_mono = time.time(), time.monotonic()
        next_time = start_mono
        while not stop.event.is_set() and self.summary.steps < steps_wanted:
            # As ros2_control's loop: read (publish the state of this instant), update, write
            # (apply the command for the next physics step). The instant is the schedule's,
            # so stamps stay true while a late step is being caught up.
            instant = start_wall + (next_time - start_mono)
            if ticks % publish_every == 0:
                self._publish_state((self.summary.steps * substeps + substep) * dt, instant)
            ticks += 1
            if waiting and self._first_command.is_set():
                waiting = False
            if not waiting:
                action = self._current_action(instant)
                if physics_step is None:
                    _, reward, _, _, _ = self.env.step(action)
                    substep = substeps
                else:
                    physics_step(action)
                    substep += 1
                if substep == substeps:
                    if physics_step is not None:
                        next_obs = self.env.observe()
                        reward = float(self.env.task.reward(
                            torch.from_numpy(obs), torch.from_numpy(action),
                            torch.from_numpy(next_obs)))
                        obs = next_obs
                    substep = 0
                    self.summary.steps += 1
                    self.summary.episode_return += reward
                    self._log_json(ROBOT_TOPIC, {"step": self.summary.steps,
                                                 "action": action.tolist(), "reward": reward},
                                   instant)
            next_time += dt
            delay = next_time - time.monotonic()
            if delay > 0:
                stop.event.wait(delay)
            elif -delay > dt:
                # Behind: the next steps run at once, so simulated time keeps up with the
                # wall clock the controller plans on; far behind (the machine cannot keep
                # real time), the lost time is given up and counted.
                self.summary.late_steps += 1
                if -delay > _MAX_CATCH_UP_S:
                    self.summary.lost_time_s += -delay
                    next_time = time.monotonic()
        self.summary.duration_s = self.summary.steps * self.env.control_timestep
        return self.summary

    def _publish_state(self, t_sim: float, now: float) -> None:
        """Publish the joint state of instant `now` (wall clock), `t_sim` into the episode."""
        fault = next((f for f in self.config.faults if f.active(t_sim)), None)
        self._flush_delayed(now)
        if fault is not None and fault.kind == "drop":
            return
        if fault is not None and fault.kind == "freeze" and self._last_message is not None:
            self._send(self._last_message, now)
            return
        if fault is not None and fault.kind == "garbage":
            self._send(self._garbage(now), now)
            self.summary.garbage_published += 1
            return
        x = joint_state(self.env)
        if self.config.noise_std > 0:
            x = x + self.config.noise_std * self._rng.standard_normal(x.shape)
        n = len(self.interface.state_joints)
        message = joint_state_message(self.interface.state_joints, x[:n], x[n:], now)
        if fault is not None and fault.kind == "delay":
            self._delayed.append((now + fault.delay_ms / 1000.0, message))
            self._last_message = message
            return
        self._send(message, now)
        self._last_message = message

    def _flush_delayed(self, now: float) -> None:
        while self._delayed and self._delayed[0][0] <= now:
            self._send(self._delayed.popleft()[1], now)

    def _send(self, message: JointState, now: float) -> None:
        sent = time.time()  # when it really left (before the call: its time is the transport's)
        self._publisher.publish(message)
        self.summary.joint_states_published += 1
        self._log(self.topics.joint_states, message, sent)

    def _garbage(self, now: float) -> JointState:
        """The next malformed joint-state message (see the module docstring)."""
        names = list(self.interface.state_joints)
        n = len(names)
        x = joint_state(self.env)
        position, velocity, stamp = list(x[:n]), list(x[n:]), now
        variant = self.summary.garbage_published % 7
        if variant == 0:
            position[0] = math.nan
        elif variant == 1:
            names = [*names, "no_such_joint"]
            position, velocity = [*position, 0.0], [*velocity, 0.0]
        elif variant == 2:
            names, position, velocity = names[1:], position[1:], velocity[1:]
        elif variant == 3:
            velocity = velocity[:-1]
        elif variant == 4:
            velocity[-1] = math.inf
        elif variant == 5:
            stamp = now - 10.0
        else:
            stamp = now + 10.0
        return joint_state_message(names, position, velocity, stamp)

    # ----------------------------------------------------------------- logs
    def _log(self, topic: str, message: Any, now: float) -> None:
        if self.mcap is not None:
            self.mcap.write(topic, message, int(now * 1e9))

    def _log_json(self, topic: str, record: dict[str, Any], now: float) -> None:
        if self.mcap is not None:
            self.mcap.write_json(topic, record, int(now * 1e9))


def run_sim_robot(config: SimRobotConfig, topics: Topics, mcap: McapLog | None,
                  stop: Stop) -> RobotSummary:
    """Run the robot (physics on this thread, commands on an executor thread) until its
    duration has passed or `stop` is set. rclpy must be initialised."""
    robot = SimRobotNode(config, topics, mcap)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    executor = SingleThreadedExecutor()
    executor.add_node(robot.node)
    listening = threading.Event()
    listening.set()
    listener = spin_in_thread(executor, listening, "sim-robot-commands")
    try:
        return robot.run(stop)
    finally:
        listening.clear()
        listener.join()
        executor.shutdown()
        robot.node.destroy_node()
        robot.env.close()
