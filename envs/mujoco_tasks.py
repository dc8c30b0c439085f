"""Tasks on the bare `mujoco` bindings, with their own MJCF models in `envs/assets/`.

- `mujoco/cartpole-swingup`: dm_control's cart-pole swing-up (same observation layout, same
  smooth reward) on this package's own model, `assets/cartpole.xml`.
- `mujoco/reacher-2link`: bring a planar two-link arm's fingertip to a random target, with
  gymnasium Reacher's dense reward, on `assets/reacher_2link.xml`.
- `mujoco/pendulum-swingup`: pump a torque-limited pendulum up, with a smooth reward, on
  `assets/pendulum.xml`.
- `mujoco/pointmass-wall`: bring a point mass to a goal behind a wall, with a sparse reward,
  on `assets/pointmass_wall.xml`.

Each env computes its observation and reward with `math` on Python floats read straight from
`qpos`, `qvel` and `mocap_pos`, so a step costs little more than MuJoCo's own `mj_step`; the
torch `Task` of each env reproduces the reward from `(obs, act, next_obs)` to float64 round-off.
`MujocoEnv.rollout` simulates many open-loop action sequences at once on MuJoCo's multi-threaded
`mujoco.rollout`, for planners that score candidates on the simulator itself.
"""

from __future__ import annotations

import abc
import atexit
import math
import os
import weakref
from collections.abc import Mapping
from importlib import resources
from typing import Any, ClassVar

import mujoco
import mujoco.rollout
import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from envs import mujoco_physics
from envs.core import PHYSICS_PARAMS, Array, RobotEnv, Task
from envs.tasks import CartpoleSwingupTask, cartpole_swingup_reward

#: The physics state `mujoco.rollout` takes and returns: time, qpos, qvel, act, history, plugin.
_ROLLOUT_STATE = mujoco.mjtState.mjSTATE_FULLPHYSICS


def _load_model(asset: str) -> mujoco.MjModel:
    """Compile `envs/assets/<asset>` (shipped as package data)."""
    xml = resources.files("envs").joinpath("assets", asset).read_text(encoding="utf-8")
    return mujoco.MjModel.from_xml_string(xml)


class _Renderers:
    """One `mujoco.Renderer` per image size, created on first use.

    Renderers still open at interpreter exit are closed by an exit hook registered after the
    first GL context exists, so it runs before the EGL backend terminates its display (closing
    them later, during teardown, fails inside EGL).
    """

    _live: ClassVar[weakref.WeakSet[_Renderers]] = weakref.WeakSet()
    _exit_hook_registered: ClassVar[bool] = False

    def __init__(self, model: mujoco.MjModel) -> None:
        self._model = model
        self._by_size: dict[tuple[int, int], mujoco.Renderer] = {}

    def get(self, width: int, height: int) -> mujoco.Renderer:
        renderer = self._by_size.get((width, height))
        if renderer is None:
            renderer = mujoco.Renderer(self._model, height=height, width=width)
            self._by_size[(width, height)] = renderer
            _Renderers._live.add(self)
            if not _Renderers._exit_hook_registered:
                atexit.register(_Renderers._close_live)
                _Renderers._exit_hook_registered = True
        return renderer

    def close(self) -> None:
        for renderer in self._by_size.values():
            renderer.close()
        self._by_size.clear()

    @staticmethod
    def _close_live() -> None:
        for renderers in list(_Renderers._live):
            renderers.close()


def _physics_param_names(model: mujoco.MjModel) -> tuple[str, ...]:
    """The physics parameters that affect `model`: friction needs contacts or joint friction."""
    contacts = not model.opt.disableflags & mujoco.mjtDisableBit.mjDSBL_CONTACT
    has_friction = contacts or bool(np.any(model.dof_frictionloss > 0))
    return tuple(name for name in PHYSICS_PARAMS if has_friction or name != "friction_scale")


