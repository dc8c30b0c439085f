"""`MujocoEnv`: a robot on the bare `mujoco` bindings, with its own MJCF model in `envs/assets/`.

Each robot is one file, as in dm_control's suite: `envs.cartpole`, `envs.pendulum`,
`envs.pointmass`, `envs.reacher`. A robot defines its observation once, in torch, as a map
from the joint state (`observation_of(qpos, qvel, mocap_pos)`, batched): `rollout` observes
through it, planners get it as `joint_observation` (iLQR's residual on the simulator), and so
will the ROS bridge (a `JointState` message is a joint state). Each step's observation and
reward are also computed with `math` on Python floats read straight from `qpos`, `qvel` and
`mocap_pos` (`_outcome`): in torch a step would cost twice MuJoCo's own `mj_step` for a cart-pole
(24 us more), and the conformance tests hold the two equal for every robot. The torch `Task` of
each robot reproduces the reward from `(obs, act, next_obs)` to float64 round-off.
`MujocoEnv.rollout` simulates many open-loop action sequences at once on MuJoCo's
multi-threaded `mujoco.rollout`, for planners that score candidates on the simulator itself.
"""

from __future__ import annotations

import abc
import atexit
import os
import weakref
from collections.abc import Callable, Mapping
from importlib import resources
from typing import ClassVar

import mujoco
import mujoco.rollout
import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from envs import mujoco_physics
from envs.core import PHYSICS_PARAMS, Array, JointInterface, RobotEnv, Task

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
    work after `mj_step`, so it is written for speed) and define the observation once in torch
    (`observation_of`), which `rollout` and `joint_observation` use and `_outcome` equals.
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
    def observation_of(
        self, qpos: torch.Tensor, qvel: torch.Tensor, mocap_pos: torch.Tensor
    ) -> torch.Tensor:
        """The robot's observation map, in torch: observations `[..., do]` of joint positions
        `qpos [..., nq]` and velocities `qvel [..., nv]`, with the targets (mocap bodies) at
        `mocap_pos [nmocap, 3]`; differentiable, and equal to `_outcome`'s to round-off.
        """

    @property
    def joint_observation(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The observation `[..., do]` of joint states `[qpos, qvel]` `[..., nq + nv]`, with
        the targets where this env has them when it is called (`observation_of`)."""
        nq = self._model.nq

        def observe(x: torch.Tensor) -> torch.Tensor:
            targets = torch.from_numpy(self._mocap_pos.copy()).to(x.dtype)
            return self.observation_of(x[..., :nq], x[..., nq:], targets)

        return observe

    @property
    def joint_interface(self) -> JointInterface | None:
        return mujoco_physics.joint_interface(self._model)

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
    def physics_step(self, action: Array) -> None:
        """Advance one physics step (`model.opt.timestep`) holding `action` (clipped into
        the bounds); `step` is `frame_skip` of these, then the observation and reward. For a
        robot that must act between control steps (`mbrl sim-robot` applies commands and
        publishes joint states at the physics rate); the episode's step count is untouched."""
        self._ctrl[:] = np.clip(action, self.task.action_low, self.task.action_high)
        mujoco.mj_step(self._model, self._data)

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
        joints = torch.from_numpy(after_step)
        observations = self.observation_of(
            joints[..., 1 : 1 + nq], joints[..., 1 + nq : 1 + nq + nv],
            torch.from_numpy(mocap_pos),
        )
        return observations.numpy()

    def _rollout_workers(self) -> tuple[mujoco.rollout.Rollout, list[mujoco.MjData]]:
        """The cached thread pool and one `MjData` per thread, created on first use."""
        if self._rollout_pool is None:
            threads = self._rollout_threads
            # nthread=0 runs on the calling thread.
            self._rollout_pool = mujoco.rollout.Rollout(nthread=threads if threads > 1 else 0)
            self._rollout_data = [mujoco.MjData(self._model) for _ in range(threads)]
        return self._rollout_pool, self._rollout_data
