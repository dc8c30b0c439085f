"""The `mbrl` command: help, listing, and a short planning run that writes its run directory."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

import envs
from mbrl.cli import main


def test_help_lists_the_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "envs" in out and "plan" in out
    # Each subcommand starts a line indented by four spaces; wrapped help lines by more.
    listed = {line.split()[0] for line in out.splitlines()
              if line.startswith("    ") and not line.startswith("     ")}
    # Those of sim2real come through the `mbrl.commands` entry point.
    assert listed == {"envs", "planners", "plan", "train", "distill", "eval", "bench", "deploy",
                      "sim-robot", "replay", "adapt"}


def test_envs_lists_every_registered_id(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["envs"]) == 0
    out = capsys.readouterr().out
    assert all(env_id in out for env_id in envs.registry())


def test_unknown_env_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["plan", "--env", "mujoco/cartpole"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown env id 'mujoco/cartpole'" in err and "mujoco/cartpole-swingup" in err


def test_non_positive_settings_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["plan", "--population", "0"])
    assert "must be a positive integer" in capsys.readouterr().err


def test_plan_writes_a_complete_run_directory(tmp_path: Path) -> None:
    code = main(["plan", "--env", "mujoco/cartpole-swingup", "--steps", "6", "--horizon", "5",
                 "--population", "16", "--set", "elites=4", "--iterations", "2",
                 "--out", str(tmp_path)])
    assert code == 0
    (run_dir,) = tmp_path.iterdir()
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.json", "trajectory.csv", "trajectory.png", "summary.json"} <= names
    assert not [n for n in names if n.endswith(".tmp")], "no temporary files may remain"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["env_id"] == "mujoco/cartpole-swingup" and config["planner"] == "cem"
    assert config["planner_settings"] == {"population": 16, "elites": 4, "iterations": 2}
    with (run_dir / "trajectory.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 and {"reward", "return", "plan_ms", "action_0", "obs_4"} <= rows[0].keys()
    assert all(-1.0 <= float(r["action_0"]) <= 1.0 for r in rows)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["return"] == pytest.approx(float(rows[-1]["return"]))
    assert (run_dir / "trajectory.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("command", [["train"], ["plan"], ["eval"], ["bench", "planners"]])
def test_help_states_each_default_once(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    options = " ".join(capsys.readouterr().out.split()).split(" --")
    assert options and all(option.count("(default:") <= 1 for option in options), options
    assert "(default: None)" not in " ".join(options)


def test_top_level_help_imports_no_torch_mujoco_or_matplotlib() -> None:
    code = ("import sys\nfrom mbrl.cli import main\ntry:\n    main(['--help'])\n"
            "except SystemExit:\n    pass\n"
            "print([m for m in ('torch', 'mujoco', 'matplotlib', 'envs') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60)
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout


def test_planners_lists_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["planners"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == ["random-shooting", "cem", "icem", "mppi", "ilqr", "ddp", "mcts"]
