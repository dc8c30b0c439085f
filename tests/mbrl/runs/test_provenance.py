"""What a result records about how it was made."""

from __future__ import annotations

import re
from pathlib import Path

from mbrl.runs.provenance import git_revision, provenance

REVISION = re.compile(r"[0-9a-f]{7,40}(-dirty)?")


def test_the_revision_is_read_whatever_the_output_folder(tmp_path: Path) -> None:
    # An output folder outside the checkout (a benchmark's --out in /tmp) used to make git
    # refuse the exclusion and the revision read "unknown".
    inside = Path(__file__).resolve().parents[3] / "benchmarks" / "results"
    for outputs in ([], [tmp_path], [inside], [tmp_path, inside]):
        assert REVISION.fullmatch(git_revision(outputs)), outputs


def test_provenance_names_the_command_machine_and_versions(tmp_path: Path) -> None:
    record = provenance(outputs=[tmp_path])
    assert REVISION.fullmatch(record["git_revision"])
    assert record["cpu_count"] >= 1 and record["packages"]["torch"].startswith("2.")
