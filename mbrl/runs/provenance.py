"""What every benchmark result records about where and how it was made: the command, the git
revision (with "-dirty" when a tracked file differs), the machine and the package versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

PACKAGES = ("torch", "numpy", "mujoco", "dm_control", "pybullet", "gymnasium")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_revision(outputs: Sequence[Path] = ()) -> str:
    """The short revision of the checkout, with "-dirty" when a tracked file differs; files
    under `outputs` (a run's own results, written before this is read) do not count."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
            cwd=Path(__file__).parent,
        )
        top = Path(subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
            check=True, cwd=Path(__file__).parent,
        ).stdout.strip())
        # An output folder outside the checkout cannot make it dirty (and git refuses a
        # pathspec outside it).
        excluded = [f":(exclude){Path(path).resolve()}" for path in outputs
                    if Path(path).resolve().is_relative_to(top)]
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ":/", *excluded],
            capture_output=True, text=True, check=True, cwd=Path(__file__).parent,
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def provenance(outputs: Sequence[Path] = ()) -> dict[str, Any]:
    """The command, revision (`outputs` as for `git_revision`), machine and package versions
    of this run."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "command": " ".join([Path(sys.executable).name, *sys.orig_argv[1:]]),
        "git_revision": git_revision(outputs),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "packages": versions,
    }
