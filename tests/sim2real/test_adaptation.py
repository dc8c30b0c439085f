"""`mbrl adapt`: a trained run grows a progressive column on a shifted robot; the source run's
model is untouched, and a target the model cannot drive is refused before anything is written."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from mbrl.algorithms.pets import train_pets
from mbrl.cli import main
from mbrl.learning.data import ReplayBuffer
from sim2real.adaptation import AdaptConfig, adapt
from sim2real.progressive import load_progressive
from tests.mbrl.algorithms.test_pets import TINY, KilledError, killed_after


def test_adapt_writes_a_progressive_model_and_leaves_the_source_alone(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "source"
    train_pets(TINY, source)
    before = (source / "model.pt").read_bytes()
    assert main(["adapt", str(source), "--physics", "mass_scale=2,actuator_gain_scale=0.5",
                 "--episodes", "2", "--adapter-size", "4", "--out", str(tmp_path / "runs")]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    with (run / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["planned_through"] for row in rows] == ["0.0", "1.0"]
    assert all(float(row["holdout_mse"]) > 0 for row in rows)
    model = load_progressive(run / "model.pt")
    assert model.adapter_size == 4
    assert (source / "model.pt").read_bytes() == before
    assert (run / "learning_curve.png").stat().st_size > 1000
    assert len(ReplayBuffer.load(run / "replay_buffer.npz")) == 2 * TINY.episode_steps
    assert "episode   1" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "message"), [
    (["--env", "dmc/cartpole-swingup"], "--env dmc/cartpole-swingup: observations [5]"),
    (["--physics", "mass_scale=0"], "--physics: mujoco/reacher-2link: physics parameter"),
    (["--physics", "mass"], "--physics takes NAME=SCALE"),
])
def test_a_target_the_model_cannot_drive_is_refused_first(
        argv: list[str], message: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "source"
    train_pets(TINY, source)
    with pytest.raises(SystemExit) as exit_info:
        main(["adapt", str(source), *argv, "--out", str(tmp_path / "runs")])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_killed_adaptation_resumes_to_the_results_of_one_never_stopped(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "source"
    train_pets(TINY, source)
    config = AdaptConfig(str(source), physics={"mass_scale": 2.0}, episodes=3, adapter_size=4)
    whole = adapt(config, tmp_path / "whole")
    killed = tmp_path / "killed"
    with pytest.raises(KilledError):
        adapt(config, killed, progress=killed_after(2))  # type: ignore[arg-type]
    (killed / ".model.pt.x1y2.tmp").write_bytes(b"")  # as a kill inside a publish leaves
    assert main(["adapt", "--resume", str(killed)]) == 0
    assert "episode   2" in capsys.readouterr().out
    resumed = list(csv.DictReader((killed / "metrics.csv").open()))
    assert [float(row["return"]) for row in resumed] == [row["return"] for row in whole]
    assert [float(row["holdout_mse"]) for row in resumed] == [row["holdout_mse"] for row in whole]
    assert (killed / "model.pt").read_bytes() == (tmp_path / "whole" / "model.pt").read_bytes()
    assert not list(killed.glob(".*.tmp"))
    longer = adapt(dataclasses.replace(config, episodes=4), killed, resume=True)
    assert len(longer) == 4 and longer[:3] == whole


@pytest.mark.parametrize(("argv", "message"), [
    (["--resume", "X", "--seed", "2"], "--resume continues with the run's own settings; drop "
                                       "--seed"),
    (["--resume", "nowhere"], "--resume nowhere: no config.json of an `mbrl adapt` run"),
    ([], "give the source RUN_DIR, or --resume an adaptation run"),
])
def test_resume_takes_the_runs_settings(argv: list[str], message: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["adapt", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_ctrl_c_says_what_is_saved_and_how_to_resume(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import sim2real.adaptation

    source = tmp_path / "source"
    train_pets(TINY, source)
    calls = []
    real_rollout = sim2real.adaptation.rollout

    def interrupted_second_episode(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_rollout(*args, **kwargs)

    monkeypatch.setattr(sim2real.adaptation, "rollout", interrupted_second_episode)
    assert main(["adapt", str(source), "--episodes", "3", "--out", str(tmp_path / "runs")]) == 130
    (run,) = (tmp_path / "runs").iterdir()
    assert (f"interrupted with 1 of 3 episodes saved; continue with: mbrl adapt --resume {run}"
            in capsys.readouterr().err)
