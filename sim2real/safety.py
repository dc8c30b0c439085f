"""What stands between a controller and a robot's actuators: the command gate.

ros2_control's forward command controllers hold the last command forever and drop a message of
the wrong length silently, so the deployment node brings its own safety, here, independent of
ROS (the node feeds it messages and publishes what it returns):

    on each joint-state message:
        reject it (with the reason, logged as an event) if a joint is missing, unknown or
        repeated, the lengths differ, a value is NaN or infinite, or its stamp is not after
        the last accepted one; else it becomes the latest state
    on each control period, at time `now`:
        if the e-stop is latched:                      the safe command
        elif no state, or the latest is older than `stale_periods` periods: the safe command
        else:                                          the controller's command, or the safe
                                                       command if it is not finite
        clamped into the robot's bounds, always

The safe command is zero effort clamped into the bounds, or a configured hold. Every change of
regime (a stale state, fresh state again, an e-stop, a rejected message, a rejected command) is
a `SafetyEvent`, so a log can say why each command was what it was. Times are seconds on one
clock (the node's ROS clock); the gate never reads a clock itself, so tests drive it exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from controllers.validation import check_types, require

Array = NDArray[np.float64]


@dataclass(frozen=True)
class SafetyConfig:
    """Settings of `CommandGate`."""

    #: The control period, seconds (1 / rate).
    period_s: float = 0.02
    #: State older than this many periods (or none yet) gives the safe command.
    stale_periods: float = 2.0
    #: The command sent when it is not safe to act, one value a joint; None: zero effort
    #: (clamped into the bounds).
    safe_command: tuple[float, ...] | None = None
    #: How far a joint state's stamp may lie ahead of its arrival, seconds (clock skew): one
    #: further ahead is refused, or it would lock out every later message as out of order.
    max_stamp_lead_s: float = 0.01

    def __post_init__(self) -> None:
        check_types(self)
        for name in ("period_s", "stale_periods", "max_stamp_lead_s"):
            require(self, name, getattr(self, name) > 0.0, "must be > 0")
        require(self, "safe_command", self.safe_command is None
                or all(math.isfinite(v) for v in self.safe_command), "must be finite or null")


@dataclass(frozen=True)
class JointReading:
    """One accepted joint-state message, in the gate's order of state joints."""

    #: Positions `[n]`.
    positions: Array
    #: Velocities `[n]`.
    velocities: Array
    #: The message's stamp, seconds.
    stamp_s: float

    @property
    def joint_state(self) -> Array:
        """`[positions, velocities]` `[2n]`: what `RobotEnv.joint_observation` takes."""
        return np.concatenate([self.positions, self.velocities])


@dataclass(frozen=True)
class SafetyEvent:
    """A change of regime, or a rejected input."""

    #: When, seconds.
    time_s: float
    #: What: "rejected_state", "stale", "fresh", "estop", "estop_reset", "rejected_command".
    kind: str
    #: Why, in words.
    reason: str


@dataclass(frozen=True)
class GatedCommand:
    """What the gate sends to the actuators for one period."""

    #: The command `[n]`, finite and inside the bounds.
    values: Array
    #: Whether it is the safe command rather than the controller's.
    safe: bool
    #: Why the safe command ("" when it is the controller's).
    reason: str


