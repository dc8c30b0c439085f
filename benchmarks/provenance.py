"""Where benchmark results go, and what they record about how they were made."""

from pathlib import Path

from mbrl.provenance import PACKAGES, cpu_model, git_revision, provenance

RESULTS = Path(__file__).resolve().parent / "results"

__all__ = ["PACKAGES", "RESULTS", "cpu_model", "git_revision", "provenance"]
