"""Wrappers that are themselves `RobotEnv`s, so a wrapped env keeps the whole contract.

- `ActionRepeat`: hold each action for k steps of the inner env, summing rewards.
- `PixelObservation`: observe rendered images instead of state vectors.

The time limit and Gymnasium's terminated/truncated distinction live in `RobotEnv` itself
(`max_episode_steps`), so every env and every wrapper reports them the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium
import numpy as np
import torch
from numpy.typing import NDArray

from envs.core import Array, JointInterface, RobotEnv, Task


class RepeatedTask(Task):
    """The inner task's functions for a transition that holds the action for `repeat` steps.

    The true reward of such a transition sums the rewards at the `repeat` intermediate states,
    which `(obs, act, next_obs)` does not show; `reward` is `repeat` times the reward of the
    final step, which keeps a planner's returns on the scale of the env's returns.
    """

    def __init__(self, inner: Task, repeat: int) -> None:
        super().__init__(inner.obs_dim, inner.action_low, inner.action_high)
        self.inner = inner
        self.repeat = repeat

    def reward(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        return self.repeat * self.inner.reward(obs, act, next_obs)

    def terminated(
        self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor
    ) -> torch.Tensor:
        return self.inner.terminated(obs, act, next_obs)


class RobotWrapper(RobotEnv):
    """Delegates the simulator to `inner`; subclasses change what a step or an observation is."""

    def __init__(
        self, inner: RobotEnv, task: Task, control_timestep: float, max_episode_steps: int
    ) -> None:
        self.inner = inner
        super().__init__(
            inner.env_id, task, control_timestep, max_episode_steps, inner.render_mode,
            inner.render_size, physics_param_names=tuple(inner.physics_params()),
        )

    def _reset(self, rng: np.random.Generator) -> Array:
        obs, _ = self.inner.reset(seed=int(rng.integers(2**31)))
        return obs

    def _step(self, action: Array) -> tuple[Array, float, bool]:
        obs, reward, terminated, _, _ = self.inner.step(action)
        return obs, reward, terminated

    def _get_state(self) -> Array:
        return self.inner.get_state()

    def _set_state(self, state: Array) -> None:
        self.inner.set_state(state)

    def physics_params(self) -> dict[str, float]:
        """The inner simulator's, which may also be set on it directly (domain randomisation
        does, each episode)."""
        return self.inner.physics_params()

    def _apply_physics_params(self, params: Mapping[str, float]) -> None:
        own = self.inner.physics_params()
        self.inner.set_physics_params(**{name: params[name] for name in own})

    def _render(self, width: int, height: int) -> NDArray[np.uint8]:
        return self.inner.render_rgb(width=width, height=height)

    def observe(self) -> Array:
        return self.inner.observe()

    @property
    def joint_observation(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        return self.inner.joint_observation

    @property
    def joint_interface(self) -> JointInterface | None:
        return self.inner.joint_interface

    #: Backend extras that mean the same through this wrapper and pass through to `inner`.
    passthrough: frozenset[str] = frozenset({"linearize", "rollout"})

    def __getattr__(self, name: str) -> Any:
        if name not in type(self).passthrough or "inner" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
        return getattr(self.inner, name)


class ActionRepeat(RobotWrapper):
    """Hold each action for `repeat` inner steps; the reward is their sum.

    An episode ends early if the inner env terminates or truncates mid-repeat. `linearize`
    chains the inner env's Jacobians over the repeat; the inner `rollout` (one inner step per
    action) does not pass through.
    """

    passthrough: frozenset[str] = frozenset()

    def __init__(self, inner: RobotEnv, repeat: int) -> None:
        if not isinstance(repeat, int) or repeat < 1:
            raise ValueError(f"{inner.env_id}: action_repeat must be an int >= 1, got {repeat!r}")
        self.repeat = repeat
        super().__init__(
            inner,
            RepeatedTask(inner.task, repeat),
            inner.control_timestep * repeat,
            math.ceil(inner.max_episode_steps / repeat),
        )

    def _step(self, action: Array) -> tuple[Array, float, bool]:
        total = 0.0
        for _ in range(self.repeat):
            obs, reward, terminated, truncated, _ = self.inner.step(action)
            total += reward
            if terminated or truncated:
                break
        return obs, total, terminated


    def linearize(self, state: Array, action: Array) -> tuple[Array, Array]:
        """Jacobians `(A, B)` of one repeated step at `state` (from `get_state`) and `action`:
        `A = A_k ... A_1`, `B = sum_j A_k ... A_{j+1} B_j` along the inner trajectory."""
        inner_linearize: Any = getattr(self.inner, "linearize")  # noqa: B009  (not on every backend)
        saved = self.get_state()
        clipped = self.check_action(action)
        inner_state = np.asarray(state, dtype=np.float64)[:-1]
        A, B = inner_linearize(inner_state, clipped)
        for _ in range(self.repeat - 1):
            self.inner.set_state(inner_state)
            self.inner.step(clipped)
            inner_state = self.inner.get_state()
            A_step, B_step = inner_linearize(inner_state, clipped)
            A, B = A_step @ A, A_step @ B + B_step
        self.set_state(saved)
        return A, B


class PixelObservation(RobotWrapper):
    """Observe `[height, width, 3]` uint8 images; `info["state"]` keeps the state vector.

    Renders headless through the backend's own renderer (MuJoCo with `MUJOCO_GL=egl`, PyBullet's
    software camera), with shadows off.
    """

    def __init__(self, inner: RobotEnv, width: int = 64, height: int = 64) -> None:
        if width < 1 or height < 1:
            raise ValueError(f"{inner.env_id}: image size must be positive, got {width}x{height}")
        super().__init__(inner, inner.task, inner.control_timestep, inner.max_episode_steps)
        self.width = width
        self.height = height
        pixel_space: Any = gymnasium.spaces.Box(0, 255, shape=(height, width, 3), dtype=np.uint8)
        self.observation_space = pixel_space

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Array, dict[str, Any]]:
        state_obs, info = super().reset(seed=seed, options=options)
        return self._pixels(), {**info, "state": state_obs}

    def step(self, action: Any) -> tuple[Array, float, bool, bool, dict[str, Any]]:
        state_obs, reward, terminated, truncated, info = super().step(action)
        return self._pixels(), reward, terminated, truncated, {**info, "state": state_obs}

    def _pixels(self) -> Array:
        image: Any = self.inner.render_rgb(width=self.width, height=self.height)
        return image
