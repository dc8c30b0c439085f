"""Run-directory files are written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mbrl.files import atomic_open, write_csv, write_json
from mbrl.runs.rundir import new_run_dir


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    write_json(target, {"episode": 1})
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write('{"episode": 2')
        raise RuntimeError("killed mid-write")
    assert target.read_text() == '{\n  "episode": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_files_get_the_usual_permissions(tmp_path: Path) -> None:
    write_json(tmp_path / "config.json", {"seed": 0})
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "config.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_run_dirs_are_unique(tmp_path: Path) -> None:
    first = new_run_dir(tmp_path, "plan-dmc/cartpole")
    second = new_run_dir(tmp_path, "plan-dmc/cartpole")
    assert first != second and first.is_dir() and second.is_dir()
    assert "/" not in first.name


def test_csv_needs_rows(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no rows"):
        write_csv(tmp_path / "empty.csv", [])
    write_csv(tmp_path / "rows.csv", [{"a": 1, "b": 2.5}])
    assert (tmp_path / "rows.csv").read_text().splitlines() == ["a,b", "1,2.5"]
