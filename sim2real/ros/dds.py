"""Where DDS may talk, and which domain: set in the environment before rclpy starts.

Measured on this project's machines with the Kilted wheels (Fast DDS 3.2): with
`ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST` alone a node binds its DDS sockets to 0.0.0.0 and
opens one on the machine's network address; with a Fast DDS profile that allows 127.0.0.1
alone (`LOOPBACK_PROFILE`) *and* `LOCALHOST`, the rmw still adds a socket on the network
address. With the profile and `SYSTEM_DEFAULT` (the middleware's own configuration rules),
every socket is bound to 127.0.0.1 and discovery between two processes takes about 0.3 s. So
`use_loopback_only` writes the profile and sets `SYSTEM_DEFAULT`; `tests/sim2real/ros` checks
the sockets of real nodes.
"""

from __future__ import annotations

import errno
import fcntl
import importlib.util
import os
import random
import tempfile
from pathlib import Path
from typing import IO

from mbrl.errors import UserError

#: What to install when rclpy is missing.
INSTALL_HINT = ('pip install -e ".[ros]" (ROS 2 Kilted as pip wheels: ros-rclpy[fastrtps], '
                "ros-std-msgs, ros-sensor-msgs, mcap, mcap-ros2-support)")

#: A Fast DDS participant profile that uses UDP on 127.0.0.1 and shared memory, nothing else:
#: no multicast, no other interface, discovery through the loopback peer.
LOOPBACK_PROFILE = """\
<?xml version="1.0" encoding="UTF-8" ?>
<dds xmlns="http://www.eprosima.com">
  <profiles>
    <transport_descriptors>
      <transport_descriptor>
        <transport_id>loopback_udp</transport_id>
        <type>UDPv4</type>
        <interfaceWhiteList><address>127.0.0.1</address></interfaceWhiteList>
      </transport_descriptor>
      <transport_descriptor>
        <transport_id>shared_memory</transport_id>
        <type>SHM</type>
      </transport_descriptor>
    </transport_descriptors>
    <participant profile_name="mbrl_loopback_only" is_default_profile="true">
      <rtps>
        <userTransports>
          <transport_id>loopback_udp</transport_id>
          <transport_id>shared_memory</transport_id>
        </userTransports>
        <useBuiltinTransports>false</useBuiltinTransports>
        <builtin>
          <initialPeersList>
            <locator><udpv4><address>127.0.0.1</address></udpv4></locator>
          </initialPeersList>
          <metatrafficUnicastLocatorList>
            <locator><udpv4><address>127.0.0.1</address></udpv4></locator>
          </metatrafficUnicastLocatorList>
        </builtin>
        <defaultUnicastLocatorList>
          <locator><udpv4><address>127.0.0.1</address></udpv4></locator>
        </defaultUnicastLocatorList>
      </rtps>
    </participant>
  </profiles>
</dds>
"""

#: Domain ids that map to valid UDP ports on Linux for any participant count (ROS 2's rule).
DOMAIN_IDS = range(1, 102)


def require_ros() -> None:
    """Raise `UserError` naming what to install if the ROS 2 extra is missing."""
    for module in ("rclpy", "std_msgs", "sensor_msgs", "mcap", "mcap_ros2"):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise UserError(f"the ROS 2 extra is not installed ({module} is missing): "
                            f"{INSTALL_HINT}")


def use_loopback_only(domain_id: int | None = None) -> dict[str, str]:
    """Confine DDS to 127.0.0.1 (see the module docstring) and, if given, set the domain, in
    this process's environment; call before rclpy is initialised. Returns the variables set."""
    settings = loopback_settings(domain_id)
    os.environ.update(settings)
    return settings


def loopback_settings(domain_id: int | None = None) -> dict[str, str]:
    """The environment `use_loopback_only` sets (the profile file is written here)."""
    profile = Path(tempfile.gettempdir()) / "mbrl-fastdds-loopback.xml"
    if not profile.exists() or profile.read_text() != LOOPBACK_PROFILE:
        staged = profile.with_suffix(f".{os.getpid()}.tmp")
        staged.write_text(LOOPBACK_PROFILE)
        os.replace(staged, profile)
    settings = {
        "FASTDDS_DEFAULT_PROFILES_FILE": str(profile),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "SYSTEM_DEFAULT",
        "ROS_STATIC_PEERS": "",
        "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp",
    }
    if domain_id is not None:
        if domain_id not in DOMAIN_IDS:
            raise UserError(f"--domain-id: must be in {DOMAIN_IDS.start}..{DOMAIN_IDS.stop - 1}, "
                            f"got {domain_id}")
        settings["ROS_DOMAIN_ID"] = str(domain_id)
    return settings


class DomainClaim:
    """A ROS domain id held by this process alone among those that claim one this way (a
    lock file per id in the temp folder), so parallel test runs never hear each other."""

    def __init__(self, rng: random.Random | None = None) -> None:
        candidates = list(DOMAIN_IDS)
        (rng or random.Random()).shuffle(candidates)
        for domain_id in candidates:
            path = Path(tempfile.gettempdir()) / f"mbrl-ros-domain-{domain_id}.lock"
            lock: IO[str] = open(path, "w")  # noqa: SIM115  (held until `release`)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                lock.close()
                if error.errno in (errno.EAGAIN, errno.EACCES):
                    continue
                raise
            self.domain_id = domain_id
            self._lock = lock
            return
        raise RuntimeError("every ROS domain id is held by another process")

    def release(self) -> None:
        """Give the id back."""
        self._lock.close()