def _usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class MujocoEnv(RobotEnv):
    """A `RobotEnv` on one `mujoco.MjModel` / `mujoco.MjData` pair built from an MJCF asset.

    One `step` holds the action as the actuators' controls for `frame_skip` physics steps
    (`control_timestep = frame_skip * model.opt.timestep`). The exact state is MuJoCo's
    integration state (`envs.mujoco_physics.STATE_SPEC`): time, qpos, qvel, warm start, controls,
    applied forces and mocap poses. Subclasses set the episode's start (`_initialize_episode`),
    compute the observation and reward of the simulator's state (`_outcome`, the whole per-step
    work after `mj_step`, so it is written for speed) and the observations of many states at once
    (`_observe_batch`).
    """

    #: Physics steps per control step.
    frame_skip: int

    def __init__(
        self,
        env_id: str,
        task: Task,
        asset: str,
        frame_skip: int,
        max_episode_steps: int,
        camera: str,
        render_mode: str | None = None,
        rollout_threads: int | None = None,
    ) -> None:
        """Build the model from `envs/assets/<asset>`.

        Args:
            env_id: the registry id.
            task: the reward and termination; its action bounds must equal the actuators'
                control ranges.
            asset: file name of the MJCF model in `envs/assets/`.
            frame_skip: physics steps per control step.
            max_episode_steps: steps after which an episode is truncated.
            camera: name of the model camera `render_rgb` looks through.
            render_mode: None or "rgb_array".
            rollout_threads: threads `rollout` uses; default: the CPUs this process may use.
        """
        if frame_skip < 1:
            raise ValueError(f"{env_id}: frame_skip must be >= 1, got {frame_skip}")
        if rollout_threads is not None and rollout_threads < 1:
            raise ValueError(f"{env_id}: rollout_threads must be >= 1, got {rollout_threads}")
        model = _load_model(asset)
        ctrl_range = np.stack([task.action_low, task.action_high], axis=1)
        if model.actuator_ctrlrange.shape != ctrl_range.shape or not np.array_equal(
            model.actuator_ctrlrange, ctrl_range
        ):
            raise ValueError(
                f"{env_id}: the task's action bounds {ctrl_range.tolist()} differ from the "
                f"actuators' control ranges {model.actuator_ctrlrange.tolist()} in {asset}"
            )
        mujoco_physics.disable_shadows(model)
        self._model = model
        self._data = mujoco.MjData(model)
        self._nominal = mujoco_physics.NominalPhysics.of(model)
        self.frame_skip = int(frame_skip)
        # Views into the MjData's buffers (each attribute access would build a new array).
        self._qpos: Array = self._data.qpos
        self._qvel: Array = self._data.qvel
        self._ctrl: Array = self._data.ctrl
        self._mocap_pos: Array = self._data.mocap_pos
        # Any valid action: `observe` takes the observation from `_outcome`.
        self._null_action: Array = np.clip(0.0, task.action_low, task.action_high)
        self._camera = camera
        self._renderers = _Renderers(model)
        self._render_data: mujoco.MjData | None = None
        self._rollout_threads = rollout_threads or _usable_cpus()
        self._rollout_pool: mujoco.rollout.Rollout | None = None
        self._rollout_data: list[mujoco.MjData] = []
        self._state_size = mujoco.mj_stateSize(model, mujoco_physics.STATE_SPEC)
        self._rollout_state_size = mujoco.mj_stateSize(model, _ROLLOUT_STATE)
        # The targets are mocap bodies, so `rollout` passes their positions with the controls.
        self._rollout_control_spec = int(mujoco.mjtState.mjSTATE_CTRL) | (
            int(mujoco.mjtState.mjSTATE_MOCAP_POS) if model.nmocap else 0
        )
        control_timestep = self.frame_skip * float(model.opt.timestep)
        super().__init__(
            env_id, task, control_timestep, max_episode_steps, render_mode,
            physics_param_names=_physics_param_names(model),
        )

    @property
    def model(self) -> mujoco.MjModel:
        """The MuJoCo model (with the current physics parameters applied); do not resize it."""
        return self._model

    # ----------------------------------------------------------------- task hooks
    @abc.abstractmethod
    def _initialize_episode(self, rng: np.random.Generator) -> None:
        """Set the start of an episode (qpos, qvel, mocap poses) on freshly reset data."""

    @abc.abstractmethod
    def _outcome(self, action: Array) -> tuple[Array, float, bool]:
        """`(obs [do], reward, terminated)` of the current qpos, qvel and mocap poses, reached
        under the clipped `action [du]`; the reward is `task.reward` of the transition.
        """

    @abc.abstractmethod
    def _observe_batch(self, qpos: Array, qvel: Array, mocap_pos: Array) -> Array:
        """Observations of many states, vectorised: `qpos [..., nq]`, `qvel [..., nv]` and the
        (shared) `mocap_pos [nmocap, 3]` give `[..., do]`, equal to `_outcome`'s to round-off.
        """

    # ----------------------------------------------------------------- RobotEnv hooks
    def _reset(self, rng: np.random.Generator) -> Array:
        mujoco.mj_resetData(self._model, self._data)
        self._initialize_episode(rng)
        mujoco.mj_forward(self._model, self._data)
        return self.observe()

    def _step(self, action: Array) -> tuple[Array, float, bool]:
        self._ctrl[:] = action
        mujoco.mj_step(self._model, self._data, self.frame_skip)
        return self._outcome(action)

    def _get_state(self) -> Array:
        return mujoco_physics.get_state(self._model, self._data)

    def _set_state(self, state: Array) -> None:
        mujoco_physics.set_state(self._model, self._data, state)

    def _apply_physics_params(self, params: Mapping[str, float]) -> None:
        self._nominal.apply(self._model, self._data, params)

    def _render(self, width: int, height: int) -> NDArray[np.uint8]:
        renderer = self._renderers.get(width, height)
        if self._render_data is None:
            self._render_data = mujoco.MjData(self._model)
        # Render a copy: after `mj_step` the data's poses lag its qpos by one physics step.
        mujoco_physics.set_state(
            self._model, self._render_data, mujoco_physics.get_state(self._model, self._data)
        )
        renderer.update_scene(self._render_data, camera=self._camera)
        image: NDArray[np.uint8] = renderer.render()
        return image

    def close(self) -> None:
        """Free the renderers' GL contexts and the rollout threads."""
        self._renderers.close()
        if self._rollout_pool is not None:
            self._rollout_pool.close()
            self._rollout_pool = None
        super().close()

    # ----------------------------------------------------------------- extras
    def observe(self) -> Array:
        """The observation of the current simulator state, `[do]` float64."""
        return self._outcome(self._null_action)[0]

    def linearize(self, state: Array, action: Array) -> tuple[Array, Array]:
        """Jacobians `(A, B)` of one control step at `state` (from `get_state`) and `action`.

        Computed with MuJoCo's finite differences (`mujoco.mjd_transitionFD`) over the control
        step's physics substeps; the state coordinates are `[qpos, qvel]` (every joint here is a
        hinge or a slide), see `envs.mujoco_physics.linearize`. A is `[2nv, 2nv]`, B `[2nv, nu]`.
        The simulator's state is unchanged on return.
        """
        return mujoco_physics.linearize_env(
            self, self._model, self._data, self.frame_skip, state, action
        )

    def rollout(self, state: ArrayLike, actions: ArrayLike) -> Array:
        """Simulate `N` open-loop action sequences from one state, in parallel.

        Equals `set_state(state)` followed by `step(actions[n, t])` for `t = 0 .. H-1` for each
        `n` (to round-off in the observation's trigonometry), without the episode's time limit
        and without touching this env's simulator. Runs on `mujoco.rollout` with one `MjData`
        per thread, under the current physics parameters.

        Args:
            state: a vector from `get_state()`, `[ds]` (its last entry, the episode's step count,
                is ignored).
            actions: `[N, H, du]`; clipped into the action bounds.

        Returns:
            The observation after each control step, `[N, H, do]` float64.

        Raises:
            ValueError: for a state or actions of the wrong shape or with NaN or infinity.
        """
        s = np.asarray(state, dtype=np.float64)
        if s.shape != (self._state_size + 1,):
            raise ValueError(
                f"{self.env_id}: state has shape {s.shape}, expected {(self._state_size + 1,)}"
            )
        if not np.isfinite(s).all():
            raise ValueError(f"{self.env_id}: state contains NaN or infinity")
        a = np.asarray(actions, dtype=np.float64)
        du = self.task.act_dim
        if a.ndim != 3 or a.shape[2] != du:
            raise ValueError(f"{self.env_id}: actions have shape {a.shape}, expected [N, H, {du}]")
        if not np.isfinite(a).all():
            raise ValueError(f"{self.env_id}: actions contain NaN or infinity")
        n_roll, horizon = a.shape[0], a.shape[1]
        if n_roll == 0 or horizon == 0:
            return np.empty((n_roll, horizon, self.task.obs_dim))
        a = np.clip(a, self._act_low, self._act_high)

        pool, datas = self._rollout_workers()
        # Translate the integration state into what `mujoco.rollout` takes on a scratch data.
        scratch = datas[0]
        mujoco.mj_setState(self._model, scratch, s[:-1], mujoco_physics.STATE_SPEC)
        initial = np.empty((1, self._rollout_state_size))
        mujoco.mj_getState(self._model, scratch, initial[0], _ROLLOUT_STATE)
        warmstart = scratch.qacc_warmstart.reshape(1, -1).copy()
        mocap_pos = scratch.mocap_pos.copy()

        n_sub = horizon * self.frame_skip
        control = np.repeat(a, self.frame_skip, axis=1)  # [N, H * frame_skip, nu]
        if self._model.nmocap:
            targets = np.broadcast_to(mocap_pos.ravel(), (n_roll, n_sub, mocap_pos.size))
            control = np.concatenate([control, targets], axis=2)
        states, _ = pool.rollout(
            self._model, datas, initial, control,
            control_spec=self._rollout_control_spec, initial_warmstart=warmstart,
        )
        after_step = states[:, self.frame_skip - 1 :: self.frame_skip]  # [N, H, nstate]
        nq, nv = self._model.nq, self._model.nv
        return self._observe_batch(
            after_step[..., 1 : 1 + nq], after_step[..., 1 + nq : 1 + nq + nv], mocap_pos
        )

    def _rollout_workers(self) -> tuple[mujoco.rollout.Rollout, list[mujoco.MjData]]:
        """The cached thread pool and one `MjData` per thread, created on first use."""
        if self._rollout_pool is None:
            threads = self._rollout_threads
            # nthread=0 runs on the calling thread.
            self._rollout_pool = mujoco.rollout.Rollout(nthread=threads if threads > 1 else 0)
            self._rollout_data = [mujoco.MjData(self._model) for _ in range(threads)]
        return self._rollout_pool, self._rollout_data


