"""A test bed over real ROS 2: the simulated robot and the controller node as separate
`python -m mbrl` processes, in a domain of their own, with DDS on 127.0.0.1 alone.

Skipped where the `[ros]` extra is not installed (the README's test command installs it, so
CI runs these).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("rclpy", reason="the ROS 2 extra is not installed: pip install -e '.[ros]'")

from sim2real.ros.dds import DomainClaim, loopback_settings
from sim2real.ros.log import LogRecord, read_log

REPOSITORY = Path(__file__).resolve().parents[3]


class RosProcesses:
    """Starts robot and controller processes in one ROS domain, and reads what they wrote."""

    def __init__(self, domain_id: int, folder: Path, env: dict[str, str]) -> None:
        self.domain_id = domain_id
        self.folder = folder
        self.env = env
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        out = open(self.folder / f"{name}.log", "wb")  # noqa: SIM115  (the child's)
        process = subprocess.Popen(
            [sys.executable, "-m", "mbrl", *args, "--domain-id", str(self.domain_id),
             "--out", str(self.folder / name)],
            cwd=self.folder, env=self.env, stdout=out, stderr=subprocess.STDOUT,
            # As from a terminal: a suite started in the background by a non-interactive
            # shell ignores SIGINT, and a child inherits that.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self.processes.append(process)
        return process

    def robot(self, *args: str, name: str = "robot") -> subprocess.Popen[bytes]:
        return self.start(name, "sim-robot", "--start-on-first-command", *args)

    def controller(self, *args: str, name: str = "controller") -> subprocess.Popen[bytes]:
        return self.start(name, "deploy", "ros", "--loopback-only", *args)

    def output(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def wait(self, process: subprocess.Popen[bytes], name: str, timeout: float) -> int:
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            raise AssertionError(
                f"{name} did not end in {timeout} s:\n{self.output(name)}") from None

    def interrupt(self, process: subprocess.Popen[bytes], name: str) -> int:
        process.send_signal(signal.SIGINT)
        return self.wait(process, name, 30)

    def run_dir(self, name: str) -> Path:
        (folder,) = (self.folder / name).iterdir()
        return folder

    def summary(self, name: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.run_dir(name) / "summary.json").read_text())
        return data

    def log(self, name: str) -> list[LogRecord]:
        (path,) = self.run_dir(name).glob("*.mcap")
        return read_log(path)

    def wait_for_file(self, path: Path, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)


@pytest.fixture
def ros_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RosProcesses]:
    """A domain id no other test run holds, and DDS confined to the loopback interface, for
    the processes and for this one (which may join as an operator or a listener)."""
    claim = DomainClaim()
    for name, value in loopback_settings(claim.domain_id).items():
        monkeypatch.setenv(name, value)
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY), "MUJOCO_GL": "egl"}
    bed = RosProcesses(claim.domain_id, tmp_path, env)
    try:
        yield bed
    finally:
        bed.close()
        claim.release()
