"""Frozen dataclass configs from JSON: nested configs and tuples rebuilt, unknown keys refused."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def from_dict(cls: type[T], values: dict[str, Any]) -> T:
    """Build the dataclass `cls` from `values` (as written by `dataclasses.asdict` and JSON).

    Raises:
        ValueError: for a key `cls` does not have.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} settings: {sorted(unknown)}")
    kwargs = {name: _convert(hints[name], value) for name, value in values.items()}
    return cls(**kwargs)


def load(cls: type[T], path: str | Path) -> T:
    """Read a config of type `cls` from a JSON file."""
    try:
        values = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read {cls.__name__} from {path}: {error}") from None
    return from_dict(cls, values)


def _convert(hint: Any, value: Any) -> Any:
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return from_dict(hint, value)  # type: ignore[arg-type]
    if isinstance(value, list):
        # JSON has no tuples; every sequence in our configs is a tuple.
        return tuple(value)
    return value
