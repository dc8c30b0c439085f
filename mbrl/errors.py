"""The errors that mean "what you gave is wrong", as opposed to a bug of ours.

The `mbrl` command reports a `UserError` (and a `controllers.validation.ConfigError`) in one
line and exits with status 2; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(ValueError):
    """A mistake in what the user gave (a file, a folder, an option); the message names it."""


class RunDirError(UserError):
    """A run directory that is missing, damaged, or does not belong with the options given."""
