"""A PETS run killed with SIGKILL before any file-system operation of its run directory resumes
to exactly the results of a run never stopped: the same metrics, buffer and weights, and no
temporary file or unfinished checkpoint left behind.

`kill_harness` makes the reference run, lists its operations (about 110 for three episodes:
config, then per episode each checkpoint file's creation, fsync and rename, the commit rename,
the published links, the plot, the removal of the previous checkpoint), and kills a fresh run
just before each one in turn.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.mbrl.algorithms.test_pets import TINY

REPOSITORY = Path(__file__).resolve().parents[2]
#: Operations before `config.json` is in place: a run killed there has nothing to resume.
BEFORE_CONFIG = 4
SAME = ("rows", "buffer", "model", "leftovers", "checkpoints")


def kill_everywhere(root: Path, kill_at: object) -> dict[str, Any]:
    spec = {"config": dataclasses.asdict(TINY), "root": str(root), "kill_at": kill_at}
    (root / "spec.json").write_text(json.dumps(spec))
    subprocess.run(
        [sys.executable, "-m", "tests.reliability.kill_harness", str(root / "spec.json"),
         str(root / "result.json")],
        cwd=REPOSITORY, check=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
    )
    result: dict[str, Any] = json.loads((root / "result.json").read_text())
    return result


@pytest.mark.parametrize("half", [0, 1])
def test_a_run_killed_before_any_file_operation_resumes_exactly(tmp_path: Path,
                                                                half: int) -> None:
    """Half of the operations each (alternate ones), so that two workers share the work."""
    result = kill_everywhere(tmp_path, kill_at={"start": 1 + half, "step": 2})
    assert len(result["operations"]) > 100, result["operations"]
    reference = result["reference"]
    assert reference["leftovers"] == [] and reference["checkpoints"] == ["episode-0002"]
    for case in result["cases"]:
        where = f"killed before operation {case['index']} {case['operation']}"
        assert case["killed_by_sigkill"], where
        assert case["resume_status"] == 0, where
        resumed = case["resumed"]
        if case["index"] <= BEFORE_CONFIG:
            assert case["operation"][1] in ("", "/config.json") or ".config.json." in case[
                "operation"][1], where
            assert resumed["error"].startswith("RunDirError: "), where
            assert "config.json is missing" in resumed["error"] or "no such run directory" in \
                resumed["error"], where
            continue
        assert "error" not in resumed, f"{where}: {resumed.get('error')}"
        for key in SAME:
            assert resumed[key] == reference[key], f"{where}: {key} differs"
