"""The dm_control suite (Tassa et al. 2018) behind `RobotEnv`, with torch rewards for each task.

The observation is dm_control's observation dict flattened in its own order, followed by any
quantity the reward needs that dm_control does not observe (named in each task's docstring).
The reward is dm_control's own; each `Task` below reproduces it from `(obs, act, next_obs)`.
dm_control's time limit is replaced by ours (same length), so that truncation is reported as
Gymnasium's `truncated`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import mujoco
import numpy as np
import torch
from dm_control import suite
from numpy.typing import NDArray

from envs import mujoco_physics
from envs.cartpole import CartpoleSwingupTask
from envs.cartpole import observation as cartpole_observation
from envs.core import PHYSICS_PARAMS, Array, JointInterface, RobotEnv, Task
from envs.rewards import tolerance

_UNIT_BOX = (np.array([-1.0]), np.array([1.0]))


class PendulumTask(Task):
    """dm_control pendulum swing-up: 1 within 30 degrees of upright. obs: [cos, sin, w] (3)."""

    COSINE_BOUND = math.cos(math.radians(30))

    def __init__(self) -> None:
        super().__init__(3, *_UNIT_BOX)

    def reward(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        return tolerance(next_obs[..., 0], bounds=(self.COSINE_BOUND, 1.0))


class AcrobotTask(Task):
    """dm_control acrobot swing-up: the tip's distance to the target 2 m above the shoulder,
    `tolerance(d, bounds=(0, 0.2), margin=1)` (gaussian).

    obs: `[horizontal (2), vertical (2), joint velocities (2)]` (6), where horizontal and
    vertical are the links' orientations (`sin` and `cos` of the absolute link angles, upright
    at 0); the tip is `(h1 + h2, v1 + v2)` from the shoulder, the links being 1 m long.
    """

    TARGET_RADIUS = 0.2

    def __init__(self) -> None:
        super().__init__(6, *_UNIT_BOX)

    def reward(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        tip_x = next_obs[..., 0] + next_obs[..., 1]
        tip_z = next_obs[..., 2] + next_obs[..., 3]
        distance = torch.sqrt(tip_x * tip_x + (tip_z - 2.0) ** 2)
        return tolerance(distance, bounds=(0.0, self.TARGET_RADIUS), margin=1.0)


class ReacherTask(Task):
    """dm_control reacher: 1 while the finger touches the target.

    obs: [joint angles (2), target - finger (2), joint velocities (2)] (6).
    """

    def __init__(self, radii: float) -> None:
        super().__init__(6, -np.ones(2), np.ones(2))
        #: Target radius plus finger radius.
        self.radii = float(radii)

    def reward(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        distance = torch.linalg.vector_norm(next_obs[..., 2:4], dim=-1)
        return tolerance(distance, bounds=(0.0, self.radii))


class CheetahTask(Task):
    """dm_control cheetah run: forward speed, linear up to 10 m/s.

    obs: [qpos without root x (8), qvel (9), torso subtree speed (1, appended)] (18).
    """

    def __init__(self) -> None:
        super().__init__(18, -np.ones(6), np.ones(6))

    def reward(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        return tolerance(
            next_obs[..., 17], bounds=(10.0, math.inf), margin=10.0, value_at_margin=0.0,
            sigmoid="linear",
        )


class WalkerTask(Task):
    """dm_control walker: stand tall and upright, moving forward at `move_speed` or faster.

    obs: [body orientations xx, xz (14), torso height (1), qvel (9),
    torso subtree horizontal velocity (1, appended)] (25). The torso's `zz` (uprightness) equals
    its `xx` exactly, since the walker only rotates about the y axis.
    """

    STAND_HEIGHT = 1.2

    def __init__(self, move_speed: float) -> None:
        super().__init__(25, -np.ones(6), np.ones(6))
        #: Speed (m/s) from which the move reward is full.
        self.move_speed = float(move_speed)

    def reward(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        standing = tolerance(
            next_obs[..., 14], bounds=(self.STAND_HEIGHT, math.inf), margin=self.STAND_HEIGHT / 2
        )
        upright = (1 + next_obs[..., 0]) / 2
        stand_reward = (3 * standing + upright) / 4
        if self.move_speed == 0:
            return stand_reward
        move_reward = tolerance(
            next_obs[..., 24], bounds=(self.move_speed, math.inf), margin=self.move_speed / 2,
            value_at_margin=0.5, sigmoid="linear",
        )
        return stand_reward * (5 * move_reward + 1) / 6


Extras = Callable[[mujoco.MjModel], Callable[[mujoco.MjData], Sequence[float]]]
"""Given the model, a function of the data returning what the observation appends."""


def _no_extras(model: mujoco.MjModel) -> Callable[[mujoco.MjData], Sequence[float]]:
    return lambda data: ()


def _subtree_velocity_x(sensor: str) -> Extras:
    def bind(model: mujoco.MjModel) -> Callable[[mujoco.MjData], Sequence[float]]:
        address = int(model.sensor(sensor).adr[0])  # looked up once: by name it costs a step's 5%
        return lambda data: (data.sensordata[address],)

    return bind


class DmControlEnv(RobotEnv):
    """One dm_control suite task; see the module docstring for the observation layout.

    `friction_scale` is a physics parameter only of the robots that touch the ground
    (`has_contacts`): the others have neither contacts nor joint friction.
    """

    def __init__(
        self,
        env_id: str,
        domain: str,
        task_name: str,
        task: Task,
        extras: Extras = _no_extras,
        model_state_geoms: tuple[str, ...] = (),
        has_contacts: bool = False,
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
        joint_map: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self._joint_map = joint_map
        self._dm = suite.load(
            domain, task_name, task_kwargs={"random": 0, "time_limit": math.inf}
        )
        physics = self._dm.physics
        self._physics = physics
        self._model: mujoco.MjModel = physics.model.ptr
        self._data: mujoco.MjData = physics.data.ptr
        self._extras = extras(self._model)
        # Geoms the task moves at reset (reacher's target); their positions are part of the state.
        self._state_geoms = [self._model.geom(name).id for name in model_state_geoms]
        self._nominal = mujoco_physics.NominalPhysics.of(self._model)
        mujoco_physics.disable_shadows(self._model)
        control_timestep = float(self._dm.control_timestep())
        self._n_substeps = round(control_timestep / self._model.opt.timestep)
        default_steps = round(suite_time_limit(domain) / control_timestep)
        names = tuple(n for n in PHYSICS_PARAMS if has_contacts or n != "friction_scale")
        super().__init__(
            env_id, task, control_timestep, max_episode_steps or default_steps, render_mode,
            physics_param_names=names,
        )

    def _observation(self, dm_obs: Mapping[str, Any]) -> Array:
        # Slice assignment into a fresh array: a third of the cost of concatenating on a step.
        obs = np.empty(self.task.obs_dim)
        start = 0
        for value in dm_obs.values():
            end = start + (value.size if isinstance(value, np.ndarray) else 1)
            obs[start:end] = value
            start = end
        obs[start:] = self._extras(self._data)
        return obs

    def _reset(self, rng: np.random.Generator) -> Array:
        self._dm.task._random = np.random.RandomState(int(rng.integers(2**31)))
        return self._observation(self._dm.reset().observation)

    def _step(self, action: Array) -> tuple[Array, float, bool]:
        ts = self._dm.step(action)
        terminated = ts.last() and ts.discount == 0.0
        return self._observation(ts.observation), float(ts.reward), terminated

    def _get_state(self) -> Array:
        geoms = self._model.geom_pos[self._state_geoms].ravel()
        return np.concatenate([mujoco_physics.get_state(self._model, self._data), geoms])

    def _set_state(self, state: Array) -> None:
        n_geom = 3 * len(self._state_geoms)
        if n_geom:
            self._model.geom_pos[self._state_geoms] = state[-n_geom:].reshape(-1, 3)
        mujoco_physics.set_state(self._model, self._data, state[: len(state) - n_geom])
        # dm_control would otherwise start a new episode on the next step (a fresh env, or one
        # whose episode ended): the restored state is mid-episode.
        self._dm._reset_next_step = False

    @property
    def joint_observation(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        return self._joint_map

    @property
    def joint_interface(self) -> JointInterface | None:
        return mujoco_physics.joint_interface(self._model)

    def observe(self) -> Array:
        """The observation of the current simulator state."""
        return self._observation(self._dm.task.get_observation(self._physics))

    def linearize(self, state: Array, action: Array) -> tuple[Array, Array]:
        """Jacobians `(A, B)` of one control step at `state` (from `get_state`) and `action`.

        Computed with MuJoCo's finite differences (`mujoco.mjd_transitionFD`; by hand for RK4
        models) over the control step's physics substeps; see `envs.mujoco_physics.linearize`
        for the state coordinates. The simulator's state is unchanged on return.
        """
        return mujoco_physics.linearize_env(
            self, self._model, self._data, self._n_substeps, state, action
        )

    def _apply_physics_params(self, params: Mapping[str, float]) -> None:
        self._nominal.apply(self._model, self._data, params)

    def _render(self, width: int, height: int) -> NDArray[np.uint8]:
        image: NDArray[np.uint8] = self._physics.render(height=height, width=width, camera_id=0)
        return image


def suite_time_limit(domain: str) -> float:
    """dm_control's default episode length in seconds for a domain."""
    module = getattr(suite, domain)
    return float(module._DEFAULT_TIME_LIMIT)


