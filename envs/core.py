"""The contract every simulated robot in `envs` honours.

A `RobotEnv` is a `gymnasium.Env` over float64 vector observations with a box action space,
plus what planners, sim-to-real and exact planning need from a simulator:

- `task`: the reward and termination as batched, differentiable torch functions of
  `(obs, act, next_obs)`, so a planner can score imagined transitions without the simulator;
- `physics_params()` / `set_physics_params(**p)`: multiplicative scales of the nominal model
  (mass, friction, joint damping, actuator gain), the knobs domain randomisation turns;
- `get_state()` / `set_state(s)`: the exact simulator state as a flat float64 vector;
- the time limit, with Gymnasium's terminated (the task ended) / truncated (time ran out).

Subclasses implement the `_`-prefixed hooks; the public methods here validate their input once,
so every backend refuses bad actions and parameters with the same clear messages.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np
import torch
from numpy.typing import NDArray

Array = NDArray[np.float64]

#: The physics parameters every backend exposes, as multiples of the nominal model's values,
#: with the smallest value each accepts and whether that bound is inclusive.
PHYSICS_PARAMS: Mapping[str, tuple[float, bool, str]] = {
    "mass_scale": (0.0, False, "multiplies every body's mass (and inertia)"),
    "friction_scale": (0.0, True, "multiplies every contact's sliding and joint's dry friction"),
    "damping_scale": (0.0, True, "multiplies every joint's damping"),
    "actuator_gain_scale": (0.0, True, "multiplies every actuator's force per unit action"),
}
_MAX_PHYSICS_SCALE = 100.0


class Task(abc.ABC):
    """A task's reward and termination as batched torch functions of transitions.

    Every function takes `obs [B, do]`, `act [B, du]`, `next_obs [B, do]` (any float dtype,
    any device) and returns `[B]`. `reward` is differentiable wherever the task's reward is
    (a sparse indicator reward is not); it reproduces the simulator's own reward on real
    transitions, which is why an observation carries any state the reward needs.
    """

    obs_dim: int
    act_dim: int
    #: Lower bound of each action dimension, `[du]`.
    action_low: Array
    #: Upper bound of each action dimension, `[du]`.
    action_high: Array

    def __init__(self, obs_dim: int, action_low: Array, action_high: Array) -> None:
        self.obs_dim = int(obs_dim)
        self.action_low = np.asarray(action_low, dtype=np.float64).copy()
        self.action_high = np.asarray(action_high, dtype=np.float64).copy()
        self.act_dim = int(self.action_low.shape[0])
        self.action_low.setflags(write=False)
        self.action_high.setflags(write=False)

    @abc.abstractmethod
    def reward(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """Reward of each transition, `[B]`."""

    def terminated(
        self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor
    ) -> torch.Tensor:
        """Whether each transition ends the episode, `[B]` bool. Default: never."""
        return torch.zeros(next_obs.shape[:-1], dtype=torch.bool, device=next_obs.device)


@dataclass(frozen=True)
class JointInterface:
    """A robot's joints as its hardware interface shows them: what a ros2_control
    `joint_state_broadcaster` publishes and what a forward effort command controller takes.

    The joint state is `[positions, velocities]` in `state_joints`' order (the simulator's
    qpos order, one degree of freedom a joint), which `RobotEnv.joint_observation` maps to the
    observation; a command is one effort a joint of `command_joints`, in the action's order,
    and `effort = effort_per_action * action`.
    """

    #: Names of the joints in the joint state's order.
    state_joints: tuple[str, ...]
    #: Names of the joints the actuators drive, in the action's order.
    command_joints: tuple[str, ...]
    #: Effort (N or N m) of a unit action, one a commanded joint (the actuator's gear).
    effort_per_action: tuple[float, ...]

    def effort_bounds(self, task: Task) -> tuple[Array, Array]:
        """The lowest and highest effort `[du]` the task's action bounds allow."""
        gear = np.asarray(self.effort_per_action)
        ends = np.stack([gear * task.action_low, gear * task.action_high])
        return ends.min(axis=0), ends.max(axis=0)


