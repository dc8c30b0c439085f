"""Where benchmark results go, and what they record about how they were made."""

from pathlib import Path
from typing import Any

from mbrl.runs import provenance as _library

PACKAGES = _library.PACKAGES
RESULTS = Path(__file__).resolve().parent / "results"
cpu_model = _library.cpu_model


def git_revision() -> str:
    """The checkout's revision; results already written to `RESULTS` do not make it dirty."""
    return _library.git_revision(outputs=[RESULTS])


def provenance() -> dict[str, Any]:
    """The command, revision, machine and package versions of this benchmark run."""
    return _library.provenance(outputs=[RESULTS])


__all__ = ["PACKAGES", "RESULTS", "cpu_model", "git_revision", "provenance"]
