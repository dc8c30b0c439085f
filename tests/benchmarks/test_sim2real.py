"""The transfer benchmark runs every job end to end (`--quick`: short episodes, not a
measurement), writes its JSON and plot, and a rerun takes every result from the work folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_quick_transfer_benchmark_runs_every_job_and_resumes(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "benchmarks.sim2real", "--quick", "--seeds", "0",
               "--workers", "2", "--work", str(tmp_path / "work"), "--out", str(tmp_path)]
    subprocess.run(command, cwd=REPOSITORY, check=True, capture_output=True)
    result = json.loads((tmp_path / "sim2real.json").read_text())
    assert set(result["table"]) == {"nominal", "mass x2", "mass x0.5", "gain x0.5",
                                    "damping x3", "delay 2 steps", "noise 0.05", "pybullet"}
    assert result["targets"]["progressive_source_return_unchanged"]["met"] is True
    assert {row["method"] for row in result["pybullet_comparison"]} == {
        "progressive", "fine-tune", "scratch"}
    assert (tmp_path / "sim2real.png").stat().st_size > 10_000
    again = subprocess.run(command, cwd=REPOSITORY, check=True, capture_output=True, text=True)
    assert " min] " not in again.stdout  # no job ran again
    assert json.loads((tmp_path / "sim2real.json").read_text())["table"] == result["table"]