@dataclass
class CommandGate:
    """The watchdog, bounds, e-stop and input checks of one robot (see the module docstring).

    Args:
        state_joints: every joint of the robot, in the order of the joint state the
            controller's observation map takes (a cart-pole: the slider, then the pole's
            passive hinge).
        command_joints: the actuated joints, in the order of commands (`[n]`).
        command_low, command_high: the actuators' bounds `[n]`, finite.
        config: see `SafetyConfig`.
    """

    state_joints: Sequence[str]
    command_joints: Sequence[str]
    command_low: Array
    command_high: Array
    config: SafetyConfig = field(default_factory=SafetyConfig)
    #: Every event so far, in order.
    events: list[SafetyEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        state, names = list(self.state_joints), list(self.command_joints)
        for what, given in (("state_joints", state), ("command_joints", names)):
            if not given or len(set(given)) != len(given):
                raise ValueError(f"{what} must be distinct and not empty, got {given}")
        if not set(names) <= set(state):
            raise ValueError(f"command_joints {names} must be among state_joints {state}")
        low = np.asarray(self.command_low, dtype=np.float64)
        high = np.asarray(self.command_high, dtype=np.float64)
        if low.shape != (len(names),) or high.shape != low.shape:  # one bound a command
            raise ValueError(f"command bounds must be [{len(names)}] each, got {low.shape} and "
                             f"{high.shape}")
        if not (np.isfinite(low).all() and np.isfinite(high).all() and (low <= high).all()):
            raise ValueError(f"command bounds must be finite with low <= high, got {low} and "
                             f"{high}")
        safe = (np.zeros(len(names)) if self.config.safe_command is None
                else np.asarray(self.config.safe_command, dtype=np.float64))
        if safe.shape != low.shape:
            raise ValueError(f"safe_command must have {len(names)} values, got {safe.shape[0]}")
        self.state_joints, self.command_joints = state, names
        self.command_low, self.command_high = low, high
        self._safe = np.clip(safe, low, high)
        self._latest: JointReading | None = None
        self._estop = False
        self._stale = True  # no state yet

    # ----------------------------------------------------------------- inputs
    def accept_state(
        self, names: Sequence[str], positions: Sequence[float] | Array,
        velocities: Sequence[float] | Array, stamp_s: float, received_s: float | None = None,
    ) -> JointReading | None:
        """Take a joint-state message; the reading, or None (and an event) if it is refused.

        Joints may come in any order; every state joint must be there once, with a finite
        position and velocity, and no other. With `received_s` (when it arrived, on the
        gate's clock), a stamp more than `max_stamp_lead_s` ahead of it is refused.
        """
        reason = self._problem(names, positions, velocities, stamp_s)
        if reason is None and received_s is not None and (
                stamp_s > received_s + self.config.max_stamp_lead_s):
            reason = (f"stamp {stamp_s:.6f} s is {stamp_s - received_s:.6f} s ahead of its "
                      f"arrival (limit {self.config.max_stamp_lead_s} s)")
        if reason is not None:
            self.events.append(SafetyEvent(stamp_s if received_s is None else received_s,
                                           "rejected_state", reason))
            return None
        order = [list(names).index(name) for name in self.state_joints]
        reading = JointReading(np.asarray(positions, dtype=np.float64)[order],
                               np.asarray(velocities, dtype=np.float64)[order], float(stamp_s))
        self._latest = reading
        return reading

    def engage_estop(self, now_s: float) -> None:
        """Latch the safe command until `reset_estop`."""
        if not self._estop:
            self._estop = True
            self.events.append(SafetyEvent(now_s, "estop", "e-stop engaged"))

    def reset_estop(self, now_s: float) -> None:
        """Release a latched e-stop; control resumes with fresh state."""
        if self._estop:
            self._estop = False
            self.events.append(SafetyEvent(now_s, "estop_reset", "e-stop reset"))

    # ----------------------------------------------------------------- each period
    def fresh_state(self, now_s: float) -> JointReading | None:
        """The latest reading if it is fresh at `now_s` and the e-stop is not latched, else
        None: the controller should not be asked, and `command` sends the safe command."""
        stale_after = self.config.stale_periods * self.config.period_s
        latest = self._latest
        stale = latest is None or now_s - latest.stamp_s > stale_after
        if stale != self._stale:
            self._stale = stale
            if stale:
                age = "no joint state yet" if latest is None else (
                    f"joint state {now_s - latest.stamp_s:.3f} s old (limit {stale_after:.3f} s)")
                self.events.append(SafetyEvent(now_s, "stale", age))
            else:
                self.events.append(SafetyEvent(now_s, "fresh", "fresh joint state again"))
        return None if stale or self._estop else latest

    def command(self, now_s: float, proposed: Sequence[float] | Array | None) -> GatedCommand:
        """What to send at `now_s`: `proposed` (the controller's command for the fresh state)
        clamped into the bounds, or the safe command with the reason."""
        if self._estop:
            return GatedCommand(self._safe.copy(), True, "e-stop latched")
        if self.fresh_state(now_s) is None:
            return GatedCommand(self._safe.copy(), True, "no fresh joint state")
        if proposed is None:
            return GatedCommand(self._safe.copy(), True, "no command from the controller")
        values = np.asarray(proposed, dtype=np.float64).reshape(-1)
        if values.shape != self._safe.shape or not np.isfinite(values).all():
            reason = (f"controller command {values.tolist()} is not {self._safe.shape[0]} "
                      "finite values")
            self.events.append(SafetyEvent(now_s, "rejected_command", reason))
            return GatedCommand(self._safe.copy(), True, reason)
        return GatedCommand(np.clip(values, self.command_low, self.command_high), False, "")

    @property
    def estop_engaged(self) -> bool:
        return self._estop

    def _problem(
        self, names: Sequence[str], positions: Sequence[float] | Array,
        velocities: Sequence[float] | Array, stamp_s: float,
    ) -> str | None:
        """Why a joint-state message is refused, or None."""
        names = list(names)
        if not (len(names) == len(positions) == len(velocities)):
            return (f"{len(names)} names, {len(positions)} positions and {len(velocities)} "
                    "velocities")
        missing = [name for name in self.state_joints if name not in names]
        if missing:
            return f"missing joints {missing} (got {names})"
        unknown = [name for name in names if name not in self.state_joints]
        if unknown:
            return f"unknown joints {unknown} (this robot has {self.state_joints})"
        if len(set(names)) != len(names):
            return f"repeated joint names in {names}"
        if not math.isfinite(stamp_s):
            return f"stamp {stamp_s} is not finite"
        order = [names.index(name) for name in self.state_joints]
        values = np.asarray([[positions[i], velocities[i]] for i in order], dtype=np.float64)
        if not np.isfinite(values).all():
            return f"NaN or infinite position or velocity: {values.tolist()}"
        if self._latest is not None and stamp_s <= self._latest.stamp_s:
            return (f"stamp {stamp_s:.6f} s is not after the last accepted one "
                    f"({self._latest.stamp_s:.6f} s)")
        return None
