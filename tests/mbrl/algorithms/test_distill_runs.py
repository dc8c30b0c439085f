"""Distillation runs on a real simulator: run directories, exact resume, the command line and
its refusals (small budgets: a pendulum episode of 12 steps, a cheap CEM teacher)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import mbrl.algorithms.dagger as dagger_module
import mbrl.algorithms.distill as distill_module
import mbrl.algorithms.gps as gps_module
import mbrl.algorithms.plato as plato_module
from controllers.policy import PolicyConfig
from controllers.validation import ConfigError
from mbrl.algorithms.distill import DistillConfig, train_distill
from mbrl.algorithms.gps import GPSConfig
from mbrl.algorithms.students import SafetyMonitor, Teacher, beta_at
from mbrl.cli import main
from mbrl.control.episodes import Step
from mbrl.errors import UserError
from mbrl.learning.checkpoint import load_model, load_policy
from mbrl.learning.policy_training import PolicyTrainConfig

SMALL = DistillConfig(
    env_id="mujoco/pendulum-swingup", action_repeat=2, episode_steps=12, teacher="cem",
    horizon=5, teacher_settings={"population": 16, "iterations": 1}, iterations=3,
    eval_episodes=1, policy=PolicyConfig(hidden_sizes=(16,)),
    fit=PolicyTrainConfig(epochs=5, batch_size=16),
    gps=GPSConfig(conditions=2, samples_per_condition=2, min_points_per_cluster=10),
)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_policy(run_dir / "student.pt")[0].state_dict()


@pytest.mark.parametrize("algorithm", ["bc", "dagger", "plato", "gps"])
def test_a_killed_run_resumes_to_the_results_of_one_never_stopped(
    algorithm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = dataclasses.replace(SMALL, algorithm=algorithm)
    straight = train_distill(config, tmp_path / "straight")
    assert len(straight) == 3
    assert {"student_return", "teacher_return", "teacher_queries", "violations"} <= set(
        straight[0])

    # Killed inside the third iteration, while the student is fitted.
    module: Any = {"bc": dagger_module, "dagger": dagger_module, "plato": plato_module,
                   "gps": gps_module}[algorithm]
    real_fit, calls = module.fit_policy, []
    kill_at = 4 if algorithm == "gps" else 3  # gps also fits once to catch up at the start

    def fit_then_kill(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == kill_at:
            raise KeyboardInterrupt
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(module, "fit_policy", fit_then_kill)
    with pytest.raises(KeyboardInterrupt):
        train_distill(config, tmp_path / "killed")
    monkeypatch.setattr(module, "fit_policy", real_fit)
    resumed = train_distill(config, tmp_path / "killed", resume=True)

    assert resumed == straight
    for name, tensor in _weights(tmp_path / "straight").items():
        assert torch.equal(tensor, _weights(tmp_path / "killed")[name]), name
    for name in ("metrics.csv", "labelled_data.npz"):
        assert (tmp_path / "straight" / name).read_bytes() == (
            tmp_path / "killed" / name).read_bytes()


def test_resume_may_extend_the_iterations_only(tmp_path: Path) -> None:
    config = dataclasses.replace(SMALL, iterations=1)
    train_distill(config, tmp_path / "run")
    longer = train_distill(dataclasses.replace(config, iterations=2), tmp_path / "run",
                           resume=True)
    assert [int(r["iteration"]) for r in longer] == [0, 1]
    with pytest.raises(Exception, match="kl_weight"):
        train_distill(dataclasses.replace(config, kl_weight=3.0), tmp_path / "run",
                      resume=True)


def test_the_command_line_distils_and_evaluates_a_student(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = tmp_path / "small.json"
    config_file.write_text(json.dumps(dataclasses.asdict(dataclasses.replace(
        SMALL, iterations=2))))
    assert main(["distill", "dagger", "--config", str(config_file), "--beta-schedule",
                 "geometric", "--beta-p", "0.5", "--out", str(tmp_path / "runs")]) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.json", "metrics.csv", "student.pt", "labelled_data.npz",
            "learning_curve.png"} <= names
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["beta_schedule"] == "geometric" and saved["iterations"] == 2
    assert main(["eval", str(run_dir), "--episodes", "2", "--no-video"]) == 0
    result = json.loads((run_dir / "eval.json").read_text())
    assert len(result["returns"]) == 2 and result["algorithm"] == "dagger"
    with pytest.raises(ValueError, match="not a model checkpoint"):
        load_model(run_dir / "student.pt")


@pytest.mark.parametrize("argv, problem", [
    (["--teacher", "nosuch"], "teacher: must be a registered planner"),
    (["--env", "nosuch/env"], "unknown env id 'nosuch/env'"),
    (["--teacher", "ilqr", "--env", "pybullet/cartpole-swingup"], "no derivatives"),
    (["--set", "nosuch=1"], "nosuch"),
    (["--kl-weight", "-1"], "kl_weight: must be >= 0"),
    (["--beta-p", "2"], "beta_p: must be in [0, 1]"),
    (["--resume", "somewhere", "--teacher", "cem"],
     "--teacher, --out cannot be given with --resume"),
])
def test_bad_input_is_one_line_naming_it(
    argv: list[str], problem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["distill", "dagger", "--out", str(tmp_path), *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert problem in err and "Traceback" not in err
    assert not list(tmp_path.iterdir()), "nothing may be written before the refusal"


def test_gps_needs_a_known_quadratic_cost(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["distill", "gps", "--env", "dmc/cartpole-swingup", "--out", str(tmp_path)])
    assert "gps needs the task's quadratic cost" in capsys.readouterr().err
    with pytest.raises(UserError, match="quadratic cost"):
        train_distill(dataclasses.replace(SMALL, algorithm="gps",
                                          env_id="dmc/cartpole-swingup"), tmp_path / "x")


def test_beta_schedules() -> None:
    assert [beta_at(i, "once", 0.5) for i in range(3)] == [1.0, 0.0, 0.0]
    assert [beta_at(i, "geometric", 0.5) for i in range(4)] == [1.0, 0.5, 0.25, 0.125]
    assert [beta_at(i, "always", 0.5) for i in range(3)] == [1.0, 1.0, 1.0]


def test_the_cart_pole_safety_monitor_counts_entries_into_violation() -> None:
    monitor = SafetyMonitor()

    def at(x: float, cos: float) -> Step:
        obs = np.array([x, cos, 0.0, 0.0, 0.0])
        return Step(0, obs, np.zeros(1), 0.0, obs, 1.0)

    for x, cos in [(0.0, -1.0), (1.9, -1.0), (2.0, 0.0), (0.0, 0.99), (0.0, 0.5),
                   (0.0, -0.2), (0.0, -0.5), (0.0, 0.99), (0.0, -0.9)]:
        monitor.on_step(at(x, cos))
    # Off the rail once (two steps, one entry), two falls after balance.
    assert monitor.violations == 3


def test_under_randomisation_the_teacher_plans_with_each_episodes_drawn_physics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = dataclasses.replace(
        SMALL, iterations=2, episodes_per_iteration=2,
        randomize={"mass_scale": {"low": 0.5, "high": 2.0}})
    seen: list[tuple[float, float]] = []
    real_label = Teacher.label

    def label(self: Teacher, obs: np.ndarray) -> np.ndarray:
        planner: Any = self.controller.planner  # type: ignore[attr-defined]
        acting = planner.dynamics.env.physics_params()["mass_scale"]
        seen.append((acting, self._robot.physics_params()["mass_scale"]))  # type: ignore[attr-defined]
        return real_label(self, obs)

    real_make = distill_module.make_teachers

    def make_teachers(config: DistillConfig, env: Any) -> Any:
        teachers = real_make(config, env)

        def plain(seed: int) -> Teacher:
            teacher = teachers.plain(seed)
            teacher._robot = env  # type: ignore[attr-defined]
            return teacher

        return dataclasses.replace(teachers, plain=plain)

    monkeypatch.setattr(Teacher, "label", label)
    monkeypatch.setattr(distill_module, "make_teachers", make_teachers)
    rows = train_distill(config, tmp_path / "run")
    assert len(rows) == 2
    training = [pair for pair in seen if pair[1] != 1.0]
    assert len({round(robot, 6) for _, robot in training}) >= 3, "masses drawn per episode"
    assert all(planned == pytest.approx(robot) for planned, robot in training)
    with pytest.raises(ConfigError, match="gps fits each condition"):
        dataclasses.replace(config, algorithm="gps")
