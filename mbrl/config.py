"""Frozen dataclass configs from JSON: nested configs and tuples rebuilt, every field checked.

Each config checks its own fields' types and ranges when it is built (see
`controllers.validation`); `from_dict` adds the dotted path of nested fields to the message
(`planner.horizon: must be an integer, got '15' (str)`), and `load` the file's name, so a bad
config file is refused in one line before a run writes anything.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any, TypeVar

from controllers.validation import ConfigError
from mbrl.errors import UserError

T = TypeVar("T")


class ConfigFileError(UserError):
    """A config file that cannot be read, or whose settings are refused; names the file."""


def from_dict(cls: type[T], values: Any) -> T:
    """Build the dataclass `cls` from `values` (as written by `dataclasses.asdict` and JSON);
    fields left out take their defaults.

    Raises:
        ConfigError: for a key `cls` does not have, or a value of the wrong type or out of its
            range, with the field's dotted path.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    if not isinstance(values, dict):
        raise ConfigError("", f"a {cls.__name__} must be an object of settings, got "
                          f"{type(values).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(unknown[0], f"unknown {cls.__name__} setting; known: {', '.join(names)}")
    kwargs = {}
    for name, value in values.items():
        try:
            kwargs[name] = _convert(hints[name], value)
        except ConfigError as error:
            raise error.inside(name) from None
    return cls(**kwargs)


def load(cls: type[T], path: str | Path) -> T:
    """Read a config of type `cls` from a JSON file.

    Raises:
        ConfigFileError: naming the file, if it cannot be read, is not JSON, or a setting in it
            is refused (with the setting's dotted path).
    """
    try:
        values = json.loads(Path(path).read_text())
    except OSError as error:
        raise ConfigFileError(f"cannot read the config file {path}: {error.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConfigFileError(f"config file {path} is not valid JSON: {error}") from None
    try:
        return from_dict(cls, values)
    except ConfigError as error:
        raise ConfigFileError(f"config file {path}: {error}") from None


#: Entry-point group of env wrappers from packages above `mbrl`, which it may not import: each
#: entry is an object with `settings(source) -> dict` (a preset's name or a JSON file, checked,
#: as JSON-ready settings) and `wrap(env, settings) -> RobotEnv` (`ConfigError` naming the
#: field for settings the env cannot take). `sim2real` provides "randomize".
ENV_WRAPPER_GROUP = "mbrl.env_wrappers"


def env_wrapper(name: str) -> Any:
    """The env wrapper registered as `name` in `ENV_WRAPPER_GROUP`.

    Raises:
        UserError: if none is installed under that name.
    """
    from importlib.metadata import entry_points

    found = [entry for entry in entry_points(group=ENV_WRAPPER_GROUP) if entry.name == name]
    if not found:
        raise UserError(f"no env wrapper {name!r} is installed (entry points "
                        f"{ENV_WRAPPER_GROUP}); install the package that provides it")
    return found[0].load()


def require_known_env(config: Any) -> None:
    """Raise `ConfigError` for the field `env_id` of `config` unless it is a registered env id."""
    import envs  # the registry loads the simulators: only when a config names an env

    if not isinstance(config.env_id, str) or config.env_id not in envs.registry():
        raise ConfigError("env_id", f"unknown env id {config.env_id!r}; registered: "
                          f"{', '.join(sorted(envs.registry()))}")


def _convert(hint: Any, value: Any) -> Any:
    nested = [h for h in (hint, *typing.get_args(hint))
              if isinstance(h, type) and dataclasses.is_dataclass(h)]
    if nested and isinstance(value, dict):
        return from_dict(nested[0], value)
    if isinstance(value, list):
        # JSON has no tuples; every sequence in our configs is a tuple.
        return tuple(value)
    return value
