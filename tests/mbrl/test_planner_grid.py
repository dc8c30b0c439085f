"""The planner grid: its cells, resuming a stopped grid without recomputing finished cells, the
Pareto summary, and `mbrl bench planners` end to end on a tiny grid."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mbrl import planner_grid
from mbrl.cli import main
from mbrl.planner_grid import Cell, GridTask


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> str:
    """A 10-step pendulum task, horizon 5."""
    monkeypatch.setitem(planner_grid.TASKS, "tiny", GridTask("mujoco/pendulum-swingup", 1, 10, 5))
    return "tiny"


def test_the_grid_is_the_product_and_unknown_names_are_refused() -> None:
    cells = planner_grid.grid(["cem", "mcts"], ["pendulum-swingup"], [20, 80], [0, 1, 2])
    assert len(cells) == 12 and len({c.key for c in cells}) == 12
    assert cells[0] == Cell("cem", "pendulum-swingup", 20.0, 0)
    with pytest.raises(ValueError, match="unknown planner 'ddpg'; known: random-shooting"):
        planner_grid.grid(["ddpg"], ["pendulum-swingup"], [20], [0])
    with pytest.raises(ValueError, match="unknown task 'walker'"):
        planner_grid.grid(["cem"], ["walker"], [20], [0])
    with pytest.raises(ValueError, match="budgets must be > 0"):
        planner_grid.grid(["cem"], ["pendulum-swingup"], [0], [0])


def test_a_stopped_grid_resumes_without_recomputing_finished_cells(
    tiny: str, tmp_path: Path
) -> None:
    cells = planner_grid.grid(["cem", "mcts"], [tiny], [10], [0])
    computed: list[str] = []

    def counting(cell: Cell, task: GridTask) -> dict[str, Any]:
        computed.append(cell.key)
        return planner_grid.run_cell(cell, task)

    first = planner_grid.run_grid(cells[:1], tmp_path, run=counting)
    assert computed == [cells[0].key] and first[0]["steps"] == 10
    with (tmp_path / "cells.jsonl").open("a") as handle:  # a kill mid-write of the next cell
        handle.write('{"key": "mcts|tiny|10|0", "ret')
    rows = planner_grid.run_grid(cells, tmp_path, run=counting)
    assert computed == [cells[0].key, cells[1].key]  # the first was not run again
    assert [r["key"] for r in rows] == [c.key for c in cells]
    assert rows[0] == first[0]
    planner_grid.run_grid(cells, tmp_path, run=counting)
    assert len(computed) == 2


def test_the_summary_marks_the_pareto_front() -> None:
    def row(planner: str, budget: float, ret: float, ms: float) -> dict[str, Any]:
        return {"task": "t", "planner": planner, "budget_ms": budget, "return": ret,
                "plan_ms_median": ms}

    rows = [row("a", 20, 10.0, 19.0), row("a", 20, 20.0, 21.0),  # mean 15 at 20 ms
            row("b", 20, 12.0, 15.0),                            # 12 at 15 ms: faster
            row("b", 80, 14.0, 70.0),                            # dominated by a at 20 ms
            row("a", 80, 30.0, 75.0)]                            # best, slowest
    points = {(p["planner"], p["budget_ms"]): p for p in planner_grid.summarise(rows)}
    assert points[("a", 20)]["mean_return"] == 15.0 and points[("a", 20)]["plan_ms"] == 20.0
    assert {k for k, p in points.items() if p["pareto"]} == {("a", 20), ("b", 20), ("a", 80)}
    table = planner_grid.markdown_table(list(points.values()))
    assert "| t | a | 20 | 20.0 | **15.0** | 2 |" in table
    assert "| t | b | 80 | 70.0 | 14.0 | 1 |" in table


def test_mbrl_bench_planners_writes_its_outputs_and_resumes(tiny: str, tmp_path: Path) -> None:
    argv = ["bench", "planners", "--planners", "mcts", "--tasks", tiny, "--budgets-ms", "10",
            "--seeds", "0", "--out", str(tmp_path)]
    assert main(argv) == 0
    payload = json.loads((tmp_path / "planner_grid.json").read_text())
    assert payload["git_revision"] and payload["cpu"] and payload["packages"]["torch"]
    assert [c["key"] for c in payload["cells"]] == ["mcts|tiny|10|0"]
    assert (tmp_path / "planner_grid.png").stat().st_size > 0
    assert "| tiny | mcts | 10 |" in (tmp_path / "planner_grid.md").read_text()
    lines = (tmp_path / "cells.jsonl").read_text().splitlines()
    assert main(argv) == 0  # resumed: nothing recomputed
    assert (tmp_path / "cells.jsonl").read_text().splitlines() == lines


def test_the_grid_fans_out_over_a_local_ray_instance_with_the_same_results(
    tiny: str, tmp_path: Path
) -> None:
    """Random shooting makes one batch per replan, well inside 1 s: its cells do not depend on
    timing, so here and on Ray they must agree exactly."""
    cells = planner_grid.grid(["random-shooting"], [tiny], [1000], [0, 1])
    here = planner_grid.run_grid(cells, tmp_path / "here")
    on_ray = planner_grid.run_grid(cells, tmp_path / "ray", ray_address="local")
    assert [r["key"] for r in on_ray] == [c.key for c in cells]
    assert [r["return"] for r in on_ray] == [r["return"] for r in here]
    assert here[0]["return"] != here[1]["return"]  # the seeds differ