# --------------------------------------------------------------------------- cart-pole
class CartpoleSwingupEnv(MujocoEnv):
    """Swing a pole up from hanging and balance it above a cart, on `assets/cartpole.xml`.

    obs `[cart_x, cos(theta), sin(theta), cart_v, pole_w]` (5), theta = 0 upright (dm_control's
    layout); action: the cart's force in [-1, 1] x 10 N. Episodes start hanging (theta = pi) with
    0.01-scale gaussian noise on positions and velocities, last 1000 steps (10 s) and never
    terminate. Reward: dm_control's smooth swing-up reward (`CartpoleSwingupTask`).

    Physics: semi-implicit Euler at MuJoCo's default 2 ms, 5 physics steps per 10 ms control
    step. Against a 0.1 ms RK4 reference, a 2 s bang-bang swing deviates by at most 3e-3 rad
    (1.6e-2 rad with one 10 ms Euler step per control step), and the slider's dry friction and
    joint limit are resolved at 500 Hz.
    """

    def __init__(
        self,
        env_id: str = "mujoco/cartpole-swingup",
        max_episode_steps: int = 1000,
        render_mode: str | None = None,
        rollout_threads: int | None = None,
    ) -> None:
        super().__init__(
            env_id, CartpoleSwingupTask(), "cartpole.xml", frame_skip=5,
            max_episode_steps=max_episode_steps, camera="fixed", render_mode=render_mode,
            rollout_threads=rollout_threads,
        )

    def _initialize_episode(self, rng: np.random.Generator) -> None:
        noise = 0.01 * rng.standard_normal(4)
        self._qpos[:] = (noise[0], math.pi + noise[1])
        self._qvel[:] = noise[2:]

    def _outcome(self, action: Array) -> tuple[Array, float, bool]:
        x, theta = self._qpos.tolist()
        v, w = self._qvel.tolist()
        cos = math.cos(theta)
        obs = np.array((x, cos, math.sin(theta), v, w))
        return obs, cartpole_swingup_reward(x, cos, action.item(), w), False

    def _observe_batch(self, qpos: Array, qvel: Array, mocap_pos: Array) -> Array:
        theta = qpos[..., 1]
        return np.stack(
            [qpos[..., 0], np.cos(theta), np.sin(theta), qvel[..., 0], qvel[..., 1]], axis=-1
        )


