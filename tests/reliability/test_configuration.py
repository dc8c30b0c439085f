"""Bad configuration is refused in one line that names the field and the file, with exit status
2, before anything is written; a bug of ours keeps its traceback."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from controllers import CEMConfig, ConfigError, ILQRConfig, MCTSConfig, MPCConfig, MPPIConfig
from mbrl.algorithms.pets import PETSConfig
from mbrl.cli import main
from mbrl.config import from_dict
from tests.mbrl.algorithms.test_pets import TINY


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`mbrl argv`'s exit status and standard error."""
    try:
        code = main(argv)
    except SystemExit as exit_info:
        code = int(exit_info.code or 0)
    return code, capsys.readouterr().err


def write_config(folder: Path, **changes: object) -> Path:
    values = json.loads(json.dumps(dataclasses.asdict(TINY)))
    for dotted, value in changes.items():
        *outer, name = dotted.split("__")
        target = values
        for key in outer:
            target = target[key]
        target[name] = value
    path = folder / "config.json"
    path.write_text(json.dumps(values))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"episodes": "four"}, "episodes: must be an integer, got 'four' (str)"),
        ({"horizon": "15"}, "horizon: must be an integer, got '15' (str)"),
        ({"model": "big"}, "model: must be an object of EnsembleConfig settings, got 'big'"),
        ({"episodes": 2.5}, "episodes: must be an integer, got 2.5"),
        ({"episodes": True}, "episodes: must be an integer, got true"),
        ({"train__batch_size": 0}, "train.batch_size: must be >= 1, got 0"),
        ({"planner_settings__momentum": 1.5},
         "planner_settings.momentum: must be in [0, 1), got 1.5"),
        ({"planner": "cme"}, "planner: unknown planner 'cme'; registered: random-shooting, cem"),
        ({"planner_settings__temperature": 1.0},
         "planner_settings.temperature: cem has no such setting; its settings: elites"),
        ({"mpc__time_budget_ms": "fast"}, "mpc.time_budget_ms: must be a number or null"),
        ({"env_id": "mujoco/cartpole"}, "env_id: unknown env id 'mujoco/cartpole'"),
        ({"particles": 3}, "particles: must be a multiple of model.ensemble_size (2), got 3"),
        ({"planner_settings__elites": 40},
         "planner_settings.elites: must be in [1, population (16)] or null, got 40"),
        ({"planning_horizon": 15}, "planning_horizon: unknown PETSConfig setting"),
    ],
)
def test_a_bad_config_file_is_refused_in_one_line_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, object], message: str
) -> None:
    config = write_config(tmp_path, **change)
    runs = tmp_path / "runs"
    code, err = run_cli(["train", "pets", "--config", str(config), "--out", str(runs)], capsys)
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"mbrl train: error: config file {config}: "), err
    assert message in err, err
    assert not runs.exists(), "a refused config must not leave a run directory"


def test_a_config_file_that_is_not_json_or_not_there_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    garbled = tmp_path / "garbled.json"
    garbled.write_text('{"episodes": 2')
    code, err = run_cli(["train", "pets", "--config", str(garbled)], capsys)
    assert code == 2 and f"config file {garbled} is not valid JSON" in err
    code, err = run_cli(["train", "pets", "--config", str(tmp_path / "none.json")], capsys)
    assert code == 2 and f"cannot read the config file {tmp_path / 'none.json'}" in err


def test_out_naming_a_file_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "runs").write_text("not a folder")
    for argv in (["train", "pets", "--episodes", "1"], ["plan", "--steps", "2"]):
        code, err = run_cli([*argv, "--out", str(tmp_path / "runs")], capsys)
        assert code == 2 and err.count("\n") == 1, err
        assert f"{tmp_path / 'runs'} is a file, not a folder for run directories" in err


def test_an_unknown_env_on_the_command_line_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run_cli(["train", "pets", "--env", "dmc/nope", "--out", str(tmp_path / "r")],
                        capsys)
    assert code == 2 and "env_id: unknown env id 'dmc/nope'" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_an_unknown_option_gets_the_subcommands_usage(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["train", "pets", "--horizn", "5"], capsys)
    assert code == 2
    assert err.startswith("usage: mbrl train ") and "--resume RUN_DIR" in err
    assert err.rstrip().endswith("mbrl train: error: unrecognized arguments: --horizn 5")
    code, err = run_cli(["bench", "planners", "--budget", "5"], capsys)  # no abbreviations
    assert code == 2 and err.startswith("usage: mbrl bench planners ")
    assert "unrecognized arguments: --budget 5" in err


def test_a_bug_keeps_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ValueError from inside the toolkit is not a user's mistake: no exit 2 hides it."""
    import mbrl.algorithms.pets

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("an internal shape mismatch")

    monkeypatch.setattr(mbrl.algorithms.pets, "train_pets", broken)
    with pytest.raises(ValueError, match="an internal shape mismatch"):
        main(["train", "pets", "--env", "mujoco/reacher-2link", "--out", str(tmp_path)])


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: CEMConfig(horizon=2.5), "horizon: must be an integer, got 2.5"),  # type: ignore[arg-type]
        (lambda: CEMConfig(population=True), "population: must be an integer, got true"),  # type: ignore[arg-type]
        (lambda: MPPIConfig(temperature="1"), "temperature: must be a number, got '1' (str)"),  # type: ignore[arg-type]
        (lambda: MPPIConfig(noise_std=float("nan")), "noise_std: must be a finite number"),
        (lambda: MPCConfig(warm_start=1), "warm_start: must be true or false, got 1"),  # type: ignore[arg-type]
        (lambda: MCTSConfig(grid_points=1), "grid_points: must be >= 2 or null, got 1"),
        (lambda: ILQRConfig(alphas=(1.0, "half")), "alphas[1]: must be a number"),  # type: ignore[arg-type]
        (lambda: ILQRConfig(mu_max=1e-9), "mu_max: must be >= mu_min"),
    ],
)
def test_every_config_dataclass_checks_its_fields_types_and_ranges(
    build: object, message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        build()  # type: ignore[operator]
    assert message in str(error.value)


def test_nested_settings_are_named_by_their_dotted_path() -> None:
    with pytest.raises(ConfigError) as error:
        from_dict(PETSConfig, {"train": {"max_epochs": None, "patience": None}})
    assert error.value.path == "train.patience"
    with pytest.raises(ConfigError) as error:
        from_dict(PETSConfig, {"model": {"weight_decay": [1e-4, "x"]}})
    assert error.value.path == "model.weight_decay"
    assert "must be a number or a list" in str(error.value)
