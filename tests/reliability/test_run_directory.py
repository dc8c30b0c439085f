"""Damaged or mismatched run directories, options given with --resume, and Ctrl-C: each gets an
exact resume or a one-line refusal that names the file, never a silent restart or a mix."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mbrl.algorithms.pets import train_pets
from mbrl.errors import RunDirError
from mbrl.learning.models import EnsembleConfig
from mbrl.learning.training import TrainConfig
from mbrl.runs.rundir import checkpoint_episode
from tests.mbrl.algorithms.test_pets import TINY, KilledError, killed_after, without_timing
from tests.reliability.test_configuration import run_cli

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, object]]:
    """The metrics of the tiny run never stopped."""
    return without_timing(train_pets(TINY, tmp_path_factory.mktemp("whole")))


def stopped_after_two(run_dir: Path) -> Path:
    with pytest.raises(KilledError):
        train_pets(TINY, run_dir, progress=killed_after(2))  # type: ignore[arg-type]
    return run_dir


def metrics(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_published_files_lost_are_put_back_and_the_run_resumes_exactly(
    tmp_path: Path, whole: list[dict[str, object]]
) -> None:
    run_dir = stopped_after_two(tmp_path / "run")
    for name in ("metrics.csv", "model.pt", "replay_buffer.npz"):
        (run_dir / name).unlink()
    assert without_timing(train_pets(TINY, run_dir, resume=True)) == whole
    assert len(metrics(run_dir)) == 3


@pytest.mark.parametrize(
    "name", ["progress.json", "replay_buffer.npz", "model.pt", "manifest.json"]
)
def test_a_checkpoint_file_missing_is_named_and_nothing_is_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    run_dir = stopped_after_two(tmp_path / "run")
    checkpoint = run_dir / "checkpoints" / "episode-0001"
    (checkpoint / name).unlink()
    before = (run_dir / "metrics.csv").read_bytes()
    code, err = run_cli(["train", "pets", "--resume", str(run_dir)], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert str(checkpoint / name) in err and "missing" in err
    assert (run_dir / "metrics.csv").read_bytes() == before, "a refused resume writes nothing"


def test_a_garbled_or_changed_checkpoint_file_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = stopped_after_two(tmp_path / "run")
    progress = run_dir / "checkpoints" / "episode-0001" / "progress.json"
    progress.write_text('{"episodes_done": 2, "buffer_')
    code, err = run_cli(["train", "pets", "--resume", str(run_dir)], capsys)
    assert code == 2 and f"{progress} was changed after it was written" in err, err
    manifest = run_dir / "checkpoints" / "episode-0001" / "manifest.json"
    manifest.write_text("{not json")
    code, err = run_cli(["train", "pets", "--resume", str(run_dir)], capsys)
    assert code == 2 and f"{manifest} is not valid JSON" in err, err


def test_all_checkpoints_gone_with_results_left_is_refused_not_restarted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    run_dir = stopped_after_two(tmp_path / "run")
    shutil.rmtree(run_dir / "checkpoints")
    code, err = run_cli(["train", "pets", "--resume", str(run_dir)], capsys)
    assert code == 2 and "no committed checkpoint" in err and "damaged" in err, err
    assert len(metrics(run_dir)) == 2, "the run's results must not be overwritten"


def test_config_switched_to_another_env_of_the_same_dimensions_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """dmc cart-pole swing-up and balance share their dimensions (5 and 1): resuming one's data
    under the other's config would mix two tasks without a word."""
    config = dataclasses.replace(
        TINY, env_id="dmc/cartpole-swingup", action_repeat=8, episode_steps=6,
    )
    run_dir = tmp_path / "run"
    with pytest.raises(KilledError):
        train_pets(config, run_dir, progress=killed_after(1))  # type: ignore[arg-type]
    stored = json.loads((run_dir / "config.json").read_text())
    stored["env_id"] = "dmc/cartpole-balance"
    (run_dir / "config.json").write_text(json.dumps(stored))
    code, err = run_cli(["train", "pets", "--resume", str(run_dir)], capsys)
    assert code == 2, err
    assert "env_id: 'dmc/cartpole-swingup' there, 'dmc/cartpole-balance' here" in err
    assert "progress.json" in err


