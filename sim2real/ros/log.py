"""MCAP logs of a deployment: every message in ROS 2's own encoding (CDR, with `ros2msg`
schemas), as `ros2 bag record` writes them, so Foxglove and `ros2 bag` read them.

`McapLog` takes messages from a node's callbacks (any thread) and writes small chunks, so a
process that is killed loses at most the last chunk, and `read_log` reads such a truncated
file up to where it ends. The bridge's own records (the timing of each control period, its
safety events) are `std_msgs/String` messages holding one JSON object each, on the
`/mbrl/...` topics, so a generic viewer shows them too.
"""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mcap.exceptions import McapError
from mcap.reader import NonSeekingReader
from mcap.writer import CompressionType, Writer
from mcap_ros2.decoder import DecoderFactory
from rclpy.serialization import serialize_message
from std_msgs.msg import String

from sim2real.ros.messages import message_definition, type_name

#: The controller's record of each control period (JSON, see `ControllerNode`).
CYCLE_TOPIC = "/mbrl/control_cycle"
#: Safety events, one JSON object each (`sim2real.safety.SafetyEvent`).
EVENT_TOPIC = "/mbrl/safety_events"
#: The simulated robot's record of what it applied and its reward (JSON, see `SimRobotNode`).
ROBOT_TOPIC = "/mbrl/robot_step"


class McapLog:
    """An MCAP file being written; `write` is thread-safe. Use as a context manager."""

    def __init__(self, path: Path, chunk_bytes: int = 32 * 1024) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._stream: IO[bytes] = open(path, "wb")  # noqa: SIM115  (closed by `close`)
        self._writer = Writer(self._stream, chunk_size=chunk_bytes,
                              compression=CompressionType.NONE)
        self._writer.start(profile="ros2", library="mbrl sim2real")
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, int] = {}
        self._sequence = 0
        self._lock = threading.Lock()
        self._closed = False

    def write(self, topic: str, message: Any, time_ns: int) -> None:
        """Record `message` (a ROS message) on `topic`, logged at `time_ns` (the node clock)."""
        data = serialize_message(message)
        with self._lock:
            if self._closed:
                return
            channel = self._channels.get(topic)
            if channel is None:
                channel = self._channel(topic, type(message))
            self._sequence += 1
            self._writer.add_message(channel, log_time=time_ns, data=data,
                                     publish_time=time_ns, sequence=self._sequence)

    def write_json(self, topic: str, record: dict[str, Any], time_ns: int) -> None:
        """Record one JSON object as a `std_msgs/String` on `topic`."""
        self.write(topic, String(data=json.dumps(record)), time_ns)

    def _channel(self, topic: str, message_type: Any) -> int:
        name = type_name(message_type)
        schema = self._schemas.get(name)
        if schema is None:
            schema = self._writer.register_schema(
                name, "ros2msg", message_definition(message_type).encode())
            self._schemas[name] = schema
        self._channels[topic] = self._writer.register_channel(topic, "cdr", schema)
        return self._channels[topic]

    def close(self) -> None:
        """Write the summary and close the file."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._writer.finish()
            self._stream.close()

    def __enter__(self) -> McapLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class LogRecord:
    """One message of a log."""

    topic: str
    #: When it was logged, seconds (the node clock).
    time_s: float
    #: The decoded message (attributes as the ROS message's fields).
    message: Any

    def json(self) -> dict[str, Any]:
        """The JSON object of one of the bridge's own `String` records."""
        record: dict[str, Any] = json.loads(self.message.data)
        return record


def read_log(path: Path, topics: Iterable[str] | None = None) -> list[LogRecord]:
    """The messages of an MCAP log in file order; a file cut short (its writer killed) is
    read up to its last whole chunk."""
    wanted = None if topics is None else set(topics)
    records = []
    with open(path, "rb") as stream:
        reader = NonSeekingReader(stream, decoder_factories=[DecoderFactory()])
        try:
            # In file order: sorting by log time would read the whole file first, and a file
            # cut short by a kill ends before any of it is returned.
            for _, channel, message, decoded in reader.iter_decoded_messages(
                    log_time_order=False):
                if wanted is None or channel.topic in wanted:
                    records.append(LogRecord(channel.topic, message.log_time * 1e-9, decoded))
        except (McapError, EOFError, ValueError, struct.error) as error:
            if not records:
                raise ValueError(f"{path}: not a readable MCAP log ({error})") from error
    return records
