"""The registry of task factories: ids are `backend/task`, looked up by `make`.

Factories are named as `module:function` strings and imported on first use, so listing the
registry does not import dm_control or PyBullet. Every id is registered with Gymnasium too (on
import of `envs`), as `backend/task-v0`, so `gymnasium.make` builds the same env.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from typing import Any

import gymnasium

from envs.core import RobotEnv


@dataclass(frozen=True)
class EnvSpec:
    """How to build one registered env."""

    #: The id, `backend/task`, e.g. `dmc/cartpole-swingup`.
    id: str
    #: The factory as `module:function`; it takes keyword arguments and returns a `RobotEnv`.
    entry_point: str
    #: One line on what the robot must do.
    description: str

    @property
    def backend(self) -> str:
        return self.id.split("/", 1)[0]

    @property
    def gymnasium_id(self) -> str:
        """The id under which `gymnasium.make` builds it: Gymnasium's `namespace/name-vN`."""
        return gymnasium_id(self.id)


class UnknownEnvError(KeyError, ValueError):
    """An env id that is not registered; the message lists the registered ids."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


_REGISTRY: dict[str, EnvSpec] = {}


def register(env_id: str, entry_point: str, description: str) -> None:
    """Register a factory under `env_id` (`backend/task`), and with Gymnasium under
    `gymnasium_id(env_id)` (`gymnasium.make("dmc/cartpole-swingup-v0", action_repeat=2)`)."""
    if env_id.count("/") != 1:
        raise ValueError(f"env id must look like 'backend/task', got {env_id!r}")
    if env_id in _REGISTRY:
        raise ValueError(f"env id {env_id!r} is already registered")
    _REGISTRY[env_id] = EnvSpec(env_id, entry_point, description)
    gymnasium.register(id=gymnasium_id(env_id), entry_point=functools.partial(make, env_id))


def gymnasium_id(env_id: str) -> str:
    """`backend/task` as Gymnasium's `namespace/name-v0`."""
    return f"{env_id}-v0"


def registry() -> dict[str, EnvSpec]:
    """Every registered env, by id."""
    return dict(sorted(_REGISTRY.items()))


def spec(env_id: str) -> EnvSpec:
    """The spec registered under `env_id`.

    Raises:
        UnknownEnvError: naming the id and listing the registered ones.
    """
    try:
        return _REGISTRY[env_id]
    except KeyError:
        known = "\n  ".join(sorted(_REGISTRY))
        raise UnknownEnvError(f"unknown env id {env_id!r}; registered ids:\n  {known}") from None


def make(
    env_id: str,
    *,
    action_repeat: int = 1,
    pixels: bool = False,
    pixel_size: int = 64,
    **kwargs: Any,
) -> RobotEnv:
    """Build the env registered under `env_id`.

    Args:
        env_id: `backend/task`; see `registry()`.
        action_repeat: repeat each action this many simulator steps, summing the reward.
        pixels: observe `[pixel_size, pixel_size, 3]` uint8 images instead of state vectors.
        pixel_size: image side in pixels when `pixels` is set.
        **kwargs: passed to the factory, e.g. `max_episode_steps`, `render_mode`.
    """
    from envs.wrappers import ActionRepeat, PixelObservation

    module_name, function_name = spec(env_id).entry_point.split(":")
    factory = getattr(importlib.import_module(module_name), function_name)
    env: RobotEnv = factory(env_id=env_id, **kwargs)
    if action_repeat != 1:
        env = ActionRepeat(env, action_repeat)
    if pixels:
        env = PixelObservation(env, width=pixel_size, height=pixel_size)
    return env
