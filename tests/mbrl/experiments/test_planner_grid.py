"""The planner grid: its cells and the ones left out, every planner through both dynamics
sources, resuming a stopped grid without recomputing finished cells (the fitted ensemble
included), the Pareto summary, and `mbrl bench planners` end to end on a tiny grid."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch

import envs
from mbrl.cli import main
from mbrl.control.episodes import rollout
from mbrl.control.planners import planner_names
from mbrl.experiments import planner_grid
from mbrl.experiments.planner_grid import Cell, GridTask
from mbrl.learning.models import EnsembleConfig
from mbrl.learning.training import TrainConfig


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> str:
    """A 10-step pendulum task, horizon 5; its ensemble small and fitted on little data."""
    task = dataclasses.replace(planner_grid.TASKS["pendulum-swingup"], episode_steps=10,
                               horizon=5)
    monkeypatch.setitem(planner_grid.TASKS, "tiny", task)
    monkeypatch.setattr(planner_grid, "MODEL_ENSEMBLE", EnsembleConfig(
        ensemble_size=2, hidden_size=16, hidden_layers=2, weight_decay=0.0))
    monkeypatch.setattr(planner_grid, "MODEL_TRAINING", TrainConfig(max_epochs=3, num_elites=2))
    monkeypatch.setattr(planner_grid, "MODEL_DATA_EPISODES", (2, 0))
    return "tiny"


def test_the_grid_is_the_product_and_unknown_names_are_refused() -> None:
    cells, left_out = planner_grid.grid(["cem", "mcts"], ["pendulum-swingup"], [20, 80],
                                        [0, 1, 2], ["simulator", "ensemble"])
    assert len(cells) == 24 and len({c.key for c in cells}) == 24 and left_out == []
    assert cells[0] == Cell("cem", "pendulum-swingup", "simulator", 20.0, 0)
    with pytest.raises(ValueError, match="unknown planner 'ddpg'; registered: random-shooting"):
        planner_grid.grid(["ddpg"], ["pendulum-swingup"], [20], [0])
    with pytest.raises(ValueError, match="unknown task 'walker'"):
        planner_grid.grid(["cem"], ["walker"], [20], [0])
    with pytest.raises(ValueError, match="unknown dynamics source 'oracle'"):
        planner_grid.grid(["cem"], ["reacher"], [20], [0], ["oracle"])
    with pytest.raises(ValueError, match="budgets must be > 0"):
        planner_grid.grid(["cem"], ["pendulum-swingup"], [0], [0])


def test_ilqr_on_a_simulator_without_derivatives_is_left_out_with_the_reason() -> None:
    cells, left_out = planner_grid.grid(["ilqr", "cem"], ["kuka-reach"], [20], [0],
                                        ["simulator", "ensemble"])
    assert {(c.planner, c.dynamics) for c in cells} == {
        ("cem", "simulator"), ("ilqr", "ensemble"), ("cem", "ensemble")}
    assert left_out == [{"planner": "ilqr", "task": "kuka-reach", "dynamics": "simulator",
                         "reason": "no derivatives of this simulator (only MuJoCo's finite "
                         "differences are wired)"}]


def test_the_presets_name_known_planners_tasks_and_sources() -> None:
    for name, preset in planner_grid.PRESETS.items():
        cells, _ = planner_grid.grid(preset["planners"], preset["tasks"], preset["budgets_ms"],
                                     preset["seeds"], preset["dynamics"])
        assert cells, name
    tree = planner_grid.PRESETS["tree-search"]
    assert "mcts" in tree["planners"] and "pointmass-wall" in tree["tasks"]


def test_an_episode_lasts_its_control_steps_under_an_action_repeat() -> None:
    task = dataclasses.replace(planner_grid.TASKS["cartpole-swingup"], episode_steps=6,
                               horizon=3)
    assert task.action_repeat == 4
    row = planner_grid.run_cell(Cell("random-shooting", "cartpole-swingup", "simulator", 1e3, 0),
                                task)
    assert row["steps"] == 6


class ZeroAction:
    """The baseline: do nothing (zero torque) at every step."""

    def reset(self) -> None:
        pass

    def act(self, obs: object) -> torch.Tensor:
        return torch.zeros(1)


def test_every_planner_beats_doing_nothing_on_the_true_physics() -> None:
    # Hanging at rest earns nothing; 20 steps (1 s) of any planning pumps the pendulum.
    task = dataclasses.replace(planner_grid.TASKS["pendulum-swingup"], episode_steps=20,
                               horizon=10)
    env = envs.make(task.env_id, max_episode_steps=task.episode_steps)
    for seed in (0, 1):
        baseline = rollout(env, ZeroAction(), seed).episode_return
        for name in planner_names():
            row = planner_grid.run_cell(Cell(name, "pendulum-swingup", "simulator", 20.0, seed),
                                        task)
            assert row["steps"] == 20
            assert row["return"] > baseline + 0.5, (name, seed, row["return"], baseline)


def test_every_planner_runs_an_episode_through_the_ensemble(tiny: str, tmp_path: Path) -> None:
    model = planner_grid.task_model(tiny, tmp_path)
    for name in planner_names():
        row = planner_grid.run_cell(Cell(name, tiny, "ensemble", 30.0, 0),
                                    planner_grid.TASKS[tiny], model)
        assert row["steps"] == 10 and row["dynamics"] == "ensemble"
        assert -1e-9 <= row["return"] <= 10 + 1e-9  # the pendulum's reward is in [0, 1]
    for dynamics, given in (("ensemble", None), ("simulator", model)):
        with pytest.raises(ValueError, match="needs a model exactly when"):
            planner_grid.run_cell(Cell("cem", tiny, dynamics, 30.0, 0), planner_grid.TASKS[tiny],
                                  given)


def test_a_stopped_grid_resumes_without_recomputing_finished_cells(
    tiny: str, tmp_path: Path
) -> None:
    cells, _ = planner_grid.grid(["cem", "mcts"], [tiny], [10], [0], ["ensemble"])
    computed: list[str] = []

    def counting(cell: Cell, task: GridTask, model: Any) -> dict[str, Any]:
        computed.append(cell.key)
        return planner_grid.run_cell(cell, task, model)

    first = planner_grid.run_grid(cells[:1], tmp_path, run=counting)
    assert computed == [cells[0].key] and first[0]["steps"] == 10
    with (tmp_path / "cells.jsonl").open("a") as handle:  # a kill mid-write of the next cell
        handle.write('{"key": "mcts|tiny|ensemble|10|0", "ret')
    model_file = tmp_path / "models" / f"{tiny}.pt"
    fitted = model_file.stat().st_mtime_ns
    rows = planner_grid.run_grid(cells, tmp_path, run=counting)
    assert model_file.stat().st_mtime_ns == fitted  # the model was loaded, not fitted again
    assert computed == [cells[0].key, cells[1].key]  # the first was not run again
    assert [r["key"] for r in rows] == [c.key for c in cells]
    assert rows[0] == first[0]
    planner_grid.run_grid(cells, tmp_path, run=counting)
    assert len(computed) == 2


def test_the_summary_marks_the_pareto_front() -> None:
    def row(planner: str, budget: float, ret: float, ms: float) -> dict[str, Any]:
        return {"task": "t", "planner": planner, "dynamics": "simulator", "budget_ms": budget,
                "return": ret, "plan_ms_median": ms, "fallbacks": 5 if ret == 10.0 else 0,
                "steps": 10}

    rows = [row("a", 20, 10.0, 19.0), row("a", 20, 20.0, 21.0),  # mean 15 at 20 ms
            row("b", 20, 12.0, 15.0),                            # 12 at 15 ms: faster
            row("b", 80, 14.0, 70.0),                            # dominated by a at 20 ms
            row("a", 80, 30.0, 75.0)]                            # best, slowest
    points = {(p["planner"], p["budget_ms"]): p for p in planner_grid.summarise(rows)}
    assert points[("a", 20)]["mean_return"] == 15.0 and points[("a", 20)]["plan_ms"] == 20.0
    assert {k for k, p in points.items() if p["pareto"]} == {("a", 20), ("b", 20), ("a", 80)}
    table = planner_grid.markdown_table(list(points.values()))
    assert "| t | a | simulator | 20 | 20.0 | 25% | **15.0** | 2 |" in table
    assert "| t | b | simulator | 80 | 70.0 | 0% | 14.0 | 1 |" in table
    front = planner_grid.markdown_table(list(points.values()), only_pareto=True)
    assert "| t | a | simulator | 20 |" in front and "| t | b | simulator | 80 |" not in front


def test_mbrl_bench_planners_writes_its_outputs_and_resumes(tiny: str, tmp_path: Path) -> None:
    argv = ["bench", "planners", "--planners", "mcts", "--tasks", tiny, "--budgets-ms", "10",
            "--seeds", "0", "--dynamics", "simulator", "ensemble", "--out", str(tmp_path)]
    assert main(argv) == 0
    payload = json.loads((tmp_path / "planner_grid.json").read_text())
    assert re.fullmatch(r"[0-9a-f]{7,40}(-dirty)?", payload["git_revision"])
    assert payload["cpu"] and payload["packages"]["torch"]
    assert [c["key"] for c in payload["cells"]] == ["mcts|tiny|simulator|10|0",
                                                    "mcts|tiny|ensemble|10|0"]
    assert payload["tasks"]["tiny"]["goal"]["goal"] == [1.0, 0.0, 0.0]
    assert payload["models"]["ensemble"]["ensemble_size"] == 2
    assert (tmp_path / "planner_grid.png").stat().st_size > 0
    table = (tmp_path / "planner_grid.md").read_text()
    assert "| tiny | mcts | simulator | 10 |" in table
    assert "| tiny | mcts | ensemble | 10 |" in table
    lines = (tmp_path / "cells.jsonl").read_text().splitlines()
    assert main(argv) == 0  # resumed: nothing recomputed
    assert (tmp_path / "cells.jsonl").read_text().splitlines() == lines


def test_the_grid_fans_out_over_a_local_ray_instance_with_the_same_results(
    tiny: str, tmp_path: Path
) -> None:
    """Random shooting makes one batch per replan, well inside 1 s: its cells do not depend on
    timing, so here and on Ray they must agree exactly."""
    cells, _ = planner_grid.grid(["random-shooting"], [tiny], [1000], [0, 1])
    here = planner_grid.run_grid(cells, tmp_path / "here")
    on_ray = planner_grid.run_grid(cells, tmp_path / "ray", ray_address="local")
    assert [r["key"] for r in on_ray] == [c.key for c in cells]
    assert [r["return"] for r in on_ray] == [r["return"] for r in here]
    assert here[0]["return"] != here[1]["return"]  # the seeds differ
