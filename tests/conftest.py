"""Shared test set-up: headless rendering, every test in its own working directory, and torch
on one thread.

MuJoCo writes MUJOCO_LOG.TXT into the working directory, so each test runs in a temporary one.
The suite runs with `-n 2` on two cores, and the tests' tensors are small: more torch threads
than cores made single small operations 10 to 1000 times slower on a busy machine, and the
time-budget tests depend on that.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


@pytest.fixture(autouse=True)
def _run_in_tmp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