# --------------------------------------------------------------------------- pendulum
class UprightTask(Task):
    """A pendulum's smooth swing-up reward, `(1 + cos(theta)) / 2` in [0, 1] (1 upright).

    obs: `[cos(theta), sin(theta), w]` (3), theta = 0 upright; act `[1]` in [-1, 1].
    """

    def __init__(self) -> None:
        super().__init__(3, np.array([-1.0]), np.array([1.0]))

    def reward(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        return (1 + next_obs[..., 0]) / 2


class PendulumSwingupEnv(MujocoEnv):
    """Swing a torque-limited pendulum up and hold it, on `assets/pendulum.xml`.

    obs `[cos(theta), sin(theta), w]` (3), theta = 0 upright; action: the hinge torque in
    [-1, 1] N m, under half of gravity's pull on the horizontal pole, so it must be pumped.
    Reward: how upright it is, `(1 + cos(theta)) / 2` (`UprightTask`). Energy pumping
    (torque along the velocity) first reaches upright after 2 s. Episodes start hanging
    (theta = pi) with 0.01-scale gaussian noise on the angle and velocity, last 100 steps
    (5 s) and never terminate.

    Physics: semi-implicit Euler at 10 ms, 5 physics steps per 50 ms control step.
    """

    def __init__(
        self,
        env_id: str = "mujoco/pendulum-swingup",
        max_episode_steps: int = 100,
        render_mode: str | None = None,
        rollout_threads: int | None = None,
    ) -> None:
        super().__init__(
            env_id, UprightTask(), "pendulum.xml", frame_skip=5,
            max_episode_steps=max_episode_steps, camera="fixed", render_mode=render_mode,
            rollout_threads=rollout_threads,
        )

    def _initialize_episode(self, rng: np.random.Generator) -> None:
        noise = 0.01 * rng.standard_normal(2)
        self._qpos[:] = math.pi + noise[0]
        self._qvel[:] = noise[1]

    def _outcome(self, action: Array) -> tuple[Array, float, bool]:
        theta, w = self._qpos.item(), self._qvel.item()
        cos = math.cos(theta)
        return np.array((cos, math.sin(theta), w)), (1.0 + cos) / 2.0, False

    def _observe_batch(self, qpos: Array, qvel: Array, mocap_pos: Array) -> Array:
        theta = qpos[..., 0]
        return np.stack([np.cos(theta), np.sin(theta), qvel[..., 0]], axis=-1)


# --------------------------------------------------------------------------- point mass
class GoalBehindWallTask(Task):
    """1 while the point mass is within `GOAL_RADIUS` of the goal, else 0: a sparse reward.

    obs: `[x, y, vx, vy, goal_x - x, goal_y - y]` (6); act: the push `[2]` in [-1, 1] N.
    """

    GOAL = (0.5, 0.2)
    GOAL_RADIUS = 0.1

    def __init__(self) -> None:
        super().__init__(6, -np.ones(2), np.ones(2))

    def reward(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        distance = torch.linalg.vector_norm(next_obs[..., 4:6], dim=-1)
        return (distance <= self.GOAL_RADIUS).to(next_obs.dtype)


class PointMassWallEnv(MujocoEnv):
    """Bring a point mass to a goal behind a wall, on `assets/pointmass_wall.xml`: the reward is
    sparse (`GoalBehindWallTask`), and the way round the wall first leads away from the goal.

    The ball starts at (-0.5, 0.2) with 0.01-scale gaussian noise on position and velocity; the
    goal is at (0.5, 0.2) on the far side of a wall that leaves a gap only below y = -0.1.
    Episodes last 200 steps (10 s) and never terminate. Steering round the wall's end reaches
    the goal in 1.1 s.

    Physics: semi-implicit Euler at 10 ms with contacts, 5 physics steps per 50 ms control step.
    """

    def __init__(
        self,
        env_id: str = "mujoco/pointmass-wall",
        max_episode_steps: int = 200,
        render_mode: str | None = None,
        rollout_threads: int | None = None,
    ) -> None:
        super().__init__(
            env_id, GoalBehindWallTask(), "pointmass_wall.xml", frame_skip=5,
            max_episode_steps=max_episode_steps, camera="fixed", render_mode=render_mode,
            rollout_threads=rollout_threads,
        )

    def _initialize_episode(self, rng: np.random.Generator) -> None:
        noise = 0.01 * rng.standard_normal(4)
        self._qpos[:] = (-0.5 + noise[0], 0.2 + noise[1])
        self._qvel[:] = noise[2:]

    def _outcome(self, action: Array) -> tuple[Array, float, bool]:
        x, y = self._qpos.tolist()
        vx, vy = self._qvel.tolist()
        gx, gy = GoalBehindWallTask.GOAL
        dx, dy = gx - x, gy - y
        reward = 1.0 if math.hypot(dx, dy) <= GoalBehindWallTask.GOAL_RADIUS else 0.0
        return np.array((x, y, vx, vy, dx, dy)), reward, False

    def _observe_batch(self, qpos: Array, qvel: Array, mocap_pos: Array) -> Array:
        gx, gy = GoalBehindWallTask.GOAL
        return np.stack(
            [qpos[..., 0], qpos[..., 1], qvel[..., 0], qvel[..., 1], gx - qpos[..., 0],
             gy - qpos[..., 1]], axis=-1,
        )


# --------------------------------------------------------------------------- reacher
class ReachTask(Task):
    """Dense reaching reward, `-|fingertip - target| - control_cost * |a|^2` (gymnasium Reacher's
    form, scored after the step). obs: [cos q1, cos q2, sin q1, sin q2, qvel1, qvel2,
    fingertip_x - target_x, fingertip_y - target_y, target_x, target_y] (10).

    The control cost uses the action clipped into its bounds, as the simulator applies it.
    """

    def __init__(self, control_cost: float = 0.1) -> None:
        super().__init__(10, -np.ones(2), np.ones(2))
        #: Weight of the squared action in the reward.
        self.control_cost = float(control_cost)

    def reward(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        low = act.new_tensor(self.action_low.tolist())
        high = act.new_tensor(self.action_high.tolist())
        clipped = torch.minimum(torch.maximum(act, low), high)
        distance = torch.linalg.vector_norm(next_obs[..., 6:8], dim=-1)
        return -distance - self.control_cost * (clipped**2).sum(dim=-1)


class ReacherTwoLinkEnv(MujocoEnv):
    """Bring a planar two-link arm's fingertip to a random target, on `assets/reacher_2link.xml`.

    obs (10): see `ReachTask`; joint angles as cosines and sines, the fingertip-to-target offset
    and the target position in the arm's plane (metres, shoulder at the origin). Actions: the
    two joint torques in [-1, 1] x 0.05 N m. Episodes start with the shoulder uniform in
    [-pi, pi], the wrist uniform within its limits, velocities uniform in [-0.05, 0.05] rad/s
    and the target (a mocap body) uniform in angle at 0.05 .. 0.2 m from the shoulder (the arm
    reaches 0.21 m); they last 200 steps (4 s) and never terminate.

    Physics: semi-implicit Euler at 5 ms, 4 physics steps per 20 ms control step.
    """

    #: Range of the target's distance from the shoulder at reset (metres).
    TARGET_RADIUS = (0.05, 0.20)

    def __init__(
        self,
        env_id: str = "mujoco/reacher-2link",
        max_episode_steps: int = 200,
        render_mode: str | None = None,
        rollout_threads: int | None = None,
        control_cost: float = 0.1,
    ) -> None:
        super().__init__(
            env_id, ReachTask(control_cost), "reacher_2link.xml", frame_skip=4,
            max_episode_steps=max_episode_steps, camera="fixed", render_mode=render_mode,
            rollout_threads=rollout_threads,
        )
        model = self._model
        self._control_cost = float(control_cost)
        # Planar kinematics from the model: shoulder position, upper arm and forearm lengths.
        shoulder = model.body("arm").pos
        self._shoulder_xy = (float(shoulder[0]), float(shoulder[1]))
        self._upper = float(model.body("hand").pos[0])
        self._fore = float(model.site("fingertip").pos[0])
        self._wrist_range = model.jnt_range[model.joint("wrist").id].copy()
        self._target_z = float(model.body("target").pos[2])

    def _initialize_episode(self, rng: np.random.Generator) -> None:
        self._qpos[:] = (
            rng.uniform(-math.pi, math.pi), rng.uniform(*self._wrist_range.tolist())
        )
        self._qvel[:] = rng.uniform(-0.05, 0.05, size=2)
        angle = rng.uniform(0.0, 2 * math.pi)
        radius = rng.uniform(*self.TARGET_RADIUS)
        x0, y0 = self._shoulder_xy
        self._mocap_pos[0] = (
            x0 + radius * math.cos(angle), y0 + radius * math.sin(angle), self._target_z
        )

    def _outcome(self, action: Array) -> tuple[Array, float, bool]:
        q1, q2 = self._qpos.tolist()
        w1, w2 = self._qvel.tolist()
        tx, ty, _ = self._mocap_pos[0].tolist()
        x0, y0 = self._shoulder_xy
        fx = x0 + self._upper * math.cos(q1) + self._fore * math.cos(q1 + q2)
        fy = y0 + self._upper * math.sin(q1) + self._fore * math.sin(q1 + q2)
        dx, dy = fx - tx, fy - ty
        obs = np.array(
            (math.cos(q1), math.cos(q2), math.sin(q1), math.sin(q2), w1, w2, dx, dy, tx, ty)
        )
        a1, a2 = action.tolist()
        return obs, -math.hypot(dx, dy) - self._control_cost * (a1 * a1 + a2 * a2), False

    def _observe_batch(self, qpos: Array, qvel: Array, mocap_pos: Array) -> Array:
        q1, q2 = qpos[..., 0], qpos[..., 1]
        tx, ty = mocap_pos[0, 0], mocap_pos[0, 1]
        x0, y0 = self._shoulder_xy
        fx = x0 + self._upper * np.cos(q1) + self._fore * np.cos(q1 + q2)
        fy = y0 + self._upper * np.sin(q1) + self._fore * np.sin(q1 + q2)
        return np.stack(
            [np.cos(q1), np.cos(q2), np.sin(q1), np.sin(q2), qvel[..., 0], qvel[..., 1],
             fx - tx, fy - ty, np.full_like(q1, tx), np.full_like(q1, ty)],
            axis=-1,
        )


# --------------------------------------------------------------------------- factories
def cartpole_swingup(env_id: str = "mujoco/cartpole-swingup", **kwargs: Any) -> CartpoleSwingupEnv:
    """`mujoco/cartpole-swingup`; kwargs: max_episode_steps, render_mode, rollout_threads."""
    return CartpoleSwingupEnv(env_id, **kwargs)


def pendulum_swingup(
    env_id: str = "mujoco/pendulum-swingup", **kwargs: Any
) -> PendulumSwingupEnv:
    """`mujoco/pendulum-swingup`; kwargs: max_episode_steps, render_mode, rollout_threads."""
    return PendulumSwingupEnv(env_id, **kwargs)


def pointmass_wall(env_id: str = "mujoco/pointmass-wall", **kwargs: Any) -> PointMassWallEnv:
    """`mujoco/pointmass-wall`; kwargs: max_episode_steps, render_mode, rollout_threads."""
    return PointMassWallEnv(env_id, **kwargs)


def reacher_two_link(env_id: str = "mujoco/reacher-2link", **kwargs: Any) -> ReacherTwoLinkEnv:
    """`mujoco/reacher-2link`; kwargs: max_episode_steps, render_mode, rollout_threads,
    control_cost."""
    return ReacherTwoLinkEnv(env_id, **kwargs)
