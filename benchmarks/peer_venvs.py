"""What every peer comparison shares: the peers' own virtual environments, their worker
processes (spoken to in JSON lines, pinned to the benchmark core), and the shared problem file.

`benchmarks.peers` (pytorch_mppi, and the entry point) and `benchmarks.peer_mbrl_lib` both build
on this module, and not on each other's.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
VENVS = HERE.parent / ".bench-venvs"
PROBLEM_FILE = HERE / "peer_problem.py"
#: The worker scripts, each run by a peer's own interpreter.
WORKERS = HERE / "peer_workers"
#: The CPU build of torch: an unpinned torch pulls several GB of CUDA packages.
TORCH = "torch==2.13.0"


def load_problem() -> ModuleType:
    spec = importlib.util.spec_from_file_location("peer_problem", PROBLEM_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def peer_python(name: str, requirements: list[str]) -> Path:
    """The interpreter of the peer's own virtual environment, created and filled on first
    use (again whenever the requirements change)."""
    venv = VENVS / name
    python = venv / "bin" / "python"
    stamp = venv / ".requirements"
    wanted = hashlib.sha256("\n".join(requirements).encode()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print(f"creating {venv} with {' '.join(requirements)}", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *requirements], check=True)
    stamp.write_text(wanted)
    return python


class Worker:
    """A peer's worker process, spoken to in JSON lines."""

    def __init__(self, python: Path, script: Path, config: dict[str, Any]) -> None:
        self.process = subprocess.Popen(
            [str(python), str(script), str(PROBLEM_FILE), json.dumps(config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            preexec_fn=on_the_benchmark_core,
        )

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the peer worker exited with {self.process.wait()}")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=60)


#: Both sides run on this one core, taking turns, so that neither gets a quieter one.
BENCHMARK_CORE = 0


def on_the_benchmark_core() -> None:
    """Pin this process (or a child about to start) to `BENCHMARK_CORE`."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {BENCHMARK_CORE})