class RobotEnv(gymnasium.Env[Array, Array], abc.ABC):
    """A simulated robot behind the Gymnasium API, with the extras of `envs`' contract.

    Subclasses pass the task, control timestep and default episode length to `__init__`, then
    implement `observe` and the hooks `_reset`, `_step`, `_get_state`, `_set_state`,
    `_apply_physics_params` and `_render`.
    """

    #: The registry id, `backend/task`.
    env_id: str
    task: Task
    #: Simulated seconds per `step` call.
    control_timestep: float
    #: Steps after which an episode is truncated.
    max_episode_steps: int

    def __init__(
        self,
        env_id: str,
        task: Task,
        control_timestep: float,
        max_episode_steps: int,
        render_mode: str | None = None,
        render_size: tuple[int, int] = (240, 320),
        physics_param_names: tuple[str, ...] = tuple(PHYSICS_PARAMS),
    ) -> None:
        if max_episode_steps < 1:
            raise ValueError(f"{env_id}: max_episode_steps must be >= 1, got {max_episode_steps}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(
                f"{env_id}: render_mode must be None or 'rgb_array', got {render_mode!r}"
            )
        self.env_id = env_id
        self.task = task
        self.control_timestep = float(control_timestep)
        self.max_episode_steps = int(max_episode_steps)
        self.render_mode = render_mode
        self.render_size = render_size
        self.metadata = {
            "render_modes": ["rgb_array"], "render_fps": round(1.0 / self.control_timestep)
        }
        self.action_space = gymnasium.spaces.Box(
            task.action_low, task.action_high, dtype=np.float64
        )
        self.observation_space = gymnasium.spaces.Box(
            -np.inf, np.inf, shape=(task.obs_dim,), dtype=np.float64
        )
        self._act_shape = (task.act_dim,)
        self._act_low = task.action_low
        self._act_high = task.action_high
        self._low_values: list[float] = task.action_low.tolist()
        self._high_values: list[float] = task.action_high.tolist()
        unknown = set(physics_param_names) - set(PHYSICS_PARAMS)
        if unknown:
            raise ValueError(f"{env_id}: unknown physics parameters {sorted(unknown)}")
        # Only the parameters this robot really has: a model without contacts or joint friction
        # has no friction to scale, and a knob that does nothing would mislead randomisation.
        self._physics_params = {name: 1.0 for name in physics_param_names}
        self._elapsed_steps = 0
        self._needs_reset = True
        self._state_shape: tuple[int, ...] | None = None

    # ----------------------------------------------------------------- Gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Array, dict[str, Any]]:
        super().reset(seed=seed)
        self._elapsed_steps = 0
        self._needs_reset = False
        return self._reset(self.np_random), {}

    def step(self, action: Any) -> tuple[Array, float, bool, bool, dict[str, Any]]:
        if self._needs_reset:
            raise RuntimeError(
                f"{self.env_id}: call reset() before step() (the episode is over or never began)"
            )
        clipped = self.check_action(action)
        obs, reward, terminated = self._step(clipped)
        self._elapsed_steps += 1
        truncated = not terminated and self._elapsed_steps >= self.max_episode_steps
        self._needs_reset = terminated or truncated
        return obs, reward, terminated, truncated, {}

    def render(self) -> NDArray[np.uint8] | None:
        if self.render_mode is None:
            return None
        height, width = self.render_size
        return self.render_rgb(width=width, height=height)

    def render_rgb(self, width: int = 64, height: int = 64) -> NDArray[np.uint8]:
        """An RGB image of the current state, `[height, width, 3]` uint8 (shadows off)."""
        return self._render(width, height)

    # ----------------------------------------------------------------- validation
    def check_action(self, action: Any) -> Array:
        """The action as float64 `[du]` inside the action bounds (the input array itself when
        it already is one, else a clipped copy).

        Raises:
            ValueError: if the shape is not `[du]` or an entry is NaN or infinite.
        """
        a = np.asarray(action, dtype=np.float64)
        if a.shape != self._act_shape:
            raise ValueError(
                f"{self.env_id}: action has shape {a.shape}, expected {self._act_shape} "
                f"(bounds {self._act_low.tolist()} .. {self._act_high.tolist()})"
            )
        # This runs on every step: comparing plain floats is several times cheaper than numpy
        # calls on a handful of entries. NaN and infinities fail the comparison too, so only
        # actions that need clipping or refusing take the slow path.
        for value, low, high in zip(a.tolist(), self._low_values, self._high_values, strict=True):
            if not low <= value <= high:
                if not np.isfinite(a).all():
                    raise ValueError(
                        f"{self.env_id}: action contains NaN or infinity: {a.tolist()}"
                    )
                clipped: Array = np.minimum(np.maximum(a, self._act_low), self._act_high)
                return clipped
        return a

    # ----------------------------------------------------------------- physics parameters
    def physics_params(self) -> dict[str, float]:
        """The current physics parameters, as multiples of the nominal model's values."""
        return dict(self._physics_params)

    def set_physics_params(self, **params: float) -> None:
        """Scale the model's physics relative to nominal; unnamed parameters keep their value.

        Names (those of `physics_params()`): mass_scale (> 0), friction_scale, damping_scale,
        actuator_gain_scale (>= 0); every value at most 100. Takes effect from the next step.

        Raises:
            ValueError: for a name this env does not have or a value that is NaN or out of range.
        """
        merged = dict(self._physics_params)
        for name, value in params.items():
            if name not in merged:
                why = "this robot has none" if name in PHYSICS_PARAMS else "unknown name"
                raise ValueError(
                    f"{self.env_id}: no physics parameter {name!r} ({why}); "
                    f"this env has: {', '.join(merged)}"
                )
            low, inclusive, meaning = PHYSICS_PARAMS[name]
            v = float(value)
            in_range = (v >= low if inclusive else v > low) and v <= _MAX_PHYSICS_SCALE
            if not math.isfinite(v) or not in_range:
                bound = f"{'>=' if inclusive else '>'} {low:g} and <= {_MAX_PHYSICS_SCALE:g}"
                raise ValueError(
                    f"{self.env_id}: physics parameter {name}={value!r} is out of range: "
                    f"it {meaning} and must be {bound}"
                )
            merged[name] = v
        # Backends see every name; the ones this robot lacks stay at their neutral 1.
        self._apply_physics_params({**dict.fromkeys(PHYSICS_PARAMS, 1.0), **merged})
        self._physics_params = merged

    # ----------------------------------------------------------------- exact state
    def get_state(self) -> Array:
        """The exact simulator state (plus the episode's step count) as a flat float64 vector.

        `set_state(get_state())` makes the following steps reproduce exactly.
        """
        return np.concatenate([self._get_state(), [float(self._elapsed_steps)]])

    def set_state(self, state: Any) -> None:
        """Restore a state returned by `get_state()` of an env with the same id.

        Raises:
            ValueError: if the vector's shape does not match or it holds NaN.
        """
        s = np.asarray(state, dtype=np.float64)
        if self._state_shape is None:
            self._state_shape = self.get_state().shape
        expected = self._state_shape
        if s.shape != expected:
            raise ValueError(f"{self.env_id}: state has shape {s.shape}, expected {expected}")
        if not np.isfinite(s).all():
            raise ValueError(f"{self.env_id}: state contains NaN or infinity")
        self._set_state(s[:-1])
        self._elapsed_steps = int(s[-1])
        self._needs_reset = self._elapsed_steps >= self.max_episode_steps

    @property
    def joint_observation(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The robot's observation map in torch: observations `[..., do]` of joint states
        `[joint positions, joint velocities]` `[..., 2 nq]`, batched and differentiable (the
        residual of iLQR on the simulator; a `JointState` message observed as the env would);
        None where the observation is not a function of the joint state alone."""
        return None

    @property
    def joint_interface(self) -> JointInterface | None:
        """The robot's joints as a ROS 2 hardware interface names them (see `JointInterface`);
        None where the simulator has no named one-degree-of-freedom joints and motors."""
        return None

    # ----------------------------------------------------------------- backend hooks
    @abc.abstractmethod
    def observe(self) -> Array:
        """The (state) observation `[do]` of the simulator's current state."""

    @abc.abstractmethod
    def _reset(self, rng: np.random.Generator) -> Array:
        """Start an episode drawing its randomness from `rng`; return the observation."""

    @abc.abstractmethod
    def _step(self, action: Array) -> tuple[Array, float, bool]:
        """Advance one control step with a valid action; return (obs, reward, terminated)."""

    @abc.abstractmethod
    def _get_state(self) -> Array:
        """The backend's exact state as a flat float64 vector."""

    @abc.abstractmethod
    def _set_state(self, state: Array) -> None:
        """Restore a vector returned by `_get_state`, leaving observations consistent."""

    @abc.abstractmethod
    def _apply_physics_params(self, params: Mapping[str, float]) -> None:
        """Set the model to nominal values times the validated scales in `params` (every name
        of `PHYSICS_PARAMS` is present)."""

    @abc.abstractmethod
    def _render(self, width: int, height: int) -> NDArray[np.uint8]:
        """Render the current state to `[height, width, 3]` uint8."""