def cartpole_swingup(env_id: str, **kwargs: Any) -> DmControlEnv:
    return DmControlEnv(env_id, "cartpole", "swingup", CartpoleSwingupTask(),
                        joint_map=cartpole_observation, **kwargs)


def cartpole_balance(env_id: str, **kwargs: Any) -> DmControlEnv:
    return DmControlEnv(env_id, "cartpole", "balance", CartpoleSwingupTask(),
                        joint_map=cartpole_observation, **kwargs)


def pendulum_swingup(env_id: str, **kwargs: Any) -> DmControlEnv:
    return DmControlEnv(env_id, "pendulum", "swingup", PendulumTask(), **kwargs)


def acrobot_swingup(env_id: str, **kwargs: Any) -> DmControlEnv:
    return DmControlEnv(env_id, "acrobot", "swingup", AcrobotTask(), **kwargs)


def reacher_easy(env_id: str, **kwargs: Any) -> DmControlEnv:
    return DmControlEnv(
        env_id, "reacher", "easy", ReacherTask(radii=0.05 + 0.01),
        model_state_geoms=("target",), **kwargs,
    )


def cheetah_run(env_id: str, **kwargs: Any) -> DmControlEnv:
    return DmControlEnv(
        env_id, "cheetah", "run", CheetahTask(),
        extras=_subtree_velocity_x("torso_subtreelinvel"), has_contacts=True, **kwargs,
    )


def walker_walk(env_id: str, **kwargs: Any) -> DmControlEnv:
    return DmControlEnv(
        env_id, "walker", "walk", WalkerTask(move_speed=1.0),
        extras=_subtree_velocity_x("torso_subtreelinvel"), has_contacts=True, **kwargs,
    )