def test_options_that_a_resume_would_ignore_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = stopped_after_two(tmp_path / "run")
    for option in (["--horizon", "5"], ["--seed", "4"], ["--env", "dmc/cartpole-swingup"],
                   ["--config", "x.json"], ["--out", "elsewhere"]):
        code, err = run_cli(["train", "pets", "--resume", str(run_dir), *option], capsys)
        assert code == 2 and f"{option[0]} cannot be given with --resume" in err, err
    assert len(metrics(run_dir)) == 2


def test_episodes_may_change_on_resume_and_the_change_is_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = stopped_after_two(tmp_path / "run")
    code, _ = run_cli(["train", "pets", "--resume", str(run_dir), "--episodes", "4"], capsys)
    assert code == 0
    assert [int(r["episode"]) for r in metrics(run_dir)] == [0, 1, 2, 3]
    assert json.loads((run_dir / "config.json").read_text())["episodes"] == 4
    progress = json.loads((run_dir / "checkpoints" / "episode-0003" / "progress.json").read_text())
    assert progress["changes_on_resume"] == [{"at_episode": 2, "changed": {"episodes": [3, 4]}}]
    code, err = run_cli(["train", "pets", "--resume", str(run_dir), "--episodes", "2"], capsys)
    assert code == 2 and "4 episodes are done already" in err


def test_resuming_a_folder_that_is_not_a_run_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run_cli(["train", "pets", "--resume", str(tmp_path / "none")], capsys)
    assert code == 2 and f"{tmp_path / 'none' / 'config.json'} is missing" in err
    code, err = run_cli(["eval", str(tmp_path)], capsys)
    assert code == 2 and f"{tmp_path / 'config.json'} is missing" in err


def test_ctrl_c_stops_in_one_line_that_says_how_to_resume(tmp_path: Path) -> None:
    config = dataclasses.replace(
        TINY, episodes=400, episode_steps=40,
        model=EnsembleConfig(ensemble_size=2, hidden_size=16, hidden_layers=2, weight_decay=0.0),
        train=TrainConfig(max_epochs=5, num_elites=1, batch_size=32),
    )
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(dataclasses.asdict(config)))
    runs = tmp_path / "runs"
    process = subprocess.Popen(
        [sys.executable, "-m", "mbrl", "train", "pets", "--config", str(config_file), "--out",
         str(runs)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
        # As from a terminal: a suite started in the background by a non-interactive shell
        # ignores SIGINT, and a child inherits that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(  # two episodes committed (or more)
            checkpoint_episode(path) >= 1 for path in runs.glob("*/checkpoints/episode-*")
        ):
            time.sleep(0.05)
        assert process.poll() is None, "the run ended before it could be interrupted"
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "Traceback" not in err, err
    (run_dir,) = runs.iterdir()
    last = err.strip().splitlines()[-1]
    assert last.startswith("mbrl train: interrupted with ") and last.endswith(
        f"continue with: mbrl train pets --resume {run_dir}"), last
    done = len(metrics(run_dir))
    assert f"interrupted with {done} of 400 episodes saved" in last
    resumed = train_pets(dataclasses.replace(config, episodes=done + 1), run_dir, resume=True)
    assert len(resumed) == done + 1
    assert not list(run_dir.rglob("*.tmp")) and not list(run_dir.rglob("*.partial"))


def test_pets_config_from_a_run_directory_is_validated_like_any_other(tmp_path: Path) -> None:
    run_dir = stopped_after_two(tmp_path / "run")
    stored = json.loads((run_dir / "config.json").read_text())
    stored["episodes"] = 2.5
    (run_dir / "config.json").write_text(json.dumps(stored))
    with pytest.raises(RunDirError, match=r"config\.json: episodes: must be an integer, got 2\.5"):
        train_pets(TINY, run_dir, resume=True)
