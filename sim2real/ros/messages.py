"""The ROS 2 messages the bridge speaks, and their definitions for MCAP schemas.

Topics (ros2_control's conventions; every name configurable on the command line):

| topic | type | from → to |
|---|---|---|
| `/joint_states` | `sensor_msgs/msg/JointState` | robot → controller (joint_state_broadcaster) |
| `/forward_effort_controller/commands` | `std_msgs/msg/Float64MultiArray` | controller → robot |
| `/estop` | `std_msgs/msg/Bool` | operator → controller: `true` latches the safe command |
| `/estop_reset` | `std_msgs/msg/Bool` | operator → controller: `true` releases a latched e-stop |

Needs rclpy (the `[ros]` extra); import it only where ROS runs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray

from sim2real.safety import Array

#: IDL primitive names (rosidl's `get_fields_and_field_types`) and their `.msg` spelling.
_PRIMITIVES = {"boolean": "bool", "octet": "byte", "double": "float64", "float": "float32",
               "long double": "float128"}


def type_name(message_type: Any) -> str:
    """`package/msg/Type` of a message class (MCAP's schema name, as rosbag2 writes it)."""
    package = message_type.__module__.split(".")[0]
    return f"{package}/msg/{message_type.__name__}"


def message_definition(message_type: Any) -> str:
    """The `ros2msg` definition of a message class with every type it uses appended, the
    text rosbag2 stores as an MCAP schema (Foxglove and `mcap_ros2` decode with it)."""
    sections, seen = [], set()
    pending = [message_type]
    while pending:
        current = pending.pop(0)
        name = type_name(current)
        if name in seen:
            continue
        seen.add(name)
        lines = []
        for field, idl in current.get_fields_and_field_types().items():
            spelled, nested = _msg_type(idl)
            lines.append(f"{spelled} {field}")
            pending.extend(_message_class(n) for n in nested)
        text = "\n".join(lines)
        header = f"MSG: {name.replace('/msg/', '/')}\n"
        sections.append(text if current is message_type else header + text)
    return ("\n" + "=" * 80 + "\n").join(sections) + "\n"


def _msg_type(idl: str) -> tuple[str, list[str]]:
    """The `.msg` spelling of an IDL field type and the message types it names."""
    sequence = re.fullmatch(r"sequence<(.+?)(?:, (\d+))?>", idl)
    if sequence:
        inner, nested = _msg_type(sequence.group(1))
        bound = sequence.group(2)
        return (f"{inner}[<={bound}]" if bound else f"{inner}[]"), nested
    array = re.fullmatch(r"(.+)\[(\d+)\]", idl)
    if array:
        inner, nested = _msg_type(array.group(1))
        return f"{inner}[{array.group(2)}]", nested
    bounded_string = re.fullmatch(r"(w?string)<(\d+)>", idl)
    if bounded_string:
        return f"{bounded_string.group(1)}<={bounded_string.group(2)}", []
    if "/" in idl:
        return idl, [idl]
    return _PRIMITIVES.get(idl, idl), []


def _message_class(name: str) -> Any:
    package, message = name.split("/")
    module = __import__(f"{package}.msg", fromlist=[message])
    return getattr(module, message)


def stamp_seconds(stamp: Time) -> float:
    """A `builtin_interfaces/Time` in seconds."""
    return float(stamp.sec) + 1e-9 * float(stamp.nanosec)


def to_stamp(seconds: float) -> Time:
    """Seconds as a `builtin_interfaces/Time`."""
    nanoseconds = round(seconds * 1e9)
    return Time(sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000)


def joint_state_message(
    names: Sequence[str], positions: Sequence[float] | Array,
    velocities: Sequence[float] | Array, stamp_s: float,
) -> JointState:
    """A `JointState` as a `joint_state_broadcaster` publishes it (no efforts)."""
    message = JointState()
    message.header.stamp = to_stamp(stamp_s)
    message.name = list(names)
    message.position = [float(v) for v in positions]
    message.velocity = [float(v) for v in velocities]
    return message


def command_message(efforts: Array) -> Float64MultiArray:
    """The efforts `[du]` as a forward command controller takes them."""
    return Float64MultiArray(data=[float(v) for v in np.asarray(efforts).ravel()])
