"""PETS across randomised robots (`PETSConfig.randomize`, `mbrl train pets --randomize`):
every episode's draw in metrics.csv, an exact resume, and bad settings refused first."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from mbrl.algorithms.pets import PETSConfig, make_training_env, train_pets
from mbrl.cli import main
from mbrl.config import load as load_config
from tests.mbrl.algorithms.test_pets import (
    TINY,
    KilledError,
    killed_after,
    read_metrics,
    without_timing,
)

RANDOMIZED = dataclasses.replace(
    TINY, env_id="mujoco/cartpole-swingup", action_repeat=2,
    randomize={"mass_scale": {"low": 0.5, "high": 2.0, "distribution": "log-uniform"},
               "damping_scale": {"low": 0.2, "high": 5.0},
               "action_delay_steps": [0, 2], "action_delay_fraction": {"low": 0.0, "high": 0.5},
               "observation_noise_std": {"low": 0.0, "high": 0.02}},
)


def test_each_episode_runs_on_a_drawn_robot_and_metrics_record_the_draw(
        tmp_path: Path) -> None:
    train_pets(RANDOMIZED, tmp_path)
    metrics = read_metrics(tmp_path)
    masses = [float(row["physics.mass_scale"]) for row in metrics]
    assert len(set(masses)) == 3 and all(0.5 <= m <= 2.0 for m in masses)
    assert all(0.2 <= float(row["physics.damping_scale"]) <= 5.0 for row in metrics)
    assert {row["action_delay_steps"] for row in metrics} <= {"0", "1", "2"}
    assert load_config(PETSConfig, tmp_path / "config.json") == RANDOMIZED  # round trip
    env = make_training_env(RANDOMIZED)
    assert env.inner.env_id == "mujoco/cartpole-swingup"  # type: ignore[attr-defined]
    assert type(env.inner).__name__ == "DomainRandomization"  # type: ignore[attr-defined]


def test_a_killed_randomized_run_resumes_exactly(tmp_path: Path) -> None:
    # As `dataclasses.asdict` gives them: a tuple, which config.json stores as a list.
    assert RANDOMIZED.randomize is not None
    config = dataclasses.replace(RANDOMIZED, randomize={**RANDOMIZED.randomize,
                                                        "action_delay_steps": (0, 2)})
    whole = train_pets(config, tmp_path / "whole")
    with pytest.raises(KilledError):
        train_pets(config, tmp_path / "killed", progress=killed_after(2))  # type: ignore[arg-type]
    resumed = train_pets(config, tmp_path / "killed", resume=True)
    assert without_timing(resumed) == without_timing(whole)


def test_bad_randomisation_is_refused_in_one_line_before_a_run_directory(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "dr.json"
    cases = {
        '{"mass_scale": {"low": 3, "high": 2}}': "mass_scale.high: must be >= low",
        '{"gravity_scale": {"low": 1, "high": 2}}': "gravity_scale: unknown RandomizationConfig",
    }
    for text, message in cases.items():
        bad.write_text(text)
        with pytest.raises(SystemExit) as exit_info:
            main(["train", "pets", "--randomize", str(bad), "--out", str(tmp_path / "runs")])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert message in err[-1] and "dr.json" in err[-1], err
    with pytest.raises(SystemExit) as exit_info:  # dm_control steps its own physics
        main(["train", "pets", "--env", "dmc/cartpole-swingup", "--randomize", "peng2018",
              "--out", str(tmp_path / "runs")])
    assert exit_info.value.code == 2
    assert "randomize.control_rate_hz: needs a robot stepped by physics steps" in (
        capsys.readouterr().err)
    assert not (tmp_path / "runs").exists()
    config = json.loads(json.dumps(dataclasses.asdict(RANDOMIZED)))
    assert config["randomize"]["action_delay_steps"] == [0, 2]
