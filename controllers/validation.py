"""What the toolkit refuses at its boundaries, checked one way everywhere.

Configs: every config dataclass calls `check_types` first in its `__post_init__`, which checks
each field against its annotation (an `int` field refuses `2.5` and `True`, a `float` field a
string or NaN, a nested config a plain value), then states its ranges with `require`. Either
raises `ConfigError`, whose `path` names the field; a loader that builds nested configs
(`mbrl.config.from_dict`) prefixes the outer names, so the message reads
`planner.horizon: must be an integer, got '15' (str)`.

Planner inputs: `checked_bounds` and `checked_state` refuse non-finite action bounds and
states with a message naming the argument, so that whatever a planner returns is finite and
inside its bounds (the output contract of `controllers.protocols.Planner`).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

import torch


class ConfigError(ValueError):
    """A config field of the wrong type or out of its range; `path` is the field's dotted name."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        #: The field's dotted name (`planner.horizon`), empty for the config as a whole.
        self.path = path
        #: What is wrong with it.
        self.problem = problem

    def inside(self, outer: str) -> ConfigError:
        """The same error for the field seen from a config that holds this one as `outer`."""
        return ConfigError(f"{outer}.{self.path}" if self.path else outer, self.problem)


def check_types(config: Any) -> None:
    """Raise `ConfigError` for the first field of the dataclass `config` whose value does not
    match its annotation (`int`, `float`, `bool`, `str`, unions with `None`, `tuple[X, ...]`,
    `Literal`, nested dataclasses; other annotations are not checked)."""
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        _check_value(field.name, getattr(config, field.name), hints[field.name])


def require(config: Any, name: str, holds: bool, requirement: str) -> None:
    """Raise `ConfigError` for field `name` of `config` unless `holds`; `requirement` says what
    the value must be ("must be >= 1")."""
    if not holds:
        raise ConfigError(name, f"{requirement}, got {getattr(config, name)!r}")


def require_positive(config: Any, *names: str) -> None:
    """Raise `ConfigError` for the first of the fields `names` that is not >= 1 (integers)."""
    for name in names:
        require(config, name, getattr(config, name) >= 1, "must be >= 1")


def _check_value(path: str, value: Any, hint: Any) -> None:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                _check_value(path, value, option)
                return
            except ConfigError:
                continue
        raise ConfigError(path, f"must be {_describe(hint)}, got {_shown(value)}")
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(path, f"must be one of {list(typing.get_args(hint))}, got "
                              f"{_shown(value)}")
        return
    if origin is tuple:
        if not isinstance(value, tuple | list):
            raise ConfigError(path, f"must be a list, got {_shown(value)}")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            for i, item in enumerate(value):
                _check_value(f"{path}[{i}]", item, args[0])
        return
    if hint is type(None):
        if value is not None:
            raise ConfigError(path, f"must be null, got {_shown(value)}")
        return
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, f"must be true or false, got {_shown(value)}")
        return
    if hint is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(path, f"must be an integer, got {_shown(value)}")
        return
    if hint is float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ConfigError(path, f"must be a number, got {_shown(value)}")
        if not math.isfinite(value):
            raise ConfigError(path, f"must be a finite number, got {value!r}")
        return
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(path, f"must be a string, got {_shown(value)}")
        return
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(value, hint):
            raise ConfigError(path, f"must be an object of {hint.__name__} settings, "
                              f"got {_shown(value)}")
        return


def _describe(hint: Any) -> str:
    if hint is type(None):
        return "null"
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(option) for option in typing.get_args(hint))
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    if hint in names:
        return names[hint]
    if typing.get_origin(hint) is tuple:
        return "a list"
    return getattr(hint, "__name__", str(hint))


def _shown(value: Any) -> str:
    """`value` as a message shows it: its repr and, where that does not make it plain, its
    type."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    if isinstance(value, int | float | list | tuple | dict):
        return text
    return f"{text} ({type(value).__name__})"


def checked_bounds(
    action_low: Any, action_high: Any, dtype: torch.dtype = torch.float64, *,
    strict: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The action bounds as `[du]` tensors of `dtype`, after checking that they are finite and
    form a box: `action_low < action_high` in every dimension (`<=` unless `strict`).

    Raises:
        ValueError: naming `action_low` or `action_high` and what is wrong.
    """
    if not dtype.is_floating_point:
        raise ValueError(f"the planner's dtype must be a floating-point dtype, got {dtype}")
    low = torch.as_tensor(action_low, dtype=dtype)
    high = torch.as_tensor(action_high, dtype=dtype)
    if low.ndim != 1 or high.shape != low.shape or low.shape[0] < 1:
        raise ValueError(f"action_low and action_high must both be [du >= 1], got "
                         f"{list(low.shape)} and {list(high.shape)}")
    for name, bound in (("action_low", low), ("action_high", high)):
        bad = ~torch.isfinite(bound)
        if bool(bad.any()):
            raise ValueError(f"{name} must be finite (a robot's actuators are bounded), got "
                             f"{bound.tolist()}")
    inside = low < high if strict else low <= high
    if not bool(inside.all()):
        relation = "below" if strict else "at most"
        raise ValueError(f"every action_low must be {relation} action_high: "
                         f"{low.tolist()} and {high.tolist()}")
    return low, high


def checked_state(state: Any, name: str = "state", dim: int | None = None) -> torch.Tensor:
    """`state` as a `[dx]` tensor, after checking that it is one vector of finite numbers (of
    `dim` entries, where the caller knows the dimension).

    Raises:
        ValueError: naming the argument `name`, its shape or its first non-finite entries.
    """
    x = torch.as_tensor(state)
    if x.ndim != 1 or x.shape[0] < 1:
        raise ValueError(f"{name} must be one vector [dx >= 1], got shape {list(x.shape)}")
    if dim is not None and x.shape[0] != dim:
        raise ValueError(f"{name} has {x.shape[0]} entries, but the dynamics' states have {dim}")
    if x.is_complex():
        raise ValueError(f"{name} must hold real numbers, got {x.dtype}")
    if x.dtype.is_floating_point:
        bad = ~torch.isfinite(x)
        if bool(bad.any()):
            where = bad.nonzero().flatten()[:5].tolist()
            raise ValueError(f"{name} holds NaN or infinite values at indices {where}: "
                             f"{x[bad][:5].tolist()}")
    return x


def checked_warm_start(
    warm_start: torch.Tensor, shape: tuple[int, int], name: str = "warm_start"
) -> torch.Tensor:
    """`warm_start` after checking its shape `[H, du]` and that it is finite.

    Raises:
        ValueError: naming the argument, its shape or where it is not finite.
    """
    if tuple(warm_start.shape) != shape:
        raise ValueError(f"{name} has shape {tuple(warm_start.shape)}, expected {shape}")
    bad = ~torch.isfinite(warm_start)
    if bool(bad.any()):
        steps = bad.any(dim=-1).nonzero().flatten()[:5].tolist()
        raise ValueError(f"{name} holds NaN or infinite values at steps {steps}")
    return warm_start
